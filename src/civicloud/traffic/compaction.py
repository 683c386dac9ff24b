"""Compaction of kept counts: a day's many small Parquet files merged into one.

Every batch writes a file per local day it covers, and the MQTT flush makes a batch a minute
per network: a day of detector messages is some 1,440 files of a few KiB, and every reader
(the profile, the check of a new batch against what is kept) lists and opens each of them.
Compaction merges the files of a network's day, once it has ``MIN_FILES`` or more, into one
file sorted by movement and time, and makes the batches name it instead:

1. The rows of the day's files are read, and written to a new file
   ``tenant=<id>/day=<YYYY-MM-DD>/compacted-<uuid>.parquet``, durable (temporary name, fsync,
   rename, directory fsync) before anything else changes. Its rows are counted against the
   files' own row counts.
2. In one unit of work, under the network's lock (the one ingest takes, so no batch is kept
   meanwhile), each batch stops naming its files of that day, the oldest of them names the new
   file (it covers that day, so readers of the day still find it), and the old files are
   recorded as *retired*.
3. A retired file is deleted a grace period later (``GRACE``): a reader that listed the files
   before the commit may still be reading it. Its row goes in the same unit of work.

A crash before step 2 commits leaves the new file named by no batch, which readers ignore, and
the day as it was (compacted again by the next run). A crash after it leaves retired files
that are deleted by a later run. Batches keep what they say of themselves (rows, days,
duplicates, key): only where their rows are kept changes.

The job ``traffic.compact_counts`` runs it hourly for networks whose batches were kept in the
last two days (late counts for an older day come in recent batches too); ``civicloud traffic
counts compact`` runs it at once.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from civicloud.traffic import countstore
from civicloud.traffic.context import TrafficContext
from civicloud.traffic.errors import TrafficInvalidInput
from civicloud.traffic.models import TrafficCountBatch, TrafficCountRetiredFile, TrafficNetwork

log = logging.getLogger(__name__)

#: A day's files are merged once it has this many.
MIN_FILES = 8
#: How long a retired file is kept for readers that listed it before it was retired.
GRACE = timedelta(hours=1)
#: Networks with batches kept this recently are looked at by the job.
RECENT = timedelta(days=2)
#: The order of a compacted file's rows.
SORT_KEYS = [
    ("tls_id", "ascending"),
    ("from_edge", "ascending"),
    ("to_edge", "ascending"),
    ("begin_s", "ascending"),
]

__all__ = [
    "GRACE",
    "MIN_FILES",
    "Compacted",
    "compact_network",
    "due_networks",
    "remove_retired",
]


@dataclass(frozen=True)
class Compacted:
    """One day of a network merged: how many files into one, and its rows."""

    day: date
    files: int
    rows: int
    path: str


def _day_of(name: str) -> date | None:
    """The local day a kept file holds, from its ``…/day=YYYY-MM-DD/…`` folder."""
    for part in Path(name).parts:
        if part.startswith("day="):
            with contextlib.suppress(ValueError):
                return date.fromisoformat(part.removeprefix("day="))
    return None


def due_networks(session: Session, now: datetime) -> list[uuid.UUID]:
    """Networks with batches kept since ``now - RECENT``, or retired files to delete."""
    recent = select(TrafficCountBatch.network_id).where(
        TrafficCountBatch.created_at >= now - RECENT, TrafficCountBatch.rows > 0
    )
    retired = select(TrafficCountRetiredFile.network_id).where(
        TrafficCountRetiredFile.retired_at < now - GRACE
    )
    ids = set(session.scalars(recent.distinct())) | set(session.scalars(retired.distinct()))
    return sorted(ids)


def _recent_days(session: Session, network_id: uuid.UUID, now: datetime) -> list[date]:
    days: set[date] = set()
    for names in session.scalars(
        select(TrafficCountBatch.files).where(
            TrafficCountBatch.network_id == network_id,
            TrafficCountBatch.created_at >= now - RECENT,
        )
    ):
        days.update(d for d in map(_day_of, names) if d is not None)
    return sorted(days)


def compact_network(
    *,
    session: Session,
    context: TrafficContext,
    network_id: uuid.UUID,
    now: datetime,
    days: Sequence[date] | None = None,
    min_files: int = MIN_FILES,
) -> list[Compacted]:
    """Merge the files of each of the network's days (``days``, or those of its recent
    batches) that has ``min_files`` or more, and delete its files retired long enough ago."""
    if min_files < 2:
        raise TrafficInvalidInput("Compaction merges at least 2 files of a day.")
    row = session.get(TrafficNetwork, network_id)
    if row is None:
        return []
    countstore.lock_network(session, row.id)
    remove_retired(session=session, context=context, network_id=row.id, now=now)
    merged: list[Compacted] = []
    for day in days if days is not None else _recent_days(session, row.id, now):
        done = _compact_day(session, context, row, day, now, min_files)
        if done is not None:
            merged.append(done)
    return merged


def _compact_day(
    session: Session,
    context: TrafficContext,
    row: TrafficNetwork,
    day: date,
    now: datetime,
    min_files: int,
) -> Compacted | None:
    start = datetime.combine(day, time(0), context.zone)
    end = datetime.combine(day + timedelta(days=1), time(0), context.zone)
    batches = session.scalars(
        select(TrafficCountBatch)
        .where(
            TrafficCountBatch.network_id == row.id,
            TrafficCountBatch.first_begin < end,
            TrafficCountBatch.last_end > start,
        )
        .order_by(TrafficCountBatch.created_at, TrafficCountBatch.id)
    ).all()
    holders = [(b, [n for n in b.files if _day_of(n) == day]) for b in batches]
    holders = [(b, names) for b, names in holders if names]
    names = [n for _, own in holders for n in own]
    if len(names) < min_files:
        return None
    paths = [context.counts_dir / n for n in names]
    missing = [n for n, p in zip(names, paths, strict=True) if not p.is_file()]
    if missing:
        # Readers skip a missing file; merging would make the loss permanent and silent.
        log.warning(
            "traffic: %s of network %s is not compacted: %s kept files are missing (%s)",
            day,
            row.id,
            len(missing),
            missing[0],
        )
        return None
    expected = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    table = pa.concat_tables([pq.read_table(p, schema=countstore.SCHEMA) for p in paths])
    if table.num_rows != expected:
        raise RuntimeError(f"compaction read {table.num_rows} rows of {expected}")
    table = table.sort_by(SORT_KEYS)
    folder = countstore.day_folder(context, row.tenant_id, day)
    final = countstore.write_durable(table, folder / f"compacted-{uuid.uuid4()}.parquet")
    name = str(final.relative_to(context.counts_dir))
    retired = set(names)
    for batch, _ in holders:
        batch.files = [n for n in batch.files if n not in retired]
    first = holders[0][0]
    first.files = [*first.files, name]
    session.add_all(
        TrafficCountRetiredFile(path=n, network_id=row.id, retired_at=now) for n in names
    )
    session.flush()
    log.info(
        "traffic: %s files of network %s on %s merged into %s (%s rows)",
        len(names),
        row.id,
        day,
        name,
        table.num_rows,
    )
    return Compacted(day=day, files=len(names), rows=table.num_rows, path=name)


def remove_retired(
    *, session: Session, context: TrafficContext, network_id: uuid.UUID, now: datetime
) -> int:
    """Delete the network's files retired before ``now - GRACE`` and their rows; how many."""
    old = session.scalars(
        select(TrafficCountRetiredFile.path).where(
            TrafficCountRetiredFile.network_id == network_id,
            TrafficCountRetiredFile.retired_at < now - GRACE,
        )
    ).all()
    if not old:
        return 0
    for name in old:
        with contextlib.suppress(FileNotFoundError):
            (context.counts_dir / name).unlink()
    for at in range(0, len(old), 500):
        session.execute(
            delete(TrafficCountRetiredFile).where(
                TrafficCountRetiredFile.path.in_(old[at : at + 500])
            )
        )
    return len(old)
