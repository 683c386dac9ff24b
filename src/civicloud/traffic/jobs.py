"""Traffic's background job, run by the core's job runner, one network per unit of work:

- ``traffic.flush_counts``: each network's counts received over MQTT become a Parquet batch.
- ``traffic.compact_counts``: each network's days of many small Parquet files are merged into
  one file a day, and files retired long enough ago are deleted (see ``traffic.compaction``).
- ``traffic.evaluate_plans``: queued evaluations of stored plans run in SUMO, one by one (and
  one a dead worker left running is taken again; see ``traffic.evaluations``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from civicloud.core.jobs import JobEnv, Work
from civicloud.traffic import compaction, evaluations, inbox
from civicloud.traffic.context import TrafficContext

__all__ = ["compact_counts", "evaluate_plans", "flush_counts"]


def _context(env: JobEnv) -> TrafficContext:
    if not isinstance(env.context, TrafficContext):
        raise TypeError(f"Traffic's jobs need a TrafficContext, not {type(env.context).__name__}")
    return env.context


def _waiting(session: Session, env: JobEnv) -> Sequence[uuid.UUID]:
    return inbox.waiting_networks(session)


def _flush(session: Session, env: JobEnv, network_id: uuid.UUID) -> str | None:
    batch = inbox.flush(session=session, context=_context(env), network_id=network_id)
    return None if batch is None else f"{batch.rows} rows kept, {batch.duplicates} duplicates"


flush_counts = Work(_waiting, _flush)


def _to_compact(session: Session, env: JobEnv) -> Sequence[uuid.UUID]:
    return compaction.due_networks(session, env.now)


def _compact(session: Session, env: JobEnv, network_id: uuid.UUID) -> str | None:
    merged = compaction.compact_network(
        session=session, context=_context(env), network_id=network_id, now=env.now
    )
    if not merged:
        return None
    return f"{sum(m.files for m in merged)} files of {len(merged)} days merged"


compact_counts = Work(_to_compact, _compact)


def _due_evaluations(session: Session, env: JobEnv) -> Sequence[uuid.UUID]:
    return evaluations.due(session=session, now=env.now)


def _evaluate(session: Session, env: JobEnv, evaluation_id: uuid.UUID) -> str | None:
    # The runner's unit of work is left unused: a run lasts minutes, and its claim, each step
    # and its figures are committed in short units of their own so that progress is seen.
    ended = evaluations.run_evaluation(env.services.db, evaluation_id)
    return None if ended is None else ended.status


evaluate_plans = Work(_due_evaluations, _evaluate)
