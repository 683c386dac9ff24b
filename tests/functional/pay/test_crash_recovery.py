"""Killed mid-payment: after a restart, the recovery job completes every payment exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.conftest import TEST_AUDIT_KEY
from tests.factories.pay import make_biller, make_bills

from civicloud.cli import main as cli_main
from civicloud.core.services import Services
from civicloud.pay import ledger, payments
from civicloud.pay.models import Bill, BillPayment, JournalEntry, Payment, Receipt
from civicloud.pay.payments import PayContext
from civicloud.pay.providers import SandboxProvider

CLIENT = Path(__file__).with_name("crash_client.py")


def run_client(
    services: Services, biller_id: uuid.UUID, bill_id: uuid.UUID, crash_at: str
) -> tuple[int, str]:
    env = dict(
        os.environ,
        CRASH_AT=crash_at,
        CIVICLOUD_DATA_DIR=str(services.settings.data_dir),
        CIVICLOUD_DATABASE_URL=services.settings.effective_database_url,
        CIVICLOUD_AUDIT_KEY=TEST_AUDIT_KEY.get_secret_value(),
        PYTHONPATH=os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")]),
    )
    done = subprocess.run(
        [sys.executable, str(CLIENT), str(biller_id), str(bill_id), uuid.uuid4().hex],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout.strip()


def counts(services: Services, bill_id: uuid.UUID, trade_no: str) -> dict[str, object]:
    with services.db.unit_of_work(write=False) as session:
        payment = session.scalars(select(Payment).where(Payment.trade_no == trade_no)).one()
        bill = session.get(Bill, bill_id)
        assert bill is not None
        return {
            "payment": payment.status,
            "bill": bill.status,
            "bill_payments": session.scalar(
                select(func.count()).select_from(BillPayment).where(BillPayment.bill_id == bill_id)
            ),
            "postings": session.scalar(
                select(func.count())
                .select_from(JournalEntry)
                .where(JournalEntry.kind == "payment", JournalEntry.reference == str(payment.id))
            ),
            "receipts": session.scalar(
                select(func.count()).select_from(Receipt).where(Receipt.payment_id == payment.id)
            ),
        }


PAID_ONCE = {
    "payment": "succeeded",
    "bill": "paid",
    "bill_payments": 1,
    "postings": 1,
    "receipts": 1,
}


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", ["lost_notification", "before_ledger", "after_commit"])
def test_a_payment_killed_midway_is_completed_once_after_restart(
    fresh_services: Callable[[], Services], crash_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = fresh_services()
    monkeypatch.setenv("CIVICLOUD_DATABASE_URL", services.settings.database_url)
    monkeypatch.setenv("CIVICLOUD_AUDIT_KEY", TEST_AUDIT_KEY.get_secret_value())
    with services.db.unit_of_work() as session:
        biller = make_biller(session)
        (bill,) = make_bills(session, biller)
        biller_id, bill_id = biller.id, bill.id
    # given a citizen's payment whose process is killed at a point after the provider took
    # the money
    code, trade_no = run_client(services, biller_id, bill_id, crash_at)
    assert code == 9, trade_no
    before = counts(services, bill_id, trade_no)
    if crash_at == "after_commit":
        assert before == PAID_ONCE
    else:
        assert (before["payment"], before["postings"]) == ("pending", 0)
    # when the installation restarts and its recovery job runs (twice, as a cron would)
    for _ in range(2):
        with pytest.raises(SystemExit) as finished:
            cli_main(["pay", "jobs", "--data-dir", str(services.settings.data_dir)])
        assert finished.value.code == 0
    # then the payment is complete exactly once, and the ledger proves it
    assert counts(services, bill_id, trade_no) == PAID_ONCE
    with services.db.unit_of_work(write=False) as session:
        assert ledger.check_ledger(session=session).ok
    # and when the provider retries its notification later, nothing is paid twice
    context = services.context("pay", PayContext)
    sandbox = context.providers["sandbox"]
    assert isinstance(sandbox, SandboxProvider)
    for notice in sandbox.simulate(trade_no, "succeeded", deliver=lambda *_: None):
        with services.db.unit_of_work() as session:
            payments.handle_notification(
                session=session,
                context=context,
                provider_name="sandbox",
                headers=notice.headers,
                body=notice.body,
            )
    assert counts(services, bill_id, trade_no) == PAID_ONCE
