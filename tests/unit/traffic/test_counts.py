"""Counts: every kind of bad row reported with its line, nothing counted twice."""

from __future__ import annotations

import pytest

from civicloud.traffic.counts import design_demand, read_counts, require_clean
from civicloud.traffic.errors import CountsRejected, CountsUnreadable
from civicloud.traffic.network import Network

HEADER = "interval_begin,interval_end,tls_id,from_edge,to_edge,dir,count\n"


def _movement(net: Network) -> tuple[str, str]:
    return next(iter(net.signals["A0"].movements()))


def _csv(rows: list[str]) -> str:
    return HEADER + "".join(r + "\n" for r in rows)


def test_clean_counts_load_and_give_the_busiest_hour(networks: dict[str, Network]) -> None:
    net = networks["junction"]
    f, t = _movement(net)
    rows = [f"{b},{b + 900},A0,{f},{t},s,{50 if b < 3600 else 100}" for b in range(0, 7200, 900)]
    report = require_clean(read_counts(_csv(rows), net))
    assert report.summary() == {"rows": 8, "accepted": 8, "rejected": 0, "duplicates": 0, "gaps": 0}
    assert design_demand(report.accepted) == {"A0": {(f, t): 400.0}}


def test_iso_times_and_a_missing_dir_column(networks: dict[str, Network]) -> None:
    net = networks["junction"]
    f, t = _movement(net)
    text = (
        "interval_begin,interval_end,tls_id,from_edge,to_edge,count\n"
        f"2026-12-01T08:00:00+08:00,2026-12-01T08:15:00+08:00,A0,{f},{t},30\n"
        f"2026-12-01T08:15:00+08:00,2026-12-01T08:30:00+08:00,A0,{f},{t},30\n"
    )
    report = require_clean(read_counts(text.encode(), net))
    assert report.absolute_times
    # Half an hour counted: scaled to an hour.
    assert design_demand(report.accepted)["A0"][(f, t)] == pytest.approx(120.0)


def test_every_bad_row_is_reported_and_none_is_loaded(networks: dict[str, Network]) -> None:
    net = networks["junction"]
    f, t = _movement(net)
    rows = [
        f"0,900,A0,{f},{t},s,10",  # fine
        f"900,1800,NOPE,{f},{t},s,10",  # unknown signal
        f"900,1800,A0,{f},elsewhere,s,10",  # unknown movement
        f"900,1800,A0,{f},{t},s,-1",  # negative
        f"900,1800,A0,{f},{t},s,2.5",  # fractional
        f"1800,900,A0,{f},{t},s,1",  # ends before it begins
        f"1800,2700,A0,{f},{t},s,999999",  # absurd
        f"x,2700,A0,{f},{t},s,1",  # unreadable
        f"2700,3600,A0,{f},{t},s,5",
        f"3000,3900,A0,{f},{t},s,5",  # overlaps the one before
        f"2700,3600,A0,{f},{t},s,6",  # the same interval with another count
        f"2026-12-01T08:00:00,2026-12-01T08:15:00,A0,{f},{t},s,1",  # a time without a zone
    ]
    report = read_counts(_csv(rows), net)
    kinds = sorted(finding.kind for finding in report.rejected)
    assert kinds == sorted(
        [
            "unknown_signal",
            "unknown_movement",
            "negative",
            "fractional",
            "bad_interval",
            "absurd",
            "unreadable",
            "overlap",
            "conflicting_duplicate",
            "unreadable",
        ]
    )
    assert {finding.line for finding in report.rejected} >= {3, 4, 5, 6, 7, 8, 9, 11, 12, 13}
    with pytest.raises(CountsRejected) as caught:
        require_clean(report)
    assert caught.value.report is report
    assert "10 of 12" in caught.value.detail


def test_a_resent_row_is_counted_once_and_a_gap_is_reported(
    networks: dict[str, Network],
) -> None:
    net = networks["junction"]
    f, t = _movement(net)
    rows = [f"0,900,A0,{f},{t},s,10", f"0,900,A0,{f},{t},s,10", f"1800,2700,A0,{f},{t},s,10"]
    report = require_clean(read_counts(_csv(rows), net))
    assert len(report.accepted) == 2
    assert [d.line for d in report.duplicates] == [3]
    assert [g.kind for g in report.gaps] == ["gap"]
    assert sum(c.count for c in report.accepted) == 20


def test_a_zero_count_day_loads_with_no_demand(networks: dict[str, Network]) -> None:
    net = networks["junction"]
    rows = [
        f"{b},{b + 900},A0,{f},{t},,0"
        for b in range(0, 86400, 900)
        for (f, t) in net.signals["A0"].movements()
    ]
    report = require_clean(read_counts(_csv(rows), net))
    assert set(design_demand(report.accepted)["A0"].values()) == {0.0}


@pytest.mark.parametrize(
    "content",
    [b"", b"a,b,c\n1,2,3\n", b"interval_begin,interval_end,tls_id\n", b"\xff\xfe\x00bad"],
)
def test_unreadable_files_are_refused(networks: dict[str, Network], content: bytes) -> None:
    with pytest.raises(CountsUnreadable):
        read_counts(content, networks["junction"])
