"""pay_biller.return_origins: the origins of a biller's own site or app, where its payments
may send citizens back (``https://host[:port]``, normalised, matched exactly)

Billers made before have none: their payments return to this installation only, as before.

Revision ID: 315c6693a167
Revises: 5f3c1d7e9a21
Create Date: 2026-12-01 22:05:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "315c6693a167"
down_revision: str | None = "5f3c1d7e9a21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "pay_biller",
        sa.Column("return_origins", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
    )


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35 and later too), not a batch rebuild: bills, payments and
    # settlements reference the table.
    op.drop_column("pay_biller", "return_origins")
