"""Nobody can take over, cancel or hold up someone else's payment; anonymous payments are limited.

No payment is exclusive and none ends another: payments for the same bills may be in flight
together, the first success pays the bills, and a later success is refunded in full. Only the
payer who started a payment (holding its trade number) ends it by starting again; the same
request again (the same idempotency key) joins it. A payment past its expiry is ended only by
the expiry job, after asking the provider, so a late notification of a real payment is not
refunded. While any payment of a bill is in flight, the biller cannot amend or cancel it; the
expiry job ends those payments, and then it can. Payments started per client are rate-limited,
and ``return_url`` never leads off the site.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM
from tests.factories.pay import make_biller, make_bills

from civicloud.app import create_app
from civicloud.core.db import utcnow
from civicloud.core.services import Services
from civicloud.pay import billing, ledger, payments
from civicloud.pay.cli import run_jobs
from civicloud.pay.errors import BillBeingPaid, InvalidReturnUrl
from civicloud.pay.models import Bill, BillPayment, Payment
from civicloud.pay.payments import PayContext, check_return_url
from civicloud.pay.providers import SandboxProvider
from civicloud.pay.schemas import BillAmend, PaymentCreate

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


def lost(body: bytes, headers: Mapping[str, str]) -> None:
    """Where a notification goes that never arrives."""


def test_a_strangers_payments_neither_block_nor_end_the_payers(
    client: TestClient,
    core_services: Services,
    sandbox: SandboxProvider,
    open_bill: tuple[uuid.UUID, uuid.UUID],
) -> None:
    biller_id, bill_id = open_bill
    # given a stranger who looked the account up and started paying its bill, again and again
    strangers = [start(client, body(biller_id, bill_id, return_url="/x")) for _ in range(3)]
    assert [s.status_code for s in strangers] == [201, 201, 201], strangers[0].text
    # when the real payer pays it now
    mine = start(client, body(biller_id, bill_id))
    # then their payment starts at once, and the stranger's ones are left as they were
    assert mine.status_code == 201, mine.text
    trade_no = mine.json()["trade_no"]
    stranger_trades = [s.json()["trade_no"] for s in strangers]
    assert [payment(core_services, t).status for t in stranger_trades] == ["pending"] * 3
    # and when they complete it, the bill is paid by their payment, nothing of it refunded
    sandbox.simulate(trade_no, "succeeded")
    done = payment(core_services, trade_no)
    assert (done.status, done.refunded_fen) == ("succeeded", 0)
    assert paid_by(core_services, bill_id) == [done.id]
    # and should a stranger's payment be paid too, its money goes back in full
    sandbox.simulate(stranger_trades[0], "succeeded")
    late = payment(core_services, stranger_trades[0])
    assert (late.status, late.refunded_fen) == ("superseded", late.amount_fen)
    assert paid_by(core_services, bill_id) == [done.id]
    assert ledger_ok(core_services)


def test_a_payment_in_flight_is_not_ended_by_a_newer_one(
    client: TestClient,
    core_services: Services,
    sandbox: SandboxProvider,
    open_bill: tuple[uuid.UUID, uuid.UUID],
) -> None:
    biller_id, bill_id = open_bill
    # given a citizen is paying a bill at the provider
    first = start(client, body(biller_id, bill_id)).json()["trade_no"]
    # when someone else starts paying it too
    other = start(client, body(biller_id, bill_id, return_url="/x"))
    assert other.status_code == 201, other.text
    # then the citizen's payment is untouched and, completed first, pays the bill
    assert payment(core_services, first).status == "pending"
    sandbox.simulate(first, "succeeded")
    done = payment(core_services, first)
    assert (done.status, done.refunded_fen) == ("succeeded", 0)
    assert paid_by(core_services, bill_id) == [done.id]
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


def test_only_the_payer_who_holds_the_trade_number_ends_it_by_starting_again(
    core_services: Services,
    context: PayContext,
    sandbox: SandboxProvider,
    open_bill: tuple[uuid.UUID, uuid.UUID],
) -> None:
    biller_id, bill_id = open_bill
    data = PaymentCreate.model_validate(body(biller_id, bill_id))
    # given a payment in flight
    with core_services.db.unit_of_work() as session:
        first, _ = payments.create_payment(
            session=session, data=data, idempotency_key=uuid.uuid4().hex, context=context
        )
        first_trade = first.trade_no
    # when a stranger names a guessed trade number: their payment starts, the first stays
    guess = first_trade[:-1] + str((int(first_trade[-1]) + 1) % 10)
    with core_services.db.unit_of_work() as session:
        _, created = payments.create_payment(
            session=session,
            data=data,
            idempotency_key=uuid.uuid4().hex,
            context=context,
            replaces=["CC000000000000000000000000", guess],
        )
    assert created
    assert payment(core_services, first_trade).status == "pending"
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


def test_trade_numbers_share_nothing_to_guess_from() -> None:
    # given many trade numbers made in the same instant
    now = utcnow()
    made = [payments.new_trade_no(now) for _ in range(2000)]
    # then they are all different, and their random part does not follow a sequence
    assert len(set(made)) == len(made)
    tails = [int(t[-16:]) for t in made]
    assert len({b - a for a, b in itertools.pairwise(tails)}) > len(made) // 2
    assert all(len(t) == 26 and t.startswith(f"CC{now:%Y%m%d}") for t in made)


def test_a_payment_past_its_expiry_is_ended_only_after_asking_the_provider(
    client: TestClient,
    core_services: Services,
    sandbox: SandboxProvider,
    open_bill: tuple[uuid.UUID, uuid.UUID],
) -> None:
    biller_id, bill_id = open_bill
    # given a citizen paid at the provider, whose notification has not arrived (yet)
    first = start(client, body(biller_id, bill_id)).json()["trade_no"]
    sandbox.simulate(first, "succeeded", deliver=lost)
    age(core_services, first, timedelta(minutes=5))
    # when someone starts another payment for the bill
    second = start(client, body(biller_id, bill_id, return_url="/x"))
    # then it starts, and the citizen's payment is not ended without asking the provider
    assert second.status_code == 201, second.text
    assert payment(core_services, first).status == "pending"
    # and the expiry job asks, and the citizen's payment pays the bill, nothing refunded
    run_jobs(core_services)
    done = payment(core_services, first)
    assert (done.status, done.refunded_fen) == ("succeeded", 0)
    with core_services.db.unit_of_work(write=False) as session:
        assert session.get_one(Bill, bill_id).status == "paid"
    assert paid_by(core_services, bill_id) == [done.id]
    assert ledger_ok(core_services)


def test_the_biller_changes_a_bill_once_its_payments_in_flight_have_ended(
    client: TestClient, core_services: Services, open_bill: tuple[uuid.UUID, uuid.UUID]
) -> None:
    biller_id, bill_id = open_bill
    # given two payments of a bill in flight (a citizen's and a stranger's)
    trades = [start(client, body(biller_id, bill_id)).json()["trade_no"] for _ in range(2)]

    # when the biller amends or cancels it: refused, the payments untouched
    def amend(session: Session) -> object:
        data = BillAmend(amount_fen=100)
        return billing.amend_bill(session=session, actor=SYSTEM, bill_id=bill_id, data=data)

    def cancel(session: Session) -> object:
        return billing.cancel_bill(session=session, actor=SYSTEM, bill_id=bill_id)

    changes: list[Callable[[Session], object]] = [amend, cancel]
    for change in changes:
        with pytest.raises(BillBeingPaid), core_services.db.unit_of_work() as session:
            change(session)
    assert [payment(core_services, t).status for t in trades] == ["pending", "pending"]
    # when one has expired and the expiry job ended it: still refused, the other is in flight
    age(core_services, trades[0], timedelta(minutes=1))
    run_jobs(core_services)
    assert [payment(core_services, t).status for t in trades] == ["expired", "pending"]
    with pytest.raises(BillBeingPaid), core_services.db.unit_of_work() as session:
        billing.cancel_bill(session=session, actor=SYSTEM, bill_id=bill_id)
    # then once the job has ended the last, the biller cancels it
    age(core_services, trades[1], timedelta(minutes=1))
    run_jobs(core_services)
    with core_services.db.unit_of_work() as session:
        assert billing.cancel_bill(session=session, actor=SYSTEM, bill_id=bill_id).status == (
            "cancelled"
        )


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
    return create_app(services=core_services.with_settings(settings))


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
    check_return_url(return_url, PUBLIC + "/")


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
