"""Time-of-day plans: the day's profile, its cut into periods (properties for any counts, and the
peaks a bureau's day has), the plans per period and their SUMO and sheet formats."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicloud.core.csvsafe import read_csv
from civicloud.traffic import export
from civicloud.traffic.counts import Count, CountsReport, read_counts, zone_offset_s
from civicloud.traffic.errors import TrafficInvalidInput
from civicloud.traffic.network import Network, Phase
from civicloud.traffic.optimize import Limits, conflicting_greens
from civicloud.traffic.timeofday import (
    DAY_S,
    Period,
    choose_periods,
    day_profile,
    plan_time_of_day,
)

HEADER = "interval_begin,interval_end,tls_id,from_edge,to_edge,dir,count\n"
KEYS = [("A0", "west", "east"), ("A0", "east", "west"), ("B0", "north", "south")]


def _check_cover(periods: Sequence[Period], *, max_periods: int, min_period_s: int) -> None:
    """The periods cover the day once, each after the one before, none shorter than allowed."""
    assert 1 <= len(periods) <= max_periods
    assert [p.index for p in periods] == list(range(1, len(periods) + 1))
    assert [p.start_s for p in periods] == sorted(p.start_s for p in periods)
    for here, after in zip(periods, [*periods[1:], periods[0]], strict=True):
        assert here.end_s % DAY_S == after.start_s
    assert sum(p.length_s for p in periods) == DAY_S
    assert all(p.length_s >= min(min_period_s, DAY_S) for p in periods)
    assert sum(1 for p in periods if 0 in p) == 1
    for second in range(0, DAY_S, 900):
        assert sum(1 for p in periods if second in p) == 1


@st.composite
def days_of_counts(draw: st.DrawFn) -> list[Count]:
    """Counts of one to three movements on one to three days, at any interval, with gaps."""
    step = draw(st.sampled_from([300, 900, 1800, 3600]))
    slots = DAY_S // step
    counted = draw(st.sets(st.integers(0, slots - 1), min_size=2, max_size=slots))
    keys = KEYS[: draw(st.integers(1, len(KEYS)))]
    days = draw(st.integers(1, 3))
    values = st.integers(0, max(1, step // 4))
    return [
        Count(day * DAY_S + slot * step, day * DAY_S + (slot + 1) * step, *key, draw(values))
        for day in range(days)
        for slot in sorted(counted)
        for key in keys
    ]


@settings(max_examples=60, deadline=None)
@given(
    counts=days_of_counts(),
    max_periods=st.integers(1, 8),
    min_period_s=st.sampled_from([900, 1800, 3600, 7200, 4 * 3600]),
    seed=st.integers(0, 1000),
)
def test_periods_cover_the_day_once_and_are_deterministic(
    counts: list[Count], max_periods: int, min_period_s: int, seed: int
) -> None:
    # Given any counts
    profile = day_profile(counts)
    if int(profile.counted.sum()) < 2:  # five-minute counts inside one quarter of an hour
        with pytest.raises(TrafficInvalidInput, match="at least two intervals"):
            choose_periods(profile, max_periods=max_periods, min_period_s=min_period_s)
        return
    # When the day is cut
    periods = choose_periods(profile, max_periods=max_periods, min_period_s=min_period_s)
    # Then the periods cover it once, at most as many as allowed, none too short
    _check_cover(periods, max_periods=max_periods, min_period_s=min_period_s)
    # and every period holds counts
    assert all(
        any((c.begin % DAY_S) in p or ((c.end - 1) % DAY_S) in p for c in counts) for p in periods
    )
    # and the same counts in another order give the same periods
    shuffled = list(counts)
    random.Random(seed).shuffle(shuffled)
    again = choose_periods(
        day_profile(shuffled), max_periods=max_periods, min_period_s=min_period_s
    )
    assert again == periods


def _peaked_day(
    am: tuple[float, float], pm: tuple[float, float], *, noise: float, seed: int
) -> list[Count]:
    """15-minute counts of a day: quiet, with a morning and an evening peak (hours)."""
    rng = random.Random(seed)
    counts = []
    for slot in range(96):
        hour = slot / 4
        busy = am[0] <= hour < am[1] or pm[0] <= hour < pm[1]
        for k, key in enumerate(KEYS):
            base = (200 if busy else 50) * (1 + k)
            count = round(base * (1 + rng.uniform(-noise, noise)))
            counts.append(Count(slot * 900, slot * 900 + 900, *key, count))
    return counts


@settings(max_examples=40, deadline=None)
@given(
    am_start=st.integers(24, 32),  # quarter hours: 06:00 to 08:00
    am_length=st.integers(6, 12),  # 1.5 to 3 hours
    pm_start=st.integers(64, 72),  # 16:00 to 18:00
    pm_length=st.integers(6, 12),
    seed=st.integers(0, 1000),
)
def test_a_day_with_two_peaks_is_cut_at_the_peaks(
    am_start: int, am_length: int, pm_start: int, pm_length: int, seed: int
) -> None:
    # Given a day with an obvious morning and evening peak (demand four times the quiet hours')
    am = (am_start / 4, (am_start + am_length) / 4)
    pm = (pm_start / 4, (pm_start + pm_length) / 4)
    counts = _peaked_day(am, pm, noise=0.05, seed=seed)
    # When it is cut into at most four periods
    periods = choose_periods(day_profile(counts), max_periods=4)
    # Then the periods are the morning peak, the day, the evening peak and the night, each
    # boundary within a quarter of an hour of a peak's start or end
    assert len(periods) == 4
    boundaries = sorted(p.start_s for p in periods)
    edges = sorted(round(h * 3600) for h in (*am, *pm))
    for edge, boundary in zip(edges, boundaries, strict=True):
        assert abs(edge - boundary) <= 900
    night = next(p for p in periods if 0 in p)
    assert night.wraps  # the night is one period over midnight, not two


def test_a_flat_day_is_one_period() -> None:
    # Given the same demand all day
    counts = [Count(s, s + 900, *KEYS[0], 40) for s in range(0, DAY_S, 900)]
    # When it is cut, then one period covers it
    assert choose_periods(day_profile(counts)) == [Period(1, 0, DAY_S)]


def test_the_profile_is_the_mean_over_the_days_counted_in_veh_per_hour() -> None:
    key = KEYS[0]
    counts = [
        Count(8 * 3600, 8 * 3600 + 900, *key, 100),  # day one, 08:00
        Count(DAY_S + 8 * 3600, DAY_S + 8 * 3600 + 900, *key, 200),  # day two, 08:00
        Count(23.5 * 3600, 24.5 * 3600, *key, 40),  # an hour over midnight
    ]
    profile = day_profile(counts)
    # The bins are the counts' typical interval (the median, rounded down to 15 minutes).
    assert profile.step_s == 900
    flows = profile.flows[:, profile.keys.index(key)]
    assert flows[8 * 4] == pytest.approx(600.0)  # (100 + 200) / 2 in 15 minutes
    assert flows[94] == pytest.approx(40.0)  # 23:30 to 00:30 spread evenly
    assert flows[1] == pytest.approx(40.0)
    assert list(profile.counted.nonzero()[0]) == [0, 1, 32, 94, 95]


def test_hours_not_counted_fall_into_a_neighbouring_period() -> None:
    # Given counts from 06:00 to 20:00 only, with a morning peak
    counts = _peaked_day((7.0, 9.0), (30.0, 30.0), noise=0.0, seed=0)
    counts = [c for c in counts if 6 * 3600 <= c.begin < 20 * 3600]
    # When the day is cut
    periods = choose_periods(day_profile(counts), max_periods=4)
    # Then the periods still cover the day, and each holds counted hours
    _check_cover(periods, max_periods=4, min_period_s=3600)
    assert all(any(c.begin in p for c in counts) for p in periods)
    assert any(p.start_s == 7 * 3600 for p in periods)
    assert any(p.start_s == 9 * 3600 for p in periods)


def test_no_counts_and_one_interval_are_refused() -> None:
    with pytest.raises(TrafficInvalidInput, match="no counts"):
        day_profile([])
    one = [Count(3600, 4500, *key, 10) for key in KEYS]
    with pytest.raises(TrafficInvalidInput, match="at least two intervals"):
        choose_periods(day_profile(one))
    # The same interval on several days is still one interval of the day.
    repeated = [Count(d * DAY_S + 3600, d * DAY_S + 4500, *KEYS[0], 10) for d in range(3)]
    with pytest.raises(TrafficInvalidInput, match="at least two intervals"):
        choose_periods(day_profile(repeated))


@pytest.mark.parametrize(("periods", "min_period_s"), [(0, 3600), (9, 3600), (4, 60)])
def test_settings_out_of_range_are_refused(periods: int, min_period_s: int) -> None:
    counts = _peaked_day((7.0, 9.0), (17.0, 19.0), noise=0.0, seed=0)
    with pytest.raises(TrafficInvalidInput) as refused:
        choose_periods(day_profile(counts), max_periods=periods, min_period_s=min_period_s)
    assert refused.value.params


def _csv(net: Network, level: dict[int, int], *, days: int = 1, iso: bool = False) -> str:
    """15-minute counts of every movement of every signal: ``level[hour]`` vehicles per
    through movement (a fifth per turn), 10 in the hours not listed."""
    rows = []
    for signal in net.signals.values():
        for (f, t), links in signal.movements().items():
            for day in range(days):
                for begin in range(0, DAY_S, 900):
                    count = level.get(begin // 3600, 10)
                    count = count if links[0].dir == "s" else count // 5
                    start, end = day * DAY_S + begin, day * DAY_S + begin + 900
                    when = (_iso(start), _iso(end)) if iso else (str(start), str(end))
                    rows.append(f"{when[0]},{when[1]},{signal.id},{f},{t},{links[0].dir},{count}")
    return HEADER + "\n".join(rows) + "\n"


def _iso(second: int) -> str:
    """Seconds after midnight of 1 December 2026 in Beijing, as an ISO timestamp."""
    day, rest = divmod(second, DAY_S)
    return f"2026-12-{1 + day:02d}T{rest // 3600:02d}:{rest % 3600 // 60:02d}:00+08:00"


PEAKS = {7: 120, 8: 150, 17: 140, 18: 130}


def test_each_period_gets_a_plan_for_its_own_busiest_hour(networks: dict[str, Network]) -> None:
    # Given a junction counted for two days with a morning and an evening peak
    net = networks["junction"]
    report = read_counts(_csv(net, PEAKS, days=2), net)
    # When time-of-day plans are made
    result = plan_time_of_day(net, report, Limits(), max_periods=4)
    # Then the day has four periods, each with a plan per signal that keeps the phase structure
    periods = [each.period for each in result.periods]
    _check_cover(periods, max_periods=4, min_period_s=3600)
    assert sorted(p.start_s // 3600 for p in periods) == [7, 9, 17, 19]
    for each in result.periods:
        assert [p.signal_id for p in each.plans] == list(net.signals)
        for plan in each.plans:
            assert conflicting_greens(net.signals[plan.signal_id], plan.phases) == []
    # and the peaks' design demand is the peaks' flow, the night's the night's
    by_start = {each.period.start_s // 3600: each for each in result.periods}
    through = next(m for m, links in net.signals["A0"].movements().items() if links[0].dir == "s")
    assert by_start[7].demand["A0"][through] == pytest.approx(150 * 4)
    assert by_start[19].demand["A0"][through] == pytest.approx(10 * 4)
    assert by_start[7].plans[0].flow_vph > by_start[19].plans[0].flow_vph


def test_iso_times_are_read_in_their_own_zone(networks: dict[str, Network]) -> None:
    # Given counts written in Beijing time with a peak at 08:00 there (00:00 UTC)
    net = networks["junction"]
    text = _csv(net, {8: 150, 9: 150}, iso=True)
    report = read_counts(text, net)
    assert report.absolute_times
    zone = zone_offset_s(text)
    assert zone == 8 * 3600
    # When the day is cut in the file's zone, then the peak is 08:00 to 10:00
    result = plan_time_of_day(net, report, Limits(), max_periods=2, zone_offset_s=zone)
    assert sorted((p.period.start, p.period.end) for p in result.periods) == [
        ("08:00", "10:00"),
        ("10:00", "08:00"),
    ]


def test_the_sumo_file_switches_each_signal_at_each_period_start(
    networks: dict[str, Network],
) -> None:
    # Given time-of-day plans for a corridor whose night runs over midnight
    net = networks["corridor"]
    result = plan_time_of_day(net, read_counts(_csv(net, PEAKS), net), Limits(), max_periods=4)
    # When they are written for SUMO
    root = ET.fromstring(export.sumo_time_of_day(result))  # noqa: S314 - our own output
    # Then each signal has a program per period, with the network's phase structure
    programs = {(t.get("id"), t.get("programID")): t for t in root.findall("tlLogic")}
    ids = [export.period_program_id(each.period) for each in result.periods]
    assert ids == ["civicloud-p1", "civicloud-p2", "civicloud-p3", "civicloud-p4"]
    assert set(programs) == {(s, i) for s in net.signals for i in ids}
    for (signal_id, _), logic in programs.items():
        assert logic.get("type") == "static"
        phases = [
            Phase(float(p.get("duration", "0")), p.get("state", "")) for p in logic.iter("phase")
        ]
        assert conflicting_greens(net.signals[signal_id], phases) == []
    # and a WAUT per signal switches at each period's start, starting with midnight's program
    wauts = root.findall("WAUT")
    assert [w.get("id") for w in wauts] == [f"civicloud-{s}" for s in net.signals]
    night = next(each.period for each in result.periods if 0 in each.period)
    for waut in wauts:
        assert waut.get("refTime") == "0"
        assert waut.get("period") == "86400"
        assert waut.get("startProg") == export.period_program_id(night)
        switches = [(int(s.get("time", "")), s.get("to")) for s in waut.findall("wautSwitch")]
        assert switches == [
            (each.period.start_s, i) for each, i in zip(result.periods, ids, strict=True)
        ]
    junctions = [(j.get("wautID"), j.get("junctionID")) for j in root.findall("wautJunction")]
    assert junctions == [(f"civicloud-{s}", s) for s in net.signals]


def test_the_sheets_carry_each_rows_period(networks: dict[str, Network]) -> None:
    net = networks["corridor"]
    result = plan_time_of_day(net, read_counts(_csv(net, PEAKS), net), Limits(), max_periods=4)
    sheet = export.time_of_day_sheet(result)
    assert [(p["name"], p["start"], p["end"]) for p in sheet["periods"]] == [
        (each.period.name, each.period.start, each.period.end) for each in result.periods
    ]
    assert all([s["tls_id"] for s in p["signals"]] == list(net.signals) for p in sheet["periods"])
    header, *rows = read_csv(export.time_of_day_csv(result))
    assert header[:4] == ["period", "period_start", "period_end", "program_id"]
    assert header[4:] == list(export.CSV_HEADER)
    phases = sum(len(plan.phases) for plan in result.periods[0].plans)
    for each in result.periods:
        mine = [r for r in rows if r[0] == each.period.name]
        assert len(mine) == sum(len(plan.phases) for plan in each.plans) == phases
        assert {(r[1], r[2], r[3]) for r in mine} == {
            (each.period.start, each.period.end, export.period_program_id(each.period))
        }


def test_an_empty_report_is_refused(networks: dict[str, Network]) -> None:
    with pytest.raises(TrafficInvalidInput, match="no counts"):
        plan_time_of_day(networks["junction"], CountsReport(), Limits())
