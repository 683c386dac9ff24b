"""The append-only, hash-chained audit log.

Each record's ``hash`` is SHA-256 over the previous record's hash and the record's canonical JSON,
so editing, removing or reordering any record breaks the chain from that point on.
``audit_head`` holds the last sequence number and hash, which exposes a truncated tail.
Records are written in the caller's session: the change and its record commit together.
"""

from __future__ import annotations

import hashlib
import hmac
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
from civicloud.core.db import AUDIT_KEY, utcnow
from civicloud.core.errors import Conflict, Misconfigured

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
    key = audit_key_of(session)
    if (
        key is not None
        and head.seal is not None
        and not _sealed(head.seal, head_seal(key, int(head.seq), str(head.hash)))
    ):
        # Never extend a head this installation did not seal: the key is not the log's (a lost
        # or mixed-up audit.key), or the head was rewritten.
        raise Misconfigured(
            "the audit log's head does not carry this installation's seal: restore the audit "
            "key it was sealed with (audit.key, or CIVICLOUD_AUDIT_KEY), or, if that is the "
            "key, the log was tampered with (civicloud audit verify)"
        )
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
    entry["seal"] = record_seal(key, entry["hash"]) if key else None
    connection.execute(_INSERT_RECORD, entry)
    connection.execute(
        _MOVE_HEAD,
        {
            "new_seq": seq,
            "new_hash": entry["hash"],
            "new_seal": head_seal(key, seq, entry["hash"]) if key else None,
        },
    )


def tenant_of_target(
    *, session: Session, path: str | None, tenant_id: object = None
) -> uuid.UUID | None:
    """The tenant a refused call was aimed at, for its record: the last tenant it was authorised
    against (``path``, a materialised path, as ``core.context.last_target`` gives it), else the
    tenant a route named (``tenant_id``) if there is one; ``None`` when neither is known."""
    if path:
        try:
            return uuid.UUID(hex=path.rstrip("/").rsplit("/", 1)[-1])
        except ValueError:
            pass
    if tenant_id is None:
        return None
    try:
        candidate = uuid.UUID(str(tenant_id))
    except ValueError:
        return None
    # Imported here: tenants' service records audit entries, so it imports this module.
    from civicloud.core.tenants.models import Tenant

    return candidate if session.get(Tenant, candidate) is not None else None


def audit_key_of(session: Session) -> bytes | None:
    """The installation's audit key for this session's database (``None``: records unsealed)."""
    key: bytes | None = session.info.get(AUDIT_KEY)
    return key


def record_seal(key: bytes, record_hash_: str) -> str:
    """The seal of a record whose hash is ``record_hash_``."""
    return hmac.new(key, f"civicloud-audit-record\n{record_hash_}".encode(), "sha256").hexdigest()


def head_seal(key: bytes, seq: int, last_hash: str) -> str:
    """The seal of the head naming record ``seq`` with hash ``last_hash``."""
    return hmac.new(key, f"civicloud-audit-head\n{seq}\n{last_hash}".encode(), "sha256").hexdigest()


# Built once: run on the session's connection, as Core statements (no ORM objects).
_LOCK_HEAD = (
    select(AuditHead.seq, AuditHead.hash, AuditHead.seal).where(AuditHead.id == 1).with_for_update()
)
_INSERT_RECORD = insert(AuditRecord)
_MOVE_HEAD = (
    update(AuditHead)
    .where(AuditHead.id == 1)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"), seal=bindparam("new_seal"))
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
    #: Whether every record's seal was checked too (the database has the audit key).
    sealed: bool = False

    def describe(self) -> str:
        """One line for a person."""
        if self.ok:
            head = f"; head {self.checked}:{self.head_hash}" if self.head_hash else ""
            seals = ", every seal checked" if self.sealed else ""
            return f"audit chain intact: {self.checked} records{seals}{head}"
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


def verify_chain(*, session: Session, batch: int = 2000, check_seals: bool = True) -> VerifyResult:
    """Walk the log in order and report the first record that was edited, removed or reordered.

    The head is read first and the walk stops at it: records appended while the walk runs (each
    statement may see newer commits) are not mistaken for a damaged tail. Where the session's
    database has the installation's audit key, every record's seal and the head's are checked
    too (``check_seals``), so even a log rewritten consistently from some record on, hashes and
    head included, is caught by one who cannot read the key.
    """
    key = audit_key_of(session) if check_seals else None
    # Read as columns, not as an object the session may hold from earlier in the transaction.
    head = session.execute(
        select(AuditHead.seq, AuditHead.hash, AuditHead.seal).where(AuditHead.id == 1)
    ).first()
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
        if key is not None and not _sealed(entry.seal, record_seal(key, entry.hash)):
            return VerifyResult(False, checked, entry.seq, _seal_problem("it", entry.seal))
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
    if key is not None and not _sealed(head.seal, head_seal(key, head.seq, head.hash)):
        return VerifyResult(False, checked, head.seq, _seal_problem("the head", head.seal))
    return VerifyResult(True, checked, head_hash=head.hash, sealed=key is not None)


def _sealed(stored: str | None, expected: str) -> bool:
    return stored is not None and hmac.compare_digest(stored, expected)


def _seal_problem(what: str, stored: str | None) -> str:
    if stored is None:
        return (
            f"{what} carries no seal: its seal was removed, or, only if the log was migrated "
            "without the audit key, it was never sealed (then `civicloud audit seal` seals it)"
        )
    return f"{what} has a wrong seal: it was rewritten by someone without the audit key"


def seal_chain(*, session: Session, actor: Actor, batch: int = 2000) -> int:
    """Seal the records and the head that carry no seal yet (a log kept before the installation
    had its audit key); how many records were sealed. The log must verify first, hashes and any
    seals it has: a damaged log is refused, never blessed. Audited."""
    key = audit_key_of(session)
    if key is None:
        raise Misconfigured("this database has no audit key to seal with")
    found = verify_chain(session=session, batch=batch, check_seals=False)
    if not found.ok:
        raise Conflict(
            "the log is not sealed: the audit chain is broken at record %(seq)s: %(problem)s",
            params={"seq": found.seq, "problem": found.problem},
        )
    sealed, seen_sealed = _seal_records(session, key, batch)
    _seal_head(session, key, seen_sealed)
    record(
        session=session,
        actor=actor,
        action="core.audit.seal",
        target="audit",
        detail={"sealed": sealed},
    )
    return sealed


def _seal_records(session: Session, key: bytes, batch: int) -> tuple[int, bool]:
    """Seal the unsealed records that precede every sealed one; how many, and whether any
    record was sealed already. An unsealed record after a sealed one had its seal removed."""
    sealed, after, seen_sealed = 0, 0, False
    while True:
        rows = session.execute(
            select(AuditRecord.seq, AuditRecord.hash, AuditRecord.seal)
            .where(AuditRecord.seq > after)
            .order_by(AuditRecord.seq)
            .limit(batch)
        ).all()
        if not rows:
            return sealed, seen_sealed
        for row in rows:
            if row.seal is not None:
                if not _sealed(row.seal, record_seal(key, row.hash)):
                    raise Conflict(
                        "the log is not sealed: record %(seq)s has a wrong seal",
                        params={"seq": row.seq},
                    )
                seen_sealed = True
            elif seen_sealed:
                # Unsealed after sealed: seals were removed (a rewrite), not a log kept before
                # the key, whose records are all unsealed.
                raise Conflict(
                    "the log is not sealed: record %(seq)s carries no seal although records "
                    "before it do; its seal was removed",
                    params={"seq": row.seq},
                )
            else:
                session.execute(
                    update(AuditRecord)
                    .where(AuditRecord.seq == row.seq, AuditRecord.seal.is_(None))
                    .values(seal=record_seal(key, row.hash))
                )
                sealed += 1
        after = rows[-1].seq


def _seal_head(session: Session, key: bytes, records_were_sealed: bool) -> None:
    head = session.execute(
        select(AuditHead.seq, AuditHead.hash, AuditHead.seal).where(AuditHead.id == 1)
    ).first()
    if head is None:
        return
    if head.seal is not None:
        if not _sealed(head.seal, head_seal(key, head.seq, head.hash)):
            raise Conflict("the log is not sealed: its head has a wrong seal")
        return
    if records_were_sealed:
        raise Conflict(
            "the log is not sealed: its head carries no seal although records do; it was removed"
        )
    session.execute(
        update(AuditHead).where(AuditHead.id == 1).values(seal=head_seal(key, head.seq, head.hash))
    )


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
