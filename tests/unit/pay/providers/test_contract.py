"""One suite over every adapter: what the payment service may rely on from any provider."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

import pytest
from tests.fakes.pay_gateways import (
    FakeAlipayGateway,
    FakeWechatGateway,
    alipay_notification,
    wechat_callback,
)
from tests.unit.pay.providers.helpers import (
    API_V3_KEY,
    APP_ID,
    APPID,
    MCHID,
    NOW,
    PLATFORM_SERIAL,
    SELLER_ID,
    Keys,
    alipay_settings,
    checkout_request,
    wechat_settings,
)

import civicloud.pay.providers
from civicloud.pay.backends import PaymentProvider
from civicloud.pay.errors import InvalidNotification
from civicloud.pay.providers import (
    AlipayProvider,
    SandboxProvider,
    WechatPayProvider,
    build_providers,
)
from civicloud.pay.settings import PaySettings


class Notify(Protocol):
    """How a provider notifies us that it took ``amount_fen`` in ``currency`` for a trade."""

    def __call__(
        self, trade_no: str, amount_fen: int, currency: str = "CNY"
    ) -> tuple[dict[str, str], bytes]: ...


@dataclass
class World:
    """An adapter, how its provider takes the citizen's money, and how it then notifies us."""

    provider: PaymentProvider
    settle: Callable[[str], None]
    notify: Notify


@pytest.fixture(params=["sandbox", "alipay", "wechatpay"])
def world(
    request: pytest.FixtureRequest,
    keys: Keys,
) -> Iterator[World]:
    """Each adapter in turn, with its provider played locally."""
    if request.param == "sandbox":
        sandbox = SandboxProvider(bytes(32), clock=lambda: NOW)

        def sandbox_notify(
            trade_no: str, amount_fen: int, currency: str = "CNY"
        ) -> tuple[dict[str, str], bytes]:
            (notice,) = sandbox.simulate(trade_no, amount_fen=amount_fen, currency=currency)
            return dict(notice.headers), notice.body

        def sandbox_settle(trade_no: str) -> None:
            sandbox.simulate(trade_no)

        yield World(sandbox, sandbox_settle, sandbox_notify)
    elif request.param == "alipay":
        alipay_gateway: FakeAlipayGateway = request.getfixturevalue("alipay_gateway")
        alipay: AlipayProvider = request.getfixturevalue("alipay")

        def alipay_notify(
            trade_no: str, amount_fen: int, currency: str = "CNY"
        ) -> tuple[dict[str, str], bytes]:
            params = {
                "app_id": APP_ID,
                "seller_id": SELLER_ID,
                "charset": "utf-8",
                "notify_id": "N-" + trade_no,
                "out_trade_no": trade_no,
                "trade_no": "2026112622001" + trade_no,
                "trade_status": "TRADE_SUCCESS",
                "total_amount": f"{amount_fen // 100}.{amount_fen % 100:02d}",
                "notify_time": "2026-11-26 10:00:06",
            } | ({"trans_currency": currency} if currency != "CNY" else {})
            return {"Content-Type": "application/x-www-form-urlencoded"}, alipay_notification(
                params, keys.alipay
            )

        yield World(alipay, alipay_gateway.pay, alipay_notify)
    else:
        wechat_gateway: FakeWechatGateway = request.getfixturevalue("wechat_gateway")
        wechatpay: WechatPayProvider = request.getfixturevalue("wechatpay")

        def wechat_notify(
            trade_no: str, amount_fen: int, currency: str = "CNY"
        ) -> tuple[dict[str, str], bytes]:
            transaction = {
                "appid": APPID,
                "mchid": MCHID,
                "out_trade_no": trade_no,
                "transaction_id": "42000012342026112612345" + trade_no[-5:],
                "trade_state": "SUCCESS",
                "amount": {"total": amount_fen, "currency": currency},
            }
            return wechat_callback(
                transaction,
                api_v3_key=API_V3_KEY,
                platform_key=keys.wechat_platform,
                serial=PLATFORM_SERIAL,
                timestamp=int(NOW.timestamp()),
                notify_id="EV-" + trade_no,
            )

        yield World(wechatpay, wechat_gateway.pay, wechat_notify)


def test_a_payment_goes_from_checkout_to_a_verified_notification(world: World) -> None:
    # Given a checkout the citizen then pays
    provider = world.provider
    checkout = provider.create_checkout(checkout_request())
    assert checkout.url
    assert provider.query("P20261126000001").status == "pending"
    world.settle("P20261126000001")

    # When the provider notifies us
    headers, body = world.notify("P20261126000001", 1234)
    notification = provider.parse_notification(headers=headers, body=body)

    # Then the notification and the provider's own record agree
    assert (notification.trade_no, notification.status, notification.amount_fen) == (
        "P20261126000001",
        "succeeded",
        1234,
    )
    assert notification.notify_id
    record = provider.query("P20261126000001")
    assert (record.status, record.amount_fen) == ("succeeded", 1234)


@pytest.mark.parametrize(
    ("amount_fen", "currency"),
    # A currency is stated whole: "CNYX" or "cny" is not CNY, however it starts.
    [(1234, "USD"), (1, "CNY"), (1235, "CNY"), (1234, "CNYX"), (1234, "cny"), (1234, "CN")],
)
def test_a_genuine_notification_states_the_amount_and_currency_taken(
    world: World, amount_fen: int, currency: str
) -> None:
    # Given a trade the provider settled for another amount or in another currency
    world.provider.create_checkout(checkout_request())
    world.settle("P20261126000001")
    # When it notifies us
    headers, body = world.notify("P20261126000001", amount_fen, currency)
    notification = world.provider.parse_notification(headers=headers, body=body)
    # Then the verified notification says so, for the service to compare with the payment
    assert (notification.amount_fen, notification.currency) == (amount_fen, currency)
    assert (notification.mismatches, notification.foreign) == ((), False)


def test_a_paid_trade_answers_its_currency_and_nothing_amiss(world: World) -> None:
    world.provider.create_checkout(checkout_request())
    world.settle("P20261126000001")
    record = world.provider.query("P20261126000001")
    assert (record.status, record.amount_fen, record.currency, record.mismatches) == (
        "succeeded",
        1234,
        "CNY",
        (),
    )


def test_a_refund_is_taken_once(world: World) -> None:
    world.provider.create_checkout(checkout_request())
    world.settle("P20261126000001")
    refund = {"trade_no": "P20261126000001", "total_fen": 1234, "reason": "退费"}
    first = world.provider.refund(refund_no="R1", amount_fen=1234, **refund)  # type: ignore[arg-type]
    again = world.provider.refund(refund_no="R1", amount_fen=1234, **refund)  # type: ignore[arg-type]
    more = world.provider.refund(refund_no="R2", amount_fen=1, **refund)  # type: ignore[arg-type]
    assert first.status in ("succeeded", "pending")
    assert again.status == first.status
    assert more.status == "failed"


def test_an_unknown_trade_is_not_found(world: World) -> None:
    assert world.provider.query("P-never-created").status == "not_found"


@pytest.mark.parametrize(
    "body", [b"", b"{}", b"sign=x&sign_type=RSA2", b"\xff\xfe\x00garbage", b"[" * 1000]
)
def test_garbage_is_an_invalid_notification(world: World, body: bytes) -> None:
    with pytest.raises(InvalidNotification):
        world.provider.parse_notification(headers={}, body=body)


def test_acknowledgements_tell_accepted_from_refused(world: World) -> None:
    accepted = world.provider.acknowledge(accepted=True)
    refused = world.provider.acknowledge(accepted=False)
    assert 200 <= accepted.status_code < 300
    assert accepted != refused


def test_an_empty_statement_has_no_lines(world: World) -> None:
    empty = {
        "sandbox": b"trade_no,provider_trade_no,kind,amount_fen,occurred_at,refund_no\n",
        "alipay": "支付宝交易号,商户订单号,业务类型,完成时间,订单金额（元）\n".encode("gbk"),  # noqa: RUF001
        "wechatpay": "交易时间,微信订单号,商户订单号,交易状态,应结订单金额\n".encode(),
    }[world.provider.name]
    assert world.provider.parse_statement(empty, business_date=date(2026, 11, 26)) == []


def test_build_providers_turns_on_what_the_settings_configure(keys: Keys, tmp_path: Path) -> None:
    # Given settings with nothing configured, then with both real providers
    bare = PaySettings()
    full = PaySettings(alipay=alipay_settings(keys), wechatpay=wechat_settings(keys))

    # Then the sandbox is always there, and the others only when configured
    secret = tmp_path / "sandbox.key"
    assert set(build_providers(bare, sandbox_secret_file=secret)) == {"sandbox"}
    providers = build_providers(full, sandbox_secret_file=secret)
    assert {name: provider.name for name, provider in providers.items()} == {
        "sandbox": "sandbox",
        "alipay": "alipay",
        "wechatpay": "wechatpay",
    }
    checkout = providers["sandbox"].create_checkout(checkout_request())
    assert checkout.url == "http://localhost:8000/pay/sandbox/checkout/P20261126000001"


def test_the_public_surface_is_pinned() -> None:
    assert set(civicloud.pay.providers.__all__) == {
        "AlipayProvider",
        "Deliver",
        "SandboxCheckoutView",
        "SandboxNotice",
        "SandboxProvider",
        "UrlOpen",
        "WechatPayProvider",
        "build_providers",
        "fen_to_yuan",
        "load_or_create_secret",
        "yuan_to_fen",
    }
