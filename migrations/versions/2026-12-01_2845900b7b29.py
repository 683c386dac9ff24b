"""sign-in failures no longer lock an account: user_account.locked_until goes

Failed sign-ins are limited per client address and per (account, address) in the server
instead, so that nobody can lock someone else out; the account keeps only its failure count.

Revision ID: 2845900b7b29
Revises: b20795c8b072
Create Date: 2026-12-01 21:24:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import civicloud.core.db

revision: str = "2845900b7b29"
down_revision: str | None = "b20795c8b072"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ALTER TABLE … DROP COLUMN (SQLite 3.35 and later too), not a batch rebuild: the
    # table is referenced by keys, sessions and bindings, which a rebuild would have to carry.
    op.drop_column("user_account", "locked_until")


def downgrade() -> None:
    op.add_column(
        "user_account",
        sa.Column("locked_until", civicloud.core.db.UTCDateTime(timezone=True), nullable=True),
    )
