"""traffic_quality: total delay in SUMO of civicloud's plans against SUMO's own timing tools.

Scenarios: generated networks (one junction, a corridor of three, a 3x3 grid; netgenerate,
two lanes and a left-turn lane per approach) at two demand levels. For each scenario and seed,
SUMO's routeSampler draws a demand matching the scenario's turn counts, and SUMO runs the hour
(and 15 minutes to drain) with:

- ``default``: the network's own programs (netconvert's);
- ``civicloud``: ``plan_network`` (each signal's plan, neighbours coordinated) from the counts only, as a bureau would have them (one plan per
  scenario, whatever the seed);
- ``sumo-tools``: ``tlsCycleAdaptation.py`` (Webster) then ``tlsCoordinator.py`` (offsets),
  both reading that seed's routes, under the same minimum cycle (60 s) and minimum green (5 s);
- ``actuated``: SUMO's actuated control of the network's phases, as a reference row.

The figure is total delay (time lost by every vehicle, and the wait of those not yet inserted),
the mean over seeds. The headline ratio is the mean over scenarios of sumo-tools / civicloud
(higher is better); the goal, at least 10 % less delay than SUMO's tools, is a ratio of 1.11.
A second check: in no scenario is civicloud worse than the default on the mean over seeds.

    .venv/bin/python bench/traffic_quality.py --quick     # the junction at one level, 2 seeds
    .venv/bin/python bench/traffic_quality.py             # every scenario, 5 seeds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from civicloud.traffic import export, simulate, sumo  # noqa: E402
from civicloud.traffic.network import Network, read_network  # noqa: E402
from civicloud.traffic.optimize import Limits  # noqa: E402
from civicloud.traffic.service import plan_network  # noqa: E402

GOAL = 1.11
#: veh/h on each through movement of the main (east-west) and the side streets; turns a fifth.
LEVELS = {"low": (300.0, 120.0), "high": (550.0, 250.0)}


def demand_of(net: Network, main: float, side: float) -> dict[str, dict[tuple[str, str], float]]:
    demand: dict[str, dict[tuple[str, str], float]] = {}
    for signal in net.signals.values():
        flows = {}
        for (f, t), links in signal.movements().items():
            shape = net.edges[f].shape
            east_west = abs(shape[0][1] - shape[-1][1]) < 1.0
            base = main if east_west else side
            flows[(f, t)] = base * (1.0 if links[0].dir == "s" else 0.2)
        demand[signal.id] = flows
    return demand


def sumo_tools(net: Path, routes: Path, work: Path, seed: int) -> tuple[Path, Path]:
    cycle = work / f"cycle{seed}.add.xml"
    offsets = work / f"offsets{seed}.add.xml"
    sumo.run(
        [
            sumo.tool("tlsCycleAdaptation.py"),
            "-n",
            net,
            "-r",
            routes,
            "-o",
            cycle,
            "--min-cycle",
            "60",
            "--max-cycle",
            "150",
            "-g",
            "5",
        ],
        what="tlsCycleAdaptation",
    )
    sumo.run(
        [sumo.tool("tlsCoordinator.py"), "-n", net, "-r", routes, "-a", cycle, "-o", offsets],
        what="tlsCoordinator",
    )
    return cycle, offsets


def scenario(layout: str, level: str, seeds: int, work: Path) -> dict[str, list[float]]:
    net_path = sumo.generate(layout, work / f"{layout}.net.xml")
    net = read_network(net_path)
    demand = demand_of(net, *LEVELS[level])
    plans = plan_network(net, demand, Limits(min_cycle=60, min_green=5))
    ours = work / "civicloud.add.xml"
    ours.write_text(export.sumo_additional(plans))
    actuated = work / "actuated.add.xml"
    actuated.write_text(simulate.actuated_additional(net))
    turns = work / "turns.xml"
    turns.write_text(simulate.turn_counts_xml(demand))
    candidates = simulate.candidate_routes(net_path, work)
    delays: dict[str, list[float]] = {
        "default": [],
        "civicloud": [],
        "sumo-tools": [],
        "actuated": [],
    }
    for seed in range(1, seeds + 1):
        routes = simulate.sample_routes(candidates, turns, work, seed)
        tools = sumo_tools(net_path, routes, work, seed)
        controls: dict[str, tuple[Path, ...]] = {
            "default": (),
            "civicloud": (ours,),
            "sumo-tools": tools,
            "actuated": (actuated,),
        }
        for name, files in controls.items():
            figures = simulate.run_sumo(net_path, routes, files, seed, work, name)
            delays[name].append(figures.total_delay_vehh)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    args = parser.parse_args()
    seeds = args.seeds or (2 if args.quick else 5)
    cases = (
        [("junction", "high")]
        if args.quick
        else [(layout, level) for layout in ("junction", "corridor", "grid") for level in LEVELS]
    )
    ratios: list[float] = []
    worse_than_default: list[str] = []
    print(f"{'scenario':<16} {'control':<11} {'total delay veh-h: mean (min..max)':>36}")
    for layout, level in cases:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="civicloud-bench-") as folder:
            delays = scenario(layout, level, seeds, Path(folder))
        means = {name: statistics.fmean(values) for name, values in delays.items()}
        for name, values in delays.items():
            print(
                f"{layout + '/' + level:<16} {name:<11} "
                f"{means[name]:>14.2f} ({min(values):.2f}..{max(values):.2f})"
            )
        ratio = means["sumo-tools"] / means["civicloud"] if means["civicloud"] > 0 else 1.0
        ratios.append(ratio)
        if means["civicloud"] > means["default"]:
            worse_than_default.append(f"{layout}/{level}")
        print(
            f"{layout + '/' + level:<16} sumo-tools/civicloud {ratio:.2f}, "
            f"default/civicloud {means['default'] / means['civicloud']:.2f} "
            f"({time.perf_counter() - started:.0f} s)"
        )
    print(f"worse than the default on the mean: {', '.join(worse_than_default) or 'none'}")
    print(f"traffic_quality ratio={statistics.fmean(ratios):.2f} goal={GOAL}")


if __name__ == "__main__":
    main()
