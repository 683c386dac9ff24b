"""The Alipay adapter against the official SDK's signing and a fake gateway on loopback.

Alipay's part is played with a test key pair: notifications are signed with the SDK's
``sign_with_rsa2`` (``sign_with_rsa`` for SHA-1), and our request signatures are checked with
its ``verify_with_rsa``.
"""

from __future__ import annotations

import socket
import urllib.parse
from datetime import date, datetime
from pathlib import Path

import pytest
from alipay.aop.api.util.SignatureUtils import sign_with_rsa2, verify_with_rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fakes.pay_gateways import (
    FakeAlipayGateway,
    alipay_notification,
    alipay_sign_content,
    loopback_urlopen,
)
from tests.unit.pay.providers.helpers import (
    APP_ID,
    NOW,
    SELLER_ID,
    Keys,
    alipay_settings,
    checkout_request,
)

from civicloud.core.errors import InvalidInput
from civicloud.pay.errors import InvalidNotification, ProviderError, ProviderMisconfigured
from civicloud.pay.providers import AlipayProvider
from civicloud.pay.providers._common import BEIJING

HYPOTHESIS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def trade_params(**overrides: str) -> dict[str, str]:
    """The fields of a real ``trade_status_sync`` notification for a water bill."""
    params = {
        "gmt_create": "2026-11-26 10:00:00",
        "charset": "utf-8",
        "seller_email": "dlwater@example.cn",
        "subject": "大连市自来水费 2026年10月",
        "buyer_id": "2088102122524333",
        "invoice_amount": "12.34",
        "notify_id": "2026112600222100005054311410473457",
        "fund_bill_list": '[{"amount":"12.34","fundChannel":"ALIPAYACCOUNT"}]',
        "notify_type": "trade_status_sync",
        "trade_status": "TRADE_SUCCESS",
        "receipt_amount": "12.34",
        "buyer_pay_amount": "12.34",
        "app_id": APP_ID,
        "seller_id": SELLER_ID,
        "gmt_payment": "2026-11-26 10:00:05",
        "notify_time": "2026-11-26 10:00:06",
        "version": "1.0",
        "out_trade_no": "P20261126000001",
        "total_amount": "12.34",
        "trade_no": "2026112622001433331412345678",
        "auth_app_id": APP_ID,
        "buyer_logon_id": "159****5620",
        "point_amount": "0.00",
    }
    return params | overrides


@pytest.fixture(scope="module")
def offline(keys: Keys) -> AlipayProvider:
    """The adapter with no gateway in reach: notifications and page pay need none."""
    return AlipayProvider(alipay_settings(keys), clock=lambda: NOW)


def reencode(body: bytes, **changes: str) -> bytes:
    """The same notification with some fields changed (the signature left as it was)."""
    params = dict(urllib.parse.parse_qsl(body.decode("ascii"), keep_blank_values=True))
    return urllib.parse.urlencode(params | changes).encode("ascii")


# --- notifications -------------------------------------------------------------------------


def test_a_notification_signed_by_the_sdk_verifies(offline: AlipayProvider, keys: Keys) -> None:
    # Given a notification Alipay signed with RSA2
    body = alipay_notification(trade_params(), keys.alipay)

    # When the adapter parses it
    notification = offline.parse_notification(headers={}, body=body)

    # Then everything the service checks is there, amounts in exact fen
    assert notification.trade_no == "P20261126000001"
    assert notification.amount_fen == 1234
    assert notification.status == "succeeded"
    assert notification.notify_id == "2026112600222100005054311410473457"
    assert notification.provider_trade_no == "2026112622001433331412345678"
    assert notification.occurred_at == datetime(2026, 11, 26, 10, 0, 5, tzinfo=BEIJING)
    assert notification.raw["subject"] == "大连市自来水费 2026年10月"
    assert "sign" not in notification.raw


def test_a_gbk_notification_with_chinese_text_verifies(offline: AlipayProvider, keys: Keys) -> None:
    # Given a notification in GBK: its percent-escapes are GBK bytes, and so is what was signed
    body = alipay_notification(trade_params(charset="GBK", subject="大连市燃气费"), keys.alipay)
    assert "%B4%F3%C1%AC" in body.decode("ascii")  # 大连 in GBK

    # When it is parsed, then it verifies and reads back as the same text
    notification = offline.parse_notification(headers={}, body=body)
    assert notification.raw["subject"] == "大连市燃气费"


def test_a_gbk_notification_read_as_utf8_is_refused(offline: AlipayProvider, keys: Keys) -> None:
    # Given a GBK notification whose charset field was changed to UTF-8
    body = alipay_notification(trade_params(charset="GBK"), keys.alipay)

    # Then it is refused (its bytes are not UTF-8, and charset is signed too)
    with pytest.raises(InvalidNotification):
        offline.parse_notification(headers={}, body=reencode(body, charset="utf-8"))


@pytest.mark.parametrize("field", sorted(trade_params()))
def test_tampering_with_any_field_is_refused(
    offline: AlipayProvider, keys: Keys, field: str
) -> None:
    # Given a genuine notification
    body = alipay_notification(trade_params(), keys.alipay)
    value = trade_params()[field]

    # When one field is changed after signing
    tampered = reencode(body, **{field: value + "0" if field != "charset" else "GBK"})

    # Then it is refused
    with pytest.raises(InvalidNotification):
        offline.parse_notification(headers={}, body=tampered)


def test_an_added_or_removed_field_is_refused(offline: AlipayProvider, keys: Keys) -> None:
    body = alipay_notification(trade_params(), keys.alipay)
    params = dict(urllib.parse.parse_qsl(body.decode("ascii")))
    removed = urllib.parse.urlencode({k: v for k, v in params.items() if k != "buyer_id"})
    with pytest.raises(InvalidNotification):
        offline.parse_notification(headers={}, body=removed.encode())
    with pytest.raises(InvalidNotification):
        offline.parse_notification(headers={}, body=reencode(body, refund_fee="12.34"))


@pytest.mark.parametrize(
    ("overrides", "mismatches", "foreign"),
    [
        ({}, (), False),
        ({"app_id": "2021000999999999"}, ("app_id",), False),
        ({"seller_id": "2088000000000000"}, (), True),
        ({"trans_currency": "USD"}, (), False),
        ({"settle_currency": "USD"}, ("settle_currency",), False),
        ({"receipt_amount": "12.33"}, ("receipt_amount",), False),
        ({"trans_currency": "CNYX"}, (), False),
        # Part paid with Alipay points or a red packet: the seller still receives the total.
        (
            {"buyer_pay_amount": "10.00", "point_amount": "2.34", "invoice_amount": "10.00"},
            (),
            False,
        ),
        ({"pay_currency": "USD"}, (), False),
    ],
)
def test_a_correctly_signed_notification_says_what_in_it_is_not_ours(
    offline: AlipayProvider,
    keys: Keys,
    overrides: dict[str, str],
    mismatches: tuple[str, ...],
    foreign: bool,
) -> None:
    # Given a genuine notification naming another app, seller, currency or received amount
    body = alipay_notification(trade_params(**overrides), keys.alipay)
    # When it is verified
    notification = offline.parse_notification(headers={}, body=body)
    # Then it is handed on (the service refuses, keeps and refunds it), saying what differs
    assert (notification.mismatches, notification.foreign) == (mismatches, foreign)
    expected_currency = overrides.get("trans_currency", "CNY")
    assert (notification.amount_fen, notification.currency) == (1234, expected_currency)
    # and the payer's own figures are kept as stated
    assert notification.raw["buyer_pay_amount"] == overrides.get("buyer_pay_amount", "12.34")


def test_a_malformed_received_amount_is_refused(offline: AlipayProvider, keys: Keys) -> None:
    body = alipay_notification(trade_params(receipt_amount="12.3.4"), keys.alipay)
    with pytest.raises(InvalidNotification, match="yuan"):
        offline.parse_notification(headers={}, body=body)


def test_a_sha1_rsa_notification_is_refused_although_the_sdk_accepts_it(
    offline: AlipayProvider, keys: Keys
) -> None:
    # Given a notification correctly signed with SHA-1 ("RSA")
    params = trade_params()
    body = alipay_notification(params, keys.alipay, sign_type="RSA", algorithm="RSA")
    sign = dict(urllib.parse.parse_qsl(body.decode()))["sign"]
    content = alipay_sign_content(params, exclude=("sign", "sign_type")).encode()
    assert verify_with_rsa(keys.alipay.public_pem, content, sign)  # the SDK takes SHA-1

    # Then we refuse it, and also a SHA-1 signature labelled RSA2
    with pytest.raises(InvalidNotification, match="RSA2"):
        offline.parse_notification(headers={}, body=body)
    relabelled = alipay_notification(params, keys.alipay, sign_type="RSA2", algorithm="RSA")
    with pytest.raises(InvalidNotification, match="signature"):
        offline.parse_notification(headers={}, body=relabelled)


def test_a_notification_signed_with_another_key_is_refused(
    offline: AlipayProvider, keys: Keys
) -> None:
    body = alipay_notification(trade_params(), keys.stranger)
    with pytest.raises(InvalidNotification, match="signature"):
        offline.parse_notification(headers={}, body=body)


@pytest.mark.parametrize("sign", ["", "not base64!", "AAAA"])
def test_a_missing_or_garbled_signature_is_refused(
    offline: AlipayProvider, keys: Keys, sign: str
) -> None:
    body = alipay_notification(trade_params(), keys.alipay)
    with pytest.raises(InvalidNotification):
        offline.parse_notification(headers={}, body=reencode(body, sign=sign))


def test_the_body_is_decoded_once(offline: AlipayProvider, keys: Keys) -> None:
    # Given values that themselves contain escapes and form delimiters, signed as such
    params = trade_params(subject="100%25 水费 a+b&c=d", body="%E5%A4%A7")
    body = alipay_notification(params, keys.alipay)

    # When parsed, then they verify and read back exactly once-decoded
    notification = offline.parse_notification(headers={}, body=body)
    assert notification.raw["subject"] == "100%25 水费 a+b&c=d"
    assert notification.raw["body"] == "%E5%A4%A7"


def test_a_double_encoded_body_is_refused(offline: AlipayProvider, keys: Keys) -> None:
    # Given a genuine notification whose values were percent-encoded a second time
    params = trade_params()
    body = alipay_notification(params, keys.alipay)
    pairs = urllib.parse.parse_qsl(body.decode("ascii"))
    double = "&".join(
        f"{k}={urllib.parse.quote(urllib.parse.quote(v, safe=''), safe='')}" for k, v in pairs
    )

    # Then decoding it once does not give back what Alipay signed
    with pytest.raises(InvalidNotification):
        offline.parse_notification(headers={}, body=double.encode())


def test_empty_values_are_left_out_of_what_is_signed(offline: AlipayProvider, keys: Keys) -> None:
    # Given a notification with empty fields, which Alipay leaves out of its signature
    params = trade_params(passback_params="", body="")
    body = alipay_notification(params, keys.alipay)
    assert b"passback_params=&" in body or body.endswith(b"passback_params=")

    # Then it verifies, and an empty field that gains a value is tampering
    assert offline.parse_notification(headers={}, body=body).trade_no == "P20261126000001"
    with pytest.raises(InvalidNotification):
        offline.parse_notification(headers={}, body=reencode(body, passback_params="x"))


@pytest.mark.parametrize(
    "amount",
    ["12.345", "1e3", "-1.00", "", "12,34", " 12.34", "0.00", "NaN", "\uff11\uff12.34", "+1.00"],
)
def test_a_signed_notification_with_a_malformed_amount_is_refused(
    offline: AlipayProvider, keys: Keys, amount: str
) -> None:
    body = alipay_notification(trade_params(total_amount=amount), keys.alipay)
    with pytest.raises(InvalidNotification):
        offline.parse_notification(headers={}, body=body)


@pytest.mark.parametrize(
    ("trade_status", "status"),
    [
        ("TRADE_SUCCESS", "succeeded"),
        ("TRADE_FINISHED", "succeeded"),
        ("TRADE_CLOSED", "closed"),
        ("WAIT_BUYER_PAY", "pending"),
    ],
)
def test_trade_states_map_to_payment_states(
    offline: AlipayProvider, keys: Keys, trade_status: str, status: str
) -> None:
    body = alipay_notification(trade_params(trade_status=trade_status), keys.alipay)
    assert offline.parse_notification(headers={}, body=body).status == status


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"&&",
        b"sign_type=RSA2",
        b"no-equals-sign",
        b"charset=big5&sign_type=RSA2&sign=AAAA",
        b"charset=utf-8&subject=%FF%FE&sign_type=RSA2&sign=AAAA",
        b"sign_type=RSA2&sign_type=RSA2&sign=AAAA",
    ],
)
def test_malformed_bodies_are_refused(offline: AlipayProvider, body: bytes) -> None:
    with pytest.raises(InvalidNotification):
        offline.parse_notification(headers={}, body=body)


@HYPOTHESIS
@given(
    subject=st.text(st.characters(codec="gbk", exclude_categories=["Cs"]), min_size=1, max_size=40),
    charset=st.sampled_from(["utf-8", "GBK", "gbk", "UTF-8"]),
    amount_fen=st.integers(min_value=1, max_value=10**10),
)
def test_any_text_in_either_charset_and_any_amount_verify(
    offline: AlipayProvider, keys: Keys, subject: str, charset: str, amount_fen: int
) -> None:
    total = f"{amount_fen // 100}.{amount_fen % 100:02d}"
    params = trade_params(subject=subject, charset=charset, total_amount=total)
    notification = offline.parse_notification(
        headers={}, body=alipay_notification(params, keys.alipay)
    )
    assert notification.amount_fen == amount_fen
    assert notification.raw["subject"] == subject


def test_acknowledgement_says_success_only_when_accepted(offline: AlipayProvider) -> None:
    accepted = offline.acknowledge(accepted=True)
    refused = offline.acknowledge(accepted=False)
    assert (accepted.status_code, accepted.media_type, accepted.body) == (
        200,
        "text/plain",
        "success",
    )
    assert refused.body == "fail"


# --- requests ------------------------------------------------------------------------------


def test_page_pay_is_a_gateway_redirect_the_sdk_verifies(
    offline: AlipayProvider, keys: Keys
) -> None:
    # When a page-pay checkout is made
    checkout = offline.create_checkout(checkout_request())

    # Then it redirects to the gateway with every parameter, signed RSA2 with our app key
    assert checkout.kind == "redirect"
    assert checkout.url.startswith("https://openapi.alipay.com/gateway.do?")
    query = urllib.parse.urlsplit(checkout.url).query
    params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    content = alipay_sign_content(params, exclude=("sign",)).encode("utf-8")
    assert verify_with_rsa(keys.alipay_app.public_pem, content, params["sign"])
    assert params["method"] == "alipay.trade.page.pay"
    assert params["sign_type"] == "RSA2"
    assert params["timestamp"] == "2026-11-26 10:00:06"
    assert params["notify_url"] == checkout_request().notify_url
    assert params["return_url"] == checkout_request().return_url
    biz = urllib.parse.unquote(params["biz_content"])
    assert '"total_amount":"12.34"' in biz
    assert '"product_code":"FAST_INSTANT_TRADE_PAY"' in biz
    assert '"time_expire":"2026-11-26 10:15:06"' in biz
    assert "大连市自来水费" in biz


def test_our_signature_matches_the_sdks_own(offline: AlipayProvider, keys: Keys) -> None:
    # Given the parameters of one call, signed by us
    params = offline.signed_params("alipay.trade.query", {"out_trade_no": "P1"})

    # Then the SDK, signing the same content with the same key, makes the same signature
    content = alipay_sign_content(params, exclude=("sign",))
    assert params["sign"] == sign_with_rsa2(keys.alipay_app.pkcs1_pem, content, "utf-8")


def test_precreate_returns_the_qr_code_from_the_gateway(
    alipay: AlipayProvider, alipay_gateway: FakeAlipayGateway
) -> None:
    checkout = alipay.create_checkout(checkout_request())
    assert checkout.kind == "qr"
    assert checkout.url == "https://qr.alipay.com/bax0P20261126000001"
    (call,) = alipay_gateway.calls
    assert call["method"] == "alipay.trade.precreate"
    assert call["notify_url"] == checkout_request().notify_url


def test_query_follows_the_trade_at_the_gateway(
    alipay: AlipayProvider, alipay_gateway: FakeAlipayGateway
) -> None:
    assert alipay.query("P20261126000001").status == "not_found"
    alipay.create_checkout(checkout_request())
    assert alipay.query("P20261126000001").status == "pending"

    alipay_gateway.pay("P20261126000001")
    paid = alipay.query("P20261126000001")

    assert (paid.status, paid.amount_fen) == ("succeeded", 1234)
    assert paid.provider_trade_no == alipay_gateway.trades["P20261126000001"]["trade_no"]


@pytest.mark.parametrize(
    ("change", "mismatches", "currency"),
    [
        ({"trans_currency": "USD"}, (), "USD"),
        ({"settle_currency": "USD"}, ("settle_currency",), "CNY"),
        ({"receipt_amount": "10.00"}, ("receipt_amount",), "CNY"),
        ({"trans_currency": "CNYX"}, (), "CNYX"),
        ({"buyer_pay_amount": "10.00", "point_amount": "2.34"}, (), "CNY"),
    ],
)
def test_a_query_answer_says_what_in_it_is_not_ours(
    alipay: AlipayProvider,
    alipay_gateway: FakeAlipayGateway,
    change: dict[str, str],
    mismatches: tuple[str, ...],
    currency: str,
) -> None:
    # Given a trade paid at Alipay on terms that are not the payment's
    alipay.create_checkout(checkout_request())
    alipay_gateway.pay("P20261126000001")
    alipay_gateway.trades["P20261126000001"] |= change
    # When it is asked about, then the answer says so, for the service to refuse
    paid = alipay.query("P20261126000001")
    assert (paid.status, paid.amount_fen, paid.currency) == ("succeeded", 1234, currency)
    assert paid.mismatches == mismatches


def test_refunds_are_idempotent_and_bounded(
    alipay: AlipayProvider, alipay_gateway: FakeAlipayGateway
) -> None:
    # Given a paid trade
    alipay.create_checkout(checkout_request())
    alipay_gateway.pay("P20261126000001")
    refund = {"trade_no": "P20261126000001", "total_fen": 1234, "reason": "多缴退费"}

    # When part is refunded, and the same refund is asked again
    first = alipay.refund(refund_no="R1", amount_fen=1000, **refund)  # type: ignore[arg-type]
    again = alipay.refund(refund_no="R1", amount_fen=1000, **refund)  # type: ignore[arg-type]
    too_much = alipay.refund(refund_no="R2", amount_fen=235, **refund)  # type: ignore[arg-type]

    # Then the first moves money, the retry is confirmed by the refund query, the rest refused
    assert first.status == "succeeded"
    assert again.status == "succeeded"
    assert too_much.status == "failed"
    assert "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL" in too_much.detail
    assert alipay_gateway.refunds == {("P20261126000001", "R1"): "10.00"}
    with pytest.raises(InvalidInput):
        alipay.refund(refund_no="R3", amount_fen=0, **refund)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["bad_sign", "unsigned", "http_error"])
def test_an_unverifiable_gateway_answer_is_an_error(
    alipay: AlipayProvider, alipay_gateway: FakeAlipayGateway, mode: str
) -> None:
    alipay_gateway.mode = mode
    with pytest.raises(ProviderError):
        alipay.query("P20261126000001")


def test_a_gateway_that_does_not_verify_our_signature_answers_unsigned(
    keys: Keys, alipay_gateway: FakeAlipayGateway
) -> None:
    # Given an adapter with a key Alipay does not know for this app
    (keys.directory / "wrong.pem").write_text(keys.stranger.pkcs1_pem)
    settings = alipay_settings(keys, alipay_gateway.url).model_copy(
        update={"private_key_file": keys.directory / "wrong.pem"}
    )
    stranger = AlipayProvider(settings, urlopen=loopback_urlopen, clock=lambda: NOW)

    # Then the gateway refuses the call and the adapter says so
    with pytest.raises(ProviderError, match="unsigned"):
        stranger.query("P20261126000001")


def test_an_unreachable_or_slow_gateway_is_an_error(keys: Keys) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/gateway.do"

    def times_out(request: object, /, *, timeout: float) -> object:
        raise TimeoutError("timed out")

    for provider in (
        AlipayProvider(alipay_settings(keys, closed), urlopen=loopback_urlopen),
        AlipayProvider(alipay_settings(keys), urlopen=times_out),
    ):
        with pytest.raises(ProviderError, match="unreachable"):
            provider.query("P20261126000001")


# --- settings ------------------------------------------------------------------------------


def test_missing_settings_or_keys_are_refused_at_construction(keys: Keys, tmp_path: Path) -> None:
    with pytest.raises(ProviderMisconfigured):
        AlipayProvider(alipay_settings(keys).model_copy(update={"seller_id": ""}))
    with pytest.raises(ProviderMisconfigured):
        AlipayProvider(alipay_settings(keys).model_copy(update={"private_key_file": None}))
    (tmp_path / "garbage.pem").write_text("not a key")
    with pytest.raises(ProviderMisconfigured):
        AlipayProvider(
            alipay_settings(keys).model_copy(
                update={"alipay_public_key_file": tmp_path / "garbage.pem"}
            )
        )


def test_keys_as_alipays_tool_writes_them_bare_are_accepted(keys: Keys, tmp_path: Path) -> None:
    # Given both keys as one bare base64 line each, as Alipay's key tool gives them
    def bare(pem: str) -> str:
        return "".join(line for line in pem.splitlines() if not line.startswith("-----"))

    (tmp_path / "app.txt").write_text(bare(keys.alipay_app.pkcs1_pem))
    (tmp_path / "alipay.txt").write_text(bare(keys.alipay.public_pem))
    settings = alipay_settings(keys).model_copy(
        update={
            "private_key_file": tmp_path / "app.txt",
            "alipay_public_key_file": tmp_path / "alipay.txt",
        }
    )

    # Then the adapter signs and verifies with them
    provider = AlipayProvider(settings)
    body = alipay_notification(trade_params(), keys.alipay)
    assert provider.parse_notification(headers={}, body=body).amount_fen == 1234


# --- the daily bill ------------------------------------------------------------------------

BILL = """#支付宝业务明细查询
#账号：[20881021778468800156]
#起始日期：[2026年11月26日 00:00:00]   终止日期：[2026年11月27日 00:00:00]
#-----------------------------------------业务明细列表----------------------------------------
支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注
2026112622001433331412345678\t,P20261126000001\t,交易\t,大连市自来水费 2026年10月\t,2026-11-26 10:00:00\t,2026-11-26 10:00:05\t,\t,\t,\t,\t,159****5620\t,12.34\t,12.34\t,0.00\t,0.00\t,0.00\t,0.00\t,0.00\t,\t,0.00\t,0.00\t,\t,-0.07\t,0.00\t,
2026112622001433331412345679\t,P20261126000002\t,交易\t,大连市燃气费\t,2026-11-26 11:20:00\t,2026-11-26 11:20:31\t,\t,\t,\t,\t,abc***@163.com\t,230.00\t,225.00\t,5.00\t,0.00\t,0.00\t,0.00\t,0.00\t,\t,0.00\t,0.00\t,\t,-1.38\t,0.00\t,
2026112622001433331412345678\t,P20261126000001\t,退款\t,大连市自来水费 2026年10月\t,2026-11-26 15:02:10\t,2026-11-26 15:02:11\t,\t,\t,\t,\t,159****5620\t,-10.00\t,-10.00\t,0.00\t,0.00\t,0.00\t,0.00\t,0.00\t,\t,0.00\t,0.00\t,R20261126000001\t,0.06\t,0.00\t,
#-----------------------------------------业务明细列表结束------------------------------------
#交易合计：2笔，商家实收：￥237.34元，商家优惠：￥0.00元
#退款合计：1笔，商家实收：￥-10.00元，商家优惠：￥0.00元
#导出时间：[2026年11月27日 09:12:33]
"""  # noqa: RUF001  (Alipay's own full-width punctuation)


def test_the_daily_bill_is_read(offline: AlipayProvider) -> None:
    lines = offline.parse_statement(
        BILL.replace("\n", "\r\n").encode("gbk"), business_date=date(2026, 11, 26)
    )
    assert [(line.trade_no, line.kind, line.amount_fen) for line in lines] == [
        ("P20261126000001", "payment", 1234),
        ("P20261126000002", "payment", 23000),
        ("P20261126000001", "refund", 1000),
    ]
    assert lines[0].provider_trade_no == "2026112622001433331412345678"
    assert lines[2].occurred_at == datetime(2026, 11, 26, 15, 2, 11, tzinfo=BEIJING)
    # a refund row carries our refund number (退款批次号/请求号); a payment row none
    assert [line.refund_no for line in lines] == [None, None, "R20261126000001"]


def test_a_bill_for_another_day_or_with_bad_rows_is_refused(offline: AlipayProvider) -> None:
    with pytest.raises(InvalidInput, match="2026-11-26"):
        offline.parse_statement(BILL.encode("gbk"), business_date=date(2026, 11, 25))
    with pytest.raises(InvalidInput, match="line 6"):
        offline.parse_statement(
            BILL.replace("12.34\t,12.34", "12.3x\t,12.34").encode("gbk"),
            business_date=date(2026, 11, 26),
        )
    with pytest.raises(InvalidInput):
        offline.parse_statement(b"\xff\xff\xff", business_date=date(2026, 11, 26))
    with pytest.raises(InvalidInput, match="header"):
        offline.parse_statement("#只有注释\n".encode("gbk"), business_date=date(2026, 11, 26))
