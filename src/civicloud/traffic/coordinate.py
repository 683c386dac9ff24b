"""Coordination of neighbouring signals: a common cycle and the offsets that let platoons pass.

Signals are neighbours where a road leads from one's junction to the other's: an edge, or a chain
of edges through nodes with one way on (where a turn lane begins, say). Each
group of neighbours (a corridor, a grid) gets the longest of its members' own cycles, and its
members are re-timed at that cycle. Offsets then come from a cyclic platoon model in the manner
of TRANSYT, at one-second resolution:

- each signal's departures per movement over its cycle, with arrivals spread evenly (a queue
  that discharges at the saturation flow when its green starts, then the arrival rate);
- on an edge from signal ``a`` to signal ``b``, those departures arrive after the travel time
  (the edge's length at its speed, and the start-up from a stop), spread out on the way as
  Robertson's platoon dispersion has it (TRANSYT's alpha = 0.35, beta = 0.8), in ``b``'s frame shifted
  by the offset difference ``o_a - o_b``; whatever ``b`` counts on the edge beyond what ``a`` sends
  arrives evenly;
- the delay on the edge's lanes at ``b`` is a deterministic queue's over a cycle (after one
  cycle to settle), for every offset difference at once.

Every edge's delay is a function of one offset difference, so the offsets minimise a sum of
pairwise tables: exactly on a spanning tree of the group (dynamic programming over the busiest
links; a corridor is a tree), then by coordinate descent over every link, bounded in passes.
Offsets are whole seconds within the cycle; the first signal of a group keeps offset 0.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from civicloud.traffic.network import Edge, Network, Signal
from civicloud.traffic.optimize import Limits, Movement, SignalPlan, build_model, plan_signal

#: SUMO's default passenger car acceleration, m/s²: a platoon's leader starts from a stop.
ACCELERATION = 2.6
#: Robertson's platoon dispersion factor and travel time factor (TRANSYT's defaults).
ALPHA = 0.35
BETA = 0.8
#: Coordinate descent stops after this many passes over a group, improved or not.
MAX_PASSES = 20

Array = NDArray[np.float64]


@dataclass(frozen=True)
class _Link:
    """An edge from signal ``up`` to signal ``down``."""

    up: str
    down: str
    #: The edge leaving ``up`` and the edge arriving at ``down`` (the same edge, or the ends of
    #: a chain).
    edge: str
    approach: str
    travel_s: int


#: The longest chain of edges followed from one signal to the next.
MAX_CHAIN = 8


def neighbours(network: Network) -> list[_Link]:
    """Every road that leads from a signal's junction to another signal's."""
    signal_of = {j: s.id for s in network.signals.values() for j in s.junctions}
    leaving: dict[str, list[str]] = {}
    for each in network.edges.values():
        leaving.setdefault(each.from_node, []).append(each.id)
    found: list[_Link] = []
    for signal in network.signals.values():
        for edge_id in sorted({link.to_edge for link in signal.links}):
            edge: Edge | None = network.edges.get(edge_id)
            seconds = 0.0
            speed = 1.0
            for _ in range(MAX_CHAIN):
                if edge is None:
                    break
                speed = max(edge.speed, 1.0)
                seconds += edge.length / speed
                down = signal_of.get(edge.to_node)
                if down is not None:
                    if down != signal.id:
                        travel = seconds + speed / (2.0 * ACCELERATION)
                        found.append(_Link(signal.id, down, edge_id, edge.id, round(travel)))
                    break
                onward = [
                    e
                    for e in leaving.get(edge.to_node, [])
                    if network.edges[e].to_node != edge.from_node
                ]
                edge = network.edges[onward[0]] if len(onward) == 1 else None
    return found


def groups(signals: Sequence[str], links: Sequence[_Link]) -> list[list[str]]:
    """The connected groups of signals, each in the order given."""
    parent = {s: s for s in signals}

    def root(s: str) -> str:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for link in links:
        if link.up in parent and link.down in parent:
            parent[root(link.up)] = root(link.down)
    found: dict[str, list[str]] = {}
    for s in signals:
        found.setdefault(root(s), []).append(s)
    return list(found.values())


def coordinate(
    network: Network,
    plans: Sequence[SignalPlan],
    demand: Mapping[str, Mapping[Movement, float]],
    limits: Limits,
) -> list[SignalPlan]:
    """The plans with a common cycle and offsets in each group of neighbouring signals."""
    by_id = {plan.signal_id: plan for plan in plans}
    eligible = [p.signal_id for p in plans if "no_green_phase" not in p.flags]
    links = [link for link in neighbours(network) if link.up in eligible and link.down in eligible]
    for group in groups(eligible, links):
        if len(group) < 2:
            continue
        cycle = max(math.ceil(by_id[s].cycle) for s in group)
        common = replace(limits, min_cycle=float(cycle), max_cycle=float(cycle))
        for s in group:
            if round(by_id[s].cycle) != cycle:
                by_id[s] = plan_signal(network.signals[s], demand.get(s, {}), common)
        inside = [link for link in links if link.up in group]
        offsets = _offsets(network, group, inside, by_id, demand, limits, cycle)
        for s in group:
            by_id[s] = replace(
                by_id[s],
                offset=float(offsets[s]),
                flags=tuple(dict.fromkeys((*by_id[s].flags, "coordinated"))),
            )
    return [by_id[p.signal_id] for p in plans]


@dataclass
class _Profiles:
    """One signal's figures over its cycle, per second."""

    #: Per approach lane (edge, lane): capacity, veh/s, in each second of the cycle.
    capacity: dict[tuple[str, int], Array]
    #: Per approach lane: its flow, veh/h.
    flow: dict[tuple[str, int], float]
    #: Per exit edge: departures towards it, veh/s, in each second of the cycle.
    departures: dict[str, Array]


def _profiles(
    signals: Sequence[Signal],
    plans: Sequence[SignalPlan],
    demands: Sequence[Mapping[Movement, float]],
    limits: Limits,
    cycle: int,
) -> list[_Profiles]:
    """Each signal's figures over the cycle (the queues of every lane of the group in one
    array)."""
    found: list[_Profiles] = []
    # Per lane with demand: its signal's place in ``found``, its key, flow and shares by exit.
    queued: list[tuple[int, tuple[str, int], float, dict[str, float]]] = []
    capacities: list[Array] = []
    for signal, plan, demand in zip(signals, plans, demands, strict=True):
        model = build_model(signal, demand, limits)
        durations = [p.duration for p in plan.phases]
        bounds = np.concatenate([[0.0], np.cumsum(durations)])
        seconds = np.arange(cycle, dtype=float)
        # The share of each second (t, t + 1) that each phase covers.
        overlap = np.clip(
            np.minimum(seconds[:, None] + 1.0, bounds[None, 1:])
            - np.maximum(seconds[:, None], bounds[None, :-1]),
            0.0,
            1.0,
        )
        capacity: dict[tuple[str, int], Array] = {}
        flow: dict[tuple[str, int], float] = {}
        shares: dict[tuple[str, int], dict[str, float]] = {}
        for (from_edge, to_edge), members in signal.movements().items():
            share = max(float(demand.get((from_edge, to_edge), 0.0)), 0.0) / len(members)
            for link in members:
                towards = shares.setdefault((link.from_edge, link.from_lane), {})
                towards[to_edge] = towards.get(to_edge, 0.0) + share
        for lane in model.lanes:
            key = (lane.edge, lane.lane)
            per_second = overlap @ np.asarray(lane.factors[: len(durations)], dtype=float)
            capacity[key] = lane.saturation / 3600.0 * per_second
            flow[key] = lane.flow
            if lane.flow > 0:
                queued.append((len(found), key, lane.flow, shares.get(key, {})))
                capacities.append(capacity[key])
        found.append(_Profiles(capacity, flow, {}))
    if queued:
        arrivals = np.asarray([item[2] / 3600.0 for item in queued])
        served = _departures(arrivals, np.asarray(capacities))
        for (k, _, lane_flow, towards), out in zip(queued, served, strict=True):
            departures = found[k].departures
            for to_edge, share in towards.items():
                if share > 0:
                    departures.setdefault(to_edge, np.zeros(cycle))
                    departures[to_edge] += out * (share / lane_flow)
    return found


def _departures(arrivals: Array, capacity: Array) -> Array:
    """Departures in each second of the second cycle of queues that start empty: one per row
    of ``capacity`` (lanes x seconds), each with its constant arrival rate (veh/s)."""
    queue = np.zeros(capacity.shape[0])
    out = np.zeros_like(capacity)
    n = capacity.shape[1]
    for t in range(2 * n):
        waiting = queue + arrivals
        gone = np.minimum(waiting, capacity[:, t % n])
        queue = waiting - gone
        if t >= n:
            out[:, t - n] = gone
    return out


def _disperse(departures: Array, travel_s: int) -> Array:
    """Robertson's recurrence ``q'(t + T) = F q(t) + (1 - F) q'(t + T - 1)`` in its cyclic
    steady state, with ``T = beta t`` and ``F = 1 / (1 + alpha T)``: the profile ``T`` seconds
    on, spread out."""
    n = len(departures)
    lag = round(BETA * travel_s)
    factor = 1.0 / (1.0 + ALPHA * max(lag, 1))
    # One pass from zero gives the cycle's last value up to the carry-over of earlier cycles,
    # which sums to a geometric series: the steady state's last value, exactly.
    last = 0.0
    for t in range(n):
        last = factor * departures[t] + (1.0 - factor) * last
    last /= 1.0 - (1.0 - factor) ** n
    out = np.zeros(n)
    for t in range(n):
        last = factor * departures[t] + (1.0 - factor) * last
        out[(t + lag) % n] = last
    return out


def _delay_tables(arrivals: Array, capacity: Array) -> Array:
    """Vehicle-seconds of queueing per cycle of each lane (row) for each offset difference
    ``d`` (column): the lane's arrivals are ``arrivals[(t - d) % n]`` at second ``t``.

    Lanes x seconds in, lanes x shifts out, every lane and shift of a group in one array."""
    lanes, n = arrivals.shape
    queue = np.zeros((lanes, n))
    total = np.zeros((lanes, n))
    shifts = np.arange(n)
    for t in range(2 * n):
        queue = np.maximum(queue + arrivals[:, (t - shifts) % n] - capacity[:, t % n, None], 0.0)
        if t >= n:
            total += queue
    return total


def _link_lanes(
    link: _Link, up: _Profiles, down: _Profiles, cycle: int
) -> list[tuple[Array, Array]]:
    """The link's lanes at ``down``: each lane's arrivals per second of ``down``'s frame when
    the offsets are equal, and its capacity per second (see ``_delay_tables``)."""
    sent = up.departures.get(link.edge)
    lanes = [key for key in down.flow if key[0] == link.approach and down.flow[key] > 0]
    if sent is None or not lanes:
        return []
    counted = sum(down.flow[key] for key in lanes) / 3600.0 * cycle  # vehicles per cycle
    volume = float(sent.sum())
    platoon = _disperse(sent, link.travel_s) * (min(counted / volume, 1.0) if volume > 0 else 0.0)
    even = max(counted - float(platoon.sum()), 0.0) / cycle
    # The dispersed profile already carries the lag of beta times the travel time; the rest is
    # added here: at second t the lane gets what left ``up`` lag seconds earlier.
    lag = link.travel_s - round(BETA * link.travel_s)
    arriving = platoon[(np.arange(cycle) - lag) % cycle] + even
    found = []
    for key in lanes:
        share = down.flow[key] / 3600.0 * cycle / counted
        found.append((arriving * share, down.capacity[key]))
    return found


def _link_tables(
    links: Sequence[_Link], profiles: Mapping[str, _Profiles], cycle: int
) -> list[Array]:
    """Delay on each link's lanes at its ``down`` signal for each offset difference
    ``o_up - o_down``."""
    owner: list[int] = []
    arrivals: list[Array] = []
    capacity: list[Array] = []
    for k, link in enumerate(links):
        for arriving, lane_capacity in _link_lanes(
            link, profiles[link.up], profiles[link.down], cycle
        ):
            owner.append(k)
            arrivals.append(arriving)
            capacity.append(lane_capacity)
    tables = [np.zeros(cycle) for _ in links]
    # In bounded slices: a city's group has tens of thousands of lanes.
    chunk = max(1, (1 << 22) // max(cycle * cycle, 1))
    for first in range(0, len(owner), chunk):
        rows = slice(first, first + chunk)
        delays = _delay_tables(np.asarray(arrivals[rows]), np.asarray(capacity[rows]))
        for k, delay in zip(owner[rows], delays, strict=True):
            tables[k] += delay
    return tables


def _offsets(
    network: Network,
    group: Sequence[str],
    links: Sequence[_Link],
    plans: Mapping[str, SignalPlan],
    demand: Mapping[str, Mapping[Movement, float]],
    limits: Limits,
    cycle: int,
) -> dict[str, int]:
    profiles = dict(
        zip(
            group,
            _profiles(
                [network.signals[s] for s in group],
                [plans[s] for s in group],
                [demand.get(s, {}) for s in group],
                limits,
                cycle,
            ),
            strict=True,
        )
    )
    # tables[(a, b)][d]: delay on every link between a and b when o_a - o_b = d.
    tables: dict[tuple[str, str], Array] = {}
    weight: dict[tuple[str, str], float] = {}
    for link, table in zip(links, _link_tables(links, profiles, cycle), strict=True):
        a, b = sorted((link.up, link.down))
        if (a, b) not in tables:
            tables[(a, b)] = np.zeros(cycle)
            weight[(a, b)] = 0.0
        # As a function of o_a - o_b: the link's own difference, or its negation.
        tables[(a, b)] += table if link.up == a else table[(-np.arange(cycle)) % cycle]
        weight[(a, b)] += float(table.max() - table.min())
    offsets = _tree_offsets(group, tables, weight, cycle)
    return _descend(group, tables, offsets, cycle)


def _pair(tables: Mapping[tuple[str, str], Array], s: str, other: str, cycle: int) -> Array | None:
    """The pair's table as a function of ``o_s - o_other``."""
    if (s, other) in tables:
        return tables[(s, other)]
    if (other, s) in tables:
        return tables[(other, s)][(-np.arange(cycle)) % cycle]
    return None


def _tree_offsets(
    group: Sequence[str],
    tables: Mapping[tuple[str, str], Array],
    weight: Mapping[tuple[str, str], float],
    cycle: int,
) -> dict[str, int]:
    """Exact offsets on the spanning tree of the links that matter most (Prim's, by weight)."""
    neighbours: dict[str, list[tuple[float, str]]] = {s: [] for s in group}
    for (a, b), w in weight.items():
        neighbours[a].append((w, b))
        neighbours[b].append((w, a))
    parent: dict[str, str] = {}
    order: list[str] = []
    seen: set[str] = set()
    for root in group:  # a group is connected; each further root starts an unlinked part
        if root in seen:
            continue
        seen.add(root)
        order.append(root)
        frontier = [(-w, other, root) for w, other in neighbours[root]]
        heapq.heapify(frontier)
        while frontier:
            _, outside, inside = heapq.heappop(frontier)
            if outside in seen:
                continue
            parent[outside] = inside
            seen.add(outside)
            order.append(outside)
            for w, other in neighbours[outside]:
                if other not in seen:
                    heapq.heappush(frontier, (-w, other, outside))
    # cost[s][o]: the least delay of s's subtree when s has offset o.
    cost = {s: np.zeros(cycle) for s in order}
    choice: dict[str, NDArray[np.int64]] = {}
    shifts = np.arange(cycle)
    for s in reversed(order):
        if s not in parent:
            continue
        p = parent[s]
        table = _pair(tables, p, s, cycle)
        assert table is not None
        # matrix[o_p, o_s] = table[o_p - o_s] + cost[s][o_s]
        matrix = table[(shifts[:, None] - shifts[None, :]) % cycle] + cost[s][None, :]
        choice[s] = np.argmin(matrix, axis=1)
        cost[p] = cost[p] + matrix.min(axis=1)
    offsets = dict.fromkeys(group, 0)
    for s in order:
        if s in parent:
            offsets[s] = int(choice[s][offsets[parent[s]]])
    return offsets


def _descend(
    group: Sequence[str],
    tables: Mapping[tuple[str, str], Array],
    offsets: dict[str, int],
    cycle: int,
) -> dict[str, int]:
    """Coordinate descent over every link's table: each signal in turn takes its best offset."""
    shifts = np.arange(cycle)
    linked: dict[str, list[str]] = {s: [] for s in group}
    for a, b in tables:
        linked[a].append(b)
        linked[b].append(a)
    for _ in range(MAX_PASSES):
        moved = False
        for s in group[1:]:
            total = np.zeros(cycle)
            for other in linked[s]:
                table = _pair(tables, s, other, cycle)
                if table is not None:
                    total += table[(shifts - offsets[other]) % cycle]
            best = int(np.argmin(total))
            if total[best] < total[offsets[s]] - 1e-9:
                offsets[s] = best
                moved = True
        if not moved:
            break
    return offsets
