"""Alipay open platform (RSA2): page pay and precreate (QR), query, refund, notifications, bills.

Requests are signed as the open platform specifies: every parameter except ``sign`` with a
non-empty value, sorted by name, joined as ``k=v`` with ``&``, encoded in the request's charset
(UTF-8) and signed SHA256withRSA with the application's private key. Gateway answers are
verified over the exact JSON text of their ``<method>_response`` node with Alipay's public key.

Asynchronous notifications are verified as Alipay specifies and nothing looser: the form body
is decoded once; ``sign``, ``sign_type`` and empty values are left out; the rest is sorted,
joined, encoded in the notification's own ``charset`` (UTF-8 or GBK) and checked as
SHA256withRSA against Alipay's public key. ``sign_type`` must be ``RSA2``: a SHA-1 ``RSA``
notification is refused even when its signature is right. A notification that verifies is
handed to the service with what in it does not fit: another ``seller_id`` makes it ``foreign``
(its money went to another seller), and another ``app_id``, a settlement currency other than
the trade's, or a ``receipt_amount`` (实收金额, what the seller actually received) other than
``total_amount`` are its ``mismatches``; ``out_trade_no``, ``total_amount`` and the trade's
currency (``trans_currency``, CNY when absent, compared whole) are checked against the payment
by the service, and ``notify_id`` is the de-duplication id. Query answers are read the same way.
The payer's own figures (``buyer_pay_amount``, ``point_amount``, ``invoice_amount``,
``pay_currency``) say how the payer paid, not what the seller got (a payer may pay part with
points or a red packet Alipay funds, and the seller still receives the whole total): they are
kept with the notification and compared with nothing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from civicloud.core.errors import InvalidInput
from civicloud.pay.backends import (
    Acknowledgement,
    Checkout,
    CheckoutRequest,
    Notification,
    RefundOutcome,
    StatementLine,
    TradeQuery,
    TradeStatus,
)
from civicloud.pay.errors import InvalidNotification, ProviderError, ProviderMisconfigured
from civicloud.pay.providers._common import (
    BEIJING,
    Clock,
    UrlOpen,
    beijing_time,
    fen_to_yuan,
    http_exchange,
    load_rsa_private_key,
    load_rsa_public_key,
    rsa_sha256_sign,
    rsa_sha256_verify,
    utc_now,
    yuan_to_fen,
)
from civicloud.pay.settings import AlipaySettings

#: Alipay's trade states and what they mean for a payment.
TRADE_STATES: dict[str, TradeStatus] = {
    "TRADE_SUCCESS": "succeeded",
    "TRADE_FINISHED": "succeeded",
    "TRADE_CLOSED": "closed",
    "WAIT_BUYER_PAY": "pending",
}

#: Charsets a notification may declare, and the codec each one is decoded and encoded with.
#: GB2312 is a subset of GBK, so GBK reads it byte for byte.
NOTIFICATION_CHARSETS = {"utf-8": "utf-8", "gbk": "gbk", "gb2312": "gbk"}

#: Sub-codes after which a refund's fate is unknown: ask again with the same refund number.
_RETRYABLE_SUB_CODES = {"ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR"}

# Alipay refuses "/", "=" and "&" in a subject ("不可使用特殊字符").
_SUBJECT_FORBIDDEN = re.compile(r"[/=&]")
_SUBJECT_MAX = 256
_REASON_MAX = 256
_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class AlipayReply:
    """A verified gateway answer: the fields of its ``<method>_response`` node."""

    code: str
    sub_code: str
    message: str
    data: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Whether the call succeeded (``code`` ``10000``)."""
        return self.code == "10000"

    def describe(self) -> str:
        """The codes and messages, for an error."""
        detail = self.data.get("sub_msg") or self.message
        return f"code {self.code} {self.sub_code}: {detail}".strip()


class AlipayProvider:
    """Alipay through the open platform gateway, RSA2 keys only (no certificate mode)."""

    name = "alipay"

    def __init__(
        self,
        settings: AlipaySettings,
        *,
        checkout: Literal["page", "qr"] = "page",
        urlopen: UrlOpen | None = None,
        clock: Clock | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not settings.app_id or not settings.seller_id:
            raise ProviderMisconfigured("alipay: app_id and seller_id are both required")
        self._app_id = settings.app_id
        self._seller_id = settings.seller_id
        self._gateway = settings.gateway
        self._private_key = load_rsa_private_key(
            settings.private_key_file, "alipay: application private key"
        )
        self._alipay_key = load_rsa_public_key(
            settings.alipay_public_key_file, "alipay: Alipay public key"
        )
        self._checkout = checkout
        self._urlopen: UrlOpen = urlopen or urllib.request.urlopen
        self._clock = clock or utc_now
        self._timeout = timeout

    # --- requests --------------------------------------------------------------------------

    def signed_params(
        self,
        method: str,
        biz_content: Mapping[str, object],
        *,
        notify_url: str = "",
        return_url: str = "",
    ) -> dict[str, str]:
        """The public and business parameters of one gateway call, with their RSA2 ``sign``."""
        params = {
            "app_id": self._app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": self._clock().astimezone(BEIJING).strftime(_TIMESTAMP_FORMAT),
            "version": "1.0",
            "notify_url": notify_url,
            "return_url": return_url,
            "biz_content": json.dumps(biz_content, ensure_ascii=False, separators=(",", ":")),
        }
        params = {key: value for key, value in params.items() if value}
        params["sign"] = rsa_sha256_sign(self._private_key, sign_content(params).encode("utf-8"))
        return params

    def _gateway_url(self, params: Mapping[str, str]) -> str:
        separator = "&" if "?" in self._gateway else "?"
        return self._gateway + separator + urllib.parse.urlencode(params, encoding="utf-8")

    def call(
        self, method: str, biz_content: Mapping[str, object], *, notify_url: str = ""
    ) -> AlipayReply:
        """POST one signed call to the gateway; the verified answer (``ProviderError`` if none)."""
        params = self.signed_params(method, biz_content, notify_url=notify_url)
        reply = http_exchange(
            self._urlopen,
            provider=self.name,
            method="POST",
            url=self._gateway,
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
            body=urllib.parse.urlencode(params, encoding="utf-8").encode("ascii"),
            timeout=self._timeout,
        )
        if reply.status != 200:
            raise ProviderError(
                "alipay: %(method)s answered HTTP %(status)s",
                params={"method": method, "status": reply.status},
            )
        return self._verified_reply(method, reply.body)

    def _verified_reply(self, method: str, body: bytes) -> AlipayReply:
        try:
            text = body.decode("utf-8")
            members = top_level_members(text)
        except (UnicodeDecodeError, ValueError) as error:
            raise ProviderError(
                "alipay: the answer to %(method)s is not a JSON object", params={"method": method}
            ) from error
        node_name = method.replace(".", "_") + "_response"
        if node_name not in members:
            node_name = "error_response"
        node = members.get(node_name)
        sign = members.get("sign")
        if node is None or not isinstance(node[1], dict):
            raise ProviderError(
                "alipay: the answer to %(method)s has no %(node)s node",
                params={"method": method, "node": node_name},
            )
        data: dict[str, Any] = node[1]
        if sign is None or not isinstance(sign[1], str):
            # Alipay leaves an answer unsigned when it cannot tell which app asked (a wrong
            # app_id or request signature): an error, and not one we can trust the details of.
            raise ProviderError(
                "alipay: the answer to %(method)s is unsigned (code %(code)s %(sub_code)s)",
                params={
                    "method": method,
                    "code": str(data.get("code")),
                    "sub_code": str(data.get("sub_code", "")),
                },
            )
        if not rsa_sha256_verify(self._alipay_key, node[0].encode("utf-8"), sign[1]):
            raise ProviderError(
                "alipay: the signature of the answer to %(method)s does not verify",
                params={"method": method},
            )
        return AlipayReply(
            code=str(data.get("code", "")),
            sub_code=str(data.get("sub_code", "")),
            message=str(data.get("msg", "")),
            data=data,
        )

    # --- checkout --------------------------------------------------------------------------

    def _trade_biz(self, request: CheckoutRequest) -> dict[str, object]:
        if request.currency != "CNY":
            raise InvalidInput(
                "alipay takes CNY only, not %(currency)s", params={"currency": request.currency}
            )
        subject = _SUBJECT_FORBIDDEN.sub(" ", request.subject).strip()[:_SUBJECT_MAX]
        return {
            "out_trade_no": request.trade_no,
            "total_amount": fen_to_yuan(request.amount_fen),
            "subject": subject or request.trade_no,
        }

    def page_pay(self, request: CheckoutRequest) -> Checkout:
        """``alipay.trade.page.pay``: a signed redirect to Alipay's cashier page."""
        biz = self._trade_biz(request) | {
            "product_code": "FAST_INSTANT_TRADE_PAY",
            "time_expire": request.expires_at.astimezone(BEIJING).strftime(_TIMESTAMP_FORMAT),
        }
        params = self.signed_params(
            "alipay.trade.page.pay",
            biz,
            notify_url=request.notify_url,
            return_url=request.return_url,
        )
        return Checkout(kind="redirect", url=self._gateway_url(params))

    def precreate(self, request: CheckoutRequest) -> Checkout:
        """``alipay.trade.precreate``: a QR code the citizen scans with the Alipay app."""
        minutes = math.ceil((request.expires_at - self._clock()).total_seconds() / 60)
        biz = self._trade_biz(request) | {"timeout_express": f"{max(minutes, 1)}m"}
        reply = self.call("alipay.trade.precreate", biz, notify_url=request.notify_url)
        if not reply.ok:
            raise ProviderError(
                "alipay: precreate refused: %(reason)s", params={"reason": reply.describe()}
            )
        qr_code = reply.data.get("qr_code")
        if not isinstance(qr_code, str) or not qr_code:
            raise ProviderError("alipay: precreate answer has no qr_code")
        if reply.data.get("out_trade_no") not in (None, request.trade_no):
            raise ProviderError("alipay: precreate answered for another trade")
        return Checkout(kind="qr", url=qr_code)

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """Page pay (a redirect) or precreate (a QR code), as this adapter was built for."""
        if self._checkout == "qr":
            return self.precreate(request)
        return self.page_pay(request)

    # --- notifications ---------------------------------------------------------------------

    def parse_notification(self, *, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify an asynchronous notification exactly as Alipay specifies; raise if it fails."""
        params = decode_notification_form(body)
        charset = params.get("charset", "utf-8").lower()
        if params.get("sign_type") != "RSA2":
            raise InvalidNotification(
                "alipay: only RSA2 (SHA256withRSA) notifications are accepted",
                sign_type=params.get("sign_type"),
            )
        signature = params.get("sign", "")
        content = sign_content(params, exclude=("sign", "sign_type"))
        message = content.encode(NOTIFICATION_CHARSETS[charset])
        if not signature or not rsa_sha256_verify(self._alipay_key, message, signature):
            raise InvalidNotification("alipay: notification signature does not verify")
        notify_id, trade_no = params.get("notify_id", ""), params.get("out_trade_no", "")
        if not notify_id or not trade_no:
            raise InvalidNotification("alipay: notification lacks notify_id or out_trade_no")
        status = TRADE_STATES.get(params.get("trade_status", ""))
        if status is None:
            raise InvalidNotification(
                "alipay: unknown trade_status",
                trade_status=params.get("trade_status", ""),
                notify_id=params.get("notify_id", ""),
            )
        try:
            amount_fen = yuan_to_fen(params.get("total_amount", ""))
        except ValueError as error:
            raise InvalidNotification("alipay: malformed total_amount") from error
        if amount_fen <= 0:
            raise InvalidNotification("alipay: total_amount must be positive")
        try:
            currency, mismatches = trade_facts(params, amount_fen)
        except ValueError as error:
            raise InvalidNotification(
                "alipay: %(reason)s", params={"reason": str(error)}
            ) from error
        if params.get("app_id") != self._app_id:
            mismatches = ("app_id", *mismatches)
        return Notification(
            notify_id=notify_id,
            trade_no=trade_no,
            status=status,
            amount_fen=amount_fen,
            provider_trade_no=params.get("trade_no") or None,
            occurred_at=_optional_time(params.get("gmt_payment") or params.get("notify_time")),
            raw={key: value for key, value in params.items() if key != "sign"},
            currency=currency,
            mismatches=mismatches,
            # Another seller's trade: its money went to that seller's account, not ours.
            foreign=params.get("seller_id") != self._seller_id,
        )

    def acknowledge(self, *, accepted: bool) -> Acknowledgement:
        """``success`` (only once the payment is durably recorded), else ``fail`` so Alipay retries."""
        if accepted:
            return Acknowledgement(status_code=200, media_type="text/plain", body="success")
        return Acknowledgement(status_code=400, media_type="text/plain", body="fail")

    # --- query and refund ------------------------------------------------------------------

    def query(self, trade_no: str) -> TradeQuery:
        """``alipay.trade.query`` by ``out_trade_no``."""
        reply = self.call("alipay.trade.query", {"out_trade_no": trade_no})
        if not reply.ok:
            if reply.sub_code == "ACQ.TRADE_NOT_EXIST":
                return TradeQuery(trade_no=trade_no, status="not_found")
            raise ProviderError(
                "alipay: query refused: %(reason)s", params={"reason": reply.describe()}
            )
        if reply.data.get("out_trade_no") != trade_no:
            raise ProviderError("alipay: query answered for another trade")
        status = TRADE_STATES.get(str(reply.data.get("trade_status", "")))
        if status is None:
            raise ProviderError(
                "alipay: unknown trade_status %(status)s",
                params={"status": repr(reply.data.get("trade_status"))},
            )
        answer = {key: str(value) for key, value in reply.data.items() if value is not None}
        try:
            amount_fen = yuan_to_fen(answer.get("total_amount", ""))
            currency, mismatches = trade_facts(answer, amount_fen)
        except ValueError as error:
            raise ProviderError(
                "alipay: the query's answer is malformed: %(reason)s", params={"reason": str(error)}
            ) from error
        provider_trade_no = reply.data.get("trade_no")
        return TradeQuery(
            trade_no=trade_no,
            status=status,
            amount_fen=amount_fen,
            provider_trade_no=str(provider_trade_no) if provider_trade_no else None,
            currency=currency,
            mismatches=mismatches,
        )

    def refund(
        self, *, trade_no: str, refund_no: str, amount_fen: int, total_fen: int, reason: str
    ) -> RefundOutcome:
        """``alipay.trade.refund`` with ``out_request_no`` = ``refund_no`` (so retries are safe)."""
        if not 0 < amount_fen <= total_fen:
            raise InvalidInput("refund amount must be positive and at most the amount paid")
        reply = self.call(
            "alipay.trade.refund",
            {
                "out_trade_no": trade_no,
                "refund_amount": fen_to_yuan(amount_fen),
                "out_request_no": refund_no,
                "refund_reason": reason[:_REASON_MAX],
            },
        )
        if reply.ok:
            if reply.data.get("out_trade_no", trade_no) != trade_no:
                raise ProviderError("alipay: refund answered for another trade")
            if reply.data.get("fund_change") == "Y":
                return RefundOutcome(status="succeeded")
            # "N": no money moved by this call, typically a retry of a refund already made;
            # Alipay says to ask the refund query for the refund's real state.
            return self._refund_state(trade_no, refund_no)
        if reply.code == "20000" or reply.sub_code in _RETRYABLE_SUB_CODES:
            raise ProviderError(
                "alipay: refund outcome unknown, retry: %(reason)s",
                params={"reason": reply.describe()},
            )
        return RefundOutcome(status="failed", detail=reply.describe())

    def _refund_state(self, trade_no: str, refund_no: str) -> RefundOutcome:
        reply = self.call(
            "alipay.trade.fastpay.refund.query",
            {"out_trade_no": trade_no, "out_request_no": refund_no},
        )
        if reply.ok and reply.data.get("refund_status") == "REFUND_SUCCESS":
            return RefundOutcome(status="succeeded")
        if reply.ok or reply.sub_code in _RETRYABLE_SUB_CODES:
            return RefundOutcome(status="pending", detail="refund not confirmed yet")
        raise ProviderError(
            "alipay: refund query refused: %(reason)s", params={"reason": reply.describe()}
        )

    # --- statements ------------------------------------------------------------------------

    def parse_statement(self, content: bytes, *, business_date: date) -> list[StatementLine]:
        """Read Alipay's daily business detail bill (业务明细, GBK CSV with ``#`` lines)."""
        return parse_alipay_bill(content, business_date=business_date)


# --- wire format helpers -------------------------------------------------------------------

#: Where a notification or a query answer states the trade's own currency (标价币种): absent, CNY.
_TRADE_CURRENCY_FIELDS = ("trans_currency", "currency")
#: The currency the seller is settled in, which must be the trade's (``pay_currency`` is the
#: payer's, and says nothing of what the seller got).
_OTHER_CURRENCY_FIELDS = ("settle_currency",)
#: Amounts that, where stated, must be the whole ``total_amount``: what the seller received
#: (the installation grants no discounts). ``buyer_pay_amount`` is less than the total when the
#: payer used points or a red packet, and the seller still receives the total: not compared.
_WHOLE_AMOUNTS = ("receipt_amount",)


def trade_facts(fields: Mapping[str, str], total_fen: int) -> tuple[str, tuple[str, ...]]:
    """The currency of a trade's notification or query answer (as stated, whole: ``CNYX`` is
    not ``CNY``), and the names of the fields that disagree with it or with its
    ``total_amount`` of ``total_fen`` (a settlement currency other than the trade's, a
    ``receipt_amount`` other than the total); ``ValueError`` for an amount that is not one."""
    currency = next((fields[n] for n in _TRADE_CURRENCY_FIELDS if fields.get(n)), "CNY")
    mismatches = [n for n in _OTHER_CURRENCY_FIELDS if fields.get(n, currency) != currency]
    for name in _WHOLE_AMOUNTS:
        stated = fields.get(name, "")
        if stated and yuan_to_fen(stated) != total_fen:
            mismatches.append(name)
    return currency, tuple(mismatches)


def sign_content(params: Mapping[str, str], *, exclude: tuple[str, ...] = ("sign",)) -> str:
    """Alipay's string to sign: non-empty parameters but ``exclude``, sorted, ``k=v`` by ``&``."""
    return "&".join(
        f"{key}={value}"
        for key, value in sorted(params.items())
        if key not in exclude and value != ""
    )


def decode_notification_form(body: bytes) -> dict[str, str]:
    """Decode an ``application/x-www-form-urlencoded`` notification ONCE, in its own charset."""
    pairs: list[tuple[bytes, bytes]] = []
    for part in body.split(b"&"):
        if not part:
            continue
        encoded_key, separator, encoded_value = part.partition(b"=")
        if not separator:
            raise InvalidNotification("alipay: malformed form body")
        pairs.append(
            (
                urllib.parse.unquote_to_bytes(encoded_key.replace(b"+", b" ")),
                urllib.parse.unquote_to_bytes(encoded_value.replace(b"+", b" ")),
            )
        )
    raw_charset = next((value for key, value in pairs if key == b"charset"), b"utf-8")
    try:
        codec = NOTIFICATION_CHARSETS[raw_charset.decode("ascii").lower()]
    except (UnicodeDecodeError, KeyError) as error:
        raise InvalidNotification("alipay: unsupported notification charset") from error
    params: dict[str, str] = {}
    try:
        for raw_key, raw_value in pairs:
            key = raw_key.decode("ascii")
            if key in params:
                raise InvalidNotification(
                    "alipay: parameter %(key)s given twice", params={"key": repr(key)}
                )
            params[key] = raw_value.decode(codec)
    except UnicodeDecodeError as error:
        raise InvalidNotification(
            "alipay: notification is not valid %(codec)s", params={"codec": codec}
        ) from error
    if not params:
        raise InvalidNotification("alipay: empty notification")
    return params


def top_level_members(text: str) -> dict[str, tuple[str, object]]:
    """The members of a JSON object, each with its exact source text (what Alipay signed).

    ``ValueError`` if ``text`` is not one JSON object or repeats a member.
    """
    decoder = json.JSONDecoder()
    whitespace = re.compile(r"[ \t\n\r]*")

    def _skip(position: int) -> int:
        match = whitespace.match(text, position)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    position = _skip(0)
    if text[position : position + 1] != "{":
        raise ValueError("not a JSON object")
    position = _skip(position + 1)
    members: dict[str, tuple[str, object]] = {}
    if text[position : position + 1] == "}":
        position += 1
    else:
        while True:
            key, position = decoder.raw_decode(text, position)
            if not isinstance(key, str) or key in members:
                raise ValueError("bad or repeated member name")
            position = _skip(position)
            if text[position : position + 1] != ":":
                raise ValueError("expected ':'")
            start = _skip(position + 1)
            value, position = decoder.raw_decode(text, start)
            members[key] = (text[start:position], value)
            position = _skip(position)
            delimiter = text[position : position + 1]
            position = _skip(position + 1)
            if delimiter == "}":
                break
            if delimiter != ",":
                raise ValueError("expected ',' or '}'")
    if _skip(position) != len(text):
        raise ValueError("trailing data after the JSON object")
    return members


def _optional_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return beijing_time(text)
    except ValueError:
        return None


# --- the daily bill ------------------------------------------------------------------------

# Alipay's own column names, full-width brackets and colon included.
_ORDER_AMOUNT = "订单金额（元）"  # noqa: RUF001
_REFUND_REQUEST_NO = "退款批次号/请求号"
_ALIPAY_REQUIRED = ("支付宝交易号", "商户订单号", "业务类型", "完成时间", _ORDER_AMOUNT)
_ALIPAY_KINDS: dict[str, Literal["payment", "refund"]] = {"交易": "payment", "退款": "refund"}
_ALIPAY_START_DATE = re.compile(r"起始日期：\[(\d{4})年(\d{1,2})月(\d{1,2})日")  # noqa: RUF001


def _decode_bill(content: bytes) -> str:
    if content.startswith(b"\xef\xbb\xbf"):
        return content.decode("utf-8-sig")
    try:
        # GB18030 is a superset of GBK: the same bytes, and it never loses a character.
        return content.decode("gb18030")
    except UnicodeDecodeError as error:
        raise InvalidInput("alipay bill: not GBK text") from error


def _check_bill_date(comment: str, business_date: date) -> None:
    start = _ALIPAY_START_DATE.search(comment)
    if start is not None:
        found = date(int(start[1]), int(start[2]), int(start[3]))
        if found != business_date:
            raise InvalidInput(
                "the alipay bill is for %(found)s, not %(day)s",
                params={"found": found.isoformat(), "day": business_date.isoformat()},
            )


def _bill_header(cells: list[str], number: int) -> list[str]:
    if cells[0] != "支付宝交易号":
        raise InvalidInput(
            "alipay bill line %(line)s: expected the column header", params={"line": number}
        )
    missing = [name for name in _ALIPAY_REQUIRED if name not in cells]
    if missing:
        raise InvalidInput(
            "alipay bill: missing columns %(columns)s", params={"columns": ", ".join(missing)}
        )
    return cells


def _bill_line(record: Mapping[str, str], number: int) -> StatementLine | None:
    kind = _ALIPAY_KINDS.get(record["业务类型"])
    if kind is None:
        return None  # other business types (分账, 转账…) are not trades of ours
    try:
        # A refund row's amount is negative; the line carries the amount refunded.
        amount_fen = abs(yuan_to_fen(record[_ORDER_AMOUNT], signed=True))
        occurred_at = beijing_time(record["完成时间"]) if record["完成时间"] else None
    except ValueError as error:
        raise InvalidInput(
            "alipay bill line %(line)s: the amount or the time cannot be read",
            params={"line": number},
        ) from error
    if not record["商户订单号"] or not record["支付宝交易号"]:
        raise InvalidInput(
            "alipay bill line %(line)s: missing trade numbers", params={"line": number}
        )
    return StatementLine(
        trade_no=record["商户订单号"],
        provider_trade_no=record["支付宝交易号"],
        kind=kind,
        amount_fen=amount_fen,
        occurred_at=occurred_at,
        # Our out_request_no, on refund rows of a bill that has the column.
        refund_no=(record.get(_REFUND_REQUEST_NO) or None) if kind == "refund" else None,
    )


def parse_alipay_bill(content: bytes, *, business_date: date) -> list[StatementLine]:
    """Parse Alipay's 业务明细 CSV: ``#`` header and footer lines, tab-padded cells, GBK."""
    header: list[str] | None = None
    lines: list[StatementLine] = []
    for number, row in enumerate(csv.reader(io.StringIO(_decode_bill(content))), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if cells[0].startswith("#"):
            _check_bill_date(",".join(cells), business_date)
        elif header is None:
            header = _bill_header(cells, number)
        elif len(cells) < len(header):
            raise InvalidInput(
                "alipay bill line %(line)s: %(found)s cells, not %(count)s",
                params={"line": number, "found": len(cells), "count": len(header)},
            )
        else:
            line = _bill_line(dict(zip(header, cells, strict=False)), number)
            if line is not None:
                lines.append(line)
    if header is None:
        raise InvalidInput("alipay bill: no column header found")
    return lines
