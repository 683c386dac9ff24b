"""Fixed-time plans for one signal: keep the network's phase structure, time it for the counted
demand so that HCM control delay is least.

The model of a junction:

- a *lane group* is one approach lane: its flow is the sum of the movements' flows that use it
  (a movement's flow split evenly over its lanes), its saturation flow HCM's base flow adjusted
  for lane width and for its mix of turns;
- a lane discharges in a phase at its saturation flow where all its used links show ``G``, at
  the rate gap acceptance allows through the opposing ``G`` streams where one shows a
  permissive ``g``, and not at all where one is red (the first vehicle blocks the lane);
- the *green phases* (no yellow, at least one green) are the decision variables; yellow phases
  take ITE's change interval from the approach speed, and the program's all-red phases ITE's
  red clearance from the junction's width (with ``Limits.all_red``, one is also inserted after
  each yellow that has none). Their sum is the lost time; the effective green of a phase is its displayed green
  (start-up loss and the used yellow cancel, as in HCM's defaults).

The search: Webster's cycle as the start; for each cycle between the limits (a coarse pass,
then every second around the best), greens start in proportion to the critical flow ratios
and whole seconds move between phases while total delay falls (the cycles of a pass descend
together, their trial moves' delays computed in one array). Every step either lowers the
delay or ends the loop, and the number of steps is bounded, so a saturated junction ends like
any other: at the longest cycle the limits allow, flagged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from civicloud.traffic import timing
from civicloud.traffic.errors import InvalidTimingLimits
from civicloud.traffic.network import GREEN, YELLOW, Link, Phase, Signal

#: A movement: (from edge, to edge).
Movement = tuple[str, str]

#: The longest cycle a plan may have (controllers and SUMO's tools cap near here).
LONGEST_CYCLE_S = 300.0


#: What coordinated offsets may be set for.
OFFSET_OBJECTIVES = ("delay", "bandwidth")


@dataclass(frozen=True)
class Limits:
    """The engineer's constraints on a plan."""

    min_cycle: float = 60.0
    max_cycle: float = 150.0
    min_green: float = 5.0
    #: Insert an all-red phase after each yellow that has none. Off by default: the network's
    #: phase structure is kept, and the all-red phases it has are re-timed to ITE's clearance.
    all_red: bool = False
    #: HCM's analysis period for the incremental delay, hours.
    period_h: float = timing.ANALYSIS_PERIOD_H
    #: How coordinated signals' offsets are set: for the least delay (the platoon model), or
    #: for the widest progression bands along corridors (``bandwidth``, MAXBAND-style).
    offsets: str = "delay"

    def __post_init__(self) -> None:
        values = {
            "min_cycle": f"{self.min_cycle:g}",
            "max_cycle": f"{self.max_cycle:g}",
            "min_green": f"{self.min_green:g}",
        }
        if not all(math.isfinite(v) for v in (self.min_cycle, self.max_cycle, self.min_green)):
            raise InvalidTimingLimits("Timing limits must be finite numbers.")
        if self.min_green <= 0:
            raise InvalidTimingLimits(
                "The minimum green must be positive (given %(min_green)s s).", params=values
            )
        if self.min_cycle <= 0 or self.max_cycle <= 0:
            raise InvalidTimingLimits(
                "Cycles must be positive (given %(min_cycle)s s to %(max_cycle)s s).",
                params=values,
            )
        if self.min_cycle > self.max_cycle:
            raise InvalidTimingLimits(
                "The minimum cycle (%(min_cycle)s s) exceeds the maximum cycle (%(max_cycle)s s).",
                params=values,
            )
        if self.max_cycle > LONGEST_CYCLE_S:
            raise InvalidTimingLimits(
                "The maximum cycle (%(max_cycle)s s) exceeds 300 s.", params=values
            )
        if not 0 < self.period_h <= 4:
            raise InvalidTimingLimits("The analysis period must be between 0 and 4 hours.")
        if self.offsets not in OFFSET_OBJECTIVES:
            raise InvalidTimingLimits("Offsets are set for delay or for bandwidth.")


@dataclass(frozen=True)
class LaneResult:
    edge: str
    lane: int
    flow_vph: float
    saturation_vph: float
    green_ratio: float
    capacity_vph: float
    x: float
    delay_s: float
    los: str


@dataclass(frozen=True)
class SignalPlan:
    signal_id: str
    cycle: float
    offset: float
    phases: tuple[Phase, ...]
    #: Which of ``phases`` are the timed greens (the rest are yellow and all-red).
    green_phases: tuple[int, ...]
    #: Volume-weighted mean control delay, s/veh, and its level of service.
    delay_s: float
    los: str
    #: Total delay, vehicle-hours per hour of demand.
    total_delay_vehh: float
    critical_ratio_sum: float
    webster_cycle: float | None
    lost_time_s: float
    lanes: tuple[LaneResult, ...]
    #: Flags: "saturated" (a lane over capacity even at the best plan), "no_demand", and
    #: "unserved" (a counted movement no green phase serves).
    flags: tuple[str, ...] = ()
    flow_vph: float = 0.0

    @property
    def splits(self) -> tuple[float, ...]:
        return tuple(self.phases[i].duration for i in self.green_phases)


@dataclass
class _Lane:
    edge: str
    lane: int
    flow: float
    saturation: float
    #: Discharge factor in each phase of the template (0 red, 1 saturated, between: permissive).
    factors: list[float] = field(default_factory=list)


@dataclass
class _Model:
    signal: Signal
    states: list[str]
    #: For each phase: None for a green (a variable), else its fixed duration.
    fixed: list[float | None]
    lanes: list[_Lane]
    limits: Limits
    unserved: list[Movement]
    _arrays: tuple[Any, Any, Any] | None = None

    @property
    def greens(self) -> list[int]:
        return [i for i, d in enumerate(self.fixed) if d is None]

    @property
    def lost_time(self) -> float:
        return sum(d for d in self.fixed if d is not None)

    def durations(self, greens: Sequence[float]) -> list[float]:
        it = iter(greens)
        return [next(it) if d is None else d for d in self.fixed]

    def total_delay(self, greens: Sequence[float]) -> float:
        """Vehicle-seconds of delay per hour (HCM's d1 + d2 of every lane group, vectorised)."""
        return float(self.total_delays(np.asarray([self.durations(greens)], dtype=float))[0])

    def total_delays(self, durations: Any) -> Any:
        """``total_delay`` of each row of ``durations`` (plans x phases), at once."""
        if self._arrays is None:
            self._arrays = _arrays(self)
        factors, flow, saturation = self._arrays
        if flow.size == 0:
            return np.zeros(durations.shape[0])
        cycle = durations.sum(axis=1)[:, None]
        ratio = np.clip(durations @ factors.T / cycle, 0.0, 1.0)
        capacity = saturation * ratio
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            x = np.where(capacity > 0, flow / capacity, np.inf)
            denominator = 1.0 - np.minimum(x, 1.0) * ratio
            d1 = np.where(denominator > 0, 0.5 * cycle * (1.0 - ratio) ** 2 / denominator, 0.0)
            t = self.limits.period_h
            term = (x - 1.0) ** 2 + 8.0 * timing.K_PRETIMED * timing.UPSTREAM_FILTERING * x / (
                capacity * t
            )
            d2 = 900.0 * t * ((x - 1.0) + np.sqrt(term))
            delay = np.where(capacity > 0, np.minimum(d1 + d2, _DELAY_CAP_S), _DELAY_CAP_S)
        return delay @ flow

    def critical_ratios(self) -> list[float]:
        greens = self.greens
        ratios = [0.0] * len(greens)
        for lane in self.lanes:
            if lane.flow <= 0 or lane.saturation <= 0:
                continue
            served = [lane.factors[i] for i in greens]
            weight = sum(served)
            if weight <= 0:
                continue
            y = lane.flow / lane.saturation
            for k, f in enumerate(served):
                ratios[k] = max(ratios[k], y * f / weight)
        return ratios


def _arrays(model: _Model) -> tuple[Any, Any, Any]:
    """The lanes with demand as arrays: factors (lanes x phases), flows and saturation flows."""
    used = [lane for lane in model.lanes if lane.flow > 0]
    factors = np.array([lane.factors for lane in used], dtype=float).reshape(
        len(used), len(model.fixed)
    )
    flow = np.array([lane.flow for lane in used], dtype=float)
    saturation = np.array([lane.saturation for lane in used], dtype=float)
    return factors, flow, saturation


#: A delay no lane group is charged more than (an unserved movement would be infinite): the
#: whole analysis period's worth, so that one unserved lane cannot hide all other differences.
_DELAY_CAP_S = 3600.0


def transition_states(signal: Signal, limits: Limits) -> tuple[list[str], list[float | None]]:
    """The program's phases with all-red phases after yellows, and fixed durations."""
    phases = list(signal.program.phases)
    states: list[str] = []
    fixed: list[float | None] = []
    speed = {link.index: link.approach_speed for link in signal.links}
    for i, phase in enumerate(phases):
        nxt = phases[(i + 1) % len(phases)]
        if any(c in YELLOW for c in phase.state):
            ending = [j for j, c in enumerate(phase.state) if c in YELLOW]
            v = max((speed.get(j, 13.89) for j in ending), default=13.89)
            states.append(phase.state)
            fixed.append(timing.yellow_time(v))
            if limits.all_red and not _is_all_red_after(phase.state, nxt.state):
                red = timing.all_red_time(signal.width, min(speed.get(j, 13.89) for j in ending))
                if red > 0:
                    states.append(_to_red(phase.state))
                    fixed.append(red)
        elif not any(c in GREEN for c in phase.state) or _is_all_red_after(
            phases[i - 1].state, phase.state
        ):
            if any(c in YELLOW for c in phases[i - 1].state):
                ending = [j for j, c in enumerate(phases[i - 1].state) if c in YELLOW]
                v = min((speed.get(j, 13.89) for j in ending), default=13.89)
                states.append(phase.state)
                fixed.append(max(timing.all_red_time(signal.width, v), 1.0))
            else:  # an all-red phase of its own (a pedestrian scramble's clearance, say)
                states.append(phase.state)
                fixed.append(phase.duration)
        else:
            states.append(phase.state)
            fixed.append(None)
    return states, fixed


def _to_red(state: str) -> str:
    return "".join("r" if c in YELLOW else c for c in state)


def _is_all_red_after(yellow: str, candidate: str) -> bool:
    """``candidate`` is the red clearance of ``yellow``: the yellows turn red, every other link
    keeps its letter or turns red, and no green starts or becomes protected."""
    if not any(c in YELLOW for c in yellow) or len(yellow) != len(candidate):
        return False
    for y, c in zip(yellow, candidate, strict=True):
        if y in YELLOW:
            if c not in "rs":
                return False
        elif c in GREEN and c != y:
            return False
    return True


#: A pedestrian's walk interval and walking speed (HCM: 7 s of walk, 1.2 m/s, i.e. 4 ft/s).
WALK_S = 7.0
PEDESTRIAN_SPEED = 1.2


def _runs(members: Sequence[int], n: int) -> list[list[int]]:
    """The runs of consecutive phase indices among ``members`` (the cycle wraps round)."""
    chosen = set(members)
    if len(chosen) == n:
        return [list(range(n))]
    runs: list[list[int]] = []
    for start in sorted(chosen):
        if (start - 1) % n in chosen:
            continue
        run = [start]
        while (run[-1] + 1) % n in chosen:
            run.append((run[-1] + 1) % n)
        runs.append(run)
    return runs


def pedestrian_minimums(
    signal: Signal, states: Sequence[str], fixed: Sequence[float | None], min_green: float
) -> list[float]:
    """Each green phase's least duration: the engineer's minimum, and what the signal's
    crossings need: ``WALK_S`` of walk in the last green phase that shows the crossing green,
    and, before any link starts (turns green, or from permissive to priority green), the
    crossing's length at ``PEDESTRIAN_SPEED`` to clear it (the yellow and all-red after the walk count; a vehicle green that goes on after
    the crossing turned red takes the rest, or else the walk phase does)."""
    n = len(states)
    least = {i: float(math.ceil(min_green)) for i, d in enumerate(fixed) if d is None}
    for crossing in signal.crossings:
        walking = [i for i in range(n) if states[i][crossing.index] in GREEN]
        for run in _runs(walking, n) if walking else []:
            last = run[-1]
            window: list[int] = []
            j = (last + 1) % n
            while j not in run and len(window) < n:
                state = states[j]
                # A link starts where it turns green, or from permissive to priority green
                # (a protected turn no longer yields to the crossing).
                starts = any(
                    (c in GREEN and states[last][k] not in GREEN)
                    or (c == "G" and states[last][k] == "g")
                    for k, c in enumerate(state)
                )
                if state[crossing.index] in GREEN or starts:
                    break
                window.append(j)
                j = (j + 1) % n
            clearance = crossing.length / PEDESTRIAN_SPEED
            clearance -= sum(fixed[i] or 0.0 for i in window if fixed[i] is not None)
            later = [i for i in window if fixed[i] is None]
            if later and clearance > 0:
                least[later[0]] = max(least[later[0]], float(math.ceil(clearance)))
                clearance = 0.0
            walk = [i for i in run if fixed[i] is None]
            if walk:
                need = WALK_S + max(clearance, 0.0)
                least[walk[-1]] = max(least[walk[-1]], float(math.ceil(need)))
    return [least[i] for i in sorted(least)]


def build_model(signal: Signal, demand: Mapping[Movement, float], limits: Limits) -> _Model:
    states, fixed = transition_states(signal, limits)
    movements = signal.movements()
    link_flow: dict[int, float] = {}
    unserved: list[Movement] = []
    lanes: dict[tuple[str, int], list[tuple[Link, float]]] = {}
    for movement, links in movements.items():
        flow = max(float(demand.get(movement, 0.0)), 0.0)
        share = flow / len(links)
        for link in links:
            lanes.setdefault((link.from_edge, link.from_lane), []).append((link, share))
            link_flow[link.index] = link_flow.get(link.index, 0.0) + share
        if flow > 0 and not any(any(s[link.index] in GREEN for s in states) for link in links):
            unserved.append(movement)
    # The rate opposing streams arrive at during their green, from the network's own program.
    program = signal.program
    cycle0 = program.cycle or 1.0
    green_share = {
        link.index: max(
            sum(p.duration for p in program.phases if p.state[link.index] == "G") / cycle0,
            0.2,
        )
        for link in signal.links
    }
    model_lanes: list[_Lane] = []
    for (edge, lane_index), members in sorted(lanes.items()):
        flow = sum(share for _, share in members)
        width = members[0][0].lane_width
        saturation = timing.saturation_flow(width, [(share, link.dir) for link, share in members])
        used = [link for link, share in members if share > 0] or [link for link, _ in members]
        factors = []
        for state in states:
            factor = 1.0
            for link in used:
                c = state[link.index]
                if c == "G":
                    continue
                if c == "g":
                    opposing = sum(
                        link_flow.get(j, 0.0) / green_share.get(j, 1.0)
                        for j in range(len(state))
                        if state[j] == "G" and signal.conflict(link.index, j)
                    )
                    factor = min(factor, timing.permissive_capacity(opposing) / saturation)
                else:
                    factor = 0.0
            factors.append(min(factor, 1.0))
        model_lanes.append(_Lane(edge, lane_index, flow, saturation, factors))
    return _Model(signal, states, fixed, model_lanes, limits, unserved)


def plan_signal(
    signal: Signal, demand: Mapping[Movement, float], limits: Limits | None = None
) -> SignalPlan:
    """The fixed-time plan of least HCM control delay for the demand (veh/h per movement)."""
    limits = limits or Limits()
    model = build_model(signal, demand, limits)
    greens_at = model.greens
    n = len(greens_at)
    lost = model.lost_time
    ratios = model.critical_ratios()
    webster = timing.webster_cycle(lost, ratios)
    least = pedestrian_minimums(signal, model.states, model.fixed, limits.min_green)
    min_cycle = max(limits.min_cycle, lost + sum(least))
    max_cycle = max(limits.max_cycle, min_cycle)
    flow = sum(lane.flow for lane in model.lanes)
    if n == 0:
        durations = model.durations([])
        return _result(model, durations, webster, ratios, flags=("no_green_phase",))
    if flow <= 0:
        cycle = math.ceil(min_cycle)
        greens = _spread(cycle - lost, [1.0] * n, least)
        return _result(model, model.durations(greens), webster, ratios, flags=("no_demand",))

    cache: dict[int, tuple[float, list[float]]] = {}

    def solve(cycles: Sequence[int]) -> None:
        """Each cycle's greens by descent from Webster's split, all cycles at once."""
        fresh = sorted(set(cycles) - set(cache))
        if not fresh:
            return
        starts = [_spread(cycle - lost, ratios, least) for cycle in fresh]
        greens, delays = _descend(model, np.asarray(starts, dtype=float), least)
        for k, cycle in enumerate(fresh):
            cache[cycle] = (float(delays[k]), [float(g) for g in greens[k]])

    low, high = math.ceil(min_cycle), math.floor(max_cycle)
    high = max(high, low)
    step = 5 if high - low > 20 else 1
    candidates = list(range(low, high + 1, step))
    if candidates[-1] != high:
        candidates.append(high)
    if webster is not None:
        candidates.append(min(max(round(webster), low), high))
    solve(candidates)
    best = min(candidates, key=lambda c: (cache[c][0], c))
    solve(range(max(low, best - step + 1), min(high, best + step - 1) + 1))
    best = min(cache, key=lambda c: (cache[c][0], c))
    durations = model.durations(cache[best][1])
    return _result(model, durations, webster, ratios)


def evaluate_program(
    signal: Signal, demand: Mapping[Movement, float], phases: Sequence[Phase] | None = None
) -> SignalPlan:
    """The HCM figures of a given program (the network's own by default) under the demand."""
    phases = tuple(phases or signal.program.phases)
    limits = Limits(all_red=False, min_cycle=1.0, max_cycle=LONGEST_CYCLE_S)
    fake = Signal(
        id=signal.id,
        links=signal.links,
        programs={"eval": signal.program.__class__("eval", "static", 0.0, phases)},
        program_id="eval",
        foes=signal.foes,
        junctions=signal.junctions,
        x=signal.x,
        y=signal.y,
        width=signal.width,
    )
    model = build_model(fake, demand, limits)
    model.states = [p.state for p in phases]
    model.fixed = [None if not p.is_transition else float(p.duration) for p in phases]
    greens = [float(phases[i].duration) for i in model.greens]
    ratios = model.critical_ratios()
    webster = timing.webster_cycle(model.lost_time, ratios)
    return _result(model, model.durations(greens), webster, ratios)


def _spread(available: float, weights: Sequence[float], least: Sequence[float]) -> list[float]:
    """Greens that add up to ``available`` exactly, each at least its ``least``, the rest in
    proportion to ``weights``: whole seconds, and the fraction ``available`` has (a lost time
    of 10.5 s leaves 79.5 s in a 90 s cycle) on the biggest share, so that every plan's cycle is
    the cycle it was timed for and coordinated signals keep one cycle."""
    n = len(weights)
    base = [math.ceil(m) for m in least]
    whole = math.floor(available + 1e-9)
    fraction = max(available - whole, 0.0) if whole >= sum(base) else 0.0
    spare = max(whole - sum(base), 0)
    total = sum(weights)
    shares = [w / total for w in weights] if total > 0 else [1.0 / n] * n
    greens = [b + math.floor(spare * s) for b, s in zip(base, shares, strict=True)]
    leftover = spare - sum(g - b for g, b in zip(greens, base, strict=True))
    order = sorted(range(n), key=lambda k: -(spare * shares[k] - math.floor(spare * shares[k])))
    for k in order[:leftover]:
        greens[k] += 1
    result = [float(g) for g in greens]
    if fraction > 0:
        result[max(range(n), key=lambda k: shares[k])] += fraction
    return result


def _descend(model: _Model, starts: Any, least: Sequence[float]) -> tuple[Any, Any]:
    """Move whole seconds between greens while the total delay falls (steps 8, 4, 2, 1 s),
    from each row of ``starts`` (one per cycle) at once: in each round every row takes the
    move that lowers its delay most, until no move lowers any. Returns the greens and their
    total delays."""
    current = np.array(starts, dtype=float)
    rows, n = current.shape
    if rows == 0:
        return current, np.zeros(0)
    fixed = np.asarray([d if d is not None else 0.0 for d in model.fixed], dtype=float)
    at = np.asarray(model.greens, dtype=np.int64)

    def delays(greens: Any) -> Any:
        durations = np.broadcast_to(fixed, (*greens.shape[:-1], len(fixed))).copy()
        durations[..., at] = greens
        flat = durations.reshape(-1, len(fixed))
        return model.total_delays(flat).reshape(greens.shape[:-1])

    value = delays(current)
    if n < 2:
        return current, value
    floor = np.asarray([math.ceil(m) for m in least], dtype=float)
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
    moves = np.zeros((len(pairs), n))
    for k, (a, b) in enumerate(pairs):
        moves[k, a] -= 1.0
        moves[k, b] += 1.0
    losing = np.asarray([a for a, _ in pairs], dtype=np.int64)
    for step in (8.0, 4.0, 2.0, 1.0):
        active = np.arange(rows)
        for _ in range(200):  # bounded: each round lowers the delay of a row or stops it
            if active.size == 0:
                break
            trials = current[active][:, None, :] + step * moves[None, :, :]
            allowed = current[active][:, losing] - step >= floor[losing]
            found = np.where(allowed, delays(trials), np.inf)
            choice = np.argmin(found, axis=1)  # the first (in order of the pairs) on ties
            best = found[np.arange(active.size), choice]
            better = best < value[active] - 1e-9
            chosen = active[better]
            current[chosen] = trials[better, choice[better]]
            value[chosen] = best[better]
            active = chosen
    return current, value


def _result(
    model: _Model,
    durations: Sequence[float],
    webster: float | None,
    ratios: Sequence[float],
    flags: Sequence[str] = (),
) -> SignalPlan:
    cycle = sum(durations)
    lanes: list[LaneResult] = []
    total = 0.0
    flow_sum = 0.0
    saturated = False
    for lane in model.lanes:
        green = sum(f * d for f, d in zip(lane.factors, durations, strict=True))
        ratio = green / cycle if cycle > 0 else 0.0
        d, x, capacity = timing.control_delay(
            lane.flow, lane.saturation, cycle, ratio, model.limits.period_h
        )
        if lane.flow > 0:
            total += lane.flow * min(d, _DELAY_CAP_S)
            flow_sum += lane.flow
            saturated = saturated or x > 1.0
        lanes.append(
            LaneResult(
                edge=lane.edge,
                lane=lane.lane,
                flow_vph=lane.flow,
                saturation_vph=lane.saturation,
                green_ratio=ratio,
                capacity_vph=capacity,
                x=x if math.isfinite(x) else 99.0,
                delay_s=min(d, _DELAY_CAP_S),
                los=timing.level_of_service(d, x) if lane.flow > 0 else "-",
            )
        )
    mean = total / flow_sum if flow_sum > 0 else 0.0
    all_flags = list(flags)
    if saturated:
        all_flags.append("saturated")
    if model.unserved:
        all_flags.append("unserved")
    phases = tuple(
        Phase(duration=float(d), state=s) for s, d in zip(model.states, durations, strict=True)
    )
    return SignalPlan(
        signal_id=model.signal.id,
        cycle=float(cycle),
        offset=0.0,
        phases=phases,
        green_phases=tuple(model.greens),
        delay_s=mean,
        los=timing.level_of_service(mean, None) if flow_sum > 0 else "-",
        total_delay_vehh=total / 3600.0,
        critical_ratio_sum=sum(ratios),
        webster_cycle=webster,
        lost_time_s=model.lost_time,
        lanes=tuple(lanes),
        flags=tuple(dict.fromkeys(all_flags)),
        flow_vph=flow_sum,
    )


def conflicting_greens(signal: Signal, phases: Sequence[Phase]) -> list[tuple[int, int, int]]:
    """(phase, link, link) wherever two conflicting links both show a priority ``G``, or a link
    shows a permissive ``g`` that no program of the network gives it."""
    permissive = {
        i
        for program in signal.programs.values()
        for phase in program.phases
        for i, c in enumerate(phase.state)
        if c == "g"
    }
    found: list[tuple[int, int, int]] = []
    for k, phase in enumerate(phases):
        priority = [i for i, c in enumerate(phase.state) if c == "G"]
        for a_pos, a in enumerate(priority):
            for b in priority[a_pos + 1 :]:
                if signal.conflict(a, b):
                    found.append((k, a, b))
        for i, c in enumerate(phase.state):
            if c == "g" and i not in permissive:
                found.append((k, i, i))
    return found
