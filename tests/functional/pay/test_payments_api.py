"""Paying bills end to end: look-up, idempotent payment, sandbox notifications, ledger, receipt."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.factories.pay import make_biller, make_bills

from civicloud.core.services import Services
from civicloud.pay import ledger
from civicloud.pay.models import Bill, Payment, ProviderNotification, Receipt
from civicloud.pay.payments import PayContext
from civicloud.pay.providers import SandboxProvider


@pytest.fixture
def open_bill(core_services: Services) -> tuple[uuid.UUID, uuid.UUID, str]:
    """A biller and one open bill of 123.45 yuan: (biller id, bill id, account number)."""
    with core_services.db.unit_of_work() as session:
        biller = make_biller(session)
        (bill,) = make_bills(session, biller, account_number="0102030405")
        return biller.id, bill.id, bill.account_number


def pay_body(biller_id: uuid.UUID, bill_ids: list[uuid.UUID]) -> dict[str, Any]:
    return {
        "biller_id": str(biller_id),
        "bill_ids": [str(b) for b in bill_ids],
        "provider": "sandbox",
        "return_url": "/pay/done",
    }


def state(services: Services, bill_id: uuid.UUID) -> tuple[str, int, int]:
    """(bill status, succeeded payments of it, receipts of it)."""
    from civicloud.pay.models import BillPayment

    with services.db.unit_of_work(write=False) as session:
        bill = session.get(Bill, bill_id)
        assert bill is not None
        paid = session.scalars(
            select(BillPayment.payment_id).where(BillPayment.bill_id == bill_id)
        ).all()
        receipts = session.scalar(
            select(func.count()).select_from(Receipt).where(Receipt.payment_id.in_(paid))
        )
        return bill.status, len(paid), receipts or 0


def ledger_ok(services: Services) -> bool:
    with services.db.unit_of_work(write=False) as session:
        result = ledger.check_ledger(session=session)
    assert result.ok, result
    return True


def test_a_citizen_finds_a_bill_pays_it_and_gets_a_receipt(
    client: TestClient,
    core_services: Services,
    sandbox: SandboxProvider,
    open_bill: tuple[uuid.UUID, uuid.UUID, str],
) -> None:
    biller_id, bill_id, account = open_bill
    # given the citizen looks the account up
    found = client.get(f"/api/v1/pay/public/billers/{biller_id}/bills", params={"account": account})
    assert found.status_code == 200, found.text
    (bill,) = found.json()
    assert bill["payer_name_masked"] == "张*丰"
    # when they pay it
    created = client.post(
        "/api/v1/pay/payments",
        json=pay_body(biller_id, [bill_id]),
        headers={"Idempotency-Key": "citizen-1-" + uuid.uuid4().hex},
    )
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["status"] == "pending"
    assert payment["amount_fen"] == bill["total_fen"]
    assert payment["checkout"]["kind"] == "redirect"
    # and the sandbox reports success (twice, and an older "pending" after it)
    sandbox.simulate(payment["trade_no"], "succeeded", duplicate=True, out_of_order=True)
    # then the payment succeeded once, the bill is paid, a receipt exists, the ledger balances
    polled = client.get(f"/api/v1/pay/public/payments/{payment['trade_no']}")
    assert polled.json()["status"] == "succeeded"
    assert state(core_services, bill_id) == ("paid", 1, 1)
    assert ledger_ok(core_services)
    again = client.get(f"/api/v1/pay/public/billers/{biller_id}/bills", params={"account": account})
    assert again.json() == []


def test_the_same_key_replays_and_a_changed_body_is_refused(
    client: TestClient, open_bill: tuple[uuid.UUID, uuid.UUID, str]
) -> None:
    biller_id, bill_id, _ = open_bill
    key = "replay-" + uuid.uuid4().hex
    first = client.post(
        "/api/v1/pay/payments",
        json=pay_body(biller_id, [bill_id]),
        headers={"Idempotency-Key": key},
    )
    replay = client.post(
        "/api/v1/pay/payments",
        json=pay_body(biller_id, [bill_id]),
        headers={"Idempotency-Key": key},
    )
    changed = dict(pay_body(biller_id, [bill_id]), return_url="/elsewhere")
    refused = client.post("/api/v1/pay/payments", json=changed, headers={"Idempotency-Key": key})
    missing = client.post("/api/v1/pay/payments", json=pay_body(biller_id, [bill_id]))
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json()["id"] == first.json()["id"]
    assert refused.status_code == 409
    assert refused.json()["code"] == "pay.idempotency_key_reused"
    assert missing.status_code == 422


@pytest.mark.parametrize("ended", ["failed", "succeeded"])
def test_the_same_key_replays_a_payment_that_ended(
    client: TestClient,
    sandbox: SandboxProvider,
    open_bill: tuple[uuid.UUID, uuid.UUID, str],
    ended: str,
) -> None:
    # given a payment that failed (its bill open again) or succeeded (its bill paid)
    biller_id, bill_id, _ = open_bill
    key = "ended-" + uuid.uuid4().hex
    first = client.post(
        "/api/v1/pay/payments",
        json=pay_body(biller_id, [bill_id]),
        headers={"Idempotency-Key": key},
    ).json()
    sandbox.simulate(first["trade_no"], "succeeded" if ended == "succeeded" else "failed")
    # when the same request comes again, and the same key with another body
    replay = client.post(
        "/api/v1/pay/payments",
        json=pay_body(biller_id, [bill_id]),
        headers={"Idempotency-Key": key},
    )
    changed = dict(pay_body(biller_id, [bill_id]), return_url="/elsewhere")
    refused = client.post("/api/v1/pay/payments", json=changed, headers={"Idempotency-Key": key})
    # then the ended payment is replayed, not repeated, and the other body is refused
    assert replay.status_code == 200
    assert (replay.json()["id"], replay.json()["status"]) == (first["id"], ended)
    assert refused.status_code == 409


def test_a_notification_with_a_bad_signature_changes_nothing(
    client: TestClient,
    core_services: Services,
    sandbox: SandboxProvider,
    open_bill: tuple[uuid.UUID, uuid.UUID, str],
) -> None:
    biller_id, bill_id, _ = open_bill
    created = client.post(
        "/api/v1/pay/payments",
        json=pay_body(biller_id, [bill_id]),
        headers={"Idempotency-Key": uuid.uuid4().hex},
    ).json()
    # given a genuine success notification, captured rather than delivered
    (notice,) = sandbox.simulate(created["trade_no"], "succeeded", deliver=lambda *_: None)
    forged_body = notice.body.replace(b"succeeded", b"succeeded ")
    # when it arrives tampered with, then it is refused and nothing changes
    forged = client.post(
        "/api/v1/pay/notify/sandbox", content=forged_body, headers=dict(notice.headers)
    )
    assert forged.status_code in (400, 401, 403), forged.text
    assert state(core_services, bill_id) == ("open", 0, 0)
    # when the genuine one arrives, the bill is paid; sent again, nothing more happens
    genuine = client.post(
        "/api/v1/pay/notify/sandbox", content=notice.body, headers=dict(notice.headers)
    )
    assert genuine.status_code == 200, genuine.text
    repeated = client.post(
        "/api/v1/pay/notify/sandbox", content=notice.body, headers=dict(notice.headers)
    )
    assert repeated.status_code == 200
    assert state(core_services, bill_id) == ("paid", 1, 1)
    with core_services.db.unit_of_work(write=False) as session:
        payment = session.scalars(
            select(Payment).where(Payment.trade_no == created["trade_no"])
        ).one()
        count = session.scalar(
            select(func.count())
            .select_from(ProviderNotification)
            .where(ProviderNotification.payment_id == payment.id)
        )
    assert count == 1


def test_two_payments_of_a_bill_in_flight_the_first_success_pays_it_the_other_is_refunded(
    client: TestClient,
    core_services: Services,
    sandbox: SandboxProvider,
    open_bill: tuple[uuid.UUID, uuid.UUID, str],
) -> None:
    biller_id, bill_id, _ = open_bill
    # given a citizen is paying a bill (no payment in flight is exclusive, and none ends
    # another: tests/functional/pay/test_payment_holds.py)
    first = client.post(
        "/api/v1/pay/payments",
        json=pay_body(biller_id, [bill_id]),
        headers={"Idempotency-Key": uuid.uuid4().hex},
    ).json()
    # when someone else starts paying it too
    second = client.post(
        "/api/v1/pay/payments",
        json=dict(pay_body(biller_id, [bill_id]), return_url="/again"),
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    # then both are in flight
    assert second.status_code == 201, second.text
    assert second.json()["status"] == "pending"
    # and the first to succeed pays the bill once, nothing of it refunded
    sandbox.simulate(second.json()["trade_no"], "succeeded")
    sandbox.simulate(first["trade_no"], "succeeded")
    assert state(core_services, bill_id) == ("paid", 1, 1)
    with core_services.db.unit_of_work(write=False) as session:
        won, lost = (
            session.scalars(select(Payment).where(Payment.trade_no == trade)).one()
            for trade in (second.json()["trade_no"], first["trade_no"])
        )
        assert (won.status, won.refunded_fen) == ("succeeded", 0)
        # and the other's success is refunded in full
        assert (lost.status, lost.refunded_fen) == ("superseded", lost.amount_fen)
    assert ledger_ok(core_services)


@pytest.mark.parametrize("same_key", [True, False], ids=["one key", "fifty keys"])
def test_fifty_clients_racing_to_pay_one_bill_pay_it_once(
    core_services: Services,
    context: PayContext,
    sandbox: SandboxProvider,
    open_bill: tuple[uuid.UUID, uuid.UUID, str],
    same_key: bool,
) -> None:
    from civicloud.core.errors import CivicloudError
    from civicloud.pay import payments
    from civicloud.pay.schemas import PaymentCreate

    biller_id, bill_id, _ = open_bill
    shared = "race-" + uuid.uuid4().hex
    trades: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(50)

    def client_pays(n: int) -> None:
        start.wait()
        try:
            with core_services.db.unit_of_work() as session:
                payment, _ = payments.create_payment(
                    session=session,
                    data=PaymentCreate.model_validate(pay_body(biller_id, [bill_id])),
                    idempotency_key=shared if same_key else f"{shared}-{n}",
                    context=context,
                )
                trade = payment.trade_no
            sandbox.simulate(trade, "succeeded")
            with lock:
                trades.append(trade)
        except CivicloudError as exc:  # refused races are answers, not failures
            with lock:
                errors.append(exc.code)

    threads = [threading.Thread(target=client_pays, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # then every client got an answer, the bill was paid exactly once, the ledger balances
    assert len(trades) + len(errors) == 50
    assert all(code.startswith("pay.") or code == "core.conflict" for code in errors), errors
    assert state(core_services, bill_id) == ("paid", 1, 1), (errors, set(trades))
    with core_services.db.unit_of_work(write=False) as session:
        succeeded = session.scalar(
            select(func.count())
            .select_from(Payment)
            .where(Payment.biller_id == biller_id, Payment.status == "succeeded")
        )
    assert succeeded == 1
    # and every other payment the provider took money for is refunded in full
    with core_services.db.unit_of_work(write=False) as session:
        taken = session.scalars(select(Payment).where(Payment.trade_no.in_(trades))).all()
    assert len(taken) == len(set(trades))
    assert all(p.refunded_fen == (0 if p.status == "succeeded" else p.amount_fen) for p in taken), [
        (p.status, p.refunded_fen) for p in taken
    ]
    assert ledger_ok(core_services)
