"""pay: indexes for the console's searches

An operator finds a citizen's payments by account number, bill number or payer's name across
every biller they may see, and pages through payments, bills and refunds newest first (a keyset
over created_at and id). Each of those reads one index range instead of a table scan.

Revision ID: c7d5e1f3a8b2
Revises: 5b7e9f0a1c32
Create Date: 2026-12-02 02:05:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c7d5e1f3a8b2"
down_revision: str | None = "5b7e9f0a1c32"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_pay_bill_account_number", "pay_bill", ["account_number"]),
    ("ix_pay_bill_number", "pay_bill", ["bill_number"]),
    ("ix_pay_bill_payer", "pay_bill", ["payer_name"]),
    ("ix_pay_bill_created", "pay_bill", ["created_at", "id"]),
    ("ix_pay_payment_created", "pay_payment", ["created_at", "id"]),
    ("ix_pay_payment_bill_bill", "pay_payment_bill", ["bill_id"]),
    ("ix_pay_refund_created", "pay_refund", ["created_at", "id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
