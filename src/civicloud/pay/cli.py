"""``civicloud pay``: the Pay module's operator commands (``Module.cli``).

Pay's background jobs (``pay/jobs.py``) run on the core's runner: ``civicloud jobs run`` and
``civicloud jobs worker``. ``pay jobs`` and ``pay worker`` are aliases of those restricted to
Pay's jobs, kept for one release.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import typer

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
from civicloud.cli.jobs import chosen_jobs, run_once, run_worker
from civicloud.core import jobs as core_jobs
from civicloud.core.dates import parse_date
from civicloud.core.services import Services
from civicloud.pay import billing, ledger, settlement
from civicloud.pay.context import pay_settings

pay_app = typer.Typer(help="Pay: bills, payments, the ledger and its jobs.", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)


@ledger_app.command("check")
@handle_errors
def ledger_check(data_dir: DataDirOpt = None) -> None:
    """Prove every entry balances and every succeeded payment is posted once (exit 1 if not)."""
    services = open_services(data_dir)
    with services.db.unit_of_work(write=False) as session:
        result = ledger.check_ledger(session=session)
    if not result.ok:
        err_console.print(result.describe(), highlight=False)
        raise typer.Exit(1)
    console.print(result.describe(), highlight=False)


def pay_jobs(services: Services) -> list[str]:
    """The names of Pay's jobs installed here."""
    return [job.name for job in services.modules.jobs() if job.name.startswith("pay.")]


def run_jobs(services: Services) -> dict[str, int]:
    """Each Pay job once, on the core's runner, summed up as ``civicloud pay jobs`` used to say
    it (kept, with the command, for one release)."""
    reports = {
        r.job: r for r in core_jobs.run_jobs(services, chosen_jobs(services, pay_jobs(services)))
    }

    def outcomes(name: str) -> dict[str, int]:
        found = reports.get(f"pay.{name}")
        return found.outcomes if found is not None else {}

    refunded, hooks = outcomes("resume_refunds"), outcomes("deliver_webhooks")
    return {
        "expired": sum(outcomes("expire_payments").values()),
        "recovered": sum(
            count for word, count in outcomes("recover_payments").items() if word != "still_pending"
        ),
        "refunds_ended": refunded.get("succeeded", 0) + refunded.get("failed", 0),
        "retry_later": sum(report.failures for report in reports.values()),
        "webhooks_delivered": hooks.get("delivered", 0),
        "webhooks_retrying": hooks.get("retrying", 0),
        "webhooks_dead": hooks.get("dead", 0),
    }


def _deprecated(instead: str) -> None:
    err_console.print(
        f"deprecated: use civicloud {instead} (this alias goes in the next release)",
        highlight=False,
    )


@pay_app.command("jobs")
@handle_errors
def jobs(data_dir: DataDirOpt = None) -> None:
    """Run each Pay job once (deprecated: ``civicloud jobs run``); exit 1 if any item failed."""
    _deprecated("jobs run")
    services = open_services(data_dir)
    reports = run_once(services, pay_jobs(services))
    if any(report.failures for report in reports):
        raise typer.Exit(1)


@pay_app.command("worker")
@handle_errors
def worker(
    data_dir: DataDirOpt = None,
    every: float | None = typer.Option(
        None, min=1.0, max=3600.0, help="Seconds between runs (default: each job's schedule)."
    ),
) -> None:
    """Run the Pay jobs until SIGINT or SIGTERM (deprecated: ``civicloud jobs worker``)."""
    _deprecated("jobs worker")
    services = open_services(data_dir)
    run_worker(services, pay_jobs(services), every)


@pay_app.command("import-bills")
@handle_errors
def import_bills(
    biller_id: uuid.UUID,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    partial: bool = typer.Option(False, help="Import the good rows even if some are bad."),
    data_dir: DataDirOpt = None,
) -> None:
    """Publish a biller's bills from a CSV file (UTF-8)."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        report = billing.import_bills_csv(
            session=session,
            actor=cli_actor(),
            biller_id=biller_id,
            content=file.read_bytes(),
            partial=partial,
        )
    console.print(f"imported {report.accepted} bills, refused {report.refused}")
    for error in report.errors:
        console.print(f"  line {error.line}: {error.reason}", highlight=False)


@pay_app.command("settle")
@handle_errors
def settle(
    biller_id: uuid.UUID,
    day: str = typer.Option(..., "--date", help="The business day, YYYY-MM-DD (Asia/Shanghai)."),
    out: Path | None = typer.Option(None, help="Write the bank batch file here."),
    data_dir: DataDirOpt = None,
) -> None:
    """Settle one biller's day: succeeded minus refunded, as a bank batch file."""
    business_date = parse_date(day)
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        done = settlement.settle_day(
            session=session,
            actor=cli_actor(),
            biller_id=biller_id,
            business_date=business_date,
            payer=settlement.payer_from(pay_settings(services)),
        )
        batch = done.batch_file
        print_rows(
            "settlement",
            ["day", "payments", "paid (CNY)", "refunded (CNY)", "net (CNY)"],
            [
                [
                    done.business_date,
                    done.payment_count,
                    settlement.yuan(done.paid_fen),
                    settlement.yuan(done.refunded_fen),
                    settlement.yuan(done.net_fen),
                ]
            ],
        )
    if out is not None:
        out.write_text(batch, encoding="utf-8")
        console.print(f"batch file written to {out}")


pay_app.add_typer(ledger_app, name="ledger")
