"""Money as people write and read it: yuan text in, integer fen out, and fen back as yuan.

Amounts are integer fen everywhere inside civicloud. People type yuan, in many ways: ``1000``,
``1,000``, ``¥1,000.50``, the same in full-width digits (from a Chinese input method) or
``12.5元``. :func:`parse_yuan` accepts those and refuses what could be read two ways, such as
``52,31`` (a decimal comma, or a mistyped ``5,231``?) or ``1.000,50``: a person is asked to say
it again rather than charged or refunded what we guessed. Nothing here uses a float.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

from civicloud.core.errors import InvalidInput

#: The largest amount a form may carry: 100 million yuan.
MAX_FORM_FEN = 10_000_000_000
_PLAIN = re.compile(r"(?P<whole>\d{1,12})(?:\.(?P<cents>\d{1,2}))?")
_GROUPED = re.compile(r"(?P<whole>\d{1,3}(?:,\d{3})+)(?:\.(?P<cents>\d{1,2}))?")
_MINUS = ("-", "−")  # noqa: RUF001 - the minus sign people paste from documents


class InvalidAmount(InvalidInput):
    """A yuan amount that is malformed, ambiguous, not positive or too large."""

    code = "core.invalid_amount"


def parse_yuan(text: str, *, max_fen: int = MAX_FORM_FEN) -> int:
    """A yuan amount typed by a person, as positive integer fen; ``InvalidAmount`` saying why not
    (its messages take no parameters, so a form can show one beside the field as it is).

    Full-width characters are folded (NFKC), blanks around the figure, a leading yuan sign or
    ``CNY`` and a trailing ``元`` are dropped. Commas are accepted only as thousands separators in
    groups of three (``1,000,000.50``); a point is the decimal separator, with at most two digits.
    """
    if not isinstance(text, str):
        raise InvalidAmount("enter an amount in yuan, such as 12.50")
    folded = unicodedata.normalize("NFKC", text).strip()
    folded = folded.removeprefix("CNY").removeprefix("RMB").strip()
    folded = folded.removeprefix("¥").removesuffix("元").strip()
    if not folded:
        raise InvalidAmount("enter an amount in yuan, such as 12.50")
    if folded.startswith(_MINUS):
        raise InvalidAmount("the amount must be more than zero")
    found = _PLAIN.fullmatch(folded) or _GROUPED.fullmatch(folded)
    if found is None:
        if re.fullmatch(r"[\d.,]+", folded) and ("," in folded):
            raise InvalidAmount(
                "this amount can be read in more than one way: write a point before the "
                "decimals and commas only between groups of three digits, such as 1,234.50"
            )
        if re.fullmatch(r"\d+\.\d{3,}", folded):
            raise InvalidAmount("an amount has at most two decimals")
        raise InvalidAmount("enter an amount in yuan, such as 12.50")
    whole = found.group("whole").replace(",", "")
    cents = (found.group("cents") or "").ljust(2, "0")
    fen = int(Decimal(whole) * 100) + int(cents or "0")
    if fen <= 0:
        raise InvalidAmount("the amount must be more than zero")
    if fen > max_fen:
        raise InvalidAmount("the amount is larger than a form may carry")
    return fen


def format_yuan(amount_fen: int, language: str = "en") -> str:
    """Integer fen as yuan for people: ``¥1,234.56`` in Chinese, ``CNY 1,234.56`` in English."""
    sign = "-" if amount_fen < 0 else ""
    whole, cents = divmod(abs(amount_fen), 100)
    symbol = "¥" if language == "zh" else "CNY "
    return f"{sign}{symbol}{whole:,}.{cents:02d}"
