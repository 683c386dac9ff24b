"""audit chains: one hash chain per root tenant, and the platform chain

Until now every audited write appended to one chain and waited on its single head row. From here
on a record joins the chain of its tenant's root (``audit_record.chain``, the root's id), or the
platform chain; each chain has a head row of its own (``audit_head.chain``) and numbers its
records (``audit_record.chain_seq``; its head notes where its first record is,
``audit_head.first_seq``), while ``seq`` still orders the whole log. On PostgreSQL
``seq`` is drawn from the sequence ``audit_record_seq``, so that appenders to different chains
take numbers without waiting for each other.

The log kept so far becomes the platform chain as it is: its records keep their hashes and
seals (``hash_format`` 1: the hash covers what it covered then), ``chain_seq`` is their ``seq``,
and the head keeps its row (1) and its seal (the platform head's seal names no chain, as before).
No key is needed and nothing is rehashed: the log verifies after the upgrade as it did before.

A downgrade fails once a record was written in chains (``hash_format`` 2): one chain cannot hold
them, and the log would no longer verify.

Revision ID: 8d2f1c7b3a10
Revises: 9e3a2b8c4d21
Create Date: 2026-12-01 23:59:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8d2f1c7b3a10"
down_revision: str | None = "9e3a2b8c4d21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLATFORM = "platform"


def upgrade() -> None:
    with op.batch_alter_table("audit_record", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("chain", sa.String(length=64), nullable=False, server_default=PLATFORM)
        )
        batch_op.add_column(sa.Column("chain_seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("hash_format", sa.SmallInteger(), nullable=False, server_default="1")
        )
    op.execute("UPDATE audit_record SET chain_seq = seq")
    with op.batch_alter_table("audit_record", schema=None) as batch_op:
        batch_op.alter_column("chain_seq", existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column("chain", existing_type=sa.String(length=64), server_default=None)
        batch_op.alter_column("hash_format", existing_type=sa.SmallInteger(), server_default=None)
        batch_op.create_check_constraint("hash_format", "hash_format IN (1, 2)")

    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_audit_head_single_row"), type_="check")
        batch_op.add_column(
            sa.Column("chain", sa.String(length=64), nullable=False, server_default=PLATFORM)
        )
        batch_op.add_column(sa.Column("first_seq", sa.BigInteger(), nullable=True))
    op.execute("UPDATE audit_head SET first_seq = (SELECT MIN(seq) FROM audit_record)")
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.alter_column("chain", existing_type=sa.String(length=64), server_default=None)
        batch_op.create_unique_constraint(op.f("uq_audit_head_chain"), ["chain"])

    if op.get_bind().dialect.name == "postgresql":
        start = op.get_bind().execute(sa.text("SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_record"))
        op.execute(
            sa.schema.CreateSequence(sa.Sequence("audit_record_seq", start=start.scalar_one()))
        )


def downgrade() -> None:
    connection = op.get_bind()
    chained = connection.execute(
        sa.text("SELECT COUNT(*) FROM audit_record WHERE hash_format <> 1")
    ).scalar_one()
    if chained:
        raise RuntimeError(
            f"the audit log holds {chained} records written in chains, which one chain cannot "
            "hold: this revision cannot be undone on this database"
        )
    if connection.dialect.name == "postgresql":
        op.execute(sa.schema.DropSequence(sa.Sequence("audit_record_seq")))
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_audit_head_chain"), type_="unique")
        batch_op.drop_column("first_seq")
        batch_op.drop_column("chain")
        batch_op.create_check_constraint("single_row", "id = 1")
    with op.batch_alter_table("audit_record", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_audit_record_hash_format"), type_="check")
        batch_op.drop_column("hash_format")
        batch_op.drop_column("chain_seq")
        batch_op.drop_column("chain")
