"""The optimiser over generated networks: properties for any demand and limits, and the cases a
bureau meets (no demand, a junction at 100 % and beyond)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicloud.traffic.errors import InvalidTimingLimits
from civicloud.traffic.network import GREEN, YELLOW, Network, Signal
from civicloud.traffic.optimize import (
    Limits,
    _descend,
    _spread,
    build_model,
    conflicting_greens,
    evaluate_program,
    pedestrian_minimums,
    plan_signal,
    transition_states,
)


def _demand(signal: Signal, main: float, side: float) -> dict[tuple[str, str], float]:
    """``main`` veh/h on the through movements of the north-south street, ``side`` on the
    east-west one; turns a fifth of the through flow."""
    demand = {}
    for (f, t), links in signal.movements().items():
        base = main if f.startswith(("top", "bottom")) else side
        share = 1.0 if links[0].dir == "s" else 0.2
        demand[(f, t)] = base * share
    return demand


def _greens_of(states: list[str]) -> list[str]:
    return [s for s in states if not any(c in YELLOW for c in s) and any(c in GREEN for c in s)]


flows = st.floats(0.0, 1200.0)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    main=flows,
    side=flows,
    min_cycle=st.integers(30, 120),
    extra=st.integers(0, 120),
    min_green=st.integers(3, 15),
)
def test_plans_keep_structure_and_limits_for_any_demand(
    networks: dict[str, Network],
    main: float,
    side: float,
    min_cycle: int,
    extra: int,
    min_green: int,
) -> None:
    signal = networks["junction"].signals["A0"]
    limits = Limits(min_cycle=min_cycle, max_cycle=min(min_cycle + extra, 300), min_green=min_green)
    plan = plan_signal(signal, _demand(signal, main, side), limits)
    durations = [p.duration for p in plan.phases]
    # Splits sum to the cycle; each green at least its minimum; the cycle within the limits
    # (raised only as far as the lost time and minimum greens need).
    assert sum(durations) == pytest.approx(plan.cycle)
    assert all(plan.phases[i].duration >= min_green for i in plan.green_phases)
    floor = max(min_cycle, plan.lost_time_s + len(plan.green_phases) * min_green)
    assert floor - 1 <= plan.cycle <= max(limits.max_cycle, floor) + 1
    # The network's phase structure: the same green phases in the same order, no conflicting
    # priority greens, permissive greens only where the program has them.
    assert [plan.phases[i].state for i in plan.green_phases] == _greens_of(
        [p.state for p in signal.program.phases]
    )
    assert conflicting_greens(signal, plan.phases) == []
    assert plan.offset == 0.0 <= plan.offset < plan.cycle
    assert plan.los in {"A", "B", "C", "D", "E", "F", "-"}


def test_the_plan_cuts_delay_under_uneven_demand(networks: dict[str, Network]) -> None:
    signal = networks["junction"].signals["A0"]
    demand = _demand(signal, 700, 200)
    before = evaluate_program(signal, demand)
    # The network's structure, without all-red phases (ITE yellows of 3.5 s):
    plan = plan_signal(signal, demand)
    assert plan.delay_s < 0.8 * before.delay_s
    # With ITE's clearance (3.5 s yellow and 3 s all-red after each of four yellows) the lost
    # time doubles, and the plan still beats the program.
    safe = plan_signal(signal, demand, Limits(all_red=True))
    assert (plan.lost_time_s, safe.lost_time_s) == (4 * 3.5, 4 * (3.5 + 3.0))
    assert safe.delay_s < before.delay_s
    # The main street gets the longer green.
    main_green, side_green = safe.splits[0], safe.splits[2]
    assert main_green > side_green
    assert safe.webster_cycle is not None
    assert safe.flags == ()


def test_no_demand_gives_the_shortest_cycle(networks: dict[str, Network]) -> None:
    signal = networks["junction"].signals["A0"]
    plan = plan_signal(signal, {}, Limits(min_cycle=60, max_cycle=120))
    assert plan.flags == ("no_demand",)
    assert plan.cycle == pytest.approx(60, abs=1)
    assert plan.delay_s == 0.0


@pytest.mark.parametrize("load", [1.0, 3.0])
def test_a_saturated_junction_ends_at_the_longest_cycle_flagged(
    networks: dict[str, Network], load: float
) -> None:
    signal = networks["junction"].signals["A0"]
    # Each through lane at its saturation flow and beyond: no cycle serves it.
    plan = plan_signal(signal, _demand(signal, 1900 * 2 * load, 1900 * 2 * load))
    assert "saturated" in plan.flags
    assert plan.webster_cycle is None
    assert plan.cycle <= 150 + 1
    assert plan.los == "F"
    assert all(lane.delay_s < float("inf") for lane in plan.lanes)


def test_a_movement_no_phase_serves_is_flagged(networks: dict[str, Network]) -> None:
    signal = networks["junction"].signals["A0"]
    movement = next(iter(signal.movements()))
    index = signal.movements()[movement][0].index
    # A program that never gives that link a green.
    from dataclasses import replace

    program = signal.program
    phases = tuple(
        replace(p, state=p.state[:index] + "r" + p.state[index + 1 :]) for p in program.phases
    )
    closed = replace(
        signal,
        programs={program.id: replace(program, phases=phases)},
        links=tuple(link for link in signal.links if True),
    )
    plan = plan_signal(closed, {movement: 300.0})
    assert "unserved" in plan.flags


def test_transitions_get_yellow_and_all_red(networks: dict[str, Network]) -> None:
    signal = networks["junction"].signals["A0"]
    states, fixed = transition_states(signal, Limits(all_red=True))
    yellows = [d for s, d in zip(states, fixed, strict=True) if any(c in YELLOW for c in s)]
    assert yellows == [3.5] * 4
    # Each yellow is followed by an all-red phase that starts no green.
    for i, s in enumerate(states):
        if any(c in YELLOW for c in s):
            red = states[i + 1]
            assert all(c not in GREEN for c, y in zip(red, s, strict=True) if y in YELLOW)
    # By default the program's structure is kept: no phase is inserted.
    kept, kept_fixed = transition_states(signal, Limits())
    assert kept == [p.state for p in signal.program.phases]
    assert [d for d in kept_fixed if d is not None] == [3.5] * 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_cycle": 120, "max_cycle": 60},
        {"min_green": 0},
        {"min_cycle": -5},
        {"max_cycle": 400},
        {"min_cycle": float("nan")},
        {"period_h": 0},
    ],
)
def test_bad_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidTimingLimits):
        Limits(**kwargs)


def test_every_signal_of_a_grid_is_planned(networks: dict[str, Network]) -> None:
    for signal in networks["grid"].signals.values():
        plan = plan_signal(signal, _demand(signal, 400, 300))
        assert conflicting_greens(signal, plan.phases) == []
        assert 60 <= plan.cycle <= 151


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    main=flows,
    side=flows,
    cycles=st.lists(st.integers(40, 200), min_size=1, max_size=6),
)
def test_the_cycles_descend_together_as_each_alone(
    networks: dict[str, Network], main: float, side: float, cycles: list[int]
) -> None:
    """The search's cycles descend in one array: each ends where it ends alone, at the delay
    the one-plan formula gives."""
    signal = networks["junction"].signals["A0"]
    limits = Limits()
    model = build_model(signal, _demand(signal, main, side), limits)
    least = pedestrian_minimums(signal, model.states, model.fixed, limits.min_green)
    ratios = model.critical_ratios()
    starts = np.asarray([_spread(c - model.lost_time, ratios, least) for c in cycles])
    together, delays = _descend(model, starts, least)
    for k in range(len(cycles)):
        alone, delay = _descend(model, starts[k : k + 1], least)
        assert together[k].tolist() == alone[0].tolist()
        assert delays[k] == pytest.approx(delay[0], rel=1e-12)
        assert delays[k] == pytest.approx(model.total_delay(list(together[k])), rel=1e-12)
        assert sum(together[k]) == pytest.approx(cycles[k] - model.lost_time)
        assert all(g >= m for g, m in zip(together[k], least, strict=True))
        # No move of a whole second lowers the delay further.
        for a in range(len(least)):
            for b in range(len(least)):
                if a == b or together[k][a] - 1 < least[a]:
                    continue
                trial = list(together[k])
                trial[a] -= 1
                trial[b] += 1
                assert model.total_delay(trial) >= delays[k] - 1e-6
