"""throwaway: the throwaway module's table, on a branch of its own that depends on core's

Revision ID: 7f0c2e4d9b11
Revises: 7c4e1a9d2f60
Create Date: 2026-12-02 00:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7f0c2e4d9b11"
down_revision: str | None = "7c4e1a9d2f60"
branch_labels: str | Sequence[str] | None = ("throwaway",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Make the table."""
    op.create_table(
        "throwaway_item",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("throwaway_item")
