"""Intervals counted at capacity (queues spilling back) are flagged, and the plans made from them
say their figures are lower bounds."""

from __future__ import annotations

from civicloud.traffic.counts import Count, CountsReport
from civicloud.traffic.network import Network
from civicloud.traffic.optimize import Limits, evaluate_program
from civicloud.traffic.service import optimize
from civicloud.traffic.spillback import AT_CAPACITY, saturated_intervals


def _counts(net: Network, through: dict[int, float]) -> list[Count]:
    """A quarter hour per slot of every movement: ``through[slot]`` veh/h on the through
    movements of the west approach, 200 veh/h on the others' throughs, turns 40."""
    signal = net.signals["A0"]
    rows = []
    for slot, busy in through.items():
        for (f, t), links in sorted(signal.movements().items()):
            straight = links[0].dir == "s"
            vph = (busy if f.startswith("left") else 200.0) if straight else 40.0
            rows.append(Count(slot * 900.0, slot * 900.0 + 900, "A0", f, t, vph / 4))
    return rows


def test_an_interval_at_capacity_is_flagged_and_the_plan_is_a_lower_bound(
    networks: dict[str, Network],
) -> None:
    net = networks["junction"]
    quiet = _counts(net, {0: 300.0, 1: 300.0})
    demand = {"A0": {(c.from_edge, c.to_edge): c.count * 4 for c in quiet[: len(quiet) // 2]}}
    assert saturated_intervals(net, quiet, demand) == []
    # The west approach's through-only lane under the network's program: what it can carry.
    capacity = next(
        lane.capacity_vph
        for lane in evaluate_program(net.signals["A0"], demand["A0"]).lanes
        if lane.edge.startswith("left") and lane.lane == 1
    )
    # Two lanes carry the through movement: at capacity when each is full.
    busy = _counts(net, {0: 300.0, 1: 2 * capacity * 1.02, 2: 2 * capacity * 0.5})
    found = saturated_intervals(net, busy, demand)
    assert found
    assert {(s.begin, s.end) for s in found} == {(900.0, 1800.0)}
    assert all(s.from_edge.startswith("left") and s.x >= AT_CAPACITY for s in found)
    report = CountsReport(rows=len(busy), accepted=busy)
    result = optimize(net, report, Limits())
    assert result.saturated
    assert "spillback" in result.plans[0].flags
    assert "spillback" in result.before[0].flags
