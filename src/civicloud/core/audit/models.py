"""Audit tables: the hash-chained log and the heads of its chains."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, Sequence, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from civicloud.core.db import Base

#: The chain of records that belong to no tenant (sign-ins, regions, the log's own events, and
#: every chain's opening), and of every record kept before the log had chains.
PLATFORM_CHAIN = "platform"

#: Where PostgreSQL draws ``audit_record.seq`` from: appenders to different chains take numbers
#: without waiting for each other. SQLite has no sequences; its writers are serial, and a record
#: takes the next number after the largest.
AUDIT_SEQ = Sequence("audit_record_seq", metadata=Base.metadata)


class AuditRecord(Base):
    """One state-changing call. Rows are only ever inserted; each carries the hash of the record
    before it in its chain.

    ``seq`` orders the whole log (readers page by it); ``chain`` and ``chain_seq`` place the
    record in its chain: the platform chain, or the chain of the root tenant its tenant was
    under when it was written (the root's id). ``tenant_id`` has no foreign key on purpose: the
    record outlives the tenant it speaks of.
    """

    __tablename__ = "audit_record"
    __table_args__ = (
        CheckConstraint("outcome IN ('success', 'denied', 'failed')", name="outcome"),
        CheckConstraint("hash_format IN (1, 2)", name="hash_format"),
        Index("ix_audit_record_tenant_seq", "tenant_id", "seq"),
        # The console's audit log by a range of days, and sorted by time (keyset over at, seq).
        Index("ix_audit_record_at_seq", "at", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chain: Mapped[str] = mapped_column(String(64))
    chain_seq: Mapped[int] = mapped_column(BigInteger)
    #: What the hash covers: 1, the fields of a record kept before chains (their order was the
    #: single chain's); 2, those and ``seq``, ``chain`` and ``chain_seq`` too.
    hash_format: Mapped[int] = mapped_column(SmallInteger)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(160))
    tenant_id: Mapped[uuid.UUID | None]
    action: Mapped[str] = mapped_column(String(100), index=True)
    target: Mapped[str] = mapped_column(String(300))
    request_id: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(10))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    #: HMAC of ``hash`` under the installation's audit key (``None`` where it has none): one
    #: who can write to the database but not read the key cannot make a rewritten record fit.
    seal: Mapped[str | None] = mapped_column(String(64))


class AuditHead(Base):
    """The head of one chain, naming its last record; appenders to the chain lock it, and it
    exposes a cut-off tail. The platform chain's head is row 1."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    chain: Mapped[str] = mapped_column(String(64), unique=True)
    #: The ``chain_seq`` of the chain's last record (0 before its first).
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    #: The ``seq`` of the chain's first record (``None`` before it): where a removed first
    #: record was, since on PostgreSQL ``seq`` is not gap-free.
    first_seq: Mapped[int | None] = mapped_column(BigInteger)
    #: HMAC of the chain's name, ``seq`` and ``hash`` under the audit key: a new head cannot be
    #: made up for a cut-off tail (one copied from earlier still fits; against that, note heads
    #: elsewhere).
    seal: Mapped[str | None] = mapped_column(String(64))
