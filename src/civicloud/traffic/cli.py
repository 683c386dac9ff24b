"""``civicloud traffic``: signal plans from a network file and counts (``Module.cli``).

``optimize`` needs no installation: it reads a SUMO network and a counts CSV, and writes a SUMO
additional file with one ``<tlLogic type="static">`` per signal, beside timing sheets as JSON
and CSV (``PLAN.add.xml`` → ``PLAN.timing.json``, ``PLAN.timing.csv``). Every file is written to
a temporary name and renamed, so a failed run leaves no half-written plan. With
``--time-of-day`` (or ``--periods N``) the day is cut into periods of similar demand, each
signal gets a program per period and a WAUT that switches between them.

With ``--detectors MAP.csv`` (a detector-to-movement mapping), ``--counts`` is a file of counts
per detector, turned into movement counts first; ``counts convert`` writes those movement counts
out.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session

from civicloud.cli.common import (
    DataDirOpt,
    cli_actor,
    console,
    err_console,
    handle_errors,
    open_services,
    print_rows,
    unit_of_work,
)
from civicloud.core import tenants
from civicloud.core.db import utcnow
from civicloud.core.errors import NotFound
from civicloud.core.tenants.models import Tenant
from civicloud.traffic import (
    compaction,
    evaluations,
    export,
    networks,
    service,
    simulate,
    timeofday,
)
from civicloud.traffic import detectors as detector_counts
from civicloud.traffic.context import TrafficContext
from civicloud.traffic.counts import CountsReport, zone_offset_s
from civicloud.traffic.errors import EvaluationFailed
from civicloud.traffic.optimize import Limits

DetectorsOpt = Annotated[
    Path | None,
    typer.Option(
        "--detectors",
        help="A detector-to-movement mapping (CSV); COUNTS are then counts per detector.",
    ),
]

traffic_app = typer.Typer(
    help="Traffic: signal timing plans from a road network and turning-movement counts.",
    no_args_is_help=True,
)


def _write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _sheet_path(out: Path, suffix: str) -> Path:
    name = out.name
    for ending in (".add.xml", ".xml"):
        if name.endswith(ending):
            name = name[: -len(ending)]
            break
    return out.with_name(f"{name}.timing.{suffix}")


@traffic_app.command("optimize")
@handle_errors
def optimize(
    net: Annotated[Path, typer.Option("--net", help="The SUMO network (.net.xml[.gz]).")],
    counts: Annotated[Path, typer.Option("--counts", help="Turning-movement counts (CSV).")],
    out: Annotated[Path, typer.Option("--out", help="The SUMO additional file to write.")],
    min_cycle: Annotated[float, typer.Option("--min-cycle", help="Shortest cycle, s.")] = 60.0,
    max_cycle: Annotated[float, typer.Option("--max-cycle", help="Longest cycle, s.")] = 150.0,
    min_green: Annotated[float, typer.Option("--min-green", help="Shortest green, s.")] = 5.0,
    all_red: Annotated[
        bool,
        typer.Option("--all-red", help="Insert an all-red phase after each yellow that has none."),
    ] = False,
    time_of_day: Annotated[
        bool,
        typer.Option(
            "--time-of-day",
            help="A plan per period of similar demand, switched by the time of day (WAUT).",
        ),
    ] = False,
    periods: Annotated[
        int | None,
        typer.Option(
            "--periods",
            help=f"At most this many periods (1..{timeofday.MAX_PERIODS}; implies "
            f"--time-of-day; default {timeofday.DEFAULT_PERIODS}).",
        ),
    ] = None,
    detectors: DetectorsOpt = None,
    offsets: Annotated[
        str,
        typer.Option(
            "--offsets",
            help="Coordinated offsets for the least delay (delay) or the widest progression "
            "bands along corridors (bandwidth).",
        ),
    ] = "delay",
) -> None:
    """Plan every signal of NET for the busiest hour of COUNTS; write OUT and timing sheets.

    With --time-of-day, the day is cut into periods of similar demand, each planned for its own
    busiest hour, and OUT switches between their programs at each period's start."""
    limits = Limits(
        min_cycle=min_cycle,
        max_cycle=max_cycle,
        min_green=min_green,
        all_red=all_red,
        offsets=offsets,
    )
    if time_of_day or periods is not None:
        chosen = timeofday.DEFAULT_PERIODS if periods is None else periods
        _optimize_time_of_day(net, counts, out, limits, chosen, detectors)
        return
    result = service.optimize_files(net, counts, limits, detectors)
    _write(out, export.sumo_additional(result.plans).encode())
    _write(_sheet_path(out, "json"), export.timing_json(result.plans).encode())
    _write(_sheet_path(out, "csv"), export.timing_csv(result.plans))
    _print_counts_findings(result.report)
    if result.saturated:
        signals = sorted({s.tls_id for s in result.saturated})
        err_console.print(
            f"counts: {len(result.saturated)} movement intervals counted at capacity "
            f"(spill-back likely) at {', '.join(signals[:10])}"
            f"{' …' if len(signals) > 10 else ''}: their figures are lower bounds",
            highlight=False,
        )
    rows = [
        [
            plan.signal_id,
            f"{old.cycle:g}",
            f"{plan.cycle:g}",
            " ".join(f"{s:g}" for s in plan.splits),
            f"{old.delay_s:.1f} {old.los}",
            f"{plan.delay_s:.1f} {plan.los}",
            " ".join(plan.flags),
        ]
        for plan, old in zip(result.plans, result.before, strict=True)
    ]
    print_rows(
        "Signal plans (HCM control delay, s/veh)",
        ["signal", "cycle before", "cycle", "greens", "delay before", "delay", "flags"],
        rows,
    )
    console.print(f"wrote {out} and its timing sheets", highlight=False)


def _print_counts_findings(report: CountsReport) -> None:
    summary = report.summary()
    if report.duplicates or report.gaps:
        err_console.print(
            f"counts: {summary['duplicates']} duplicate rows counted once, {summary['gaps']} gaps",
            highlight=False,
        )


def _optimize_time_of_day(
    net: Path, counts: Path, out: Path, limits: Limits, max_periods: int, detectors: Path | None
) -> None:
    if detectors is None:
        result = timeofday.plan_files(net, counts, limits, max_periods=max_periods)
    else:
        # plan_files reads movement counts; detector counts are read here the same way.
        timeofday.check_settings(max_periods, timeofday.MIN_PERIOD_S)
        network, report = service.read_inputs(net, counts, detectors)
        zone = zone_offset_s(counts.read_bytes()) if report.absolute_times else 0.0
        result = timeofday.plan_time_of_day(
            network, report, limits, max_periods=max_periods, zone_offset_s=zone
        )
    _write(out, export.sumo_time_of_day(result).encode())
    _write(_sheet_path(out, "json"), export.time_of_day_json(result).encode())
    _write(_sheet_path(out, "csv"), export.time_of_day_csv(result))
    _print_counts_findings(result.report)
    rows = [
        [
            f"{each.period.name} {each.period.start}-{each.period.end}",
            plan.signal_id,
            f"{old.cycle:g}",
            f"{plan.cycle:g}",
            f"{plan.offset:g}",
            " ".join(f"{s:g}" for s in plan.splits),
            f"{old.delay_s:.1f} {old.los}",
            f"{plan.delay_s:.1f} {plan.los}",
            " ".join(plan.flags),
        ]
        for each in result.periods
        for plan, old in zip(each.plans, each.before, strict=True)
    ]
    print_rows(
        "Time-of-day signal plans (each period's busiest hour; HCM control delay, s/veh)",
        [
            "period",
            "signal",
            "cycle before",
            "cycle",
            "offset",
            "greens",
            "delay before",
            "delay",
            "flags",
        ],
        rows,
    )
    schedule = ", ".join(
        f"{each.period.start} {export.period_program_id(each.period)}" for each in result.periods
    )
    console.print(f"switches (every day): {schedule}", highlight=False)
    console.print(f"wrote {out} and its timing sheets", highlight=False)


counts_app = typer.Typer(help="Counts files.", no_args_is_help=True)
traffic_app.add_typer(counts_app, name="counts")


@counts_app.command("convert")
@handle_errors
def counts_convert(
    net: Annotated[Path, typer.Option("--net", help="The SUMO network (.net.xml[.gz]).")],
    detectors: Annotated[
        Path, typer.Option("--detectors", help="The detector-to-movement mapping (CSV).")
    ],
    counts: Annotated[Path, typer.Option("--counts", help="Counts per detector (CSV).")],
    out: Annotated[Path, typer.Option("--out", help="The movement counts CSV to write.")],
) -> None:
    """Turn counts per detector into turning-movement counts with a detector mapping; write OUT."""
    conversion = service.convert_files(net, detectors, counts)
    _write(out, detector_counts.movement_csv(conversion))
    _print_counts_findings(conversion.report)
    console.print(
        f"wrote {out}: {len(conversion.rows)} movement counts from "
        f"{conversion.report.rows} detector counts",
        highlight=False,
    )


@counts_app.command("compact")
@handle_errors
def counts_compact(
    network_id: Annotated[
        uuid.UUID | None,
        typer.Option("--network-id", help="One network (default: those with recent counts)."),
    ] = None,
    min_files: Annotated[
        int,
        typer.Option(
            "--min-files", min=2, help="Merge a day's files once it has at least this many."
        ),
    ] = compaction.MIN_FILES,
    data_dir: DataDirOpt = None,
) -> None:
    """Merge each day's small Parquet files of kept counts into one file (as the hourly job
    does), and delete files merged more than an hour ago. One network at a time."""
    services = open_services(data_dir)
    context = services.context("traffic", TrafficContext)
    now = utcnow()
    with unit_of_work(services) as session:
        if network_id is not None:
            ids = [
                networks.get_network(session=session, actor=cli_actor(), network_id=network_id).id
            ]
        else:
            ids = compaction.due_networks(session, now)
    rows: list[list[object]] = []
    for each in ids:
        with unit_of_work(services) as session:
            merged = compaction.compact_network(
                session=session, context=context, network_id=each, now=now, min_files=min_files
            )
        rows.extend([str(each), m.day.isoformat(), m.files, m.rows] for m in merged)
    print_rows(
        f"{len(rows)} days merged in {len(ids)} networks",
        ["network", "day", "files merged", "rows"],
        rows,
    )


network_app = typer.Typer(help="Road networks stored for tenants.", no_args_is_help=True)
traffic_app.add_typer(network_app, name="network")


def _tenant(session: Session, slug: str) -> Tenant:
    found = tenants.get_tenant_by_slug(session=session, slug=slug)
    if found is None:
        raise NotFound("no tenant with slug %(slug)s", params={"slug": repr(slug)})
    return found


@network_app.command("import")
@handle_errors
def network_import(
    file: Annotated[Path, typer.Argument(help="The SUMO network (.net.xml[.gz]).")],
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's slug.")],
    name: Annotated[str, typer.Option("--name", help="The network's name in the tenant.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Store a network for a tenant (read in full first: a broken file stores nothing)."""
    content = file.read_bytes()
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        found = _tenant(session, tenant)
        row = networks.import_network(
            session=session,
            actor=cli_actor(),
            tenant_id=found.id,
            name=name,
            content=content,
            source_name=file.name,
        )
        console.print(
            f"imported {row.name} for {tenant}: {row.signals} signals, {row.edges} roads",
            highlight=False,
        )


@network_app.command("list")
@handle_errors
def network_list(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's slug.")],
    data_dir: DataDirOpt = None,
) -> None:
    """A tenant's networks."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        found = _tenant(session, tenant)
        rows = networks.list_networks(session=session, actor=cli_actor(), tenant_id=found.id)
        print_rows(
            f"Road networks of {tenant}",
            ["name", "signals", "roads", "file", "sha256"],
            [[r.name, r.signals, r.edges, r.source_name, r.sha256[:12]] for r in rows],
        )


@traffic_app.command("evaluate")
@handle_errors
def evaluate(
    net: Annotated[Path, typer.Option("--net", help="The SUMO network (.net.xml[.gz]).")],
    counts: Annotated[Path, typer.Option("--counts", help="Turning-movement counts (CSV).")],
    plan: Annotated[Path, typer.Option("--plan", help="The plan to prove (SUMO additional).")],
    seeds: Annotated[int, typer.Option("--seeds", help="Demand samples (1..50).")] = 3,
    detectors: DetectorsOpt = None,
) -> None:
    """Run SUMO on the counts' busiest hour with the network's programs, the plan and SUMO's
    actuated control; print each one's figures over the seeds (mean, and min..max)."""
    network, report = service.read_inputs(net, counts, detectors)
    demand = service.demand_of(report)

    def progress(done: int, total: int, name: str) -> None:
        err_console.print(f"[{done}/{total}] {name}", highlight=False)

    results = simulate.evaluate(
        net, network, demand, {"network": None, "plan": plan}, seeds=seeds, progress=progress
    )
    print_rows(
        f"SUMO over {seeds} seeds: the busiest hour of the counts",
        [
            "control",
            "total delay veh-h (min..max)",
            "travel time s",
            "waiting s",
            "time loss s",
            "vehicles",
            "stops",
            "not inserted",
        ],
        simulate.summary_rows(results),
    )


#: The columns of an evaluation's table, the same for files and stored plans.
EVALUATION_COLUMNS = [
    "control",
    "total delay veh-h (min..max)",
    "travel time s",
    "waiting s",
    "time loss s",
    "vehicles",
    "stops",
    "not inserted",
]


@traffic_app.command("evaluate-stored")
@handle_errors
def evaluate_stored(
    plan_id: Annotated[uuid.UUID, typer.Option("--plan-id", help="The stored plan's id.")],
    seeds: Annotated[
        int,
        typer.Option(
            "--seeds",
            help=f"Demand samples ({evaluations.MIN_SEEDS}..{evaluations.MAX_SEEDS}).",
        ),
    ] = 3,
    counts: Annotated[
        Path | None,
        typer.Option(
            "--counts",
            help="The counts CSV the plan was drafted from (needed the first time a plan is "
            "evaluated; later ones reuse its design hour).",
        ),
    ] = None,
    first_day: Annotated[
        datetime | None,
        typer.Option("--first-day", formats=["%Y-%m-%d"], help="Or: the kept counts' first day."),
    ] = None,
    last_day: Annotated[
        datetime | None,
        typer.Option("--last-day", formats=["%Y-%m-%d"], help="And their last day."),
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Evaluate a stored plan in SUMO here and now (as the job would): the network's programs,
    the plan and SUMO's actuated control under the plan's design hour; store and print the
    figures over the seeds (mean, and min..max)."""
    content = counts.read_bytes() if counts is not None else None
    days = [d.date() for d in (first_day, last_day) if d is not None]
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        row = evaluations.request_evaluation(
            session=session,
            actor=cli_actor(),
            plan_id=plan_id,
            seeds=seeds,
            counts=content,
            stored=(days[0], days[-1]) if days else None,
            context=services.context("traffic", TrafficContext),
        )
        # Claimed in the same transaction: no worker of a server takes it meanwhile.
        evaluations.claim(session=session, evaluation_id=row.id, now=utcnow())
        evaluation_id = row.id
    err_console.print(f"evaluation {evaluation_id}: {seeds} seeds", highlight=False)

    def progress(done: int, total: int, name: str) -> None:
        err_console.print(f"[{done}/{total}] {name}", highlight=False)

    ended = evaluations.run_claimed(services.db, evaluation_id, progress=progress)
    if ended.status != "done":
        raise EvaluationFailed(
            "The evaluation failed: %(reason)s", params={"reason": ended.error or ended.status}
        )
    print_rows(
        f"SUMO over {seeds} seeds: the design hour of the plan",
        EVALUATION_COLUMNS,
        simulate.summary_rows(evaluations.summaries(ended)),
    )
    console.print(f"stored as evaluation {evaluation_id}", highlight=False)
