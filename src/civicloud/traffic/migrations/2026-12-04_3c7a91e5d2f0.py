"""traffic: the versions of each network's detector-to-movement mapping

Revision ID: 3c7a91e5d2f0
Revises: 9d3f6b1e8a27
Create Date: 2026-12-04 01:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import civicloud.core.db

revision: str = "3c7a91e5d2f0"
down_revision: str | None = "9d3f6b1e8a27"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "traffic_detector_mapping",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("network_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("detectors", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "version >= 1 AND detectors >= 1 AND rows >= 1",
            name=op.f("ck_traffic_detector_mapping_counts_positive"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_traffic_detector_mapping_tenant_id_tenant"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["traffic_network.id"],
            name=op.f("fk_traffic_detector_mapping_network_id_traffic_network"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traffic_detector_mapping")),
        sa.UniqueConstraint("network_id", "version", name="uq_traffic_detector_mapping_version"),
    )
    op.create_index(
        op.f("ix_traffic_detector_mapping_tenant_id"), "traffic_detector_mapping", ["tenant_id"]
    )
    op.create_index(
        op.f("ix_traffic_detector_mapping_network_id"), "traffic_detector_mapping", ["network_id"]
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_traffic_detector_mapping_network_id"), table_name="traffic_detector_mapping"
    )
    op.drop_index(
        op.f("ix_traffic_detector_mapping_tenant_id"), table_name="traffic_detector_mapping"
    )
    op.drop_table("traffic_detector_mapping")
