"""audit_record: an index on (at, seq)

The console lists the audit log by a range of days and sorts it by time, a page at a time
(a keyset over at and seq): one index range instead of a scan of the whole log.

Revision ID: e2b7c9d4f1a3
Revises: db416a23ca59
Create Date: 2026-12-02 02:55:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "e2b7c9d4f1a3"
down_revision: str | None = "db416a23ca59"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_audit_record_at_seq", "audit_record", ["at", "seq"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_record_at_seq", table_name="audit_record")
