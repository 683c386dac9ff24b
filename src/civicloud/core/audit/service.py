"""The append-only, hash-chained audit log.

Each record's ``hash`` is SHA-256 over the previous record's hash and the record's canonical JSON,
so editing, removing or reordering any record breaks the chain from that point on.
``audit_head`` holds the last sequence number and hash, which exposes a truncated tail.
Records are written in the caller's session: the change and its record commit together.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Insert, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from civicloud.core.audit.models import AuditHead, AuditRecord
from civicloud.core.context import current_request_id
from civicloud.core.db import utcnow

if TYPE_CHECKING:
    from civicloud.core.actor import Actor

GENESIS = "0" * 64
Outcome = Literal["success", "denied", "failed"]


def record_hash(prev_hash: str, record: AuditRecord) -> str:
    """The chain hash of ``record`` following ``prev_hash``."""
    return _chain_hash(
        prev_hash,
        {
            "at": record.at,
            "actor": record.actor,
            "tenant_id": record.tenant_id,
            "action": record.action,
            "target": record.target,
            "request_id": record.request_id,
            "outcome": record.outcome,
            "detail": record.detail,
        },
    )


def _chain_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    tenant_id = record["tenant_id"]
    body = {
        "at": record["at"].isoformat(timespec="microseconds"),
        "actor": record["actor"],
        "tenant_id": str(tenant_id) if tenant_id else None,
        "action": record["action"],
        "target": record["target"],
        "request_id": record["request_id"],
        "outcome": record["outcome"],
        "detail": record["detail"],
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def record(
    *,
    session: Session,
    actor: Actor,
    action: str,
    target: str,
    tenant_id: uuid.UUID | None = None,
    outcome: Outcome = "success",
    detail: dict[str, Any] | None = None,
) -> None:
    """Append a record in the caller's transaction (it commits or rolls back with the change).

    Written at once, in SQL statements rather than through the ORM: the chain's head stays
    locked from here to the commit, and every other writer waits for it meanwhile, so the time
    it is held is kept short. What the caller has pending is flushed first, before the lock.
    """
    session.flush()
    connection = session.connection()
    # Lock the head: appends are serialised, which is what a chain is. SQLite write transactions
    # are serialised already (BEGIN IMMEDIATE), PostgreSQL takes the row lock here.
    head = connection.execute(_LOCK_HEAD).first()
    if head is None:
        # The first record ever: make the head (a racing first writer's head is waited for).
        connection.execute(_insert_head(connection.dialect.name))
        head = connection.execute(_LOCK_HEAD).one()
    seq, prev_hash = int(head.seq) + 1, str(head.hash)
    entry = {
        "seq": seq,
        # Microsecond precision: what every database stores, so the hash survives a round trip.
        "at": utcnow(),
        "actor": _printable(actor.name)[:160],
        "tenant_id": tenant_id,
        "action": _printable(action)[:100],
        "target": _printable(target)[:300],
        "request_id": _printable(current_request_id())[:64],
        "outcome": outcome,
        "detail": json.loads(json.dumps(detail or {}, default=str)),
        "prev_hash": prev_hash,
    }
    entry["hash"] = _chain_hash(prev_hash, entry)
    connection.execute(_INSERT_RECORD, entry)
    connection.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": entry["hash"]})


# Built once: run on the session's connection, as Core statements (no ORM objects).
_LOCK_HEAD = select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1).with_for_update()
_INSERT_RECORD = insert(AuditRecord)
_MOVE_HEAD = (
    update(AuditHead)
    .where(AuditHead.id == 1)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)


def _insert_head(dialect: str) -> Insert:
    insert_into = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert_into(AuditHead).values(id=1, seq=0, hash=GENESIS).on_conflict_do_nothing()


def _printable(text: str) -> str:
    # The record must be written whatever the caller sent (a failed request's path may carry a
    # NUL, which no database text column takes): NUL becomes U+FFFD, the replacement character.
    return text.replace("\x00", "\ufffd")


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify_chain`: ``ok``, how many records were checked, and the first fault."""

    ok: bool
    checked: int
    seq: int | None = None
    problem: str | None = None
    #: The hash of the last record: note it somewhere else, and a later rewrite of the whole log
    #: from there on can be told apart from the log you saw.
    head_hash: str | None = None

    def describe(self) -> str:
        """One line for a person."""
        if self.ok:
            head = f"; head {self.checked}:{self.head_hash}" if self.head_hash else ""
            return f"audit chain intact: {self.checked} records{head}"
        return f"audit chain broken at record {self.seq}: {self.problem}"


def _iter_records(session: Session, batch: int) -> Iterator[AuditRecord]:
    after = 0
    while True:
        rows = session.scalars(
            select(AuditRecord)
            .where(AuditRecord.seq > after)
            .order_by(AuditRecord.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
        session.expunge_all()


def verify_chain(*, session: Session, batch: int = 2000) -> VerifyResult:
    """Walk the log in order and report the first record that was edited, removed or reordered.

    The head is read first and the walk stops at it: records appended while the walk runs (each
    statement may see newer commits) are not mistaken for a damaged tail.
    """
    # Read as columns, not as an object the session may hold from earlier in the transaction.
    head = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).first()
    end = int(head.seq) if head is not None else None
    expected_prev, expected_seq, checked = GENESIS, 1, 0
    for entry in _iter_records(session, batch):
        if end is not None and entry.seq > end:
            break
        if entry.seq != expected_seq:
            return VerifyResult(
                False,
                checked,
                expected_seq,
                f"record {expected_seq} was removed (next is {entry.seq})",
            )
        if entry.prev_hash != expected_prev:
            return VerifyResult(
                False, checked, entry.seq, "out of order: it does not follow the record before it"
            )
        if record_hash(entry.prev_hash, entry) != entry.hash:
            return VerifyResult(False, checked, entry.seq, "its contents were edited")
        expected_prev, expected_seq, checked = entry.hash, expected_seq + 1, checked + 1
    last_seq = expected_seq - 1
    if head is None:
        if checked:
            return VerifyResult(False, checked, 1, "the chain head is missing")
        if _has_tenants(session):
            # Creating a tenant writes a record, so tenants without any means a wiped log.
            return VerifyResult(
                False, 0, 1, "the log is empty although tenants exist: it was wiped"
            )
        return VerifyResult(True, checked)
    if head.seq > last_seq:
        return VerifyResult(
            False, checked, last_seq + 1, f"records {last_seq + 1}..{head.seq} were removed"
        )
    if head.hash != expected_prev:
        return VerifyResult(False, checked, head.seq, "the head does not match the last record")
    return VerifyResult(True, checked, head_hash=head.hash)


def _has_tenants(session: Session) -> bool:
    # Imported here: tenants' service records audit entries, so it imports this module.
    from civicloud.core.tenants.models import Tenant

    return session.scalars(select(Tenant.id).limit(1)).first() is not None


def list_records(
    *,
    session: Session,
    actor: Actor,
    tenant_id: uuid.UUID | None = None,
    action: str | None = None,
    actor_name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = None,
    limit: int = 100,
) -> Sequence[AuditRecord]:
    """Records of tenants in the actor's audit subtree, newest first.

    Platform-wide auditors also see records that belong to no tenant (logins, regions).
    """
    # Imported here: tenants' service records audit entries, so it imports this module.
    from civicloud.core.tenants.models import Tenant
    from civicloud.core.tenants.service import get_tenant_or_raise, in_subtrees

    roots = actor.roots("core.audit.read")
    query = select(AuditRecord)
    if tenant_id is not None:
        scope = get_tenant_or_raise(
            session=session, actor=actor, tenant_id=tenant_id, permission="core.audit.read"
        )
        roots = [scope.path]
    if roots is not None:
        query = query.join(Tenant, Tenant.id == AuditRecord.tenant_id).where(
            in_subtrees(Tenant.path, roots)
        )
    if action:
        query = query.where(AuditRecord.action.startswith(action, autoescape=True))
    if actor_name:
        query = query.where(AuditRecord.actor == actor_name)
    if since is not None:
        query = query.where(AuditRecord.at >= since)
    if until is not None:
        query = query.where(AuditRecord.at < until)
    if before is not None:
        query = query.where(AuditRecord.seq < before)
    return session.scalars(query.order_by(AuditRecord.seq.desc()).limit(limit)).all()
