"""Evaluations of stored plans, without SUMO: the seeds, the design hour kept, who takes a
queued evaluation, and what becomes of one a dead worker left running."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session
from tests.factories.core import make_tenant, unique
from tests.factories.traffic import counts_csv

from civicloud.core.actor import Actor
from civicloud.core.db import utcnow
from civicloud.traffic import evaluations, plans, simulate
from civicloud.traffic import networks as stored_networks
from civicloud.traffic.errors import DemandNeeded, EvaluationNotFound, InvalidSeeds
from civicloud.traffic.models import TrafficEvaluation
from civicloud.traffic.network import Network
from civicloud.traffic.optimize import Limits

SYSTEM = Actor.system("test")


@pytest.fixture
def queued(
    db_session: Session, net_files: dict[str, Path], networks: dict[str, Network]
) -> TrafficEvaluation:
    """A queued evaluation of a draft plan for a junction of a new tenant's."""
    tenant = make_tenant(db_session)
    row = stored_networks.import_network(
        session=db_session,
        actor=SYSTEM,
        tenant_id=tenant.id,
        name=unique("junction"),
        content=net_files["junction"].read_bytes(),
    )
    counts = counts_csv(networks["junction"]).encode()
    plan = plans.draft_plan(
        session=db_session,
        actor=SYSTEM,
        network_id=row.id,
        name="peak",
        counts=counts,
        limits=Limits(),
    )
    return evaluations.request_evaluation(
        session=db_session, actor=SYSTEM, plan_id=plan.id, seeds=2, counts=counts
    )


def _stale(session: Session, evaluation: TrafficEvaluation, attempts: int) -> None:
    session.execute(
        update(TrafficEvaluation)
        .where(TrafficEvaluation.id == evaluation.id)
        .values(
            status="running",
            steps_done=4,
            attempts=attempts,
            progress_at=utcnow() - evaluations.STALE_AFTER - timedelta(minutes=1),
        )
    )
    session.expire_all()


def test_a_request_keeps_the_design_hour_and_the_next_reuses_it(
    db_session: Session, queued: TrafficEvaluation, networks: dict[str, Network]
) -> None:
    assert (queued.status, queued.steps_done, queued.steps_total) == ("queued", 0, 6)
    demand = evaluations.demand_of(queued)
    # Every counted movement of the junction, in veh/h of the busiest hour (120 a quarter).
    movements = networks["junction"].signals["A0"].movements()
    assert set(demand["A0"]) == set(movements)
    assert max(demand["A0"].values()) == pytest.approx(480.0)
    again = evaluations.request_evaluation(
        session=db_session, actor=SYSTEM, plan_id=queued.plan_id, seeds=1
    )
    assert again.demand == queued.demand
    assert again.counts_sha256 == queued.counts_sha256


@pytest.mark.parametrize("seeds", [0, 11, -3, 1000])
def test_seeds_outside_one_to_ten_are_refused(
    db_session: Session, queued: TrafficEvaluation, seeds: int
) -> None:
    with pytest.raises(InvalidSeeds, match="between 1 and 10"):
        evaluations.request_evaluation(
            session=db_session, actor=SYSTEM, plan_id=queued.plan_id, seeds=seeds
        )


def test_a_plan_never_evaluated_needs_its_counts(
    db_session: Session, queued: TrafficEvaluation
) -> None:
    db_session.delete(queued)
    db_session.flush()
    with pytest.raises(DemandNeeded):
        evaluations.request_evaluation(
            session=db_session, actor=SYSTEM, plan_id=queued.plan_id, seeds=1
        )


def test_one_worker_takes_a_queued_evaluation(
    db_session: Session, queued: TrafficEvaluation
) -> None:
    now = utcnow()
    assert queued.id in evaluations.due(session=db_session, now=now)
    assert evaluations.claim(session=db_session, evaluation_id=queued.id, now=now)
    # A second worker finds it taken, and it is no longer due.
    assert not evaluations.claim(session=db_session, evaluation_id=queued.id, now=now)
    assert queued.id not in evaluations.due(session=db_session, now=now)
    db_session.refresh(queued)
    assert (queued.status, queued.attempts, queued.started_at) == ("running", 1, now)


def test_a_stale_running_evaluation_is_taken_again_once_then_failed(
    db_session: Session, queued: TrafficEvaluation
) -> None:
    # Given an evaluation whose worker died midway, long ago
    _stale(db_session, queued, attempts=1)
    now = utcnow()
    # When a worker looks for work, it takes it again, from the start
    assert queued.id in evaluations.due(session=db_session, now=now)
    assert evaluations.claim(session=db_session, evaluation_id=queued.id, now=now)
    db_session.refresh(queued)
    assert (queued.status, queued.steps_done, queued.attempts) == ("running", 0, 2)
    # One that is running and moving is not taken.
    assert not evaluations.claim(session=db_session, evaluation_id=queued.id, now=utcnow())
    # Left a second time, it is failed with the reason, not run again.
    _stale(db_session, queued, attempts=2)
    assert not evaluations.claim(session=db_session, evaluation_id=queued.id, now=utcnow())
    db_session.refresh(queued)
    assert queued.status == "failed"
    assert queued.error is not None
    assert "stopped twice" in queued.error
    assert queued.error_detail is not None
    assert queued.error_detail["code"] == "traffic.evaluation_failed"
    assert queued.id not in evaluations.due(session=db_session, now=utcnow())


def test_a_worker_taken_for_dead_changes_nothing_of_the_run_taken_again(
    db_session: Session, queued: TrafficEvaluation
) -> None:
    # Given a run taken again (attempt 2) from a worker presumed dead (attempt 1)
    _stale(db_session, queued, attempts=1)
    assert evaluations.claim(session=db_session, evaluation_id=queued.id, now=utcnow())
    late = [simulate.Summary("network", (simulate.RunFigures(1, 1.0, 1.0, 1.0, 1.0, 1, 0),))]
    # When the first worker, alive after all, reports progress, a result and a failure
    evaluations.record_progress(session=db_session, evaluation_id=queued.id, done=5, attempt=1)
    evaluations.finish(session=db_session, evaluation_id=queued.id, summaries=late, attempt=1)
    evaluations.fail(
        session=db_session,
        evaluation_id=queued.id,
        error=evaluations.EvaluationFailed("late"),
        attempt=1,
    )
    db_session.refresh(queued)
    # Then the second run is untouched; its own steps count
    assert (queued.status, queued.steps_done, queued.results) == ("running", 0, None)
    evaluations.record_progress(session=db_session, evaluation_id=queued.id, done=2, attempt=2)
    db_session.refresh(queued)
    assert queued.steps_done == 2


def test_figures_are_the_means_over_the_runs_in_the_controls_order(
    db_session: Session, queued: TrafficEvaluation
) -> None:
    def run(delay: float) -> simulate.RunFigures:
        return simulate.RunFigures(100, 60.0, 10.0, 20.0, delay, 50, 0)

    summaries = [
        simulate.Summary("actuated", (run(3.0), run(5.0))),
        simulate.Summary("network", (run(9.0), run(11.0))),
        simulate.Summary("plan", (run(4.0), run(8.0))),
    ]
    evaluations.claim(session=db_session, evaluation_id=queued.id, now=utcnow())
    evaluations.finish(session=db_session, evaluation_id=queued.id, summaries=summaries)
    db_session.refresh(queued)
    assert (queued.status, queued.steps_done) == ("done", 6)
    found = evaluations.figures(queued)
    assert [f.name for f in found] == ["network", "plan", "actuated"]
    assert [(f.total_delay_vehh, f.total_delay_low, f.total_delay_high) for f in found] == [
        (10.0, 9.0, 11.0),
        (6.0, 4.0, 8.0),
        (4.0, 3.0, 5.0),
    ]
    assert simulate.summary_rows(evaluations.summaries(queued))[0][1] == "10.0 (9.0..11.0)"


def test_an_unknown_evaluation_is_not_found(db_session: Session) -> None:
    with pytest.raises(EvaluationNotFound):
        evaluations.get_evaluation(session=db_session, actor=SYSTEM, evaluation_id=uuid.uuid4())
