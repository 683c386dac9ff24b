"""The application with Pay, over the shared database of the current backend."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.factories.pay import unlimited_payments
from tests.fakes.pay_gateways import FakeWechatGateway, loopback_urlopen
from tests.unit.pay.providers.helpers import (
    APPID,
    MCHID,
    MERCHANT_SERIAL,
    PLATFORM_SERIAL,
    Keys,
    make_keys,
    wechat_settings,
)

from civicloud.app import create_app
from civicloud.core.services import Services
from civicloud.pay.payments import PayContext
from civicloud.pay.providers import SandboxProvider, WechatPayProvider

BASE_URL = "https://testserver"


@pytest.fixture(scope="session")
def core_services(fresh_services: Callable[[], Services]) -> Services:
    """A database of Pay's functional tests' own: they check the whole ledger, which rows that
    other tests commit to the shared database (a payment made by hand, never posted) would upset."""
    return fresh_services()


@pytest.fixture(scope="session")
def pay_app(core_services: Services) -> FastAPI:
    """The civicloud application (Pay included) over the shared database."""
    app = create_app(services=core_services)
    # Every test's client is one address ("testclient"): the per-client limit on starting
    # payments is the subject of its own tests, with an application of their own.
    unlimited_payments(app)
    return app


@pytest.fixture
def client(pay_app: FastAPI) -> Iterator[TestClient]:
    """A fresh HTTP client; not entered, so the shared engine's pool stays open."""
    test_client = TestClient(pay_app, base_url=BASE_URL)
    yield test_client
    test_client.close()


@pytest.fixture
def context(pay_app: FastAPI) -> PayContext:
    """Pay's providers, signer and settings as the application built them."""
    found: PayContext = pay_app.state.services.context("pay", PayContext)
    return found


@pytest.fixture
def sandbox(context: PayContext) -> SandboxProvider:
    """The built-in sandbox provider (it delivers its notifications in-process)."""
    provider = context.providers["sandbox"]
    assert isinstance(provider, SandboxProvider)
    return provider


# --- WeChat Pay against a fake gateway on loopback (the notification and refund tests) -------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """The merchant's and the platform's test keys, with their PEM files on disk."""
    return make_keys(tmp_path_factory.mktemp("wechat-keys"))


@pytest.fixture
def gateway(keys: Keys) -> Iterator[FakeWechatGateway]:
    """WeChat Pay's API v3 gateway, faked on 127.0.0.1 for one test."""
    fake = FakeWechatGateway(
        mchid=MCHID,
        appid=APPID,
        merchant_serial=MERCHANT_SERIAL,
        merchant_public=keys.wechat_merchant.public,
        platform_key=keys.wechat_platform,
        platform_serial=PLATFORM_SERIAL,
        clock=lambda: int(time.time()),
    )
    with fake.server.running():
        yield fake


@pytest.fixture
def wechatpay(
    context: PayContext, keys: Keys, gateway: FakeWechatGateway, monkeypatch: pytest.MonkeyPatch
) -> WechatPayProvider:
    """The application's WeChat Pay adapter for this test, pointed at the fake gateway."""
    provider = WechatPayProvider(wechat_settings(keys, gateway.url), urlopen=loopback_urlopen)
    monkeypatch.setitem(context.providers, "wechatpay", provider)
    return provider
