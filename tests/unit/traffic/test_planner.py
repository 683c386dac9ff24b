"""The planner: a city's junctions planned in worker processes give the plans planning them
here gives, for every demand the workers are sent."""

from __future__ import annotations

from civicloud.traffic import service
from civicloud.traffic.network import Network
from civicloud.traffic.optimize import Limits


def _demand(net: Network, main: float, side: float) -> dict[str, dict[tuple[str, str], float]]:
    demand: dict[str, dict[tuple[str, str], float]] = {}
    for k, signal in enumerate(net.signals.values()):
        demand[signal.id] = {
            (f, t): (main if (len(f) + k) % 2 else side) * (1.0 if links[0].dir == "s" else 0.2)
            for (f, t), links in signal.movements().items()
        }
    return demand


def test_workers_give_the_plans_of_one_process(networks: dict[str, Network]) -> None:
    # Given a grid and two demands (a peak, and the night's with a signal left uncounted)
    net = networks["grid"]
    peak = _demand(net, 700, 300)
    night = _demand(net, 150, 60)
    night.pop(next(iter(net.signals)))
    limits = Limits(min_cycle=50, max_cycle=140)
    # When both are planned by two workers, and here
    with service.Planner(net, workers=2) as workers:
        assert workers.workers == 2
        by_workers = [workers.plan(peak, limits), workers.plan(night, limits)]
    with service.Planner(net, workers=1) as here:
        by_one = [here.plan(peak, limits), here.plan(night, limits)]
    # Then the plans are the same, in the network's order
    assert by_workers == by_one
    assert [p.signal_id for p in by_workers[0]] == list(net.signals)
    assert service.plan_network(net, peak, limits, workers=2) == service.plan_network(
        net, peak, limits, workers=1
    )


def test_a_small_network_is_planned_in_this_process(networks: dict[str, Network]) -> None:
    assert len(networks["grid"].signals) < service.PARALLEL_FROM
    assert service.Planner(networks["grid"]).workers == 1
    # More workers than signals would idle.
    assert service.Planner(networks["junction"], workers=4).workers == 1
