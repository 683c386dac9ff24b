"""Webster's cycle, HCM control delay and ITE clearance against textbook worked examples."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicloud.traffic import timing


def test_webster_cycle_of_the_two_phase_textbook_example() -> None:
    # Two approaches of 500 and 300 pcu/h, saturation flow 1,600 pcu/h each, 16 s lost per
    # cycle: Y = 0.5 and C0 = (1.5 * 16 + 5) / (1 - 0.5) = 58 s.
    ratios = [500 / 1600, 300 / 1600]
    assert timing.webster_cycle(16.0, ratios) == pytest.approx(58.0)
    greens = timing.webster_greens(58.0, 16.0, ratios)
    assert greens == pytest.approx([26.25, 15.75])
    assert sum(greens) == pytest.approx(58.0 - 16.0)


def test_webster_gives_no_cycle_once_the_junction_is_over_capacity() -> None:
    assert timing.webster_cycle(12.0, [0.5, 0.45]) is None
    assert timing.webster_cycle(12.0, [0.6, 0.6]) is None


def test_hcm_delay_of_an_oversaturated_lane_group() -> None:
    # Roess, Prassas & McShane, Traffic Engineering: v = 800 veh/h, c = 775 veh/h, g/C = 0.40,
    # C = 90 s, T = 0.25 h, arrival type 3 (PF = 1): d1 = 27.0 s, d2 = 40.9 s, d = 67.9 s (E).
    x = 800 / 775
    assert timing.uniform_delay(90.0, 0.40, x) == pytest.approx(27.0)
    assert timing.incremental_delay(x, 775.0) == pytest.approx(40.9, abs=0.05)
    delay, x_out, capacity = timing.control_delay(800.0, 775.0 / 0.40, 90.0, 0.40)
    assert delay == pytest.approx(67.9, abs=0.05)
    assert x_out == pytest.approx(x)
    assert capacity == pytest.approx(775.0)
    # Over capacity the lane group is F whatever its delay (HCM 2010); the delay alone says E.
    assert timing.level_of_service(delay) == "E"
    assert timing.level_of_service(delay, x_out) == "F"


def test_uniform_delay_of_the_nptel_example() -> None:
    # Mathew, NPTEL "Signalized intersection delay models": C = 102 s, g/C = 0.55, X >= 1
    # gives d1 = 0.5 * 102 * 0.45^2 / (1 - 0.55) = 22.95 s.
    assert timing.uniform_delay(102.0, 0.55, 1.0) == pytest.approx(22.95)
    assert timing.uniform_delay(102.0, 0.55, 1.3) == pytest.approx(22.95)


@pytest.mark.parametrize(
    ("delay", "letter"),
    [(0.0, "A"), (10.0, "A"), (10.1, "B"), (20.0, "B"), (35.0, "C"), (55.0, "D"), (80.0, "E")],
)
def test_level_of_service_thresholds(delay: float, letter: str) -> None:
    assert timing.level_of_service(delay) == letter
    assert timing.level_of_service(80.1) == "F"


def test_ite_clearance_intervals() -> None:
    # 50 km/h (13.89 m/s) on the level: 1 + 13.89 / 6.1 = 3.28 s of yellow, rounded up to 3.5 s;
    # 28.8 m of junction and a 6 m car at 13.89 m/s: 2.51 s of all-red, rounded up to 3 s.
    assert timing.yellow_time(13.89) == 3.5
    assert timing.yellow_time(5.0) == timing.MIN_YELLOW_S
    assert timing.yellow_time(40.0) == timing.MAX_YELLOW_S
    assert timing.all_red_time(28.8, 13.89) == 3.0
    assert timing.all_red_time(100.0, 5.0) == timing.MAX_ALL_RED_S
    assert timing.all_red_time(10.0, 0.0) == 0.0


def test_saturation_flow_adjustments() -> None:
    assert timing.saturation_flow(3.6, [(1.0, "s")]) == pytest.approx(1900.0)
    assert timing.saturation_flow(3.6, [(1.0, "r")]) == pytest.approx(1900.0 * 0.85)
    # A narrow lane carries less: 3.0 m gives 1 + (3.0 - 3.6) / 9 = 0.933.
    assert timing.saturation_flow(3.0, [(1.0, "s")]) == pytest.approx(1900.0 * (1 - 0.6 / 9))
    # A shared lane: half through, half right: 1 / (0.5 / 1 + 0.5 / 0.85).
    shared = timing.shared_lane_factor([(100.0, "s"), (100.0, "r")])
    assert shared == pytest.approx(1 / (0.5 + 0.5 / 0.85))
    assert timing.shared_lane_factor([]) == 1.0


def test_permissive_capacity_falls_as_the_opposing_flow_grows() -> None:
    free = timing.permissive_capacity(0.0)
    assert free == pytest.approx(3600 / timing.FOLLOW_UP_S)
    values = [timing.permissive_capacity(q) for q in (100, 400, 800, 1600)]
    assert all(a > b for a, b in zip([free, *values], values, strict=False))


@given(
    cycle=st.floats(30, 300),
    g=st.floats(0.05, 0.95),
    x=st.floats(0.0, 3.0),
    capacity=st.floats(50, 4000),
)
def test_delay_terms_are_finite_and_nonnegative(
    cycle: float, g: float, x: float, capacity: float
) -> None:
    d1 = timing.uniform_delay(cycle, g, x)
    d2 = timing.incremental_delay(x, capacity)
    assert 0.0 <= d1 <= cycle / 2
    assert d2 >= 0.0
    assert math.isfinite(d2)


@given(
    cycle=st.floats(30, 300),
    x=st.floats(0.0, 0.99),
    g1=st.floats(0.05, 0.9),
    dg=st.floats(0.01, 0.09),
)
def test_more_green_never_adds_uniform_delay(cycle: float, x: float, g1: float, dg: float) -> None:
    assert timing.uniform_delay(cycle, g1 + dg, x) <= timing.uniform_delay(cycle, g1, x) + 1e-9


def test_a_lane_group_with_demand_and_no_green_is_unbounded() -> None:
    delay, x, capacity = timing.control_delay(100.0, 1800.0, 90.0, 0.0)
    assert math.isinf(delay)
    assert math.isinf(x)
    assert capacity == 0.0
    assert timing.control_delay(0.0, 1800.0, 90.0, 0.0) == (0.0, 0.0, 0.0)


@given(st.floats(0.0, 1e6, allow_subnormal=True))
def test_permissive_capacity_is_finite_and_bounded_for_any_opposing_flow(flow: float) -> None:
    capacity = timing.permissive_capacity(flow)
    assert 0.0 <= capacity <= 3600.0 / timing.FOLLOW_UP_S + 1e-6
