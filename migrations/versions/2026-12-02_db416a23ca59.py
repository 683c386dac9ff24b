"""web_session: each sign-in keeps its client address and user agent

Shown to the user on "My sign-ins" and to their administrator, so that a sign-in nobody
recognises can be told apart and ended. Both are nullable: sessions from before say nothing.

Revision ID: db416a23ca59
Revises: 4c1f7e2a9b65
Create Date: 2026-12-02 01:45:10.990908+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "db416a23ca59"
down_revision: str | None = "4c1f7e2a9b65"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_address", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("user_agent", sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.drop_column("user_agent")
        batch_op.drop_column("client_address")
