"""pay_payment_bill: payments for the same bill may be in flight together

The unique index that allowed one payment in flight per bill goes: a payment is no longer
exclusive, and the first success pays the bill (``pay_bill_payment.bill_id`` is its primary
key; a later success is refunded). An index of the same rows, not unique, keeps the look-up of
a bill's payments in flight (the biller's amend and cancel, a payer starting again) quick.

A downgrade brings the unique index back, and fails while a bill has two payments in flight
(let them end first).

Revision ID: b328d9ba8c7e
Revises: 315c6693a167
Create Date: 2026-12-01 23:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b328d9ba8c7e"
down_revision: str | None = "315c6693a167"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("uq_pay_payment_bill_active", table_name="pay_payment_bill")
    op.create_index(
        "ix_pay_payment_bill_active",
        "pay_payment_bill",
        ["bill_id"],
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )


def downgrade() -> None:
    op.drop_index("ix_pay_payment_bill_active", table_name="pay_payment_bill")
    op.create_index(
        "uq_pay_payment_bill_active",
        "pay_payment_bill",
        ["bill_id"],
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )
