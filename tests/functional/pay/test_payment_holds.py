"""Nobody can take over or cancel someone else's payment, and anonymous payments are limited.

A payment in flight keeps its bills until it succeeds, fails or expires: a second payment for
them is refused with a clear conflict saying until when (``pay.bill_being_paid``), unless it is
the same request again (the same idempotency key) or the payer who started the first replaces
it (holding its trade number). Past its expiry and a short grace, a payment in flight gives way.
Payments started per client are rate-limited, and ``return_url`` never leads off the site.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from tests.factories.pay import make_biller, make_bills

from civicloud.app import create_app
from civicloud.core.db import utcnow
from civicloud.core.services import Services
from civicloud.pay import ledger, payments
from civicloud.pay.errors import BillBeingPaid, InvalidReturnUrl
from civicloud.pay.models import Bill, BillPayment, Payment
from civicloud.pay.payments import EXPIRY_GRACE, PayContext, check_return_url
from civicloud.pay.providers import SandboxProvider
from civicloud.pay.schemas import PaymentCreate

PUBLIC = "https://pay.example.gov.cn"


@pytest.fixture
def open_bill(core_services: Services) -> tuple[uuid.UUID, uuid.UUID]:
    """A biller and one open bill of 123.45 yuan: (biller id, bill id)."""
    with core_services.db.unit_of_work() as session:
        biller = make_biller(session)
        (bill,) = make_bills(session, biller)
        return biller.id, bill.id


def body(biller_id: uuid.UUID, bill_id: uuid.UUID, **changes: Any) -> dict[str, Any]:
    return {
        "biller_id": str(biller_id),
        "bill_ids": [str(bill_id)],
        "provider": "sandbox",
        "return_url": "/pay/return",
        **changes,
    }


def start(client: TestClient, data: dict[str, Any], key: str | None = None) -> Any:
    return client.post(
        "/api/v1/pay/payments", json=data, headers={"Idempotency-Key": key or uuid.uuid4().hex}
    )


def payment(services: Services, trade_no: str) -> Payment:
    with services.db.unit_of_work(write=False) as session:
        found = session.scalars(select(Payment).where(Payment.trade_no == trade_no)).one()
        session.expunge(found)
        return found


def paid_by(services: Services, bill_id: uuid.UUID) -> list[uuid.UUID]:
    with services.db.unit_of_work(write=False) as session:
        return list(
            session.scalars(select(BillPayment.payment_id).where(BillPayment.bill_id == bill_id))
        )


def ledger_ok(services: Services) -> bool:
    with services.db.unit_of_work(write=False) as session:
        result = ledger.check_ledger(session=session)
    assert result.ok, result
    return True


def age(services: Services, trade_no: str, expired_for: timedelta) -> None:
    """Move a payment's expiry into the past by ``expired_for``."""
    with services.db.unit_of_work() as session:
        session.execute(
            update(Payment)
            .where(Payment.trade_no == trade_no)
            .values(expires_at=utcnow() - expired_for)
        )


def test_a_strangers_payment_for_a_bill_in_flight_is_refused_and_changes_nothing(
    client: TestClient,
    core_services: Services,
    sandbox: SandboxProvider,
    open_bill: tuple[uuid.UUID, uuid.UUID],
) -> None:
    biller_id, bill_id = open_bill
    # given a citizen is paying a bill at the provider
    first = start(client, body(biller_id, bill_id))
    assert first.status_code == 201, first.text
    trade_no = first.json()["trade_no"]
    # when a stranger starts paying the same bill, again and again
    refusals = [start(client, body(biller_id, bill_id, return_url="/x")) for _ in range(3)]
    # then each is a conflict saying until when, and the citizen's payment is untouched
    for refused in refusals:
        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert problem["code"] == "pay.bill_being_paid"
        until = datetime.fromisoformat(problem["until"])
        expires_at = datetime.fromisoformat(first.json()["expires_at"])
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=until.tzinfo)
        assert until == expires_at + EXPIRY_GRACE
        assert problem["retry_after"] > 0
    assert payment(core_services, trade_no).status == "pending"
    # and when the citizen completes it, the bill is paid by it, nothing refunded
    sandbox.simulate(trade_no, "succeeded")
    done = payment(core_services, trade_no)
    assert (done.status, done.refunded_fen) == ("succeeded", 0)
    assert paid_by(core_services, bill_id) == [done.id]
    with core_services.db.unit_of_work(write=False) as session:
        made = session.scalar(
            select(func.count()).select_from(Payment).where(Payment.biller_id == biller_id)
        )
    assert made == 1
    assert ledger_ok(core_services)


def test_the_same_request_joins_the_payment_in_flight(
    client: TestClient, open_bill: tuple[uuid.UUID, uuid.UUID]
) -> None:
    biller_id, bill_id = open_bill
    key = "join-" + uuid.uuid4().hex
    # given a payment in flight
    first = start(client, body(biller_id, bill_id), key)
    # when its client sends the same request again (a retry after a lost answer)
    again = start(client, body(biller_id, bill_id), key)
    # then it gets the same payment, and the key with other bills or return is refused
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    other = start(client, body(biller_id, bill_id, return_url="/elsewhere"), key)
    assert (other.status_code, other.json()["code"]) == (409, "pay.idempotency_key_reused")


def test_the_payer_who_holds_the_trade_number_may_start_again(
    core_services: Services,
    context: PayContext,
    sandbox: SandboxProvider,
    open_bill: tuple[uuid.UUID, uuid.UUID],
) -> None:
    biller_id, bill_id = open_bill
    data = PaymentCreate.model_validate(body(biller_id, bill_id))
    # given a payment in flight, and a stranger refused
    with core_services.db.unit_of_work() as session:
        first, _ = payments.create_payment(
            session=session, data=data, idempotency_key=uuid.uuid4().hex, context=context
        )
        first_trade = first.trade_no
    with pytest.raises(BillBeingPaid), core_services.db.unit_of_work() as session:
        payments.create_payment(
            session=session,
            data=data,
            idempotency_key=uuid.uuid4().hex,
            context=context,
            replaces=["CC000000000000000000000000"],  # a guess is not the trade number
        )
    # when its own payer starts again, holding the first one's trade number
    with core_services.db.unit_of_work() as session:
        second, created = payments.create_payment(
            session=session,
            data=data,
            idempotency_key=uuid.uuid4().hex,
            context=context,
            replaces=[first_trade],
        )
        second_trade = second.trade_no
    assert created
    # then the first is superseded; paid late anyway, its money goes back; the bill is paid once
    assert payment(core_services, first_trade).status == "superseded"
    sandbox.simulate(second_trade, "succeeded")
    sandbox.simulate(first_trade, "succeeded")
    late = payment(core_services, first_trade)
    assert late.refunded_fen == late.amount_fen
    assert paid_by(core_services, bill_id) == [payment(core_services, second_trade).id]
    assert ledger_ok(core_services)


def test_a_payment_past_its_expiry_and_grace_gives_way(
    client: TestClient,
    core_services: Services,
    sandbox: SandboxProvider,
    open_bill: tuple[uuid.UUID, uuid.UUID],
) -> None:
    biller_id, bill_id = open_bill
    first = start(client, body(biller_id, bill_id)).json()["trade_no"]
    # given it expired, but is still within the grace for a late notification: still held
    age(core_services, first, EXPIRY_GRACE / 2)
    held = start(client, body(biller_id, bill_id))
    assert (held.status_code, held.json()["code"]) == (409, "pay.bill_being_paid")
    # when the grace has passed too (the expiry job has not run)
    age(core_services, first, EXPIRY_GRACE + timedelta(seconds=1))
    second = start(client, body(biller_id, bill_id))
    # then a new payment may start, the old one ended as expired
    assert second.status_code == 201, second.text
    assert payment(core_services, first).status == "expired"
    # and should the old one be paid after all, that money is refunded, the bill paid once
    sandbox.simulate(second.json()["trade_no"], "succeeded")
    sandbox.simulate(first, "succeeded")
    late = payment(core_services, first)
    assert late.refunded_fen == late.amount_fen
    with core_services.db.unit_of_work(write=False) as session:
        assert session.get_one(Bill, bill_id).status == "paid"
    assert len(paid_by(core_services, bill_id)) == 1
    assert ledger_ok(core_services)


@pytest.fixture
def limited_app(core_services: Services) -> FastAPI:
    """The application with at most two payments started per client per minute."""
    settings = core_services.settings.model_copy(
        update={
            "pay": core_services.settings.pay.model_copy(
                update={"payments_per_minute": 2, "public_base_url": PUBLIC}
            )
        }
    )
    return create_app(
        services=Services(
            settings=settings,
            db=core_services.db,
            passwords=core_services.passwords,
            principals=core_services.principals,
        )
    )


def test_payments_started_per_client_are_rate_limited(
    limited_app: FastAPI, core_services: Services
) -> None:
    with core_services.db.unit_of_work() as session:
        biller = make_biller(session)
        bills = [b.id for b in make_bills(session, biller, count=3)]
    client = TestClient(limited_app, base_url=PUBLIC)
    # given a client that started two payments this minute
    for bill_id in bills[:2]:
        assert start(client, body(biller.id, bill_id)).status_code == 201
    # when it starts a third
    third = start(client, body(biller.id, bills[2]))
    # then it is told to slow down, and nothing was created
    assert third.status_code == 429
    assert third.json()["code"] == "pay.payments_throttled"
    assert int(third.headers["Retry-After"]) > 0
    with core_services.db.unit_of_work(write=False) as session:
        held = session.scalar(
            select(func.count()).select_from(Payment).where(Payment.biller_id == biller.id)
        )
    assert held == 2
    client.close()


@pytest.mark.parametrize(
    "return_url",
    [
        "//evil.example/phish",
        "/\\evil.example/phish",
        "https://evil.example/phish",
        "http://pay.example.gov.cn/x",  # the right host, the wrong scheme
        "https://pay.example.gov.cn.evil.example/x",
        "https://pay.example.gov.cn@evil.example/x",
        "https://evil.example@pay.example.gov.cn/x",
        "https://pay.example.gov.cn:444/x",
        "/pay/return\r\nLocation: https://evil.example",
        "/pay/return\t",
    ],
)
def test_a_return_url_off_the_site_is_refused(return_url: str) -> None:
    with pytest.raises(InvalidReturnUrl):
        check_return_url(return_url, PUBLIC)


@pytest.mark.parametrize(
    "return_url",
    ["/pay/return", "/pay/return?from=app", "https://pay.example.gov.cn/pay/return"],
)
def test_paths_and_urls_at_the_public_address_are_accepted(return_url: str) -> None:
    check_return_url(return_url, PUBLIC)  # then nothing is raised
    assert check_return_url(return_url, PUBLIC + "/") is None


def test_the_api_refuses_an_open_redirect_and_creates_nothing(
    client: TestClient, core_services: Services, open_bill: tuple[uuid.UUID, uuid.UUID]
) -> None:
    biller_id, bill_id = open_bill
    refused = start(client, body(biller_id, bill_id, return_url="//evil.example/phish"))
    assert refused.status_code == 422
    assert refused.json()["code"] == "pay.invalid_return_url"
    with core_services.db.unit_of_work(write=False) as session:
        made = session.scalar(
            select(func.count()).select_from(Payment).where(Payment.biller_id == biller_id)
        )
    assert made == 0
