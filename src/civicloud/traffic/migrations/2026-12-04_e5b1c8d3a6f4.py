"""traffic: Parquet files of kept counts retired by compaction, deleted after a grace period

Revision ID: e5b1c8d3a6f4
Revises: c3a7e5f19b42
Create Date: 2026-12-04 05:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import civicloud.core.db

revision: str = "e5b1c8d3a6f4"
down_revision: str | None = "c3a7e5f19b42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "traffic_count_retired_file",
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("network_id", sa.Uuid(), nullable=False),
        sa.Column("retired_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["traffic_network.id"],
            name=op.f("fk_traffic_count_retired_file_network_id_traffic_network"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("path", name=op.f("pk_traffic_count_retired_file")),
    )
    op.create_index(
        op.f("ix_traffic_count_retired_file_network_id"),
        "traffic_count_retired_file",
        ["network_id"],
    )
    op.create_index(
        op.f("ix_traffic_count_retired_file_retired_at"),
        "traffic_count_retired_file",
        ["retired_at"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_traffic_count_retired_file_retired_at"), table_name="traffic_count_retired_file"
    )
    op.drop_index(
        op.f("ix_traffic_count_retired_file_network_id"), table_name="traffic_count_retired_file"
    )
    op.drop_table("traffic_count_retired_file")
