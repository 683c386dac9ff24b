"""Calendar dates people and systems send in: a due date, a business day to settle.

``date`` reaches from year 1 to 9999, and arithmetic near either end overflows (the business
day 9999-12-31 ends on a day Python cannot represent; 0001-01-01 in Beijing starts before
the year 1 in UTC). No bill, payment or settlement of a running installation falls outside
:data:`MIN_DATE` … :data:`MAX_DATE`, so every date taken from outside is checked against that
range where it is taken: :data:`BoundedDate` in schemas and API parameters,
:func:`parse_date` for a form field or a command-line option.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, WithJsonSchema

from civicloud.core.errors import InvalidInput

__all__ = [
    "MAX_DATE",
    "MIN_DATE",
    "BoundedDate",
    "BoundedDateTime",
    "DateOutOfRange",
    "check_date",
    "check_datetime",
    "parse_date",
]

MIN_DATE = date(2000, 1, 1)
MAX_DATE = date(2100, 12, 31)
_RANGE = f"between {MIN_DATE.isoformat()} and {MAX_DATE.isoformat()}"


class DateOutOfRange(InvalidInput):
    """A date that is not a date at all (``YYYY-MM-DD``), or one outside the accepted range."""

    code = "core.invalid_date"


def check_date(value: date) -> date:
    """``value`` if it lies in the accepted range (a Pydantic validator: ``ValueError`` if not)."""
    if not MIN_DATE <= value <= MAX_DATE:
        raise ValueError(f"the date must be {_RANGE}")
    return value


def check_datetime(value: datetime) -> datetime:
    """``value`` if its date lies in the accepted range (a Pydantic validator)."""
    check_date(value.date())
    return value


def parse_date(text: str) -> date:
    """A ``YYYY-MM-DD`` date typed in a form or on a command line, in the accepted range.

    Raises :class:`DateOutOfRange` (``InvalidInput``: HTTP 422, exit 2) saying which.
    """
    bounds = {"min": MIN_DATE.isoformat(), "max": MAX_DATE.isoformat()}
    try:
        value = date.fromisoformat(text.strip())
    except ValueError:
        raise DateOutOfRange(
            "write the date as YYYY-MM-DD, such as 2026-11-26, not %(value)s",
            params={"value": repr(text.strip()[:40]), **bounds},
        ) from None
    if not MIN_DATE <= value <= MAX_DATE:
        raise DateOutOfRange(
            "the date must be between %(min)s and %(max)s, not %(value)s",
            params={"value": value.isoformat(), **bounds},
        )
    return value


#: A date in the accepted range. JSON Schema has no bounds for dates: OpenAPI shows the range
#: in words and as a pattern on the year (2000-2100, the range as it is written).
BoundedDate = Annotated[
    date,
    AfterValidator(check_date),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date",
            "pattern": r"^(20[0-9]{2}|2100)-[0-9]{2}-[0-9]{2}$",
            "description": f"A date {_RANGE}.",
            "examples": ["2026-11-26"],
        }
    ),
]

#: A moment with its UTC offset (a naive one is ambiguous), on a date in the accepted range.
BoundedDateTime = Annotated[AwareDatetime, AfterValidator(check_datetime)]
