"""Reading the audit log: its filters (action, actor, tenant, outcome, a range of days in the
installation's zone), what each reader may see, every unusable filter refused saying which, and
one record checked where it stands, on both databases."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM, make_tenant, unique

from civicloud.core import audit
from civicloud.core.actor import Actor, Grant
from civicloud.core.audit import AuditFilter, AuditRecord, query
from civicloud.core.dates import DateOutOfRange
from civicloud.core.errors import InvalidInput, NotFound, PermissionDenied
from civicloud.core.tenants.models import Tenant

BEIJING = ZoneInfo("Asia/Shanghai")


def reader(name: str, tenant: Tenant | None, *permissions: str) -> Actor:
    """A user holding ``permissions`` at ``tenant`` (``None``: platform-wide)."""
    return Actor(
        kind="user",
        name=name,
        via="session",
        grants=(
            Grant(
                "custom",
                tenant.id if tenant else None,
                tenant.path if tenant else None,
                frozenset(permissions),
            ),
        ),
    )


@dataclass
class Log:
    root: Tenant
    a: Tenant
    b: Tenant
    who: str


@pytest.fixture
def log(db_session: Session) -> Log:
    """A root with two children, A and B, each with records by one actor of every outcome."""
    root = make_tenant(db_session)
    a = make_tenant(db_session, parent=root)
    b = make_tenant(db_session, parent=root)
    who = unique("actor")
    actor = Actor(kind="user", name=who, via="api_key:abc123")
    for tenant in (a, b):
        for outcome in audit.OUTCOMES:
            audit.record(
                session=db_session,
                actor=actor,
                action=f"tests.query.{outcome}",
                target=f"thing:{tenant.slug}",
                tenant_id=tenant.id,
                outcome=outcome,  # type: ignore[arg-type]
                detail={"reason": f"because {outcome}"},
            )
    return Log(root, a, b, who)


def rows(session: Session, actor: Actor, **filters: object) -> list[AuditRecord]:
    query = audit.audit_select(session=session, actor=actor, filters=AuditFilter(**filters))  # type: ignore[arg-type]
    return list(session.scalars(query))


def test_filters_by_actor_action_outcome_and_tenant(db_session: Session, log: Log) -> None:
    auditor = reader("root-auditor", log.root, "core.audit.read")
    # when the root's auditor asks for one actor's denied calls in A
    found = rows(db_session, auditor, actor_name=log.who, outcome="denied", tenant_id=log.a.id)
    # then exactly that record comes back, with its reason and how its actor came
    assert [(r.action, r.tenant_id) for r in found] == [("tests.query.denied", log.a.id)]
    assert audit.reason_of(found[0]) == "because denied"
    assert found[0].detail["via"] == "api_key:abc123"
    # and an action prefix selects what starts with it, newest first
    prefixed = rows(db_session, auditor, action="tests.query.", actor_name=log.who)
    assert len(prefixed) == 6
    assert [r.seq for r in prefixed] == sorted((r.seq for r in prefixed), reverse=True)


def test_a_tenant_auditor_sees_their_subtree_only(db_session: Session, log: Log) -> None:
    auditor = reader("a-auditor", log.a, "core.audit.read")
    found = rows(db_session, auditor, actor_name=log.who)
    assert {r.tenant_id for r in found} == {log.a.id}
    # a sibling's tenant does not exist for them
    with pytest.raises(NotFound):
        rows(db_session, auditor, tenant_id=log.b.id)
    # nor one of its records, asked for by number
    theirs = rows(db_session, reader("p", None, "core.audit.read"), tenant_id=log.b.id)
    with pytest.raises(NotFound):
        audit.get_record_or_raise(session=db_session, actor=auditor, seq=theirs[0].seq)


def test_a_reader_without_the_audit_permission_is_refused_not_given_nothing(
    db_session: Session, log: Log
) -> None:
    viewer = reader("viewer", log.a, "core.tenant.read")
    with pytest.raises(PermissionDenied):
        audit.audit_select(session=db_session, actor=viewer)
    with pytest.raises(PermissionDenied):
        audit.get_record_or_raise(session=db_session, actor=viewer, seq=1)
    assert not audit.may_read(viewer)
    assert not audit.may_verify(reader("a-auditor", log.a, "core.audit.read"))
    assert audit.may_verify(reader("platform", None, "core.audit.read"))


def test_a_range_of_days_is_whole_days_in_the_installations_zone(
    db_session: Session, log: Log
) -> None:
    # given a record at 23:30 Beijing time on 3 December 2024 (15:30 UTC)
    late = datetime(2024, 12, 3, 15, 30, tzinfo=UTC)
    (mine,) = rows(db_session, SYSTEM, actor_name=log.who, outcome="failed", tenant_id=log.a.id)
    db_session.execute(update(AuditRecord).where(AuditRecord.seq == mine.seq).values(at=late))
    db_session.expire_all()

    def days(first: str, last: str) -> list[int]:
        since, until = audit.day_range(first, last, zone=BEIJING)
        return [
            r.seq for r in rows(db_session, SYSTEM, actor_name=log.who, since=since, until=until)
        ]

    # then 3 December (in Beijing) holds it, and 4 December does not, though UTC's 3rd ends later
    assert days("2024-12-03", "2024-12-03") == [mine.seq]
    assert days("2024-12-04", "2024-12-05") == []
    assert days("", "2024-12-03") == [mine.seq]
    assert mine.seq not in days("2024-12-04", "")


@pytest.mark.parametrize(
    ("first", "last", "field"),
    [
        ("2026-13-01", "", "from"),
        ("", "3 December", "to"),
        ("2026-02-30", "", "from"),
        ("1999-12-31", "", "from"),
        ("", "2101-01-01", "to"),
    ],
)
def test_a_bad_date_is_refused_naming_its_field(first: str, last: str, field: str) -> None:
    with pytest.raises(DateOutOfRange) as raised:
        audit.day_range(first, last, zone=BEIJING)
    assert raised.value.extra["field"] == field


def test_a_range_upside_down_is_refused() -> None:
    with pytest.raises(InvalidInput) as raised:
        audit.day_range("2026-12-05", "2026-12-01", zone=BEIJING)
    assert raised.value.extra["field"] == "to"
    assert "before it begins" in raised.value.detail


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"outcome": "maybe"}, "outcome"),
        ({"outcome": "SUCCESS"}, "outcome"),
        ({"since": datetime(2026, 1, 1)}, "since"),  # noqa: DTZ001 - naive on purpose
        (
            {
                "since": datetime(2026, 1, 2, tzinfo=UTC),
                "until": datetime(2026, 1, 1, tzinfo=UTC),
            },
            "until",
        ),
    ],
)
def test_unusable_filters_are_refused_saying_which(
    db_session: Session, filters: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        audit.audit_select(session=db_session, actor=SYSTEM, filters=AuditFilter(**filters))  # type: ignore[arg-type]
    assert raised.value.extra["field"] == field


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.dates(date(2000, 1, 1), date(2100, 12, 31)), span=st.integers(0, 400))
def test_any_range_of_days_spans_those_days_exactly(first: date, span: int) -> None:
    last = first + timedelta(days=span)
    if last > date(2100, 12, 31):
        return
    since, until = audit.day_range(first.isoformat(), last.isoformat(), zone=BEIJING)
    assert since is not None
    assert until is not None
    assert since.astimezone(BEIJING).date() == first
    assert (until - since) == timedelta(days=span + 1)


def test_a_record_is_checked_where_it_stands(db_session: Session, log: Log) -> None:
    found = rows(db_session, SYSTEM, actor_name=log.who, tenant_id=log.a.id)
    middle = found[1]
    # when nothing was touched, it fits its hash and both its neighbours
    check = audit.check_record(session=db_session, entry=middle)
    assert check.ok
    assert check.hash_ok
    assert check.after_previous
    assert check.before_next
    # when its contents are edited, its hash no longer fits
    db_session.execute(
        update(AuditRecord).where(AuditRecord.seq == middle.seq).values(target="edited")
    )
    db_session.expire_all()
    edited = db_session.scalars(select(AuditRecord).where(AuditRecord.seq == middle.seq)).one()
    assert not audit.check_record(session=db_session, entry=edited).ok


def test_chain_names_say_whose_they_are() -> None:
    root = uuid.uuid4()
    assert audit.chain_label("platform")["platform"]
    assert audit.chain_label(f"{root}/2") == {"platform": False, "root_id": root, "lane": 2}


def test_one_filter_at_a_time_narrows_as_the_filter_does(db_session: Session, log: Log) -> None:
    auditor = reader("root-auditor", log.root, "core.audit.read")
    base = audit.audit_select(session=db_session, actor=auditor)
    # when the console's list narrows the query filter by filter
    narrowed = query.in_tenant(
        query.by_outcome(query.by_actor(base, log.who), "denied"),
        session=db_session,
        actor=auditor,
        tenant=str(log.a.id),
    )
    # then it selects what the same filters do at once
    expected = rows(db_session, auditor, actor_name=log.who, outcome="denied", tenant_id=log.a.id)
    assert [r.seq for r in db_session.scalars(narrowed)] == [r.seq for r in expected]
    # a tenant takes its subtree: the root holds both children's records
    under_root = query.in_tenant(
        query.by_actor(base, log.who), session=db_session, actor=auditor, tenant=log.root.id
    )
    assert {r.tenant_id for r in db_session.scalars(under_root)} == {log.a.id, log.b.id}
    # an action prefix is taken literally, and a range of times is half-open
    assert list(db_session.scalars(query.by_action(base, "tests.query_"))) == []
    newest = expected[0]
    assert newest.seq in [r.seq for r in db_session.scalars(query.within(base, newest.at, None))]
    assert newest.seq not in [
        r.seq for r in db_session.scalars(query.within(base, None, newest.at))
    ]


def test_a_tenant_one_may_not_audit_is_refused_not_emptied(db_session: Session, log: Log) -> None:
    auditor = reader("a-auditor", log.a, "core.audit.read")
    base = audit.audit_select(session=db_session, actor=auditor)
    for tenant in (str(log.b.id), "not-a-tenant", str(uuid.uuid4())):
        with pytest.raises(NotFound):
            query.in_tenant(base, session=db_session, actor=auditor, tenant=tenant)
    # one they see but may not audit is refused as such
    seer = Actor(
        kind="user",
        name="seer",
        via="session",
        grants=(
            Grant("custom", log.a.id, log.a.path, frozenset({"core.audit.read"})),
            Grant("custom", log.b.id, log.b.path, frozenset({"core.tenant.read"})),
        ),
    )
    with pytest.raises(PermissionDenied):
        query.in_tenant(
            audit.audit_select(session=db_session, actor=seer),
            session=db_session,
            actor=seer,
            tenant=log.b.id,
        )
    with pytest.raises(InvalidInput):
        query.by_outcome(base, "maybe")


def test_the_tenants_offered_are_those_one_audits(db_session: Session, log: Log) -> None:
    assert [
        t.id
        for t in query.audited_tenants(
            session=db_session, actor=reader("a", log.a, "core.audit.read")
        )
    ] == [log.a.id]
    offered = {
        t.id
        for t in query.audited_tenants(
            session=db_session, actor=reader("r", log.root, "core.audit.read")
        )
    }
    assert offered == {log.root.id, log.a.id, log.b.id}
    assert (
        query.audited_tenants(session=db_session, actor=reader("v", log.a, "core.tenant.read"))
        == []
    )


def test_the_consoles_list_sorts_pages_and_names_on_both_databases(
    db_session: Session, log: Log
) -> None:
    # given the console's list of the log, as the root's auditor reads it in Chinese
    from civicloud.web import lists
    from civicloud.web.pages.audit import audit_spec

    auditor = reader("root-auditor", log.root, "core.audit.read")
    spec = audit_spec(db_session, auditor, "zh")

    def page(**params: str) -> lists.ListPage:
        return lists.run(spec, lists.read(spec, {"actor": log.who, **params}, BEIJING), db_session)

    # then the newest come first, each with its tenant's name, how its actor came and its reason
    newest = page()
    assert newest.count == 6
    assert [r["seq"] for r in newest.rows] == sorted((r["seq"] for r in newest.rows), reverse=True)
    assert {r["tenant"] for r in newest.rows} == {log.a.name_zh, log.b.name_zh}
    assert {r["via"] for r in newest.rows} == {"api_key:abc123"}
    assert {r["reason"] for r in newest.rows} == {f"because {o}" for o in audit.OUTCOMES}
    # sorted by action, and by time oldest first, with the number making the order total
    by_action = page(sort="action", dir="asc")
    assert [r["action"] for r in by_action.rows] == sorted(r["action"] for r in by_action.rows)
    oldest = page(sort="at", dir="asc")
    assert [r["seq"] for r in oldest.rows] == sorted(r["seq"] for r in newest.rows)
    # and pages of two follow on by cursor, none twice, all six in three pages
    seen: list[int] = []
    small = replace(spec, page_size=2)
    cursor = None
    for _ in range(3):
        state = lists.read(
            small, {"actor": log.who, **({"cursor": cursor} if cursor else {})}, BEIJING
        )
        got = lists.run(small, state, db_session)
        seen += [r["seq"] for r in got.rows]
        cursor = got.next_cursor
    assert seen == [r["seq"] for r in newest.rows]
    assert cursor is None
    # a day range and an outcome narrow it, in the installation's zone
    assert page(outcome="failed").count == 2
    assert page(days_from="2001-01-01", days_to="2001-01-02").count == 0
