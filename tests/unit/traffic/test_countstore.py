"""The kept counts' checks and crunch over Parquet files written as the store writes them: each
kind of bad row is found by the one SQL pass, and the time-of-day plans come from the profile."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from civicloud.traffic import countstore, timeofday
from civicloud.traffic.countstore import DuckDBEngine
from civicloud.traffic.network import Network
from civicloud.traffic.optimize import Limits

DAY = date(2026, 11, 2)
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
