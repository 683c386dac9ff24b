"""Alembic's history against the models, on both databases, each test on an empty database.

A database migrated to head has exactly the models' schema (what ``alembic check`` asks), every
revision downgrades to an empty database and upgrades again, and the latest revision's data
fix-ups (pay reconciliation items told apart and tied to refunds, webhook dead letters) do what
its comments say to rows made before it.
"""

from __future__ import annotations

import pprint
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import CHAR, DateTime, Engine, MetaData, Table, Uuid, event, inspect, text
from sqlalchemy.engine import Connection, Inspector
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tests.conftest import PostgresServer

from civicloud.app import MODULES
from civicloud.core import audit
from civicloud.core.db import UTCDateTime, make_engine
from civicloud.core.migrate import alembic_config, upgrade
from civicloud.models import Base  # every package's tables, as migrations/env.py imports them
from civicloud.pay.models import ReconciliationItem, WebhookDelivery

#: The revision before the one whose data fix-ups are tested (51c2a136e249).
BEFORE_FIXUPS = "1122a4bfc5e7"
#: Webhook attempts a delivery had before 51c2a136e249 made it dead.
ATTEMPTS_BEFORE_DEAD = 15
NOW = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)

Migration = Callable[[Config, str], None]
#: Every module's branch of the history, beside core's.
BRANCHES = tuple(m.migrations for m in MODULES if m.migrations is not None)


# --- an empty database, and Alembic run on it as civicloud runs it ---------------------------


@pytest.fixture
def empty_engine(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Iterator[Engine]:
    """An engine on a new database of the current backend, with no table and no revision.

    Never the run's shared database: downgrading drops every table.
    """
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'migrations.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"civicloud_migrations_{uuid.uuid4().hex[:12]}")
    engine = make_engine(url)
    yield engine
    engine.dispose()


def migrate(engine: Engine, migration: Migration, revision: str) -> None:
    """``alembic upgrade|downgrade revision``, in one transaction, as ``core.migrate`` does."""
    config = alembic_config(engine.url.render_as_string(hide_password=False), BRANCHES)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        migration(config, revision)


def head_revision() -> set[str]:
    """The head of core's history and of every module's branch."""
    return set(ScriptDirectory.from_config(alembic_config("", BRANCHES)).get_heads())


def current_revision(engine: Engine) -> set[str] | None:
    """The revisions the database is at (one per branch), ``None`` at base."""
    with engine.connect() as connection:
        found = set(MigrationContext.configure(connection).get_current_heads())
    return found or None


def schema_differences(engine: Engine) -> list[Any]:
    """What autogenerate would write to bring the database to the models: ``alembic check``."""
    with engine.connect() as connection:
        # The options migrations/env.py configures its context with; the naming convention
        # comes with the metadata.
        context = MigrationContext.configure(
            connection,
            opts={
                "target_metadata": Base.metadata,
                "compare_type": True,
                "render_as_batch": True,
            },
        )
        differences: list[Any] = compare_metadata(context, Base.metadata)
        return differences


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


# --- the models and the migrations agree ----------------------------------------------------


def test_a_database_migrated_to_head_has_exactly_the_models_schema(empty_engine: Engine) -> None:
    # given an empty database
    assert table_names(empty_engine) == set()
    # when every migration is applied, as civicloud does at start-up
    upgrade(empty_engine, branches=BRANCHES)
    # then it is at the head revision of every branch, with every table of the models ...
    assert current_revision(empty_engine) == head_revision()
    assert table_names(empty_engine) == set(Base.metadata.tables) | {"alembic_version"}
    # ... and autogenerate finds nothing to add, drop or alter
    differences = schema_differences(empty_engine)
    assert differences == [], (
        "the models and the migrations disagree; run `alembic revision --autogenerate`:\n"
        + pprint.pformat(differences)
    )


def test_every_revision_downgrades_to_an_empty_database_and_upgrades_again(
    empty_engine: Engine,
) -> None:
    # given a database at head
    migrate(empty_engine, command.upgrade, "heads")
    # when every revision is undone
    migrate(empty_engine, command.downgrade, "base")
    # then nothing is left but Alembic's own (empty) version table
    assert current_revision(empty_engine) is None
    assert table_names(empty_engine) == {"alembic_version"}
    # when every revision is applied again
    migrate(empty_engine, command.upgrade, "heads")
    # then the database is back at head, and still has exactly the models' schema
    assert current_revision(empty_engine) == head_revision()
    differences = schema_differences(empty_engine)
    assert differences == [], (
        "after head -> base -> head the schema differs from the models:\n"
        + pprint.pformat(differences)
    )


# --- 51c2a136e249's data fix-ups --------------------------------------------------------------


def _as_the_models_type(_inspector: Inspector, _table: Table, column: dict[str, Any]) -> None:
    # Reflection gives SQLite's storage types back: a ``Uuid`` is a CHAR(32) of hex digits there
    # (no other column is a CHAR(32)), and a timestamp a naive DATETIME. Reading them as the
    # models declare them lets the rows below be written with UUIDs and aware datetimes on both.
    reflected = column["type"]
    if isinstance(reflected, CHAR) and reflected.length == 32:
        column["type"] = Uuid()
    elif isinstance(reflected, DateTime):
        column["type"] = UTCDateTime()


def reflect(connection: Connection) -> dict[str, Table]:
    """The tables of the database as it is (not as the models are), to insert into with Core."""
    metadata = MetaData()
    event.listen(metadata, "column_reflect", _as_the_models_type)
    metadata.reflect(bind=connection)
    return dict(metadata.tables)


@dataclass(frozen=True)
class OldRows:
    """The ids of rows written before 51c2a136e249, named by what the fix-ups should make of them."""

    refund_item: uuid.UUID
    """A refund line whose payment has exactly one refund of its amount."""
    refund_missing_provider_item: uuid.UUID
    """The same refund missing from the statement: only our (negative) amount is known."""
    ambiguous_refund_item: uuid.UUID
    """A refund line whose payment has two refunds of its amount."""
    payment_item: uuid.UUID
    """A payment line (positive amounts) of the payment that has the single refund."""
    the_refund: uuid.UUID
    the_refund_no: str
    dead_delivery: uuid.UUID
    dead_since: datetime
    retrying_delivery: uuid.UUID
    delivered_delivery: uuid.UUID


def write_old_rows(connection: Connection) -> OldRows:
    """Rows as 1122a4bfc5e7's schema holds them: a tenant, a biller, payments, refunds, items."""
    t = reflect(connection)

    def add(table: str, **values: Any) -> uuid.UUID:
        row_id = values.setdefault("id", uuid.uuid4())
        connection.execute(t[table].insert().values(**values))
        return uuid.UUID(str(row_id))

    connection.execute(
        t["region"]
        .insert()
        .values(
            code="cn-migration",
            name_zh="迁移测试",
            name_en="Migration test",
            country_code="CN",
            created_at=NOW,
        )
    )
    tenant_id = uuid.uuid4()
    add(
        "tenant",
        id=tenant_id,
        slug="migration-test",
        name_zh="迁移测试",
        name_en="Migration test",
        kind="country",
        parent_id=None,
        region_code="cn-migration",
        path=f"/{tenant_id.hex}/",
        depth=0,
        created_at=NOW,
        updated_at=NOW,
        version=1,
    )
    biller_id = add(
        "pay_biller",
        tenant_id=tenant_id,
        code="water",
        name_zh="自来水公司",
        name_en="Water company",
        category="water",
        account_pattern=r"^\d{8}$",
        settlement_bank="Bank",
        settlement_account="6222000000000000",
        settlement_account_name="Water company",
        webhook_url="https://biller.example/hook",
        webhook_secret="secret",
        created_at=NOW,
        version=1,
    )

    def payment(number: int, amount_fen: int, refunded_fen: int) -> uuid.UUID:
        return add(
            "pay_payment",
            trade_no=f"T{number:031d}",
            biller_id=biller_id,
            tenant_id=tenant_id,
            provider="sandbox",
            status="succeeded",
            amount_fen=amount_fen,
            refunded_fen=refunded_fen,
            currency="CNY",
            idempotency_key=f"payment-{number}",
            request_hash="0" * 64,
            return_url="https://citizen.example/done",
            provider_trade_no=f"SANDBOX-{number}",
            checkout={},
            created_at=NOW,
            expires_at=NOW + timedelta(minutes=15),
            finished_at=NOW,
            version=1,
        )

    def refund(refund_no: str, payment_id: uuid.UUID, amount_fen: int) -> uuid.UUID:
        return add(
            "pay_refund",
            refund_no=refund_no,
            payment_id=payment_id,
            amount_fen=amount_fen,
            currency="CNY",
            idempotency_key=f"refund-{refund_no}",
            request_hash="0" * 64,
            reason="overpaid",
            origin="operator",
            status="succeeded",
            provider_refund_no=f"SANDBOX-{refund_no}",
            created_at=NOW,
            finished_at=NOW,
        )

    # a payment refunded twice, of different amounts: one refund of 30.00 yuan
    paid_once = payment(1, amount_fen=10_000, refunded_fen=5_000)
    the_refund = refund("R0000000000000000000000000000001", paid_once, 3_000)
    refund("R0000000000000000000000000000002", paid_once, 2_000)
    # a payment refunded twice, of the same amount: two refunds of 25.00 yuan
    paid_twice = payment(2, amount_fen=10_000, refunded_fen=5_000)
    refund("R0000000000000000000000000000003", paid_twice, 2_500)
    refund("R0000000000000000000000000000004", paid_twice, 2_500)

    import_id = add(
        "pay_statement_import",
        provider="sandbox",
        business_date=date(2026, 11, 20),
        content_sha256="a" * 64,
        imported_at=NOW,
        imported_by="system:test",
    )

    def item(
        payment_id: uuid.UUID, provider_amount_fen: int | None, our_amount_fen: int | None
    ) -> uuid.UUID:
        return add(
            "pay_reconciliation_item",
            import_id=import_id,
            classification="matched" if provider_amount_fen else "missing_provider",
            trade_no=None,
            provider_trade_no=None,
            provider_amount_fen=provider_amount_fen,
            our_amount_fen=our_amount_fen,
            payment_id=payment_id,
            resolution_entry_id=None,
            resolved_by=None,
            resolved_at=None,
        )

    def delivery(
        event_id: str, attempts: int, next_attempt_at: datetime, delivered_at: datetime | None
    ) -> uuid.UUID:
        return add(
            "pay_webhook_delivery",
            event_id=event_id,
            biller_id=biller_id,
            event="payment.succeeded",
            payload={"trade_no": "T1"},
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            delivered_at=delivered_at,
            last_error=None if delivered_at else "HTTP 503",
            created_at=NOW - timedelta(days=2),
        )

    # the last attempt fell due five hours ago; the retrying one is due in an hour
    last_attempt, due = NOW - timedelta(hours=5), NOW + timedelta(hours=1)
    return OldRows(
        refund_item=item(paid_once, -3_000, -3_000),
        refund_missing_provider_item=item(paid_once, None, -3_000),
        ambiguous_refund_item=item(paid_twice, -2_500, -2_500),
        payment_item=item(paid_once, 10_000, 10_000),
        the_refund=the_refund,
        the_refund_no="R0000000000000000000000000000001",
        dead_delivery=delivery("dead", ATTEMPTS_BEFORE_DEAD, last_attempt, None),
        dead_since=last_attempt,
        retrying_delivery=delivery("retrying", ATTEMPTS_BEFORE_DEAD - 1, due, None),
        delivered_delivery=delivery(
            "delivered", ATTEMPTS_BEFORE_DEAD, last_attempt, NOW - timedelta(days=1)
        ),
    )


def assert_fixed_up(engine: Engine, old: OldRows) -> None:
    """The old rows read through the models (head's schema) after the fix-ups ran."""
    with Session(engine) as session:

        def item(item_id: uuid.UUID) -> tuple[str, uuid.UUID | None, str | None]:
            found = session.get(ReconciliationItem, item_id)
            assert found is not None
            return found.kind, found.refund_id, found.refund_no

        def dead_at(delivery_id: uuid.UUID) -> datetime | None:
            found = session.get(WebhookDelivery, delivery_id)
            assert found is not None
            return found.dead_at

        tied = ("refund", old.the_refund, old.the_refund_no)
        assert item(old.refund_item) == tied, "a refund line not tied to its payment's refund"
        assert item(old.refund_missing_provider_item) == tied, (
            "a refund missing from the statement (only our amount) not tied to its refund"
        )
        assert item(old.ambiguous_refund_item) == ("refund", None, None), (
            "a refund line tied although two refunds of its payment have its amount"
        )
        assert item(old.payment_item) == ("payment", None, None)

        assert dead_at(old.dead_delivery) == old.dead_since, "attempts used up, yet not dead"
        assert dead_at(old.retrying_delivery) is None, "attempts left, yet dead"
        assert dead_at(old.delivered_delivery) is None, "delivered, yet dead"


def test_the_latest_revision_fixes_up_reconciliation_items_and_webhook_deliveries(
    empty_engine: Engine,
) -> None:
    # given a database at the revision before, holding items and deliveries made then
    migrate(empty_engine, command.upgrade, BEFORE_FIXUPS)
    with empty_engine.begin() as connection:
        old = write_old_rows(connection)
    # when it is upgraded to head
    migrate(empty_engine, command.upgrade, "heads")
    # then refund items are told apart and tied to their refund where that is unambiguous, and
    # deliveries that used up their attempts are dead since their last one
    assert current_revision(empty_engine) == head_revision()
    assert_fixed_up(empty_engine, old)

    # when the revision is undone and done again
    migrate(empty_engine, command.downgrade, BEFORE_FIXUPS)
    assert current_revision(empty_engine) == {BEFORE_FIXUPS}
    migrate(empty_engine, command.upgrade, "heads")
    # then it goes through, and gives the same result
    assert_fixed_up(empty_engine, old)


BEFORE_SEALS = "51c2a136e249"


@pytest.mark.parametrize("with_key", [True, False], ids=["with the key", "without it"])
def test_the_audit_log_kept_so_far_is_sealed_when_the_key_is_at_hand(
    empty_engine: Engine, with_key: bool
) -> None:
    # given a log of three records kept before audit seals existed
    migrate(empty_engine, command.upgrade, BEFORE_SEALS)
    hashes = [f"{n:064x}" for n in range(1, 4)]
    with empty_engine.begin() as connection:
        t = reflect(connection)
        for seq, digest in enumerate(hashes, start=1):
            connection.execute(
                t["audit_record"]
                .insert()
                .values(
                    seq=seq,
                    at=datetime(2026, 11, 1, tzinfo=UTC),
                    actor="tests",
                    tenant_id=None,
                    action="tests.seal",
                    target="t",
                    request_id="r",
                    outcome="success",
                    detail={},
                    prev_hash="0" * 64 if seq == 1 else hashes[seq - 2],
                    hash=digest,
                )
            )
        connection.execute(t["audit_head"].insert().values(id=1, seq=3, hash=hashes[-1]))
    # when the database is upgraded as civicloud upgrades it, with or without the audit key
    key = b"an audit key of the installation" if with_key else None
    config = alembic_config(empty_engine.url.render_as_string(hide_password=False), BRANCHES)
    with empty_engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes["audit_key"] = key
        command.upgrade(config, "heads")
    # then with the key every record and the head carry their seals; without it, none does
    with empty_engine.connect() as connection:
        seals = connection.execute(text("SELECT seal FROM audit_record ORDER BY seq")).scalars()
        head = connection.execute(text("SELECT seal FROM audit_head")).scalar_one()
        if key is None:
            assert (list(seals), head) == ([None, None, None], None)
        else:
            assert list(seals) == [audit.record_seal(key, digest) for digest in hashes]
            assert head == audit.head_seal(key, 3, hashes[-1])


# --- 7c4e1a9d2f60: what a provider took bounds a payment's refunds -------------------------

BEFORE_TAKEN = "b328d9ba8c7e"


def run(engine: Engine, sql: str, **values: Any) -> None:
    with engine.begin() as connection:
        connection.execute(text(sql), values)


def test_a_payment_may_refund_what_its_provider_took_and_no_more(empty_engine: Engine) -> None:
    # given payments, refunds and items made before the take was recorded
    migrate(empty_engine, command.upgrade, BEFORE_FIXUPS)
    with empty_engine.begin() as connection:
        write_old_rows(connection)
    # when the database is upgraded to head (pay_payment is referenced by their rows)
    migrate(empty_engine, command.upgrade, "heads")
    # then every payment is kept as it was, with no take
    with empty_engine.connect() as connection:
        rows = connection.execute(
            text("SELECT amount_fen, refunded_fen, taken_fen FROM pay_payment ORDER BY trade_no")
        ).all()
        refunds = connection.execute(text("SELECT COUNT(*) FROM pay_refund")).scalar_one()
    assert [tuple(row) for row in rows] == [(10_000, 5_000, None), (10_000, 5_000, None)]
    assert refunds == 4
    first = "T" + "1".rjust(31, "0")
    # and refunds are bound by the amount, or by the take when there is one
    with pytest.raises(IntegrityError):
        run(
            empty_engine, "UPDATE pay_payment SET refunded_fen = 10001 WHERE trade_no = :t", t=first
        )
    run(
        empty_engine,
        "UPDATE pay_payment SET taken_fen = 99999, refunded_fen = 99999 WHERE trade_no = :t",
        t=first,
    )
    with pytest.raises(IntegrityError):
        run(
            empty_engine,
            "UPDATE pay_payment SET refunded_fen = 100000 WHERE trade_no = :t",
            t=first,
        )
    with pytest.raises(IntegrityError):
        run(empty_engine, "UPDATE pay_payment SET taken_fen = 0 WHERE trade_no = :t", t=first)
    # and the revision is not undone while a payment refunded more than its amount
    with pytest.raises(RuntimeError, match="refunded more than their amount"):
        migrate(empty_engine, command.downgrade, BEFORE_TAKEN)
    assert current_revision(empty_engine) == head_revision()
    # when that is settled, it is undone: the old bound holds again
    run(empty_engine, "UPDATE pay_payment SET refunded_fen = 5000 WHERE trade_no = :t", t=first)
    migrate(empty_engine, command.downgrade, BEFORE_TAKEN)
    assert current_revision(empty_engine) == {BEFORE_TAKEN}
    columns = {column["name"] for column in inspect(empty_engine).get_columns("pay_payment")}
    assert "taken_fen" not in columns
    with pytest.raises(IntegrityError):
        run(
            empty_engine, "UPDATE pay_payment SET refunded_fen = 10001 WHERE trade_no = :t", t=first
        )
    # and done again, it goes through
    migrate(empty_engine, command.upgrade, "heads")
    assert schema_differences(empty_engine) == []


# --- one branch per module -------------------------------------------------------------------

#: The head of the one history every installation had before modules got branches of their own.
BEFORE_BRANCHES = "7c4e1a9d2f60"


def test_each_module_branch_starts_from_cores_history_and_is_labelled_with_its_name() -> None:
    script = ScriptDirectory.from_config(alembic_config("", BRANCHES))
    core_revisions = {
        r.revision
        for r in script.walk_revisions()
        if Path(r.path).parent.name == "versions"
        and Path(r.path).parent.parent.name == "migrations"
    }
    for module in MODULES:
        assert module.migrations is not None, f"{module.name} declares no migrations"
        own = [r for r in script.walk_revisions() if Path(r.path).parent == module.migrations]
        assert own, f"{module.name}'s branch has no revision"
        first = [r for r in own if r.down_revision not in {o.revision for o in own}]
        assert len(first) == 1, f"{module.name}'s branch must start once"
        assert first[0].down_revision in core_revisions
        assert module.name in first[0].branch_labels
    # and core's history keeps a single head of its own
    assert len([h for h in script.get_heads() if h in core_revisions]) == 1


def test_a_database_kept_before_the_branches_upgrades_to_every_head(empty_engine: Engine) -> None:
    # given a database at the head of the one history (an installation of the last release),
    # holding a tenant
    migrate(empty_engine, command.upgrade, BEFORE_BRANCHES)
    tenant_id = uuid.uuid4()
    with empty_engine.begin() as connection:
        tables = reflect(connection)
        connection.execute(
            tables["region"]
            .insert()
            .values(
                code="cn-kept", name_zh="保留", name_en="Kept", country_code="CN", created_at=NOW
            )
        )
        tenant = tables["tenant"]
        columns = {c.name for c in tenant.columns}
        row: dict[str, Any] = {
            "region_code": "cn-kept",
            "version": 1,
            "id": tenant_id,
            "slug": "kept",
            "name_zh": "保留",
            "name_en": "Kept",
            "kind": "country",
            "path": f"/{tenant_id.hex}/",
            "depth": 0,
            "created_at": NOW,
            "updated_at": NOW,
        }
        connection.execute(tenant.insert().values({k: v for k, v in row.items() if k in columns}))
    # when it is upgraded as civicloud upgrades it
    upgrade(empty_engine, branches=BRANCHES)
    # then it is at every branch's head, its rows are there, and its schema is the models'
    assert current_revision(empty_engine) == head_revision()
    with empty_engine.connect() as connection:
        assert connection.execute(text("SELECT slug FROM tenant")).scalars().all() == ["kept"]
    assert schema_differences(empty_engine) == []
