"""The kept counts' checks and crunch over Parquet files written as the store writes them: each
kind of bad row is found by the one SQL pass, and the time-of-day plans come from the profile."""

from __future__ import annotations

import random
import uuid
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicloud.traffic import countstore, timeofday
from civicloud.traffic.countstore import DuckDBEngine
from civicloud.traffic.network import Network
from civicloud.traffic.optimize import Limits

DAY = date(2026, 11, 2)
#: A kept row of the check's property: movement, begin, length, vehicles.
Pick = tuple[int, int, int, int]
MIDNIGHT = 1_793_548_800  # 2026-11-02 00:00 in Asia/Shanghai


def _write(path: Path, rows: list[tuple[str, str, str, int, int, int]], network_id: str) -> Path:
    table = pa.table(
        {
            "network_id": [network_id] * len(rows),
            "tls_id": [r[0] for r in rows],
            "from_edge": [r[1] for r in rows],
            "to_edge": [r[2] for r in rows],
            "begin_s": pa.array([MIDNIGHT + r[3] for r in rows], pa.int64()),
            "end_s": pa.array([MIDNIGHT + r[4] for r in rows], pa.int64()),
            "local_s": pa.array([r[3] for r in rows], pa.int32()),
            "day": [DAY.isoformat()] * len(rows),
            "vehicles": pa.array([r[5] for r in rows], pa.int32()),
        },
        schema=countstore.SCHEMA,
    )
    pq.write_table(table, path)
    return path


def _day_of(net: Network, per_slot: int = 30) -> list[tuple[str, str, str, int, int, int]]:
    rows = []
    for (f, t), links in sorted(net.signals["A0"].movements().items()):
        for slot in range(96):
            peak = 3 if 28 <= slot < 40 or 68 <= slot < 76 else 1
            count = per_slot * peak if links[0].dir == "s" else per_slot * peak // 5
            rows.append(("A0", f, t, slot * 900, slot * 900 + 900, count))
    return rows


def test_the_check_finds_each_kind_of_bad_row(networks: dict[str, Network], tmp_path: Path) -> None:
    net = networks["junction"]
    network_id = uuid.uuid4()
    good = _day_of(net)
    (f, t) = next(iter(sorted(net.signals["A0"].movements())))
    bad = [
        ("A0", "nowhere", "elsewhere", 0, 900, 5),  # unknown movement
        ("A0", f, t, 900, 1800, -2),  # negative (and a second row of that interval)
        ("A0", f, t, 1000, 1900, 3),  # overlaps the one before
        ("A0", f, t, 3600, 3660, 900),  # 900 vehicles in a minute: absurd
    ]
    files = [
        _write(tmp_path / "good.parquet", good, str(network_id)),
        _write(tmp_path / "bad.parquet", bad, str(network_id)),
    ]
    clean = countstore.check(DuckDBEngine(), files[:1], net, network_id, DAY, DAY)
    assert clean == {"rows_checked": len(good), **dict.fromkeys(countstore.CHECK_KINDS, 0)}
    found = countstore.check(DuckDBEngine(), files, net, network_id, DAY, DAY)
    assert found["rows_checked"] == len(good) + len(bad)
    assert found["unknown_movement"] == 1
    assert found["negative"] == 1
    assert found["duplicate"] == 2  # 900 and 3600 are each counted twice
    assert found["overlap"] >= 1
    assert found["absurd"] == 1
    # Another network's rows are not this one's.
    assert countstore.check(DuckDBEngine(), files, net, uuid.uuid4(), DAY, DAY)["rows_checked"] == 0


def test_time_of_day_plans_come_from_the_kept_profile(
    networks: dict[str, Network], tmp_path: Path
) -> None:
    net = networks["junction"]
    network_id = uuid.uuid4()
    files = [_write(tmp_path / "day.parquet", _day_of(net), str(network_id))]
    profile = countstore.profile(DuckDBEngine(), files, network_id, DAY, DAY)
    assert len(profile) == 12 * 96
    assert all(r.days == 1 for r in profile)
    planned = timeofday.plan_kept(net, profile, Limits(), max_periods=4)
    periods = [p.period for p in planned]
    assert 2 <= len(periods) <= 4
    assert sum(p.length_s for p in periods) == 86400
    # The peaks (07:00-10:00 and 17:00-19:00) are periods of their own, with longer cycles
    # than the quiet ones' or at least as long.
    busy = [p for p in planned if 8 * 3600 in p.period or 18 * 3600 in p.period]
    quiet = [p for p in planned if 3 * 3600 in p.period]
    assert busy
    assert quiet
    assert all(3 * 3600 not in p.period for p in busy)
    assert min(p.plans[0].cycle for p in busy) >= max(p.plans[0].cycle for p in quiet)
    assert all(len(p.plans) == len(net.signals) for p in planned)


def _design_demand_by_rows(
    rows: list[countstore.ProfileRow],
) -> dict[str, dict[tuple[str, str], float]]:
    """The design demand as a loop over the rows finds it: per signal, the first of the hours
    (four slots from a slot it has) with the most vehicles over its movements."""
    by_signal: dict[str, dict[tuple[str, str], dict[int, float]]] = {}
    for r in sorted(rows, key=lambda r: (r.tls_id, r.from_edge, r.to_edge, r.slot_s)):
        by_signal.setdefault(r.tls_id, {}).setdefault((r.from_edge, r.to_edge), {})[r.slot_s] = (
            r.flow_vph
        )
    demand: dict[str, dict[tuple[str, str], float]] = {}
    for signal, movements in by_signal.items():
        slots = sorted({s for flows in movements.values() for s in flows})
        totals = {s: sum(flows.get(s, 0.0) for flows in movements.values()) for s in slots}
        best, most = slots[0], -1.0
        for start in slots:
            total = sum(totals.get(start + k * 900, 0.0) for k in range(4))
            if total > most:
                best, most = start, total
        demand[signal] = {
            m: sum(flows.get(best + k * 900, 0.0) for k in range(4)) / 4
            for m, flows in movements.items()
        }
    return demand


_profile_rows = st.lists(
    st.builds(
        countstore.ProfileRow,
        tls_id=st.sampled_from(["A0", "A1", "B0", "é2"]),
        from_edge=st.sampled_from(["x", "y", "A1A0"]),
        to_edge=st.sampled_from(["z", "B0A0"]),
        slot_s=st.integers(0, 99).map(lambda k: k * 900),
        vehicles=st.integers(-5, 2000),
        days=st.integers(0, 31),
    ),
    max_size=60,
    unique_by=lambda r: (r.tls_id, r.from_edge, r.to_edge, r.slot_s),
)


@settings(max_examples=200, deadline=None)
@given(rows=_profile_rows, seed=st.randoms(use_true_random=False))
def test_the_columnar_profile_gives_the_design_demand_of_its_rows(
    rows: list[countstore.ProfileRow], seed: random.Random
) -> None:
    # Given a profile's rows in any order
    shuffled = list(rows)
    seed.shuffle(shuffled)
    # When they are held in columns
    table = countstore.Profile.of_rows(shuffled)
    # Then they read back in order of movement and slot, and give the same design demand and
    # day profile, to the last bit
    ordered = sorted(rows, key=lambda r: (r.tls_id, r.from_edge, r.to_edge, r.slot_s))
    assert list(table) == ordered
    assert table == ordered
    assert len(table) == len(rows)
    assert countstore.design_demand(table) == _design_demand_by_rows(rows)
    assert countstore.design_demand(shuffled) == _design_demand_by_rows(rows)
    if rows:
        assert table[0] == ordered[0]
        assert table[-1] == ordered[-1]
        assert table[1:3] == ordered[1:3]
        assert table.flow_vph.tolist() == [r.flow_vph for r in ordered]
        # The day's profile: each row in its quarter of the day (a later slot that folds onto
        # an earlier one's quarter replaces it, as a loop over the rows in order does).
        day = timeofday.profile_of_slots(shuffled)
        flows: dict[tuple[int, int], float] = {}
        observed: dict[tuple[int, int], int] = {}
        for r in ordered:
            at = ((r.slot_s % 86400) // 900, day.keys.index((r.tls_id, r.from_edge, r.to_edge)))
            flows[at], observed[at] = r.flow_vph, r.days * 900
        for at, flow in flows.items():
            assert day.flows[at] == flow
            assert day.observed[at] == observed[at]
        assert int((~np.isnan(day.flows)).sum()) == len(flows)


def _findings_by_rows(
    rows: list[tuple[str, str, str, int, int, int]], known: set[tuple[str, str, str]]
) -> dict[str, int]:
    """Duplicates (intervals kept more than once, each counted once) and overlaps (rows that
    begin before the row before them ends, per movement in order of the intervals)."""
    by_movement: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    for s, f, t, begin, end, _ in rows:
        by_movement.setdefault((s, f, t), []).append((begin, end))
    duplicate = overlap = 0
    for intervals in by_movement.values():
        intervals.sort()
        begins = [b for b, _ in intervals]
        duplicate += sum(1 for b in set(begins) if begins.count(b) > 1)
        overlap += sum(1 for k in range(1, len(intervals)) if intervals[k - 1][1] > begins[k])
    return {
        "rows_checked": len(rows),
        "unknown_movement": sum(1 for r in rows if r[:3] not in known),
        "negative": sum(1 for r in rows if r[5] < 0),
        "duplicate": duplicate,
        "overlap": overlap,
    }


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    picks=st.lists(
        st.tuples(
            st.integers(0, 3),  # a movement (3: one the network lacks)
            st.integers(0, 7).map(lambda k: k * 450),  # begins on the half quarter
            st.sampled_from([300, 450, 900]),
            st.integers(-1, 40),
        ),
        max_size=40,
    )
)
def test_the_check_counts_each_repeated_interval_once_and_each_overlap(
    networks: dict[str, Network], tmp_path_factory: pytest.TempPathFactory, picks: list[Pick]
) -> None:
    # Given kept rows with intervals repeated (twice, three times) and overlapping
    net = networks["junction"]
    movements = [*sorted(net.signals["A0"].movements())[:3], ("nowhere", "elsewhere")]
    rows = [
        ("A0", *movements[m], begin, begin + length, vehicles)
        for m, begin, length, vehicles in picks
    ]
    network_id = uuid.uuid4()
    folder = tmp_path_factory.mktemp("check")
    files = [_write(folder / "kept.parquet", rows, str(network_id))] if rows else []
    # When they are checked
    found = countstore.check(DuckDBEngine(), files, net, network_id, DAY, DAY)
    # Then each kind is what a loop over the rows finds
    expected = _findings_by_rows(rows, {("A0", f, t) for f, t in movements[:3]})
    assert {k: found[k] for k in expected} == expected
