"""The append-only, hash-chained audit log: one chain per root tenant, and the platform chain.

Each record's ``hash`` is SHA-256 over the previous record of its chain's hash and the record's
canonical JSON (its place, ``seq``, ``chain`` and ``chain_seq``, included), so editing, removing
or reordering any record breaks its chain from that point on.

A record joins the chain of the root tenant its tenant is under when it is written (the chain is
named by the root's id); a record with no tenant, or whose tenant no longer exists, joins the
platform chain. Each chain has its head (``audit_head``): the last ``chain_seq`` and hash, which
exposes a truncated tail, sealed under the audit key together with the chain's name. Appenders
lock only their chain's head, so writers under different roots never wait for each other.
Chains are append-only: a tenant moved under another root writes its later records to that
root's chain, and its earlier ones stay where they were written.

Opening a chain appends a record naming it (``core.audit.chain.open``) to the platform chain, in
the same transaction as the chain's first record: a chain removed whole, records and head, is
still named there, and ``verify_chain`` reports it.

Records are written in the caller's session: the change and its record commit together.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from sqlalchemy import (
    Connection,
    Insert,
    bindparam,
    exists,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from civicloud.core.audit.models import PLATFORM_CHAIN, AuditHead, AuditRecord
from civicloud.core.context import current_request_id
from civicloud.core.db import AUDIT_KEY, utcnow
from civicloud.core.errors import Conflict, Misconfigured

if TYPE_CHECKING:
    from civicloud.core.actor import Actor

GENESIS = "0" * 64
Outcome = Literal["success", "denied", "failed"]
#: The platform chain's record of a chain being opened (its ``detail`` names the chain).
OPEN_ACTION = "core.audit.chain.open"
#: The detail key under which a record keeps how its actor came (``Actor.via``).
VIA_KEY = "via"
#: The hash format of records written since the log has chains (1: kept before; see models).
HASH_FORMAT = 2


def record_hash(prev_hash: str, record: AuditRecord) -> str:
    """The chain hash of ``record`` following ``prev_hash``."""
    return _chain_hash(
        prev_hash,
        {
            "seq": record.seq,
            "chain": record.chain,
            "chain_seq": record.chain_seq,
            "hash_format": record.hash_format,
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
    if record.get("hash_format", HASH_FORMAT) != 1:
        # Since there are chains, a record's place is covered too: within its chain the links
        # order it, and ``seq`` (the whole log's order) is bound to it as well.
        body |= {"seq": record["seq"], "chain": record["chain"], "chain_seq": record["chain_seq"]}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def chain_of(*, session: Session, tenant_id: uuid.UUID | None) -> str:
    """The chain a record about ``tenant_id`` joins: its root tenant's id, or the platform chain
    (no tenant, or one that does not exist).

    The tenant as this transaction sees it when the session holds it (a move made in it counts),
    else from the per-process tenant cache (``tenants.resolve_tenant``), else one read by key.
    """
    if tenant_id is None:
        return PLATFORM_CHAIN
    # Imported here: tenants' service records audit entries, so it imports this module.
    from civicloud.core.tenants.models import Tenant
    from civicloud.core.tenants.service import resolve_tenant

    path: str | None = None
    held = session.identity_map.get(session.identity_key(Tenant, tenant_id))
    if held is not None:
        state = inspect(held)
        if not state.expired and not state.deleted and not state.was_deleted:
            path = state.dict.get("path")
    if path is None:
        ref = resolve_tenant(session=session, tenant_id=tenant_id)
        if ref is None:
            return PLATFORM_CHAIN
        path = ref.path
    return str(uuid.UUID(hex=path[1:33]))


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
    locked from here to the commit, and every other writer to that chain waits for it meanwhile
    (writers to other chains do not), so the time it is held is kept short. What the caller has
    pending is flushed first, before the lock.
    """
    session.flush()
    chain = chain_of(session=session, tenant_id=tenant_id)
    connection = session.connection()
    key = audit_key_of(session)
    fields = {
        # Microsecond precision: what every database stores, so the hash survives a round trip.
        "at": utcnow(),
        "actor": _printable(actor.name)[:160],
        "tenant_id": tenant_id,
        "action": _printable(action)[:100],
        "target": _printable(target)[:300],
        "request_id": _printable(current_request_id())[:64],
        "outcome": outcome,
        "detail": _as_stored(detail, via=actor.via),
    }
    # Lock the chain's head: appends to one chain are serialised, which is what a chain is.
    # SQLite write transactions are serialised already (BEGIN IMMEDIATE); PostgreSQL takes the
    # row lock here, and draws the record's ``seq`` once it holds it. There, a root's records
    # go to the first of its lanes that no other transaction holds (``lanes_of``), in one
    # statement when a lane is free and its head carries this installation's seal.
    if connection.dialect.name == "postgresql" and chain != PLATFORM_CHAIN:
        if _append_to_free_lane(connection, key, chain, fields):
            return
        head, chain = _lock_lane(connection, key, actor, chain)
    else:
        found = _lock(connection, chain)
        head = found if found is not None else _open_chain(connection, key, actor, chain)
    _append(connection, key, head, chain, fields)


#: Stand-ins for the values a one-statement append only knows inside the statement (the lane's
#: name, its next ``chain_seq``, the record's ``seq``): the canonical text is cut around them.
_CHAIN_MARK, _CHAIN_SEQ_MARK, _SEQ_MARK = "@@civicloud-chain@@", -918273645, -546372819
_HMAC_BLOCK = 64


def _hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """HMAC-SHA256's inner and outer keys (RFC 2104), so the database can seal as ``hmac`` does."""
    padded = (hashlib.sha256(key).digest() if len(key) > _HMAC_BLOCK else key).ljust(
        _HMAC_BLOCK, b"\0"
    )
    return bytes(b ^ 0x36 for b in padded), bytes(b ^ 0x5C for b in padded)


def _canonical_pieces(fields: Mapping[str, Any]) -> list[str] | None:
    """The record's canonical text (``_chain_hash``) in four pieces, to be joined around the lane's
    name, its ``chain_seq`` and the record's ``seq``; ``None`` when a stand-in is not found once
    each (text that happens to hold one: the append then takes the path of two statements)."""
    body = {**fields, "seq": _SEQ_MARK, "chain": _CHAIN_MARK, "chain_seq": _CHAIN_SEQ_MARK}
    tenant_id = body["tenant_id"]
    canonical = json.dumps(
        {
            "at": body["at"].isoformat(timespec="microseconds"),
            "actor": body["actor"],
            "tenant_id": str(tenant_id) if tenant_id else None,
            "action": body["action"],
            "target": body["target"],
            "request_id": body["request_id"],
            "outcome": body["outcome"],
            "detail": body["detail"],
            "seq": _SEQ_MARK,
            "chain": _CHAIN_MARK,
            "chain_seq": _CHAIN_SEQ_MARK,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    marks = (f'"{_CHAIN_MARK}"', str(_CHAIN_SEQ_MARK), str(_SEQ_MARK))
    if any(canonical.count(mark) != 1 for mark in marks):
        return None
    first, rest = canonical.split(marks[0])
    second, rest = rest.split(marks[1])
    third, fourth = rest.split(marks[2])
    return [first, second, third, fourth]


def _append_to_free_lane(
    connection: Connection, key: bytes | None, chain: str, fields: Mapping[str, Any]
) -> bool:
    """Append to the first free lane of ``chain`` in one round trip: the lane locked, the record
    hashed, sealed and inserted and the head moved by one statement, which computes what
    ``_chain_hash``, ``record_seal`` and ``head_seal`` compute (and refuses a head without this
    installation's seal, as ``_append`` does). ``False`` when no lane is free, or the head's seal
    does not fit: then nothing was written, and the two-statement path takes over (it opens a
    lane, waits for one, or says why it will not extend the head)."""
    pieces = _canonical_pieces(fields)
    if pieces is None:
        return False
    ipad, opad = _hmac_pads(key) if key is not None else (None, None)
    tenant_id = fields["tenant_id"]
    params = {
        "lanes": lanes_of(chain),
        "p0": pieces[0],
        "p1": pieces[1],
        "p2": pieces[2],
        "p3": pieces[3],
        "ipad": ipad,
        "opad": opad,
        "hash_format": HASH_FORMAT,
        "at": fields["at"],
        "actor": fields["actor"],
        "tenant_id": tenant_id,
        "action": fields["action"],
        "target": fields["target"],
        "request_id": fields["request_id"],
        "outcome": fields["outcome"],
        "detail": json.dumps(fields["detail"]),
    }
    done = _driver_execute(connection, _APPEND_TO_FREE_LANE_SQL, params, fetch=True)
    return done is not None


def _seal_sql(message: str) -> str:
    """SQL for HMAC-SHA256 of the text ``message`` (an SQL expression) under the pads."""
    return (
        "encode(sha256(%(opad)s::bytea || sha256(%(ipad)s::bytea || "
        f"convert_to({message}, 'UTF8'))), 'hex')"
    )


_APPEND_TO_FREE_LANE_SQL = (
    # The head's values come from the locking scan itself, which reads the row as it is once
    # locked: another scan of audit_head would read the statement's snapshot, which a head moved
    # and committed meanwhile would make stale.
    "WITH lane AS (SELECT id, chain, seq, hash, seal FROM audit_head "  # noqa: S608 - constant text; every value is a parameter
    "WHERE chain = ANY(%(lanes)s) ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1), "
    "old AS (SELECT lane.*, nextval('audit_record_seq') AS next_seq FROM lane), "
    "rec AS (SELECT old.*, old.seq + 1 AS chain_seq, encode(sha256(convert_to(old.hash || "
    "E'\\n' || %(p0)s || '\"' || old.chain || '\"' || %(p1)s || (old.seq + 1)::text || "
    "%(p2)s || old.next_seq::text || %(p3)s, 'UTF8')), 'hex') AS new_hash FROM old "
    "WHERE %(ipad)s::bytea IS NULL OR old.seal IS NULL OR old.seal = "
    + _seal_sql(
        "'civicloud-audit-head' || E'\\n' || old.chain || E'\\n' || old.seq::text "
        "|| E'\\n' || old.hash"
    )
    + "), ins AS (INSERT INTO audit_record (seq, chain, chain_seq, hash_format, at, actor, "
    "tenant_id, action, target, request_id, outcome, detail, prev_hash, hash, seal) "
    "SELECT next_seq, chain, chain_seq, %(hash_format)s, %(at)s, %(actor)s, %(tenant_id)s, "
    "%(action)s, %(target)s, %(request_id)s, %(outcome)s, %(detail)s::json, hash, new_hash, "
    "CASE WHEN %(ipad)s::bytea IS NULL THEN NULL ELSE "
    + _seal_sql("'civicloud-audit-record' || E'\\n' || new_hash")
    + " END FROM rec) "
    "UPDATE audit_head h SET seq = rec.chain_seq, hash = rec.new_hash, seal = CASE WHEN "
    "%(ipad)s::bytea IS NULL THEN NULL ELSE "
    + _seal_sql(
        "'civicloud-audit-head' || E'\\n' || rec.chain || E'\\n' || rec.chain_seq::text "
        "|| E'\\n' || rec.new_hash"
    )
    + " END, first_seq = COALESCE(h.first_seq, rec.next_seq) FROM rec WHERE h.id = rec.id "
    "RETURNING h.id"
)


def _as_stored(detail: dict[str, Any] | None, *, via: str | None = None) -> dict[str, Any]:
    # As the JSON column gives it back (tuples as lists, keys as text), so the hash survives.
    stored: dict[str, Any] = json.loads(json.dumps(detail, default=str)) if detail else {}
    if via:
        # How the actor came (a web session, an API key by its prefix, the shell): the record
        # has no column for it, and the detail is covered by the hash as a column would be.
        stored.setdefault(VIA_KEY, _printable(via)[:80])
    return stored


class _Locked(NamedTuple):
    """A chain's head as its lock returned it, and the ``seq`` drawn for the next record."""

    id: int
    seq: int
    hash: str
    seal: str | None
    next_seq: int


def _lock(connection: Connection, chain: str) -> _Locked | None:
    """Lock ``chain``'s head and draw the next ``seq``; ``None`` if the chain has no head yet."""
    if connection.dialect.name == "postgresql":
        found = _driver_execute(connection, _LOCK_SQL, (chain,), fetch=True)
    else:
        found = connection.execute(_LOCK_HEAD_SQLITE, {"of_chain": chain}).first()
    return _Locked(*found) if found is not None else None


#: How many chains (lanes) a root tenant's records spread over on PostgreSQL, so that as many
#: transactions under one root append at once without waiting for each other's commit.
LANES = 4


def lanes_of(chain: str) -> list[str]:
    """The lanes of a root's chain: the root's id itself (its first lane, and its only one on
    SQLite), then ``<id>/1``, ``<id>/2``, …: each a chain of its own, hash-linked, sealed and
    opened on the platform chain like any other."""
    return [chain, *(f"{chain}/{lane}" for lane in range(1, LANES))]


def _lock_lane(
    connection: Connection, key: bytes | None, actor: Actor, chain: str
) -> tuple[_Locked, str]:
    """Lock the first lane of ``chain`` that no other transaction holds (one this transaction
    may hold already is free to it); open the next lane when every
    lane there is is held, and wait for the first when all of them are."""
    lanes = lanes_of(chain)
    found = _driver_execute(connection, _LOCK_FREE_LANE_SQL, (lanes,), fetch=True)
    if found is not None:
        lane, *head = found
        return _Locked(*head), str(lane)
    existing = {row[0] for row in _driver_execute(connection, _LANES_SQL, (lanes,), fetch_all=True)}
    missing = [lane for lane in lanes if lane not in existing]
    if missing:
        return _open_chain(connection, key, actor, missing[0]), missing[0]
    waited = _lock(connection, chain)
    assert waited is not None  # the first lane exists: it was found above
    return waited, chain


def _driver_execute(
    connection: Connection,
    sql: str,
    params: tuple[Any, ...] | Mapping[str, Any],
    *,
    fetch: bool = False,
    fetch_all: bool = False,
) -> Any:
    """Run ``sql`` on the driver's own cursor: the two statements of every append, kept as cheap
    as the driver allows (no statement compiled, no result object built). Its errors are
    SQLAlchemy's, as if SQLAlchemy had run it (a lock timeout, a deadlock broken)."""
    dbapi = connection.dialect.loaded_dbapi
    try:
        with connection.connection.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
            cursor.execute(sql, params)
            if fetch_all:
                return cursor.fetchall()
            return cursor.fetchone() if fetch else None
    except dbapi.Error as exc:
        raise DBAPIError.instance(
            sql, params, exc, dbapi.Error, dialect=connection.dialect
        ) from exc


def _append(
    connection: Connection, key: bytes | None, head: _Locked, chain: str, fields: dict[str, Any]
) -> None:
    if (
        key is not None
        and head.seal is not None
        and not _sealed(head.seal, head_seal(key, int(head.seq), str(head.hash), chain=chain))
    ):
        # Never extend a head this installation did not seal: the key is not the log's (a lost
        # or mixed-up audit.key), or the head was rewritten.
        raise Misconfigured(
            "the audit log's head does not carry this installation's seal: restore the audit "
            "key it was sealed with (audit.key, or CIVICLOUD_AUDIT_KEY), or, if that is the "
            "key, the log was tampered with (civicloud audit verify)"
        )
    chain_seq, prev_hash = int(head.seq) + 1, str(head.hash)
    entry = {
        "seq": int(head.next_seq),
        "chain": chain,
        "chain_seq": chain_seq,
        "hash_format": HASH_FORMAT,
        **fields,
        "prev_hash": prev_hash,
    }
    entry["hash"] = _chain_hash(prev_hash, entry)
    entry["seal"] = record_seal(key, entry["hash"]) if key else None
    moved = {
        "head_id": head.id,
        "new_seq": chain_seq,
        "new_first_seq": entry["seq"],
        "new_hash": entry["hash"],
        "new_seal": head_seal(key, chain_seq, entry["hash"], chain=chain) if key else None,
    }
    if connection.dialect.name == "postgresql":
        # One round trip: the record's insert rides along the head's update.
        record_values = (
            entry["seq"],
            chain,
            chain_seq,
            HASH_FORMAT,
            entry["at"],
            entry["actor"],
            entry["tenant_id"],
            entry["action"],
            entry["target"],
            entry["request_id"],
            entry["outcome"],
            json.dumps(entry["detail"]),
            prev_hash,
            entry["hash"],
            entry["seal"],
        )
        head_values = (chain_seq, entry["hash"], moved["new_seal"], entry["seq"], head.id)
        _driver_execute(connection, _APPEND_SQL, (*record_values, *head_values))
    else:
        connection.execute(_INSERT_RECORD, entry)
        connection.execute(_MOVE_HEAD, moved)


def _open_chain(connection: Connection, key: bytes | None, actor: Actor, chain: str) -> _Locked:
    """Make ``chain``'s head and name the chain on the platform chain; its head, locked.

    Holding the platform head, openers are serialised: one that waited finds the chain made.
    Only a root's first record takes the platform head besides its own chain's. A transaction
    that already holds another chain's head and opens one may meet one that holds the platform
    head and waits for that chain: PostgreSQL breaks the deadlock, and the loser's unit of work
    ends in a ``Conflict`` (which ``Database.run`` runs once more).
    """
    platform = _lock(connection, PLATFORM_CHAIN)
    if platform is None:
        # The first record ever: make the platform head (a racing first writer's is waited for).
        connection.execute(_insert_head(connection.dialect.name, 1, PLATFORM_CHAIN, key))
        platform = _lock(connection, PLATFORM_CHAIN)
        assert platform is not None  # made just above
    if chain == PLATFORM_CHAIN:
        return platform
    made = _lock(connection, chain)
    if made is not None:
        return made
    _append(
        connection,
        key,
        platform,
        PLATFORM_CHAIN,
        {
            "at": utcnow(),
            "actor": _printable(actor.name)[:160],
            "tenant_id": None,
            "action": OPEN_ACTION,
            "target": f"audit:{chain}",
            "request_id": _printable(current_request_id())[:64],
            "outcome": "success",
            "detail": {"chain": chain},
        },
    )
    number = connection.execute(select(func.max(AuditHead.id))).scalar_one()
    connection.execute(_insert_head(connection.dialect.name, int(number) + 1, chain, key))
    opened = _lock(connection, chain)
    assert opened is not None  # made just above
    return opened


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


def head_seal(key: bytes, seq: int, last_hash: str, *, chain: str = PLATFORM_CHAIN) -> str:
    """The seal of ``chain``'s head naming its record ``seq`` with hash ``last_hash``.

    The platform chain's is the message the single head was sealed with before there were
    chains (which names no chain, and so the platform one); every other chain's names it.
    """
    named = "" if chain == PLATFORM_CHAIN else f"{chain}\n"
    message = f"civicloud-audit-head\n{named}{seq}\n{last_hash}"
    return hmac.new(key, message.encode(), "sha256").hexdigest()


# Built once. The head is locked by an update that changes nothing, whose RETURNING is computed
# once the row is held: the ``seq`` drawn there follows every earlier record of the chain. On
# PostgreSQL, as the driver's SQL (see _driver_execute), the record's insert riding along the
# head's move; on SQLite, as Core statements on the session's connection.
_LOCK_SQL = (
    "UPDATE audit_head SET seq = seq WHERE chain = %s "
    "RETURNING id, seq, hash, seal, nextval('audit_record_seq')"
)
#: The first of a root's lanes not held by another transaction (``SKIP LOCKED``), locked, with
#: the ``seq`` for its next record; nothing when every lane there is, is held.
_LOCK_FREE_LANE_SQL = (
    "UPDATE audit_head SET seq = seq WHERE id = (SELECT id FROM audit_head "
    "WHERE chain = ANY(%s) ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) "
    "RETURNING chain, id, seq, hash, seal, nextval('audit_record_seq')"
)
_LANES_SQL = "SELECT chain FROM audit_head WHERE chain = ANY(%s)"
_APPEND_SQL = (
    "WITH appended AS (INSERT INTO audit_record (seq, chain, chain_seq, hash_format, at, actor, "
    "tenant_id, action, target, request_id, outcome, detail, prev_hash, hash, seal) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::json, %s, %s, %s)) "
    "UPDATE audit_head SET seq = %s, hash = %s, seal = %s, first_seq = COALESCE(first_seq, %s) "
    "WHERE id = %s"
)
_LOCK_HEAD_SQLITE = (
    update(AuditHead)
    .where(AuditHead.chain == bindparam("of_chain"))
    .values(seq=AuditHead.seq)
    .returning(
        AuditHead.id,
        AuditHead.seq,
        AuditHead.hash,
        AuditHead.seal,
        select(func.coalesce(func.max(AuditRecord.seq), 0) + 1).scalar_subquery(),
    )
)
_INSERT_RECORD = insert(AuditRecord)
_MOVE_HEAD = (
    update(AuditHead)
    .where(AuditHead.id == bindparam("head_id"))
    .values(
        seq=bindparam("new_seq"),
        hash=bindparam("new_hash"),
        seal=bindparam("new_seal"),
        first_seq=func.coalesce(AuditHead.first_seq, bindparam("new_first_seq")),
    )
)


def _insert_head(dialect: str, number: int, chain: str, key: bytes | None) -> Insert:
    insert_into = postgresql.insert if dialect == "postgresql" else sqlite.insert
    seal = head_seal(key, 0, GENESIS, chain=chain) if key else None
    return (
        insert_into(AuditHead)
        .values(id=number, chain=chain, seq=0, hash=GENESIS, seal=seal)
        .on_conflict_do_nothing()
    )


def _printable(text: str) -> str:
    # The record must be written whatever the caller sent (a failed request's path may carry a
    # NUL, which no database text column takes): NUL becomes U+FFFD, the replacement character.
    return text.replace("\x00", "\ufffd")


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify_chain`: ``ok``, how many records were checked, and the first fault
    (``seq``: the first record, in the whole log's order, that no longer fits)."""

    ok: bool
    checked: int
    seq: int | None = None
    problem: str | None = None
    #: A digest of every chain's head (its name, last ``chain_seq`` and hash), as ``heads``.
    head_hash: str | None = None
    #: Whether every record's seal was checked too (the database has the audit key).
    sealed: bool = False
    #: How many chains were checked.
    chains: int = 0
    #: Each chain's head, ``(chain, chain_seq, hash)``, the platform chain first: note them
    #: somewhere else, and a later rewrite of a chain from there on (head, seal and all, by one
    #: holding an old copy) shows as that chain's record at that place no longer having that hash.
    heads: tuple[tuple[str, int, str], ...] = ()

    def describe(self) -> str:
        """One line for a person."""
        if self.ok:
            chains = (
                f" in {self.chains} chain{'s' if self.chains != 1 else ''}" if self.chains else ""
            )
            seals = ", every seal checked" if self.sealed else ""
            return f"audit chain intact: {self.checked} records{chains}{seals}"
        return f"audit chain broken at record {self.seq}: {self.problem}"


@dataclass(frozen=True)
class _Head:
    """A chain's head as the walk read it."""

    chain: str
    seq: int
    hash: str
    seal: str | None
    first_seq: int | None


@dataclass
class _Walk:
    """Where the walk of one chain stands."""

    expected: int = 1
    prev_hash: str = GENESIS
    #: ``seq`` of the chain's last record that fitted (before any: the one before its first).
    last_seq: int = 0
    first_seq: int | None = None
    broken: bool = False


@dataclass
class _Faults:
    found: list[tuple[int, str]] = field(default_factory=list)

    def add(self, seq: int, problem: str) -> None:
        self.found.append((seq, problem))

    def first(self) -> tuple[int, str] | None:
        return min(self.found, key=lambda fault: fault[0]) if self.found else None


def _walk_of(head: _Head) -> _Walk:
    # Before the chain's first record: what is missing from it lies after this.
    return _Walk(last_seq=head.first_seq - 1 if head.first_seq else 0)


def _label(chain: str) -> str:
    if chain == PLATFORM_CHAIN:
        return "the platform chain"
    root, _, lane = chain.partition("/")
    return f"the chain of root tenant {root}" + (f" (lane {lane})" if lane else "")


def _iter_records(session: Session, batch: int) -> Iterator[AuditRecord]:
    after: int | None = None
    while True:
        query = select(AuditRecord).order_by(AuditRecord.seq).limit(batch)
        if after is not None:
            query = query.where(AuditRecord.seq > after)
        rows = session.scalars(query).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
        session.expunge_all()


def _first_absent(session: Session, after: int, before: int | None) -> int | None:
    """The first ``seq`` above ``after`` (and below ``before``) that no record holds: where a
    record removed from a chain was, as far as the whole log can tell (PostgreSQL leaves
    numbers unused by transactions that rolled back, so it may name one of those first)."""
    taken = select(AuditRecord.seq)
    if session.execute(taken.where(AuditRecord.seq == after + 1)).first() is None:
        found: int | None = after + 1
    else:
        following = AuditRecord.__table__.alias("following")
        found = session.execute(
            select(func.min(AuditRecord.seq) + 1).where(
                AuditRecord.seq > after,
                ~exists().where(following.c.seq == AuditRecord.seq + 1),
            )
        ).scalar_one()
    if found is None or (before is not None and found >= before):
        return None
    return found


def verify_chain(
    *,
    session: Session,
    batch: int = 2000,
    check_seals: bool = True,
    progress: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Walk every chain of the log and report the first record that was edited, removed or
    reordered, a chain whose tail was cut off, and a chain removed whole.

    ``progress`` is told how many records were read so far, after each ``batch`` of them.

    The heads are read first and each chain's walk stops at its head: records appended while the
    walk runs (each statement may see newer commits) are not mistaken for a damaged tail, nor
    chains opened meanwhile for stray records. Every chain but the platform one must be named
    by an opening record on the platform chain, and every chain so named must still be there.
    Where the session's database has the installation's audit key, every record's seal and
    every head's are checked too (``check_seals``), so even a chain rewritten consistently from
    some record on, hashes and head included, is caught by one who cannot read the key.
    """
    key = audit_key_of(session) if check_seals else None
    # Read as columns, not as objects the session may hold from earlier in the transaction.
    heads = {
        row.chain: _Head(row.chain, row.seq, row.hash, row.seal, row.first_seq)
        for row in session.execute(
            select(
                AuditHead.chain, AuditHead.seq, AuditHead.hash, AuditHead.seal, AuditHead.first_seq
            )
        )
    }
    walks: dict[str, _Walk] = {}
    opened: dict[str, int] = {}
    headless: dict[str, int] = {}
    beyond: dict[str, tuple[int, int]] = {}
    faults = _Faults()
    checked = read = 0
    for entry in _iter_records(session, batch):
        read += 1
        if progress is not None and read % batch == 0:
            progress(read)
        head = heads.get(entry.chain)
        if head is None:
            headless.setdefault(entry.chain, entry.seq)
            continue
        if entry.chain_seq > head.seq:
            # Appended after the heads were read, or not: the head is read again at the end.
            beyond.setdefault(entry.chain, (entry.seq, entry.chain_seq))
            continue
        walk = walks.get(entry.chain) or walks.setdefault(entry.chain, _walk_of(head))
        if walk.broken:
            continue
        problem = _misfit(session, key, walk, entry)
        if problem is not None:
            walk.broken = True
            faults.add(*problem)
            continue
        if walk.first_seq is None:
            walk.first_seq = entry.seq
        walk.expected, walk.prev_hash, walk.last_seq = walk.expected + 1, entry.hash, entry.seq
        checked += 1
        if entry.chain == PLATFORM_CHAIN and entry.action == OPEN_ACTION:
            named = entry.detail.get("chain")
            if isinstance(named, str):
                opened.setdefault(named, entry.seq)
    for chain, head in heads.items():
        _check_head(session, key, chain, head, walks.get(chain) or _walk_of(head), opened, faults)
    _check_presence(session, heads, opened, headless, beyond, faults)
    fault = faults.first()
    if fault is not None:
        return VerifyResult(False, checked, fault[0], fault[1])
    if not heads and _has_tenants(session):
        # Creating a tenant writes a record, so tenants without any means a wiped log.
        return VerifyResult(False, 0, 1, "the log is empty although tenants exist: it was wiped")
    return VerifyResult(
        True,
        checked,
        head_hash=_heads_digest(heads) if heads else None,
        sealed=key is not None,
        chains=len(heads),
        heads=tuple(
            (chain, heads[chain].seq, heads[chain].hash)
            for chain in sorted(heads, key=lambda name: (name != PLATFORM_CHAIN, name))
        ),
    )


def _check_presence(
    session: Session,
    heads: Mapping[str, _Head],
    opened: Mapping[str, int],
    headless: Mapping[str, int],
    beyond: Mapping[str, tuple[int, int]],
    faults: _Faults,
) -> None:
    """Chains named on the platform chain that are gone, records whose chain has no head, and
    records beyond their chain's head (``beyond``: the first one's ``seq`` and ``chain_seq``)."""
    for chain, (seq, chain_seq) in beyond.items():
        now = session.execute(select(AuditHead.seq).where(AuditHead.chain == chain)).scalar()
        if now is None or now < chain_seq:
            faults.add(seq, f"it lies beyond the head of {_label(chain)}")
    for chain, seq in opened.items():
        if chain not in heads and chain not in headless:
            at = _first_absent(session, seq, None) or seq + 1
            faults.add(at, f"{_label(chain)} was removed: its head and records are gone")
    for chain, seq in headless.items():
        if chain in opened or chain == PLATFORM_CHAIN:
            faults.add(seq, f"the head of {_label(chain)} is missing")
        elif session.execute(select(AuditHead.seq).where(AuditHead.chain == chain)).first() is None:
            faults.add(seq, f"{_label(chain)} has records but no head, and was never opened")
        # else: the chain was opened while the walk ran; its head was not read, nor its records


def _misfit(
    session: Session, key: bytes | None, walk: _Walk, entry: AuditRecord
) -> tuple[int, str] | None:
    """Where and why ``entry`` does not follow the walk of its chain so far (``None``: it fits)."""
    if entry.chain_seq != walk.expected:
        gap = _first_absent(session, walk.last_seq, entry.seq)
        if entry.chain_seq > walk.expected and gap is not None:
            return gap, f"record {gap} was removed (next in {_label(entry.chain)} is {entry.seq})"
        return entry.seq, "out of order: it is not in its place in its chain"
    if entry.prev_hash != walk.prev_hash:
        return entry.seq, "out of order: it does not follow the record before it"
    if record_hash(entry.prev_hash, entry) != entry.hash:
        return entry.seq, "its contents were edited"
    if key is not None and not _sealed(entry.seal, record_seal(key, entry.hash)):
        return entry.seq, _seal_problem("it", entry.seal)
    return None


def _check_head(
    session: Session,
    key: bytes | None,
    chain: str,
    head: _Head,
    walk: _Walk,
    opened: Mapping[str, int],
    faults: _Faults,
) -> None:
    if walk.broken:
        return
    label = _label(chain)
    if chain != PLATFORM_CHAIN and chain not in opened:
        faults.add(walk.first_seq or 1, f"{label} was never opened on the platform chain")
        return
    last = walk.expected - 1
    if head.seq > last:
        at = _first_absent(session, walk.last_seq, None) or walk.last_seq + 1
        faults.add(
            at,
            f"records {last + 1}..{head.seq} of {label} were removed (its head names them)"
            if chain != PLATFORM_CHAIN
            else f"records {last + 1}..{head.seq} were removed",
        )
        return
    if head.hash != walk.prev_hash:
        faults.add(walk.last_seq or 1, f"the head of {label} does not match its last record")
        return
    if key is not None and not _sealed(head.seal, head_seal(key, head.seq, head.hash, chain=chain)):
        faults.add(walk.last_seq or 1, _seal_problem(f"the head of {label}", head.seal))


def _heads_digest(heads: Mapping[str, _Head]) -> str:
    lines = "".join(
        f"{chain}\n{heads[chain].seq}\n{heads[chain].hash}\n" for chain in sorted(heads)
    )
    return hashlib.sha256(lines.encode()).hexdigest()


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
    """Seal the records and the heads that carry no seal yet (a log kept before the installation
    had its audit key); how many records were sealed. The log must verify first, hashes and any
    seals it has: a damaged log is refused, never blessed. Audited."""
    key = audit_key_of(session)
    if key is None:
        raise Misconfigured("this database has no audit key to seal with")
    # Read-only checks first, each refusing what sealing would bless: seals removed from
    # records after sealed ones, heads unsealed although their chains' records are sealed (a cut
    # tail hidden by moving the head back, say), then the chains themselves.
    _check_record_seals(session, key, batch)
    heads = session.execute(
        select(AuditHead.id, AuditHead.chain, AuditHead.seq, AuditHead.hash, AuditHead.seal)
    ).all()
    for head in heads:
        if head.seal is None and _has_sealed_records(session, head.chain):
            raise Conflict(
                "the log is not sealed: its head carries no seal although records do; "
                "it was removed"
            )
    found = verify_chain(session=session, batch=batch, check_seals=False)
    if not found.ok:
        raise Conflict(
            "the log is not sealed: the audit chain is broken at record %(seq)s: %(problem)s",
            params={"seq": found.seq, "problem": found.problem},
        )
    sealed = _seal_records(session, key, batch)
    for head in heads:
        if head.seal is None:
            session.execute(
                update(AuditHead)
                .where(AuditHead.id == head.id)
                .values(seal=head_seal(key, head.seq, head.hash, chain=head.chain))
            )
        elif not _sealed(head.seal, head_seal(key, head.seq, head.hash, chain=head.chain)):
            raise Conflict("the log is not sealed: its head has a wrong seal")
    record(
        session=session,
        actor=actor,
        action="core.audit.seal",
        target="audit",
        detail={"sealed": sealed},
    )
    return sealed


def _has_sealed_records(session: Session, chain: str) -> bool:
    sealed = select(AuditRecord.seq).where(
        AuditRecord.chain == chain, AuditRecord.seal.is_not(None)
    )
    return session.execute(sealed.limit(1)).first() is not None


def _check_record_seals(session: Session, key: bytes, batch: int) -> None:
    """Refuse a wrong seal, and an unsealed record after a sealed one: its seal was removed (a
    rewrite), since a log kept before the key has all its earlier records unsealed."""
    after, seen_sealed = 0, False
    while True:
        rows = session.execute(
            select(AuditRecord.seq, AuditRecord.hash, AuditRecord.seal)
            .where(AuditRecord.seq > after)
            .order_by(AuditRecord.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        for row in rows:
            if row.seal is not None:
                if not _sealed(row.seal, record_seal(key, row.hash)):
                    raise Conflict(
                        "the log is not sealed: record %(seq)s has a wrong seal",
                        params={"seq": row.seq},
                    )
                seen_sealed = True
            elif seen_sealed:
                raise Conflict(
                    "the log is not sealed: record %(seq)s carries no seal although records "
                    "before it do; its seal was removed",
                    params={"seq": row.seq},
                )
        after = rows[-1].seq


def _seal_records(session: Session, key: bytes, batch: int) -> int:
    """Seal the records that carry no seal (checked: all of them precede every sealed one)."""
    sealed, after = 0, 0
    while True:
        rows = session.execute(
            select(AuditRecord.seq, AuditRecord.hash)
            .where(AuditRecord.seq > after, AuditRecord.seal.is_(None))
            .order_by(AuditRecord.seq)
            .limit(batch)
        ).all()
        if not rows:
            return sealed
        for row in rows:
            session.execute(
                update(AuditRecord)
                .where(AuditRecord.seq == row.seq, AuditRecord.seal.is_(None))
                .values(seal=record_seal(key, row.hash))
            )
            sealed += 1
        after = rows[-1].seq


def _has_tenants(session: Session) -> bool:
    # Imported here: tenants' service records audit entries, so it imports this module.
    from civicloud.core.tenants.models import Tenant

    return session.scalars(select(Tenant.id).limit(1)).first() is not None
