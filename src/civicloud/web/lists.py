"""Lists people work with: filters, sorting, cursor pages, a count and totals, and exports.

Every console list (payments, bills, the audit log, a module's buckets or signal plans) is one
:class:`ListSpec` rendered by the macros in ``templates/lists.html``; it works without script.

The parts, and who supplies each:

* **The rows** — a service function returns an *authorised* ``Select`` (its FROM, joins and
  WHERE: only what the actor may see), never executed by the page. The spec replaces its
  columns with its own :class:`Column` expressions. A filter that needs something the actor may
  not see (a biller of another city) raises the service's ``PermissionDenied`` or ``NotFound``
  from its ``apply``; the list then says so plainly (:attr:`ListPage.refused`) instead of
  showing an empty list.
* **Filters** (:class:`Filter`) — text, a choice among values, a date range (days in the
  installation's zone, so "1 to 3 December" means Beijing's December 1st 00:00 to December 4th
  00:00 for a Beijing installation), an amount in yuan. Each is read from the query string and
  checked; a bad value is shown beside its field (:attr:`ListState.errors`) and nothing is
  queried. Filters are applied by the spec's ``apply`` functions, written next to the query:
  an account number filter is an ``EXISTS`` over the bills, a date range a half-open interval
  over an indexed column.
* **Sorting** — by a column marked ``sortable`` (which must never be NULL), then by the spec's
  unique ``key``, so that the order is total.
* **Pages** — cursors, not offsets: a page is ``WHERE (sort, key) < (last row's) ORDER BY sort,
  key LIMIT n+1``, one index range scan, as fast on page 20,000 of a million rows as on the
  first. The cursor is the last (or, going back, the first) row's sort values, in the URL.
* **Count and totals** — counted up to :attr:`ListSpec.count_limit` rows (a bounded scan);
  past it the page says "more than 100,000" and totals, which would need every row, are not
  computed ("narrow the search to see totals").
* **Exports** — CSV (``core.csvsafe``: a BOM for Chinese, every cell safe from formula
  injection) and Excel (``core.xlsx``: typed cells, so account numbers keep their zeros) of
  exactly the filtered rows in the chosen order, streamed in batches from a read-only unit of
  work of their own (the request's has closed when the body is sent). Money is exported as
  yuan numbers, times in the installation's zone, labels in the page's language.

A page adapter reads the request (:func:`read`), runs the list (:func:`run`) and renders its
template with the :class:`ListView`, or answers an export (:func:`export_response`) when the
query string asks ``format=csv`` or ``format=xlsx`` — :func:`respond` does all three.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any, Literal, cast
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import (
    DateTime,
    Select,
    SQLColumnExpression,
    bindparam,
    func,
    literal,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.orm import Session

from civicloud.core.csvsafe import BOM, neutralise
from civicloud.core.dates import DateOutOfRange, parse_date
from civicloud.core.errors import NotFound, PermissionDenied
from civicloud.core.i18n import N_
from civicloud.core.money import InvalidAmount, parse_yuan
from civicloud.core.xlsx import MEDIA_TYPE as XLSX_MEDIA_TYPE
from civicloud.core.xlsx import stream_workbook
from civicloud.web.deps import services_of
from civicloud.web.pages.rendering import PAGE_SIZES, get_renderer, page_language

ColumnKind = Literal["text", "code", "money", "count", "bytes", "datetime", "date", "label"]
FilterKind = Literal["text", "choice", "date_range", "amount"]
ExportFormat = Literal["csv", "xlsx"]

#: Rows an export fetches from the database at a time.
EXPORT_BATCH = 2000
FORMATS: tuple[ExportFormat, ...] = ("csv", "xlsx")

BAD_DATE = N_("Enter a date as YYYY-MM-DD, between 2000-01-01 and 2100-12-31.")
DATES_UPSIDE_DOWN = N_("The first day is after the last day.")
BAD_AMOUNT = N_("Enter an amount in yuan with at most two decimals, such as 12.50.")
BAD_CHOICE = N_("Choose one of the values offered.")
TOO_LONG = N_("Enter at most %(count)s characters.")
YUAN = N_("yuan")
BAD_CURSOR = N_("That page address is out of date; the list starts again from the top.")


@dataclass(frozen=True)
class DayRange:
    """A date range filter's value: the days as chosen (in the installation's zone, both
    included), and the same as moments in UTC, ``[start, end)``, for a column of times."""

    first: date | None
    last: date | None
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class Column:
    """One column of a list: what is selected, how it is shown and exported."""

    key: str
    #: The column's heading, a msgid.
    label: str
    expr: SQLColumnExpression[Any]
    kind: ColumnKind = "text"
    #: Whether people may sort by it; the expression must never be NULL.
    sortable: bool = False
    #: For ``label`` columns: the msgid shown for each stored code.
    labels: Mapping[str, str] | None = None
    #: For ``label`` columns: the badge class suffix for a code (``badge-ok``), if shown as one.
    badge: Callable[[str], str] | None = None
    #: A link for the cell, from the row (``None``: no link).
    href: Callable[[Mapping[str, Any]], str | None] | None = None
    #: Shown in the cell instead of the value (a msgid): a link's words, such as "Download".
    text: str | None = None
    #: Shown in the table (a column may be exported only, such as a payer's full name).
    show: bool = True
    export: bool = True


@dataclass(frozen=True)
class Filter:
    """One filter of a list, read from the query string as ``name`` (a date range as
    ``name_from`` and ``name_to``)."""

    name: str
    #: The field's label, a msgid.
    label: str
    kind: FilterKind
    #: Narrows the query by the checked value: ``str`` for text and choice, ``int`` fen for an
    #: amount, a :class:`DayRange` for a date range.
    apply: Callable[[Select[Any], Any], Select[Any]]
    #: For ``choice``: (value, text) pairs; texts are msgids when ``translate`` is set.
    choices: Sequence[tuple[str, str]] = ()
    translate: bool = True
    #: For ``choice``: take a value not among ``choices`` too, for ``apply`` to judge (a biller
    #: the reader may not see is refused by the service, plainly, not as a bad value).
    open: bool = False
    hint: str | None = None
    max_length: int = 64
    #: What the list says when ``apply`` or ``check`` refuses the value (a biller the reader
    #: may not see).
    refused: str | None = None
    #: Run on the checked value before ``apply``, every request: the value to filter by (a
    #: biller's id as a UUID), or the service's ``PermissionDenied``/``NotFound`` when the
    #: reader may not use it.
    check: Callable[[Any], Any] | None = None
    #: ``apply`` only puts the value into SQL as it is (``column == value``, ``column >=
    #: value``; a date range's ``start``/``end``/``first``/``last``), so that a bound parameter
    #: may stand for it: a list with a ``shape`` then builds its statements once for every
    #: value. ``False``: the value is part of the statement's shape.
    bind: bool = False


@dataclass(frozen=True)
class Total:
    """A figure over every filtered row: a sum of money, a count."""

    key: str
    label: str
    expr: SQLColumnExpression[Any]
    kind: Literal["money", "count"] = "money"


@dataclass(frozen=True)
class ListSpec:
    """Everything one list shows; built per request by the page (its query is authorised)."""

    #: Names the list's fields in the page and its export files (``payments``).
    name: str
    #: The table's caption and the export's sheet title, a msgid.
    title: str
    #: The authorised query, or a function that makes it (called only when a statement is
    #: built: a list with a ``shape`` skips it when its statements are kept).
    query: Select[Any] | Callable[[], Select[Any]]
    #: A unique, never-NULL column that makes the order total (a primary key).
    key: SQLColumnExpression[Any]
    columns: Sequence[Column]
    default_sort: str
    default_descending: bool = True
    filters: Sequence[Filter] = ()
    totals: Sequence[Total] = ()
    page_size: int = 50
    #: What the list says when nothing matches, a msgid.
    empty: str = N_("Nothing matches.")
    count_limit: int = 100_000
    #: What, besides its filters, sort and page, makes this list's statements what they are
    #: (its name, the language of its columns, the subtrees the reader's grants reach): when
    #: given, the statements are built once per shape and kept (:data:`STATEMENTS`), and each
    #: request only binds its values; its filters then authorise in ``check`` (which runs every
    #: request), never in ``apply`` (which runs once per shape). ``None``: built every request.
    shape: Hashable | None = None

    def base(self) -> Select[Any]:
        """The authorised query."""
        return self.query if isinstance(self.query, Select) else self.query()

    def column(self, key: str) -> Column | None:
        return next((c for c in self.columns if c.key == key), None)


@dataclass
class ListState:
    """What the request asked of a list: filter values as typed, checked values, sort, page."""

    #: Each field as typed, to fill the form again (date ranges as ``name_from``/``name_to``).
    typed: dict[str, str]
    #: Checked filter values by filter name (only the filters given).
    values: dict[str, Any]
    #: msgid (and params) of each field's error, by field name.
    errors: dict[str, tuple[str, dict[str, Any]]]
    sort: str
    descending: bool
    size: int
    cursor: tuple[list[Any], bool] | None = None
    #: A notice about the request itself (an out-of-date cursor), a msgid.
    notice: str | None = None

    @property
    def filtered(self) -> bool:
        return bool(self.values)


@dataclass
class ListPage:
    """One page of a list, ready for the template."""

    rows: list[dict[str, Any]]
    #: Cursors of the pages after and before this one (``None``: there is none).
    next_cursor: str | None = None
    previous_cursor: str | None = None
    count: int | None = None
    #: ``count`` is a floor: there are more rows than the spec counts.
    count_capped: bool = False
    totals: dict[str, int] = field(default_factory=dict)
    #: Why nothing is shown: the reader may not see what the filters name (a msgid).
    refused: str | None = None


@dataclass
class ListView:
    """A list's spec, the request's state and the page: what ``lists.html`` renders."""

    spec: ListSpec
    state: ListState
    page: ListPage
    path: str

    @property
    def shown_columns(self) -> list[Column]:
        return [c for c in self.spec.columns if c.show]

    def _query(self, **changes: object) -> str:
        params: dict[str, str] = {k: v for k, v in self.state.typed.items() if v}
        if self.state.sort != self.spec.default_sort:
            params["sort"] = self.state.sort
        if self.state.descending != self.spec.default_descending:
            params["dir"] = "desc" if self.state.descending else "asc"
        if self.state.size != self.spec.page_size:
            params["size"] = str(self.state.size)
        for name, value in changes.items():
            if value is None:
                params.pop(name, None)
            else:
                params[name] = str(value)
        return urlencode(params)

    def url(self, **changes: object) -> str:
        """This list's address with the same filters, sort and size, and ``changes``."""
        query = self._query(**changes)
        return f"{self.path}?{query}" if query else self.path

    def sort_url(self, column: Column) -> str:
        """Sort by ``column``; asking again for the same column turns the order round."""
        if column.key == self.state.sort:
            descending = not self.state.descending
        else:
            descending = column.kind in ("datetime", "date", "money", "count", "bytes")
        return self.url(
            sort=None if column.key == self.spec.default_sort else column.key,
            dir=None
            if descending == self.spec.default_descending
            else "desc"
            if descending
            else "asc",
            cursor=None,
        )

    def sorted_by(self, column: Column) -> str | None:
        """``ascending``/``descending`` for the column the list is sorted by (``aria-sort``)."""
        if column.key != self.state.sort:
            return None
        return "descending" if self.state.descending else "ascending"

    def export_url(self, fmt: ExportFormat) -> str:
        return self.url(format=fmt, cursor=None)

    @property
    def next_url(self) -> str | None:
        return self.url(cursor=self.page.next_cursor) if self.page.next_cursor else None

    @property
    def previous_url(self) -> str | None:
        return self.url(cursor=self.page.previous_cursor) if self.page.previous_cursor else None

    @property
    def first_url(self) -> str | None:
        return self.url(cursor=None) if self.state.cursor is not None else None

    @property
    def clear_url(self) -> str:
        return self.path


# --- reading the request ---------------------------------------------------------------------


def _day_start(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _read_range(
    item: Filter,
    params: Mapping[str, str],
    zone: tzinfo,
    typed: dict[str, str],
    errors: dict[str, tuple[str, dict[str, Any]]],
) -> DayRange | None:
    days: list[date | None] = []
    for end in ("from", "to"):
        name = f"{item.name}_{end}"
        text = params.get(name, "").strip()[:40]
        typed[name] = text
        day = None
        if text:
            try:
                day = parse_date(text)
            except (DateOutOfRange, ValueError):
                errors[name] = (BAD_DATE, {})
        days.append(day)
    first, last = days
    if first and last and first > last:
        errors[f"{item.name}_to"] = (DATES_UPSIDE_DOWN, {})
    if not (first or last) or any(k.startswith(item.name + "_") for k in errors):
        return None
    return DayRange(
        first,
        last,
        _day_start(first, zone) if first else None,
        _day_start(last + timedelta(days=1), zone) if last else None,
    )


def _read_value(item: Filter, text: str) -> tuple[Any, tuple[str, dict[str, Any]] | None]:
    if len(text) > item.max_length:
        return None, (TOO_LONG, {"count": item.max_length})
    if item.kind == "choice":
        if item.open or text in {value for value, _ in item.choices}:
            return text, None
        return None, (BAD_CHOICE, {})
    if item.kind == "amount":
        try:
            return parse_yuan(text), None
        except InvalidAmount:
            return None, (BAD_AMOUNT, {})
    return text, None


def read(spec: ListSpec, params: Mapping[str, str], zone: tzinfo) -> ListState:
    """The request's filters, sort, size and cursor for ``spec``, each checked.

    Dates are days in ``zone``; a range becomes ``[first day 00:00, last day + 1 00:00)`` in
    UTC. A bad sort, size or cursor falls back to the default (a stale bookmark still opens).
    """
    typed: dict[str, str] = {}
    values: dict[str, Any] = {}
    errors: dict[str, tuple[str, dict[str, Any]]] = {}
    for item in spec.filters:
        if item.kind == "date_range":
            days = _read_range(item, params, zone, typed, errors)
            if days is not None:
                values[item.name] = days
            continue
        text = params.get(item.name, "").strip()
        typed[item.name] = text[: item.max_length * 2]
        if not text:
            continue
        value, error = _read_value(item, text)
        if error is not None:
            errors[item.name] = error
        else:
            values[item.name] = value
    sortable = {c.key: c for c in spec.columns if c.sortable}
    sort = params.get("sort", "")
    if sort not in sortable:
        sort = spec.default_sort
    direction = params.get("dir", "")
    descending = (
        spec.default_descending if direction not in ("asc", "desc") else direction == "desc"
    )
    try:
        size = int(params.get("size", "") or spec.page_size)
    except ValueError:
        size = spec.page_size
    if size not in PAGE_SIZES and size != spec.page_size:
        size = spec.page_size
    state = ListState(typed, values, errors, sort, descending, size)
    raw_cursor = params.get("cursor", "")
    if raw_cursor:
        decoded = _decode_cursor(raw_cursor, state, spec)
        if decoded is None:
            state.notice = BAD_CURSOR
        state.cursor = decoded
    return state


# --- cursors ---------------------------------------------------------------------------------


def _tagged(value: Any) -> list[Any]:
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, date):
        return ["d", value.isoformat()]
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, uuid.UUID):
        return ["u", value.hex]
    if isinstance(value, Decimal):
        return ["n", str(value)]
    return ["s", str(value)]


def _untagged(item: Any) -> Any:
    tag, value = item
    if tag == "t":
        return datetime.fromisoformat(value)
    if tag == "d":
        return date.fromisoformat(value)
    if tag == "u":
        return uuid.UUID(hex=value)
    if tag == "n":
        return Decimal(value)
    if tag in ("i", "b", "s") and isinstance(value, (int, str)):
        return value
    raise ValueError(tag)


def _encode_cursor(state: ListState, values: Sequence[Any], before: bool) -> str:
    body: dict[str, Any] = {"s": state.sort, "d": int(state.descending), "b": int(before)}
    body["v"] = [_tagged(v) for v in values]
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str, state: ListState, spec: ListSpec) -> tuple[list[Any], bool] | None:
    """A cursor's row values, if it was made for this sort and each value is what its column
    holds; ``None`` for anything else (a cursor is the visitor's to edit: it must never reach
    the database as a value of the wrong type)."""
    if len(text) > 600:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if body["s"] != state.sort or bool(body["d"]) != state.descending:
            return None
        values = [_untagged(item) for item in body["v"]]
        if len(values) != 2:
            return None
        column = spec.column(state.sort)
        if column is None or not (_fits(column.expr, values[0]) and _fits(spec.key, values[1])):
            return None
        return values, bool(body["b"])
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError):
        return None


#: The widest integer a cursor may carry (a signed 64-bit column's).
_MAX_INT = 2**63 - 1


def _fits(expr: Any, value: Any) -> bool:
    """Whether ``value`` is of the Python type the column ``expr`` holds."""
    column_type = getattr(expr, "type", None)
    # A decorated type (core.db.UTCDateTime) holds what its implementation holds.
    column_type = getattr(column_type, "impl_instance", column_type)
    try:
        expected = column_type.python_type  # type: ignore[union-attr]
    except (AttributeError, NotImplementedError):
        expected = object
    if expected is object:
        return isinstance(value, str | int) and not isinstance(value, bool)
    if expected is datetime:
        return isinstance(value, datetime) and value.tzinfo is not None
    if expected is date:
        return isinstance(value, date) and not isinstance(value, datetime)
    if expected is int:
        return type(value) is int and -_MAX_INT <= value <= _MAX_INT
    if expected is bool:
        return type(value) is bool
    if expected is str:
        return isinstance(value, str) and len(value) <= 500
    return isinstance(value, expected)


# --- running ---------------------------------------------------------------------------------


def filtered_query(spec: ListSpec, state: ListState) -> Select[Any]:
    """``spec``'s query narrowed by the request's filters (which may raise the service's
    ``PermissionDenied``/``NotFound``)."""
    query = spec.base()
    for item in spec.filters:
        if item.name in state.values:
            value = state.values[item.name]
            query = item.apply(query, item.check(value) if item.check else value)
    return query


class _Statements:
    """Built statements by shape, least recently used first out (shared by every request)."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._kept: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        with self._lock:
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
                return found
        made = build()
        with self._lock:
            self._kept[key] = made
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
        return made


#: The statements of lists with a ``shape``: a search binds its values into statements built
#: (and keyed by SQLAlchemy's compiled cache) once, instead of building and keying them anew.
STATEMENTS = _Statements()


def _bound(
    spec: ListSpec, state: ListState
) -> tuple[Hashable, dict[str, Any], Callable[[], Select[Any]]]:
    """For a list with a shape: the filters' part of the statements' key, the values to bind,
    and a function that builds the filtered query with bound parameters standing for them
    (called only when the statements are not kept yet). ``check`` runs here, every request."""
    shape: list[Hashable] = []
    params: dict[str, Any] = {}
    placeholders: dict[str, Any] = {}
    for item in spec.filters:
        if item.name not in state.values:
            continue
        value = state.values[item.name]
        if item.check is not None:
            value = item.check(value)
        if not item.bind:
            shape.append((item.name, "=", value))
            placeholders[item.name] = value
        elif isinstance(value, DayRange):
            parts: dict[str, Any] = {}
            for part in ("first", "last", "start", "end"):
                given = getattr(value, part)
                if given is not None:
                    params[f"f_{item.name}_{part}"] = given
                    parts[part] = bindparam(f"f_{item.name}_{part}")
            shape.append((item.name, tuple(sorted(parts))))
            placeholders[item.name] = DayRange(
                parts.get("first"), parts.get("last"), parts.get("start"), parts.get("end")
            )
        else:
            params[f"f_{item.name}"] = value
            shape.append(item.name)
            placeholders[item.name] = bindparam(f"f_{item.name}")

    def build() -> Select[Any]:
        query = spec.base()
        for item in spec.filters:
            if item.name in placeholders:
                query = item.apply(query, placeholders[item.name])
        return query

    return tuple(shape), params, build


def _ordered(spec: ListSpec, state: ListState, query: Select[Any], *, reverse: bool) -> Select[Any]:
    column = spec.column(state.sort)
    assert column is not None
    descending = state.descending != reverse
    sort, key = column.expr, spec.key
    return query.order_by(
        sort.desc() if descending else sort.asc(), key.desc() if descending else key.asc()
    )


def _selected(spec: ListSpec, query: Select[Any]) -> Select[Any]:
    columns: list[Any] = [c.expr.label(c.key) for c in spec.columns]
    return cast("Select[Any]", query.with_only_columns(*columns, spec.key.label("_key")))


def _after(spec: ListSpec, state: ListState, values: Sequence[Any], before: bool) -> Any:
    column = spec.column(state.sort)
    assert column is not None
    sort, key = column.expr, spec.key
    # Row values compare as one: the database walks one index range (PostgreSQL, SQLite 3.15+).
    mark = tuple_(
        bindparam("c_sort", values[0], type_=getattr(sort, "type", None)),
        bindparam("c_key", values[1], type_=getattr(key, "type", None)),
    )
    forward = state.descending != before
    return tuple_(sort, key) < mark if forward else tuple_(sort, key) > mark


def run(spec: ListSpec, state: ListState, session: Session) -> ListPage:
    """The page the request asked for, with its count and totals (nothing if its filters are
    wrong; :attr:`ListPage.refused` if the reader may not see what they name)."""
    if state.errors:
        return ListPage(rows=[])
    try:
        if spec.shape is None:
            filtered = filtered_query(spec, state)
            shape: Hashable = None
            params: dict[str, Any] = {}
            query: Callable[[], Select[Any]] = lambda: filtered  # noqa: E731
        else:
            shape, params, query = _bound(spec, state)
    except (PermissionDenied, NotFound):
        refused = next(
            (f.refused for f in spec.filters if f.name in state.values and f.refused), None
        )
        return ListPage(rows=[], refused=refused or N_("You cannot see what this search names."))
    before = state.cursor is not None and state.cursor[1]
    if state.cursor is not None:
        params = {**params, "c_sort": state.cursor[0][0], "c_key": state.cursor[0][1]}

    def page_statement() -> Select[Any]:
        selected = _selected(spec, query())
        if state.cursor is not None:
            selected = selected.where(_after(spec, state, state.cursor[0], before))
        return _ordered(spec, state, selected, reverse=before).limit(state.size + 1)

    try:
        if spec.shape is None:
            statement = page_statement()
        else:
            sort = (
                state.sort,
                state.descending,
                state.size,
                None if state.cursor is None else before,
            )
            statement = STATEMENTS.get(("page", spec.shape, shape, sort), page_statement)
    except (PermissionDenied, NotFound):
        # A shaped list authorises in ``check`` (its statements are kept); one that refuses in
        # ``apply`` is still an answer, not an error.
        return ListPage(rows=[], refused=N_("You cannot see what this search names."))
    connection = session.connection()
    fetched = [dict(row._mapping) for row in connection.execute(statement, params)]
    more = len(fetched) > state.size
    rows = fetched[: state.size]
    if before:
        rows.reverse()
    page = ListPage(rows=rows)
    _cursors(state, page, more=more, before=before)
    filters = {k: v for k, v in params.items() if not k.startswith("c_")}
    if spec.shape is None:
        counting = _count_statement(spec, query())
    else:
        counting = STATEMENTS.get(
            ("count", spec.shape, shape), lambda: _count_statement(spec, query())
        )
    _count(spec, connection.execute(counting, filters).one(), page)
    return page


def _cursors(state: ListState, page: ListPage, *, more: bool, before: bool) -> None:
    if not page.rows:
        return
    first, last = page.rows[0], page.rows[-1]
    # Going forward, a row left over means a next page, and a cursor means we came from a
    # previous one; coming back, the page we came from is next, and a row left over means
    # there are more before.
    has_next = more if not before else True
    has_previous = state.cursor is not None if not before else more
    if has_next:
        page.next_cursor = _encode_cursor(state, [last[state.sort], last["_key"]], False)
    if has_previous:
        page.previous_cursor = _encode_cursor(state, [first[state.sort], first["_key"]], True)


def _count_statement(spec: ListSpec, query: Select[Any]) -> Select[Any]:
    # One statement: the rows up to the limit (one more tells "more than"), counted and summed;
    # past the limit the sums would be of a part only, and are not shown.
    columns: list[Any] = [literal(1).label("_one")]
    columns += [t.expr.label(t.key) for t in spec.totals]
    bounded = (
        query.with_only_columns(*columns).order_by(None).limit(spec.count_limit + 1).subquery()
    )
    sums = [func.coalesce(func.sum(bounded.c[t.key]), 0) for t in spec.totals]
    return select(func.count(), *sums).select_from(bounded)


def _count(spec: ListSpec, found: Any, page: ListPage) -> None:
    limit = spec.count_limit
    count = int(found[0])
    page.count = min(count, limit)
    page.count_capped = count > limit
    if spec.totals and not page.count_capped:
        page.totals = {t.key: int(found[1 + i]) for i, t in enumerate(spec.totals)}


def view(spec: ListSpec, state: ListState, session: Session, path: str) -> ListView:
    """Run ``spec`` for the request and wrap it for the template."""
    return ListView(spec, state, run(spec, state, session), path)


# --- exports ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportText:
    """How an export writes what a person reads: the page's language and zone."""

    translate: Callable[[str], str]
    zone: tzinfo
    zone_name: str


def _converter(column: Column, text: ExportText, fmt: ExportFormat) -> Callable[[Any], object]:
    """How one column's stored values are written: chosen once per export, not per cell. For
    CSV the result is the cell's text, already safe for a spreadsheet; for Excel a typed
    value (:mod:`civicloud.core.xlsx`)."""
    zone = text.zone
    if column.kind == "money":
        if fmt == "xlsx":
            return lambda fen: None if fen is None else Decimal(int(fen)).scaleb(-2)

        def yuan(fen: Any) -> str:
            if fen is None:
                return ""
            sign, (whole, cents) = ("-" if fen < 0 else ""), divmod(abs(int(fen)), 100)
            return f"{sign}{whole}.{cents:02d}"

        return yuan
    if column.kind == "datetime":

        def moment(value: Any) -> object:
            if not isinstance(value, datetime):
                return None if fmt == "xlsx" else _text_cell(value)
            aware = value if value.tzinfo else value.replace(tzinfo=UTC)
            local = aware.astimezone(zone).replace(tzinfo=None, microsecond=0)
            return local if fmt == "xlsx" else local.isoformat(" ")

        return moment
    if column.kind == "label":
        words = {
            code: text.translate(msgid) if fmt == "xlsx" else _text_cell(text.translate(msgid))
            for code, msgid in (column.labels or {}).items()
        }
        fallback = _typed if fmt == "xlsx" else _text_cell
        empty = None if fmt == "xlsx" else ""
        return lambda value: empty if value is None else words.get(str(value)) or fallback(value)
    if column.kind in ("count", "bytes") and fmt == "csv":
        return lambda value: "" if value is None else str(value)
    if fmt == "xlsx":
        return _typed
    return _text_cell


def _typed(value: Any) -> object:
    return str(value) if isinstance(value, uuid.UUID) else value


def _text_cell(value: Any) -> str:
    """A CSV cell's text, safe for a spreadsheet and with its quotes doubled (the writer only
    puts the cells between quotes)."""
    if value is None:
        return ""
    cell = (
        value
        if type(value) is str
        else (value.isoformat() if isinstance(value, date) else str(value))
    )
    # Most cells start with a letter or a digit (CJK included): nothing there can be a formula.
    if not cell[:1].isalnum():
        cell = neutralise(cell)
    return cell.replace('"', '""') if '"' in cell else cell


def export_header(spec: ListSpec, text: ExportText) -> list[str]:
    """The export's column titles, money and times saying their unit and zone."""
    names = []
    for column in spec.columns:
        if not column.export:
            continue
        name = text.translate(column.label)
        if column.kind == "money":
            name = f"{name} ({text.translate(YUAN)})"
        elif column.kind == "datetime":
            name = f"{name} ({text.zone_name})"
        names.append(name)
    return names


def export_rows(
    spec: ListSpec,
    state: ListState,
    query: Select[Any],
    session: Session,
    text: ExportText,
    fmt: ExportFormat = "xlsx",
) -> Iterator[list[object]]:
    """Every row of the filtered ``query`` in the list's order, as export values (typed for
    Excel, safe text for CSV), fetched in batches through a server-side cursor."""
    # Times straight from the driver (the export puts them in the installation's zone itself):
    # the column type's own conversion to UTC would be a second conversion of every cell.
    raw = [
        type_coerce(c.expr, DateTime(timezone=True)) if c.kind == "datetime" else c.expr
        for c in spec.columns
    ]
    selected = query.with_only_columns(
        *(expr.label(c.key) for expr, c in zip(raw, spec.columns, strict=True)),
        spec.key.label("_key"),
    )
    ordered = _ordered(spec, state, cast("Select[Any]", selected), reverse=False)
    exported = [(i, _converter(c, text, fmt)) for i, c in enumerate(spec.columns) if c.export]
    # The Core connection, not the ORM: these are plain columns, and a million rows are many.
    result = session.connection().execute(ordered.execution_options(yield_per=EXPORT_BATCH))
    for batch in result.partitions():
        for row in batch:
            yield [convert(row[i]) for i, convert in exported]


def csv_lines(header: Sequence[str], rows: Iterator[Sequence[object]]) -> Iterator[bytes]:
    """``core.csvsafe``'s format, streamed: a BOM, quoted cells, CRLF. The rows come from
    :func:`export_rows` with ``fmt="csv"``: their cells are text already safe for a
    spreadsheet, quotes doubled."""

    def line(values: Sequence[object]) -> str:
        return '"' + '","'.join(values) + '"\r\n'  # type: ignore[arg-type]

    titles = [neutralise(name).replace('"', '""') for name in header]
    yield (BOM + line(titles)).encode("utf-8")
    pending: list[str] = []
    for values in rows:
        pending.append(line(values))
        if len(pending) >= 500:
            yield "".join(pending).encode("utf-8")
            pending.clear()
    if pending:
        yield "".join(pending).encode("utf-8")


def export_response(
    spec: ListSpec,
    state: ListState,
    query: Select[Any],
    fmt: ExportFormat,
    *,
    open_session: Callable[[], AbstractContextManager[Session]],
    text: ExportText,
) -> Response:
    """The filtered ``query`` (:func:`filtered_query`, applied in the request, so that a refused
    filter is still an answer and not a broken download) as a streamed CSV or Excel file.

    ``open_session`` gives the read-only unit of work the stream holds while it runs: the
    request's own has ended by the time the body is sent.
    """

    def body() -> Iterator[bytes]:
        with open_session() as session:
            header = export_header(spec, text)
            rows = export_rows(spec, state, query, session, text, fmt)
            if fmt == "csv":
                yield from csv_lines(header, rows)
            else:
                yield from stream_workbook(rows, header=header, title=text.translate(spec.title))

    media = "text/csv; charset=utf-8" if fmt == "csv" else XLSX_MEDIA_TYPE
    stamp = datetime.now(text.zone).strftime("%Y%m%d-%H%M")
    return StreamingResponse(
        body(),
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{spec.name}-{stamp}.{fmt}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def requested_format(request: Request) -> ExportFormat | None:
    """``csv`` or ``xlsx`` when the request asks for an export."""
    fmt = request.query_params.get("format", "")
    return "csv" if fmt == "csv" else "xlsx" if fmt == "xlsx" else None


def respond(
    request: Request,
    spec: ListSpec,
    session: Session,
    render_page: Callable[[ListView], Response],
    *,
    defaults: Mapping[str, str] | None = None,
) -> Response:
    """A list page's whole answer: the page (``render_page`` with the list's view), or, when
    the query string asks ``format=csv|xlsx`` and the filters are right and allowed, the
    export of exactly what the page lists. ``defaults``: filter values the page implies when
    the query string does not give them (the biller a settlements page was opened for)."""
    renderer = get_renderer(request)
    zone = renderer.time_zone
    params = {**(defaults or {}), **request.query_params}
    state = read(spec, params, zone)
    fmt = requested_format(request)
    if fmt is not None and not state.errors:
        try:
            query = filtered_query(spec, state)
        except (PermissionDenied, NotFound):
            pass  # the page says why
        else:
            language = page_language(request)
            text = ExportText(
                translate=lambda message: renderer.gettext(language, message),
                zone=zone,
                zone_name=str(zone),
            )
            services = services_of(request)
            return export_response(
                spec,
                state,
                query,
                fmt,
                open_session=lambda: services.db.unit_of_work(write=False),
                text=text,
            )
    listed = view(spec, state, session, request.url.path)
    response = render_page(listed)
    if state.errors:
        response.status_code = 422
    return response
