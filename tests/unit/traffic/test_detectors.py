"""Detector counts: a mapping validated whole, counts split without making or losing a vehicle,
and every bad input refused with its line, never a crash."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicloud.core.csvsafe import read_csv
from civicloud.traffic.counts import (
    COLUMNS,
    KIND_LABELS,
    CountsReport,
    read_counts,
    require_clean,
)
from civicloud.traffic.detectors import (
    MAPPING_KIND_LABELS,
    UNITS,
    Detector,
    DetectorMapping,
    Movement,
    convert,
    movement_csv,
    read_any_counts,
    read_detector_counts,
    read_mapping,
)
from civicloud.traffic.errors import CountsRejected, CountsUnreadable, MappingRejected
from civicloud.traffic.network import Edge, Link, Network, Phase, Program, Signal

MAP_HEADER = "detector_id,tls_id,from_edge,to_edge,lane,share\n"
COUNTS_HEADER = "interval_begin,interval_end,detector_id,count\n"
#: The generated junction's northern approach: lane 0 serves the right turn and straight on,
#: lane 1 straight on, lane 2 the left turn.
NORTH = "top0A0.220.00"
RIGHT, STRAIGHT, LEFT = "A0left0", "A0bottom0", "A0right0"


def _lines(*rows: str) -> str:
    return "".join(r + "\n" for r in rows)


def _accepted(report: CountsReport) -> dict[tuple[str, float], float]:
    return {(c.to_edge, c.begin): c.count for c in report.accepted}


def test_a_shared_loop_is_split_by_its_shares(networks: dict[str, Network]) -> None:
    # Given a loop that counts the right turn and the straight movement of one approach
    net = networks["junction"]
    mapping = read_mapping(
        MAP_HEADER + _lines(f"d1,A0,{NORTH},{RIGHT},,0.25", f"d1,A0,{NORTH},{STRAIGHT},,0.75"),
        net,
    )
    # When its counts are converted
    report = read_detector_counts(
        COUNTS_HEADER + _lines("0,900,d1,100", "900,1800,d1,7"), mapping, net
    )
    # Then every vehicle is in one movement, whole, on the detector file's lines
    require_clean(report)
    assert _accepted(report) == {
        (RIGHT, 0.0): 25,
        (STRAIGHT, 0.0): 75,
        (RIGHT, 900.0): 2,  # 1.75 and 5.25: the larger remainder takes the odd vehicle
        (STRAIGHT, 900.0): 5,
    }
    assert report.rows == 2


def test_a_lane_detector_splits_evenly_over_the_lanes_movements(
    networks: dict[str, Network],
) -> None:
    # Given detectors by lane: lane 0 (right and straight), lane 1 (straight) by SUMO's lane id
    net = networks["junction"]
    mapping = read_mapping(
        MAP_HEADER + _lines(f"d0,A0,{NORTH},,0,", f"d1,A0,{NORTH},,{NORTH}_1,"), net
    )
    assert mapping.detectors["d0"].movements == (
        Movement("A0", NORTH, RIGHT, "r"),
        Movement("A0", NORTH, STRAIGHT, "s"),
    )
    # When lane 0 counts 11 and lane 1 counts 20 in the same interval
    report = read_detector_counts(
        COUNTS_HEADER + _lines("0,900,d0,11", "0,900,d1,20"), mapping, net
    )
    # Then lane 0's count is halved (the tie goes to the movement named first) and the straight
    # movement gets both lanes' parts
    assert _accepted(require_clean(report)) == {(RIGHT, 0.0): 6, (STRAIGHT, 0.0): 5 + 20}


def test_a_lane_detector_with_shares_per_movement(networks: dict[str, Network]) -> None:
    net = networks["junction"]
    mapping = read_mapping(
        "detector_id,tls_id,from_edge,lane,to_edge,share\n"
        + _lines(f"d0,A0,{NORTH},0,{RIGHT},0.2", f"d0,A0,{NORTH},0,{STRAIGHT},0.8"),
        net,
    )
    report = read_detector_counts(COUNTS_HEADER + _lines("0,900,d0,50"), mapping, net)
    assert _accepted(require_clean(report)) == {(RIGHT, 0.0): 10, (STRAIGHT, 0.0): 40}


def test_a_missing_share_column_means_one(networks: dict[str, Network]) -> None:
    net = networks["junction"]
    mapping = read_mapping(
        "detector_id,tls_id,from_edge,to_edge\n" + _lines(f"d,A0,{NORTH},{LEFT}"), net
    )
    assert mapping.detectors["d"].parts == (UNITS,)


def test_every_bad_mapping_row_is_reported_with_its_line(networks: dict[str, Network]) -> None:
    net = networks["junction"]
    rows = [
        f"ok,A0,{NORTH},{LEFT},,1",  # line 2: fine
        f"a,NOPE,{NORTH},{LEFT},,1",  # 3: unknown signal
        f"b,A0,nowhere,{LEFT},,1",  # 4: unknown road
        f"c,A0,{NORTH},elsewhere,,1",  # 5: unknown road
        f"d,A0,{NORTH},A0top0,,1",  # 6: a road, but no movement of the signal
        f"e,A0,{NORTH},,7,1",  # 7: no such lane
        f"f,A0,{NORTH},,x,1",  # 8: not a lane
        f"g,A0,{NORTH},{LEFT},0,1",  # 9: lane 0 does not turn left
        f"h,A0,{NORTH},{LEFT},,lots",  # 10: unreadable share
        f"i,A0,{NORTH},{LEFT},,nan",  # 11: not a number
        f"j,A0,{NORTH},{LEFT},,-0.5",  # 12: negative
        f"k,A0,{NORTH},{LEFT},,0.5",  # 13: k's shares sum to 0.9
        f"k,A0,{NORTH},{RIGHT},,0.4",  # 14
        f"ok,A0,{NORTH},{LEFT},,1",  # 15: the same row again
        f"l,A0,{NORTH},,,1",  # 16: neither a movement nor a lane
        f",A0,{NORTH},{LEFT},,1",  # 17: no detector
    ]
    with pytest.raises(MappingRejected) as caught:
        read_mapping(MAP_HEADER + _lines(*rows), net)
    error = caught.value
    assert error.code == "traffic.mapping_rejected"
    found = [(f["line"], f["kind"]) for f in error.extra["findings"]]
    assert found == [
        (3, "unknown_signal"),
        (4, "unknown_edge"),
        (5, "unknown_edge"),
        (6, "unknown_movement"),
        (7, "unknown_lane"),
        (8, "unknown_lane"),
        (9, "unknown_movement"),
        (10, "bad_share"),
        (11, "bad_share"),
        (12, "negative_share"),
        (13, "shares_not_one"),
        (15, "duplicate_row"),
        (16, "incomplete"),
        (17, "incomplete"),
    ]
    assert "14 of 16 detector mapping rows were refused (first: line 3" in error.detail
    assert {kind for _, kind in found} <= set(MAPPING_KIND_LABELS)


def test_shares_within_a_millionth_of_one_are_taken_whole(networks: dict[str, Network]) -> None:
    net = networks["junction"]
    mapping = read_mapping(
        MAP_HEADER
        + _lines(
            f"d,A0,{NORTH},{RIGHT},,0.333333",
            f"d,A0,{NORTH},{STRAIGHT},,0.333333",
            f"d,A0,{NORTH},{LEFT},,0.333333",
        ),
        net,
    )
    assert sum(mapping.detectors["d"].parts) == UNITS
    report = require_clean(read_detector_counts(COUNTS_HEADER + "0,900,d,3\n", mapping, net))
    assert sorted(_accepted(report).values()) == [1, 1, 1]
    with pytest.raises(MappingRejected):
        read_mapping(
            MAP_HEADER + _lines(f"d,A0,{NORTH},{RIGHT},,0.5", f"d,A0,{NORTH},{LEFT},,0.49999"), net
        )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "is empty"),
        (b"\xff\xfe\x00bad,header\n", "not UTF-8"),
        (b"detector,signal,edge\nd,A0,x\n", "lacks the columns detector_id, tls_id, from_edge"),
        (MAP_HEADER.encode(), "maps no detector"),
        (b"\xef\xbb\xbf" + MAP_HEADER.encode() + b"\n\n", "maps no detector"),
        # A cell longer than the csv module reads (its field size limit).
        (MAP_HEADER.encode() + b'd,A0,"' + b"x" * 200_000 + b'"\n', "cannot be read"),
    ],
)
def test_unreadable_mappings_are_refused(
    networks: dict[str, Network], content: bytes, says: str
) -> None:
    with pytest.raises(MappingRejected) as caught:
        read_mapping(content, networks["junction"])
    assert says in caught.value.detail


def test_a_truncated_mapping_is_refused_at_its_last_line(networks: dict[str, Network]) -> None:
    net = networks["junction"]
    whole = MAP_HEADER + _lines(f"d,A0,{NORTH},{RIGHT},,0.5", f"d,A0,{NORTH},{STRAIGHT},,0.5")
    with pytest.raises(MappingRejected) as caught:
        read_mapping(whole[: whole.rindex(STRAIGHT) + 3], net)
    assert [(f["line"], f["kind"]) for f in caught.value.extra["findings"]] == [(3, "unknown_edge")]


@pytest.fixture(scope="module")
def north(networks: dict[str, Network]) -> DetectorMapping:
    return read_mapping(
        MAP_HEADER + _lines(f"d0,A0,{NORTH},,0,", f"d1,A0,{NORTH},,1,", f"d2,A0,{NORTH},,2,"),
        networks["junction"],
    )


def test_every_bad_count_row_is_reported_with_the_detector_files_line(
    networks: dict[str, Network], north: DetectorMapping
) -> None:
    net = networks["junction"]
    rows = [
        "0,900,d1,10",  # 2: fine
        "0,900,nobody,10",  # 3: unknown detector
        "900,1800,d1,NaN",  # 4: not a number
        "900,1800,d1,inf",  # 5: not a number
        "900,1800,d1,-3",  # 6: negative
        "900,1800,d1,2.5",  # 7: fractional
        "x,1800,d1,1",  # 8: unreadable time
        "1800,900,d1,1",  # 9: ends before it begins
        "0,900,d1,11",  # 10: the same interval with another count
        "0,900,d1,10",  # 11: the same row again: counted once
        "450,1350,d1,4",  # 12: overlaps line 2's interval of the straight movement
        "1800,2700,d2,999999",  # 13: more than the left-turn lane carries
        "2026-12-01T08:00:00,2026-12-01T08:15:00,d1,1",  # 14: a time without a zone
        "0,900,d1",  # 15: truncated
    ]
    report = read_detector_counts(COUNTS_HEADER + _lines(*rows), north, net)
    assert [(f.line, f.kind) for f in report.rejected] == [
        (3, "unknown_detector"),
        (4, "unreadable"),
        (5, "unreadable"),
        (6, "negative"),
        (7, "fractional"),
        (8, "unreadable"),
        (9, "bad_interval"),
        (10, "conflicting_duplicate"),
        (12, "overlap"),
        (13, "absurd"),
        (14, "unreadable"),
        (15, "unreadable"),
    ]
    assert [(d.line, d.kind) for d in report.duplicates] == [(11, "duplicate")]
    assert report.rows == 14
    assert {f.kind for f in report.rejected} <= set(KIND_LABELS)
    with pytest.raises(CountsRejected) as caught:
        require_clean(report)
    assert "12 of 14 count rows were rejected (first: line 3, unknown detector)" in (
        caught.value.detail
    )


def test_gaps_between_a_detectors_intervals_are_reported(
    networks: dict[str, Network], north: DetectorMapping
) -> None:
    net = networks["junction"]
    report = read_detector_counts(
        COUNTS_HEADER + _lines("0,900,d1,5", "1800,2700,d1,5"), north, net
    )
    assert [(g.line, g.kind) for g in require_clean(report).gaps] == [(3, "gap")]


def test_iso_times_are_kept_as_written(
    networks: dict[str, Network], north: DetectorMapping
) -> None:
    net = networks["junction"]
    text = COUNTS_HEADER + _lines(
        "2026-12-01T08:00:00+08:00,2026-12-01T08:15:00+08:00,d2,9",
        "2026-12-01T00:15:00Z,2026-12-01T00:30:00Z,d2,3",
    )
    conversion = convert(text, north, net)
    assert require_clean(conversion.report).absolute_times
    assert [(r["interval_begin"], r["count"]) for r in conversion.rows] == [
        ("2026-12-01T08:00:00+08:00", "9"),
        ("2026-12-01T00:15:00Z", "3"),
    ]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "is empty"),
        (b"\xff\xfe\x00bad", "not UTF-8"),
        (
            b"interval_begin,interval_end,tls_id,from_edge,to_edge,count\n0,900,A0,a,b,1\n",
            "lacks the columns detector_id",
        ),
        (COUNTS_HEADER.encode() + b'0,900,"' + b"d" * 200_000 + b'",1\n', "cannot be read"),
    ],
)
def test_unreadable_detector_counts_are_refused(
    networks: dict[str, Network], north: DetectorMapping, content: bytes, says: str
) -> None:
    with pytest.raises(CountsUnreadable) as caught:
        read_detector_counts(content, north, networks["junction"])
    assert says in caught.value.detail


def test_without_a_mapping_counts_are_movement_counts(networks: dict[str, Network]) -> None:
    net = networks["junction"]
    text = "interval_begin,interval_end,tls_id,from_edge,to_edge,count\n" + (
        f"0,900,A0,{NORTH},{LEFT},4\n"
    )
    assert _accepted(read_any_counts(text, net)) == {(LEFT, 0.0): 4}
    mapping = MAP_HEADER + f"d,A0,{NORTH},{LEFT},,\n"
    assert _accepted(read_any_counts(COUNTS_HEADER + "0,900,d,4\n", net, mapping)) == {
        (LEFT, 0.0): 4
    }


def _minus_network() -> Network:
    """A one-signal network whose roads have SUMO's ids of a road's other direction (``-E0``):
    a spreadsheet would run them as formulas, so the CSV written for people prefixes them."""
    width, speed = 3.2, 13.9
    links = (
        Link(0, "-E0", 0, "-E2", 0, "r", 8.0, speed, width),
        Link(1, "-E0", 0, "E1", 0, "s", 10.0, speed, width),
        Link(2, "-E0", 1, "E1", 1, "s", 10.0, speed, width),
    )
    program = Program("0", "static", 0.0, (Phase(30.0, "GGG"), Phase(3.0, "yyy")))
    signal = Signal("=J1", links, {"0": program}, "0", frozenset(), ("J1",), 0.0, 0.0)
    edges = {
        e: Edge(e, "a", "b", 100.0, 2, speed, ((0.0, 0.0), (100.0, 0.0)))
        for e in ("-E0", "E1", "-E2")
    }
    return Network({"=J1": signal}, edges, (0.0, 0.0, 100.0, 100.0))


def test_the_movement_csv_is_safe_in_a_spreadsheet_and_reads_back() -> None:
    # Given a network whose ids start with - and =, and a detector on its shared lane
    net = _minus_network()
    mapping = read_mapping(MAP_HEADER + "d,=J1,-E0,,0,\n", net)
    conversion = convert(COUNTS_HEADER + "0,900,d,9\n", mapping, net)
    # When the movement counts are written out
    content = movement_csv(conversion)
    # Then the file has a BOM, no cell a spreadsheet would run, and reads back as the same counts
    assert content.startswith("\ufeff".encode())
    text = content.decode("utf-8-sig")
    assert '"\'-E0"' in text
    assert '"-E0"' not in text
    assert read_csv(content)[0] == list(COLUMNS)
    again = require_clean(read_counts(content, net))
    assert set(again.accepted) == set(require_clean(conversion.report).accepted)
    assert {(c.from_edge, c.to_edge, c.count) for c in again.accepted} == {
        ("-E0", "-E2", 5),
        ("-E0", "E1", 4),
    }


# Properties.


@st.composite
def _parts(draw: st.DrawFn) -> tuple[int, ...]:
    cuts = sorted(draw(st.lists(st.integers(0, UNITS), min_size=0, max_size=6)))
    bounds = [0, *cuts, UNITS]
    return tuple(b - a for a, b in itertools.pairwise(bounds))


@given(parts=_parts(), count=st.integers(0, 10**12))
def test_a_split_keeps_every_vehicle_and_rounds_each_part_once(
    parts: tuple[int, ...], count: int
) -> None:
    movements = tuple(Movement("A0", "f", f"t{i}", "s") for i in range(len(parts)))
    split = Detector("d", 2, movements, parts).split(count)
    assert sum(split) == count
    for got, part in zip(split, parts, strict=True):
        assert abs(got - Fraction(count * part, UNITS)) < 1


@st.composite
def _detector_day(draw: st.DrawFn, movements: list[tuple[str, str]]) -> tuple[str, str]:
    """A mapping of 1-4 detectors, each over 1-4 movements with drawn shares, and their counts."""
    mapping = [MAP_HEADER]
    for d in range(draw(st.integers(1, 4))):
        chosen = draw(st.lists(st.sampled_from(movements), min_size=1, max_size=4, unique=True))
        weights = draw(st.lists(st.integers(1, 1000), min_size=len(chosen), max_size=len(chosen)))
        for (f, t), w in zip(chosen, weights, strict=True):
            mapping.append(f"d{d},A0,{f},{t},,{w / sum(weights)!r}\n")
    detectors = len({line.split(",")[0] for line in mapping[1:]})
    counts = [COUNTS_HEADER]
    for begin in range(0, 900 * draw(st.integers(1, 4)), 900):
        for d in range(detectors):
            counts.append(f"{begin},{begin + 900},d{d},{draw(st.integers(0, 150))}\n")
    return "".join(mapping), "".join(counts)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_vehicle_is_made_or_lost_under_share_splits(
    networks: dict[str, Network], data: st.DataObject
) -> None:
    # Given detectors mapped onto the junction's movements with any shares, and their counts
    net = networks["junction"]
    movements = sorted(net.signals["A0"].movements())
    mapping_text, counts_text = data.draw(_detector_day(movements))
    mapping = read_mapping(mapping_text, net)
    # When they are converted
    conversion = convert(counts_text, mapping, net)
    report = require_clean(conversion.report)
    # Then each interval's movement counts add up to its detector counts, whole
    detector_total: dict[float, int] = {}
    for row in counts_text.splitlines()[1:]:
        begin, _, _, count = row.split(",")
        detector_total[float(begin)] = detector_total.get(float(begin), 0) + int(count)
    movement_total: dict[float, float] = {}
    for c in report.accepted:
        assert c.count == int(c.count) >= 0
        movement_total[c.begin] = movement_total.get(c.begin, 0) + c.count
    assert movement_total == detector_total
    # and each movement is within one vehicle per detector of its exact share
    exact: dict[tuple[str, str, float], Fraction] = {}
    shares = [line.split(",") for line in mapping_text.splitlines()[1:]]
    for row in counts_text.splitlines()[1:]:
        begin, _, detector_id, count = row.split(",")
        weights = [(f, t, Fraction(s)) for d, _, f, t, _, s in shares if d == detector_id]
        total = sum(w for _, _, w in weights)
        for f, t, w in weights:
            key = (f, t, float(begin))
            exact[key] = exact.get(key, Fraction(0)) + int(count) * w / total
    got = {(c.from_edge, c.to_edge, c.begin): c.count for c in report.accepted}
    for key, value in exact.items():
        assert abs(got[key] - value) < len(mapping.detectors)


_DETECTORS = ["d0", "d1", "", "-x", "d 0"]
_SIGNALS = ["A0", "NOPE", "", "a0"]
_FROM = [NORTH, "right0A0.220.00", "nowhere", "", "A0left0"]
_TO = [RIGHT, STRAIGHT, LEFT, "A0top0", "", "elsewhere"]
_LANES = ["", "0", "1", "2", "3", "-1", "x", f"{NORTH}_1", "0.5", "\u0661"]
_SHARES = ["", "1", "0.5", "0.25", "0", "-0.5", "nan", "inf", "-inf", "abc", "1e-999999999", "2"]
_CELLS = st.sampled_from(["", ",", '"', "\x00", "\ufeff", "\r", "\n", "é"])


@st.composite
def _mapping_text(draw: st.DrawFn) -> str:
    header = draw(
        st.sampled_from(
            [
                MAP_HEADER,
                "detector_id,tls_id,from_edge,to_edge\n",
                "DETECTOR_ID,tls_id,from_edge,lane\n",
            ]
        )
    )
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(_DETECTORS),
                st.sampled_from(_SIGNALS),
                st.sampled_from(_FROM),
                st.sampled_from(_TO),
                st.sampled_from(_LANES),
                st.sampled_from(_SHARES),
            ),
            max_size=8,
        )
    )
    text = header + "".join(",".join(r) + "\n" for r in rows)
    cut = draw(st.integers(0, len(text)))
    return text[:cut] + draw(_CELLS) if draw(st.booleans()) else text


def _mapping_or_refusal(content: bytes | str, net: Network) -> DetectorMapping | MappingRejected:
    try:
        return read_mapping(content, net)
    except MappingRejected as refused:
        return refused


def _check_mapping(outcome: DetectorMapping | MappingRejected, net: Network) -> None:
    """A refusal says why (each finding with a row's line and a labelled kind); a mapping gives
    every detector movements of the signal and parts that add up to the whole."""
    if isinstance(outcome, MappingRejected):
        assert outcome.detail
        for finding in outcome.extra.get("findings", []):
            assert finding["kind"] in MAPPING_KIND_LABELS
            assert finding["line"] >= 2
        return
    for detector in outcome.detectors.values():
        assert sum(detector.parts) == UNITS
        assert all(part >= 0 for part in detector.parts)
        assert detector.movements
        for movement in detector.movements:
            assert (movement.from_edge, movement.to_edge) in net.signals["A0"].movements()


@settings(max_examples=300, deadline=None)
@given(text=_mapping_text())
def test_any_mapping_validates_or_is_refused_with_findings(
    networks: dict[str, Network], text: str
) -> None:
    net = networks["junction"]
    _check_mapping(_mapping_or_refusal(text, net), net)


@settings(max_examples=60, deadline=None)
@given(content=st.binary(max_size=200))
def test_any_bytes_as_a_mapping_are_refused_or_read(
    networks: dict[str, Network], content: bytes
) -> None:
    net = networks["junction"]
    _check_mapping(_mapping_or_refusal(MAP_HEADER.encode() + content, net), net)


_TIMES = ["0", "900", "1800", "-900", "nan", "inf", "1e400", "x", "", "2026-12-01T08:00:00Z"]
_COUNTS = ["0", "1", "10", "-1", "2.5", "NaN", "inf", "-inf", "1e308", "1e309", "", "x", "7e2"]


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(_TIMES),
            st.sampled_from(_TIMES),
            st.sampled_from(["d0", "d1", "d2", "nobody", ""]),
            st.sampled_from(_COUNTS),
        ),
        max_size=10,
    ),
    tail=st.one_of(st.just(""), _CELLS),
)
def test_any_detector_counts_are_reported_or_refused_never_a_crash(
    networks: dict[str, Network],
    north: DetectorMapping,
    rows: list[tuple[str, str, str, str]],
    tail: str,
) -> None:
    net = networks["junction"]
    text = COUNTS_HEADER + "".join(",".join(r) + "\n" for r in rows) + tail
    outcome: CountsReport | CountsUnreadable
    try:
        outcome = read_detector_counts(text, north, net)
    except CountsUnreadable as refused:
        outcome = refused
    if isinstance(outcome, CountsUnreadable):
        assert outcome.detail
        return
    # Every finding has a label (require_clean names the first), and a clean report is whole
    assert {f.kind for f in outcome.rejected} <= set(KIND_LABELS)
    if outcome.rejected:
        with pytest.raises(CountsRejected) as caught:
            require_clean(outcome)
        assert caught.value.extra["findings"]
    else:
        assert all(c.count == int(c.count) >= 0 for c in require_clean(outcome).accepted)
