"""pay_payment.taken_fen: what a provider took for a payment whose success we refused

A provider's success that names another amount than the payment's pays no bill, and all that
the provider took is refunded: ``taken_fen`` records it (``NULL``: the provider took the
payment's amount, or nothing in our currency), and ``refund_bound`` becomes ``refunded_fen <=
COALESCE(taken_fen, amount_fen)`` so that a take larger than the payment can be refunded in
full. Every existing row has ``taken_fen`` NULL: the new bound is the old one for each of them.

SQLite cannot alter a CHECK constraint in place, and a batch rebuild would drop ``pay_payment``,
which bills, refunds, settlements and notifications reference (``ON DELETE RESTRICT``: dropping
it fails on any installation with payments, and ``PRAGMA foreign_keys`` cannot be turned off
inside the migration's transaction). The column is added with ``ALTER TABLE ADD COLUMN``, and
the constraint's text is changed in the schema as SQLite documents for changes that do not
touch the stored rows (``writable_schema``, with ``schema_version`` incremented); as every row
satisfies the new bound, the table's content stays valid.

A downgrade fails while a payment has refunded more than its amount (an operator must settle
those first); otherwise it restores the old bound and drops the column.

Revision ID: 7c4e1a9d2f60
Revises: b328d9ba8c7e
Create Date: 2026-12-01 23:45:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c4e1a9d2f60"
down_revision: str | None = "b328d9ba8c7e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_BOUND = "refunded_fen >= 0 AND refunded_fen <= amount_fen"
NEW_BOUND = "refunded_fen >= 0 AND refunded_fen <= COALESCE(taken_fen, amount_fen)"
TAKEN_CHECK = "CONSTRAINT ck_pay_payment_taken_positive CHECK (taken_fen > 0)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"ALTER TABLE pay_payment ADD COLUMN taken_fen BIGINT {TAKEN_CHECK}")
        _sqlite_replace(f"CHECK ({OLD_BOUND})", f"CHECK ({NEW_BOUND})")
        return
    op.add_column("pay_payment", sa.Column("taken_fen", sa.BigInteger(), nullable=True))
    op.create_check_constraint(
        op.f("ck_pay_payment_taken_positive"), "pay_payment", "taken_fen > 0"
    )
    op.drop_constraint(op.f("ck_pay_payment_refund_bound"), "pay_payment", type_="check")
    op.create_check_constraint(op.f("ck_pay_payment_refund_bound"), "pay_payment", NEW_BOUND)


def downgrade() -> None:
    over = op.get_bind().scalar(
        sa.text("SELECT COUNT(*) FROM pay_payment WHERE refunded_fen > amount_fen")
    )
    if over:
        raise RuntimeError(
            f"{over} payments refunded more than their amount (what their provider took): "
            "pay_payment.taken_fen cannot be dropped"
        )
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_replace(f"CHECK ({NEW_BOUND})", f"CHECK ({OLD_BOUND})")
        _sqlite_replace(f" {TAKEN_CHECK}", "")
        op.execute("ALTER TABLE pay_payment DROP COLUMN taken_fen")
        return
    op.drop_constraint(op.f("ck_pay_payment_refund_bound"), "pay_payment", type_="check")
    op.create_check_constraint(op.f("ck_pay_payment_refund_bound"), "pay_payment", OLD_BOUND)
    op.drop_constraint(op.f("ck_pay_payment_taken_positive"), "pay_payment", type_="check")
    op.drop_column("pay_payment", "taken_fen")


def _sqlite_replace(old: str, new: str) -> None:
    """Change ``old`` (found exactly once) to ``new`` in pay_payment's CREATE TABLE, in place.

    Only for a change the stored rows already satisfy (SQLite's documented procedure for
    schema changes that leave the table's content as it is)."""
    bind = op.get_bind()
    sql = bind.scalar(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'pay_payment'")
    )
    if not isinstance(sql, str) or sql.count(old) != 1:
        raise RuntimeError(f"pay_payment's schema does not hold {old!r} once")
    version = int(bind.exec_driver_sql("PRAGMA schema_version").scalar_one())
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.execute(
        sa.text(
            "UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'pay_payment'"
        ),
        {"sql": sql.replace(old, new)},
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")
