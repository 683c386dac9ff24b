"""traffic: evaluations of stored plans in SUMO, with their progress and figures

Revision ID: c3a7e5f19b42
Revises: 3c7a91e5d2f0
Create Date: 2026-12-04 01:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import civicloud.core.db

revision: str = "c3a7e5f19b42"
down_revision: str | None = "3c7a91e5d2f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "traffic_evaluation",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("network_id", sa.Uuid(), nullable=False),
        sa.Column("plan_id", sa.Uuid(), nullable=False),
        sa.Column("seeds", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("demand", sa.JSON(), nullable=False),
        sa.Column("counts_sha256", sa.String(length=64), nullable=False),
        sa.Column("steps_done", sa.Integer(), nullable=False),
        sa.Column("steps_total", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("error_detail", sa.JSON(), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_by_user", sa.Uuid(), nullable=True),
        sa.Column("created_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("progress_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')",
            name=op.f("ck_traffic_evaluation_status_known"),
        ),
        sa.CheckConstraint(
            "seeds >= 1 AND seeds <= 10", name=op.f("ck_traffic_evaluation_seeds_range")
        ),
        sa.CheckConstraint(
            "steps_done >= 0 AND steps_done <= steps_total",
            name=op.f("ck_traffic_evaluation_steps_within_total"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_traffic_evaluation_attempts_positive")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_traffic_evaluation_tenant_id_tenant"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["traffic_network.id"],
            name=op.f("fk_traffic_evaluation_network_id_traffic_network"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["traffic_plan.id"],
            name=op.f("fk_traffic_evaluation_plan_id_traffic_plan"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traffic_evaluation")),
    )
    op.create_index(op.f("ix_traffic_evaluation_tenant_id"), "traffic_evaluation", ["tenant_id"])
    op.create_index(op.f("ix_traffic_evaluation_network_id"), "traffic_evaluation", ["network_id"])
    op.create_index(op.f("ix_traffic_evaluation_plan_id"), "traffic_evaluation", ["plan_id"])
    op.create_index(op.f("ix_traffic_evaluation_status"), "traffic_evaluation", ["status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_traffic_evaluation_status"), table_name="traffic_evaluation")
    op.drop_index(op.f("ix_traffic_evaluation_plan_id"), table_name="traffic_evaluation")
    op.drop_index(op.f("ix_traffic_evaluation_network_id"), table_name="traffic_evaluation")
    op.drop_index(op.f("ix_traffic_evaluation_tenant_id"), table_name="traffic_evaluation")
    op.drop_table("traffic_evaluation")
