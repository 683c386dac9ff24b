"""The console's list component over a real table on both databases: every row once, in
order, whichever way the pages are walked; filters checked and applied; a bounded count;
exports of exactly what is filtered; and nothing a visitor types into the address can break
it."""

from __future__ import annotations

import base64
import io
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Select, null, select
from sqlalchemy.orm import Session
from tests.factories.core import make_tenant

from civicloud.core.csvsafe import BOM, read_csv
from civicloud.core.errors import PermissionDenied
from civicloud.core.i18n import N_
from civicloud.core.tenants import Tenant, TenantKind
from civicloud.core.xlsx import stream_workbook
from civicloud.web import lists
from civicloud.web.lists import Column, DayRange, Filter, ListSpec, ListState, Total
from civicloud.web.pages.rendering import PAGE_SIZES

SHANGHAI = ZoneInfo("Asia/Shanghai")
BASE = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def town(db_session: Session) -> tuple[Session, Tenant, list[Tenant]]:
    """A country with 37 cities whose names repeat (so that sorting needs its tiebreaker),
    created an hour apart."""
    country = make_tenant(db_session, kind=TenantKind.COUNTRY)
    cities = []
    for index in range(37):
        city = make_tenant(db_session, parent=country, kind=TenantKind.CITY)
        city.name_en = f"City {index % 5}"
        city.depth = index % 7
        city.created_at = BASE + timedelta(hours=index)
        cities.append(city)
    db_session.flush()
    return db_session, country, cities


def spec_of(country: Tenant, **changes: object) -> ListSpec:
    def refuse(query: Select[Any], value: str) -> Select[Any]:
        if value == "secret":
            raise PermissionDenied("not yours")
        return query

    values: dict[str, object] = {
        "name": "cities",
        "title": N_("Tenants"),
        "query": select(Tenant).where(Tenant.parent_id == country.id),
        "key": Tenant.id,
        "default_sort": "created_at",
        "columns": (
            Column("slug", N_("Code"), Tenant.slug, "code", sortable=True),
            Column("name", N_("Name"), Tenant.name_en, sortable=True),
            Column("depth", N_("Depth"), Tenant.depth, "count", sortable=True),
            Column("created_at", N_("Created"), Tenant.created_at, "datetime", sortable=True),
        ),
        "filters": (
            Filter("name", N_("Name"), "text", lambda q, v: q.where(Tenant.name_en == v)),
            Filter(
                "created",
                N_("Created"),
                "date_range",
                lambda q, d: q.where(
                    *([Tenant.created_at >= d.start] if d.start else []),
                    *([Tenant.created_at < d.end] if d.end else []),
                ),
            ),
            Filter(
                "depth",
                N_("Depth"),
                "choice",
                lambda q, v: q.where(Tenant.depth == int(v)),
                choices=[(str(n), str(n)) for n in range(7)],
                translate=False,
            ),
            Filter("who", N_("Who"), "text", refuse, refused=N_("You cannot see that.")),
        ),
        "totals": (Total("depths", N_("Depth"), Tenant.depth, kind="count"),),
        "page_size": 25,
    }
    values.update(changes)
    return ListSpec(**values)  # type: ignore[arg-type]


def walk(spec: ListSpec, session: Session, params: dict[str, str]) -> list[list[dict[str, object]]]:
    """Every page from the first, following "next"."""
    pages = []
    cursor: str | None = None
    while True:
        state = lists.read(spec, {**params, **({"cursor": cursor} if cursor else {})}, SHANGHAI)
        page = lists.run(spec, state, session)
        pages.append(page.rows)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
        assert len(pages) < 100


def order_of(cities: list[Tenant], sort: str, descending: bool) -> list[uuid.UUID]:
    attribute = {"slug": "slug", "name": "name_en", "depth": "depth", "created_at": "created_at"}
    ordered = sorted(cities, key=lambda c: (getattr(c, attribute[sort]), c.id), reverse=descending)
    return [c.id for c in ordered]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sort=st.sampled_from(["slug", "name", "depth", "created_at"]),
    descending=st.booleans(),
    size=st.sampled_from([25, 50]),
    tiny=st.integers(min_value=1, max_value=9),
)
def test_pages_forward_then_back_give_every_row_once_in_order(
    town: tuple[Session, Tenant, list[Tenant]], sort: str, descending: bool, size: int, tiny: int
) -> None:
    session, country, cities = town
    spec = spec_of(country, page_size=tiny)
    params = {"sort": sort, "dir": "desc" if descending else "asc"}
    if size != 25:
        params["size"] = str(size)
    pages = walk(spec, session, {**params, "size": str(tiny)})
    seen = [row["_key"] for page in pages for row in page]
    assert seen == order_of(cities, sort, descending)
    # and walking back from the last page with "previous" gives the same pages, reversed
    state = lists.read(spec, {**params, "size": str(tiny)}, SHANGHAI)
    last_cursor = None
    for _ in pages[:-1]:
        page = lists.run(spec, state, session)
        last_cursor = page.next_cursor
        assert last_cursor is not None
        state = lists.read(spec, {**params, "size": str(tiny), "cursor": last_cursor}, SHANGHAI)
    backwards = [lists.run(spec, state, session).rows]
    while True:
        page = lists.run(spec, state, session)
        if page.previous_cursor is None:
            break
        state = lists.read(
            spec, {**params, "size": str(tiny), "cursor": page.previous_cursor}, SHANGHAI
        )
        backwards.insert(0, lists.run(spec, state, session).rows)
    assert [row["_key"] for page in backwards for row in page] == seen


def test_a_day_range_is_whole_days_in_the_installations_zone(
    town: tuple[Session, Tenant, list[Tenant]],
) -> None:
    session, country, cities = town
    spec = spec_of(country, page_size=200)
    # 2026-11-02 in Shanghai is 2026-11-01 16:00 to 2026-11-02 16:00 UTC
    state = lists.read(spec, {"created_from": "2026-11-02", "created_to": "2026-11-02"}, SHANGHAI)
    assert state.values["created"] == DayRange(
        date(2026, 11, 2),
        date(2026, 11, 2),
        datetime(2026, 11, 1, 16, 0, tzinfo=UTC),
        datetime(2026, 11, 2, 16, 0, tzinfo=UTC),
    )
    page = lists.run(spec, state, session)
    expected = {
        c.id
        for c in cities
        if datetime(2026, 11, 1, 16, tzinfo=UTC)
        <= c.created_at
        < datetime(2026, 11, 2, 16, tzinfo=UTC)
    }
    assert {row["_key"] for row in page.rows} == expected
    assert page.count == len(expected) == 24


def test_count_and_totals_are_over_every_filtered_row_and_bounded(
    town: tuple[Session, Tenant, list[Tenant]],
) -> None:
    session, country, cities = town
    page = lists.run(spec_of(country), lists.read(spec_of(country), {}, SHANGHAI), session)
    assert page.count == 37
    assert not page.count_capped
    assert page.totals == {"depths": sum(c.depth for c in cities)}
    capped_spec = spec_of(country, count_limit=10)
    capped = lists.run(capped_spec, lists.read(capped_spec, {}, SHANGHAI), session)
    assert capped.count == 10
    assert capped.count_capped
    assert capped.totals == {}  # they would need every row


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"created_from": "2026-02-30"}, "created_from"),
        ({"created_from": "1999-12-31"}, "created_from"),
        ({"created_to": "yesterday"}, "created_to"),
        ({"created_from": "2026-11-05", "created_to": "2026-11-01"}, "created_to"),
        ({"depth": "8"}, "depth"),
        ({"name": "x" * 65}, "name"),
    ],
)
def test_a_bad_filter_is_an_error_on_its_field_and_nothing_is_queried(
    town: tuple[Session, Tenant, list[Tenant]], params: dict[str, str], field: str
) -> None:
    session, country, _cities = town
    spec = spec_of(country)
    state = lists.read(spec, params, SHANGHAI)
    assert field in state.errors
    page = lists.run(spec, state, session)
    assert page.rows == []
    assert page.count is None


def test_a_filter_the_reader_may_not_use_is_refused_plainly(
    town: tuple[Session, Tenant, list[Tenant]],
) -> None:
    session, country, _cities = town
    spec = spec_of(country)
    page = lists.run(spec, lists.read(spec, {"who": "secret"}, SHANGHAI), session)
    assert page.refused == "You cannot see that."
    assert page.rows == []


@settings(max_examples=200, deadline=None)
@given(
    params=st.dictionaries(
        st.sampled_from(
            ["cursor", "sort", "dir", "size", "name", "created_from", "created_to", "depth"]
        ),
        st.text(max_size=80),
    )
)
def test_nothing_typed_into_the_address_breaks_reading(params: dict[str, str]) -> None:
    country = Tenant(
        id=uuid.uuid4(), slug="x", name_zh="x", name_en="x", kind="country", path="/x/"
    )
    spec = spec_of(country)
    state = lists.read(spec, params, SHANGHAI)
    assert state.sort in {"slug", "name", "depth", "created_at"}
    assert state.size in (*PAGE_SIZES, spec.page_size)


def test_a_cursor_from_another_sort_is_not_used(
    town: tuple[Session, Tenant, list[Tenant]],
) -> None:
    session, country, _cities = town
    spec = spec_of(country, page_size=5)
    first = lists.run(spec, lists.read(spec, {}, SHANGHAI), session)
    assert first.next_cursor is not None
    state = lists.read(spec, {"sort": "name", "cursor": first.next_cursor}, SHANGHAI)
    assert state.cursor is None
    assert state.notice is not None


def test_the_csv_export_is_every_filtered_row_in_order_safe_for_a_spreadsheet(
    town: tuple[Session, Tenant, list[Tenant]],
) -> None:
    session, country, cities = town
    cities[0].name_en = "=cmd|' /C calc'!A0"
    cities[1].name_en = 'The "Old" Town, north'
    session.flush()
    base = spec_of(country)
    # and a column with nothing in it, which stays an empty cell
    spec = spec_of(country, columns=(*base.columns, Column("none", N_("None"), null())))
    state = lists.read(spec, {"sort": "name", "dir": "asc"}, SHANGHAI)
    text = lists.ExportText(translate=lambda m: m, zone=SHANGHAI, zone_name="Asia/Shanghai")
    query = lists.filtered_query(spec, state)
    content = b"".join(
        lists.csv_lines(
            lists.export_header(spec, text),
            lists.export_rows(spec, state, query, session, text, "csv"),
        )
    )
    assert content.startswith(BOM.encode())
    rows = read_csv(content)
    assert rows[0] == ["Code", "Name", "Depth", "Created (Asia/Shanghai)", "None"]
    assert {r[4] for r in rows[1:]} == {""}
    assert [r[1] for r in rows[1:]] == [
        c.name_en for c in sorted(cities, key=lambda c: (c.name_en, c.id))
    ]
    assert b"\"'=cmd|" in content
    created = {r[0]: r[3] for r in rows[1:]}
    first = cities[2]
    assert created[first.slug] == (first.created_at.astimezone(SHANGHAI)).strftime(
        "%Y-%m-%d %H:%M:%S"
    )


def test_the_excel_export_has_typed_cells(town: tuple[Session, Tenant, list[Tenant]]) -> None:
    session, country, cities = town
    spec = spec_of(country)
    state = lists.read(spec, {}, SHANGHAI)
    text = lists.ExportText(translate=lambda m: m, zone=SHANGHAI, zone_name="Asia/Shanghai")
    rows = lists.export_rows(spec, state, lists.filtered_query(spec, state), session, text)
    book = openpyxl.load_workbook(
        io.BytesIO(
            b"".join(stream_workbook(rows, header=lists.export_header(spec, text), title="Tenants"))
        )
    )
    sheet = book.active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    assert len(values) == 38
    newest = max(cities, key=lambda c: c.created_at)
    assert values[1][0] == newest.slug
    assert values[1][2] == newest.depth
    assert values[1][3] == newest.created_at.astimezone(SHANGHAI).replace(tzinfo=None)


def test_a_state_without_filters_says_so() -> None:
    assert not ListState({}, {}, {}, "x", True, 25).filtered


@pytest.mark.parametrize(
    "values",
    [
        [["s", "yesterday"], ["s", "x"]],
        [["t", "2026-11-02T00:00:00"], ["u", "0" * 32]],  # a time without its zone
        [["i", 10**30], ["u", "0" * 32]],
        [["t", "2026-11-02T00:00:00+00:00"], ["s", "not-a-uuid"]],
        [["b", True], ["u", "0" * 32]],
    ],
)
def test_a_forged_cursor_is_not_a_value_for_the_database(
    town: tuple[Session, Tenant, list[Tenant]], values: list[list[object]]
) -> None:
    session, country, _cities = town
    spec = spec_of(country)
    body = {"s": "created_at", "d": 1, "b": 0, "v": values}
    cursor = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
    state = lists.read(spec, {"cursor": cursor}, SHANGHAI)
    assert state.cursor is None
    assert state.notice is not None
    # and the page is the first one, as if no cursor had been given
    assert len(lists.run(spec, state, session).rows) == 25
