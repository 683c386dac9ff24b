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
    # SUMO loads the plan beside the network and runs it without a warning about the signals.
    log = tmp_path / "sumo.log"
    sumo.run(
        [
            sumo.binary("sumo"),
            "-n",
            net_path,
            "-a",
            out,
            "--end",
            "300",
            "--no-step-log",
            "--log",
            log,
        ]
    )
    assert "error" not in log.read_text().lower()
    # SUMO's own checker of signal programs (it reads programs from a network, so netconvert
    # puts the plan into a copy of it first) finds nothing wrong with them.
    merged = tmp_path / "merged.net.xml"
    sumo.run(
        [sumo.binary("netconvert"), "-s", net_path, "--tllogic-files", out, "-o", merged],
        what="netconvert",
    )
    assert {p.id for s in read_network(merged).signals.values() for p in s.programs.values()} >= {
        "civicloud"
    }
    report = sumo.run([sumo.tool("tls/tls_check.py"), merged], what="tls_check")
    assert "Checking program 'civicloud'" in report
    assert "error" not in report.lower()
    plan = read_network(net_path)  # the network itself is left as it was
    assert plan.signals.keys() == net.signals.keys()


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
