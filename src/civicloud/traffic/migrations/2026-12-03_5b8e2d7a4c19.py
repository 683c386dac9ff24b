"""traffic: tenants' road networks, on a branch of its own that depends on core's

Revision ID: 5b8e2d7a4c19
Revises: 7c4e1a9d2f60
Create Date: 2026-12-03 11:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import civicloud.core.db

revision: str = "5b8e2d7a4c19"
down_revision: str | None = "7c4e1a9d2f60"
branch_labels: str | Sequence[str] | None = ("traffic",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "traffic_network",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("source_name", sa.String(length=255), nullable=False),
        sa.Column("signals", sa.Integer(), nullable=False),
        sa.Column("edges", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("signals > 0", name=op.f("ck_traffic_network_has_signals")),
        sa.CheckConstraint("edges >= 0", name=op.f("ck_traffic_network_edges_positive")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_traffic_network_tenant_id_tenant"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traffic_network")),
        sa.UniqueConstraint("tenant_id", "name", name="uq_traffic_network_name"),
    )
    op.create_index(
        op.f("ix_traffic_network_tenant_id"), "traffic_network", ["tenant_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_traffic_network_tenant_id"), table_name="traffic_network")
    op.drop_table("traffic_network")
