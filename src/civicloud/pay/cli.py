"""``civicloud pay``: the Pay module's jobs and operator commands (``Module.cli``).

``pay jobs`` runs each background job once (expire payments, recover payments in flight after a
crash, ask again about pending refunds, deliver billers' webhooks); ``pay worker`` runs them
every few seconds until SIGTERM. Each payment or refund a job handles is its own unit of work.
"""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TypeVar

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
from civicloud.core.dates import parse_date
from civicloud.core.db import utcnow
from civicloud.core.errors import Conflict
from civicloud.core.services import Services
from civicloud.pay import billing, ledger, payments, refunds, settlement, webhooks
from civicloud.pay.context import pay_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

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


def run_jobs(services: Services) -> dict[str, int]:
    """Each Pay job once; returns what each did.

    One unit of work per payment or refund, so that a job holds the locks of one item (and the
    audit chain's head) only while the provider is asked about that item. An item that loses a
    race (a deadlock or a conflict, answered as ``Conflict``) is left for the next run.
    """
    context = services.context("pay", payments.PayContext)
    now = utcnow()
    done: Counter[str] = Counter()

    def each(items: Iterable[T], work: Callable[[Session, T], str | None], job: str) -> None:
        for item in items:
            try:
                with unit_of_work(services) as session:
                    outcome = work(session, item)
            except Conflict as exc:
                log.warning("pay %s: %s left for the next run: %s", job, item, exc)
                done["retry_later"] += 1
                continue
            if outcome is not None:
                done[f"{job}:{outcome}"] += 1

    with unit_of_work(services) as session:
        due = payments.payments_to_expire(session=session, now=now)
    each(
        due,
        lambda s, pid: payments.expire_payment(session=s, context=context, payment_id=pid, now=now),
        "expire",
    )
    with unit_of_work(services) as session:
        in_flight = payments.payments_in_flight(session=session)
    each(
        in_flight,
        lambda s, pid: payments.recover_payment(session=s, context=context, payment_id=pid),
        "recover",
    )
    with unit_of_work(services) as session:
        # A minute's grace: a provider that answered "processing" is not asked again at once.
        pending = refunds.refunds_to_resume(session=session, older_than=now - timedelta(minutes=1))

    def resume(session: Session, item: tuple[uuid.UUID, str]) -> str:
        refund_id, provider_name = item
        provider = context.providers.get(provider_name)
        if provider is None:
            return "provider_unavailable"
        return refunds.resume_refund(session=session, refund_id=refund_id, provider=provider).status

    each(pending, resume, "refund")
    with unit_of_work(services) as session:
        report = webhooks.deliver_due(session=session, now=now, send=webhooks.http_send, limit=20)
    return {
        "expired": sum(v for k, v in done.items() if k.startswith("expire:")),
        "recovered": sum(
            v for k, v in done.items() if k.startswith("recover:") and k != "recover:still_pending"
        ),
        "refunds_ended": done["refund:succeeded"] + done["refund:failed"],
        "retry_later": done["retry_later"],
        "webhooks_delivered": len(report.delivered),
        "webhooks_retrying": len(report.retrying),
        "webhooks_dead": len(report.dead),
    }


@pay_app.command("jobs")
@handle_errors
def jobs(data_dir: DataDirOpt = None) -> None:
    """Run each Pay job once: expiry, crash recovery, pending refunds, webhook delivery."""
    done = run_jobs(open_services(data_dir))
    console.print(", ".join(f"{k} {v}" for k, v in done.items()), highlight=False)


@pay_app.command("worker")
@handle_errors
def worker(
    data_dir: DataDirOpt = None,
    every: float = typer.Option(15.0, min=1.0, max=3600.0, help="Seconds between runs."),
) -> None:
    """Run the Pay jobs every few seconds until SIGINT or SIGTERM."""
    services = open_services(data_dir)
    stop = threading.Event()

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    console.print(f"pay worker: every {every:g} s; stop with Ctrl-C or SIGTERM")
    while not stop.is_set():
        try:
            done = run_jobs(services)
        except Exception:  # a worker outlives a failed run (a database restart, say)
            log.exception("pay worker: this run failed; the next one starts in %g s", every)
        else:
            if any(done.values()):
                console.print(", ".join(f"{k} {v}" for k, v in done.items()), highlight=False)
        stop.wait(every)
    console.print("pay worker stopped.")


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
