"""WeChat Pay's refund callbacks over HTTP: ``POST /api/v1/pay/notify/wechatpay``.

WeChat's part is played as in the adapter's own tests: the callbacks are signed with the
``wechatpayv3`` SDK's ``rsa_sign`` by a test platform key and their resource encrypted with
AES-256-GCM under the APIv3 key; refunds are asked of a fake gateway on loopback, which answers
``PROCESSING`` as WeChat does. A callback that does not verify or does not fit our refund is
refused (and WeChat retries it); a genuine one ends the refund once.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.factories.core import make_member
from tests.factories.pay_money import make_biller, make_payment
from tests.factories.pay_receipts import make_agency
from tests.fakes.pay_gateways import (
    FakeWechatGateway,
    RsaPair,
    wechat_refund_callback,
    wechat_refund_resource,
)
from tests.unit.pay.providers.helpers import (
    API_V3_KEY,
    APPID,
    MCHID,
    PLATFORM_SERIAL,
    Keys,
)

from civicloud.core.audit import AuditRecord
from civicloud.core.services import Services
from civicloud.pay import ledger, refunds
from civicloud.pay.models import JournalEntry, Payment, ProviderNotification, Refund
from civicloud.pay.providers import WechatPayProvider

NOTIFY = "/api/v1/pay/notify/wechatpay"


@pytest.fixture
def paid(core_services: Services, gateway: FakeWechatGateway) -> dict[str, Any]:
    """A payment of 100 yuan made through WeChat Pay, and an operator who may refund it."""
    with core_services.db.unit_of_work() as session:
        agency = make_agency(session)
        biller = make_biller(session, tenant=agency)
        payment = make_payment(session, biller, amount_fen=10_000, provider="wechatpay")
        operator = make_member(session, core_services.passwords, home=agency, role="pay_operator")
        found = {
            "id": str(payment.id),
            "trade_no": payment.trade_no,
            "transaction_id": payment.provider_trade_no,
            "amount_fen": payment.amount_fen,
            "headers": operator.headers,
        }
    gateway.orders[payment.trade_no] = {
        "appid": APPID,
        "mchid": MCHID,
        "out_trade_no": payment.trade_no,
        "transaction_id": payment.provider_trade_no,
        "trade_state": "SUCCESS",
        "amount": {"total": 10_000, "currency": "CNY"},
    }
    return found


def ask_refund(client: TestClient, paid: dict[str, Any], amount: int, key: str) -> Any:
    return client.post(
        f"/api/v1/pay/payments/{paid['id']}/refunds",
        json={"amount_fen": amount, "reason": "overcharged"},
        headers={**paid["headers"], "Idempotency-Key": key},
    )


def callback(
    keys: Keys,
    paid: dict[str, Any],
    refund_no: str,
    amount: int,
    *,
    event_type: str = "REFUND.SUCCESS",
    signer: RsaPair | None = None,
    sent_at: int | None = None,
    notify_id: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """A refund callback for ``refund_no`` of the paid trade, signed as the platform does."""
    resource = wechat_refund_resource(
        mchid=MCHID,
        out_trade_no=paid["trade_no"],
        out_refund_no=refund_no,
        refund_fen=amount,
        total_fen=paid["amount_fen"],
        refund_status=event_type.removeprefix("REFUND."),
        transaction_id=paid["transaction_id"],
    )
    return wechat_refund_callback(
        resource,
        api_v3_key=API_V3_KEY,
        platform_key=signer or keys.wechat_platform,
        serial=PLATFORM_SERIAL,
        timestamp=sent_at or int(time.time()),
        event_type=event_type,
        notify_id=notify_id or f"EV-{uuid.uuid4().hex}",
    )


def notify(client: TestClient, sent: tuple[dict[str, str], bytes]) -> Any:
    headers, body = sent
    return client.post(NOTIFY, content=body, headers=headers)


def refund_state(services: Services, refund_no: str) -> tuple[str, int, int, int]:
    """(refund status, its ledger postings, its payment's refunded_fen, notifications kept)."""
    with services.db.unit_of_work(write=False) as session:
        refund = session.scalars(select(Refund).where(Refund.refund_no == refund_no)).one()
        payment = session.get(Payment, refund.payment_id)
        assert payment is not None
        postings = session.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.reference == str(refund.id))
        )
        kept = session.scalar(
            select(func.count())
            .select_from(ProviderNotification)
            .where(
                ProviderNotification.payment_id == payment.id,
                ProviderNotification.event.startswith("refund:"),
            )
        )
        return refund.status, postings or 0, payment.refunded_fen, kept or 0


def ledger_clean(services: Services) -> None:
    with services.db.unit_of_work(write=False) as session:
        result = ledger.check_ledger(session=session)
    assert result.ok, result.describe()


def test_a_refund_success_callback_ends_the_refund_once(
    client: TestClient,
    core_services: Services,
    keys: Keys,
    wechatpay: WechatPayProvider,
    paid: dict[str, Any],
) -> None:
    # given a refund WeChat Pay answered PROCESSING
    asked = ask_refund(client, paid, 3_000, uuid.uuid4().hex)
    assert asked.status_code == 201, asked.text
    refund = asked.json()
    assert refund["status"] == "pending"
    assert refund_state(core_services, refund["refund_no"]) == ("pending", 0, 3_000, 0)
    sent = callback(keys, paid, refund["refund_no"], 3_000)
    # when its REFUND.SUCCESS callback arrives
    taken = notify(client, sent)
    # then it is acknowledged, the refund succeeded and is posted once
    assert (taken.status_code, taken.content) == (204, b"")
    assert refund_state(core_services, refund["refund_no"]) == ("succeeded", 1, 3_000, 1)
    # when WeChat sends the same callback again, then it is acknowledged and changes nothing
    again = notify(client, sent)
    assert again.status_code == 204
    assert refund_state(core_services, refund["refund_no"]) == ("succeeded", 1, 3_000, 1)
    # and the refunds list shows it, the callback is audited, and the ledger balances
    listed = client.get(f"/api/v1/pay/payments/{paid['id']}/refunds", headers=paid["headers"])
    assert [(r["refund_no"], r["status"]) for r in listed.json()] == [
        (refund["refund_no"], "succeeded")
    ]
    with core_services.db.unit_of_work(write=False) as session:
        audited = session.scalars(
            select(AuditRecord.action).where(AuditRecord.target == f"payment:{paid['trade_no']}")
        ).all()
    assert audited.count("pay.refund.notify") == 1
    ledger_clean(core_services)


@pytest.mark.parametrize("forgery", ["stranger's key", "tampered body", "stale", "no signature"])
def test_a_refund_callback_that_does_not_verify_is_refused_and_changes_nothing(
    client: TestClient,
    core_services: Services,
    keys: Keys,
    wechatpay: WechatPayProvider,
    paid: dict[str, Any],
    forgery: str,
) -> None:
    # given a pending refund
    refund = ask_refund(client, paid, 3_000, uuid.uuid4().hex).json()
    headers, body = callback(keys, paid, refund["refund_no"], 3_000)
    # when a callback for it arrives that the platform did not sign as sent
    if forgery == "stranger's key":
        headers, body = callback(keys, paid, refund["refund_no"], 3_000, signer=keys.stranger)
    elif forgery == "tampered body":
        body = body.replace(b"REFUND.SUCCESS", b"REFUND.CLOSED")
    elif forgery == "stale":
        headers, body = callback(
            keys, paid, refund["refund_no"], 3_000, sent_at=int(time.time()) - 600
        )
    else:
        headers = {k: v for k, v in headers.items() if k != "Wechatpay-Signature"}
    refused = client.post(NOTIFY, content=body, headers=headers)
    # then it is refused with a clear problem, and the refund is untouched
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "pay.invalid_notification"
    assert refund_state(core_services, refund["refund_no"]) == ("pending", 0, 3_000, 0)


def test_a_callback_for_an_unknown_refund_or_another_amount_is_refused(
    client: TestClient,
    core_services: Services,
    keys: Keys,
    wechatpay: WechatPayProvider,
    paid: dict[str, Any],
) -> None:
    # given a pending refund of 30 yuan
    refund = ask_refund(client, paid, 3_000, uuid.uuid4().hex).json()
    # when genuine callbacks name a refund number we never issued, or another amount
    unknown = notify(client, callback(keys, paid, "RF" + "0" * 30, 3_000))
    less = notify(client, callback(keys, paid, refund["refund_no"], 2_999))
    more = notify(client, callback(keys, paid, refund["refund_no"], 3_001))
    # then each is refused with a clear problem, and nothing changed
    for refused in (unknown, less, more):
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "pay.invalid_notification"
    assert "no refund" in unknown.json()["detail"]
    assert "29.99" in less.json()["detail"]
    assert refund_state(core_services, refund["refund_no"]) == ("pending", 0, 3_000, 0)
    # and the genuine one is still taken
    assert notify(client, callback(keys, paid, refund["refund_no"], 3_000)).status_code == 204
    assert refund_state(core_services, refund["refund_no"])[:2] == ("succeeded", 1)


def test_a_refund_callback_before_the_refund_is_recorded_is_taken_when_retried(
    client: TestClient,
    core_services: Services,
    keys: Keys,
    wechatpay: WechatPayProvider,
    paid: dict[str, Any],
) -> None:
    # given WeChat's callback arrives before our refund request has committed
    key = uuid.uuid4().hex
    refund_no = refunds.refund_no_for(key)
    sent = callback(keys, paid, refund_no, 3_000)
    early = notify(client, sent)
    # then it is refused (WeChat retries), and nothing is kept that would make the retry a
    # duplicate
    assert early.status_code == 403
    with core_services.db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).where(Refund.refund_no == refund_no)) == 0
    # when the request commits and WeChat retries the same callback
    asked = ask_refund(client, paid, 3_000, key)
    assert asked.json()["refund_no"] == refund_no
    retried = notify(client, sent)
    # then it is taken
    assert retried.status_code == 204
    assert refund_state(core_services, refund_no) == ("succeeded", 1, 3_000, 1)
    ledger_clean(core_services)


def test_a_refund_callback_before_the_refund_answer_ends_it_and_a_retry_does_not_repeat_it(
    client: TestClient,
    core_services: Services,
    keys: Keys,
    wechatpay: WechatPayProvider,
    gateway: FakeWechatGateway,
    paid: dict[str, Any],
) -> None:
    # given a refund whose answer never came through (an unverifiable answer): it is pending,
    # its amount held, and the refund made at WeChat
    gateway.mode = "bad_sign"
    key = uuid.uuid4().hex
    asked = ask_refund(client, paid, 4_000, key)
    assert asked.status_code == 201, asked.text
    refund = asked.json()
    assert (refund["status"], refund["provider_refund_no"]) == ("pending", None)
    gateway.mode = "normal"
    made = gateway.refunds[refund["refund_no"]]
    # when WeChat's REFUND.SUCCESS callback arrives
    assert notify(client, callback(keys, paid, refund["refund_no"], 4_000)).status_code == 204
    # then the refund succeeded, with WeChat's refund number, and is posted once
    assert refund_state(core_services, refund["refund_no"]) == ("succeeded", 1, 4_000, 1)
    # when the operator repeats the request with the same key
    calls = len(gateway.calls)
    again = ask_refund(client, paid, 4_000, key)
    # then the same refund is returned, WeChat is not asked again, nothing is posted twice
    assert again.status_code == 201
    assert (again.json()["id"], again.json()["status"]) == (refund["id"], "succeeded")
    assert again.json()["provider_refund_no"] == "50300906782026112612345678901"
    assert len(gateway.calls) == calls
    assert made["out_refund_no"] == refund["refund_no"]
    assert refund_state(core_services, refund["refund_no"]) == ("succeeded", 1, 4_000, 1)
    ledger_clean(core_services)


@pytest.mark.parametrize("event_type", ["REFUND.ABNORMAL", "REFUND.CLOSED"])
def test_a_refund_that_did_not_go_through_gives_its_amount_back(
    client: TestClient,
    core_services: Services,
    keys: Keys,
    wechatpay: WechatPayProvider,
    paid: dict[str, Any],
    event_type: str,
) -> None:
    # given a pending refund of all of the payment
    refund = ask_refund(client, paid, 10_000, uuid.uuid4().hex).json()
    # when WeChat says the refund did not go through
    sent = callback(keys, paid, refund["refund_no"], 10_000, event_type=event_type)
    assert notify(client, sent).status_code == 204
    # then it failed, nothing is posted, and the amount may be refunded again
    assert refund_state(core_services, refund["refund_no"]) == ("failed", 0, 0, 1)
    ledger_clean(core_services)
