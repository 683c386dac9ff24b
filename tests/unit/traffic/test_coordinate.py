"""Coordination: which signals are neighbours, a common cycle per group, offsets within the cycle,
and the offset search's exactness on a chain (against brute force)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicloud.traffic import export
from civicloud.traffic.coordinate import (
    ACCELERATION,
    _delay_tables,
    _departures,
    _descend,
    _disperse,
    _tree_offsets,
    groups,
    neighbours,
)
from civicloud.traffic.network import Network
from civicloud.traffic.optimize import Limits, conflicting_greens
from civicloud.traffic.service import plan_network


def _arterial(net: Network, main: float, side: float) -> dict[str, dict[tuple[str, str], float]]:
    """``main`` veh/h on the east-west through movements, ``side`` on the others, turns a fifth."""
    demand: dict[str, dict[tuple[str, str], float]] = {}
    for signal in net.signals.values():
        flows = {}
        for (f, t), links in signal.movements().items():
            shape = net.edges[f].shape
            base = main if abs(shape[0][1] - shape[-1][1]) < 1.0 else side
            flows[(f, t)] = base * (1.0 if links[0].dir == "s" else 0.2)
        demand[signal.id] = flows
    return demand


def test_neighbours_follow_the_road_through_a_turn_lane_node(networks: dict[str, Network]) -> None:
    net = networks["corridor"]
    links = neighbours(net)
    pairs = sorted((link.up, link.down) for link in links)
    assert pairs == [("A0", "B0"), ("B0", "A0"), ("B0", "C0"), ("C0", "B0")]
    ab = next(link for link in links if (link.up, link.down) == ("A0", "B0"))
    # netgenerate splits the road where the left-turn lane begins: two edges, one road.
    assert ab.edge != ab.approach
    length = net.edges[ab.edge].length + net.edges[ab.approach].length
    speed = net.edges[ab.edge].speed
    assert ab.travel_s == round(length / speed + speed / (2 * ACCELERATION))
    assert groups(sorted(net.signals), links) == [["A0", "B0", "C0"]]
    assert neighbours(networks["junction"]) == []


@pytest.mark.parametrize("layout", ["corridor", "grid"])
def test_a_group_gets_one_cycle_and_offsets_inside_it(
    networks: dict[str, Network], layout: str
) -> None:
    net = networks[layout]
    plans = plan_network(net, _arterial(net, 550, 250), Limits(min_cycle=60))
    cycles = {plan.cycle for plan in plans}
    assert len(cycles) == 1
    assert all(0 <= plan.offset < plan.cycle for plan in plans)
    assert all("coordinated" in plan.flags for plan in plans)
    assert plans[0].offset == 0
    # At least one signal is shifted: simultaneous greens stop every platoon somewhere.
    assert any(plan.offset > 0 for plan in plans)
    for plan in plans:
        assert sum(p.duration for p in plan.phases) == pytest.approx(plan.cycle)
        assert conflicting_greens(net.signals[plan.signal_id], plan.phases) == []
    # The offsets are what SUMO is given.
    written = export.sumo_additional(plans)
    for plan in plans:
        assert f'offset="{plan.offset:g}"' in written


def test_a_lone_junction_is_not_coordinated(networks: dict[str, Network]) -> None:
    net = networks["junction"]
    (plan,) = plan_network(net, _arterial(net, 550, 250), Limits())
    assert plan.offset == 0
    assert "coordinated" not in plan.flags


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cycle=st.integers(4, 9),
    seed=st.integers(0, 2**31 - 1),
    size=st.integers(2, 4),
)
def test_the_offsets_are_optimal_on_a_chain(cycle: int, seed: int, size: int) -> None:
    """On a chain (a corridor), dynamic programming finds the least total of the pair tables,
    as trying every combination of offsets does."""
    rng = np.random.default_rng(seed)
    group = [f"s{i}" for i in range(size)]
    tables = {(group[i], group[i + 1]): rng.random(cycle) * 10 for i in range(size - 1)}
    weight = {pair: float(table.max() - table.min()) for pair, table in tables.items()}

    def total(offsets: dict[str, int]) -> float:
        return sum(float(t[(offsets[a] - offsets[b]) % cycle]) for (a, b), t in tables.items())

    found = _descend(group, tables, _tree_offsets(group, tables, weight, cycle), cycle)
    best = min(
        total({group[0]: 0, **dict(zip(group[1:], rest, strict=True))})
        for rest in itertools.product(range(cycle), repeat=size - 1)
    )
    assert found[group[0]] == 0
    assert all(0 <= o < cycle for o in found.values())
    assert total(found) == pytest.approx(best)


@given(
    profile=st.lists(st.floats(0.0, 1.0), min_size=10, max_size=120),
    travel=st.integers(0, 90),
)
def test_dispersion_keeps_the_vehicles_and_flattens_the_platoon(
    profile: list[float], travel: int
) -> None:
    sent = np.asarray(profile)
    arrived = _disperse(sent, travel)
    assert arrived.sum() == pytest.approx(sent.sum(), rel=1e-6, abs=1e-9)
    assert arrived.max() <= sent.max() + 1e-9
    assert arrived.min() >= sent.min() - 1e-9


def _one_lane_delay(arrivals: np.ndarray, capacity: np.ndarray, shift: int) -> float:
    """A deterministic queue over two cycles, the second's vehicle-seconds: one lane whose
    arrivals come ``shift`` seconds late."""
    n = len(arrivals)
    queue = total = 0.0
    for t in range(2 * n):
        queue = max(queue + arrivals[(t - shift) % n] - capacity[t % n], 0.0)
        if t >= n:
            total += queue
    return total


@settings(max_examples=30, deadline=None)
@given(
    cycle=st.integers(2, 12),
    lanes=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_a_groups_lanes_queue_in_one_array_as_each_alone(cycle: int, lanes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    arrivals = rng.random((lanes, cycle)) * 0.6
    capacity = rng.random((lanes, cycle)) * (rng.random((lanes, cycle)) > 0.4)
    tables = _delay_tables(arrivals, capacity)
    rates = rng.random(lanes) * 0.5
    served = _departures(rates, capacity)
    for k in range(lanes):
        for shift in range(cycle):
            assert tables[k, shift] == pytest.approx(
                _one_lane_delay(arrivals[k], capacity[k], shift), abs=1e-12
            )
        queue = 0.0
        for t in range(2 * cycle):
            waiting = queue + rates[k]
            gone = min(waiting, capacity[k, t % cycle])
            queue = waiting - gone
            if t >= cycle:
                assert served[k, t - cycle] == pytest.approx(gone, abs=1e-12)
