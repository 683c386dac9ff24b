"""store: Store's branch of the history starts here

Revision ID: 3d5a7c9e1b20
Revises: e2b7c9d4f1a3
Create Date: 2026-12-02 05:20:00+00:00
"""

from collections.abc import Sequence

revision: str = "3d5a7c9e1b20"
down_revision: str | None = "e2b7c9d4f1a3"
branch_labels: str | Sequence[str] | None = ("store",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: the branch begins."""


def downgrade() -> None:
    """Nothing to undo."""
