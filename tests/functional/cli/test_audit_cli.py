"""``civicloud audit verify`` against a chain tampered with directly in the database.

Someone with access to the database edits a record, deletes one, swaps two or cuts the tail
off; ``verify`` must fail and name the first record that no longer fits. On SQLite and on
PostgreSQL (the command reads ``CIVICLOUD_DATABASE_URL``, as in production).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session

from civicloud.core.audit import AuditHead, AuditRecord, record_hash

from .conftest import Run

TAMPERING: dict[str, tuple[list[str], int]] = {
    "edit a target": (["UPDATE audit_record SET target = 'tenant:forged' WHERE seq = 7"], 7),
    "edit the detail": (['UPDATE audit_record SET detail = \'{"kind": "x"}\' WHERE seq = 3'], 3),
    "edit the outcome": (["UPDATE audit_record SET outcome = 'failed' WHERE seq = 12"], 12),
    "delete a record": (["DELETE FROM audit_record WHERE seq = 10"], 10),
    "swap two records": (
        [
            "UPDATE audit_record SET seq = -1 WHERE seq = 4",
            "UPDATE audit_record SET seq = 4 WHERE seq = 8",
            "UPDATE audit_record SET seq = 8 WHERE seq = -1",
        ],
        4,
    ),
    "truncate the tail": (["DELETE FROM audit_record WHERE seq >= 20"], 20),
    "delete the first record": (["DELETE FROM audit_record WHERE seq = 1"], 1),
    "wipe the log and its head": (["DELETE FROM audit_record", "DELETE FROM audit_head"], 1),
}


@pytest.fixture
def demo_database(
    request: pytest.FixtureRequest,
    database_url: str,
    civicloud: Run,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Engine]:
    """The demo world, made by the CLI on the current backend; an engine to tamper with it."""
    url = f"sqlite:///{data_dir / 'civicloud.db'}"
    if not database_url.startswith("sqlite"):
        server = request.getfixturevalue("postgres_server")
        url = server.create_database(f"civicloud_tamper_{uuid.uuid4().hex[:10]}")
        monkeypatch.setenv("CIVICLOUD_DATABASE_URL", url)
    seeded = civicloud("demo", "--no-serve")
    assert seeded.code == 0, seeded.err
    engine = create_engine(url)
    yield engine
    engine.dispose()


def test_an_untouched_chain_verifies(civicloud: Run, demo_database: Engine) -> None:
    with demo_database.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM audit_record")).scalar_one()
    result = civicloud("audit", "verify")
    assert result.code == 0, result.err
    # every record the demo wrote (its tenants, users, roles, billers and bills) was checked
    assert count > 29
    assert f"audit chain intact: {count} records" in result.out


@pytest.mark.parametrize("tampering", sorted(TAMPERING))
def test_tampering_is_found_at_the_first_bad_record(
    civicloud: Run, demo_database: Engine, tampering: str
) -> None:
    # given a chain changed behind civicloud's back
    statements, first_bad = TAMPERING[tampering]
    with demo_database.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    # when it is verified
    result = civicloud("audit", "verify")
    # then verification fails, naming the first record that does not fit
    assert result.code == 1
    assert "Traceback" not in result.out + result.err
    assert f"broken at record {first_bad}:" in result.err, result.err


def test_a_forged_record_with_a_recomputed_hash_is_still_found(
    civicloud: Run, demo_database: Engine
) -> None:
    # given a record edited and its own hash recomputed, but not those after it
    with Session(demo_database) as session, session.begin():
        forged = session.get(AuditRecord, 5)
        assert forged is not None
        forged.target = "tenant:forged"
        forged.hash = record_hash(forged.prev_hash, forged)
    # then its seal no longer fits its hash (and the next record no longer follows it)
    result = civicloud("audit", "verify")
    assert result.code == 1
    assert "broken at record 5: it has a wrong seal" in result.err, result.err


def _rewrite_from(engine: Engine, first: int) -> None:
    """Edit record ``first`` and recompute every hash from it on, and the head: a rewrite the
    hash chain alone cannot tell from the truth."""
    with Session(engine) as session, session.begin():
        records = session.scalars(
            select(AuditRecord).where(AuditRecord.seq >= first).order_by(AuditRecord.seq)
        ).all()
        records[0].target = "tenant:forged"
        prev_hash = records[0].prev_hash
        for entry in records:
            entry.prev_hash = prev_hash
            entry.hash = prev_hash = record_hash(prev_hash, entry)
        head = session.get(AuditHead, 1)
        assert head is not None
        head.hash = prev_hash


def test_a_log_rewritten_consistently_from_a_record_on_is_found_by_its_seal(
    civicloud: Run, demo_database: Engine
) -> None:
    # given records rewritten from record 5 on, every hash and the head recomputed to fit
    _rewrite_from(demo_database, 5)
    # when it is verified by the installation, which holds the audit key
    result = civicloud("audit", "verify")
    # then the first rewritten record is named: its seal cannot be recomputed without the key
    assert result.code == 1
    assert "broken at record 5: it has a wrong seal" in result.err, result.err


def test_removing_seals_does_not_hide_a_rewrite(civicloud: Run, demo_database: Engine) -> None:
    # given a rewrite whose seals were removed, as if the log had been kept without a key
    _rewrite_from(demo_database, 5)
    with demo_database.begin() as connection:
        connection.execute(text("UPDATE audit_record SET seal = NULL WHERE seq >= 5"))
    # then verification names the first unsealed record
    result = civicloud("audit", "verify")
    assert result.code == 1
    assert "broken at record 5: it carries no seal" in result.err, result.err


def test_a_log_kept_without_the_key_is_sealed_once_it_verifies(
    civicloud: Run, demo_database: Engine
) -> None:
    # given a log whose records and head carry no seals (kept before the installation's key)
    with demo_database.begin() as connection:
        connection.execute(text("UPDATE audit_record SET seal = NULL"))
        connection.execute(text("UPDATE audit_head SET seal = NULL"))
    assert "carries no seal" in civicloud("audit", "verify").err
    # when the operator seals it
    sealed = civicloud("audit", "seal")
    # then every record is sealed, the sealing is audited, and the log verifies, seals and all
    assert sealed.code == 0, sealed.err
    assert "records sealed" in sealed.out
    verified = civicloud("audit", "verify")
    assert verified.code == 0, verified.err
    assert "every seal checked" in verified.out
    listed = civicloud("audit", "list", "--action", "core.audit.seal")
    assert "core.audit.seal" in listed.out


def test_a_damaged_log_is_never_sealed(civicloud: Run, demo_database: Engine) -> None:
    # given an unsealed log with an edited record
    with demo_database.begin() as connection:
        connection.execute(text("UPDATE audit_record SET seal = NULL"))
        connection.execute(text("UPDATE audit_record SET target = 'tenant:forged' WHERE seq = 7"))
    # when the operator tries to seal it, then that is refused and nothing is sealed
    refused = civicloud("audit", "seal")
    assert refused.code != 0
    assert "Traceback" not in refused.out + refused.err
    assert "broken at record 7" in refused.err, refused.err
    with demo_database.connect() as connection:
        assert (
            connection.execute(
                text("SELECT count(*) FROM audit_record WHERE seal IS NOT NULL")
            ).scalar_one()
            == 0
        )


def test_a_cut_tail_whose_head_seal_was_removed_is_never_sealed(
    civicloud: Run, demo_database: Engine
) -> None:
    # given a sealed log whose tail was cut off, the head moved back and its seal removed
    with demo_database.begin() as connection:
        connection.execute(text("DELETE FROM audit_record WHERE seq >= 20"))
        connection.execute(
            text(
                "UPDATE audit_head SET seq = 19, seal = NULL, "
                "hash = (SELECT hash FROM audit_record WHERE seq = 19)"
            )
        )
    # when the operator is tempted to seal it, then that is refused
    refused = civicloud("audit", "seal")
    assert refused.code != 0
    assert "its head carries no seal although records do" in refused.err, refused.err


def test_a_rewrite_whose_seals_were_removed_is_never_sealed(
    civicloud: Run, demo_database: Engine
) -> None:
    # given a rewrite from record 5 on, its seals removed so that it looks never sealed
    _rewrite_from(demo_database, 5)
    with demo_database.begin() as connection:
        connection.execute(text("UPDATE audit_record SET seal = NULL WHERE seq >= 5"))
        connection.execute(text("UPDATE audit_head SET seal = NULL"))
    # when the operator tries to seal it, then that is refused: records before it are sealed
    refused = civicloud("audit", "seal")
    assert refused.code != 0
    assert "record 5 carries no seal although records before it do" in refused.err


def test_nothing_is_written_under_another_key(
    civicloud: Run, demo_database: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the installation started with a key that is not the one its log was sealed with
    with demo_database.connect() as connection:
        before = connection.execute(text("SELECT max(seq) FROM audit_record")).scalar_one()
    monkeypatch.setenv("CIVICLOUD_AUDIT_KEY", "not the key this log was sealed with")
    # when a change is asked for, then it is refused, naming the key, and nothing is written
    refused = civicloud(
        "admin",
        "tenant",
        "create",
        "xx",
        "--name-zh",
        "某地",
        "--name-en",
        "Somewhere",
        "--kind",
        "country",
        "--region",
        "cn-beijing",
    )
    assert refused.code != 0
    assert "Traceback" not in refused.out + refused.err
    assert "audit key" in refused.err, refused.err
    with demo_database.connect() as connection:
        assert connection.execute(text("SELECT max(seq) FROM audit_record")).scalar_one() == before
