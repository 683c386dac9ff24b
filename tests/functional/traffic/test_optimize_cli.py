"""``civicloud traffic optimize`` end to end: a generated network and counts in, a plan SUMO
loads (and SUMO's own ``tls_check.py`` accepts) and timing sheets out; bad input gets one line
and a non-zero exit."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from tests.factories.traffic import HEADER, counts_csv
from tests.functional.traffic.conftest import Run

from civicloud.traffic import simulate, sumo
from civicloud.traffic.network import Network, read_network


@pytest.fixture(scope="module")
def corridor(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Network]:
    path = sumo.generate("corridor", tmp_path_factory.mktemp("net") / "corridor.net.xml")
    return path, read_network(path)


def _run_and_check(net_path: Path, out: Path, tmp_path: Path) -> tuple[Path, str]:
    """SUMO loads the plan ``out`` beside the network and runs it without a warning about the
    signals; then netconvert puts the plan into a copy of the network (SUMO's checker of signal
    programs reads them from a network): that copy, and what ``tls_check.py`` says of it."""
    log = tmp_path / "sumo.log"
    sumo.run(
        [sumo.binary("sumo"), "-n", net_path, "-a", out, "--end", "300", "--no-step-log",
         "--log", log]
    )  # fmt: skip
    assert "error" not in log.read_text().lower()
    merged = tmp_path / "merged.net.xml"
    sumo.run(
        [sumo.binary("netconvert"), "-s", net_path, "--tllogic-files", out, "-o", merged],
        what="netconvert",
    )
    return merged, sumo.run([sumo.tool("tls/tls_check.py"), merged], what="tls_check")


def test_optimize_writes_a_plan_sumo_loads(
    corridor: tuple[Path, Network], tmp_path: Path, civicloud_traffic: Run
) -> None:
    net_path, net = corridor
    counts = tmp_path / "counts.csv"
    counts.write_text(counts_csv(net))
    out = tmp_path / "plan.add.xml"
    code, output = civicloud_traffic(
        "optimize",
        "--net",
        str(net_path),
        "--counts",
        str(counts),
        "--out",
        str(out),
        "--min-cycle",
        "60",
        "--max-cycle",
        "120",
    )
    assert code == 0, output
    assert "A0" in output
    assert "B0" in output
    assert "C0" in output
    sheet = json.loads((tmp_path / "plan.timing.json").read_text())
    assert [s["tls_id"] for s in sheet["signals"]] == ["A0", "B0", "C0"]
    for signal in sheet["signals"]:
        assert 60 <= signal["cycle_s"] <= 120
        assert sum(p["duration_s"] for p in signal["phases"]) == pytest.approx(signal["cycle_s"])
        assert signal["los"] in "ABCDEF"
    rows = list(csv.DictReader(io.StringIO((tmp_path / "plan.timing.csv").read_text("utf-8-sig"))))
    assert {r["tls_id"] for r in rows} == {"A0", "B0", "C0"}
    merged, report = _run_and_check(net_path, out, tmp_path)
    assert {p.id for s in read_network(merged).signals.values() for p in s.programs.values()} >= {
        "civicloud"
    }
    # SUMO's own checker of signal programs finds nothing wrong with them.
    assert "Checking program 'civicloud'" in report
    assert "error" not in report.lower()
    plan = read_network(net_path)  # the network itself is left as it was
    assert plan.signals.keys() == net.signals.keys()


def test_a_plan_for_a_junction_with_crossings_loads_and_checks_clean(
    tmp_path: Path, civicloud_traffic: Run
) -> None:
    """Pedestrian crossings (netconvert's guess): the plan keeps their walk and clearance, and
    SUMO and its checker take it."""
    net_path = sumo.generate("junction", tmp_path / "walk.net.xml", pedestrians=True)
    net = read_network(net_path)
    counts = tmp_path / "counts.csv"
    counts.write_text(counts_csv(net))
    out = tmp_path / "plan.add.xml"
    code, output = civicloud_traffic(
        "optimize", "--net", str(net_path), "--counts", str(counts), "--out", str(out)
    )
    assert code == 0, output
    _merged, report = _run_and_check(net_path, out, tmp_path)
    # tls_check counts vehicles' links only, so it says of netconvert's own program too that
    # its states are longer than the links (the crossings' letters): nothing else is wrong.
    sections = {part.split("'")[1]: part for part in report.split("Checking program ")[1:]}

    def _errors(text: str) -> set[str]:
        return {
            line.strip()
            for line in text.splitlines()
            if "error" in line.lower() and "signals instead of" not in line
        }

    assert "civicloud" in sections
    assert _errors(sections["civicloud"]) == set()
    assert "signals instead of" in sections["0"]  # the tool's own limit, not the plan's
    sheet = json.loads((tmp_path / "plan.timing.json").read_text())
    (signal,) = sheet["signals"]
    crossings = net.signals["A0"].crossings
    walk = [p for p in signal["phases"] if any(p["state"][c.index] in "Gg" for c in crossings)]
    assert min(p["duration_s"] for p in walk) >= 7


def test_bad_counts_get_one_line_and_exit_2(
    corridor: tuple[Path, Network], tmp_path: Path, civicloud_traffic: Run
) -> None:
    net_path, _net = corridor
    counts = tmp_path / "counts.csv"
    counts.write_text(HEADER + "0,900,A0,nowhere,elsewhere,s,10\n")
    out = tmp_path / "plan.add.xml"
    code, output = civicloud_traffic(
        "optimize", "--net", str(net_path), "--counts", str(counts), "--out", str(out)
    )
    assert code == 2
    assert "1 of 1 count rows were rejected" in output
    assert "unknown movement" in output
    assert "Traceback" not in output
    assert not out.exists()


def test_a_truncated_network_gets_one_line(
    corridor: tuple[Path, Network], tmp_path: Path, civicloud_traffic: Run
) -> None:
    net_path, net = corridor
    broken = tmp_path / "broken.net.xml"
    broken.write_bytes(net_path.read_bytes()[:5000])
    counts = tmp_path / "counts.csv"
    counts.write_text(counts_csv(net))
    code, output = civicloud_traffic(
        "optimize", "--net", str(broken), "--counts", str(counts), "--out", str(tmp_path / "p.xml")
    )
    assert code == 2
    assert "cannot be read" in output
    assert "Traceback" not in output


def test_bad_limits_get_one_line(
    corridor: tuple[Path, Network], tmp_path: Path, civicloud_traffic: Run
) -> None:
    net_path, net = corridor
    counts = tmp_path / "counts.csv"
    counts.write_text(counts_csv(net))
    code, output = civicloud_traffic(
        "optimize",
        "--net",
        str(net_path),
        "--counts",
        str(counts),
        "--out",
        str(tmp_path / "p.xml"),
        "--min-cycle",
        "120",
        "--max-cycle",
        "60",
    )
    assert code == 2
    assert "exceeds the maximum cycle" in output


@pytest.mark.slow
def test_the_plan_cuts_total_delay_in_sumo(
    corridor: tuple[Path, Network], tmp_path: Path, civicloud_traffic: Run
) -> None:
    net_path, net = corridor
    counts = tmp_path / "counts.csv"
    counts.write_text(counts_csv(net, main=110, side=35))
    out = tmp_path / "plan.add.xml"
    code, output = civicloud_traffic(
        "optimize", "--net", str(net_path), "--counts", str(counts), "--out", str(out)
    )
    assert code == 0, output
    code, output = civicloud_traffic(
        "evaluate",
        "--net",
        str(net_path),
        "--counts",
        str(counts),
        "--plan",
        str(out),
        "--seeds",
        "2",
    )
    assert code == 0, output
    # Progress on the way: one line per SUMO run (3 controls x 2 seeds).
    assert "[6/6]" in output
    rows = {
        line.split()[1]: line
        for line in output.splitlines()
        if line.strip().startswith("│") and line.split()[1] in {"network", "plan", "actuated"}
    }
    assert set(rows) == {"network", "plan", "actuated"}

    def total(name: str) -> float:
        return float(rows[name].split()[3])

    assert total("plan") < total("network")


def test_plans_that_do_not_fit_the_network_are_refused(
    corridor: tuple[Path, Network], tmp_path: Path
) -> None:
    from civicloud.traffic.errors import PlanUnreadable

    _, net = corridor
    cases = {
        "truncated": "<additional><tlLogic id=",
        "empty": "<additional/>",
        "stranger": '<additional><tlLogic id="Z9" type="static" programID="x" offset="0">'
        '<phase duration="30" state="GGrr"/></tlLogic></additional>',
        "short": '<additional><tlLogic id="A0" type="static" programID="x" offset="0">'
        '<phase duration="30" state="GGrr"/></tlLogic></additional>',
    }
    for name, text in cases.items():
        path = tmp_path / f"{name}.add.xml"
        path.write_text(text)
        with pytest.raises(PlanUnreadable):
            simulate.check_plan(path, net)


def _two_peaks(net: Network) -> str:
    """A day of 15-minute counts: quiet, busy from 07:00 to 09:00 and from 17:00 to 19:00."""
    rows = []
    for signal in net.signals.values():
        for (f, t), links in signal.movements().items():
            arterial = net.edges[f].shape[0][1] == net.edges[f].shape[-1][1]
            for begin in range(0, 86400, 900):
                busy = 7 <= begin // 3600 < 9 or 17 <= begin // 3600 < 19
                base = (120 if busy else 30) if arterial else (30 if busy else 10)
                count = base if links[0].dir == "s" else base // 5
                rows.append(f"{begin},{begin + 900},{signal.id},{f},{t},{links[0].dir},{count}")
    return HEADER + "\n".join(rows) + "\n"


def test_time_of_day_plans_switch_in_sumo(
    corridor: tuple[Path, Network], tmp_path: Path, civicloud_traffic: Run
) -> None:
    from civicloud.traffic.network import Phase
    from civicloud.traffic.optimize import conflicting_greens

    # Given a corridor counted over a day with a morning and an evening peak
    net_path, net = corridor
    counts = tmp_path / "counts.csv"
    counts.write_text(_two_peaks(net))
    out = tmp_path / "plan.add.xml"
    # When time-of-day plans are made
    code, output = civicloud_traffic(
        "optimize",
        "--net",
        str(net_path),
        "--counts",
        str(counts),
        "--out",
        str(out),
        "--time-of-day",
        "--periods",
        "4",
    )
    # Then the day has four periods, cut at the peaks, and the table shows each period's plans
    assert code == 0, output
    sheet = json.loads((tmp_path / "plan.timing.json").read_text())
    periods = sheet["periods"]
    assert [(p["name"], p["start"], p["end"]) for p in periods] == [
        ("p1", "07:00", "09:00"),
        ("p2", "09:00", "17:00"),
        ("p3", "17:00", "19:00"),
        ("p4", "19:00", "07:00"),
    ]
    assert "p3 17:00-19:00" in output
    assert "switches (every day): 07:00 civicloud-p1" in output
    # and each period has one set of rows per signal in both sheets
    for period in periods:
        assert [s["tls_id"] for s in period["signals"]] == ["A0", "B0", "C0"]
        assert period["program_id"] == f"civicloud-{period['name']}"
    assert periods[0]["signals"][1]["cycle_s"] >= periods[3]["signals"][1]["cycle_s"]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "plan.timing.csv").read_text("utf-8-sig"))))
    assert [r["period"] for r in rows] == sorted(r["period"] for r in rows)
    for period in periods:
        mine = [r for r in rows if r["period"] == period["name"]]
        assert {(r["period_start"], r["period_end"]) for r in mine} == {
            (period["start"], period["end"])
        }
        assert len(mine) == sum(len(s["phases"]) for s in period["signals"])
    # and no period's program shows a green to two conflicting streams
    import xml.etree.ElementTree as ET

    logics = ET.parse(out).getroot().findall("tlLogic")  # noqa: S314 - our own output
    assert len(logics) == 3 * 4
    for logic in logics:
        phases = [Phase(float(p.get("duration", "0")), p.get("state", "")) for p in logic]
        assert conflicting_greens(net.signals[logic.get("id", "")], phases) == []
    # When SUMO runs the plan with traffic for five minutes across the evening switch (17:00)
    switch = 17 * 3600
    routes = tmp_path / "flows.rou.xml"
    # The generated corridor's fringe edges, west and east of it.
    routes.write_text(
        "<routes>\n"
        f'    <flow id="east" from="left0A0" to="C0right0" begin="{switch - 150}" '
        f'end="{switch + 150}" vehsPerHour="900"/>\n'
        f'    <flow id="west" from="right0C0" to="A0left0" begin="{switch - 150}" '
        f'end="{switch + 150}" vehsPerHour="900"/>\n'
        "</routes>\n"
    )
    recorder = tmp_path / "record.add.xml"
    switches = tmp_path / "switches.xml"
    recorder.write_text(
        '<additional><timedEvent type="SaveTLSSwitchTimes" source="B0" '
        f'dest="{switches}"/></additional>\n'
    )
    log = tmp_path / "sumo.log"
    sumo.run(
        [
            sumo.binary("sumo"),
            "-n",
            net_path,
            "-a",
            f"{out},{recorder}",
            "-r",
            routes,
            "--begin",
            str(switch - 150),
            "--end",
            str(switch + 150),
            "--no-step-log",
            "--log",
            log,
        ]
    )
    # Then it runs without an error, the midday program before the switch, the evening's after
    assert "error" not in log.read_text().lower()
    # (SUMO records each green when it ends, under the program that runs then.)
    greens = [
        (float(s.get("begin", "0")), float(s.get("end", "0")), s.get("programID"))
        for s in ET.parse(switches).getroot().findall("tlsSwitch")  # noqa: S314
    ]
    assert {p for _, end, p in greens if end <= switch} == {"civicloud-p2"}
    assert {p for begin, _, p in greens if begin >= switch} == {"civicloud-p3"}
    assert "Inserted: " in log.read_text()


def test_time_of_day_refuses_bad_periods_and_a_single_interval(
    corridor: tuple[Path, Network], tmp_path: Path, civicloud_traffic: Run
) -> None:
    net_path, net = corridor
    counts = tmp_path / "counts.csv"
    counts.write_text(_two_peaks(net))
    out = tmp_path / "plan.add.xml"
    for periods in ("0", "9"):
        code, output = civicloud_traffic(
            "optimize",
            "--net",
            str(net_path),
            "--counts",
            str(counts),
            "--out",
            str(out),
            "--periods",
            periods,
        )
        assert code == 2
        assert f"The number of periods must be from 1 to 8 (given {periods})." in output
    one = [line for line in _two_peaks(net).splitlines() if line.startswith(("interval", "0,900,"))]
    counts.write_text("\n".join(one) + "\n")
    code, output = civicloud_traffic(
        "optimize",
        "--net",
        str(net_path),
        "--counts",
        str(counts),
        "--out",
        str(out),
        "--time-of-day",
    )
    assert code == 2
    assert "at least two intervals of the day" in output
    assert "Traceback" not in output
    assert not out.exists()


def _detector_files(net: Network) -> tuple[str, str]:
    """A detector mapping and detector counts that make exactly ``counts_csv(net)``'s movement
    counts, with each kind of mapping row:

    - signal A0: one stop-line zone per approach, its count shared over the approach's movements
      in proportion to their counts (``to_edge`` and ``share``);
    - the other signals: a loop per lane. A movement is counted on the lane of it that serves the
      fewest movements; a lane that counts exactly the one movement it serves is mapped by its
      lane alone, any other by lane and movement with shares.
    """
    movement_counts: dict[tuple[str, str, str], int] = {}
    for row in csv.DictReader(io.StringIO(counts_csv(net))):
        if row["interval_begin"] == "0":
            movement_counts[(row["tls_id"], row["from_edge"], row["to_edge"])] = int(row["count"])
    mapping = ["detector_id,tls_id,from_edge,to_edge,lane,share"]
    detector_counts: dict[str, int] = {}
    for signal in net.signals.values():
        served: dict[tuple[str, int], list[str]] = {}
        for link in signal.links:
            targets = served.setdefault((link.from_edge, link.from_lane), [])
            if link.to_edge not in targets:
                targets.append(link.to_edge)
        if signal.id == "A0":
            for approach in sorted({f for f, _ in signal.movements()}):
                mine = {
                    t: c for (s, f, t), c in movement_counts.items() if (s, f) == ("A0", approach)
                }
                total = sum(mine.values())
                detector = f"zone-{approach}"
                detector_counts[detector] = total
                mapping += [f"{detector},A0,{approach},{t},,{c / total!r}" for t, c in mine.items()]
            continue
        counted_on: dict[tuple[str, int], list[str]] = {}
        for f, t in signal.movements():
            lanes = [key for key, targets in served.items() if key[0] == f and t in targets]
            lane = min(lanes, key=lambda key: (len(served[key]), -key[1]))
            counted_on.setdefault(lane, []).append(t)
        for (f, lane), targets in counted_on.items():
            detector = f"loop-{f}_{lane}"
            mine = {t: movement_counts[(signal.id, f, t)] for t in targets}
            detector_counts[detector] = sum(mine.values())
            if targets == served[(f, lane)] and len(targets) == 1:
                mapping.append(f"{detector},{signal.id},{f},,{lane},")
            else:
                total = sum(mine.values())
                mapping += [
                    f"{detector},{signal.id},{f},{t},{lane},{c / total!r}" for t, c in mine.items()
                ]
    counts = ["interval_begin,interval_end,detector_id,count"]
    counts += [
        f"{b},{b + 900},{d},{c}" for b in range(0, 7200, 900) for d, c in detector_counts.items()
    ]
    return "\n".join(mapping) + "\n", "\n".join(counts) + "\n"


def test_detector_counts_give_the_plan_of_their_movement_counts(
    corridor: tuple[Path, Network], tmp_path: Path, civicloud_traffic: Run
) -> None:
    from civicloud.core.csvsafe import read_csv
    from civicloud.traffic.counts import read_counts, require_clean

    # Given a corridor's movement counts, and the same traffic as counted by its detectors
    net_path, net = corridor
    movements = tmp_path / "movements.csv"
    movements.write_text(counts_csv(net))
    mapping_text, detector_text = _detector_files(net)
    assert ",,0," in mapping_text or ",,1," in mapping_text  # a lane alone
    mapping, detector_counts = tmp_path / "map.csv", tmp_path / "detectors.csv"
    mapping.write_text(mapping_text)
    detector_counts.write_text(detector_text)
    # When a plan is made from each
    plans = {}
    for name, extra in (
        ("movements", ["--counts", str(movements)]),
        ("detectors", ["--counts", str(detector_counts), "--detectors", str(mapping)]),
    ):
        out = tmp_path / f"{name}.add.xml"
        code, output = civicloud_traffic(
            "optimize", "--net", str(net_path), *extra, "--out", str(out)
        )
        assert code == 0, output
        plans[name] = (out.read_text(), (tmp_path / f"{name}.timing.json").read_text())
    # Then the plans are the same
    assert plans["detectors"] == plans["movements"]
    # When the detector counts are converted to movement counts
    converted = tmp_path / "converted.csv"
    code, output = civicloud_traffic(
        "counts",
        "convert",
        "--net",
        str(net_path),
        "--detectors",
        str(mapping),
        "--counts",
        str(detector_counts),
        "--out",
        str(converted),
    )
    assert code == 0, output
    lines = detector_text.count("\n") - 1
    assert f"movement counts from {lines} detector counts" in output
    # Then the file holds the movement counts (a spreadsheet-safe CSV) and plans the same
    content = converted.read_bytes()
    assert read_csv(content)[0] == [
        "interval_begin",
        "interval_end",
        "tls_id",
        "from_edge",
        "to_edge",
        "dir",
        "count",
    ]
    again = require_clean(read_counts(content, net)).accepted
    assert set(again) == set(require_clean(read_counts(counts_csv(net), net)).accepted)
    out = tmp_path / "converted.add.xml"
    code, output = civicloud_traffic(
        "optimize", "--net", str(net_path), "--counts", str(converted), "--out", str(out)
    )
    assert code == 0, output
    assert out.read_text() == plans["movements"][0]
    # and time-of-day plans read detector counts too
    code, output = civicloud_traffic(
        "optimize",
        "--net",
        str(net_path),
        "--counts",
        str(detector_counts),
        "--detectors",
        str(mapping),
        "--out",
        str(tmp_path / "tod.add.xml"),
        "--periods",
        "2",
    )
    assert code == 0, output
    assert "switches (every day)" in output


def test_a_bad_mapping_gets_one_line_and_exit_2(
    corridor: tuple[Path, Network], tmp_path: Path, civicloud_traffic: Run
) -> None:
    net_path, net = corridor
    mapping_text, detector_text = _detector_files(net)
    mapping, detector_counts = tmp_path / "map.csv", tmp_path / "detectors.csv"
    mapping.write_text(mapping_text + "ghost,A0,nowhere,elsewhere,,1\n")
    detector_counts.write_text(detector_text)
    out = tmp_path / "plan.add.xml"
    common = ["--net", str(net_path), "--counts", str(detector_counts), "--detectors", str(mapping)]
    for command in (
        ["optimize", *common, "--out", str(out)],
        ["evaluate", *common, "--plan", str(out)],
        ["counts", "convert", *common, "--out", str(tmp_path / "converted.csv")],
    ):
        code, output = civicloud_traffic(*command)
        assert code == 2, output
        assert "detector mapping rows were refused" in output
        assert "unknown road" in output
        assert "Traceback" not in output
    assert not out.exists()
    assert not (tmp_path / "converted.csv").exists()
    # An unknown detector in the counts refuses them, with the detector file's line
    mapping.write_text(mapping_text)
    detector_counts.write_text(detector_text + "0,900,ghost,5\n")
    code, output = civicloud_traffic("optimize", *common, "--out", str(out))
    assert code == 2
    line = detector_text.count("\n") + 1
    assert f"1 of {line - 1} count rows were rejected (first: line {line}, unknown detector)" in (
        output
    )


def test_offsets_may_be_set_for_bandwidth(
    civicloud_traffic: Run, corridor: tuple[Path, Network], tmp_path: Path
) -> None:
    counts = tmp_path / "counts.csv"
    counts.write_text(counts_csv(corridor[1]))
    out = tmp_path / "plan.add.xml"
    code, text = civicloud_traffic(
        "optimize", "--net", str(corridor[0]), "--counts", str(counts), "--out", str(out),
        "--offsets", "bandwidth",
    )  # fmt: skip
    assert code == 0, text
    sheet = json.loads((tmp_path / "plan.timing.json").read_text())
    assert all("banded" in s["flags"] for s in sheet["signals"])
    code, text = civicloud_traffic(
        "optimize", "--net", str(corridor[0]), "--counts", str(counts), "--out", str(out),
        "--offsets", "widest",
    )  # fmt: skip
    assert code == 2
    assert "Offsets are set for delay or for bandwidth." in text
    assert "Traceback" not in text
