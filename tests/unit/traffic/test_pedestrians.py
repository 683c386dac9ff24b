"""Pedestrian minimum greens: a junction's signalised crossings get their walk and the time to
clear the road before anything that was red starts, whatever the demand."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicloud.traffic import sumo
from civicloud.traffic.network import GREEN, Network, read_network
from civicloud.traffic.optimize import (
    PEDESTRIAN_SPEED,
    WALK_S,
    Limits,
    conflicting_greens,
    pedestrian_minimums,
    plan_signal,
    transition_states,
)


@pytest.fixture(scope="module")
def crossing_junction(tmp_path_factory: pytest.TempPathFactory) -> Network:
    path = tmp_path_factory.mktemp("ped") / "junction.net.xml"
    return read_network(sumo.generate("junction", Path(path), pedestrians=True))


class _Net(Network):
    def __repr__(self) -> str:
        return "<junction with crossings>"


def _demand(net: Network, main: float, side: float) -> dict[tuple[str, str], float]:
    signal = net.signals["A0"]
    demand = {}
    for (f, t), links in signal.movements().items():
        base = main if f.startswith(("left", "right")) else side
        demand[(f, t)] = base * (1.0 if links[0].dir == "s" else 0.2)
    return demand


def test_crossings_are_read_with_their_lengths(crossing_junction: Network) -> None:
    signal = crossing_junction.signals["A0"]
    assert len(signal.crossings) == 4
    assert all(c.length > 5 for c in signal.crossings)
    vehicle_links = {link.index for link in signal.links}
    assert not vehicle_links & {c.index for c in signal.crossings}


def _walks(plan_phases: list[tuple[float, str]], index: int) -> list[float]:
    """The durations of each run of phases showing crossing ``index`` green."""
    runs, current = [], 0.0
    for duration, state in plan_phases + plan_phases:  # the cycle, twice, for a run over its end
        if state[index] in GREEN:
            current += duration
        elif current:
            runs.append(current)
            current = 0.0
    return runs


@settings(max_examples=25, deadline=None)
@given(main=st.floats(0, 900), side=st.floats(0, 900), min_green=st.integers(3, 8))
def test_every_crossing_gets_its_walk_and_clearance(
    crossing_junction: Network, main: float, side: float, min_green: int
) -> None:
    net = _Net(**crossing_junction.__dict__)
    signal = net.signals["A0"]
    plan = plan_signal(signal, _demand(net, main, side), Limits(min_green=min_green))
    phases = [(p.duration, p.state) for p in plan.phases]
    assert conflicting_greens(signal, plan.phases) == []
    for crossing in signal.crossings:
        walks = _walks(phases, crossing.index)
        assert walks, crossing
        assert min(walks) >= WALK_S
        # After the walk, nothing that was red starts before the crossing is cleared.
        n = len(phases)
        for i in range(n):
            if (
                phases[i][1][crossing.index] in GREEN
                and phases[(i + 1) % n][1][crossing.index] not in GREEN
            ):
                walking = phases[i][1]
                cleared = 0.0
                j = (i + 1) % n
                while j != i:
                    state = phases[j][1]
                    if state[crossing.index] in GREEN or any(
                        (c in GREEN and walking[k] not in GREEN) or (c == "G" and walking[k] == "g")
                        for k, c in enumerate(state)
                    ):
                        break
                    cleared += phases[j][0]
                    j = (j + 1) % n
                assert cleared + 1e-9 >= crossing.length / PEDESTRIAN_SPEED - 1.0


def test_a_network_without_crossings_keeps_the_engineers_minimum(
    networks: dict[str, Network],
) -> None:
    signal = networks["junction"].signals["A0"]
    assert signal.crossings == ()
    states, fixed = transition_states(signal, Limits())
    assert pedestrian_minimums(signal, states, fixed, 5) == [5.0] * 4


def test_the_crossings_set_the_phases_least_greens(crossing_junction: Network) -> None:
    signal = crossing_junction.signals["A0"]
    states, fixed = transition_states(signal, Limits())
    least = pedestrian_minimums(signal, states, fixed, 5)
    # netconvert's program: a walk phase, then the same vehicle greens with the crossings red
    # (the clearance), then yellow; for each street, then its left turns.
    greens = [i for i, d in enumerate(fixed) if d is None]
    by_phase = dict(zip(greens, least, strict=True))
    walk = [i for i in greens if any(states[i][c.index] in GREEN for c in signal.crossings)]
    assert walk
    assert all(by_phase[i] >= WALK_S for i in walk)
    length = max(c.length for c in signal.crossings)
    assert max(least) >= length / PEDESTRIAN_SPEED - 4.0
