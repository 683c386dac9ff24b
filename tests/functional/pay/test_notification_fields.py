"""A provider's word that a trade was paid must match the payment in every field, or pay nothing.

A notification (or a query answer of the jobs) that verifies but names another currency,
amount, app or payer amount than the payment's pays no bill. It is kept and audited as
refused, the payment ends, and all that the provider took is refunded automatically, as a late
success is, and posted (more or less than the payment's amount, as the provider took it); the
day's statement then shows the trade as a reconciliation exception, resolved by the refund's
own posting. Money taken in another currency is neither posted nor refunded automatically (the
ledger and the adapters' refunds are in CNY): kept with the provider's amount and currency, it
stays an open exception of the statement for an operator to refund at the provider. A notification of another merchant's
trade is kept and audited too, and touches nothing of ours. Every one of them is answered as
the provider's protocol wants a notification it need not send again, never with a 5XX.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.factories.core import make_member
from tests.factories.pay import make_biller, make_bills
from tests.factories.pay_receipts import make_agency
from tests.fakes.pay_gateways import FakeWechatGateway, wechat_callback
from tests.unit.pay.providers.helpers import (
    API_V3_KEY,
    APPID,
    MCHID,
    PLATFORM_SERIAL,
    Keys,
)

from civicloud.core.audit import AuditRecord
from civicloud.core.db import utcnow
from civicloud.core.services import Services
from civicloud.pay import ledger, payments
from civicloud.pay.models import (
    Bill,
    JournalEntry,
    JournalLine,
    LedgerAccount,
    Payment,
    PaymentBill,
    ProviderNotification,
    Refund,
)
from civicloud.pay.payments import PayContext
from civicloud.pay.providers import SandboxProvider, WechatPayProvider
from civicloud.pay.web.views import beijing_now


@pytest.fixture
def bill(core_services: Services) -> tuple[uuid.UUID, uuid.UUID]:
    """A biller and one open bill of 123.45 yuan: (biller id, bill id)."""
    with core_services.db.unit_of_work() as session:
        biller = make_biller(session)
        (made,) = make_bills(session, biller)
        return biller.id, made.id


def start_payment(
    client: TestClient, bill: tuple[uuid.UUID, uuid.UUID], provider: str = "sandbox"
) -> dict[str, Any]:
    biller_id, bill_id = bill
    made = client.post(
        "/api/v1/pay/payments",
        json={
            "biller_id": str(biller_id),
            "bill_ids": [str(bill_id)],
            "provider": provider,
            "return_url": "/pay/done",
        },
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert made.status_code == 201, made.text
    found: dict[str, Any] = made.json()
    return found


def outcome(services: Services, trade_no: str) -> dict[str, Any]:
    """What became of a payment: its bill, status, refunds, kept notifications and audit."""
    with services.db.unit_of_work(write=False) as session:
        payment = session.scalars(select(Payment).where(Payment.trade_no == trade_no)).one()
        (bill_status,) = session.execute(
            select(Bill.status)
            .join(PaymentBill, PaymentBill.bill_id == Bill.id)
            .where(PaymentBill.payment_id == payment.id)
        ).one()
        refunds = session.execute(
            select(Refund.origin, Refund.status, Refund.amount_fen).where(
                Refund.payment_id == payment.id
            )
        ).all()
        kept = session.execute(
            select(ProviderNotification.outcome, ProviderNotification.payload).where(
                ProviderNotification.payment_id == payment.id
            )
        ).all()
        audited = session.execute(
            select(AuditRecord.action, AuditRecord.outcome, AuditRecord.detail).where(
                AuditRecord.target == f"payment:{trade_no}"
            )
        ).all()
        return {
            "bill": bill_status,
            "status": payment.status,
            "amount_fen": payment.amount_fen,
            "refunded_fen": payment.refunded_fen,
            "refunds": [tuple(r) for r in refunds],
            "kept": [(o, (p or {}).get("_refused", {}).get("fields")) for o, p in kept],
            "audited": [
                (action, result, (detail or {}).get("refused"))
                for action, result, detail in audited
                if action in ("pay.payment.notify", "pay.payment.refuse")
            ],
        }


def ledger_balances(services: Services) -> None:
    with services.db.unit_of_work(write=False) as session:
        result = ledger.check_ledger(session=session)
    assert result.ok, result.describe()


def posted_for(services: Services, trade_no: str) -> dict[str, int]:
    """What the ledger moved for a payment and its refunds, per account (debits minus credits)."""
    with services.db.unit_of_work(write=False) as session:
        payment = session.scalars(select(Payment).where(Payment.trade_no == trade_no)).one()
        references = [str(payment.id)] + [
            str(refund_id)
            for refund_id in session.scalars(
                select(Refund.id).where(Refund.payment_id == payment.id)
            )
        ]
        moved: dict[str, int] = {}
        for line in session.scalars(
            select(JournalLine)
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .where(JournalEntry.reference.in_(references))
        ):
            debit = session.get_one(LedgerAccount, line.debit_account_id).code
            credit = session.get_one(LedgerAccount, line.credit_account_id).code
            moved[debit] = moved.get(debit, 0) + line.amount_fen
            moved[credit] = moved.get(credit, 0) - line.amount_fen
        return moved


def late_payment_posted(services: Services, trade_no: str) -> int | None:
    """The amount of the payment's ``late_payment`` entry, if it has one."""
    with services.db.unit_of_work(write=False) as session:
        payment_id = session.scalars(select(Payment.id).where(Payment.trade_no == trade_no)).one()
        amount = session.scalar(
            select(JournalLine.amount_fen)
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .where(
                JournalEntry.kind == ledger.LATE_PAYMENT, JournalEntry.reference == str(payment_id)
            )
        )
        return None if amount is None else int(amount)


def reconcile(
    client: TestClient, services: Services, sandbox: SandboxProvider, trade_no: str
) -> list[tuple[str, str, int | None, bool]]:
    """Import the sandbox's statement lines of ``trade_no`` for today; its exceptions, resolved
    or not, as (kind, classification, provider amount, resolved)."""
    with services.db.unit_of_work() as session:
        reconciler = make_member(
            session, services.passwords, home=make_agency(session), role="pay_admin", platform=True
        )
    day = beijing_now().date()
    text = sandbox.statement(day).decode()
    content = "".join(
        line + "\n"
        for line in text.splitlines()
        if line.startswith("#") or line.startswith("trade_no,") or line.startswith(trade_no)
    )
    imported = client.post(
        "/api/v1/pay/reconciliation/sandbox",
        params={"date": day.isoformat()},
        content=content.encode(),
        headers={**reconciler.headers, "Content-Type": "text/csv"},
    )
    assert imported.status_code == 200, imported.text
    items = client.get(
        "/api/v1/pay/reconciliation/items",
        params={"import_id": imported.json()["id"], "unresolved_only": "false", "limit": 1000},
        headers=reconciler.headers,
    )
    assert items.status_code == 200, items.text
    return sorted(
        (i["kind"], i["classification"], i["provider_amount_fen"], i["resolved_at"] is not None)
        for i in items.json()
        if i["trade_no"] == trade_no
    )


# --- the sandbox, over HTTP ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "taken_fen", "refused", "refunded_fen"),
    [
        ("CNY", 12_344, ["amount"], 12_344),
        ("CNY", 99_999, ["amount"], 99_999),
        ("CNY", 1, ["amount"], 1),
    ],
    ids=["less", "more", "one fen"],
)
def test_a_genuine_success_that_does_not_match_pays_nothing_and_is_refunded(
    client: TestClient,
    core_services: Services,
    sandbox: SandboxProvider,
    bill: tuple[uuid.UUID, uuid.UUID],
    currency: str,
    taken_fen: int,
    refused: list[str],
    refunded_fen: int,
) -> None:
    # given a payment of 123.45 yuan the provider settled for another amount
    payment = start_payment(client, bill)
    (notice,) = sandbox.simulate(
        payment["trade_no"],
        currency=currency,
        amount_fen=taken_fen,
        deliver=lambda _body, _headers: None,
    )
    # when its genuine notification arrives (twice)
    sent = {"content": notice.body, "headers": dict(notice.headers)}
    first = client.post("/api/v1/pay/notify/sandbox", **sent)  # type: ignore[arg-type]
    again = client.post("/api/v1/pay/notify/sandbox", **sent)  # type: ignore[arg-type]
    # then it is acknowledged (nothing to retry), and pays nothing: the payment ended, all that
    # was taken is refunded, the notification kept and audited as refused, once
    assert [(r.status_code, r.text) for r in (first, again)] == [(200, "ok"), (200, "ok")]
    found = outcome(core_services, payment["trade_no"])
    assert (found["bill"], found["status"], found["refunded_fen"]) == (
        "open",
        "failed",
        refunded_fen,
    )
    assert found["refunds"] == [("automatic", "succeeded", refunded_fen)]
    assert found["kept"] == [("refused", refused)]
    assert found["audited"] == [("pay.payment.notify", "failed", refused)]
    # and the ledger posted what the provider took, and its refund gave all of it back:
    # clearing moved as the provider's money did, and nothing is left owed
    assert late_payment_posted(core_services, payment["trade_no"]) == taken_fen
    assert posted_for(core_services, payment["trade_no"]) == {
        "clearing:sandbox": 0,
        "refunds_payable": 0,
    }
    ledger_balances(core_services)
    # and the day's statement shows the trade as an exception, resolved by its refund, which
    # gave back all the provider took (its refund's line matches the refund: no exception)
    assert reconcile(client, core_services, sandbox, payment["trade_no"]) == [
        ("payment", "missing_ours", taken_fen, True)
    ]
    # and the bill can still be paid
    retry = start_payment(client, bill)
    sandbox.simulate(retry["trade_no"])
    assert outcome(core_services, retry["trade_no"])["bill"] == "paid"


def kept_take(services: Services, trade_no: str) -> list[tuple[int | None, str | None]]:
    """The amount and currency the provider stated in each refused word kept of the trade."""
    with services.db.unit_of_work(write=False) as session:
        payloads = session.scalars(
            select(ProviderNotification.payload)
            .join(Payment, Payment.id == ProviderNotification.payment_id)
            .where(Payment.trade_no == trade_no)
        ).all()
    return [
        (p["_refused"].get("amount_fen"), p["_refused"].get("currency"))
        for p in payloads
        if "_refused" in p
    ]


@pytest.mark.parametrize("currency", ["USD", "CNYX"])
def test_a_genuine_success_in_another_currency_is_kept_for_an_operator_and_never_posted(
    client: TestClient,
    core_services: Services,
    sandbox: SandboxProvider,
    bill: tuple[uuid.UUID, uuid.UUID],
    currency: str,
) -> None:
    # given a payment of 123.45 yuan the provider settled as 12345 minor units of another
    # currency
    payment = start_payment(client, bill)
    trade_no = payment["trade_no"]
    (notice,) = sandbox.simulate(trade_no, currency=currency, deliver=lambda _body, _headers: None)
    # when its genuine notification arrives (twice)
    sent = {"content": notice.body, "headers": dict(notice.headers)}
    first = client.post("/api/v1/pay/notify/sandbox", **sent)  # type: ignore[arg-type]
    again = client.post("/api/v1/pay/notify/sandbox", **sent)  # type: ignore[arg-type]
    # then it is acknowledged and pays nothing; it is kept with the provider's own amount and
    # currency, and audited as left to an operator
    assert [(r.status_code, r.text) for r in (first, again)] == [(200, "ok"), (200, "ok")]
    found = outcome(core_services, trade_no)
    assert (found["bill"], found["status"], found["refunded_fen"]) == ("open", "failed", 0)
    assert found["kept"] == [("refused", ["currency"])]
    assert kept_take(core_services, trade_no) == [(12_345, currency)]
    assert found["audited"] == [("pay.payment.notify", "failed", ["currency"])]
    with core_services.db.unit_of_work(write=False) as session:
        (detail,) = session.scalars(
            select(AuditRecord.detail).where(
                AuditRecord.target == f"payment:{trade_no}",
                AuditRecord.action == "pay.payment.notify",
            )
        ).all()
    assert (detail["outcome"], detail["amount_fen"], detail["currency"]) == (
        payments.REFUSED_FOR_OPERATOR,
        12_345,
        currency,
    )
    # and no refund in our currency was sent for it, and the CNY ledger holds none of it
    assert found["refunds"] == []
    statement = sandbox.statement(beijing_now().date()).decode().splitlines()
    assert [line for line in statement if line.startswith(trade_no) and ",refund," in line] == []
    assert posted_for(core_services, trade_no) == {}
    ledger_balances(core_services)
    # and the day's statement shows the trade as an open exception for an operator
    assert reconcile(client, core_services, sandbox, trade_no) == [
        ("payment", "missing_ours", 12_345, False)
    ]
    # and the bill can still be paid
    retry = start_payment(client, bill)
    sandbox.simulate(retry["trade_no"])
    assert outcome(core_services, retry["trade_no"])["bill"] == "paid"


def test_a_notification_of_no_payment_of_ours_is_refused_for_a_retry(
    client: TestClient, sandbox: SandboxProvider, bill: tuple[uuid.UUID, uuid.UUID]
) -> None:
    # given a genuine notification of a trade we have no payment for (yet)
    payment = start_payment(client, bill)
    (notice,) = sandbox.simulate(payment["trade_no"], deliver=lambda _body, _headers: None)
    body = notice.body.replace(payment["trade_no"].encode(), b"CC20000101" + b"0" * 16)
    # when it arrives, then it is refused with a problem (not a 5XX), so the provider retries
    refused = client.post("/api/v1/pay/notify/sandbox", content=body, headers=sandbox.sign(body))
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "pay.invalid_notification"


@pytest.mark.parametrize("job", ["recover", "expire"])
@pytest.mark.parametrize(
    ("currency", "taken_fen", "refunded_fen"),
    [("USD", None, 0), ("CNY", 100, 100), ("CNY", 99_999, 99_999)],
    ids=["another currency", "less", "more"],
)
def test_a_query_answer_that_does_not_match_pays_nothing_and_is_refunded(
    client: TestClient,
    core_services: Services,
    context: PayContext,
    sandbox: SandboxProvider,
    bill: tuple[uuid.UUID, uuid.UUID],
    job: str,
    currency: str,
    taken_fen: int | None,
    refunded_fen: int,
) -> None:
    # given a payment the provider settled otherwise, whose notification never came
    payment = start_payment(client, bill)
    sandbox.simulate(
        payment["trade_no"],
        currency=currency,
        amount_fen=taken_fen,
        deliver=lambda _body, _headers: None,
    )
    # when a job asks the provider about it
    payment_id = uuid.UUID(payment["id"])
    with core_services.db.unit_of_work() as session:
        if job == "recover":
            done = payments.recover_payment(session=session, context=context, payment_id=payment_id)
        else:
            later = utcnow() + timedelta(days=1)
            done = payments.expire_payment(
                session=session, context=context, payment_id=payment_id, now=later
            )
    # then the answer pays nothing: the payment ended, all the money taken refunded (money in
    # another currency left to an operator, unposted), the answer kept and audited as refused
    found = outcome(core_services, payment["trade_no"])
    assert (found["bill"], found["status"], found["refunded_fen"]) == (
        "open",
        "failed",
        refunded_fen,
    )
    refused = ["currency"] if taken_fen is None else ["amount"]
    assert found["kept"] == [("refused", refused)]
    assert ("pay.payment.refuse", "failed", refused) in found["audited"]
    if taken_fen is None:
        assert done == payments.REFUSED_FOR_OPERATOR
        assert found["refunds"] == []
        assert kept_take(core_services, payment["trade_no"]) == [(12_345, currency)]
        assert posted_for(core_services, payment["trade_no"]) == {}
    else:
        assert done == payments.REFUSED_REFUNDED
        assert found["refunds"] == [("automatic", "succeeded", refunded_fen)]
        assert late_payment_posted(core_services, payment["trade_no"]) == taken_fen
        assert posted_for(core_services, payment["trade_no"]) == {
            "clearing:sandbox": 0,
            "refunds_payable": 0,
        }
    ledger_balances(core_services)


# --- WeChat Pay, over HTTP -----------------------------------------------------------------


def wechat_paid(
    keys: Keys, gateway: FakeWechatGateway, trade_no: str, **changes: Any
) -> tuple[dict[str, str], bytes]:
    """The citizen pays at WeChat; its TRANSACTION.SUCCESS callback, with ``changes``."""
    gateway.pay(trade_no)
    order = gateway.orders[trade_no]
    transaction: dict[str, Any] = {
        "appid": APPID,
        "mchid": MCHID,
        "out_trade_no": trade_no,
        "transaction_id": order["transaction_id"],
        "trade_type": "NATIVE",
        "trade_state": "SUCCESS",
        "success_time": "2026-11-26T10:00:05+08:00",
        "amount": {
            "total": order["amount"]["total"],
            "payer_total": order["amount"]["total"],
            "currency": "CNY",
            "payer_currency": "CNY",
        },
    }
    for key, value in changes.items():
        if key in transaction["amount"]:
            transaction["amount"][key] = value
        else:
            transaction[key] = value
    return wechat_callback(
        transaction,
        api_v3_key=API_V3_KEY,
        platform_key=keys.wechat_platform,
        serial=PLATFORM_SERIAL,
        timestamp=int(time.time()),
        notify_id=f"EV-{uuid.uuid4().hex}",
    )


@pytest.mark.parametrize(
    ("changes", "refused"),
    [
        ({"currency": "USD", "payer_currency": "USD"}, ["currency"]),
        ({"currency": "CNYX", "payer_currency": "CNYX"}, ["currency"]),
        ({"appid": "wx0000000000000000"}, ["appid"]),
        (
            {
                "payer_total": 12_000,
                "promotion_detail": [{"coupon_id": "1", "type": "NOCASH", "amount": 345}],
            },
            ["promotion_detail"],
        ),
        ({"total": 1}, ["amount"]),
        ({"total": 99_999}, ["amount"]),
    ],
    ids=["USD", "CNYX", "another appid", "a no-recharge coupon", "a smaller total", "a larger"],
)
def test_a_genuine_wechat_success_that_does_not_match_pays_nothing_and_is_refunded(
    client: TestClient,
    core_services: Services,
    keys: Keys,
    gateway: FakeWechatGateway,
    wechatpay: WechatPayProvider,
    bill: tuple[uuid.UUID, uuid.UUID],
    changes: dict[str, Any],
    refused: list[str],
) -> None:
    # given a payment of 123.45 yuan through WeChat Pay
    payment = start_payment(client, bill, "wechatpay")
    trade_no = payment["trade_no"]
    if "total" in changes:
        gateway.orders[trade_no]["amount"]["total"] = changes["total"]  # WeChat took that
    headers, body = wechat_paid(keys, gateway, trade_no, **changes)
    # when WeChat's validly signed TRANSACTION.SUCCESS callback says otherwise than the payment
    taken = client.post("/api/v1/pay/notify/wechatpay", content=body, headers=headers)
    # then it is acknowledged as WeChat wants (204: do not retry), and it pays no bill
    assert (taken.status_code, taken.content) == (204, b""), taken.text
    found = outcome(core_services, trade_no)
    assert (found["bill"], found["status"]) == ("open", "failed")
    assert found["kept"] == [("refused", refused)]
    assert found["audited"] == [("pay.payment.notify", "failed", refused)]
    made = [r for r in gateway.refunds.values() if r["out_trade_no"] == trade_no]
    if "currency" in refused:
        # and money taken in another currency is not refunded in CNY (WeChat's refunds are):
        # it is left to an operator, and the CNY ledger holds none of it
        assert (made, found["refunds"]) == ([], [])
        assert posted_for(core_services, trade_no) == {}
    else:
        # and all the money WeChat took is being refunded (WeChat answers PROCESSING), the
        # trade's total as WeChat knows it, and posted as WeChat took it
        total = gateway.orders[trade_no]["amount"]["total"]
        assert [r["amount"] for r in made] == [{"refund": total, "total": total, "currency": "CNY"}]
        assert found["refunds"] == [("automatic", "pending", total)]
        assert late_payment_posted(core_services, trade_no) == total
    ledger_balances(core_services)


@pytest.mark.parametrize(
    "changes",
    [
        {
            "payer_total": 12_000,
            "promotion_detail": [{"coupon_id": "1", "type": "CASH", "amount": 345}],
        },
        {"payer_currency": "USD"},
    ],
    ids=["part paid by a WeChat Pay coupon", "payer's own currency"],
)
def test_a_genuine_wechat_success_paid_partly_by_a_coupon_pays_the_bill(
    client: TestClient,
    core_services: Services,
    keys: Keys,
    gateway: FakeWechatGateway,
    wechatpay: WechatPayProvider,
    bill: tuple[uuid.UUID, uuid.UUID],
    changes: dict[str, Any],
) -> None:
    # given a payment of 123.45 yuan the payer paid in part with a coupon WeChat Pay funds
    # (the merchant is settled for amount.total, in amount.currency)
    payment = start_payment(client, bill, "wechatpay")
    headers, body = wechat_paid(keys, gateway, payment["trade_no"], **changes)
    # when its callback arrives
    taken = client.post("/api/v1/pay/notify/wechatpay", content=body, headers=headers)
    # then it pays the bill, nothing is refunded, and the payer's figures are kept as stated
    assert taken.status_code == 204, taken.text
    found = outcome(core_services, payment["trade_no"])
    assert (found["bill"], found["status"], found["refunds"]) == ("paid", "succeeded", [])
    with core_services.db.unit_of_work(write=False) as session:
        (payload,) = session.scalars(
            select(ProviderNotification.payload)
            .join(Payment, Payment.id == ProviderNotification.payment_id)
            .where(Payment.trade_no == payment["trade_no"])
        ).all()
    stated = payload["transaction"]["amount"]
    assert stated.get("payer_total") == changes.get("payer_total", 12_345)
    assert stated.get("payer_currency") == changes.get("payer_currency", "CNY")
    ledger_balances(core_services)


def test_a_wechat_notification_of_another_merchant_is_kept_and_changes_nothing(
    client: TestClient,
    core_services: Services,
    keys: Keys,
    gateway: FakeWechatGateway,
    wechatpay: WechatPayProvider,
    bill: tuple[uuid.UUID, uuid.UUID],
) -> None:
    # given a payment in flight through WeChat Pay
    payment = start_payment(client, bill, "wechatpay")
    trade_no = payment["trade_no"]
    headers, body = wechat_paid(keys, gateway, trade_no, mchid="1900000110")
    # when a genuine callback of another merchant's trade of that number arrives
    taken = client.post("/api/v1/pay/notify/wechatpay", content=body, headers=headers)
    # then it is acknowledged and kept (with no payment of ours), and nothing is refunded
    assert taken.status_code == 204, taken.text
    found = outcome(core_services, trade_no)
    assert (found["bill"], found["status"], found["refunds"], found["kept"]) == (
        "open",
        "pending",
        [],
        [],
    )
    assert gateway.refunds == {}
    with core_services.db.unit_of_work(write=False) as session:
        (kept,) = session.execute(
            select(ProviderNotification.outcome, ProviderNotification.payment_id).where(
                ProviderNotification.payload["transaction"]["out_trade_no"].as_string() == trade_no
            )
        ).all()
    assert tuple(kept) == ("refused", None)
    assert found["audited"] == [("pay.payment.notify", "failed", ["merchant"])]
    # and our own trade's callback still pays the bill
    headers, body = wechat_paid(keys, gateway, trade_no)
    assert (
        client.post("/api/v1/pay/notify/wechatpay", content=body, headers=headers).status_code
        == 204
    )
    assert outcome(core_services, trade_no)["bill"] == "paid"
    ledger_balances(core_services)
