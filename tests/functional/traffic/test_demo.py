"""Traffic's part of the demo: Guiyang's bureau with a synthetic network, four weeks of counts
and an issued plan that cuts delay, made once however often the demo is seeded."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select

from civicloud.core.services import Services
from civicloud.demo import seed_demo_world
from civicloud.traffic import demo, networks
from civicloud.traffic.context import TrafficContext
from civicloud.traffic.models import (
    TrafficCountBatch,
    TrafficNetwork,
    TrafficPlan,
    TrafficPlanIssue,
)


def _seed(services: Services) -> list[str]:
    with services.db.unit_of_work() as session:
        seed_demo_world(session=session, services=services)
        return demo.seed(
            session=session,
            services=services,
            context=services.context("traffic", TrafficContext),
        )


def _count(services: Services, model: type) -> int:
    with services.db.unit_of_work(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_the_demo_bureau_has_a_network_a_month_of_counts_and_an_issued_plan(
    fresh_services: Callable[[], Services],
) -> None:
    services = fresh_services()
    said = _seed(services)
    assert any("synthetic" in line for line in said)
    assert any("plan issued" in line for line in said)
    with services.db.unit_of_work(write=False) as session:
        network = session.scalars(select(TrafficNetwork)).one()
        assert network.name == demo.NETWORK_NAME
        assert network.signals == 12
        plan = session.scalars(select(TrafficPlan)).one()
        assert plan.status == "approved"
        assert plan.created_by != plan.reviewed_by
        # Every junction's expected delay falls with the plan.
        assert all(f["delay_s"] < f["before_delay_s"] for f in plan.figures.values())
        # A batch per day, each every movement's 96 quarter hours.
        movements = sum(len(s.movements()) for s in networks.load(network).signals.values())
        batches = session.scalars(select(TrafficCountBatch)).all()
        assert len(batches) == demo.DAYS
        assert {b.rows for b in batches} == {movements * 96}
    assert _count(services, TrafficPlanIssue) == 12
    # Seeded again: nothing new.
    before = {m: _count(services, m) for m in (TrafficCountBatch, TrafficPlan, TrafficPlanIssue)}
    again = _seed(services)
    assert any("plan issued" in line for line in again)
    assert {m: _count(services, m) for m in before} == before
