"""Fake Alipay and WeChat Pay gateways on 127.0.0.1, and the providers' side of notifications.

Alipay and WeChat cannot be reached from development and CI machines, so tests play their
part with test keys, signing exactly as the providers do and using the official SDKs' own
primitives wherever they have one (``alipay.aop.api.util.SignatureUtils`` for Alipay,
``wechatpayv3.utils`` for WeChat). Each gateway is a tiny ``http.server`` in a thread on the
loopback interface; it checks our request signatures with the SDK and signs its answers.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from alipay.aop.api.util.SignatureUtils import sign_with_rsa, sign_with_rsa2, verify_with_rsa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from wechatpayv3.utils import rsa_sign, rsa_verify

Handler = Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]

#: An opener that never goes through a proxy: the fake gateways live on 127.0.0.1.
loopback_urlopen = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


# --- keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RsaPair:
    """A test RSA key pair, with the PEM spellings the SDKs and our settings want."""

    private: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> RsaPair:
        """A fresh 2048-bit key pair (about 50 ms: make them once per test session)."""
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @property
    def public(self) -> rsa.RSAPublicKey:
        """The public half."""
        return self.private.public_key()

    @property
    def pkcs1_pem(self) -> str:
        """``-----BEGIN RSA PRIVATE KEY-----``: what the Alipay SDK signs with."""
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode()

    @property
    def pkcs8_pem(self) -> str:
        """``-----BEGIN PRIVATE KEY-----``: WeChat's ``apiclient_key.pem`` format."""
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    @property
    def public_pem(self) -> str:
        """``-----BEGIN PUBLIC KEY-----``."""
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


# --- a loopback HTTP server ----------------------------------------------------------------


class LoopbackServer:
    """``handle(method, path, headers, body) -> (status, headers, body)`` served on 127.0.0.1."""

    def __init__(self, handle: Handler) -> None:
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, reply_headers, reply = outer.handle(self.command, self.path, headers, body)
                self.send_response(status)
                for name, value in reply_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = _serve  # noqa: N815  (http.server's naming)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read the gateway's state, not its log."""

        self.handle = handle
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @contextmanager
    def running(self) -> Iterator[LoopbackServer]:
        """Serve in a thread for the duration of the ``with`` block."""
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)


# --- Alipay --------------------------------------------------------------------------------


def alipay_sign_content(params: Mapping[str, str], exclude: tuple[str, ...]) -> str:
    """The open platform's string to sign: sorted non-empty ``k=v`` joined by ``&``."""
    return "&".join(
        f"{key}={value}" for key, value in sorted(params.items()) if key not in exclude and value
    )


def alipay_notification(
    params: Mapping[str, str],
    alipay_key: RsaPair,
    *,
    sign_type: str = "RSA2",
    algorithm: str = "RSA2",
) -> bytes:
    """A notification body as Alipay posts it, signed by the SDK in ``params['charset']``.

    ``algorithm`` "RSA" signs with SHA-1 (the SDK's ``sign_with_rsa``), "RSA2" with SHA-256.
    """
    charset = params.get("charset", "utf-8")
    content = alipay_sign_content(params, exclude=("sign", "sign_type"))
    signer = sign_with_rsa2 if algorithm == "RSA2" else sign_with_rsa
    signature = signer(alipay_key.pkcs1_pem, content, charset)
    signed = {**params, "sign_type": sign_type, "sign": signature}
    return urllib.parse.urlencode(signed, encoding=charset).encode("ascii")


def _sdk_verifies(public_pem: str, content: bytes, sign: str) -> bool:
    # The SDK raises on a bad signature instead of answering False.
    try:
        return verify_with_rsa(public_pem, content, sign)
    except Exception:
        return False


@dataclass
class FakeAlipayGateway:
    """The open platform gateway: checks RSA2 request signatures, answers signed like Alipay."""

    app_id: str
    seller_id: str
    app_public_pem: str
    alipay_key: RsaPair
    #: ``normal``, ``bad_sign``, ``unsigned`` or ``http_error``: how the next answers misbehave.
    mode: str = "normal"
    trades: dict[str, dict[str, str]] = field(default_factory=dict)
    refunds: dict[tuple[str, str], str] = field(default_factory=dict)
    calls: list[dict[str, str]] = field(default_factory=list)
    server: LoopbackServer = field(init=False)

    def __post_init__(self) -> None:
        self.server = LoopbackServer(self._handle)

    @property
    def url(self) -> str:
        """The gateway URL to put in ``AlipaySettings.gateway``."""
        return self.server.base_url + "/gateway.do"

    def pay(self, out_trade_no: str, status: str = "TRADE_SUCCESS") -> None:
        """The citizen pays (or the trade changes state) at Alipay."""
        self.trades[out_trade_no]["trade_status"] = status

    def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if self.mode == "http_error":
            return 502, {"Content-Type": "text/html"}, b"<html>bad gateway</html>"
        params = dict(urllib.parse.parse_qsl(body.decode("ascii"), keep_blank_values=True))
        self.calls.append(params)
        api = params.get("method", "")
        node_name = api.replace(".", "_") + "_response"
        content = alipay_sign_content(params, exclude=("sign",)).encode(
            params.get("charset", "utf-8")
        )
        if (
            method != "POST"
            or params.get("sign_type") != "RSA2"
            or params.get("app_id") != self.app_id
            or not _sdk_verifies(self.app_public_pem, content, params.get("sign", ""))
        ):
            node = {
                "code": "40002",
                "msg": "Invalid Arguments",
                "sub_code": "isv.invalid-signature",
            }
            return self._reply(node_name, node, signed=False)
        biz = json.loads(params["biz_content"])
        return self._reply(node_name, self._business(api, biz, params))

    def _business(self, api: str, biz: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        ok = {"code": "10000", "msg": "Success"}
        not_exist = {
            "code": "40004",
            "msg": "Business Failed",
            "sub_code": "ACQ.TRADE_NOT_EXIST",
            "sub_msg": "交易不存在",
        }
        out_trade_no = biz.get("out_trade_no", "")
        trade = self.trades.get(out_trade_no)
        if api == "alipay.trade.precreate":
            self.trades[out_trade_no] = {
                "out_trade_no": out_trade_no,
                "trade_no": "2026112622001" + secrets.token_hex(8),
                "total_amount": biz["total_amount"],
                "trade_status": "WAIT_BUYER_PAY",
                "notify_url": params.get("notify_url", ""),
            }
            return ok | {
                "out_trade_no": out_trade_no,
                "qr_code": "https://qr.alipay.com/bax0" + out_trade_no,
            }
        if trade is None:
            return not_exist
        if api == "alipay.trade.query":
            keys = ("out_trade_no", "trade_no", "total_amount", "trade_status")
            # What a test made the trade take otherwise (another currency, a smaller receipt).
            stated = ("trans_currency", "settle_currency", "receipt_amount", "buyer_pay_amount")
            return (
                ok
                | {key: trade[key] for key in keys}
                | {key: trade[key] for key in stated if key in trade}
                | {"buyer_logon_id": "159****5620"}
            )
        if api == "alipay.trade.refund":
            return self._refund(trade, biz, ok)
        if api == "alipay.trade.fastpay.refund.query":
            done = self.refunds.get((out_trade_no, biz["out_request_no"]))
            found = {"refund_status": "REFUND_SUCCESS", "refund_amount": done} if done else {}
            return ok | {"out_trade_no": out_trade_no} | found
        return {"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-method"}

    def _refund(
        self, trade: dict[str, str], biz: dict[str, Any], ok: dict[str, str]
    ) -> dict[str, Any]:
        key = (trade["out_trade_no"], biz["out_request_no"])
        if key in self.refunds:
            return ok | {"fund_change": "N", "refund_fee": self.refunds[key]}
        if trade["trade_status"] not in ("TRADE_SUCCESS",):
            return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_STATUS_ERROR"}
        refunded = sum(Decimal(amount) for (no, _), amount in self.refunds.items() if no == key[0])
        if refunded + Decimal(biz["refund_amount"]) > Decimal(trade["total_amount"]):
            return {
                "code": "40004",
                "msg": "Business Failed",
                "sub_code": "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
                "sub_msg": "退款金额超限",
            }
        self.refunds[key] = biz["refund_amount"]
        return ok | {
            "fund_change": "Y",
            "refund_fee": biz["refund_amount"],
            "trade_no": trade["trade_no"],
        }

    def _reply(
        self, node_name: str, node: Mapping[str, Any], *, signed: bool = True
    ) -> tuple[int, dict[str, str], bytes]:
        # Alipay escapes "/" in its answers; the signature covers the node's text exactly so.
        node_text = json.dumps(node, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/")
        members = [f'"{node_name}":{node_text}']
        if signed and self.mode != "unsigned":
            signed_text = node_text + (" " if self.mode == "bad_sign" else "")
            members.append(
                f'"sign":"{sign_with_rsa2(self.alipay_key.pkcs1_pem, signed_text, "utf-8")}"'
            )
        body = "{" + ",".join(members) + "}"
        return 200, {"Content-Type": "text/html;charset=utf-8"}, body.encode("utf-8")


# --- WeChat Pay ----------------------------------------------------------------------------


def wechat_encrypt(
    plaintext: str,
    api_v3_key: str,
    *,
    associated_data: str = "transaction",
    original_type: str = "transaction",
) -> dict[str, str]:
    """A callback ``resource`` as the platform makes it: AEAD_AES_256_GCM with the APIv3 key."""
    nonce = secrets.token_hex(6)
    ciphertext = AESGCM(api_v3_key.encode()).encrypt(
        nonce.encode(), plaintext.encode(), associated_data.encode()
    )
    return {
        "original_type": original_type,
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(ciphertext).decode(),
        "associated_data": associated_data,
        "nonce": nonce,
    }


def wechat_signed_headers(
    body: bytes, platform_key: RsaPair, serial: str, timestamp: int
) -> dict[str, str]:
    """The ``Wechatpay-*`` headers, signed with the SDK's ``rsa_sign`` by the platform key."""
    nonce = secrets.token_hex(16)
    message = f"{timestamp}\n{nonce}\n{body.decode('utf-8')}\n"
    return {
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature": rsa_sign(platform_key.private, message),
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }


def wechat_callback(
    transaction: Mapping[str, Any],
    *,
    api_v3_key: str,
    platform_key: RsaPair,
    serial: str,
    timestamp: int,
    notify_id: str = "EV-2018022511223320873",
) -> tuple[dict[str, str], bytes]:
    """A payment callback as WeChat Pay posts it: (headers, body)."""
    resource = wechat_encrypt(json.dumps(transaction, ensure_ascii=False), api_v3_key)
    envelope = {
        "id": notify_id,
        "create_time": "2026-11-26T10:00:06+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": resource,
    }
    body = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
    return wechat_signed_headers(body, platform_key, serial, timestamp), body


#: Each refund callback's event type, with the summary WeChat Pay puts in its envelope.
WECHAT_REFUND_EVENTS = {
    "REFUND.SUCCESS": "退款成功",
    "REFUND.ABNORMAL": "退款异常",
    "REFUND.CLOSED": "退款关闭",
}


def wechat_refund_resource(
    *,
    mchid: str,
    out_trade_no: str,
    out_refund_no: str,
    refund_fen: int,
    total_fen: int,
    refund_status: str = "SUCCESS",
    transaction_id: str = "4200001234202611261234567890",
    refund_id: str = "50300906782026112612345678901",
) -> dict[str, Any]:
    """The decrypted resource of a refund callback, with the fields WeChat Pay documents."""
    return {
        "mchid": mchid,
        "transaction_id": transaction_id,
        "out_trade_no": out_trade_no,
        "refund_id": refund_id,
        "out_refund_no": out_refund_no,
        "refund_status": refund_status,
        "success_time": "2026-11-26T10:05:00+08:00",
        "user_received_account": "招商银行信用卡0403",
        "amount": {
            "total": total_fen,
            "refund": refund_fen,
            "payer_total": total_fen,
            "payer_refund": refund_fen,
        },
    }


def wechat_refund_callback(
    refund: Mapping[str, Any],
    *,
    api_v3_key: str,
    platform_key: RsaPair,
    serial: str,
    timestamp: int,
    event_type: str = "REFUND.SUCCESS",
    notify_id: str = "EV-2018022511223320874",
) -> tuple[dict[str, str], bytes]:
    """A refund callback as WeChat Pay posts it: (headers, body), its resource encrypted with
    ``associated_data`` ``refund`` and the body signed with the SDK's ``rsa_sign``."""
    resource = wechat_encrypt(
        json.dumps(refund, ensure_ascii=False),
        api_v3_key,
        associated_data="refund",
        original_type="refund",
    )
    envelope = {
        "id": notify_id,
        "create_time": "2026-11-26T10:05:01+08:00",
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": WECHAT_REFUND_EVENTS.get(event_type, "退款"),
        "resource": resource,
    }
    body = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
    return wechat_signed_headers(body, platform_key, serial, timestamp), body


def parse_wechat_authorization(header: str) -> dict[str, str]:
    """The fields of a ``WECHATPAY2-SHA256-RSA2048 k="v",…`` header (``scheme`` included)."""
    scheme, _, rest = header.partition(" ")
    fields = {"scheme": scheme}
    for part in rest.split(","):
        key, _, value = part.partition("=")
        fields[key.strip()] = value.strip().strip('"')
    return fields


def wechat_authorization_verifies(
    header: str, method: str, url: str, body: str, merchant_public: rsa.RSAPublicKey
) -> bool:
    """Check our ``Authorization`` with the SDK's ``rsa_verify``.

    ``rsa_verify`` signs ``a\\nb\\nc\\n``; passing METHOD, URL and ``TIMESTAMP\\nNONCE\\nBODY``
    as its three parts rebuilds the request's ``METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n``.
    """
    fields = parse_wechat_authorization(header)
    rest = f"{fields.get('timestamp', '')}\n{fields.get('nonce_str', '')}\n{body}"
    return fields["scheme"] == "WECHATPAY2-SHA256-RSA2048" and rsa_verify(
        method, url, rest, fields.get("signature", ""), merchant_public
    )


@dataclass
class FakeWechatGateway:
    """The API v3 gateway: checks our Authorization with the SDK, answers signed like WeChat."""

    mchid: str
    appid: str
    merchant_serial: str
    merchant_public: rsa.RSAPublicKey
    platform_key: RsaPair
    platform_serial: str
    clock: Callable[[], int]
    #: ``normal``, ``bad_sign``, ``unsigned`` or ``unknown_serial``.
    mode: str = "normal"
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    server: LoopbackServer = field(init=False)

    def __post_init__(self) -> None:
        self.server = LoopbackServer(self._handle)

    @property
    def url(self) -> str:
        """The gateway URL to put in ``WechatPaySettings.gateway``."""
        return self.server.base_url

    def pay(self, out_trade_no: str) -> None:
        """The citizen pays at WeChat."""
        order = self.orders[out_trade_no]
        order["trade_state"] = "SUCCESS"
        order["transaction_id"] = "42000012342026112" + secrets.token_hex(6)

    def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        self.calls.append((method, path, headers, body))
        fields = parse_wechat_authorization(headers.get("authorization", ""))
        if (
            fields.get("mchid") != self.mchid
            or fields.get("serial_no") != self.merchant_serial
            or not wechat_authorization_verifies(
                headers.get("authorization", ""), method, path, body.decode(), self.merchant_public
            )
        ):
            return self._reply(401, {"code": "SIGN_ERROR", "message": "签名错误"}, signed=False)
        status, answer = self._business(method, path, json.loads(body) if body else {})
        return self._reply(status, answer)

    def _business(
        self, method: str, path: str, payload: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        split = urllib.parse.urlsplit(path)
        if method == "POST" and split.path == "/v3/pay/transactions/native":
            out_trade_no = payload["out_trade_no"]
            self.orders[out_trade_no] = {
                "appid": payload["appid"],
                "mchid": payload["mchid"],
                "out_trade_no": out_trade_no,
                "trade_state": "NOTPAY",
                "trade_state_desc": "未支付",
                "amount": {"total": payload["amount"]["total"], "currency": "CNY"},
            }
            return 200, {"code_url": "weixin://wxpay/bizpayurl?pr=" + secrets.token_hex(4)}
        prefix = "/v3/pay/transactions/out-trade-no/"
        if method == "GET" and split.path.startswith(prefix):
            order = self.orders.get(urllib.parse.unquote(split.path.removeprefix(prefix)))
            if order is None:
                return 404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}
            return 200, order
        if method == "POST" and split.path == "/v3/refund/domestic/refunds":
            return self._refund(payload)
        return 404, {"code": "NOT_FOUND", "message": "no such API"}

    def _refund(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if payload["out_refund_no"] in self.refunds:
            return 200, self.refunds[payload["out_refund_no"]]
        order = self.orders.get(payload["out_trade_no"])
        if order is None or order["trade_state"] not in ("SUCCESS", "REFUND"):
            return 404, {"code": "RESOURCE_NOT_EXISTS", "message": "订单不存在"}
        refunded = sum(
            refund["amount"]["refund"]
            for refund in self.refunds.values()
            if refund["out_trade_no"] == payload["out_trade_no"]
        )
        amount = payload["amount"]
        if (
            amount["total"] != order["amount"]["total"]
            or refunded + amount["refund"] > amount["total"]
        ):
            return 400, {"code": "INVALID_REQUEST", "message": "退款金额超过订单可退金额"}
        refund = {
            "refund_id": "50000000382019052709732678" + secrets.token_hex(2),
            "out_refund_no": payload["out_refund_no"],
            "out_trade_no": payload["out_trade_no"],
            "transaction_id": order["transaction_id"],
            "status": "PROCESSING",
            "amount": {"refund": amount["refund"], "total": amount["total"], "currency": "CNY"},
        }
        self.refunds[payload["out_refund_no"]] = refund
        order["trade_state"] = "REFUND"
        return 200, refund

    def _reply(
        self, status: int, answer: Mapping[str, Any], *, signed: bool = True
    ) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps(answer, ensure_ascii=False).encode("utf-8")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Request-ID": secrets.token_hex(8),
        }
        if signed and self.mode != "unsigned":
            serial = "UNKNOWN0000" if self.mode == "unknown_serial" else self.platform_serial
            signed_body = body + (b" " if self.mode == "bad_sign" else b"")
            headers |= wechat_signed_headers(signed_body, self.platform_key, serial, self.clock())
        return status, headers, body
