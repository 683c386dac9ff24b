"""core: job_run (what each run of a background job did) and job_state (an exclusive job's
lease on SQLite)

The runner keeps the newest runs of each job only; PostgreSQL holds an advisory lock for an
exclusive job and leaves job_state empty.

Revision ID: 9e3a2b8c4d21
Revises: 7c4e1a9d2f60
Create Date: 2026-12-02 09:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import civicloud.core.db

revision: str = "9e3a2b8c4d21"
down_revision: str | None = "7c4e1a9d2f60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_run",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job", sa.String(length=100), nullable=False),
        sa.Column("started_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("outcomes", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_run")),
    )
    op.create_index("ix_job_run_job_started", "job_run", ["job", "started_at"], unique=False)
    op.create_table(
        "job_state",
        sa.Column("job", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("lease_until", civicloud.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_job_state")),
    )


def downgrade() -> None:
    op.drop_table("job_state")
    op.drop_index("ix_job_run_job_started", table_name="job_run")
    op.drop_table("job_run")
