"""Audit tables: the hash-chained log and its head."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from civicloud.core.db import Base


class AuditRecord(Base):
    """One state-changing call. Rows are only ever inserted; each carries the hash of the one before.

    ``tenant_id`` has no foreign key on purpose: the record outlives the tenant it speaks of.
    """

    __tablename__ = "audit_record"
    __table_args__ = (
        CheckConstraint("outcome IN ('success', 'denied', 'failed')", name="outcome"),
        Index("ix_audit_record_tenant_seq", "tenant_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
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
    """The single row naming the last record; appenders lock it, and it exposes a cut-off tail."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    #: HMAC of ``seq`` and ``hash`` under the audit key: a new head cannot be made up for a cut-off
    #: tail (one copied from earlier still fits; against that, note heads elsewhere).
    seal: Mapped[str | None] = mapped_column(String(64))
