"""Offsets for the widest progression bands along corridors: a MAXBAND-style mixed-integer model,
solved with HiGHS.

MAXBAND (Little, Kelson and Gartner, 1981, *MAXBAND: a program for setting signals on arteries
and triangular networks*, Transportation Research Record 795) chooses the offsets of an
artery's signals, at a common cycle and given splits, that give the widest green bands both ways.
This model has the same geometry, written in absolute seconds rather than Little's interference
variables, with whole-second offsets:

- for each signal ``i`` of a corridor (``civicloud.traffic.timespace``), its through movement's
  green in each direction is one window of its own cycle (the longest run of green seconds,
  around the cycle's end if need be): forward ``[g_i, g_i + G_i)``, backward ``[h_i, h_i + H_i)``;
  the signal runs it from its offset ``θ_i`` (an integer second in ``[0, C)``);
- the forward band leaves the first signal at ``x`` and reaches signal ``i`` after the travel
  time ``T_i``: ``[x + T_i, x + T_i + b)`` lies inside one of ``i``'s green windows,
  ``θ_i + g_i + n_i C ≤ x + T_i`` and ``x + T_i + b ≤ θ_i + g_i + G_i + n_i C`` with an integer
  ``n_i`` (which cycle it meets);
- the backward band likewise from the last signal at ``y``, after ``U_i``, with integers ``p_i``;
- maximise ``b + k b̄``, with ``k`` the backward flow over the forward (MAXBAND's weighting;
  MAXBAND's balance constraint is not imposed).
- MAXBAND needs both bands to exist, even at width 0, and has no solution where short greens
  both ways (or offsets held fixed) make that impossible. Here each direction has a binary
  that lets its band go; keeping a band is worth more than any width, so both directions are
  banded wherever they can be, as in MAXBAND, and one is where only one can be.

On a network, corridors are taken in order of the flow on their through movements (the busiest
first), each solved with the offsets already set by earlier ones held fixed: MAXBAND's treatment
of one artery at a time, a heuristic where corridors cross (a grid's rows fix what its columns
may do). Each corridor's model has ``2n`` integers and is solved within a time limit; HiGHS
returns its best so far when the limit is reached.

The bands are checked by :func:`civicloud.traffic.timespace.diagram`, which counts them second
by second from the programs as they run.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import highspy

from civicloud.traffic.network import GREEN, Network
from civicloud.traffic.optimize import SignalPlan
from civicloud.traffic.timespace import Corridor, Stop, Timing, corridors

#: Seconds HiGHS may spend on one corridor.
TIME_LIMIT_S = 10.0
_first = threading.Lock()


@functools.cache
def _without_banner() -> None:
    """Make the process's first HiGHS instance, whose banner (printed to the standard output
    before any option can silence it) goes nowhere."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()  # type: ignore[no-untyped-call]
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _solver() -> highspy.Highs:
    """A silent HiGHS instance with the time limit."""
    with _first:
        _without_banner()
    solver = highspy.Highs()  # type: ignore[no-untyped-call]
    solver.silent()
    solver.setOptionValue("time_limit", TIME_LIMIT_S)
    return solver


@dataclass(frozen=True)
class Window:
    """A through movement's green in a signal's own cycle: from ``start`` for ``length`` s."""

    start: float
    length: float


def green_window(timing: Timing, links: Sequence[int]) -> Window | None:
    """The longest run of green of ``links`` in one cycle (across the cycle's end too)."""
    if not links or timing.cycle <= 0:
        return None
    runs: list[list[float]] = []
    at = 0.0
    for phase in timing.phases:
        green = any(phase.state[i] in GREEN for i in links if i < len(phase.state))
        if green:
            if runs and abs(runs[-1][1] - at) < 1e-9:
                runs[-1][1] = at + phase.duration
            else:
                runs.append([at, at + phase.duration])
        at += phase.duration
    if not runs:
        return None
    if len(runs) > 1 and runs[0][0] < 1e-9 and abs(runs[-1][1] - timing.cycle) < 1e-9:
        first = runs.pop(0)  # one run across the cycle's end
        runs[-1][1] = timing.cycle + first[1]
    start, end = max(runs, key=lambda r: r[1] - r[0])
    return Window(start, min(end - start, timing.cycle))


@dataclass(frozen=True)
class Banded:
    """A corridor's offsets (whole seconds in the cycle) and the model's bandwidths, s."""

    offsets: dict[str, int]
    forward_s: float
    backward_s: float
    optimal: bool


def maxband(
    corridor: Corridor,
    timings: Mapping[str, Timing],
    *,
    backward_weight: float = 1.0,
    fixed: Mapping[str, int] | None = None,
) -> Banded | None:
    """The offsets of the corridor's signals that give the widest bands (``None`` where its
    signals do not share one cycle or a direction has no through green at some signal).

    ``fixed`` holds offsets that stay as they are (set by a busier corridor); without any,
    the first signal keeps its offset."""
    stops = corridor.stops
    found = _windows(corridor, timings)
    if found is None:
        return None
    cycle, forward, backward = found
    fixed = dict(fixed or {})
    if not any(s.signal_id in fixed for s in stops):
        fixed[stops[0].signal_id] = round(timings[stops[0].signal_id].offset) % round(cycle)
    arrival = _cumulative([s.travel_s for s in stops])
    back_arrival = _backward_arrivals(corridor) if backward else []
    reach = max(arrival + back_arrival + [0])
    loops = math.ceil((reach + 2 * cycle) / cycle) + 1

    solver = _solver()
    theta = []
    for stop in stops:
        if stop.signal_id in fixed:
            value = float(fixed[stop.signal_id] % round(cycle))
            theta.append(solver.addVariable(lb=value, ub=value))
        else:
            theta.append(solver.addIntegral(lb=0, ub=cycle - 1))
    # A direction's band may be impossible (short greens both ways, offsets held fixed): its
    # binary ``on`` lets its constraints go (by ``big``) and its width to 0 when it is. Bands
    # both ways come first (each ``on`` is worth more than any width), then their widths.
    big = 4 * cycle + reach
    weight = max(backward_weight, 0.0)
    keep = (1.0 + max(1.0, weight)) * cycle + 1.0  # more than both widths can ever add up to
    b, on = _direction(solver, theta, forward, arrival, cycle, loops, big)
    objective = b + keep * on
    if backward:
        bb, back_on = _direction(solver, theta, backward, back_arrival, cycle, loops, big)
        objective = objective + weight * bb + keep * back_on
    solver.maximize(objective)
    status = solver.getModelStatus()
    if status not in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kTimeLimit):
        return None
    if solver.getInfo().primal_solution_status != 2:  # no feasible solution found
        return None
    offsets = {
        stop.signal_id: round(solver.val(var)) % round(cycle)
        for stop, var in zip(stops, theta, strict=True)
    }
    return Banded(
        offsets=offsets,
        forward_s=float(solver.val(b)),
        backward_s=float(solver.val(bb)) if backward else 0.0,
        optimal=status == highspy.HighsModelStatus.kOptimal,
    )


def _direction(
    solver: highspy.Highs,
    theta: Sequence[Any],
    windows: Sequence[Window],
    arrival: Sequence[int],
    cycle: float,
    loops: int,
    big: float,
) -> tuple[Any, Any]:
    """One direction's band: its start, width and whether it is there, with its constraints
    (the band reaches each signal inside one of that signal's green windows)."""
    start = solver.addVariable(lb=0, ub=cycle)
    width = solver.addVariable(lb=0, ub=min(w.length for w in windows))
    on = solver.addBinary()
    solver.addConstr(width - min(w.length for w in windows) * on <= 0)
    for i, window in enumerate(windows):
        n = solver.addIntegral(lb=-loops, ub=loops)
        solver.addConstr(theta[i] + n * cycle - start - big * (1 - on) <= arrival[i] - window.start)
        solver.addConstr(
            start + width - theta[i] - n * cycle - big * (1 - on)
            <= window.start + window.length - arrival[i]
        )
    return width, on


def _windows(
    corridor: Corridor, timings: Mapping[str, Timing]
) -> tuple[float, list[Window], list[Window]] | None:
    """The corridor's common cycle and each signal's green window forward and backward."""
    chosen = [timings.get(s.signal_id) for s in corridor.stops]
    present = [t for t in chosen if t is not None]
    cycles = {round(t.cycle, 6) for t in present}
    if len(present) != len(chosen) or len(cycles) != 1:
        return None
    cycle = float(cycles.pop())
    if abs(cycle - round(cycle)) > 1e-9:
        return None
    forward = [green_window(t, s.forward) for t, s in zip(present, corridor.stops, strict=True)]
    backward = (
        [green_window(t, s.backward) for t, s in zip(present, corridor.stops, strict=True)]
        if corridor.two_way
        else []
    )
    ahead = [w for w in forward if w is not None]
    back = [w for w in backward if w is not None]
    if len(ahead) != len(forward) or len(back) != len(backward):
        return None
    return cycle, ahead, back


def _cumulative(steps: Sequence[int]) -> list[int]:
    total, found = 0, []
    for step in steps:
        total += step
        found.append(total)
    return found


def _backward_arrivals(corridor: Corridor) -> list[int]:
    """Seconds from leaving the corridor's last signal to each signal, backward."""
    found = [0] * len(corridor.stops)
    for k in range(len(corridor.stops) - 2, -1, -1):
        found[k] = found[k + 1] + corridor.backward_travel_s[k]
    return found


def _through_flow(
    corridor: Corridor,
    demand: Mapping[str, Mapping[tuple[str, str], float]],
    network_links: Mapping[str, Sequence[tuple[str, str]]],
) -> tuple[float, float]:
    """The corridor's counted flow on its through movements, forward and backward, veh/h."""
    forward = backward = 0.0
    for stop in corridor.stops:
        movements = network_links[stop.signal_id]
        flows = demand.get(stop.signal_id, {})
        # Each movement once, however many lanes (links) carry it.
        forward += sum(flows.get(m, 0.0) for m in {movements[i] for i in stop.forward})
        backward += sum(flows.get(m, 0.0) for m in {movements[i] for i in stop.backward})
    return forward, backward


def band_offsets(
    corridors: Sequence[Corridor],
    timings: Mapping[str, Timing],
    demand: Mapping[str, Mapping[tuple[str, str], float]],
    movements: Mapping[str, Sequence[tuple[str, str]]],
) -> dict[str, int]:
    """Offsets that widen the bands of the corridors, the busiest first, each solved with the
    offsets set by busier ones fixed; signals on no corridor (or on none that can be banded)
    are not in the result. ``movements[signal][i]`` is link ``i``'s (from edge, to edge)."""
    ranked = sorted(
        corridors,
        key=lambda c: (-sum(_through_flow(c, demand, movements)), c.name),
    )
    offsets: dict[str, int] = {}
    for each in ranked:
        forward, backward = _through_flow(each, demand, movements)
        if forward <= 0 and backward <= 0:
            continue
        corridor = each
        if backward > forward and each.two_way:
            # The busier direction leads: MAXBAND's weight is at most 1 for the second one.
            corridor = _reversed(each)
            weight = forward / backward
        else:
            weight = backward / forward if forward > 0 else 0.0
        held = {s.signal_id: offsets[s.signal_id] for s in corridor.stops if s.signal_id in offsets}
        if len(held) == len(corridor.stops):
            continue  # every signal was set by a busier corridor
        found = maxband(corridor, timings, backward_weight=weight, fixed=held)
        if found is not None:
            offsets.update(found.offsets)
    return offsets


def _reversed(corridor: Corridor) -> Corridor:
    """The corridor run the other way (its backward direction forward)."""
    travel = [0, *reversed(corridor.backward_travel_s)]
    forward_travel = [s.travel_s for s in corridor.stops][1:]
    stops = tuple(
        Stop(
            signal_id=stop.signal_id,
            distance_m=round(corridor.length_m - stop.distance_m, 1),
            travel_s=travel[k],
            forward=stop.backward,
            backward=stop.forward,
        )
        for k, stop in enumerate(reversed(corridor.stops))
    )
    return Corridor(stops=stops, backward_travel_s=tuple(reversed(forward_travel)))


def banded(
    network: Network,
    plans: Sequence[SignalPlan],
    demand: Mapping[str, Mapping[tuple[str, str], float]],
) -> list[SignalPlan]:
    """The plans with the offsets of their corridors' signals set for the widest bands
    (flagged ``banded``); the splits and cycles stay as they are."""
    timings = {p.signal_id: Timing(p.cycle, p.offset, p.phases) for p in plans}
    movements = {
        sid: [(link.from_edge, link.to_edge) for link in signal.links]
        for sid, signal in network.signals.items()
    }
    offsets = band_offsets(corridors(network), timings, demand, movements)
    return [
        replace(
            p,
            offset=float(offsets[p.signal_id]),
            flags=tuple(dict.fromkeys((*p.flags, "banded"))),
        )
        if p.signal_id in offsets
        else p
        for p in plans
    ]
