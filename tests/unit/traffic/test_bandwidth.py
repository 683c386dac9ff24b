"""Bandwidth offsets (MAXBAND-style, HiGHS): each signal's green window against a second-by-second
walk, the model's bands against the bands the programs then give (counted second by second), its
optimum against brute force over every pair of offsets, one-way corridors, fixed offsets, and a
grid's corridors taken busiest first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicloud.traffic import bandwidth, export, timespace
from civicloud.traffic.bandwidth import Window, band_offsets, green_window, maxband
from civicloud.traffic.errors import InvalidTimingLimits
from civicloud.traffic.network import Network, Phase
from civicloud.traffic.optimize import Limits
from civicloud.traffic.service import plan_network
from civicloud.traffic.timespace import Corridor, Timing


def _walk_window(timing: Timing, links: list[int]) -> int:
    """The longest run of green seconds of ``links`` over a cycle, around its end too."""
    cycle = round(timing.cycle)
    green = [timing.green(links, timing.offset + s + 0.5) for s in range(cycle)]
    if all(green):
        return cycle
    best = run = 0
    for s in range(2 * cycle):
        run = run + 1 if green[s % cycle] else 0
        best = max(best, run)
    return best


@given(
    phases=st.lists(
        st.tuples(st.integers(1, 30), st.sampled_from(["Gr", "rG", "yr", "gr", "rr"])),
        min_size=1,
        max_size=7,
    )
)
def test_the_green_window_is_the_longest_run_of_green(phases: list[tuple[int, str]]) -> None:
    timing = Timing(
        float(sum(d for d, _ in phases)), 0.0, tuple(Phase(float(d), s) for d, s in phases)
    )
    window = green_window(timing, [0])
    walked = _walk_window(timing, [0])
    if walked == 0:
        assert window is None
        return
    assert window is not None
    assert window.length == walked
    # Every second of the window is green.
    assert all(timing.green([0], window.start + k + 0.5) for k in range(int(window.length)))


def _with_offsets(timings: dict[str, Timing], offsets: dict[str, int]) -> dict[str, Timing]:
    return {
        sid: Timing(t.cycle, float(offsets.get(sid, t.offset)), t.phases)
        for sid, t in timings.items()
    }


def _bands(corridor: Corridor, timings: dict[str, Timing]) -> tuple[int, int]:
    d = timespace.diagram(corridor, timings)
    assert d.forward.band is not None
    back = d.backward.band.width_s if d.backward is not None and d.backward.band else 0
    return d.forward.band.width_s, back


def _asymmetric(net: Network) -> dict[str, Timing]:
    """The corridor's programs with its main road's greens longer (the side road's shorter)."""
    found = {}
    for sid, timing in timespace.network_timings(net).items():
        phases = tuple(
            Phase(p.duration + (12 if k == 0 else -12 if k == 4 else 0), p.state)
            for k, p in enumerate(timing.phases)
        )
        found[sid] = Timing(timing.cycle, 0.0, phases)
    return found


@pytest.mark.parametrize("shape", ["as_generated", "asymmetric"])
def test_the_model_finds_the_widest_two_way_bands(networks: dict[str, Network], shape: str) -> None:
    net = networks["corridor"]
    corridor = timespace.corridors(net)[0]
    timings = timespace.network_timings(net) if shape == "as_generated" else _asymmetric(net)
    found = maxband(corridor, timings)
    assert found is not None
    assert found.optimal
    assert set(found.offsets) == {"A0", "B0", "C0"}
    cycle = round(timings["A0"].cycle)
    assert all(0 <= o < cycle for o in found.offsets.values())
    assert found.offsets["A0"] == round(timings["A0"].offset) % cycle  # the first one is kept
    # The programs run with these offsets give the bands the model says (whole seconds).
    measured = _bands(corridor, _with_offsets(timings, found.offsets))
    assert measured[0] >= int(found.forward_s) - 1
    assert measured[1] >= int(found.backward_s) - 1
    # No pair of offsets gives wider bands both ways (brute force over every pair).
    best = 0
    for b in range(cycle):
        for c in range(cycle):
            f, back = _bands(
                corridor, _with_offsets(timings, {"B0": b, "C0": c, "A0": found.offsets["A0"]})
            )
            if f > 0 and back > 0:
                best = max(best, f + back)
    assert found.forward_s + found.backward_s >= best - 2
    assert sum(measured) >= best - 2


def test_a_one_way_corridor_gets_its_narrowest_green_as_the_band(
    networks: dict[str, Network],
) -> None:
    net = networks["corridor"]
    two_way = timespace.corridors(net)[0]
    one_way = Corridor(
        stops=tuple(
            timespace.Stop(s.signal_id, s.distance_m, s.travel_s, s.forward, ())
            for s in two_way.stops
        ),
        backward_travel_s=(),
    )
    timings = _asymmetric(net)
    found = maxband(one_way, timings)
    assert found is not None
    narrowest = min(
        w.length
        for w in (green_window(timings[s.signal_id], s.forward) for s in one_way.stops)
        if w
    )
    assert found.forward_s == pytest.approx(narrowest)
    assert found.backward_s == 0
    assert _bands(one_way, _with_offsets(timings, found.offsets))[0] >= narrowest - 1


def test_fixed_offsets_stay_and_unequal_cycles_are_not_banded(networks: dict[str, Network]) -> None:
    net = networks["corridor"]
    corridor = timespace.corridors(net)[0]
    timings = _asymmetric(net)
    found = maxband(corridor, timings, fixed={"B0": 17})
    assert found is not None
    assert found.offsets["B0"] == 17
    slower = dict(timings)
    slower["C0"] = Timing(
        timings["C0"].cycle + 10, 0.0, (*timings["C0"].phases, Phase(10.0, "r" * 16))
    )
    assert maxband(corridor, slower) is None


def test_a_grid_bands_its_busiest_corridors_first(networks: dict[str, Network]) -> None:
    net = networks["grid"]
    timings = _asymmetric_grid(net)
    corridors = timespace.corridors(net)
    movements = {
        sid: [(link.from_edge, link.to_edge) for link in s.links] for sid, s in net.signals.items()
    }
    # Demand: the row through A1, B1, C1 (west-east) is the busiest.
    busy = next(c for c in corridors if [s.signal_id for s in c.stops] == ["A1", "B1", "C1"])
    demand: dict[str, dict[tuple[str, str], float]] = {}
    for c in corridors:
        level = 900.0 if c is busy else 100.0
        for stop in c.stops:
            for i in (*stop.forward, *stop.backward):
                demand.setdefault(stop.signal_id, {})[movements[stop.signal_id][i]] = level
    offsets = band_offsets(corridors, timings, demand, movements)
    assert set(offsets) == set(net.signals)
    alone = maxband(busy, timings)
    assert alone is not None
    # The busiest corridor gets its own optimum; the others fit around it.
    got = _bands(busy, _with_offsets(timings, offsets))
    assert sum(got) >= alone.forward_s + alone.backward_s - 2


def _asymmetric_grid(net: Network) -> dict[str, Timing]:
    return {
        sid: Timing(t.cycle, 0.0, t.phases) for sid, t in timespace.network_timings(net).items()
    }


def test_the_first_solver_of_a_process_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    bandwidth._without_banner.cache_clear()
    bandwidth._solver()
    assert capfd.readouterr().out == ""
    assert Window(0.0, 1.0).length == 1.0


def _arterial_demand(net: Network) -> dict[str, dict[tuple[str, str], float]]:
    """East-west through movements busy, the rest light."""
    demand: dict[str, dict[tuple[str, str], float]] = {}
    for sid, signal in net.signals.items():
        flows = {}
        for (f, t), links in signal.movements().items():
            shape = net.edges[f].shape
            east_west = abs(shape[0][1] - shape[-1][1]) < 1.0
            flows[(f, t)] = (600.0 if east_west else 150.0) * (1.0 if links[0].dir == "s" else 0.2)
        demand[sid] = flows
    return demand


def test_the_planner_sets_bandwidth_offsets_when_asked(networks: dict[str, Network]) -> None:
    net = networks["corridor"]
    demand = _arterial_demand(net)
    by_delay = plan_network(net, demand, Limits(min_cycle=60))
    by_band = plan_network(net, demand, Limits(min_cycle=60, offsets="bandwidth"))
    corridor = timespace.corridors(net)[0]
    # The same cycles and splits; only the offsets differ, and the plans say so.
    for a, b in zip(by_delay, by_band, strict=True):
        assert (a.cycle, a.splits) == (b.cycle, b.splits)
        assert "banded" in b.flags
        assert 0 <= b.offset < b.cycle
    delay_bands = _bands(corridor, timespace.sheet_timings(export.timing_sheet(by_delay)))
    band_bands = _bands(corridor, timespace.sheet_timings(export.timing_sheet(by_band)))
    assert sum(band_bands) >= sum(delay_bands)
    assert min(band_bands) > 0  # both ways
    with pytest.raises(InvalidTimingLimits):
        Limits(offsets="widest")
