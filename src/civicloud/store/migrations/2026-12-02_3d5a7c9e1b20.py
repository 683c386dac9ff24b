"""store: Store's branch of the history starts here

It starts where Pay's does, on core's history before the module branches (core keeps its own
head); Store's tables refer only to core tables made before it (tenants, regions, users).

Revision ID: 3d5a7c9e1b20
Revises: 7c4e1a9d2f60
Create Date: 2026-12-02 05:20:00+00:00
"""

from collections.abc import Sequence

revision: str = "3d5a7c9e1b20"
down_revision: str | None = "7c4e1a9d2f60"
branch_labels: str | Sequence[str] | None = ("store",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: the branch begins."""


def downgrade() -> None:
    """Nothing to undo."""
