"""Reading the audit log: filters, the authorised query a list pages over, one record and how
it fits its chain.

Who reads what: a reader sees the records of the tenants under the subtrees where they hold
``core.audit.read`` (a tenant's administrators and auditors, their subtree's), and a
platform-wide auditor also those that belong to no tenant (sign-ins, regions, the log's own
events). A reader who holds ``core.audit.read`` nowhere is refused (``PermissionDenied``), never
given an empty list.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from civicloud.core.audit.models import PLATFORM_CHAIN, AuditRecord
from civicloud.core.audit.service import (
    GENESIS,
    audit_key_of,
    record_hash,
    record_seal,
)
from civicloud.core.dates import DateOutOfRange, parse_date
from civicloud.core.errors import InvalidInput, NotFound, PermissionDenied

if TYPE_CHECKING:
    from civicloud.core.actor import Actor
    from civicloud.core.tenants.models import Tenant

READ = "core.audit.read"
#: What a record's ``outcome`` may be.
OUTCOMES: tuple[str, ...] = ("success", "denied", "failed")
#: The detail keys a record's reason is kept under (``reason``: what a person gave, or a code
#: the catalog may know; ``code``: the error code of a refused or failed call).
REASON_KEYS: tuple[str, ...] = ("reason", "code")


@dataclass(frozen=True)
class AuditFilter:
    """What a reader asks of the log; every field optional.

    ``action`` is a prefix of the action code, ``actor_name`` the actor exactly, ``since`` and
    ``until`` aware times (``since`` included, ``until`` not).
    """

    action: str | None = None
    actor_name: str | None = None
    tenant_id: uuid.UUID | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def parse_day(value: str | date | None, *, field: str) -> date | None:
    """A day written ``YYYY-MM-DD`` (``None`` or empty: no bound), in the range ``core.dates``
    accepts; ``DateOutOfRange`` (``InvalidInput``) naming ``field`` otherwise."""
    if value is None:
        return None
    if isinstance(value, date):
        return _bounded(value.isoformat(), field)
    text = value.strip()
    return _bounded(text, field) if text else None


def _bounded(text: str, field: str) -> date:
    try:
        return parse_date(text)
    except DateOutOfRange as exc:
        raise DateOutOfRange(exc.message, params=exc.params, field=field) from None


def day_range(
    start: str | date | None, end: str | date | None, *, zone: tzinfo
) -> tuple[datetime | None, datetime | None]:
    """The times from the start of day ``start`` to the end of day ``end`` (both included) in
    ``zone``, the installation's: ``(since, until)`` for :class:`AuditFilter`."""
    first = parse_day(start, field="from")
    last = parse_day(end, field="to")
    if first is not None and last is not None and last < first:
        raise InvalidInput(
            "the date range ends (%(to)s) before it begins (%(from)s)",
            params={"from": first.isoformat(), "to": last.isoformat()},
            field="to",
        )
    since = datetime.combine(first, time(), zone) if first is not None else None
    until = datetime.combine(last + timedelta(days=1), time(), zone) if last is not None else None
    return since, until


def check_filter(filters: AuditFilter) -> AuditFilter:
    """``filters`` as given, or ``InvalidInput`` saying what cannot be used."""
    if filters.outcome is not None and filters.outcome not in OUTCOMES:
        raise InvalidInput(
            "%(value)s is not an outcome (success, denied or failed)",
            params={"value": str(filters.outcome)[:40]},
            field="outcome",
        )
    for name in ("since", "until"):
        moment: datetime | None = getattr(filters, name)
        if moment is not None and moment.utcoffset() is None:
            raise InvalidInput("a time needs its offset from UTC (+08:00)", params={}, field=name)
    if filters.since is not None and filters.until is not None and filters.until <= filters.since:
        raise InvalidInput("the time range ends before it begins", params={}, field="until")
    return filters


def may_read(actor: Actor) -> bool:
    """Whether ``actor`` may read some of the log (holds ``core.audit.read`` somewhere)."""
    return actor.roots(READ) != []


def audit_select(
    *, session: Session, actor: Actor, filters: AuditFilter | None = None
) -> Select[AuditRecord]:
    """The records ``actor`` may read that ``filters`` select, newest first: a query to page
    over, count or export. Raises ``PermissionDenied`` for a reader holding ``core.audit.read``
    nowhere, ``NotFound``/``PermissionDenied`` for a tenant they may not audit, and
    ``InvalidInput`` for filters that cannot be used."""
    wanted = check_filter(filters or AuditFilter())
    if not may_read(actor):
        raise PermissionDenied(
            "you may not read the audit log: %(permission)s is needed",
            params={"permission": READ},
        )
    return _filtered(session, actor, wanted).order_by(AuditRecord.seq.desc())


def _filtered(session: Session, actor: Actor, filters: AuditFilter) -> Select[AuditRecord]:
    # Imported here: tenants' service records audit entries, so it imports the audit service.
    from civicloud.core.tenants.models import Tenant
    from civicloud.core.tenants.service import get_tenant_or_raise, in_subtrees

    roots = actor.roots(READ)
    query = select(AuditRecord)
    if filters.tenant_id is not None:
        scope = get_tenant_or_raise(
            session=session, actor=actor, tenant_id=filters.tenant_id, permission=READ
        )
        roots = [scope.path]
    if roots is not None:
        query = query.join(Tenant, Tenant.id == AuditRecord.tenant_id).where(
            in_subtrees(Tenant.path, roots)
        )
    if filters.action:
        query = by_action(query, filters.action)
    if filters.actor_name:
        query = by_actor(query, filters.actor_name)
    if filters.outcome:
        query = by_outcome(query, filters.outcome)
    return within(query, filters.since, filters.until)


# --- narrowing a query of records, one filter at a time (the console's list) -----------------

_Q = TypeVar("_Q", bound="Select[Any]")


def by_action(query: _Q, prefix: str) -> _Q:
    """Records whose action code begins with ``prefix`` (``core.tenant``), taken literally."""
    return query.where(AuditRecord.action.startswith(prefix, autoescape=True))


def by_actor(query: _Q, name: str) -> _Q:
    """Records of the actor ``name``, exactly as recorded (a username, ``system:jobs``)."""
    return query.where(AuditRecord.actor == name)


def by_outcome(query: _Q, outcome: str) -> _Q:
    """Records of one outcome; ``InvalidInput`` for a word that is none."""
    check_filter(AuditFilter(outcome=outcome))
    return query.where(AuditRecord.outcome == outcome)


def within(query: _Q, since: datetime | None, until: datetime | None) -> _Q:
    """Records from ``since`` (included) to ``until`` (not), aware times; ``None``: open."""
    if since is not None:
        query = query.where(AuditRecord.at >= since)
    if until is not None:
        query = query.where(AuditRecord.at < until)
    return query


def in_tenant(query: _Q, *, session: Session, actor: Actor, tenant: str | uuid.UUID) -> _Q:
    """Records of ``tenant`` and the tenants under it, if ``actor`` audits it: ``NotFound``
    for a tenant they cannot see (or text that names none), ``PermissionDenied`` for one they
    see but may not audit."""
    from civicloud.core.tenants.models import Tenant
    from civicloud.core.tenants.service import get_tenant_or_raise, in_subtrees

    try:
        tenant_id = tenant if isinstance(tenant, uuid.UUID) else uuid.UUID(str(tenant).strip())
    except ValueError:
        raise NotFound("no such tenant", resource="tenant") from None
    scope = get_tenant_or_raise(session=session, actor=actor, tenant_id=tenant_id, permission=READ)
    under = select(Tenant.id).where(in_subtrees(Tenant.path, [scope.path]))
    return query.where(AuditRecord.tenant_id.in_(under))


def audited_tenants(*, session: Session, actor: Actor, limit: int = 500) -> Sequence[Tenant]:
    """The tenants whose records ``actor`` may read, in tree order (for a choice of tenant)."""
    from civicloud.core.tenants.models import Tenant
    from civicloud.core.tenants.service import in_subtrees

    query = select(Tenant).where(in_subtrees(Tenant.path, actor.roots(READ)))
    return session.scalars(query.order_by(Tenant.path).limit(limit)).all()


def list_records(
    *,
    session: Session,
    actor: Actor,
    tenant_id: uuid.UUID | None = None,
    action: str | None = None,
    actor_name: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = None,
    limit: int = 100,
) -> Sequence[AuditRecord]:
    """Records of tenants in the actor's audit subtree, newest first (none for a reader holding
    ``core.audit.read`` nowhere: the console's front page shows what there is).

    Platform-wide auditors also see records that belong to no tenant (logins, regions).
    """
    filters = check_filter(
        AuditFilter(
            action=action,
            actor_name=actor_name,
            tenant_id=tenant_id,
            outcome=outcome,
            since=since,
            until=until,
        )
    )
    query = _filtered(session, actor, filters)
    if before is not None:
        query = query.where(AuditRecord.seq < before)
    return session.scalars(query.order_by(AuditRecord.seq.desc()).limit(limit)).all()


def get_record_or_raise(*, session: Session, actor: Actor, seq: int) -> AuditRecord:
    """The record ``seq`` if ``actor`` may read it; ``NotFound`` otherwise (a record of a
    tenant one may not audit does not exist for them), ``PermissionDenied`` for a reader
    holding ``core.audit.read`` nowhere."""
    found = session.scalars(
        audit_select(session=session, actor=actor).where(AuditRecord.seq == seq)
    ).first()
    if found is None:
        raise NotFound("no such %(what_label)s", params={"what_label": "audit record"})
    return found


@dataclass(frozen=True)
class RecordCheck:
    """How one record fits its chain: its hash recomputed, its seal (``None``: the database has
    no audit key, or the record none), and its links to its neighbours in the chain (``None``:
    it has no neighbour there, being the chain's first or last)."""

    hash_ok: bool
    seal_ok: bool | None
    after_previous: bool | None
    before_next: bool | None

    @property
    def ok(self) -> bool:
        """Whether nothing that was checked failed."""
        return (
            self.hash_ok
            and self.seal_ok is not False
            and self.after_previous is not False
            and self.before_next is not False
        )


def check_record(*, session: Session, entry: AuditRecord) -> RecordCheck:
    """Check ``entry`` where it stands: its hash, its seal, and the records either side of it in
    its chain (a walk of every chain is ``verify_chain``'s)."""
    key = audit_key_of(session)
    seal_ok = None
    if key is not None and entry.seal is not None:
        seal_ok = entry.seal == record_seal(key, entry.hash)
    elif key is not None:
        seal_ok = False
    neighbours = {
        row.chain_seq: row
        for row in session.execute(
            select(AuditRecord.chain_seq, AuditRecord.hash, AuditRecord.prev_hash).where(
                AuditRecord.chain == entry.chain,
                AuditRecord.chain_seq.in_((entry.chain_seq - 1, entry.chain_seq + 1)),
            )
        )
    }
    before = neighbours.get(entry.chain_seq - 1)
    after = neighbours.get(entry.chain_seq + 1)
    if before is not None:
        after_previous: bool | None = before.hash == entry.prev_hash
    else:
        # The chain's first record follows nothing; any other has lost the one before it.
        after_previous = entry.prev_hash == GENESIS if entry.chain_seq == 1 else False
    return RecordCheck(
        hash_ok=record_hash(entry.prev_hash, entry) == entry.hash,
        seal_ok=seal_ok,
        after_previous=after_previous,
        before_next=None if after is None else after.prev_hash == entry.hash,
    )


def reason_of(entry: AuditRecord) -> str | None:
    """The reason a record gives (``detail["reason"]``, else a refused call's error code)."""
    for key in REASON_KEYS:
        value = entry.detail.get(key) if isinstance(entry.detail, dict) else None
        if isinstance(value, str) and value:
            return value
    return None


def chain_label(chain: str) -> dict[str, Any]:
    """What a chain's name means: the platform chain, or a root tenant's (its id, and the lane)."""
    if chain == PLATFORM_CHAIN:
        return {"platform": True, "root_id": None, "lane": 0}
    root, _, lane = chain.partition("/")
    try:
        root_id = uuid.UUID(root)
    except ValueError:
        root_id = None
    return {"platform": False, "root_id": root_id, "lane": int(lane) if lane.isdigit() else 0}
