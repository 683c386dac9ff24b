"""Signal-timing arithmetic: saturation flows, Webster's cycle, HCM control delay, level of service,
and clearance intervals. Pure functions of numbers; the optimiser (``optimize.py``) applies them
to a junction.

Sources:

- Webster, F. V. (1958). *Traffic Signal Settings*. Road Research Technical Paper 39, HMSO:
  the optimum cycle ``C0 = (1.5 L + 5) / (1 - Y)`` and greens in proportion to the critical
  flow ratios.
- Highway Capacity Manual 2000, chapter 16 (signalized intersections): base saturation flow
  1,900 pc/h/ln, the lane-width and turning adjustments (exhibit 16-7), control delay
  ``d = d1 PF + d2`` (equations 16-9 to 16-12) and the LOS thresholds (exhibit 16-2).
- ITE, *Traffic Engineering Handbook* (kinematic change interval): yellow
  ``t + v / (2a + 2Gg)`` and red clearance ``(W + L) / v``.
- Harders / Drew gap acceptance (as in HCM's unsignalized chapters) for the capacity of a
  permissive movement that yields to an opposing stream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: HCM 2000's base saturation flow, passenger cars per hour of green per lane.
BASE_SATURATION_FLOW = 1900.0
#: The analysis period of the incremental delay term, hours (HCM: 0.25 h).
ANALYSIS_PERIOD_H = 0.25
#: Incremental-delay factor for pretimed control (HCM: k = 0.5), and upstream filtering I = 1.
K_PRETIMED = 0.5
UPSTREAM_FILTERING = 1.0
#: Above this sum of critical flow ratios Webster's formula no longer gives a cycle (HCM and
#: Webster both treat Y >= 0.95 as over capacity).
Y_SATURATED = 0.95
#: LOS thresholds of control delay (s/veh) for a signalized intersection: A..E; F above.
LOS_THRESHOLDS: tuple[tuple[float, str], ...] = (
    (10.0, "A"),
    (20.0, "B"),
    (35.0, "C"),
    (55.0, "D"),
    (80.0, "E"),
)

#: Turning adjustment of the saturation flow by SUMO direction (HCM exhibit 16-7: protected
#: left 0.95, right from an exclusive lane 0.85; a U-turn is tighter than a right turn).
TURN_FACTORS = {"s": 1.0, "l": 0.95, "L": 0.95, "r": 0.85, "R": 0.85, "t": 0.80, "T": 0.80}

#: Gap acceptance of a permissive movement: critical headway and follow-up time, seconds.
CRITICAL_HEADWAY_S = 4.5
FOLLOW_UP_S = 2.5

#: ITE change interval: perception-reaction time (s), deceleration (m/s^2), vehicle length (m).
REACTION_S = 1.0
DECELERATION = 3.05
VEHICLE_LENGTH_M = 6.0
MIN_YELLOW_S = 3.0
MAX_YELLOW_S = 6.0
MAX_ALL_RED_S = 4.0


def lane_width_factor(width_m: float) -> float:
    """HCM 2000's lane-width adjustment ``1 + (W - 3.6) / 9`` (metric), for widths 2.4..4.8 m."""
    width = min(max(width_m, 2.4), 4.8)
    return 1.0 + (width - 3.6) / 9.0


def shared_lane_factor(shares: Sequence[tuple[float, str]]) -> float:
    """The turning adjustment of a lane carrying several movements: ``1 / sum(P_i / f_i)``.

    ``shares`` are (proportion of the lane's flow, SUMO direction); proportions that sum to
    nothing (a lane without demand) give the lane's through-movement factor of 1.
    """
    total = sum(p for p, _ in shares)
    if total <= 0:
        return 1.0
    return 1.0 / sum((p / total) / TURN_FACTORS.get(d, 1.0) for p, d in shares)


def saturation_flow(width_m: float, shares: Sequence[tuple[float, str]]) -> float:
    """Saturation flow of one lane, veh/h of green."""
    return BASE_SATURATION_FLOW * lane_width_factor(width_m) * shared_lane_factor(shares)


def permissive_capacity(opposing_vph: float) -> float:
    """Veh/h of green a yielding movement gets through an opposing stream of ``opposing_vph``.

    ``q e^(-q tc) / (1 - e^(-q tf))`` with q in veh/s; with no opposing flow, one vehicle per
    follow-up time.
    """
    q = opposing_vph / 3600.0
    if q * FOLLOW_UP_S < 1e-9:  # no opposing flow (or too little to tell from none)
        return 3600.0 / FOLLOW_UP_S
    return 3600.0 * q * math.exp(-q * CRITICAL_HEADWAY_S) / -math.expm1(-q * FOLLOW_UP_S)


def webster_cycle(lost_time_s: float, critical_ratios: Sequence[float]) -> float | None:
    """Webster's optimum cycle ``(1.5 L + 5) / (1 - Y)``; ``None`` when ``Y >= 0.95``."""
    y = sum(critical_ratios)
    if y >= Y_SATURATED:
        return None
    return (1.5 * lost_time_s + 5.0) / (1.0 - y)


def webster_greens(
    cycle_s: float, lost_time_s: float, critical_ratios: Sequence[float]
) -> list[float]:
    """Effective greens in proportion to the critical ratios: ``(C - L) y_i / Y``."""
    y = sum(critical_ratios)
    available = cycle_s - lost_time_s
    if y <= 0:
        return [available / len(critical_ratios)] * len(critical_ratios)
    return [available * r / y for r in critical_ratios]


def uniform_delay(cycle_s: float, green_ratio: float, x: float) -> float:
    """HCM's uniform delay ``d1 = 0.5 C (1 - g/C)^2 / (1 - min(1, X) g/C)``, s/veh."""
    g = min(max(green_ratio, 0.0), 1.0)
    denominator = 1.0 - min(1.0, x) * g
    if denominator <= 0:  # g/C = 1 and X >= 1: always green, no uniform delay
        return 0.0
    return 0.5 * cycle_s * (1.0 - g) ** 2 / denominator


def incremental_delay(
    x: float,
    capacity_vph: float,
    period_h: float = ANALYSIS_PERIOD_H,
    k: float = K_PRETIMED,
    filtering: float = UPSTREAM_FILTERING,
) -> float:
    """HCM's incremental (random and over-saturation) delay, s/veh:
    ``d2 = 900 T [(X - 1) + sqrt((X - 1)^2 + 8 k I X / (c T))]``.
    """
    if capacity_vph <= 0:
        return math.inf
    term = (x - 1.0) ** 2 + 8.0 * k * filtering * x / (capacity_vph * period_h)
    return 900.0 * period_h * ((x - 1.0) + math.sqrt(term))


def control_delay(
    flow_vph: float,
    saturation_vph: float,
    cycle_s: float,
    green_ratio: float,
    period_h: float = ANALYSIS_PERIOD_H,
    progression: float = 1.0,
) -> tuple[float, float, float]:
    """(control delay s/veh, degree of saturation X, capacity veh/h) of one lane group.

    A lane group with demand but no green has an infinite delay and X; one without demand has
    the delay its first vehicle would meet.
    """
    capacity = saturation_vph * green_ratio
    if capacity <= 0:
        return (math.inf if flow_vph > 0 else 0.0), math.inf if flow_vph > 0 else 0.0, 0.0
    x = flow_vph / capacity
    d1 = uniform_delay(cycle_s, green_ratio, x)
    d2 = incremental_delay(x, capacity, period_h)
    return d1 * progression + d2, x, capacity


def level_of_service(delay_s: float, x: float | None = None) -> str:
    """HCM LOS letter of a control delay; a lane group over capacity (X > 1) is F (HCM 2010)."""
    if x is not None and x > 1.0:
        return "F"
    for limit, letter in LOS_THRESHOLDS:
        if delay_s <= limit:
            return letter
    return "F"


def yellow_time(speed_ms: float, grade: float = 0.0) -> float:
    """ITE's change interval ``t + v / (2a + 2 G g)``, rounded up to half seconds, 3..6 s."""
    raw = REACTION_S + speed_ms / (2.0 * DECELERATION + 2.0 * 9.81 * grade)
    return min(max(_half_up(raw), MIN_YELLOW_S), MAX_YELLOW_S)


def all_red_time(width_m: float, speed_ms: float) -> float:
    """ITE's red clearance ``(W + L) / v``, rounded up to half seconds, at most 4 s."""
    if speed_ms <= 0:
        return 0.0
    raw = (width_m + VEHICLE_LENGTH_M) / speed_ms
    return min(_half_up(raw), MAX_ALL_RED_S)


def _half_up(seconds: float) -> float:
    """Rounded up to the next half second (controllers and SUMO take tenths)."""
    return math.ceil(seconds * 2.0 - 1e-9) / 2.0
