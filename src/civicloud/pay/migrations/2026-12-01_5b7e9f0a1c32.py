"""pay: Pay's own branch of the history starts here

Pay's tables were made by revisions of the one history the installation had until now (they stay
there: the history is not rewritten). From here on each module keeps its revisions in its own
package, on a branch labelled with its name that depends on core's, and ``civicloud db upgrade``
applies every branch's head. This revision changes nothing; it is where Pay's branch begins.

Revision ID: 5b7e9f0a1c32
Revises: 7c4e1a9d2f60
Create Date: 2026-12-01 23:59:00+00:00
"""

from collections.abc import Sequence

revision: str = "5b7e9f0a1c32"
down_revision: str | None = "7c4e1a9d2f60"
branch_labels: str | Sequence[str] | None = ("pay",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: the branch begins."""


def downgrade() -> None:
    """Nothing to undo."""
