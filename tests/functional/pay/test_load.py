"""Two hundred clients at once, over a real socket, on both databases: every answer is the one
that request deserves (200, 201, 409, 422 …), never a 500 and, at this load, never a 503.

The clients race where money is at stake: one provider notification delivered by all of them,
one bill paid by all of them (with one Idempotency-Key and with one key each: two hundred
payments of one bill in flight together, then the successes of several of them delivered at
once), and one payment refunded in part by all of them. Afterwards the money is right: the bill
is paid once, every other success is refunded in full, refunds never exceed the payment, and the
ledger balances.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from tests.factories.core import make_member
from tests.factories.pay import make_agency, make_biller, make_bills
from tests.functional.live_server import serving

from civicloud.core.services import Services
from civicloud.pay import ledger, payments
from civicloud.pay.models import Bill, Payment, Refund
from civicloud.pay.payments import PayContext
from civicloud.pay.providers import SandboxProvider
from civicloud.pay.schemas import PaymentCreate

pytestmark = pytest.mark.slow

CLIENTS = 200


@pytest.fixture(scope="module")
def server(pay_app: FastAPI) -> Iterator[str]:
    """The application served by uvicorn on a loopback port, as ``civicloud serve`` runs it."""
    with serving(pay_app) as url:
        yield url


@pytest.fixture
def desk(core_services: Services) -> dict[str, Any]:
    """A biller with one open bill of 123.45 yuan, and its operator's API-key headers."""
    with core_services.db.unit_of_work() as session:
        agency = make_agency(session)
        biller = make_biller(session, tenant=agency)
        (bill,) = make_bills(session, biller, account_number="0102030405")
        operator = make_member(session, core_services.passwords, home=agency, role="pay_operator")
        return {"biller": biller.id, "bill": bill.id, "headers": operator.headers}


def all_at_once(send: Callable[[httpx2.Client, int], httpx2.Response]) -> Counter[int]:
    """Run ``send(client, n)`` for n in 0..CLIENTS-1, all released together; count the statuses.

    Each client comes from an address of its own (X-Forwarded-For, which the server trusts from
    loopback as behind a proxy), so per-client limits do not answer for the load.
    """
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def one(n: int) -> None:
        with httpx2.Client(
            timeout=120, headers={"X-Forwarded-For": f"198.51.{n // 250}.{n % 250 + 1}"}
        ) as http:
            start.wait()
            try:
                response = send(http, n)
            except httpx2.HTTPError as exc:  # no answer at all is the worst answer
                with lock:
                    failures.append(repr(exc))
                return
        with lock:
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{response.status_code} {response.text[:300]}")

    threads = [threading.Thread(target=one, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not failures, (statuses, failures[:5])
    assert sum(statuses.values()) == CLIENTS, statuses
    return statuses


def pay_body(desk: dict[str, Any]) -> dict[str, Any]:
    return {
        "biller_id": str(desk["biller"]),
        "bill_ids": [str(desk["bill"])],
        "provider": "sandbox",
        "return_url": "/pay",
    }


def bill_state(services: Services, desk: dict[str, Any]) -> tuple[str, int]:
    """(the bill's status, how many payments of its biller succeeded)."""
    with services.db.unit_of_work(write=False) as session:
        bill = session.get(Bill, desk["bill"])
        assert bill is not None
        succeeded = session.scalar(
            select(func.count())
            .select_from(Payment)
            .where(Payment.biller_id == desk["biller"], Payment.status == "succeeded")
        )
        return bill.status, int(succeeded or 0)


def ledger_balances(services: Services) -> bool:
    with services.db.unit_of_work(write=False) as session:
        result = ledger.check_ledger(session=session)
    assert result.ok, result
    return True


def start_payment(services: Services, context: PayContext, desk: dict[str, Any]) -> Payment:
    with services.db.unit_of_work() as session:
        payment, _ = payments.create_payment(
            session=session,
            data=PaymentCreate.model_validate(pay_body(desk)),
            idempotency_key="load-" + uuid.uuid4().hex,
            context=context,
        )
        return payment


def test_one_notification_delivered_by_two_hundred_clients_pays_the_bill_once(
    server: str,
    core_services: Services,
    context: PayContext,
    sandbox: SandboxProvider,
    desk: dict[str, Any],
) -> None:
    # given a payment in flight and the provider's signed notification of its success
    payment = start_payment(core_services, context, desk)
    (notice,) = sandbox.simulate(payment.trade_no, "succeeded", deliver=lambda _b, _h: None)

    # when 200 deliveries of it arrive at once
    statuses = all_at_once(
        lambda http, _n: http.post(
            f"{server}/api/v1/pay/notify/sandbox", content=notice.body, headers=notice.headers
        )
    )

    # then each is acknowledged (one that lost the race to record it first is run again and
    # finds it recorded), and the bill is paid exactly once
    assert set(statuses) == {200}, statuses
    assert bill_state(core_services, desk) == ("paid", 1)
    assert ledger_balances(core_services)


@pytest.mark.parametrize("same_key", [True, False], ids=["one key", "a key each"])
def test_two_hundred_clients_paying_one_bill_get_answers_not_errors(
    server: str,
    core_services: Services,
    sandbox: SandboxProvider,
    desk: dict[str, Any],
    same_key: bool,
) -> None:
    # given an open bill
    shared = "load-" + uuid.uuid4().hex

    # when 200 clients start paying it at once
    statuses = all_at_once(
        lambda http, n: http.post(
            f"{server}/api/v1/pay/payments",
            json=pay_body(desk),
            headers={"Idempotency-Key": shared if same_key else f"{shared}-{n}"},
        )
    )

    # then each gets a payment of its own (201), or the one its key made (200, a replay): no
    # payment in flight keeps the bill from the others, and the bill stays open
    if same_key:
        assert statuses == Counter({201: 1, 200: CLIENTS - 1}), statuses
    else:
        assert statuses == Counter({201: CLIENTS}), statuses
    assert bill_state(core_services, desk) == ("open", 0)
    with core_services.db.unit_of_work(write=False) as session:
        trades = list(
            session.scalars(
                select(Payment.trade_no)
                .where(Payment.biller_id == desk["biller"], Payment.status == "pending")
                .order_by(Payment.trade_no)
            )
        )
    assert len(trades) == (1 if same_key else CLIENTS)
    if same_key:
        return

    # when the provider took the money for five of them, and their successes arrive at once
    # (each delivered forty times)
    paid = trades[:5]
    notices = [
        notice
        for trade_no in paid
        for notice in sandbox.simulate(trade_no, "succeeded", deliver=lambda _b, _h: None)
    ]
    delivered = all_at_once(
        lambda http, n: http.post(
            f"{server}/api/v1/pay/notify/sandbox",
            content=notices[n % len(notices)].body,
            headers=notices[n % len(notices)].headers,
        )
    )
    # (each delivery is acknowledged: one that lost the race to record it first is run again)
    assert set(delivered) == {200}, delivered

    # then one of them pays the bill, the others' money goes back in full, the rest stay open
    assert bill_state(core_services, desk) == ("paid", 1)
    with core_services.db.unit_of_work(write=False) as session:
        rows = session.scalars(select(Payment).where(Payment.trade_no.in_(paid))).all()
    outcomes = Counter(
        (p.status, p.refunded_fen == (0 if p.status == "succeeded" else p.amount_fen)) for p in rows
    )
    assert outcomes == Counter({("succeeded", True): 1, ("superseded", True): 4}), outcomes
    assert ledger_balances(core_services)


def test_two_hundred_partial_refunds_at_once_never_refund_more_than_was_paid(
    server: str,
    core_services: Services,
    context: PayContext,
    sandbox: SandboxProvider,
    desk: dict[str, Any],
) -> None:
    # given a payment of 123.45 yuan that succeeded
    payment = start_payment(core_services, context, desk)
    sandbox.simulate(payment.trade_no, "succeeded")
    assert bill_state(core_services, desk) == ("paid", 1)

    # when its operator asks for 200 refunds of 1.00 yuan at once
    statuses = all_at_once(
        lambda http, n: http.post(
            f"{server}/api/v1/pay/payments/{payment.id}/refunds",
            json={"amount_fen": 100, "reason": f"load {n}"},
            headers={**desk["headers"], "Idempotency-Key": f"load-refund-{payment.id}-{n}"},
        )
    )

    # then each is made or refused, and what was refunded never exceeds what was paid
    assert set(statuses) <= {201, 409, 422}, statuses
    with core_services.db.unit_of_work(write=False) as session:
        refunded = session.scalar(
            select(func.coalesce(func.sum(Refund.amount_fen), 0)).where(
                Refund.payment_id == payment.id, Refund.status != "failed"
            )
        )
    assert int(refunded or 0) == 100 * statuses[201] <= payment.amount_fen
    assert statuses[201] == 123, statuses
    assert ledger_balances(core_services)
