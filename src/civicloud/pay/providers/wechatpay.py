"""WeChat Pay API v3: Native pay (QR), query, refunds, callbacks and the trade bill.

Requests carry a ``WECHATPAY2-SHA256-RSA2048`` ``Authorization`` header: SHA256withRSA by the
merchant's API key over ``METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n``. Answers and callbacks are
verified over ``TIMESTAMP\\nNONCE\\nBODY\\n`` with the platform certificate or public key that
``Wechatpay-Serial`` names; those are read from ``platform_keys_dir`` (``<serial>.pem``) once, at
construction, and nothing is ever fetched while verifying: an unknown serial is refused.
Callbacks more than five minutes off our clock are refused as replays, and their resource is
decrypted (AEAD_AES_256_GCM) with the APIv3 key. Payment callbacks (``TRANSACTION.*``) and
refund callbacks (``REFUND.SUCCESS``, ``REFUND.ABNORMAL``, ``REFUND.CLOSED``) go through the
same checks; a refund callback becomes a ``Notification`` of kind ``refund``.

A callback that verifies is handed to the service with what in it does not fit: another
``mchid`` (or a partner's ``sp_mchid``/``sub_mchid``) makes it ``foreign``, none of its money
ours; another ``appid``, or a no-recharge coupon (``promotion_detail`` of type ``NOCASH``,
which the merchant is not settled for), is listed in ``mismatches``; ``amount.total`` (what
the merchant receives) and ``amount.currency`` (compared whole: ``CNYX`` is not ``CNY``) are
compared with the payment by the service. ``payer_total`` and ``payer_currency`` say what the
payer paid (less than the total when WeChat Pay's own coupon paid part, with the merchant still
settled for the total): they are kept with the callback and compared with nothing, in payment
and refund callbacks alike. Query and refund answers are read the same way.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import secrets
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeGuard

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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
    HttpReply,
    UrlOpen,
    beijing_time,
    http_exchange,
    load_rsa_private_key,
    lower_headers,
    rsa_public_key_from_pem,
    rsa_sha256_sign,
    rsa_sha256_verify,
    utc_now,
    yuan_to_fen,
)
from civicloud.pay.settings import WechatPaySettings

SIGNATURE_SCHEME = "WECHATPAY2-SHA256-RSA2048"

#: WeChat's trade states and what they mean for a payment. ``REFUND`` means paid, then (partly)
#: refunded; ``REVOKED`` is a cancelled card-reader trade.
TRADE_STATES: dict[str, TradeStatus] = {
    "SUCCESS": "succeeded",
    "REFUND": "succeeded",
    "NOTPAY": "pending",
    "USERPAYING": "pending",
    "ACCEPT": "pending",
    "CLOSED": "closed",
    "REVOKED": "closed",
    "PAYERROR": "failed",
}

REFUND_STATES: dict[str, Literal["succeeded", "pending", "failed"]] = {
    "SUCCESS": "succeeded",
    "PROCESSING": "pending",
    "CLOSED": "failed",
    "ABNORMAL": "failed",
}

#: The refund callbacks' event types, each with the ``refund_status`` its resource must carry.
REFUND_EVENTS: dict[str, str] = {
    "REFUND.SUCCESS": "SUCCESS",
    "REFUND.ABNORMAL": "ABNORMAL",
    "REFUND.CLOSED": "CLOSED",
}

#: Error codes after which a call's outcome is unknown: ask again with the same numbers.
_RETRYABLE_CODES = {"SYSTEM_ERROR", "FREQUENCY_LIMITED", "BANK_ERROR"}
_DESCRIPTION_MAX = 127
_REASON_MAX = 80


@dataclass(frozen=True)
class WechatReply:
    """A gateway answer whose signature verified: status and parsed JSON body."""

    status: int
    data: dict[str, Any]

    def describe(self) -> str:
        """The error code and message, for an error."""
        return f"HTTP {self.status} {self.data.get('code', '')}: {self.data.get('message', '')}"


def load_platform_keys(directory: Path | None) -> dict[str, rsa.RSAPublicKey]:
    """Read every ``<serial>.pem`` (certificate or public key) of the platform keys directory."""
    if directory is None:
        raise ProviderMisconfigured("wechatpay: platform_keys_dir is not configured")
    if not directory.is_dir():
        raise ProviderMisconfigured(
            "wechatpay: %(path)s is not a directory", params={"path": str(directory)}
        )
    keys: dict[str, rsa.RSAPublicKey] = {}
    for path in sorted(directory.glob("*.pem")):
        serial = path.stem
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ProviderMisconfigured(
                "wechatpay: cannot read %(path)s: %(reason)s",
                params={"path": str(path), "reason": error.strerror or str(error)},
            ) from error
        keys[serial] = rsa_public_key_from_pem(data, "wechatpay: platform key", path)
    if not keys:
        raise ProviderMisconfigured(
            "wechatpay: no <serial>.pem platform keys in %(path)s",
            params={"path": str(directory)},
        )
    return keys


class WechatPayProvider:
    """WeChat Pay API v3 for a direct merchant (直连商户), Native pay."""

    name = "wechatpay"

    def __init__(
        self,
        settings: WechatPaySettings,
        *,
        urlopen: UrlOpen | None = None,
        clock: Clock | None = None,
        timeout: float = 10.0,
        max_skew: timedelta = timedelta(minutes=5),
    ) -> None:
        if not settings.mchid or not settings.appid or not settings.merchant_serial_no:
            raise ProviderMisconfigured(
                "wechatpay: mchid, appid and merchant_serial_no are required"
            )
        api_v3_key = settings.api_v3_key.encode("utf-8")
        if len(api_v3_key) != 32:
            raise ProviderMisconfigured("wechatpay: the APIv3 key must be 32 bytes")
        self._mchid = settings.mchid
        self._appid = settings.appid
        self._serial_no = settings.merchant_serial_no
        self._aead = AESGCM(api_v3_key)
        self._gateway = settings.gateway.rstrip("/")
        self._private_key = load_rsa_private_key(
            settings.private_key_file, "wechatpay: merchant API private key"
        )
        self._platform_keys = load_platform_keys(settings.platform_keys_dir)
        self._urlopen: UrlOpen = urlopen or urllib.request.urlopen
        self._clock = clock or utc_now
        self._timeout = timeout
        self._max_skew = max_skew

    # --- signing ---------------------------------------------------------------------------

    def authorization(self, method: str, url: str, body: str) -> str:
        """The ``Authorization`` header for a request to ``url`` (path and query) with ``body``."""
        timestamp = str(int(self._clock().timestamp()))
        nonce = secrets.token_hex(16).upper()
        message = f"{method}\n{url}\n{timestamp}\n{nonce}\n{body}\n".encode()
        signature = rsa_sha256_sign(self._private_key, message)
        return (
            f'{SIGNATURE_SCHEME} mchid="{self._mchid}",nonce_str="{nonce}",'
            f'signature="{signature}",timestamp="{timestamp}",serial_no="{self._serial_no}"'
        )

    def _signature_verifies(self, headers: Mapping[str, str], body: bytes) -> bool:
        serial = headers.get("wechatpay-serial", "")
        key = self._platform_keys.get(serial)
        timestamp = headers.get("wechatpay-timestamp", "")
        nonce = headers.get("wechatpay-nonce", "")
        signature = headers.get("wechatpay-signature", "")
        if key is None or not timestamp or not nonce or not signature:
            return False
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
        return rsa_sha256_verify(key, message, signature)

    def call(
        self, method: str, path: str, payload: Mapping[str, object] | None = None
    ) -> WechatReply:
        """One signed API v3 call; its verified answer, or ``ProviderError``."""
        url = self._gateway + path
        split = urllib.parse.urlsplit(url)
        canonical = split.path + (f"?{split.query}" if split.query else "")
        body = (
            json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
            if payload is not None
            else ""
        )
        headers = {
            "Authorization": self.authorization(method, canonical, body),
            "Accept": "application/json",
            "User-Agent": "civicloud-pay/1",
        }
        if payload is not None:
            headers["Content-Type"] = "application/json"
        reply = http_exchange(
            self._urlopen,
            provider=self.name,
            method=method,
            url=url,
            headers=headers,
            body=body.encode("utf-8") if payload is not None else None,
            timeout=self._timeout,
        )
        return self._verified(reply, f"{method} {split.path}")

    def _verified(self, reply: HttpReply, what: str) -> WechatReply:
        if not self._signature_verifies(reply.headers, reply.body):
            raise ProviderError(
                "wechatpay: %(call)s answered HTTP %(status)s without a valid signature",
                params={"call": what, "status": reply.status},
            )
        if not reply.body:
            return WechatReply(status=reply.status, data={})
        try:
            data = json.loads(reply.body)
        except ValueError as error:
            raise ProviderError(
                "wechatpay: the answer to %(call)s is not JSON", params={"call": what}
            ) from error
        if not isinstance(data, dict):
            raise ProviderError(
                "wechatpay: the answer to %(call)s is not a JSON object", params={"call": what}
            )
        return WechatReply(status=reply.status, data=data)

    # --- checkout, query, refund -----------------------------------------------------------

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """``POST /v3/pay/transactions/native``: a ``code_url`` to show as a QR code."""
        if request.currency != "CNY":
            raise InvalidInput(
                "wechatpay takes CNY only, not %(currency)s", params={"currency": request.currency}
            )
        if request.amount_fen <= 0:
            raise InvalidInput("amount must be positive")
        reply = self.call(
            "POST",
            "/v3/pay/transactions/native",
            {
                "appid": self._appid,
                "mchid": self._mchid,
                "description": request.subject[:_DESCRIPTION_MAX] or request.trade_no,
                "out_trade_no": request.trade_no,
                "time_expire": request.expires_at.astimezone(BEIJING).isoformat(timespec="seconds"),
                "notify_url": request.notify_url,
                "amount": {"total": request.amount_fen, "currency": "CNY"},
            },
        )
        code_url = reply.data.get("code_url")
        if reply.status != 200 or not isinstance(code_url, str) or not code_url:
            raise ProviderError(
                "wechatpay: native order refused: %(reason)s", params={"reason": reply.describe()}
            )
        return Checkout(kind="qr", url=code_url)

    def query(self, trade_no: str) -> TradeQuery:
        """``GET /v3/pay/transactions/out-trade-no/{out_trade_no}``."""
        path = (
            f"/v3/pay/transactions/out-trade-no/{urllib.parse.quote(trade_no, safe='')}"
            f"?mchid={urllib.parse.quote(self._mchid, safe='')}"
        )
        reply = self.call("GET", path)
        if reply.status == 404 and reply.data.get("code") == "ORDER_NOT_EXIST":
            return TradeQuery(trade_no=trade_no, status="not_found")
        if reply.status != 200:
            raise ProviderError(
                "wechatpay: query refused: %(reason)s", params={"reason": reply.describe()}
            )
        if reply.data.get("out_trade_no") != trade_no or reply.data.get("mchid") not in (
            None,
            self._mchid,
        ):
            raise ProviderError("wechatpay: query answered for another trade")
        status = TRADE_STATES.get(str(reply.data.get("trade_state", "")))
        if status is None:
            raise ProviderError(
                "wechatpay: unknown trade_state %(status)s",
                params={"status": repr(reply.data.get("trade_state"))},
            )
        facts = self._transaction_facts(reply.data) if "amount" in reply.data else None
        if facts is None and status == "succeeded":
            raise ProviderError("wechatpay: query answer for a paid trade has no usable amount")
        transaction_id = reply.data.get("transaction_id")
        return TradeQuery(
            trade_no=trade_no,
            status=status,
            amount_fen=facts[0] if facts else None,
            provider_trade_no=str(transaction_id) if transaction_id else None,
            currency=facts[1] if facts else "CNY",
            mismatches=facts[2] if facts else (),
        )

    def refund(
        self, *, trade_no: str, refund_no: str, amount_fen: int, total_fen: int, reason: str
    ) -> RefundOutcome:
        """``POST /v3/refund/domestic/refunds`` (``out_refund_no`` = ``refund_no``: retries are safe)."""
        if not 0 < amount_fen <= total_fen:
            raise InvalidInput("refund amount must be positive and at most the amount paid")
        payload: dict[str, object] = {
            "out_trade_no": trade_no,
            "out_refund_no": refund_no,
            "amount": {"refund": amount_fen, "total": total_fen, "currency": "CNY"},
        }
        if reason:
            payload["reason"] = reason[:_REASON_MAX]
        reply = self.call("POST", "/v3/refund/domestic/refunds", payload)
        if reply.status == 200:
            status = REFUND_STATES.get(str(reply.data.get("status", "")))
            if status is None:
                raise ProviderError(
                    "wechatpay: unknown refund status %(status)s",
                    params={"status": repr(reply.data.get("status"))},
                )
            answered = reply.data.get("amount")
            if (
                reply.data.get("out_refund_no") != refund_no
                or reply.data.get("out_trade_no", trade_no) != trade_no
                or not isinstance(answered, dict)
                or answered.get("refund") != amount_fen
                or answered.get("currency", "CNY") != "CNY"
            ):
                # Not the refund we asked for: its fate is unknown until WeChat says otherwise.
                raise ProviderError("wechatpay: refund answered for another refund or amount")
            refund_id = reply.data.get("refund_id")
            return RefundOutcome(
                status=status,
                provider_refund_no=str(refund_id) if refund_id else None,
                detail=str(reply.data.get("status")),
            )
        if reply.status >= 500 or reply.data.get("code") in _RETRYABLE_CODES:
            raise ProviderError(
                "wechatpay: refund outcome unknown, retry: %(reason)s",
                params={"reason": reply.describe()},
            )
        return RefundOutcome(status="failed", detail=reply.describe())

    # --- callbacks -------------------------------------------------------------------------

    def parse_notification(self, *, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify, check the time of, and decrypt a payment or refund callback; raise if any step
        fails. ``REFUND.*`` events are refund callbacks, every other event a payment callback."""
        envelope, notify_id, resource = self._verified_callback(headers, body)
        event_type = envelope.get("event_type")
        if isinstance(event_type, str) and event_type.startswith("REFUND."):
            return self._refund_notification(envelope, notify_id, resource)
        transaction = resource
        trade_no = transaction.get("out_trade_no")
        status = TRADE_STATES.get(str(transaction.get("trade_state", "")))
        if not isinstance(trade_no, str) or not trade_no or status is None:
            raise InvalidNotification("wechatpay: not a transaction callback")
        if event_type == "TRANSACTION.SUCCESS" and transaction.get("trade_state") != "SUCCESS":
            raise InvalidNotification("wechatpay: callback's event_type and trade_state disagree")
        facts = self._transaction_facts(transaction)
        if facts is None:
            raise InvalidNotification("wechatpay: malformed amount")
        total, currency, mismatches = facts
        transaction_id = transaction.get("transaction_id")
        return Notification(
            notify_id=notify_id,
            trade_no=trade_no,
            status=status,
            amount_fen=total,
            provider_trade_no=str(transaction_id) if transaction_id else None,
            occurred_at=_iso_time(transaction.get("success_time") or envelope.get("create_time")),
            raw={"event_type": event_type, "transaction": transaction},
            currency=currency,
            mismatches=mismatches,
            foreign=not self._ours(transaction),
        )

    def _ours(self, record: Mapping[str, Any]) -> bool:
        """Whether a transaction is of this direct merchant: our ``mchid``, and none of a
        partner's (服务商) ``sp_mchid``/``sub_mchid``, whose money goes to another account."""
        return record.get("mchid") == self._mchid and not any(
            key in record for key in ("sp_mchid", "sub_mchid")
        )

    def _transaction_facts(
        self, transaction: Mapping[str, Any]
    ) -> tuple[int, str, tuple[str, ...]] | None:
        """A transaction's ``amount.total``, ``amount.currency`` (whole, as stated) and what in
        it is not ours or leaves the merchant less than the total (``appid``; a no-recharge
        coupon, ``promotion_detail`` of type ``NOCASH``, whose amount the merchant is not
        settled for: the installation grants no discounts); ``None`` when the amount is
        malformed. The payer's ``payer_total`` and ``payer_currency`` are not compared: a
        coupon WeChat Pay funds lowers what the payer pays, not what the merchant gets."""
        amount = transaction.get("amount")
        if not isinstance(amount, dict):
            return None
        total, currency = amount.get("total"), amount.get("currency", "CNY")
        if not _is_fen(total) or total <= 0 or not isinstance(currency, str):
            return None
        mismatches: list[str] = []
        if transaction.get("appid") != self._appid:
            mismatches.append("appid")
        promotions = transaction.get("promotion_detail")
        if isinstance(promotions, list) and any(
            isinstance(promotion, dict)
            and promotion.get("type") == "NOCASH"
            and promotion.get("amount") not in (None, 0)
            for promotion in promotions
        ):
            mismatches.append("promotion_detail")
        return total, currency, tuple(mismatches)

    def _refund_notification(
        self, envelope: Mapping[str, Any], notify_id: str, refund: Mapping[str, Any]
    ) -> Notification:
        """A refund callback's resource (``REFUND.SUCCESS``, ``.ABNORMAL``, ``.CLOSED``), checked.

        The resource names no app (``appid``), only the merchant; its ``refund_status`` must be
        the one the signed ``event_type`` announces.
        """
        event_type = envelope.get("event_type")
        if not self._ours(refund):
            raise InvalidNotification("wechatpay: refund callback is for another merchant")
        refund_status = refund.get("refund_status")
        if event_type not in REFUND_EVENTS or REFUND_EVENTS[event_type] != refund_status:
            raise InvalidNotification(
                "wechatpay: refund callback's event_type and refund_status disagree"
            )
        trade_no, refund_no = refund.get("out_trade_no"), refund.get("out_refund_no")
        if not isinstance(trade_no, str) or not trade_no:
            raise InvalidNotification("wechatpay: refund callback lacks out_trade_no")
        if not isinstance(refund_no, str) or not refund_no:
            raise InvalidNotification("wechatpay: refund callback lacks out_refund_no")
        stated = refund.get("amount")
        amount: Mapping[str, Any] = stated if isinstance(stated, dict) else {}
        refunded, total = amount.get("refund"), amount.get("total")
        if not _is_fen(refunded) or not _is_fen(total) or not 0 < refunded <= total:
            raise InvalidNotification("wechatpay: malformed amount.refund or amount.total")
        refund_id, transaction_id = refund.get("refund_id"), refund.get("transaction_id")
        return Notification(
            notify_id=notify_id,
            trade_no=trade_no,
            # SUCCESS: the money went back; ABNORMAL (the payer's account refused it, the
            # merchant keeps it) and CLOSED: it did not.
            status=REFUND_STATES[str(refund_status)],
            amount_fen=refunded,
            provider_trade_no=str(transaction_id) if transaction_id else None,
            occurred_at=_iso_time(refund.get("success_time") or envelope.get("create_time")),
            raw={"event_type": event_type, "refund": dict(refund)},
            kind="refund",
            refund_no=refund_no,
            provider_refund_no=str(refund_id) if refund_id else None,
            # ``payer_refund``/``payer_total`` are the payer's share (less with a coupon that
            # WeChat Pay funds): kept in ``raw``, compared with nothing.
            trade_total_fen=total,
        )

    def _verified_callback(
        self, headers: Mapping[str, str], body: bytes
    ) -> tuple[dict[str, Any], str, dict[str, Any]]:
        """The envelope, id and decrypted resource of a callback whose headers, time and
        signature verify; ``InvalidNotification`` otherwise (payments and refunds alike)."""
        lowered = lower_headers(headers)
        signature_type = lowered.get("wechatpay-signature-type", SIGNATURE_SCHEME)
        if signature_type != SIGNATURE_SCHEME:
            raise InvalidNotification("wechatpay: unsupported signature type")
        if lowered.get("wechatpay-serial", "") not in self._platform_keys:
            raise InvalidNotification("wechatpay: unknown platform key serial")
        try:
            sent_at = int(lowered.get("wechatpay-timestamp", ""))
        except ValueError as error:
            raise InvalidNotification("wechatpay: missing or malformed timestamp") from error
        if abs(self._clock().timestamp() - sent_at) > self._max_skew.total_seconds():
            raise InvalidNotification("wechatpay: timestamp too far from now (a replay?)")
        if not self._signature_verifies(lowered, body):
            raise InvalidNotification("wechatpay: callback signature does not verify")
        envelope = _json_object(body, "callback body")
        resource = envelope.get("resource")
        notify_id = envelope.get("id")
        if not isinstance(resource, dict) or not isinstance(notify_id, str) or not notify_id:
            raise InvalidNotification("wechatpay: callback lacks id or resource")
        return envelope, notify_id, _json_object(self._decrypt(resource), "decrypted resource")

    def _decrypt(self, resource: Mapping[str, Any]) -> bytes:
        if resource.get("algorithm") != "AEAD_AES_256_GCM":
            raise InvalidNotification("wechatpay: unsupported resource algorithm")
        nonce = resource.get("nonce")
        ciphertext = resource.get("ciphertext")
        associated = resource.get("associated_data") or ""
        if (
            not isinstance(nonce, str)
            or not isinstance(ciphertext, str)
            or not isinstance(associated, str)
        ):
            raise InvalidNotification("wechatpay: malformed resource")
        try:
            return self._aead.decrypt(
                nonce.encode("utf-8"),
                base64.b64decode(ciphertext, validate=True),
                associated.encode("utf-8"),
            )
        except (InvalidTag, binascii.Error, ValueError) as error:
            raise InvalidNotification("wechatpay: resource does not decrypt") from error

    def acknowledge(self, *, accepted: bool) -> Acknowledgement:
        """HTTP 204 with no body when taken; else a 400 ``{"code":"FAIL"}``, so that WeChat
        retries (it retries on any 4XX or 5XX; we never answer 5XX)."""
        if accepted:
            return Acknowledgement(status_code=204, media_type="application/json", body="")
        body = json.dumps({"code": "FAIL", "message": "失败"}, ensure_ascii=False)
        return Acknowledgement(status_code=400, media_type="application/json", body=body)

    # --- statements ------------------------------------------------------------------------

    def parse_statement(self, content: bytes, *, business_date: date) -> list[StatementLine]:
        """Read WeChat Pay's trade bill (``bill_type=ALL``, backtick-prefixed CSV)."""
        return parse_wechat_bill(content, business_date=business_date)


def _is_fen(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        parsed = json.loads(data)
    except ValueError as error:
        raise InvalidNotification(
            "wechatpay: %(what)s is not JSON", params={"what": what}
        ) from error
    if not isinstance(parsed, dict):
        raise InvalidNotification("wechatpay: %(what)s is not a JSON object", params={"what": what})
    return parsed


def _iso_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=BEIJING)


# --- the trade bill ------------------------------------------------------------------------

_WECHAT_REQUIRED = ("交易时间", "微信订单号", "商户订单号", "交易状态", "应结订单金额")


def _wechat_bill_line(record: Mapping[str, str], number: int) -> StatementLine | None:
    state = record["交易状态"]
    if state == "REFUND":
        kind: Literal["payment", "refund"] = "refund"
        amount_text = record.get("申请退款金额") or record.get("退款金额", "")
    elif state == "SUCCESS":
        kind = "payment"
        amount_text = record.get("订单金额") or record["应结订单金额"]
    else:
        return None  # REVOKED and other rows move no money
    try:
        occurred_at = beijing_time(record["交易时间"])
        amount_fen = abs(yuan_to_fen(amount_text, signed=True))
    except ValueError as error:
        raise InvalidInput(
            "wechatpay bill line %(line)s: the amount or the time cannot be read",
            params={"line": number},
        ) from error
    if not record["商户订单号"] or not record["微信订单号"]:
        raise InvalidInput(
            "wechatpay bill line %(line)s: missing trade numbers", params={"line": number}
        )
    return StatementLine(
        trade_no=record["商户订单号"],
        provider_trade_no=record["微信订单号"],
        kind=kind,
        amount_fen=amount_fen,
        occurred_at=occurred_at,
        # Our out_refund_no, on refund rows of a bill that has the column.
        refund_no=(record.get("商户退款单号") or None) if kind == "refund" else None,
    )


def parse_wechat_bill(content: bytes, *, business_date: date) -> list[StatementLine]:
    """Parse WeChat Pay's trade bill: a header row, backtick-prefixed rows, then the totals.

    ``business_date`` is not checked against the rows: a refund row carries the time of the
    trade it refunds, which may be an earlier day.
    """
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidInput("wechatpay bill: not UTF-8 text") from error
    header: list[str] | None = None
    lines: list[StatementLine] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip().removeprefix("`").strip() for cell in row]
        if not any(cells):
            continue
        if header is None:
            missing = [name for name in _WECHAT_REQUIRED if name not in cells]
            if missing:
                raise InvalidInput(
                    "wechatpay bill: missing columns %(columns)s",
                    params={"columns": ", ".join(missing)},
                )
            header = cells
        elif cells[0].startswith("总交易单数"):
            break  # the totals block closes the detail rows
        elif len(cells) < len(header):
            raise InvalidInput(
                "wechatpay bill line %(line)s: %(found)s cells, not %(count)s",
                params={"line": number, "found": len(cells), "count": len(header)},
            )
        else:
            line = _wechat_bill_line(dict(zip(header, cells, strict=False)), number)
            if line is not None:
                lines.append(line)
    if header is None:
        raise InvalidInput("wechatpay bill: no column header found")
    return lines
