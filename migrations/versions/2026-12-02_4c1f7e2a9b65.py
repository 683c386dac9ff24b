"""form_use: one-time form tokens already spent

A consequential form (a refund, a deactivation) carries a one-time token; its handler stores
the token's digest here beside the action, so that the same form sent twice acts once.

Revision ID: 4c1f7e2a9b65
Revises: 8d2f1c7b3a10
Create Date: 2026-12-02 02:05:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import civicloud.core.db

revision: str = "4c1f7e2a9b65"
down_revision: str | None = "8d2f1c7b3a10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "form_use",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("used_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_form_use")),
    )
    op.create_index(op.f("ix_form_use_used_at"), "form_use", ["used_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_form_use_used_at"), table_name="form_use")
    op.drop_table("form_use")
