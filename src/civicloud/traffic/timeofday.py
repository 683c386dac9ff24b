"""Time-of-day plans: the day's intervals grouped into a few periods of similar demand, a plan
for each, and the schedule that switches between them.

- **The day's profile.** Every count is spread evenly over its interval and folded onto one
  day (its time of day: seconds, or an ISO timestamp read in the file's own zone), on a grid of
  the counts' interval (15 minutes at the finest, an hour at the coarsest). Per signal and
  movement, a bin's flow is the vehicles counted in it over the seconds counted in it, veh/h:
  the mean over the days counted. A movement not counted in a bin that others were counted in
  takes its own mean over the day, so that a missing detector does not look like a change of
  demand.
- **Periods.** The bins' demand vectors (every movement of every signal), scaled by the
  busiest bin's network total, are cut into contiguous periods by dynamic programming over the
  bin boundaries: the cut of least within-period squared deviation, exactly, for each number of
  periods up to ``max_periods``, each at least ``min_period_s`` long. The day is a circle: a
  period may run over midnight (the night's quiet hours are one period, not two). The fewest
  periods that come within 5 % (of the one-period deviation) of the best of the most periods
  are taken. Bins without counts cost nothing, so hours not counted fall into a neighbouring
  period, but every period holds at least one counted bin. Ties go to a cut at midnight, then
  to the earliest boundaries, so the cut is deterministic.
- **Design demand.** Each period's design demand is the busiest hour of its counts
  (:func:`~civicloud.traffic.counts.design_demand` over the counts that begin in it, on any day
  counted): a plan timed for the period's peak, as the single plan is timed for the day's.
- **Plans.** Each period is planned like a single plan (:func:`service.plan_network`:
  neighbours coordinated), and the network's own program is evaluated under the same demand.

Everything is bounded: the profile is linear in the rows (plus movements times bins), the cut
is cubic in the at most 96 bins, and at most 8 periods are planned.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from civicloud.traffic import countstore, service
from civicloud.traffic.counts import (
    Count,
    CountsReport,
    design_demand,
    read_counts,
    require_clean,
    zone_offset_s,
)
from civicloud.traffic.errors import TrafficInvalidInput
from civicloud.traffic.network import Network, read_network
from civicloud.traffic.optimize import Limits, SignalPlan, evaluate_program

DAY_S = 86400
#: The profile's bins: the counts' interval, rounded down to one of these (each divides a day).
BIN_SIZES_S = (900, 1200, 1800, 3600)
#: The most periods a day is cut into.
MAX_PERIODS = 8
DEFAULT_PERIODS = 4
#: The shortest period: a controller's plan should run long enough to settle.
MIN_PERIOD_S = 3600
#: One more period is taken only if it lowers the deviation by this share of the one-period
#: deviation (against the best that ``max_periods`` achieve).
TOLERANCE = 0.05

#: (signal, from edge, to edge).
Key = tuple[str, str, str]
Array = NDArray[np.float64]


@dataclass(frozen=True)
class Period:
    """A time range of the day from ``start_s`` to ``end_s``, seconds after midnight.

    ``end_s`` is at most 86400 (24:00); a period over midnight (22:00 to 06:00) has an
    ``end_s`` before its ``start_s``."""

    #: 1 for the period that starts first after midnight, then in order of their starts.
    index: int
    start_s: int
    end_s: int

    @property
    def name(self) -> str:
        return f"p{self.index}"

    @property
    def start(self) -> str:
        return clock(self.start_s)

    @property
    def end(self) -> str:
        return clock(self.end_s)

    @property
    def wraps(self) -> bool:
        """The period runs over midnight."""
        return self.end_s <= self.start_s

    @property
    def length_s(self) -> int:
        return self.end_s - self.start_s + (DAY_S if self.wraps else 0)

    def __contains__(self, second_of_day: float) -> bool:
        if self.wraps:
            return second_of_day >= self.start_s or second_of_day < self.end_s
        return self.start_s <= second_of_day < self.end_s


def clock(second_of_day: float) -> str:
    """``HH:MM`` (24:00 for the end of the day)."""
    minutes = round(second_of_day / 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class DayProfile:
    """Demand per bin of the day and movement, veh/h (the mean over the days counted)."""

    step_s: int
    keys: tuple[Key, ...]
    #: bins x keys, veh/h; NaN where the movement was not counted in the bin.
    flows: Array
    #: Seconds counted per bin and key (over every day).
    observed: Array

    @property
    def bins(self) -> int:
        return DAY_S // self.step_s

    @property
    def counted(self) -> NDArray[np.bool_]:
        """The bins in which anything was counted."""
        result: NDArray[np.bool_] = self.observed.sum(axis=1) > 0
        return result


def second_of_day(count: Count, zone_offset_s: float = 0.0) -> float:
    """When the count's interval begins, in seconds after (local) midnight."""
    return (count.begin + zone_offset_s) % DAY_S


def _bin_size(counts: Sequence[Count]) -> int:
    typical = statistics.median_low(c.end - c.begin for c in counts)
    fitting = [size for size in BIN_SIZES_S if size <= typical + 1e-6]
    return max(fitting) if fitting else BIN_SIZES_S[0]


def day_profile(counts: Iterable[Count], *, zone_offset_s: float = 0.0) -> DayProfile:
    """The day's demand profile of ``counts`` (see the module's docstring)."""
    # In one order whatever the file's, so that the sums (and so the cut) are the same.
    items = sorted(counts, key=lambda c: (c.tls_id, c.from_edge, c.to_edge, c.begin, c.end))
    if not items:
        raise TrafficInvalidInput("There are no counts to make time-of-day plans from.")
    step = _bin_size(items)
    bins = DAY_S // step
    keys = tuple(sorted({(c.tls_id, c.from_edge, c.to_edge) for c in items}))
    where = {key: k for k, key in enumerate(keys)}
    index = np.fromiter((where[(c.tls_id, c.from_edge, c.to_edge)] for c in items), np.int64)
    begin = np.fromiter(((c.begin + zone_offset_s) % DAY_S for c in items), np.float64)
    duration = np.fromiter((c.end - c.begin for c in items), np.float64)
    rate = np.fromiter((c.count for c in items), np.float64) / duration
    # An interval past midnight goes on at the day's beginning (none is longer than a day).
    end = begin + duration
    wraps = end > DAY_S
    pieces = (
        np.concatenate([index, index[wraps]]),
        np.concatenate([begin, np.zeros(int(wraps.sum()))]),
        np.concatenate([np.minimum(end, DAY_S), end[wraps] - DAY_S]),
        np.concatenate([rate, rate[wraps]]),
    )
    vehicles = _binned(*pieces, keys=len(keys), bins=bins, step=step)
    observed = _binned(*pieces[:3], np.ones_like(pieces[3]), keys=len(keys), bins=bins, step=step)
    with np.errstate(divide="ignore", invalid="ignore"):
        flows = np.where(observed > 1e-9, vehicles / observed * 3600.0, np.nan)
    return DayProfile(step, keys, flows, observed)


def _binned(
    key: NDArray[np.int64],
    start: Array,
    stop: Array,
    rate: Array,
    *,
    keys: int,
    bins: int,
    step: int,
) -> Array:
    """bins x keys: the integral of each piece's ``rate`` over ``[start, stop)`` in every bin.

    A piece's running total is ``rate * (clip(t, start, stop) - start)``: a ramp that starts at
    ``start`` and one with the opposite slope that starts at ``stop``. At the grid points a ramp
    is a slope and an intercept from the first grid point on, so the whole sum is two
    cumulative sums, linear in the pieces."""
    slope = np.zeros((keys, bins + 2))
    intercept = np.zeros((keys, bins + 2))
    for at, sign in ((start, 1.0), (stop, -1.0)):
        first = np.ceil(at / step).astype(np.int64)
        np.add.at(slope, (key, first), sign * rate)
        np.add.at(intercept, (key, first), -sign * rate * at)
    grid = np.arange(bins + 2, dtype=np.float64) * step
    total = np.cumsum(slope, axis=1) * grid + np.cumsum(intercept, axis=1)
    result: Array = np.diff(total[:, : bins + 1], axis=1).T
    return result


def _features(profile: DayProfile) -> Array:
    """The bins' demand vectors, missing values filled, scaled by the busiest bin's total."""
    flows = profile.flows.copy()
    counted = profile.counted
    for k in range(flows.shape[1]):
        column = flows[:, k]
        missing = np.isnan(column)
        column[missing & counted] = float(np.nanmean(column))
        column[missing & ~counted] = 0.0
    peak = float(flows.sum(axis=1).max()) if flows.size else 0.0
    return flows / peak if peak > 0 else flows


def choose_periods(
    profile: DayProfile,
    *,
    max_periods: int = DEFAULT_PERIODS,
    min_period_s: int = MIN_PERIOD_S,
) -> list[Period]:
    """The day cut into at most ``max_periods`` contiguous periods of similar demand, in order
    of their starts (one of them may run over midnight)."""
    check_settings(max_periods, min_period_s)
    counted = profile.counted
    if int(counted.sum()) < 2:
        raise TrafficInvalidInput(
            "Time-of-day plans need counts in at least two intervals of the day; "
            "these counts cover one."
        )
    step = profile.step_s
    n = profile.bins
    bounds = cut(
        _features(profile),
        counted,
        max_periods=max_periods,
        min_bins=max(math.ceil(min_period_s / step), 1),
    )
    starts = sorted(b % n for b in bounds[:-1])
    ends = [*starts[1:], starts[0] + n]
    return [
        Period(k + 1, a * step, (b - 1) % n * step + step)
        for k, (a, b) in enumerate(zip(starts, ends, strict=True))
    ]


def check_settings(max_periods: int, min_period_s: int) -> None:
    if not 1 <= max_periods <= MAX_PERIODS:
        raise TrafficInvalidInput(
            "The number of periods must be from 1 to %(limit)s (given %(periods)s).",
            params={"limit": MAX_PERIODS, "periods": max_periods},
        )
    if not BIN_SIZES_S[0] <= min_period_s <= DAY_S:
        raise TrafficInvalidInput(
            "The shortest period must be from 15 minutes to 24 hours (given %(minutes)s minutes).",
            params={"minutes": f"{min_period_s / 60:g}"},
        )


def cut(
    features: Array, counted: NDArray[np.bool_], *, max_periods: int, min_bins: int
) -> list[int]:
    """Boundaries ``[r, ..., r + n]`` (bin indices, modulo ``n``) of the day as a circle, cut
    into periods of the least within-period squared deviation.

    Only counted bins are measured; every period is at least ``min_bins`` long and holds a
    counted bin. Exact: dynamic programming over the boundaries for each first boundary ``r``
    (the day doubled, so that a period may run over midnight), O(max_periods n³) in all. Ties
    go to the smallest ``r`` (midnight first), then to the earliest boundaries."""
    n = features.shape[0]
    weight = np.tile(counted.astype(np.float64), 2)
    x = np.vstack([features, features]) * weight[:, None]
    sums = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])  # (2n + 1) x keys
    squares = np.concatenate([[0.0], np.cumsum((x * x).sum(axis=1))])
    counts = np.concatenate([[0.0], np.cumsum(weight)])
    gram = sums @ sums.T
    diagonal = np.diag(gram)
    # cost[i, j]: the squared deviation of bins i..j-1 from their mean (inf where not allowed).
    members = counts[None, :] - counts[:, None]
    spread = diagonal[None, :] + diagonal[:, None] - 2.0 * gram
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = squares[None, :] - squares[:, None] - spread / members
    length = np.arange(2 * n + 1)[None, :] - np.arange(2 * n + 1)[:, None]
    allowed = (length >= min_bins) & (length <= n) & (members > 0.5)
    cost = np.where(allowed, np.maximum(cost, 0.0), np.inf)
    # best[r][k]: the least cost of the circle in k periods from boundary r; paths to rebuild.
    best = np.full((n, max_periods + 1), np.inf)
    back: dict[tuple[int, int], list[int]] = {}
    for r in range(n):
        local = cost[r : r + n + 1, r : r + n + 1]
        reach = np.full(n + 1, np.inf)
        reach[0] = 0.0
        steps: list[NDArray[np.int64]] = []
        for k in range(1, max_periods + 1):
            total = reach[:, None] + local  # total[i, j]: the last period is i..j-1
            steps.append(np.argmin(total, axis=0))  # the first (earliest) minimum on ties
            reach = total.min(axis=0)
            best[r, k] = reach[n]
            if math.isfinite(reach[n]):
                bounds = [n]
                for previous in reversed(steps):
                    bounds.append(int(previous[bounds[-1]]))
                back[(r, k)] = [r + b for b in reversed(bounds)]
    feasible = [k for k in range(1, max_periods + 1) if math.isfinite(best[:, k].min())]
    if not feasible:
        return [0, n]
    least = {k: float(best[:, k].min()) for k in feasible}
    target = min(least.values()) + TOLERANCE * least[feasible[0]] + 1e-12
    periods = next(k for k in feasible if least[k] <= target)
    # The first rotation within rounding of the least: midnight when it ties (as one period
    # from any boundary is the same day).
    scores = best[:, periods]
    rotation = int(np.flatnonzero(scores <= least[periods] * (1 + 1e-9) + 1e-12)[0])
    return back[(rotation, periods)]


@dataclass(frozen=True)
class PeriodPlan:
    period: Period
    #: The period's design demand, veh/h per movement by signal.
    demand: dict[str, dict[tuple[str, str], float]]
    plans: tuple[SignalPlan, ...]
    #: The network's own programs under the same demand.
    before: tuple[SignalPlan, ...]


@dataclass(frozen=True)
class TimeOfDay:
    network: Network
    report: CountsReport
    step_s: int
    periods: tuple[PeriodPlan, ...]


def plan_time_of_day(
    network: Network,
    report: CountsReport,
    limits: Limits,
    *,
    max_periods: int = DEFAULT_PERIODS,
    min_period_s: int = MIN_PERIOD_S,
    zone_offset_s: float = 0.0,
) -> TimeOfDay:
    """The day cut into periods of similar demand, each planned for its busiest hour."""
    require_clean(report)
    check_settings(max_periods, min_period_s)
    profile = day_profile(report.accepted, zone_offset_s=zone_offset_s)
    periods = choose_periods(profile, max_periods=max_periods, min_period_s=min_period_s)
    planned: list[PeriodPlan] = []
    for period in periods:
        inside = [c for c in report.accepted if second_of_day(c, zone_offset_s) in period]
        demand = design_demand(inside)
        plans = service.plan_network(network, demand, limits)
        before = [
            evaluate_program(signal, demand.get(signal_id, {}))
            for signal_id, signal in network.signals.items()
        ]
        planned.append(PeriodPlan(period, demand, tuple(plans), tuple(before)))
    return TimeOfDay(network, report, profile.step_s, tuple(planned))


def plan_files(
    net: Path, counts: Path, limits: Limits, *, max_periods: int = DEFAULT_PERIODS
) -> TimeOfDay:
    """Time-of-day plans for a network file and its counts (ISO times read in their zone)."""
    check_settings(max_periods, MIN_PERIOD_S)
    network = read_network(net)
    content = counts.read_bytes()
    report = require_clean(read_counts(content, network))
    zone = zone_offset_s(content) if report.absolute_times else 0.0
    return plan_time_of_day(network, report, limits, max_periods=max_periods, zone_offset_s=zone)


def profile_of_slots(rows: Iterable[countstore.ProfileRow]) -> DayProfile:
    """The day's profile from a kept-counts profile (``countstore.profile``: per movement and
    15-minute slot, the vehicles and the days counted), as ``day_profile`` makes it from rows."""
    table = countstore.Profile.of_rows(rows)
    if not len(table):
        raise TrafficInvalidInput("There are no counts to make time-of-day plans from.")
    step = countstore.SLOT_S
    keys = table.keys
    flows = np.full((DAY_S // step, len(keys)), np.nan)
    observed = np.zeros((DAY_S // step, len(keys)))
    slot = (table.slot_s % DAY_S) // step
    flows[slot, table.movement] = table.flow_vph
    observed[slot, table.movement] = table.days * step
    return DayProfile(step, keys, flows, observed)


def inside(period: Period, second_of_day: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Which of the seconds (after midnight) ``period`` holds, as ``in`` says of each."""
    if period.wraps:
        chosen: NDArray[np.bool_] = (second_of_day >= period.start_s) | (
            second_of_day < period.end_s
        )
    else:
        chosen = (second_of_day >= period.start_s) & (second_of_day < period.end_s)
    return chosen


def plan_kept(
    network: Network,
    rows: Sequence[countstore.ProfileRow],
    limits: Limits,
    *,
    max_periods: int = DEFAULT_PERIODS,
    min_period_s: int = MIN_PERIOD_S,
    workers: int | None = None,
) -> tuple[PeriodPlan, ...]:
    """Time-of-day plans from the kept counts' profile: the same cut and plans as
    ``plan_time_of_day``, each period timed for its busiest hour of the profile. ``workers``:
    the processes that plan the junctions (see ``service.Planner``; by default one per core
    for a city, none for a small network)."""
    check_settings(max_periods, min_period_s)
    table = countstore.Profile.of_rows(rows)
    periods = choose_periods(
        profile_of_slots(table), max_periods=max_periods, min_period_s=min_period_s
    )
    planned: list[PeriodPlan] = []
    with service.Planner(network, workers) as planner:
        for period in periods:
            demand = countstore.design_demand(table.where(inside(period, table.slot_s)))
            plans = service.plan_network(network, demand, limits, planner=planner)
            before = [
                evaluate_program(signal, demand.get(signal_id, {}))
                for signal_id, signal in network.signals.items()
            ]
            planned.append(PeriodPlan(period, demand, tuple(plans), tuple(before)))
    return tuple(planned)
