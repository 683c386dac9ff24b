"""Counts recorded under queue spill-back: the intervals where a movement ran at capacity.

A detector counts the vehicles that pass, not those that wanted to: where a lane discharged at
its capacity under the program that ran while counting (the network's own), the count is what
the lane could carry, and demand was at least that (the queue behind it, perhaps spilling back
to the junction upstream, went uncounted). Such intervals are flagged, and a plan made from
them carries the flag ``spillback``: its figures are lower bounds of the delay. Correcting the
demand (from upstream counts, say) is left to a later step.

A lane is at capacity in an interval when its counted flow (each movement's count split evenly
over its lanes, as the optimiser splits it) reaches ``AT_CAPACITY`` of its HCM capacity under
the network's program, with the permissive capacities of the design demand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from civicloud.traffic.counts import Count
from civicloud.traffic.network import Network
from civicloud.traffic.optimize import Movement, evaluate_program

#: A lane's degree of saturation from which its count is taken to be its capacity.
AT_CAPACITY = 0.95


@dataclass(frozen=True)
class Saturated:
    """A movement's interval counted at capacity."""

    tls_id: str
    from_edge: str
    to_edge: str
    begin: float
    end: float
    #: The busiest of its lanes' counted flow over capacity.
    x: float


def saturated_intervals(
    network: Network,
    counts: Iterable[Count],
    demand: Mapping[str, Mapping[Movement, float]],
) -> list[Saturated]:
    """Every movement and interval counted at capacity, in order."""
    capacity: dict[tuple[str, str, int], float] = {}
    lanes_of: dict[tuple[str, str, str], list[tuple[str, int]]] = {}
    for signal_id, signal in network.signals.items():
        program = evaluate_program(signal, demand.get(signal_id, {}))
        for result in program.lanes:
            capacity[(signal_id, result.edge, result.lane)] = result.capacity_vph
        for (f, t), links in signal.movements().items():
            lanes_of[(signal_id, f, t)] = [(link.from_edge, link.from_lane) for link in links]
    rows = list(counts)
    flow: dict[tuple[str, str, int, float, float], float] = {}
    for c in rows:
        lanes = lanes_of.get((c.tls_id, c.from_edge, c.to_edge))
        if not lanes or c.end <= c.begin:
            continue
        share = c.count * 3600.0 / (c.end - c.begin) / len(lanes)
        for edge, index in lanes:
            key = (c.tls_id, edge, index, c.begin, c.end)
            flow[key] = flow.get(key, 0.0) + share
    found: dict[tuple[str, str, str, float, float], Saturated] = {}
    for c in rows:
        worst = 0.0
        for edge, index in lanes_of.get((c.tls_id, c.from_edge, c.to_edge), []):
            cap = capacity.get((c.tls_id, edge, index), 0.0)
            if cap > 0:
                worst = max(worst, flow.get((c.tls_id, edge, index, c.begin, c.end), 0.0) / cap)
        if worst >= AT_CAPACITY:
            found[(c.tls_id, c.from_edge, c.to_edge, c.begin, c.end)] = Saturated(
                c.tls_id, c.from_edge, c.to_edge, c.begin, c.end, x=round(worst, 3)
            )
    return [found[k] for k in sorted(found)]
