"""pay refunds in reconciliation, webhook dead letters

Revision ID: 51c2a136e249
Revises: 1122a4bfc5e7
Create Date: 2026-11-26 21:17:03.110886+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import civicloud.core.db

revision: str = "51c2a136e249"
down_revision: str | None = "1122a4bfc5e7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pay_reconciliation_item", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=10), server_default="payment", nullable=False)
        )
        batch_op.add_column(sa.Column("refund_no", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("refund_id", sa.Uuid(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_pay_reconciliation_item_refund_id"), ["refund_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_pay_reconciliation_item_refund_id_pay_refund"),
            "pay_refund",
            ["refund_id"],
            ["id"],
            ondelete="RESTRICT",
        )
    # Items made before this revision: refund items were told apart by their negative amounts.
    op.execute(
        "UPDATE pay_reconciliation_item SET kind = 'refund' "
        "WHERE provider_amount_fen < 0 OR our_amount_fen < 0"
    )
    # ... and tied to our refund where exactly one refund of the payment has that amount (an
    # item left untied is treated with care: it is not adjusted while a refund of its payment is
    # pending, see reconciliation.resolve_item).
    op.execute(
        """
        UPDATE pay_reconciliation_item SET
            refund_id = (
                SELECT r.id FROM pay_refund r
                WHERE r.payment_id = pay_reconciliation_item.payment_id
                  AND r.amount_fen = -COALESCE(provider_amount_fen, our_amount_fen)
            ),
            refund_no = COALESCE(refund_no, (
                SELECT r.refund_no FROM pay_refund r
                WHERE r.payment_id = pay_reconciliation_item.payment_id
                  AND r.amount_fen = -COALESCE(provider_amount_fen, our_amount_fen)
            ))
        WHERE kind = 'refund' AND refund_id IS NULL AND payment_id IS NOT NULL
          AND (
                SELECT COUNT(*) FROM pay_refund r
                WHERE r.payment_id = pay_reconciliation_item.payment_id
                  AND r.amount_fen = -COALESCE(provider_amount_fen, our_amount_fen)
              ) = 1
        """
    )
    with op.batch_alter_table("pay_reconciliation_item", schema=None) as batch_op:
        batch_op.create_check_constraint(
            op.f("ck_pay_reconciliation_item_kind"), "kind IN ('payment', 'refund')"
        )

    with op.batch_alter_table("pay_webhook_delivery", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("dead_at", civicloud.core.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_pay_webhook_delivery_dead_at"), ["dead_at"], unique=False
        )
    # Deliveries that used up their attempts before this revision (15 then) are dead since
    # their last attempt, which was made when it fell due.
    op.execute(
        "UPDATE pay_webhook_delivery SET dead_at = next_attempt_at "
        "WHERE delivered_at IS NULL AND attempts >= 15"
    )


def downgrade() -> None:
    with op.batch_alter_table("pay_webhook_delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pay_webhook_delivery_dead_at"))
        batch_op.drop_column("dead_at")

    with op.batch_alter_table("pay_reconciliation_item", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_pay_reconciliation_item_kind"), type_="check")
        batch_op.drop_constraint(
            batch_op.f("fk_pay_reconciliation_item_refund_id_pay_refund"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_pay_reconciliation_item_refund_id"))
        batch_op.drop_column("refund_id")
        batch_op.drop_column("refund_no")
        batch_op.drop_column("kind")
