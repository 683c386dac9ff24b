"""8d2f1c7b3a10 on a log kept before chains: it becomes the platform chain and verifies, on both
databases; new records go to their roots' chains; the revision undoes and redoes.

The old log is written as civicloud wrote it at the revision before: one chain, hashed over the
previous hash and the record's fields, each record and the single head (row 1) sealed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, Engine, Uuid, column, inspect, select, table, text
from tests.conftest import PostgresServer
from tests.factories.core import SYSTEM, make_tenant

from civicloud.core import audit
from civicloud.core.audit import AuditRecord
from civicloud.core.audit.models import PLATFORM_CHAIN
from civicloud.core.bootstrap import ensure_reference_data
from civicloud.core.db import Database, UTCDateTime, make_engine
from civicloud.core.migrate import alembic_config

REVISION = "8d2f1c7b3a10"
KEY = b"an audit key of the installation"
Migration = Callable[[Config, str], None]


def revision_before() -> str:
    found = ScriptDirectory.from_config(alembic_config("")).get_revision(REVISION)
    assert found is not None
    assert isinstance(found.down_revision, str)
    return found.down_revision


@pytest.fixture
def empty_engine(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Iterator[Engine]:
    """An engine on a new, empty database of the current backend (never the shared one)."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'audit-migration.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"civicloud_audit_{uuid.uuid4().hex[:12]}")
    engine = make_engine(url)
    yield engine
    engine.dispose()


def migrate(engine: Engine, migration: Migration, revision: str) -> None:
    """As ``civicloud db upgrade`` runs Alembic: one transaction, the audit key at hand."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes["audit_key"] = KEY
        migration(config, revision)


def old_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """A record's hash as civicloud computed it before chains."""
    body = {
        "at": row["at"].isoformat(timespec="microseconds"),
        "actor": row["actor"],
        "tenant_id": str(row["tenant_id"]) if row["tenant_id"] else None,
        "action": row["action"],
        "target": row["target"],
        "request_id": row["request_id"],
        "outcome": row["outcome"],
        "detail": row["detail"],
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def seal(message: str) -> str:
    return hmac.new(KEY, message.encode(), "sha256").hexdigest()


def write_old_log(engine: Engine, count: int) -> list[str]:
    """``count`` records and their head, as the code before chains appended them; the hashes."""
    hashes: list[str] = []
    # The tables as they were then (as the models declared them, not as reflection guesses).
    records = table(
        "audit_record",
        *(column(name) for name in ("seq", "actor", "action", "target", "request_id", "outcome")),
        *(column(name) for name in ("prev_hash", "hash", "seal")),
        column("at", UTCDateTime()),
        column("tenant_id", Uuid()),
        column("detail", JSON()),
    )
    head = table("audit_head", column("id"), column("seq"), column("hash"), column("seal"))
    with engine.begin() as connection:
        prev_hash = "0" * 64
        for seq in range(1, count + 1):
            row: dict[str, Any] = {
                "seq": seq,
                "at": datetime(2026, 11, 1, 8, tzinfo=UTC) + timedelta(seconds=seq),
                "actor": "li.wei",
                # some about a tenant, some about none: before chains, all in the one chain
                "tenant_id": uuid.uuid4() if seq % 2 else None,
                "action": "core.tenant.rename",
                "target": f"tenant:old-{seq}",
                "request_id": f"r{seq}",
                "outcome": "success",
                "detail": {"n": seq, "名": "旧"},
            }
            digest = old_hash(prev_hash, row)
            row |= {
                "prev_hash": prev_hash,
                "hash": digest,
                "seal": seal(f"civicloud-audit-record\n{digest}"),
            }
            connection.execute(records.insert().values(row))
            hashes.append(prev_hash := digest)
        connection.execute(
            head.insert().values(
                id=1,
                seq=count,
                hash=prev_hash,
                seal=seal(f"civicloud-audit-head\n{count}\n{prev_hash}"),
            )
        )
    return hashes


def verified(database: Database) -> audit.VerifyResult:
    with database.unit_of_work(write=False) as session:
        return audit.verify_chain(session=session)


def test_a_log_kept_before_chains_verifies_after_the_upgrade_and_grows_in_chains(
    empty_engine: Engine,
) -> None:
    # given a log of seven records kept at the revision before, sealed
    migrate(empty_engine, command.upgrade, revision_before())
    hashes = write_old_log(empty_engine, 7)
    # when the database is upgraded to head
    migrate(empty_engine, command.upgrade, "head")
    # then the log is one chain, the platform's, every record kept as it was, and it verifies,
    # every seal included
    database = Database(empty_engine, audit_key=KEY)
    result = verified(database)
    assert result.ok, result.describe()
    assert (result.checked, result.chains, result.sealed) == (7, 1, True)
    with database.unit_of_work(write=False) as session:
        rows = session.scalars(select(AuditRecord).order_by(AuditRecord.seq)).all()
        assert [r.hash for r in rows] == hashes
        assert {(r.chain, r.hash_format) for r in rows} == {(PLATFORM_CHAIN, 1)}
        assert [r.chain_seq for r in rows] == [r.seq for r in rows]
    # when civicloud writes on: a root tenant and a record about nobody
    with database.unit_of_work() as session:
        ensure_reference_data(session=session)
        root = make_tenant(session)
        audit.record(session=session, actor=SYSTEM, action="tests.after", target="t")
    # then the root has a chain of its own, opened on the platform chain after the old records,
    # and the whole log still verifies
    result = verified(database)
    assert result.ok, result.describe()
    assert result.chains == 2
    with database.unit_of_work(write=False) as session:
        after = session.scalars(select(AuditRecord).where(AuditRecord.seq > 7)).all()
        assert {(r.chain, r.action) for r in after} >= {
            (PLATFORM_CHAIN, audit.service.OPEN_ACTION),
            (str(root.id), "core.tenant.create"),
            (PLATFORM_CHAIN, "tests.after"),
        }
        assert min(r.chain_seq for r in after if r.chain == PLATFORM_CHAIN) == 8
    # and the revision is not undone over records written in chains
    with pytest.raises(RuntimeError, match="written in chains"):
        migrate(empty_engine, command.downgrade, revision_before())
    assert verified(database).ok


def test_the_revision_undoes_and_redoes_over_a_log_kept_before_chains(
    empty_engine: Engine,
) -> None:
    # given a log kept before chains, upgraded to head
    before = revision_before()
    migrate(empty_engine, command.upgrade, before)
    hashes = write_old_log(empty_engine, 4)
    migrate(empty_engine, command.upgrade, "head")
    # when the revision is undone
    migrate(empty_engine, command.downgrade, before)
    # then the log is the single chain it was: its columns and sequence gone, its hashes linked
    columns = {c["name"] for c in inspect(empty_engine).get_columns("audit_record")}
    assert not columns & {"chain", "chain_seq", "hash_format"}
    with empty_engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM audit_record ORDER BY seq")).mappings().all()
        head = connection.execute(text("SELECT seq, hash FROM audit_head")).one()
    prev_hash = "0" * 64
    for row in rows:
        values = dict(row)
        if isinstance(values["detail"], str):  # SQLite hands JSON back as text here
            values["detail"] = json.loads(values["detail"])
        if values["tenant_id"] is not None:  # SQLite: 32 hex digits
            values["tenant_id"] = uuid.UUID(str(values["tenant_id"]))
        if isinstance(values["at"], str):
            values["at"] = datetime.fromisoformat(values["at"]).replace(tzinfo=UTC)
        assert values["prev_hash"] == prev_hash
        assert old_hash(prev_hash, values) == values["hash"]
        prev_hash = values["hash"]
    assert [r["hash"] for r in rows] == hashes
    assert tuple(head) == (4, hashes[-1])
    # when it is done again, then it verifies as after the first upgrade
    migrate(empty_engine, command.upgrade, "head")
    result = verified(Database(empty_engine, audit_key=KEY))
    assert result.ok, result.describe()
    assert result.checked == 4
    # and the whole history still goes down to nothing and up again
    migrate(empty_engine, command.downgrade, "base")
    migrate(empty_engine, command.upgrade, "head")
    assert verified(Database(empty_engine, audit_key=KEY)).ok
