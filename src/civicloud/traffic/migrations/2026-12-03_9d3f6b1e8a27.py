"""traffic: signal plans, the append-only log of the plan each signal runs, and count batches

Revision ID: 9d3f6b1e8a27
Revises: 5b8e2d7a4c19
Create Date: 2026-12-03 17:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import civicloud.core.db

revision: str = "9d3f6b1e8a27"
down_revision: str | None = "5b8e2d7a4c19"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "traffic_plan",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("network_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("counts_sha256", sa.String(length=64), nullable=False),
        sa.Column("additional", sa.LargeBinary(), nullable=False),
        sa.Column("sheet", sa.JSON(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_by_user", sa.Uuid(), nullable=True),
        sa.Column("created_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reviewed_by", sa.String(length=200), nullable=True),
        sa.Column("reviewed_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("review_note", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "status IN ('draft', 'approved', 'rejected')", name=op.f("ck_traffic_plan_status_known")
        ),
        sa.CheckConstraint(
            "(status = 'draft') = (reviewed_at IS NULL)",
            name=op.f("ck_traffic_plan_reviewed_when_not_draft"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_traffic_plan_tenant_id_tenant"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["traffic_network.id"],
            name=op.f("fk_traffic_plan_network_id_traffic_network"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traffic_plan")),
        sa.UniqueConstraint("network_id", "name", name="uq_traffic_plan_name"),
    )
    op.create_index(op.f("ix_traffic_plan_tenant_id"), "traffic_plan", ["tenant_id"])
    op.create_index(op.f("ix_traffic_plan_network_id"), "traffic_plan", ["network_id"])
    op.create_table(
        "traffic_plan_issue",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("network_id", sa.Uuid(), nullable=False),
        sa.Column("tls_id", sa.String(length=200), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("plan_id", sa.Uuid(), nullable=True),
        sa.Column("prior_id", sa.Uuid(), nullable=True),
        sa.Column("effective_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sa.String(length=200), nullable=False),
        sa.CheckConstraint("seq > 0", name=op.f("ck_traffic_plan_issue_seq_positive")),
        sa.CheckConstraint(
            "action IN ('issue', 'rollback')", name=op.f("ck_traffic_plan_issue_action_known")
        ),
        sa.CheckConstraint(
            "action = 'rollback' OR plan_id IS NOT NULL",
            name=op.f("ck_traffic_plan_issue_issue_has_plan"),
        ),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["traffic_network.id"],
            name=op.f("fk_traffic_plan_issue_network_id_traffic_network"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["traffic_plan.id"],
            name=op.f("fk_traffic_plan_issue_plan_id_traffic_plan"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["prior_id"],
            ["traffic_plan_issue.id"],
            name=op.f("fk_traffic_plan_issue_prior_id_traffic_plan_issue"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traffic_plan_issue")),
        sa.UniqueConstraint("network_id", "tls_id", "seq", name="uq_traffic_plan_issue_seq"),
    )
    op.create_index(op.f("ix_traffic_plan_issue_network_id"), "traffic_plan_issue", ["network_id"])
    op.create_table(
        "traffic_count_batch",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("network_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("first_begin", civicloud.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_end", civicloud.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("days", sa.JSON(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "rows >= 0 AND duplicates >= 0", name=op.f("ck_traffic_count_batch_counts_positive")
        ),
        sa.CheckConstraint(
            "source IN ('csv', 'json', 'mqtt')", name=op.f("ck_traffic_count_batch_source_known")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_traffic_count_batch_tenant_id_tenant"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["traffic_network.id"],
            name=op.f("fk_traffic_count_batch_network_id_traffic_network"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traffic_count_batch")),
        sa.UniqueConstraint("network_id", "key", name="uq_traffic_count_batch_key"),
    )
    op.create_index(op.f("ix_traffic_count_batch_tenant_id"), "traffic_count_batch", ["tenant_id"])
    op.create_index(
        op.f("ix_traffic_count_batch_network_id"), "traffic_count_batch", ["network_id"]
    )
    op.create_table(
        "traffic_count_inbox",
        sa.Column("network_id", sa.Uuid(), nullable=False),
        sa.Column("tls_id", sa.String(length=200), nullable=False),
        sa.Column("from_edge", sa.String(length=200), nullable=False),
        sa.Column("to_edge", sa.String(length=200), nullable=False),
        sa.Column("begin_s", sa.BigInteger(), nullable=False),
        sa.Column("end_s", sa.BigInteger(), nullable=False),
        sa.Column("vehicles", sa.Integer(), nullable=False),
        sa.Column("received_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "vehicles >= 0 AND end_s > begin_s", name=op.f("ck_traffic_count_inbox_count_sane")
        ),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["traffic_network.id"],
            name=op.f("fk_traffic_count_inbox_network_id_traffic_network"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "network_id",
            "tls_id",
            "from_edge",
            "to_edge",
            "begin_s",
            name=op.f("pk_traffic_count_inbox"),
        ),
    )
    op.create_index(
        op.f("ix_traffic_count_inbox_received_at"), "traffic_count_inbox", ["received_at"]
    )
    # The log is append-only: the database refuses to change or remove a row.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION traffic_plan_issue_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'traffic_plan_issue is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER traffic_plan_issue_append_only BEFORE UPDATE OR DELETE ON "
            "traffic_plan_issue FOR EACH ROW EXECUTE FUNCTION traffic_plan_issue_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER traffic_plan_issue_no_{event.lower()} BEFORE {event} ON "
                "traffic_plan_issue BEGIN SELECT RAISE(ABORT, 'traffic_plan_issue is "
                "append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS traffic_plan_issue_append_only ON traffic_plan_issue")
        op.execute("DROP FUNCTION IF EXISTS traffic_plan_issue_append_only()")
    else:
        for event in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS traffic_plan_issue_no_{event}")
    op.drop_index(op.f("ix_traffic_count_inbox_received_at"), table_name="traffic_count_inbox")
    op.drop_table("traffic_count_inbox")
    op.drop_index(op.f("ix_traffic_count_batch_network_id"), table_name="traffic_count_batch")
    op.drop_index(op.f("ix_traffic_count_batch_tenant_id"), table_name="traffic_count_batch")
    op.drop_table("traffic_count_batch")
    op.drop_index(op.f("ix_traffic_plan_issue_network_id"), table_name="traffic_plan_issue")
    op.drop_table("traffic_plan_issue")
    op.drop_index(op.f("ix_traffic_plan_network_id"), table_name="traffic_plan")
    op.drop_index(op.f("ix_traffic_plan_tenant_id"), table_name="traffic_plan")
    op.drop_table("traffic_plan")
