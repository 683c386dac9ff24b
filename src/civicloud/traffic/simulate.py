"""Plans proven in microsimulation: demand from the counts, SUMO runs with each program.

- **Demand.** The counts of the design hour become turn counts (``edgeRelation``) that SUMO's
  ``routeSampler.py`` matches with routes chosen among candidates (``randomTrips.py`` between
  the network's fringe edges), one sample per seed.
- **Runs.** SUMO runs the hour, plus time for the last vehicles to leave, with the network's
  own programs, with the plan, and with SUMO's own ``actuated`` control as a reference (the
  network's phases with SUMO's default gap-out settings).
- **Figures**, from SUMO's ``--statistic-output`` per run: mean travel time, waiting time and
  time loss, vehicles through, stops (halting events, from the tripinfo output), and total delay:
  the time lost by every vehicle that drove plus the time every vehicle waited to enter,
  including the ones still waiting when the run ends.
"""

from __future__ import annotations

import statistics
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from civicloud.traffic import sumo
from civicloud.traffic.errors import PlanUnreadable, SimulationFailed, TrafficInvalidInput
from civicloud.traffic.network import Network

Movement = tuple[str, str]
#: Seconds after the demand hour in which the last vehicles may still finish.
DRAIN_S = 900
MAX_SEEDS = 50


@dataclass(frozen=True)
class RunFigures:
    vehicles: int
    mean_travel_time_s: float
    mean_waiting_s: float
    mean_time_loss_s: float
    total_delay_vehh: float
    stops: int
    not_inserted: int


@dataclass(frozen=True)
class Summary:
    """One control's figures over the seeds: the mean and the spread (min..max)."""

    name: str
    runs: tuple[RunFigures, ...]

    def mean(self, field: str) -> float:
        return statistics.fmean(float(getattr(r, field)) for r in self.runs)

    def spread(self, field: str) -> tuple[float, float]:
        values = [float(getattr(r, field)) for r in self.runs]
        return min(values), max(values)


def turn_counts_xml(demand: Mapping[str, Mapping[Movement, float]], seconds: int = 3600) -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<data>"]
    lines.append(f'    <interval id="design" begin="0" end="{seconds}">')
    for tls in sorted(demand):
        for (f, t), flow in sorted(demand[tls].items()):
            count = round(flow * seconds / 3600.0)
            if count > 0:
                lines.append(
                    f'        <edgeRelation from={quoteattr(f)} to={quoteattr(t)} count="{count}"/>'
                )
    lines += ["    </interval>", "</data>"]
    return "\n".join(lines) + "\n"


def actuated_additional(network: Network) -> str:
    """The network's phases as SUMO ``actuated`` programs (minDur 5 s, maxDur 50 s on greens)."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<additional>"]
    for signal in network.signals.values():
        lines.append(
            f'    <tlLogic id={quoteattr(signal.id)} type="actuated" programID="actuated" '
            'offset="0">'
        )
        for phase in signal.program.phases:
            if phase.is_transition:
                lines.append(
                    f'        <phase duration="{phase.duration:g}" state="{phase.state}"/>'
                )
            else:
                lines.append(
                    f'        <phase duration="{phase.duration:g}" minDur="5" maxDur="50" '
                    f'state="{phase.state}"/>'
                )
        lines.append("    </tlLogic>")
    lines.append("</additional>")
    return "\n".join(lines) + "\n"


def check_plan(path: Path, network: Network) -> None:
    """The plan file is SUMO XML whose programs fit the network's signals."""
    name = path.name
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - a local file the caller chose
    except (ET.ParseError, OSError) as exc:
        raise PlanUnreadable(
            "The plan file %(file)s cannot be read: %(reason)s",
            params={"file": name, "reason": str(exc)[:200]},
        ) from exc
    found = root.findall("tlLogic")
    if not found:
        raise PlanUnreadable(
            "The plan file %(file)s has no signal program (tlLogic).", params={"file": name}
        )
    for logic in found:
        signal = network.signals.get(logic.get("id", ""))
        if signal is None:
            raise PlanUnreadable(
                "The plan file %(file)s names the signal %(signal)s, which the network lacks.",
                params={"file": name, "signal": logic.get("id", "")},
            )
        for phase in logic.findall("phase"):
            if len(phase.get("state", "")) != signal.size:
                raise PlanUnreadable(
                    "In the plan file %(file)s, a phase of signal %(signal)s has %(given)s "
                    "states; the signal controls %(links)s links.",
                    params={
                        "file": name,
                        "signal": signal.id,
                        "given": len(phase.get("state", "")),
                        "links": signal.size,
                    },
                )


def _statistics(path: Path, tripinfo: Path) -> RunFigures:
    root = ET.parse(path).getroot()  # noqa: S314 - SUMO's own output
    vehicles = root.find("vehicles")
    trips = root.find("vehicleTripStatistics")
    if vehicles is None or trips is None:
        raise sumo_error("no statistics in SUMO's output")
    inserted = int(vehicles.get("inserted", "0"))
    waiting = int(vehicles.get("waiting", "0"))
    count = int(trips.get("count", "0"))
    time_loss = float(trips.get("timeLoss", "0"))
    # The mean wait of the vehicles not yet inserted (SUMO writes -1 when there are none).
    depart_waiting = float(trips.get("departDelayWaiting", "0"))
    stops = 0
    total_loss = 0.0
    total_depart = 0.0
    for trip in ET.parse(tripinfo).getroot().iter("tripinfo"):  # noqa: S314
        stops += int(float(trip.get("waitingCount", "0")))
        total_loss += float(trip.get("timeLoss", "0"))
        total_depart += float(trip.get("departDelay", "0"))
    # Vehicles still waiting to enter at the end count with their wait; those still on the road
    # with the mean time loss of those that arrived (SUMO reports theirs only on arrival).
    unfinished = max(inserted - count, 0)
    total = total_loss + total_depart + max(depart_waiting, 0.0) * max(waiting, 0)
    total += unfinished * time_loss
    return RunFigures(
        vehicles=count,
        mean_travel_time_s=float(trips.get("duration", "0")),
        mean_waiting_s=float(trips.get("waitingTime", "0")),
        mean_time_loss_s=time_loss,
        total_delay_vehh=total / 3600.0,
        stops=stops,
        not_inserted=waiting,
    )


def sumo_error(reason: str) -> Exception:
    return SimulationFailed(
        "%(program)s stopped with an error: %(reason)s",
        params={"program": "SUMO", "reason": reason},
    )


def candidate_routes(net: Path, work: Path) -> Path:
    """Routes between the network's fringe edges for routeSampler to choose among."""
    candidates = work / "candidates.rou.xml"
    sumo.run(
        [
            sumo.tool("randomTrips.py"),
            "-n",
            net,
            "-r",
            candidates,
            "-o",
            work / "trips.xml",
            "--fringe-factor",
            "max",
            "--period",
            "0.5",
            "--end",
            "3600",
            "--seed",
            "1",
            "--validate",
        ],
        what="randomTrips",
    )
    return candidates


def sample_routes(candidates: Path, turns: Path, work: Path, seed: int) -> Path:
    """One demand sample matching the turn counts (SUMO's routeSampler)."""
    routes = work / f"sampled{seed}.rou.xml"
    sumo.run(
        [
            sumo.tool("routeSampler.py"),
            "-r",
            candidates,
            "--turn-files",
            turns,
            "-o",
            routes,
            "--seed",
            str(seed),
            "-a",
            'departLane="best" departSpeed="max"',
        ],
        what="routeSampler",
    )
    return routes


def run_sumo(
    net: Path, routes: Path, additional: Sequence[Path], seed: int, work: Path, name: str
) -> RunFigures:
    """One SUMO run of the demand hour and its drain time, and its figures."""
    stats = work / f"{name}-{seed}.stats.xml"
    tripinfo = work / f"{name}-{seed}.tripinfo.xml"
    command: list[str | Path] = [
        sumo.binary("sumo"),
        "-n",
        net,
        "-r",
        routes,
        "--begin",
        "0",
        "--end",
        str(3600 + DRAIN_S),
        "--seed",
        str(seed),
        "--no-step-log",
        "--no-warnings",
        "--time-to-teleport",
        "300",
        "--statistic-output",
        stats,
        "--tripinfo-output",
        tripinfo,
    ]
    if additional:
        command += ["-a", ",".join(str(a) for a in additional)]
    sumo.run(command, what="SUMO", timeout=1800.0)
    return _statistics(stats, tripinfo)


def evaluate(
    net: Path,
    network: Network,
    demand: Mapping[str, Mapping[Movement, float]],
    plans: Mapping[str, Path | None],
    *,
    seeds: int = 3,
    progress: Callable[[int, int, str], None] | None = None,
    actuated: bool = True,
) -> list[Summary]:
    """Each control's figures over ``seeds`` demand samples; ``None`` is the network's own."""
    if seeds < 1 or seeds > MAX_SEEDS:
        raise TrafficInvalidInput(
            "The number of seeds must be between 1 and %(limit)s.", params={"limit": MAX_SEEDS}
        )
    for path in plans.values():
        if path is not None:
            check_plan(path, network)
    with tempfile.TemporaryDirectory(prefix="civicloud-sim-") as folder:
        work = Path(folder)
        turns = work / "turns.xml"
        turns.write_text(turn_counts_xml(demand))
        controls: dict[str, Path | None] = dict(plans)
        if actuated:
            reference = work / "actuated.add.xml"
            reference.write_text(actuated_additional(network))
            controls["actuated"] = reference
        candidates = candidate_routes(net, work)
        total = seeds * len(controls)
        done = 0
        runs: dict[str, list[RunFigures]] = {name: [] for name in controls}
        for seed in range(1, seeds + 1):
            routes = sample_routes(candidates, turns, work, seed)
            for name, add in controls.items():
                files = () if add is None else (add,)
                runs[name].append(run_sumo(net, routes, files, seed, work, name))
                done += 1
                if progress is not None:
                    progress(done, total, name)
        return [Summary(name, tuple(values)) for name, values in runs.items()]


def summary_rows(summaries: Sequence[Summary]) -> list[list[str]]:
    rows = []
    for s in summaries:
        low, high = s.spread("total_delay_vehh")
        rows.append(
            [
                s.name,
                f"{s.mean('total_delay_vehh'):.1f} ({low:.1f}..{high:.1f})",
                f"{s.mean('mean_travel_time_s'):.1f}",
                f"{s.mean('mean_waiting_s'):.1f}",
                f"{s.mean('mean_time_loss_s'):.1f}",
                f"{s.mean('vehicles'):.0f}",
                f"{s.mean('stops'):.0f}",
                f"{s.mean('not_inserted'):.0f}",
            ]
        )
    return rows
