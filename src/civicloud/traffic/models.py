"""Traffic's tables: each tenant's road networks (as imported from SUMO network files), the
signal plans drafted for them, and the append-only log of which plan each signal runs.

The file itself is kept (gzip-compressed) beside the summary the importer read from it, so that
plans, evaluations and the console's map all read the same network a bureau loaded, and a later
importer can read it again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from civicloud.core.db import Base, new_id, utcnow


class TrafficNetwork(Base):
    """A road network of a tenant's: a SUMO network file and what was read from it."""

    __tablename__ = "traffic_network"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_traffic_network_name"),
        CheckConstraint("signals > 0", name="has_signals"),
        CheckConstraint("edges >= 0", name="edges_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(120))
    source_name: Mapped[str] = mapped_column(String(255))
    signals: Mapped[int]
    edges: Mapped[int]
    #: The network file, gzip-compressed.
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


#: A plan's review: drafted, then approved or rejected once.
PLAN_STATUSES = ("draft", "approved", "rejected")


class TrafficPlan(Base):
    """Signal plans for a network's signals, drafted from counts and reviewed before issue."""

    __tablename__ = "traffic_plan"
    __table_args__ = (
        UniqueConstraint("network_id", "name", name="uq_traffic_plan_name"),
        CheckConstraint("status IN ('draft', 'approved', 'rejected')", name="status_known"),
        # A reviewed plan names its reviewer and time; a draft has neither.
        CheckConstraint(
            "(status = 'draft') = (reviewed_at IS NULL)", name="reviewed_when_not_draft"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="RESTRICT"), index=True
    )
    network_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("traffic_network.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    #: The limits the plan was drafted under, and the sha-256 of the counts it was drafted from.
    limits: Mapped[dict[str, Any]] = mapped_column(JSON)
    counts_sha256: Mapped[str] = mapped_column(String(64))
    #: The SUMO additional file (one ``tlLogic`` per signal) and the timing sheet (JSON).
    additional: Mapped[bytes] = mapped_column(LargeBinary)
    sheet: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Per signal, the expected figures before (the network's program) and after.
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(200))
    created_by_user: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reviewed_by: Mapped[str | None] = mapped_column(String(200))
    reviewed_at: Mapped[datetime | None]
    review_note: Mapped[str | None] = mapped_column(String(500))


class TrafficPlanIssue(Base):
    """One change of the plan a signal runs: issued, or rolled back. Append-only.

    The signal's active plan is its latest row (``seq`` counts per network and signal; two
    changes at once collide on the unique key). ``plan_id`` is NULL where the signal runs the
    network's own program again. ``prior_id`` is the row whose state a rollback returns to.
    """

    __tablename__ = "traffic_plan_issue"
    __table_args__ = (
        UniqueConstraint("network_id", "tls_id", "seq", name="uq_traffic_plan_issue_seq"),
        CheckConstraint("seq > 0", name="seq_positive"),
        CheckConstraint("action IN ('issue', 'rollback')", name="action_known"),
        CheckConstraint("action = 'rollback' OR plan_id IS NOT NULL", name="issue_has_plan"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    network_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("traffic_network.id", ondelete="RESTRICT"), index=True
    )
    tls_id: Mapped[str] = mapped_column(String(200))
    seq: Mapped[int]
    action: Mapped[str] = mapped_column(String(16))
    plan_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("traffic_plan.id", ondelete="RESTRICT")
    )
    prior_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("traffic_plan_issue.id", ondelete="RESTRICT")
    )
    effective_at: Mapped[datetime] = mapped_column(default=utcnow)
    issued_by: Mapped[str] = mapped_column(String(200))


class TrafficCountBatch(Base):
    """One batch of counts kept in Parquet (a file, a JSON batch, a run of MQTT messages).

    The Parquet files are written and renamed before this row commits, and readers take the
    files of committed batches only, so a batch is visible whole or not at all. ``key`` makes
    a re-sent batch a replay: the same key again changes nothing.
    """

    __tablename__ = "traffic_count_batch"
    __table_args__ = (
        UniqueConstraint("network_id", "key", name="uq_traffic_count_batch_key"),
        CheckConstraint("rows >= 0 AND duplicates >= 0", name="counts_positive"),
        CheckConstraint("source IN ('csv', 'json', 'mqtt')", name="source_known"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="RESTRICT"), index=True
    )
    network_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("traffic_network.id", ondelete="RESTRICT"), index=True
    )
    key: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(8))
    sha256: Mapped[str] = mapped_column(String(64))
    #: Rows kept (new), and rows dropped as already kept (by this batch or an earlier one).
    rows: Mapped[int]
    duplicates: Mapped[int]
    first_begin: Mapped[datetime | None]
    last_end: Mapped[datetime | None]
    #: The local days the batch covers, and its files relative to the counts directory.
    days: Mapped[list[str]] = mapped_column(JSON)
    files: Mapped[list[str]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrafficCountRetiredFile(Base):
    """A Parquet file of kept counts that compaction merged into a larger one (see
    ``traffic.compaction``). No batch names it any more, but a reader that listed the files
    before the compaction committed may still be reading it, so it is deleted only once it has
    been retired for a grace period; its row goes with it."""

    __tablename__ = "traffic_count_retired_file"

    #: Relative to the counts directory, as in ``TrafficCountBatch.files``.
    path: Mapped[str] = mapped_column(String(500), primary_key=True)
    network_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("traffic_network.id", ondelete="RESTRICT"), index=True
    )
    retired_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class TrafficCountInbox(Base):
    """Counts received over MQTT, validated, waiting to be kept in Parquet by the flush job.

    One row per movement and interval: a re-sent message's rows collide on the primary key and
    are dropped, so each is counted once however often the broker delivers it.
    """

    __tablename__ = "traffic_count_inbox"
    __table_args__ = (CheckConstraint("vehicles >= 0 AND end_s > begin_s", name="count_sane"),)

    network_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("traffic_network.id", ondelete="CASCADE"), primary_key=True
    )
    tls_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    from_edge: Mapped[str] = mapped_column(String(200), primary_key=True)
    to_edge: Mapped[str] = mapped_column(String(200), primary_key=True)
    begin_s: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    end_s: Mapped[int] = mapped_column(BigInteger)
    vehicles: Mapped[int]
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class TrafficDetectorMapping(Base):
    """A version of a network's detector-to-movement mapping (``civicloud.traffic.detectors``).

    Versions are kept, never changed: the latest is the one detector counts are turned into
    movement counts with; two uploads at once collide on (network, version).
    """

    __tablename__ = "traffic_detector_mapping"
    __table_args__ = (
        UniqueConstraint("network_id", "version", name="uq_traffic_detector_mapping_version"),
        CheckConstraint("version >= 1 AND detectors >= 1 AND rows >= 1", name="counts_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="RESTRICT"), index=True
    )
    network_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("traffic_network.id", ondelete="RESTRICT"), index=True
    )
    version: Mapped[int]
    #: The mapping CSV as uploaded, and its SHA-256.
    content: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    detectors: Mapped[int]
    rows: Mapped[int]
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


#: An evaluation's course: queued, running (with its steps), then done or failed.
EVALUATION_STATUSES = ("queued", "running", "done", "failed")


class TrafficEvaluation(Base):
    """A stored plan proven in SUMO: the network's programs, the plan and SUMO's actuated
    control, each run under the plan's design demand over ``seeds`` demand samples.

    ``demand`` is the design hour the plan was timed for, per movement (veh/h): a plan keeps its
    timing and the SHA-256 of its counts, not the counts, so the evaluation keeps the demand it
    ran under. ``progress_at`` moves with every step: a running evaluation whose progress
    stopped long ago was left by a worker that died (``traffic.evaluations``).
    """

    __tablename__ = "traffic_evaluation"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status_known"),
        CheckConstraint("seeds >= 1 AND seeds <= 10", name="seeds_range"),
        CheckConstraint("steps_done >= 0 AND steps_done <= steps_total", name="steps_within_total"),
        CheckConstraint("attempts >= 0", name="attempts_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="RESTRICT"), index=True
    )
    network_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("traffic_network.id", ondelete="RESTRICT"), index=True
    )
    plan_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("traffic_plan.id", ondelete="RESTRICT"), index=True
    )
    seeds: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    #: The design hour, ``[[tls_id, from_edge, to_edge, veh/h], ...]``, and its counts' SHA-256.
    demand: Mapped[list[Any]] = mapped_column(JSON)
    counts_sha256: Mapped[str] = mapped_column(String(64))
    steps_done: Mapped[int] = mapped_column(default=0)
    steps_total: Mapped[int]
    #: How often a worker took it (a second time only after the first stopped midway).
    attempts: Mapped[int] = mapped_column(default=0)
    #: ``{"controls": [{"name": ..., "runs": [{figure: value, ...}, ...]}, ...]}`` when done.
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: Why it failed (English), and the message's template and parameters for translation.
    error: Mapped[str | None] = mapped_column(String(1000))
    error_detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_by_user: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    progress_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
