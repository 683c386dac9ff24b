"""The WeChat Pay API v3 adapter against ``wechatpayv3``'s signing and a fake gateway on loopback.

WeChat's part is played with test keys: callbacks are signed with the SDK's ``rsa_sign`` and
their resource encrypted with AES-256-GCM as the platform does; our Authorization header is
checked with the SDK's ``rsa_verify``.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fakes.pay_gateways import (
    FakeWechatGateway,
    RsaPair,
    loopback_urlopen,
    parse_wechat_authorization,
    wechat_authorization_verifies,
    wechat_callback,
    wechat_encrypt,
    wechat_refund_callback,
    wechat_refund_resource,
    wechat_signed_headers,
)
from tests.unit.pay.providers.helpers import (
    API_V3_KEY,
    APPID,
    MCHID,
    MERCHANT_SERIAL,
    NOW,
    PLATFORM_SERIAL,
    PUBLIC_KEY_ID,
    Keys,
    checkout_request,
    wechat_settings,
)
from wechatpayv3.core import Core

from civicloud.core.errors import InvalidInput
from civicloud.pay.errors import InvalidNotification, ProviderError, ProviderMisconfigured
from civicloud.pay.providers import WechatPayProvider
from civicloud.pay.providers._common import BEIJING

TS = int(NOW.timestamp())


def transaction(**overrides: Any) -> dict[str, Any]:
    """The decrypted resource of a ``TRANSACTION.SUCCESS`` callback."""
    return {
        "appid": APPID,
        "mchid": MCHID,
        "out_trade_no": "P20261126000001",
        "transaction_id": "4200001234202611261234567890",
        "trade_type": "NATIVE",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": "",
        "success_time": "2026-11-26T10:00:05+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": 1234, "payer_total": 1234, "currency": "CNY", "payer_currency": "CNY"},
    } | overrides


def provider_at(keys: Keys, when: datetime) -> WechatPayProvider:
    """The adapter with its clock stopped at ``when`` (no gateway needed for callbacks)."""
    return WechatPayProvider(wechat_settings(keys), clock=lambda: when)


@pytest.fixture(scope="module")
def offline(keys: Keys) -> WechatPayProvider:
    """The adapter at ``NOW``, with no gateway in reach."""
    return provider_at(keys, NOW)


def callback(keys: Keys, **overrides: Any) -> tuple[dict[str, str], bytes]:
    """A genuine callback, signed by the platform certificate's key, sent at ``NOW``."""
    return wechat_callback(
        transaction(**overrides),
        api_v3_key=API_V3_KEY,
        platform_key=keys.wechat_platform,
        serial=PLATFORM_SERIAL,
        timestamp=TS,
    )


# --- callbacks -----------------------------------------------------------------------------


def test_a_callback_signed_and_encrypted_as_the_platform_does_verifies(
    offline: WechatPayProvider, keys: Keys
) -> None:
    headers, body = callback(keys)

    notification = offline.parse_notification(headers=headers, body=body)

    assert notification.notify_id == "EV-2018022511223320873"
    assert notification.trade_no == "P20261126000001"
    assert notification.amount_fen == 1234
    assert notification.status == "succeeded"
    assert notification.provider_trade_no == "4200001234202611261234567890"
    assert notification.occurred_at == datetime(2026, 11, 26, 10, 0, 5, tzinfo=BEIJING)


def test_the_sdk_itself_accepts_the_callbacks_these_tests_build(keys: Keys) -> None:
    # Given a callback signed with a WeChat Pay public key (not a certificate)
    headers, body = wechat_callback(
        transaction(),
        api_v3_key=API_V3_KEY,
        platform_key=keys.wechat_public,
        serial=PUBLIC_KEY_ID,
        timestamp=TS,
    )
    sdk = Core(
        mchid=MCHID,
        cert_serial_no=MERCHANT_SERIAL,
        private_key=keys.wechat_merchant.pkcs8_pem,
        apiv3_key=API_V3_KEY,
        public_key=keys.wechat_public.public_pem,
        public_key_id=PUBLIC_KEY_ID,
    )

    # Then the official SDK decrypts it, and so do we, by the public key the serial names
    assert json.loads(sdk.decrypt_callback(headers, body))["out_trade_no"] == "P20261126000001"
    assert provider_at(keys, NOW).parse_notification(headers=headers, body=body).amount_fen == 1234


def test_header_names_are_case_insensitive(offline: WechatPayProvider, keys: Keys) -> None:
    headers, body = callback(keys)
    lowered = {name.lower(): value for name, value in headers.items()}
    assert offline.parse_notification(headers=lowered, body=body).trade_no == "P20261126000001"


def test_an_unknown_serial_is_refused_without_fetching_anything(
    offline: WechatPayProvider, keys: Keys
) -> None:
    headers, body = wechat_callback(
        transaction(),
        api_v3_key=API_V3_KEY,
        platform_key=keys.stranger,
        serial="6E1F4ABB9E1C6B0BB4F8D8C1A1C4F0E0C4A5B6C7",
        timestamp=TS,
    )
    with pytest.raises(InvalidNotification, match="serial"):
        offline.parse_notification(headers=headers, body=body)


def test_a_known_serial_with_another_keys_signature_is_refused(
    offline: WechatPayProvider, keys: Keys
) -> None:
    headers, body = wechat_callback(
        transaction(),
        api_v3_key=API_V3_KEY,
        platform_key=keys.stranger,
        serial=PLATFORM_SERIAL,
        timestamp=TS,
    )
    with pytest.raises(InvalidNotification, match="signature"):
        offline.parse_notification(headers=headers, body=body)


@pytest.mark.parametrize(
    ("skew", "accepted"),
    [
        (timedelta(minutes=4, seconds=59), True),
        (timedelta(minutes=-4, seconds=-59), True),
        (timedelta(minutes=5, seconds=1), False),
        (timedelta(minutes=-5, seconds=-1), False),
        (timedelta(days=2), False),
    ],
)
def test_callbacks_more_than_five_minutes_off_are_refused_as_replays(
    keys: Keys, skew: timedelta, accepted: bool
) -> None:
    # Given a genuine callback sent at NOW, read by a server whose clock says NOW + skew
    headers, body = callback(keys)
    provider = provider_at(keys, NOW + skew)

    # Then it is taken only within five minutes
    if accepted:
        assert provider.parse_notification(headers=headers, body=body).amount_fen == 1234
    else:
        with pytest.raises(InvalidNotification, match="timestamp"):
            provider.parse_notification(headers=headers, body=body)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_changing_any_byte_of_the_body_is_refused(
    offline: WechatPayProvider, keys: Keys, data: st.DataObject
) -> None:
    headers, body = callback(keys)
    index = data.draw(st.integers(0, len(body) - 1))
    replacement = data.draw(st.integers(0, 255).filter(lambda byte: byte != body[index]))
    tampered = body[:index] + bytes([replacement]) + body[index + 1 :]
    with pytest.raises(InvalidNotification):
        offline.parse_notification(headers=headers, body=tampered)


@pytest.mark.parametrize(
    "header", ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial"]
)
def test_a_missing_or_changed_header_is_refused(
    offline: WechatPayProvider, keys: Keys, header: str
) -> None:
    headers, body = callback(keys)
    changed = headers | {
        header: str(int(headers[header]) + 1) if header == "Wechatpay-Timestamp" else "x"
    }
    missing = {name: value for name, value in headers.items() if name != header}
    for bad in (changed, missing):
        with pytest.raises(InvalidNotification):
            offline.parse_notification(headers=bad, body=body)


def test_another_signature_type_is_refused(offline: WechatPayProvider, keys: Keys) -> None:
    headers, body = callback(keys)
    with pytest.raises(InvalidNotification, match="signature type"):
        offline.parse_notification(
            headers=headers | {"Wechatpay-Signature-Type": "WECHATPAY2-SM2-WITH-SM3"}, body=body
        )


def resigned(keys: Keys, envelope: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """A body re-signed by the genuine platform key: only the encryption can catch a change."""
    body = json.dumps(envelope).encode()
    return wechat_signed_headers(body, keys.wechat_platform, PLATFORM_SERIAL, TS), body


def test_a_tampered_ciphertext_does_not_decrypt(offline: WechatPayProvider, keys: Keys) -> None:
    _, body = callback(keys)
    envelope = json.loads(body)
    raw = bytearray(base64.b64decode(envelope["resource"]["ciphertext"]))
    raw[3] ^= 0x01
    envelope["resource"]["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    headers, tampered = resigned(keys, envelope)
    with pytest.raises(InvalidNotification, match="decrypt"):
        offline.parse_notification(headers=headers, body=tampered)


@pytest.mark.parametrize(
    "resource_change",
    [
        {"associated_data": "refund"},
        {"nonce": "000000000000"},
        {"algorithm": "AEAD_SM4_GCM"},
        {"ciphertext": "!!not base64!!"},
    ],
)
def test_a_resource_that_does_not_decrypt_as_sent_is_refused(
    offline: WechatPayProvider, keys: Keys, resource_change: dict[str, str]
) -> None:
    _, body = callback(keys)
    envelope = json.loads(body)
    envelope["resource"] |= resource_change
    headers, tampered = resigned(keys, envelope)
    with pytest.raises(InvalidNotification):
        offline.parse_notification(headers=headers, body=tampered)


def test_a_resource_encrypted_with_another_apiv3_key_is_refused(
    offline: WechatPayProvider, keys: Keys
) -> None:
    _, body = callback(keys)
    envelope = json.loads(body)
    envelope["resource"] = wechat_encrypt(json.dumps(transaction()), "0" * 32)
    headers, tampered = resigned(keys, envelope)
    with pytest.raises(InvalidNotification, match="decrypt"):
        offline.parse_notification(headers=headers, body=tampered)


@pytest.mark.parametrize(
    "overrides",
    [
        {"amount": {"total": "1234"}},
        {"amount": {"total": 0}},
        {"amount": {"total": True}},
        {"trade_state": "SOMETHING_NEW"},
        {"out_trade_no": ""},
    ],
)
def test_a_decrypted_resource_that_is_not_ours_or_malformed_is_refused(
    offline: WechatPayProvider, keys: Keys, overrides: dict[str, Any]
) -> None:
    headers, body = callback(keys, **overrides)
    with pytest.raises(InvalidNotification):
        offline.parse_notification(headers=headers, body=body)


@pytest.mark.parametrize(
    ("overrides", "mismatches", "foreign", "currency"),
    [
        ({}, (), False, "CNY"),
        ({"mchid": "1900000110"}, (), True, "CNY"),
        ({"sub_mchid": "1900000111"}, (), True, "CNY"),
        ({"appid": "wx0000000000000000"}, ("appid",), False, "CNY"),
        (
            {"amount": {"total": 1234, "currency": "USD", "payer_currency": "USD"}},
            (),
            False,
            "USD",
        ),
        (
            {"amount": {"total": 1234, "currency": "CNYX", "payer_currency": "CNYX"}},
            (),
            False,
            "CNYX",
        ),
        # The payer's own figures: what the merchant receives is amount.total, in currency.
        (
            {"amount": {"total": 1234, "currency": "CNY", "payer_currency": "USD"}},
            (),
            False,
            "CNY",
        ),
        (
            {
                "amount": {"total": 1234, "payer_total": 1000, "currency": "CNY"},
                "promotion_detail": [{"coupon_id": "1", "type": "CASH", "amount": 234}],
            },
            (),
            False,
            "CNY",
        ),
        # A no-recharge coupon: the merchant is settled for less than the total.
        (
            {
                "amount": {"total": 1234, "payer_total": 1000, "currency": "CNY"},
                "promotion_detail": [{"coupon_id": "1", "type": "NOCASH", "amount": 234}],
            },
            ("promotion_detail",),
            False,
            "CNY",
        ),
    ],
)
def test_a_genuine_callback_says_what_in_it_is_not_ours(
    offline: WechatPayProvider,
    keys: Keys,
    overrides: dict[str, Any],
    mismatches: tuple[str, ...],
    foreign: bool,
    currency: str,
) -> None:
    # Given a genuine callback naming another merchant, app, currency or payer amount
    headers, body = callback(keys, **overrides)
    # When it is verified
    notification = offline.parse_notification(headers=headers, body=body)
    # Then it is handed on (the service refuses, keeps and refunds it), saying what differs
    assert (notification.mismatches, notification.foreign) == (mismatches, foreign)
    assert (notification.amount_fen, notification.currency) == (1234, currency)
    # and what the payer paid is kept as stated
    kept: Any = notification.raw["transaction"]
    assert kept["amount"] == overrides.get(
        "amount", {"total": 1234, "payer_total": 1234, "currency": "CNY", "payer_currency": "CNY"}
    )


def test_a_success_event_for_a_trade_not_paid_is_refused(
    offline: WechatPayProvider, keys: Keys
) -> None:
    headers, body = callback(keys, trade_state="NOTPAY")
    with pytest.raises(InvalidNotification, match="disagree"):
        offline.parse_notification(headers=headers, body=body)


# --- refund callbacks ----------------------------------------------------------------------


def refund_callback(
    keys: Keys,
    event_type: str = "REFUND.SUCCESS",
    *,
    platform_key: RsaPair | None = None,
    serial: str = PLATFORM_SERIAL,
    **overrides: Any,
) -> tuple[dict[str, str], bytes]:
    """A genuine refund callback for 10.00 of the 12.34 trade, signed at ``NOW``."""
    status = event_type.removeprefix("REFUND.")
    resource = (
        wechat_refund_resource(
            mchid=MCHID,
            out_trade_no="P20261126000001",
            out_refund_no="RF0123456789ABCDEF0123456789ABCD",
            refund_fen=1000,
            total_fen=1234,
            refund_status=status,
        )
        | overrides
    )
    return wechat_refund_callback(
        resource,
        api_v3_key=API_V3_KEY,
        platform_key=platform_key or keys.wechat_platform,
        serial=serial,
        timestamp=TS,
        event_type=event_type,
    )


def test_a_refund_callback_verifies_and_names_our_refund(
    offline: WechatPayProvider, keys: Keys
) -> None:
    # given a REFUND.SUCCESS callback signed and encrypted as the platform does
    headers, body = refund_callback(keys)
    # when it is parsed
    notification = offline.parse_notification(headers=headers, body=body)
    # then it is a refund notification of our refund, for the amount refunded
    assert notification.kind == "refund"
    assert notification.notify_id == "EV-2018022511223320874"
    assert notification.trade_no == "P20261126000001"
    assert notification.refund_no == "RF0123456789ABCDEF0123456789ABCD"
    assert notification.provider_refund_no == "50300906782026112612345678901"
    assert notification.provider_trade_no == "4200001234202611261234567890"
    assert (notification.status, notification.amount_fen) == ("succeeded", 1000)
    assert notification.occurred_at == datetime(2026, 11, 26, 10, 5, tzinfo=BEIJING)


def test_a_refund_callback_of_a_trade_part_paid_by_a_coupon_is_accepted(
    offline: WechatPayProvider, keys: Keys
) -> None:
    # Given a refund of a trade the payer paid part of with a WeChat Pay coupon
    amount = {"refund": 1000, "total": 1234, "payer_refund": 900, "payer_total": 1000}
    headers, body = refund_callback(keys, amount=amount)
    # When it is parsed, then it is our refund of 10.00, the payer's share kept as stated
    notification = offline.parse_notification(headers=headers, body=body)
    assert (notification.status, notification.amount_fen, notification.mismatches) == (
        "succeeded",
        1000,
        (),
    )
    kept: Any = notification.raw["refund"]
    assert kept["amount"]["payer_refund"] == 900


def test_the_sdk_itself_accepts_the_refund_callbacks_these_tests_build(keys: Keys) -> None:
    # Given a refund callback signed with a WeChat Pay public key
    headers, body = refund_callback(keys, platform_key=keys.wechat_public, serial=PUBLIC_KEY_ID)
    sdk = Core(
        mchid=MCHID,
        cert_serial_no=MERCHANT_SERIAL,
        private_key=keys.wechat_merchant.pkcs8_pem,
        apiv3_key=API_V3_KEY,
        public_key=keys.wechat_public.public_pem,
        public_key_id=PUBLIC_KEY_ID,
    )
    # Then the official SDK decrypts it, and so do we
    decrypted = json.loads(sdk.decrypt_callback(headers, body))
    assert decrypted["out_refund_no"] == "RF0123456789ABCDEF0123456789ABCD"
    parsed = provider_at(keys, NOW).parse_notification(headers=headers, body=body)
    assert parsed.refund_no == decrypted["out_refund_no"]


@pytest.mark.parametrize("event_type", ["REFUND.ABNORMAL", "REFUND.CLOSED"])
def test_a_refund_that_did_not_go_through_is_a_failed_refund(
    offline: WechatPayProvider, keys: Keys, event_type: str
) -> None:
    headers, body = refund_callback(keys, event_type)
    notification = offline.parse_notification(headers=headers, body=body)
    assert (notification.kind, notification.status) == ("refund", "failed")


@pytest.mark.parametrize(
    ("event_type", "overrides"),
    [
        ("REFUND.SUCCESS", {"refund_status": "ABNORMAL"}),
        ("REFUND.CLOSED", {"refund_status": "SUCCESS"}),
        ("REFUND.SOMETHING", {}),
        ("REFUND.SUCCESS", {"mchid": "1900000110"}),
        ("REFUND.SUCCESS", {"out_refund_no": ""}),
        ("REFUND.SUCCESS", {"out_trade_no": None}),
        ("REFUND.SUCCESS", {"amount": {"total": 1234, "refund": "1000"}}),
        ("REFUND.SUCCESS", {"amount": {"total": 1234, "refund": 0}}),
        ("REFUND.SUCCESS", {"amount": {"total": 1234, "refund": 1235}}),
        ("REFUND.SUCCESS", {"amount": {"refund": 1000}}),
        ("REFUND.SUCCESS", {"amount": None}),
    ],
)
def test_a_refund_callback_that_is_not_ours_or_malformed_is_refused(
    offline: WechatPayProvider, keys: Keys, event_type: str, overrides: dict[str, Any]
) -> None:
    headers, body = refund_callback(keys, event_type, **overrides)
    with pytest.raises(InvalidNotification):
        offline.parse_notification(headers=headers, body=body)


def test_a_refund_callback_goes_through_the_same_checks_as_a_payment_callback(
    keys: Keys,
) -> None:
    # given a genuine refund callback, and one signed by a stranger under the platform's serial
    headers, body = refund_callback(keys)
    _, forged_body = refund_callback(keys, platform_key=keys.stranger)
    # then a stale one, a forged one and a tampered one are refused
    with pytest.raises(InvalidNotification, match="timestamp"):
        provider_at(keys, NOW + timedelta(minutes=6)).parse_notification(headers=headers, body=body)
    offline = provider_at(keys, NOW)
    with pytest.raises(InvalidNotification, match="signature"):
        offline.parse_notification(headers=headers, body=forged_body)
    with pytest.raises(InvalidNotification, match="signature"):
        offline.parse_notification(headers=headers, body=body.replace(b"REFUND.", b"REFUND_"))
    # and a resource encrypted with another key does not decrypt
    envelope = json.loads(body)
    envelope["resource"] = wechat_encrypt("{}", "0" * 32, associated_data="refund")
    resent_headers, resent = resigned(keys, envelope)
    with pytest.raises(InvalidNotification, match="decrypt"):
        offline.parse_notification(headers=resent_headers, body=resent)


def test_acknowledgement(offline: WechatPayProvider) -> None:
    accepted = offline.acknowledge(accepted=True)
    refused = offline.acknowledge(accepted=False)
    assert (accepted.status_code, accepted.body) == (204, "")
    assert refused.status_code >= 400
    assert json.loads(refused.body)["code"] == "FAIL"


# --- requests ------------------------------------------------------------------------------


def test_our_authorization_header_verifies_with_the_sdk(
    offline: WechatPayProvider, keys: Keys
) -> None:
    body = '{"out_trade_no":"P1"}'
    header = offline.authorization("POST", "/v3/pay/transactions/native", body)

    fields = parse_wechat_authorization(header)
    assert fields["mchid"] == MCHID
    assert fields["serial_no"] == MERCHANT_SERIAL
    assert fields["timestamp"] == str(TS)
    public = keys.wechat_merchant.public
    assert wechat_authorization_verifies(
        header, "POST", "/v3/pay/transactions/native", body, public
    )
    assert not wechat_authorization_verifies(
        header, "GET", "/v3/pay/transactions/native", body, public
    )
    assert not wechat_authorization_verifies(
        header, "POST", "/v3/pay/transactions/native", body + " ", public
    )


def test_native_pay_returns_the_code_url(
    wechatpay: WechatPayProvider, wechat_gateway: FakeWechatGateway
) -> None:
    checkout = wechatpay.create_checkout(checkout_request())

    assert checkout.kind == "qr"
    assert checkout.url.startswith("weixin://wxpay/bizpayurl?pr=")
    ((method, path, headers, body),) = wechat_gateway.calls
    sent = json.loads(body)
    assert (method, path) == ("POST", "/v3/pay/transactions/native")
    assert sent["amount"] == {"total": 1234, "currency": "CNY"}
    assert sent["time_expire"] == "2026-11-26T10:15:06+08:00"
    assert sent["notify_url"] == checkout_request().notify_url
    assert (sent["appid"], sent["mchid"]) == (APPID, MCHID)
    assert headers["user-agent"]


def test_query_follows_the_order_at_the_gateway(
    wechatpay: WechatPayProvider, wechat_gateway: FakeWechatGateway
) -> None:
    assert wechatpay.query("P20261126000001").status == "not_found"
    wechatpay.create_checkout(checkout_request())
    assert wechatpay.query("P20261126000001").status == "pending"

    wechat_gateway.pay("P20261126000001")
    paid = wechatpay.query("P20261126000001")

    assert (paid.status, paid.amount_fen) == ("succeeded", 1234)
    assert paid.provider_trade_no == wechat_gateway.orders["P20261126000001"]["transaction_id"]
    assert (
        wechat_gateway.calls[-1][1]
        == f"/v3/pay/transactions/out-trade-no/P20261126000001?mchid={MCHID}"
    )


def test_refunds(wechatpay: WechatPayProvider, wechat_gateway: FakeWechatGateway) -> None:
    wechatpay.create_checkout(checkout_request())
    wechat_gateway.pay("P20261126000001")
    refund = {"trade_no": "P20261126000001", "total_fen": 1234, "reason": "多缴退费"}

    first = wechatpay.refund(refund_no="R1", amount_fen=1000, **refund)  # type: ignore[arg-type]
    again = wechatpay.refund(refund_no="R1", amount_fen=1000, **refund)  # type: ignore[arg-type]
    too_much = wechatpay.refund(refund_no="R2", amount_fen=235, **refund)  # type: ignore[arg-type]

    assert (
        first.status == "pending"
    )  # WeChat answers PROCESSING; the refund callback or a query confirms
    assert first.provider_refund_no is not None
    assert again.provider_refund_no == first.provider_refund_no
    assert too_much.status == "failed"
    assert "INVALID_REQUEST" in too_much.detail
    with pytest.raises(InvalidInput):
        wechatpay.refund(refund_no="R3", amount_fen=1235, **refund)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "mismatches", "currency"),
    [
        ({"appid": "wx0000000000000000"}, ("appid",), "CNY"),
        ({"amount": {"total": 1234, "currency": "USD"}}, (), "USD"),
        ({"amount": {"total": 1234, "payer_total": 1, "currency": "CNY"}}, (), "CNY"),
        ({"amount": {"total": 1234, "currency": "CNYX"}}, (), "CNYX"),
    ],
)
def test_a_query_answer_says_what_in_it_is_not_ours(
    wechatpay: WechatPayProvider,
    wechat_gateway: FakeWechatGateway,
    change: dict[str, Any],
    mismatches: tuple[str, ...],
    currency: str,
) -> None:
    # Given a trade paid at WeChat on terms that are not the payment's
    wechatpay.create_checkout(checkout_request())
    wechat_gateway.pay("P20261126000001")
    wechat_gateway.orders["P20261126000001"] |= change
    # When it is asked about, then the answer says so, for the service to refuse
    paid = wechatpay.query("P20261126000001")
    assert (paid.status, paid.amount_fen, paid.currency) == ("succeeded", 1234, currency)
    assert paid.mismatches == mismatches


def test_a_paid_trade_answered_without_an_amount_is_an_error(
    wechatpay: WechatPayProvider, wechat_gateway: FakeWechatGateway
) -> None:
    wechatpay.create_checkout(checkout_request())
    wechat_gateway.pay("P20261126000001")
    del wechat_gateway.orders["P20261126000001"]["amount"]
    with pytest.raises(ProviderError, match="amount"):
        wechatpay.query("P20261126000001")


@pytest.mark.parametrize(
    "change",
    [
        {"out_refund_no": "R9"},
        {"out_trade_no": "P20261126000009"},
        {"amount": {"refund": 999, "total": 1234, "currency": "CNY"}},
        {"amount": {"refund": 1000, "total": 1234, "currency": "USD"}},
    ],
)
def test_a_refund_answer_for_another_refund_leaves_its_fate_unknown(
    wechatpay: WechatPayProvider, wechat_gateway: FakeWechatGateway, change: dict[str, Any]
) -> None:
    # Given a refund WeChat recorded otherwise than we asked
    wechatpay.create_checkout(checkout_request())
    wechat_gateway.pay("P20261126000001")
    refund = {"trade_no": "P20261126000001", "total_fen": 1234, "reason": "多缴退费"}
    wechatpay.refund(refund_no="R1", amount_fen=1000, **refund)  # type: ignore[arg-type]
    wechat_gateway.refunds["R1"] |= change
    # When we ask again, then the answer is not taken as this refund's (it stays pending)
    with pytest.raises(ProviderError, match="another refund"):
        wechatpay.refund(refund_no="R1", amount_fen=1000, **refund)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["bad_sign", "unsigned", "unknown_serial"])
def test_an_unverifiable_gateway_answer_is_an_error(
    wechatpay: WechatPayProvider, wechat_gateway: FakeWechatGateway, mode: str
) -> None:
    wechat_gateway.mode = mode
    with pytest.raises(ProviderError, match="signature"):
        wechatpay.query("P20261126000001")


def test_a_request_the_gateway_cannot_verify_is_an_error(
    keys: Keys, wechat_gateway: FakeWechatGateway, tmp_path: Path
) -> None:
    (tmp_path / "key.pem").write_text(keys.stranger.pkcs8_pem)
    settings_ = wechat_settings(keys, wechat_gateway.url).model_copy(
        update={"private_key_file": tmp_path / "key.pem"}
    )
    stranger = WechatPayProvider(settings_, urlopen=loopback_urlopen, clock=lambda: NOW)
    with pytest.raises(ProviderError, match="HTTP 401"):
        stranger.create_checkout(checkout_request())


# --- settings ------------------------------------------------------------------------------


def test_bad_settings_are_refused_at_construction(keys: Keys, tmp_path: Path) -> None:
    base = wechat_settings(keys)
    for update in (
        {"api_v3_key": "short"},
        {"mchid": ""},
        {"platform_keys_dir": None},
        {"platform_keys_dir": tmp_path},
        {"private_key_file": tmp_path / "missing.pem"},
    ):
        with pytest.raises(ProviderMisconfigured):
            WechatPayProvider(base.model_copy(update=update))


# --- the trade bill ------------------------------------------------------------------------

BILL = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
    "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
    "手续费,费率,订单金额,申请退款金额,费率备注\r\n"
    "`2026-11-26 10:00:05,`wxd678efh567hg6787,`1900000109,`0,`,`4200001234202611261234567890,`P20261126000001,"
    "`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`SUCCESS,`OTHERS,`CNY,`12.34,`0.00,`0,`0,`0.00,`0.00,`,`,"
    "`大连市自来水费 2026年10月,`,`0.07000,`0.60%,`12.34,`0.00,`\r\n"
    "`2026-11-26 11:20:31,`wxd678efh567hg6787,`1900000109,`0,`,`4200001234202611261234567891,`P20261126000003,"
    "`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`SUCCESS,`CMB_CREDIT,`CNY,`225.00,`5.00,`0,`0,`0.00,`0.00,`,`,"
    "`大连市燃气费,`,`1.38000,`0.60%,`230.00,`0.00,`\r\n"
    "`2026-11-26 15:02:11,`wxd678efh567hg6787,`1900000109,`0,`,`4200001234202611261234567890,`P20261126000001,"
    "`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50300000382026112600001234567,"
    "`R20261126000001,`10.00,`0.00,`ORIGINAL,`SUCCESS,`大连市自来水费 2026年10月,`,`-0.06000,`0.60%,`0.00,`10.00,`\r\n"
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n"
    "`3,`237.34,`10.00,`0.00,`1.39000,`242.34,`10.00\r\n"
)


def test_the_trade_bill_is_read(offline: WechatPayProvider) -> None:
    lines = offline.parse_statement(
        ("\ufeff" + BILL).encode("utf-8"), business_date=date(2026, 11, 26)
    )
    assert [(line.trade_no, line.kind, line.amount_fen) for line in lines] == [
        ("P20261126000001", "payment", 1234),
        ("P20261126000003", "payment", 23000),
        ("P20261126000001", "refund", 1000),
    ]
    assert lines[0].provider_trade_no == "4200001234202611261234567890"
    assert lines[0].occurred_at == datetime(2026, 11, 26, 2, 0, 5, tzinfo=UTC)
    # a refund row carries our refund number (商户退款单号); a payment row none
    assert [line.refund_no for line in lines] == [None, None, "R20261126000001"]


def test_a_bill_with_bad_rows_is_refused(offline: WechatPayProvider) -> None:
    with pytest.raises(InvalidInput, match="line 2"):
        offline.parse_statement(
            BILL.replace("`0.60%,`12.34", "`0.60%,`12.3.4").encode(),
            business_date=date(2026, 11, 26),
        )
    with pytest.raises(InvalidInput, match="columns"):
        offline.parse_statement(b"a,b,c\r\n", business_date=date(2026, 11, 26))
    with pytest.raises(InvalidInput):
        offline.parse_statement("交易时间".encode("gbk"), business_date=date(2026, 11, 26))
