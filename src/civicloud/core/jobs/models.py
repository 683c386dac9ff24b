"""Job tables: what each run of a job did, and the lease that keeps an exclusive job to one
worker on SQLite."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from civicloud.core.db import Base, new_id


class JobRun(Base):
    """One run of one job: when, how long, how many items, what came of them.

    The runner keeps the newest runs of each job only (``core.jobs.KEEP_RUNS``).
    """

    __tablename__ = "job_run"
    __table_args__ = (Index("ix_job_run_job_started", "job", "started_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    job: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    duration_ms: Mapped[int] = mapped_column(Integer)
    items: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer)
    #: ``{outcome: count}`` of the items handled.
    outcomes: Mapped[dict[str, int]] = mapped_column(JSON)
    #: What the first failure said (the listing's, or an item's).
    error: Mapped[str | None] = mapped_column(Text)
    #: ``host:pid`` of the worker that ran it.
    worker: Mapped[str] = mapped_column(String(200))


class JobState(Base):
    """An exclusive job's lease on SQLite: the worker holding it, until when.

    PostgreSQL takes an advisory lock instead and needs no row.
    """

    __tablename__ = "job_state"

    job: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None]
