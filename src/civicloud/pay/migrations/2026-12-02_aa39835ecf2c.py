"""pay: ledger entries keep what their memo says as a code and values

A posting writes, beside its English memo, a memo code (``payment``, ``refund``…) and its values
(a trade number, a date), so that the ledger page says it in the reader's language. Entries
posted before have neither and keep showing their memo as written; an adjustment's memo is the
operator's own words and has no code.

Revision ID: aa39835ecf2c
Revises: c7d5e1f3a8b2
Create Date: 2026-12-02 01:45:50.302443+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "aa39835ecf2c"
down_revision: str | None = "c7d5e1f3a8b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Two nullable columns: nothing to backfill."""
    with op.batch_alter_table("pay_journal_entry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("memo_code", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("memo_params", sa.JSON(), nullable=True))


def downgrade() -> None:
    """The columns go; the memos stay."""
    with op.batch_alter_table("pay_journal_entry", schema=None) as batch_op:
        batch_op.drop_column("memo_params")
        batch_op.drop_column("memo_code")
