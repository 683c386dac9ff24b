"""Time-space diagrams of corridors: where each signal along a road shows green, and the band.

A **corridor** is a chain of signals that a road leads through straight on: from a signal, the
road to the next one (:func:`civicloud.traffic.coordinate.neighbours`), and on from there along
the straight movement of the approach it arrives on. Where the road runs both ways, the
corridor has both directions. The corridors of a network are its longest such chains; a signal
may lie on several (a grid's rows and columns).

A **diagram** draws, for each signal of a corridor at its distance along the road (the straight
distance between junctions, added up), the seconds in which its through movement in each
direction has green (``G`` or ``g`` in the running program's state at the cycle second
``(t - offset) mod cycle``, as SUMO runs an offset), over a few cycles. A vehicle that passes one
signal reaches the next after the link's travel time (the road's length at its speed, the same
travel time the coordination's platoon model uses).

The **band** of a direction is the longest run of seconds, at the first signal, in which a
vehicle leaving on green reaches every later signal on green (at one-second resolution, each
second judged at its middle). Where every signal of the corridor runs one cycle, the runs wrap
around the cycle, and the band's width is the classic progression bandwidth; where cycles
differ, it is counted over the first cycle of the diagram only and flagged as such.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from civicloud.core.actor import Actor
from civicloud.traffic import export, networks, plans
from civicloud.traffic.coordinate import _Link, neighbours
from civicloud.traffic.network import GREEN, Network, Phase, Signal

#: The most corridors a network lists; the longest come first.
MAX_CORRIDORS = 50
#: The most cycles a diagram draws, and the longest horizon it draws, seconds.
MAX_CYCLES = 4
MAX_HORIZON_S = 1200


@dataclass(frozen=True)
class Timing:
    """What a signal runs: its cycle, offset and phases."""

    cycle: float
    offset: float
    phases: tuple[Phase, ...]

    def green(self, links: Sequence[int], t: float) -> bool:
        """Whether any of ``links`` has green at simulation second ``t``."""
        if self.cycle <= 0:
            return False
        at = (t - self.offset) % self.cycle
        for phase in self.phases:
            if at < phase.duration:
                return any(phase.state[i] in GREEN for i in links if i < len(phase.state))
            at -= phase.duration
        return False


def network_timings(network: Network) -> dict[str, Timing]:
    """The programs the network runs by default."""
    return {
        s.id: Timing(s.program.cycle, s.program.offset, s.program.phases)
        for s in network.signals.values()
    }


def sheet_timings(sheet: Mapping[str, Any]) -> dict[str, Timing]:
    """The programs of a timing sheet (a stored plan's ``sheet``; of a time-of-day plan, its
    busiest period's)."""
    found: dict[str, Timing] = {}
    for each in export.design_sheet(sheet).get("signals", []):
        phases = tuple(
            Phase(duration=float(p["duration_s"]), state=str(p["state"]))
            for p in each.get("phases", [])
        )
        found[str(each["tls_id"])] = Timing(
            cycle=float(each["cycle_s"]), offset=float(each.get("offset_s", 0.0)), phases=phases
        )
    return found


@dataclass(frozen=True)
class Stop:
    """A signal on a corridor."""

    signal_id: str
    #: Metres from the corridor's first signal.
    distance_m: float
    #: Seconds from the previous signal (0 at the first), forward.
    travel_s: int
    #: The signal's link indices of the through movement forward and backward (empty where the
    #: corridor runs one way).
    forward: tuple[int, ...]
    backward: tuple[int, ...]


@dataclass(frozen=True)
class Corridor:
    stops: tuple[Stop, ...]
    #: Seconds between consecutive signals backward (from the last to the first), in the
    #: order of ``stops``: ``backward_travel_s[k]`` is from stop ``k + 1`` to stop ``k``.
    backward_travel_s: tuple[int, ...]

    @property
    def two_way(self) -> bool:
        return bool(self.backward_travel_s)

    @property
    def name(self) -> str:
        return " → ".join(s.signal_id for s in self.stops)

    @property
    def length_m(self) -> float:
        return self.stops[-1].distance_m


def _straight(signal: Signal, approach: str) -> set[str]:
    """The edges a signal's straight movements from ``approach`` lead to."""
    return {link.to_edge for link in signal.links if link.from_edge == approach and link.dir == "s"}


def _through(signal: Signal, arriving: str | None, leaving: str | None) -> tuple[int, ...]:
    """The signal's links of the through movement arriving on one edge or leaving on another."""
    found = [
        link.index
        for link in signal.links
        if link.dir == "s"
        and (arriving is None or link.from_edge == arriving)
        and (leaving is None or link.to_edge == leaving)
    ]
    return tuple(sorted(set(found)))


def corridors(network: Network) -> list[Corridor]:
    """The network's corridors, longest first (by signals, then metres), at most
    :data:`MAX_CORRIDORS`; each chain and its reverse make one corridor."""
    links = neighbours(network)
    by_edge = {(link.up, link.edge): i for i, link in enumerate(links)}
    onward: dict[int, int] = {}
    for i, link in enumerate(links):
        down = network.signals[link.down]
        for edge in sorted(_straight(down, link.approach)):
            nxt = by_edge.get((link.down, edge))
            if nxt is not None and links[nxt].down != link.up:
                onward[i] = nxt
                break
    has_before = set(onward.values())
    chains: list[list[int]] = []
    used: set[int] = set()
    # Chains start where no straight run leads in; what is left over are rings, cut anywhere.
    for start in [i for i in range(len(links)) if i not in has_before] + list(range(len(links))):
        if start in used:
            continue
        chain = [start]
        used.add(start)
        while chain[-1] in onward and onward[chain[-1]] not in used:
            chain.append(onward[chain[-1]])
            used.add(chain[-1])
        chains.append(chain)
    found: list[Corridor] = []
    taken: set[tuple[str, ...]] = set()
    ranked = sorted(chains, key=lambda c: -len(c))
    for chain in ranked:
        # A ring is cut where it comes back to a signal it passed.
        seen = {links[chain[0]].up}
        kept: list[int] = []
        for i in chain:
            if links[i].down in seen:
                break
            seen.add(links[i].down)
            kept.append(i)
        signals = (links[kept[0]].up, *(links[i].down for i in kept)) if kept else ()
        if not kept or signals in taken:
            continue
        taken.add(signals)
        taken.add(tuple(reversed(signals)))
        found.append(_corridor(network, [links[i] for i in kept], links))
    found.sort(key=lambda c: (-len(c.stops), -c.length_m, c.name))
    return found[:MAX_CORRIDORS]


def _corridor(network: Network, chain: Sequence[_Link], links: Sequence[_Link]) -> Corridor:
    reverse: dict[tuple[str, str], _Link] = {}
    for link in links:
        reverse.setdefault((link.up, link.down), link)
    signals = [chain[0].up, *(link.down for link in chain)]
    found = [reverse.get((signals[k + 1], signals[k])) for k in range(len(chain))]
    back = [b for b in found if b is not None]
    two_way = len(back) == len(found)
    stops: list[Stop] = []
    distance = 0.0
    for k, sid in enumerate(signals):
        signal = network.signals[sid]
        if k > 0:
            prev = network.signals[signals[k - 1]]
            distance += math.hypot(signal.x - prev.x, signal.y - prev.y)
        if k == 0:
            forward = _through(signal, None, chain[0].edge)
        else:
            forward = _through(signal, chain[k - 1].approach, None)
        backward: tuple[int, ...] = ()
        if two_way:
            if k == len(signals) - 1:
                backward = _through(signal, None, back[k - 1].edge)
            else:
                backward = _through(signal, back[k].approach, None)
        stops.append(
            Stop(
                signal_id=sid,
                distance_m=round(distance, 1),
                travel_s=chain[k - 1].travel_s if k > 0 else 0,
                forward=forward,
                backward=backward,
            )
        )
    return Corridor(
        stops=tuple(stops),
        backward_travel_s=tuple(b.travel_s for b in back) if two_way else (),
    )


@dataclass(frozen=True)
class Band:
    #: Seconds at the direction's first signal at which the band starts, and its width.
    start_s: int
    width_s: int


@dataclass(frozen=True)
class Direction:
    """One direction of a diagram: greens per stop, arrival times, and the band."""

    #: Per stop (in the corridor's order): green intervals ``(start, end)`` in the horizon.
    greens: tuple[tuple[tuple[float, float], ...], ...]
    #: Per stop: seconds after leaving the direction's first signal.
    arrival_s: tuple[int, ...]
    band: Band | None


@dataclass(frozen=True)
class Diagram:
    corridor: Corridor
    horizon_s: int
    #: The cycle every signal of the corridor runs, or ``None`` where they differ.
    cycle_s: float | None
    forward: Direction
    backward: Direction | None


def _intervals(
    timing: Timing | None, links: Sequence[int], horizon: int
) -> list[tuple[float, float]]:
    """The green intervals of ``links`` in ``[0, horizon)``, at the phases' own boundaries."""
    if timing is None or not links or timing.cycle <= 0:
        return []
    found: list[tuple[float, float]] = []
    # The cycle starts at offset + k * cycle; the first start at or before 0.
    start = timing.offset % timing.cycle - timing.cycle
    while start < horizon:
        at = start
        for phase in timing.phases:
            end = at + phase.duration
            if any(phase.state[i] in GREEN for i in links if i < len(phase.state)):
                lo, hi = max(at, 0.0), min(end, float(horizon))
                if hi > lo:
                    if found and abs(found[-1][1] - lo) < 1e-9:
                        found[-1] = (found[-1][0], hi)
                    else:
                        found.append((lo, hi))
            at = end
        start += timing.cycle
    return [(round(a, 1), round(b, 1)) for a, b in found]


def _band(
    timings: Sequence[Timing | None],
    links: Sequence[Sequence[int]],
    arrival: Sequence[int],
    period: int,
    wraps: bool,
) -> Band | None:
    if any(t is None for t in timings) or any(not ls for ls in links) or period <= 0:
        return None
    passing = [
        all(
            t is not None and t.green(ls, s + 0.5 + a)
            for t, ls, a in zip(timings, links, arrival, strict=True)
        )
        for s in range(period)
    ]
    if not any(passing):
        return Band(start_s=0, width_s=0)
    if all(passing):
        return Band(start_s=0, width_s=period)
    best_start, best = 0, 0
    length = 2 * period if wraps else period
    run_start, run = 0, 0
    for s in range(length):
        if passing[s % period]:
            if run == 0:
                run_start = s
            run += 1
            if run > best:
                best, best_start = min(run, period), run_start % period
        else:
            run = 0
    return Band(start_s=best_start, width_s=best)


def diagram(corridor: Corridor, timings: Mapping[str, Timing], cycles: int = 2) -> Diagram:
    """The corridor's diagram under ``timings`` over ``cycles`` of its longest cycle."""
    chosen = [timings.get(s.signal_id) for s in corridor.stops]
    lengths = {round(t.cycle, 3) for t in chosen if t is not None}
    cycle = max(lengths) if lengths else 0.0
    common = len(lengths) == 1 and None not in chosen
    horizon = int(min(max(1, min(cycles, MAX_CYCLES)) * math.ceil(cycle), MAX_HORIZON_S))
    period = math.ceil(cycle)
    wraps = common and abs(cycle - period) < 1e-9

    arrival: list[int] = []
    total = 0
    for stop in corridor.stops:
        total += stop.travel_s
        arrival.append(total)
    forward = Direction(
        greens=tuple(
            tuple(_intervals(t, s.forward, horizon))
            for t, s in zip(chosen, corridor.stops, strict=True)
        ),
        arrival_s=tuple(arrival),
        band=_band(chosen, [s.forward for s in corridor.stops], arrival, period, wraps),
    )
    backward: Direction | None = None
    if corridor.two_way:
        back_arrival = [0] * len(corridor.stops)
        for k in range(len(corridor.stops) - 2, -1, -1):
            back_arrival[k] = back_arrival[k + 1] + corridor.backward_travel_s[k]
        reversed_order = list(range(len(corridor.stops) - 1, -1, -1))
        backward = Direction(
            greens=tuple(
                tuple(_intervals(t, s.backward, horizon))
                for t, s in zip(chosen, corridor.stops, strict=True)
            ),
            arrival_s=tuple(back_arrival),
            band=_band(
                [chosen[k] for k in reversed_order],
                [corridor.stops[k].backward for k in reversed_order],
                [back_arrival[k] for k in reversed_order],
                period,
                wraps,
            ),
        )
    return Diagram(
        corridor=corridor,
        horizon_s=horizon,
        cycle_s=cycle if common else None,
        forward=forward,
        backward=backward,
    )


@dataclass(frozen=True)
class CorridorBands:
    """A corridor's bands under the network's own programs and under a plan."""

    index: int
    corridor: Corridor
    before: Diagram
    after: Diagram


@dataclass(frozen=True)
class PlanCorridors:
    corridors: tuple[CorridorBands, ...]
    #: The corridor drawn (an index into ``corridors``), or ``None`` where there is none.
    chosen: int | None


def plan_corridors(
    *, session: Session, actor: Actor, plan_id: uuid.UUID, chosen: int = 0
) -> PlanCorridors:
    """A stored plan's corridors with their diagrams before (the network's own programs) and
    after (the plan); ``chosen`` picks the corridor to draw (the longest by default)."""
    plan = plans.get_plan(session=session, actor=actor, plan_id=plan_id)
    row = networks.get_network(session=session, actor=actor, network_id=plan.network_id)
    network = networks.load(row)
    before = network_timings(network)
    after = {**before, **sheet_timings(plan.sheet)}
    found = tuple(
        CorridorBands(i, c, diagram(c, before), diagram(c, after))
        for i, c in enumerate(corridors(network))
    )
    if not found:
        return PlanCorridors((), None)
    return PlanCorridors(found, chosen if 0 <= chosen < len(found) else 0)
