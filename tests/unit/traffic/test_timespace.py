"""Time-space diagrams: which chains of signals are corridors, when each signal shows green
(against a second-by-second walk through its phases), and the progression band (every second in
it passes every signal on green; the seconds around it do not)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicloud.traffic import export, timespace
from civicloud.traffic.coordinate import neighbours
from civicloud.traffic.network import GREEN, Network, Phase
from civicloud.traffic.optimize import Limits
from civicloud.traffic.service import plan_network
from civicloud.traffic.timespace import Timing


def _walk(timing: Timing, links: list[int], t: float) -> bool:
    """Green at ``t`` by counting phases from the cycle start before ``t`` (the slow way)."""
    start = timing.offset
    while start > t:
        start -= timing.cycle
    while start + timing.cycle <= t:
        start += timing.cycle
    for phase in timing.phases:
        if start <= t < start + phase.duration:
            return any(phase.state[i] in GREEN for i in links)
        start += phase.duration
    raise AssertionError("t lies outside the cycle")


phase_lists = st.lists(
    st.tuples(st.integers(1, 40), st.sampled_from(["Gr", "rG", "yr", "ry", "rr", "gr"])),
    min_size=1,
    max_size=6,
)


@given(phases=phase_lists, offset=st.integers(-200, 200), t=st.integers(0, 2000))
def test_green_is_the_phase_the_cycle_is_in(
    phases: list[tuple[int, str]], offset: int, t: int
) -> None:
    timing = Timing(
        cycle=float(sum(d for d, _ in phases)),
        offset=float(offset),
        phases=tuple(Phase(float(d), s) for d, s in phases),
    )
    for links in ([0], [1], [0, 1]):
        assert timing.green(links, t + 0.5) == _walk(timing, links, t + 0.5)


@given(phases=phase_lists, offset=st.integers(0, 300), cycles=st.integers(1, 4))
def test_intervals_cover_exactly_the_green_seconds(
    phases: list[tuple[int, str]], offset: int, cycles: int
) -> None:
    timing = Timing(
        cycle=float(sum(d for d, _ in phases)),
        offset=float(offset),
        phases=tuple(Phase(float(d), s) for d, s in phases),
    )
    horizon = int(timing.cycle) * cycles
    found = timespace._intervals(timing, [0], horizon)
    # Sorted, apart, inside the horizon.
    for (a, b), (c, _) in itertools.pairwise(found):
        assert a < b < c
    assert all(0 <= a < b <= horizon for a, b in found)
    # Whole cycles hold the green phases' durations, second by second.
    green = sum(b - a for a, b in found)
    assert green == pytest.approx(cycles * sum(d for d, s in phases if s[0] in "Gg"))
    for second in range(horizon):
        inside = any(a <= second + 0.5 < b for a, b in found)
        assert inside == _walk(timing, [0], second + 0.5)


def test_a_corridor_runs_through_its_signals_both_ways(networks: dict[str, Network]) -> None:
    net = networks["corridor"]
    found = timespace.corridors(net)
    assert [c.name for c in found] == ["A0 → B0 → C0"]
    corridor = found[0]
    assert corridor.two_way
    assert [s.distance_m for s in corridor.stops] == [0.0, 300.0, 600.0]
    travel = {(link.up, link.down): link.travel_s for link in neighbours(net)}
    assert [s.travel_s for s in corridor.stops] == [0, travel[("A0", "B0")], travel[("B0", "C0")]]
    assert list(corridor.backward_travel_s) == [travel[("B0", "A0")], travel[("C0", "B0")]]
    for stop in corridor.stops:
        signal = net.signals[stop.signal_id]
        for links in (stop.forward, stop.backward):
            assert links, stop
            assert {signal.links[i].dir for i in links} == {"s"}
        # Forward runs east (increasing x), backward west.
        assert all(
            net.edges[signal.links[i].to_edge].shape[-1][0]
            > net.edges[signal.links[i].to_edge].shape[0][0]
            for i in stop.forward
        )


def test_a_grid_has_a_corridor_per_row_and_column_and_a_junction_none(
    networks: dict[str, Network],
) -> None:
    found = timespace.corridors(networks["grid"])
    assert len(found) == 6
    assert all(len(c.stops) == 3 and c.two_way for c in found)
    on = [s.signal_id for c in found for s in c.stops]
    assert all(on.count(s) == 2 for s in networks["grid"].signals)
    assert timespace.corridors(networks["junction"]) == []


def _progression(net: Network, shift: int) -> dict[str, Timing]:
    """Every signal of the corridor runs A0's program, offset by ``shift`` times the travel time
    from A0: ``shift=1`` is a perfect forward progression."""
    corridor = timespace.corridors(net)[0]
    program = net.signals["A0"].program
    found: dict[str, Timing] = {}
    for stop, arrival in zip(corridor.stops, _arrivals(corridor), strict=True):
        found[stop.signal_id] = Timing(program.cycle, float(shift * arrival), program.phases)
    return found


def _arrivals(corridor: timespace.Corridor) -> list[int]:
    total, found = 0, []
    for stop in corridor.stops:
        total += stop.travel_s
        found.append(total)
    return found


def test_offsets_by_the_travel_time_give_the_whole_green_as_the_band(
    networks: dict[str, Network],
) -> None:
    net = networks["corridor"]
    corridor = timespace.corridors(net)[0]
    timings = _progression(net, 1)
    d = timespace.diagram(corridor, timings)
    program = net.signals["A0"].program
    first = corridor.stops[0]
    green = sum(
        p.duration for p in program.phases if any(p.state[i] in GREEN for i in first.forward)
    )
    assert d.cycle_s == program.cycle
    assert d.forward.band is not None
    assert d.forward.band.width_s == green
    assert d.horizon_s == 2 * program.cycle


def _check_band(
    timings: list[Timing], links: list[tuple[int, ...]], arrival: list[int], band: timespace.Band
) -> None:
    cycle = round(timings[0].cycle)

    def passes(s: int) -> bool:
        return all(
            t.green(ls, s + 0.5 + a) for t, ls, a in zip(timings, links, arrival, strict=True)
        )

    assert all(passes(band.start_s + k) for k in range(band.width_s))
    if 0 < band.width_s < cycle:
        assert not passes(band.start_s - 1)
        assert not passes(band.start_s + band.width_s)
    # No longer run of passing seconds anywhere in the cycle.
    runs, run = 0, 0
    for s in range(2 * cycle):
        run = run + 1 if passes(s % cycle) else 0
        runs = max(runs, min(run, cycle))
    assert runs == band.width_s


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offsets=st.lists(st.integers(0, 89), min_size=3, max_size=3))
def test_the_band_is_the_longest_run_that_passes_every_signal(
    networks: dict[str, Network], offsets: list[int]
) -> None:
    net = networks["corridor"]
    corridor = timespace.corridors(net)[0]
    program = net.signals["A0"].program
    timings = {
        s.signal_id: Timing(program.cycle, float(o), program.phases)
        for s, o in zip(corridor.stops, offsets, strict=True)
    }
    d = timespace.diagram(corridor, timings)
    assert d.forward.band is not None
    assert d.backward is not None
    assert d.backward.band is not None
    ordered = [timings[s.signal_id] for s in corridor.stops]
    _check_band(
        ordered, [s.forward for s in corridor.stops], list(d.forward.arrival_s), d.forward.band
    )
    back = list(range(len(corridor.stops) - 1, -1, -1))
    _check_band(
        [ordered[k] for k in back],
        [corridor.stops[k].backward for k in back],
        [d.backward.arrival_s[k] for k in back],
        d.backward.band,
    )


def test_signals_on_different_cycles_have_no_common_cycle(networks: dict[str, Network]) -> None:
    net = networks["corridor"]
    corridor = timespace.corridors(net)[0]
    timings = timespace.network_timings(net)
    slower = net.signals["B0"].program
    stretched = tuple(Phase(p.duration * 1.5, p.state) for p in slower.phases)
    timings["B0"] = Timing(slower.cycle * 1.5, 0.0, stretched)
    d = timespace.diagram(corridor, timings)
    assert d.cycle_s is None
    assert d.horizon_s == 2 * round(slower.cycle * 1.5)


def test_a_plans_sheet_reads_back_as_its_programs(networks: dict[str, Network]) -> None:
    net = networks["grid"]
    demand = {
        sid: {m: 400.0 if links[0].dir == "s" else 90.0 for m, links in s.movements().items()}
        for sid, s in net.signals.items()
    }
    planned = plan_network(net, demand, Limits(min_cycle=60))
    timings = timespace.sheet_timings(export.timing_sheet(planned))
    for plan in planned:
        got = timings[plan.signal_id]
        assert got.cycle == plan.cycle
        assert got.offset == plan.offset
        assert [p.duration for p in got.phases] == [p.duration for p in plan.phases]
    # Coordinated plans share a cycle along each corridor: their bands repeat every cycle.
    for corridor in timespace.corridors(net):
        d = timespace.diagram(corridor, timings)
        assert d.cycle_s == planned[0].cycle
        assert d.forward.band is not None


def test_a_sheet_writes_the_same_sumo_file_as_its_plans(networks: dict[str, Network]) -> None:
    net = networks["grid"]
    demand = {
        sid: {m: 300.0 if links[0].dir == "s" else 60.0 for m, links in s.movements().items()}
        for sid, s in net.signals.items()
    }
    planned = plan_network(net, demand, Limits(min_cycle=60))
    assert export.sumo_of_sheet(export.timing_sheet(planned)) == export.sumo_additional(planned)
    # A one-period sheet is its own design sheet.
    sheet = export.timing_sheet(planned)
    assert export.design_sheet(sheet) is sheet
