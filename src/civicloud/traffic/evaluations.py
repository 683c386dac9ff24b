"""Stored plans proven in SUMO: an evaluation is requested, queued, run by a worker with its
progress kept step by step, and its figures kept for the API, the console and the CLI.

- **Who.** Whoever may draft plans on the network's tenant (``traffic.network.admin``, the
  permission :func:`civicloud.traffic.plans.draft_plan` requires) requests one; whoever may read
  the network (``traffic.network.read``) reads it. Another tenant's plan does not exist for a
  reader who cannot see it (404), as plans do not.
- **Demand.** A stored plan keeps its timing and the SHA-256 of the counts it was drafted from,
  not the counts, so the first evaluation of a plan is given those counts again (the file, or the
  days of kept counts), refused unless their SHA-256 is the plan's. Their design hour, per
  movement, is kept in the evaluation (``demand``); later evaluations of the plan take the
  latest one's and need only their number of seeds.
- **Runs.** :func:`civicloud.traffic.simulate.evaluate` with the network's own programs
  (``network``), the plan's SUMO additional file (``plan``) and SUMO's actuated control
  (``actuated``), over 1 to 10 seeds: three runs per seed, each a step of the progress.
- **Failures.** A SUMO failure, a plan SUMO refuses, or anything else that stops the run makes
  the evaluation ``failed`` with a readable message (its template and parameters are kept, so
  that the console shows it in the reader's language); the job that ran it goes on.

Transactions. Requesting and reading are service functions: they take the caller's session and
never commit. Running is not: a run lasts minutes and its progress must be seen while it goes
on, so :func:`run_evaluation` is given the :class:`~civicloud.core.db.Database` and opens short
units of work of its own (claim, each step, the result), as the core's job runner takes its
SQLite lease and the audit verifier records its result; no transaction is open while SUMO runs,
so neither SQLite's write lock nor a PostgreSQL row lock is held for minutes. The job's unit of
work is left unused for the same reason.

A worker killed mid-run leaves its evaluation ``running``. One whose progress has not moved for
:data:`STALE_AFTER` (longer than any single SUMO step may take: a run's limit is 30 minutes)
is taken again from the start, once; one left a second time is marked failed, so that an
evaluation that kills its worker does not kill every worker after it.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from civicloud.core import audit
from civicloud.core.actor import Actor, authorize
from civicloud.core.db import Database, utcnow
from civicloud.core.errors import CivicloudError
from civicloud.core.tenants.models import Tenant
from civicloud.traffic import countstore, networks, plans, service, simulate
from civicloud.traffic.context import TrafficContext
from civicloud.traffic.counts import read_counts, require_clean
from civicloud.traffic.errors import (
    CountsNotThePlans,
    DemandNeeded,
    EvaluationFailed,
    EvaluationNotFound,
    InvalidSeeds,
    TrafficInvalidInput,
)
from civicloud.traffic.models import TrafficEvaluation, TrafficNetwork, TrafficPlan

log = logging.getLogger(__name__)

MIN_SEEDS, MAX_SEEDS = 1, 10
#: The controls run, in the order they are shown.
CONTROLS = ("network", "plan", "actuated")
#: A running evaluation whose progress has not moved for this long was left by a dead worker.
STALE_AFTER = timedelta(minutes=60)
#: How often a worker may take one evaluation (the second time only after the first died).
MAX_ATTEMPTS = 2
#: The most evaluations the job lists in one run (the rest wait for the next).
MAX_DUE = 20
MAX_ERROR = 1000

Demand = dict[str, dict[tuple[str, str], float]]
Progress = Callable[[int, int, str], None]


def _demand_rows(demand: Mapping[str, Mapping[tuple[str, str], float]]) -> list[list[Any]]:
    return [
        [tls, f, t, round(flow, 3)]
        for tls in sorted(demand)
        for (f, t), flow in sorted(demand[tls].items())
    ]


def demand_of(row: TrafficEvaluation) -> Demand:
    """The design hour an evaluation runs under, veh/h per movement of each signal."""
    demand: Demand = {}
    for tls, f, t, flow in row.demand:
        demand.setdefault(str(tls), {})[(str(f), str(t))] = float(flow)
    return demand


def _seeds(seeds: int) -> int:
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not MIN_SEEDS <= seeds <= MAX_SEEDS:
        raise InvalidSeeds(
            "The number of seeds must be between %(low)s and %(high)s.",
            params={"low": MIN_SEEDS, "high": MAX_SEEDS},
        )
    return seeds


def _design_demand(
    session: Session,
    actor: Actor,
    plan: TrafficPlan,
    counts: bytes | None,
    stored: tuple[date, date] | None,
    context: TrafficContext | None,
) -> tuple[list[list[Any]], str]:
    """The plan's design hour and its counts' SHA-256: from the counts given (the plan's own,
    checked by their SHA-256), else from the plan's latest evaluation."""
    if counts is not None and stored is not None:
        raise TrafficInvalidInput("Give either a counts file or the days of kept counts.")
    if counts is None and stored is None:
        earlier = session.scalars(
            select(TrafficEvaluation)
            .where(TrafficEvaluation.plan_id == plan.id)
            .order_by(TrafficEvaluation.created_at.desc())
            .limit(1)
        ).first()
        if earlier is None:
            raise DemandNeeded(
                "The plan is evaluated for the first time: give the counts it was drafted from "
                "(the file, or the days of kept counts)."
            )
        return earlier.demand, earlier.counts_sha256
    row = networks.get_network(session=session, actor=actor, network_id=plan.network_id)
    network = networks.load(row)
    if counts is not None:
        if len(counts) > plans.MAX_COUNTS_BYTES:
            raise TrafficInvalidInput(
                "The counts file is larger than %(limit)s MiB.",
                params={"limit": plans.MAX_COUNTS_BYTES >> 20},
            )
        source = hashlib.sha256(counts).hexdigest()
        if source != plan.counts_sha256:
            raise CountsNotThePlans(
                "These are not the counts the plan was drafted from: give the same file or days."
            )
        demand = service.demand_of(require_clean(read_counts(counts, network)))
        return _demand_rows(demand), source
    if stored is None or context is None:  # a file was given, or the days with no context
        raise TrafficInvalidInput("Give either a counts file or the days of kept counts.")
    first, last = stored
    source = plans.kept_source(first, last)
    if source != plan.counts_sha256:
        raise CountsNotThePlans(
            "These are not the counts the plan was drafted from: give the same file or days."
        )
    profile = countstore.stored_profile(
        session=session, actor=actor, context=context, network_id=row.id, first=first, last=last
    )
    if not profile:
        raise TrafficInvalidInput(
            "No counts are kept for this network from %(first)s to %(last)s.",
            params={"first": first.isoformat(), "last": last.isoformat()},
        )
    return _demand_rows(countstore.design_demand(profile)), source


def may_request(*, session: Session, actor: Actor, plan: TrafficPlan) -> bool:
    """Whether ``actor`` may have ``plan`` evaluated (as they may draft plans on its tenant)."""
    tenant = session.get(Tenant, plan.tenant_id)
    return tenant is not None and actor.can("traffic.network.admin", tenant.path)


def request_evaluation(
    *,
    session: Session,
    actor: Actor,
    plan_id: uuid.UUID,
    seeds: int,
    counts: bytes | None = None,
    stored: tuple[date, date] | None = None,
    context: TrafficContext | None = None,
) -> TrafficEvaluation:
    """Queue an evaluation of a stored plan in SUMO over ``seeds`` demand samples (1..10)."""
    plan = plans.get_plan(session=session, actor=actor, plan_id=plan_id)
    tenant = session.get_one(Tenant, plan.tenant_id)
    authorize(actor, "traffic.network.admin", path=tenant.path, what="tenant")
    count = _seeds(seeds)
    demand, source = _design_demand(session, actor, plan, counts, stored, context)
    row = TrafficEvaluation(
        tenant_id=plan.tenant_id,
        network_id=plan.network_id,
        plan_id=plan.id,
        seeds=count,
        status="queued",
        demand=demand,
        counts_sha256=source,
        steps_done=0,
        steps_total=count * len(CONTROLS),
        attempts=0,
        requested_by=actor.name,
        requested_by_user=actor.user_id,
    )
    session.add(row)
    session.flush()  # the row's id, for the audit record
    audit.record(
        session=session,
        actor=actor,
        action="traffic.evaluation.request",
        target=f"traffic_evaluation:{row.id}",
        tenant_id=plan.tenant_id,
        detail={"plan_id": str(plan.id), "name": plan.name, "seeds": count},
    )
    return row


def get_evaluation(
    *, session: Session, actor: Actor, evaluation_id: uuid.UUID
) -> TrafficEvaluation:
    """An evaluation, for those who may read its plan."""
    row = session.get(TrafficEvaluation, evaluation_id)
    if row is None:
        raise EvaluationNotFound("No such evaluation.")
    try:
        plans.get_plan(session=session, actor=actor, plan_id=row.plan_id)
    except CivicloudError as exc:  # one the actor may not read does not exist for them
        raise EvaluationNotFound("No such evaluation.") from exc
    return row


def list_evaluations(
    *, session: Session, actor: Actor, plan_id: uuid.UUID
) -> list[TrafficEvaluation]:
    """A plan's evaluations, newest first."""
    plan = plans.get_plan(session=session, actor=actor, plan_id=plan_id)
    return list(
        session.scalars(
            select(TrafficEvaluation)
            .where(TrafficEvaluation.plan_id == plan.id)
            .order_by(TrafficEvaluation.created_at.desc(), TrafficEvaluation.id)
        )
    )


# --- running ----------------------------------------------------------------------------------


def due(*, session: Session, now: datetime) -> list[uuid.UUID]:
    """The evaluations to run, oldest first: those queued, and those a dead worker left."""
    stale = now - STALE_AFTER
    return list(
        session.scalars(
            select(TrafficEvaluation.id)
            .where(
                or_(
                    TrafficEvaluation.status == "queued",
                    (TrafficEvaluation.status == "running")
                    & (TrafficEvaluation.progress_at < stale),
                )
            )
            .order_by(TrafficEvaluation.created_at, TrafficEvaluation.id)
            .limit(MAX_DUE)
        )
    )


def claim(*, session: Session, evaluation_id: uuid.UUID, now: datetime) -> bool:
    """Take a queued evaluation, or a stale running one, for this worker: whether it was taken
    (a conditional UPDATE, so of two workers at once one takes it). A stale one taken
    :data:`MAX_ATTEMPTS` times already is marked failed instead."""
    evaluation = TrafficEvaluation
    values = {"status": "running", "steps_done": 0, "started_at": now, "progress_at": now}
    taken = session.execute(
        update(evaluation)
        .where(evaluation.id == evaluation_id, evaluation.status == "queued")
        .values(**values, attempts=evaluation.attempts + 1)
    )
    if getattr(taken, "rowcount", 0) == 1:
        return True
    stale = (
        (evaluation.id == evaluation_id)
        & (evaluation.status == "running")
        & (evaluation.progress_at < now - STALE_AFTER)
    )
    retaken = session.execute(
        update(evaluation)
        .where(stale, evaluation.attempts < MAX_ATTEMPTS)
        .values(**values, attempts=evaluation.attempts + 1)
    )
    if getattr(retaken, "rowcount", 0) == 1:
        log.warning("traffic evaluation %s: its worker stopped midway; run again", evaluation_id)
        return True
    abandoned = EvaluationFailed(
        "The evaluation was stopped twice before it ended (its worker stopped); it is not run "
        "again. Request a new one."
    )
    session.execute(
        update(evaluation)
        .where(stale, evaluation.attempts >= MAX_ATTEMPTS)
        .values(status="failed", finished_at=now, **_failure(abandoned))
    )
    return False


def _failure(exc: CivicloudError) -> dict[str, Any]:
    return {
        "error": exc.detail[:MAX_ERROR],
        "error_detail": {"code": exc.code, "template": exc.message, "params": exc.params},
    }


def _held(evaluation_id: uuid.UUID, attempt: int | None) -> Any:
    """The evaluation, while it runs under the claim ``attempt`` (any claim when ``None``): a
    worker taken for dead whose run was taken again changes nothing of the new run."""
    held = (TrafficEvaluation.id == evaluation_id) & (TrafficEvaluation.status == "running")
    if attempt is not None:
        held = held & (TrafficEvaluation.attempts == attempt)
    return held


def record_progress(
    *, session: Session, evaluation_id: uuid.UUID, done: int, attempt: int | None = None
) -> None:
    """One more step of a running evaluation (and a sign that its worker is alive)."""
    session.execute(
        update(TrafficEvaluation)
        .where(_held(evaluation_id, attempt))
        .values(steps_done=done, progress_at=utcnow())
    )


def _result(summaries: Sequence[simulate.Summary]) -> dict[str, Any]:
    return {"controls": [{"name": s.name, "runs": [asdict(r) for r in s.runs]} for s in summaries]}


def finish(
    *,
    session: Session,
    evaluation_id: uuid.UUID,
    summaries: Sequence[simulate.Summary],
    attempt: int | None = None,
) -> None:
    """A running evaluation's figures, and its end."""
    now = utcnow()
    session.execute(
        update(TrafficEvaluation)
        .where(_held(evaluation_id, attempt))
        .values(
            status="done",
            results=_result(summaries),
            steps_done=TrafficEvaluation.steps_total,
            progress_at=now,
            finished_at=now,
        )
    )


def fail(
    *,
    session: Session,
    evaluation_id: uuid.UUID,
    error: CivicloudError,
    attempt: int | None = None,
) -> None:
    """A running evaluation's end in failure, with the reason."""
    now = utcnow()
    held = (
        _held(evaluation_id, attempt)
        if attempt is not None
        else (TrafficEvaluation.id == evaluation_id)
    )
    session.execute(
        update(TrafficEvaluation)
        .where(held)
        .values(status="failed", progress_at=now, finished_at=now, **_failure(error))
    )


@dataclass(frozen=True)
class _Inputs:
    network: TrafficNetwork
    content: bytes
    additional: bytes
    demand: Demand
    seeds: int
    #: The claim the run holds (the evaluation's ``attempts`` when it was taken).
    attempt: int


def _inputs(session: Session, evaluation_id: uuid.UUID) -> _Inputs:
    row = session.get_one(TrafficEvaluation, evaluation_id)
    plan = session.get_one(TrafficPlan, row.plan_id)
    network = session.get_one(TrafficNetwork, row.network_id)
    return _Inputs(
        network,
        network.content,
        plans.design_additional(plan),
        demand_of(row),
        row.seeds,
        row.attempts,
    )


def run_evaluation(
    db: Database, evaluation_id: uuid.UUID, *, progress: Progress | None = None
) -> TrafficEvaluation | None:
    """Claim one evaluation and run it (see the module's docstring on its transactions); the
    evaluation as it ended, or ``None`` when another worker has it or it is not due."""
    with db.unit_of_work() as session:
        if not claim(session=session, evaluation_id=evaluation_id, now=utcnow()):
            return None
    return run_claimed(db, evaluation_id, progress=progress)


def run_claimed(
    db: Database, evaluation_id: uuid.UUID, *, progress: Progress | None = None
) -> TrafficEvaluation:
    """Run an evaluation this worker has claimed: each step recorded as it ends, then the
    figures, or ``failed`` with the reason; never raises for what SUMO or the plan does."""
    attempt: int | None = None
    try:
        with db.unit_of_work(write=False) as session:
            inputs = _inputs(session, evaluation_id)
        attempt = inputs.attempt
        network = networks.load(inputs.network)

        def step(done: int, total: int, name: str) -> None:
            with db.unit_of_work() as session:
                record_progress(
                    session=session, evaluation_id=evaluation_id, done=done, attempt=attempt
                )
            if progress is not None:
                progress(done, total, name)

        with tempfile.TemporaryDirectory(prefix="civicloud-eval-") as folder:
            work = Path(folder)
            net = work / "network.net.xml"
            net.write_bytes(_gunzip(inputs.content))
            plan_file = work / "plan.add.xml"
            plan_file.write_bytes(inputs.additional)
            summaries = simulate.evaluate(
                net,
                network,
                inputs.demand,
                {"network": None, "plan": plan_file},
                seeds=inputs.seeds,
                progress=step,
            )
        with db.unit_of_work() as session:
            finish(
                session=session, evaluation_id=evaluation_id, summaries=summaries, attempt=attempt
            )
    except CivicloudError as exc:  # SUMO, or a plan it refuses: a reason people can read
        log.warning("traffic evaluation %s failed: %s", evaluation_id, exc.detail)
        _record_failure(db, evaluation_id, exc, attempt)
    except Exception as exc:  # anything else: failed, logged, and the worker goes on
        log.exception("traffic evaluation %s stopped unexpectedly", evaluation_id)
        unexpected = EvaluationFailed(
            "The evaluation stopped unexpectedly (%(reason)s); the server's log says more.",
            params={"reason": type(exc).__name__},
        )
        _record_failure(db, evaluation_id, unexpected, attempt)
    with db.unit_of_work(write=False) as session:
        return session.get_one(TrafficEvaluation, evaluation_id)


def _record_failure(
    db: Database, evaluation_id: uuid.UUID, error: CivicloudError, attempt: int | None
) -> None:
    with db.unit_of_work() as session:
        fail(session=session, evaluation_id=evaluation_id, error=error, attempt=attempt)


def _gunzip(content: bytes) -> bytes:
    return gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content


# --- figures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """One control's figures over the seeds: the mean of each, and total delay's min..max."""

    name: str
    runs: int
    total_delay_vehh: float
    total_delay_low: float
    total_delay_high: float
    mean_travel_time_s: float
    mean_waiting_s: float
    mean_time_loss_s: float
    vehicles: float
    stops: float
    not_inserted: float


def summaries(row: TrafficEvaluation) -> list[simulate.Summary]:
    """A done evaluation's figures as the simulator gave them, in :data:`CONTROLS` order."""
    if not row.results:
        return []
    found = [
        simulate.Summary(
            str(control["name"]),
            tuple(simulate.RunFigures(**run) for run in control["runs"]),
        )
        for control in row.results.get("controls", [])
    ]
    order = {name: i for i, name in enumerate(CONTROLS)}
    return sorted(found, key=lambda s: order.get(s.name, len(order)))


def figures(row: TrafficEvaluation) -> list[Figures]:
    """Each control's figures of a done evaluation (none before), in :data:`CONTROLS` order."""
    found: list[Figures] = []
    for s in summaries(row):
        low, high = s.spread("total_delay_vehh")
        found.append(
            Figures(
                name=s.name,
                runs=len(s.runs),
                total_delay_vehh=s.mean("total_delay_vehh"),
                total_delay_low=low,
                total_delay_high=high,
                mean_travel_time_s=s.mean("mean_travel_time_s"),
                mean_waiting_s=s.mean("mean_waiting_s"),
                mean_time_loss_s=s.mean("mean_time_loss_s"),
                vehicles=s.mean("vehicles"),
                stops=s.mean("stops"),
                not_inserted=s.mean("not_inserted"),
            )
        )
    return found
