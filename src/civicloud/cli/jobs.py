"""``civicloud jobs``: every installed module's background jobs, run by the core's runner.

``jobs run`` runs each job once and exits 1 when any item failed (the failed items stay due and
the next run tries them again), so that cron or a monitor notices; ``jobs worker`` runs each job
on its schedule until SIGTERM or SIGINT; ``jobs list`` shows each job's schedule and last run.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from types import FrameType
from zoneinfo import ZoneInfo

import typer

from civicloud.cli.common import (
    DataDirOpt,
    cli_actor,
    console,
    handle_errors,
    open_services,
    print_rows,
)
from civicloud.core import jobs as core_jobs
from civicloud.core.errors import InvalidInput
from civicloud.core.modules import Job
from civicloud.core.services import Services
from civicloud.core.zones import local_time

jobs_app = typer.Typer(help="Background jobs: run them, keep running them, list them.")

JobOpt = typer.Option(
    None, "--job", help="Only this job (repeat for several), e.g. pay.expire_payments."
)


def chosen_jobs(services: Services, names: Sequence[str] | None) -> tuple[Job, ...]:
    """The jobs named (``InvalidInput`` for one no installed module declares), or all."""
    installed = {job.name: job for job in services.modules.jobs()}
    for name in names or ():
        if name not in installed:
            raise InvalidInput("no such job: %(job)s", params={"job": name})
    return core_jobs.selected_jobs(services, names or None)


def report_line(report: core_jobs.JobReport) -> None:
    """Print what one run did."""
    console.print(report.describe(), highlight=False, soft_wrap=True)


def run_once(services: Services, names: Sequence[str] | None) -> list[core_jobs.JobReport]:
    """Each chosen job once; prints a line per job and returns the reports."""
    reports = core_jobs.run_jobs(services, chosen_jobs(services, names))
    for report in reports:
        report_line(report)
    return reports


def run_worker(services: Services, names: Sequence[str] | None, every: float | None) -> None:
    """Run the chosen jobs on their schedule until SIGINT or SIGTERM."""
    chosen = chosen_jobs(services, names)
    stop = threading.Event()

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    schedule = f"every {every:g} s" if every else "each on its schedule"
    console.print(
        f"jobs worker: {len(chosen)} jobs, {schedule}; stop with Ctrl-C or SIGTERM",
        highlight=False,
    )

    def said(report: core_jobs.JobReport) -> None:
        if report.ran and (report.items or report.failures):
            report_line(report)

    core_jobs.run_worker(services, stop, jobs=chosen, every=every, on_report=said)
    console.print("jobs worker stopped.")


@jobs_app.command("run")
@handle_errors
def run(job: list[str] | None = JobOpt, data_dir: DataDirOpt = None) -> None:
    """Run each job once and say what it did; exit 1 if any item failed (it stays due)."""
    reports = run_once(open_services(data_dir), job)
    if any(report.failures for report in reports):
        raise typer.Exit(1)


@jobs_app.command("worker")
@handle_errors
def worker(
    job: list[str] | None = JobOpt,
    every: float | None = typer.Option(
        None, min=1.0, max=3600.0, help="Run every job every S seconds instead of its schedule."
    ),
    data_dir: DataDirOpt = None,
) -> None:
    """Run the jobs on their schedules until SIGINT or SIGTERM (a failed run does not stop it)."""
    run_worker(open_services(data_dir), job, every)


@jobs_app.command("list")
@handle_errors
def list_jobs(data_dir: DataDirOpt = None) -> None:
    """Each job: its schedule, its last run, how long it took and what failed."""
    services = open_services(data_dir)
    zone = ZoneInfo(services.settings.web.time_zone)
    with services.db.unit_of_work(write=False) as session:
        statuses = core_jobs.job_statuses(session=session, actor=cli_actor(), services=services)
    rows = []
    for status in statuses:
        last = status.last
        rows.append(
            [
                status.job.name,
                f"every {status.job.every_seconds:g} s"
                + (", exclusive" if status.job.exclusive else ""),
                local_time(last.started_at, zone, seconds=True) if last else "never",
                f"{last.duration_ms / 1000:.3f}" if last else "",
                last.items if last else "",
                last.failures if last else "",
                (status.last_failure.error or "")[:100] if status.last_failure else "",
            ]
        )
    print_rows(
        "jobs",
        ["job", "schedule", "last run", "duration (s)", "items", "failures", "last error"],
        rows,
    )


def register(root: typer.Typer) -> None:
    """Add the ``jobs`` group."""
    root.add_typer(jobs_app, name="jobs")
