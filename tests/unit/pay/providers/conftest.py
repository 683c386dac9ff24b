"""Fixtures for the provider adapter tests: keys (made once per session) and fake gateways."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.fakes.pay_gateways import FakeAlipayGateway, FakeWechatGateway, loopback_urlopen
from tests.unit.pay.providers.helpers import (
    APP_ID,
    APPID,
    MCHID,
    MERCHANT_SERIAL,
    NOW,
    PLATFORM_SERIAL,
    SELLER_ID,
    Keys,
    alipay_settings,
    make_keys,
    wechat_settings,
)

from civicloud.pay.providers import AlipayProvider, WechatPayProvider


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """Six 2048-bit key pairs, made once, with their PEM files on disk."""
    return make_keys(tmp_path_factory.mktemp("provider-keys"))


@pytest.fixture
def alipay_gateway(keys: Keys) -> Iterator[FakeAlipayGateway]:
    """A fake Alipay gateway serving on 127.0.0.1 for one test."""
    gateway = FakeAlipayGateway(
        app_id=APP_ID,
        seller_id=SELLER_ID,
        app_public_pem=keys.alipay_app.public_pem,
        alipay_key=keys.alipay,
    )
    with gateway.server.running():
        yield gateway


@pytest.fixture
def wechat_gateway(keys: Keys) -> Iterator[FakeWechatGateway]:
    """A fake WeChat Pay gateway serving on 127.0.0.1 for one test."""
    gateway = FakeWechatGateway(
        mchid=MCHID,
        appid=APPID,
        merchant_serial=MERCHANT_SERIAL,
        merchant_public=keys.wechat_merchant.public,
        platform_key=keys.wechat_platform,
        platform_serial=PLATFORM_SERIAL,
        clock=lambda: int(NOW.timestamp()),
    )
    with gateway.server.running():
        yield gateway


@pytest.fixture
def alipay(keys: Keys, alipay_gateway: FakeAlipayGateway) -> AlipayProvider:
    """The Alipay adapter (QR checkout) pointed at the fake gateway."""
    return AlipayProvider(
        alipay_settings(keys, alipay_gateway.url),
        checkout="qr",
        urlopen=loopback_urlopen,
        clock=lambda: NOW,
    )


@pytest.fixture
def wechatpay(keys: Keys, wechat_gateway: FakeWechatGateway) -> WechatPayProvider:
    """The WeChat Pay adapter pointed at the fake gateway, its clock at ``NOW``."""
    return WechatPayProvider(
        wechat_settings(keys, wechat_gateway.url), urlopen=loopback_urlopen, clock=lambda: NOW
    )
