"""Constants and builders the provider tests share (the fixtures are in ``conftest.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from tests.fakes.pay_gateways import RsaPair

from civicloud.pay.backends import CheckoutRequest
from civicloud.pay.settings import AlipaySettings, WechatPaySettings

#: 2026-11-26 10:00:06 in Beijing: the tests' "now".
NOW = datetime(2026, 11, 26, 2, 0, 6, tzinfo=UTC)
APP_ID = "2021000123456789"
SELLER_ID = "2088102177846880"
MCHID = "1900000109"
APPID = "wxd678efh567hg6787"
API_V3_KEY = "a7cde1ZJB1kG2e7VfTs3jQzG3M8bmkHv"
MERCHANT_SERIAL = "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C"
PLATFORM_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
PUBLIC_KEY_ID = "PUB_KEY_ID_0114232134912410000000000000"


@dataclass(frozen=True)
class Keys:
    """Every test key pair, and the directory holding their PEM files."""

    alipay_app: RsaPair
    alipay: RsaPair
    wechat_merchant: RsaPair
    wechat_platform: RsaPair
    wechat_public: RsaPair
    stranger: RsaPair
    directory: Path


def self_signed(pair: RsaPair, serial_hex: str) -> bytes:
    """A self-signed certificate with the given serial number, as a platform certificate."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA test")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pair.public)
        .serial_number(int(serial_hex, 16))
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(NOW + timedelta(days=5 * 365))
        .sign(pair.private, hashes.SHA256())
    )
    return certificate.public_bytes(Encoding.PEM)


def make_keys(directory: Path) -> Keys:
    """Six fresh 2048-bit key pairs, their PEM files written under ``directory``."""
    pairs = [RsaPair.generate() for _ in range(6)]
    found = Keys(*pairs, directory=directory)
    (directory / "alipay_app_private.pem").write_text(found.alipay_app.pkcs1_pem)
    (directory / "alipay_public.pem").write_text(found.alipay.public_pem)
    (directory / "apiclient_key.pem").write_text(found.wechat_merchant.pkcs8_pem)
    platform = directory / "wechatpay_platform"
    platform.mkdir()
    (platform / f"{PLATFORM_SERIAL}.pem").write_bytes(
        self_signed(found.wechat_platform, PLATFORM_SERIAL)
    )
    (platform / f"{PUBLIC_KEY_ID}.pem").write_text(found.wechat_public.public_pem)
    return found


def alipay_settings(
    keys: Keys, gateway: str = "https://openapi.alipay.com/gateway.do"
) -> AlipaySettings:
    """Alipay settings over the test keys."""
    return AlipaySettings(
        app_id=APP_ID,
        seller_id=SELLER_ID,
        gateway=gateway,
        private_key_file=keys.directory / "alipay_app_private.pem",
        alipay_public_key_file=keys.directory / "alipay_public.pem",
    )


def wechat_settings(
    keys: Keys, gateway: str = "https://api.mch.weixin.qq.com"
) -> WechatPaySettings:
    """WeChat Pay settings over the test keys."""
    return WechatPaySettings(
        mchid=MCHID,
        appid=APPID,
        api_v3_key=API_V3_KEY,
        merchant_serial_no=MERCHANT_SERIAL,
        gateway=gateway,
        private_key_file=keys.directory / "apiclient_key.pem",
        platform_keys_dir=keys.directory / "wechatpay_platform",
    )


def checkout_request(trade_no: str = "P20261126000001", amount_fen: int = 12_34) -> CheckoutRequest:
    """A Dalian water bill payment."""
    return CheckoutRequest(
        trade_no=trade_no,
        amount_fen=amount_fen,
        currency="CNY",
        subject="大连市自来水费 2026年10月",
        return_url="https://pay.dalian.example.cn/pay/return/" + trade_no,
        notify_url="https://pay.dalian.example.cn/api/v1/pay/notify/provider",
        expires_at=NOW + timedelta(minutes=15),
    )
