"""The application with Pay, over the shared database of the current backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from civicloud.app import create_app
from civicloud.core.ratelimit import RateLimiter
from civicloud.core.services import Services
from civicloud.pay.payments import PayContext
from civicloud.pay.providers import SandboxProvider

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
    app.state.pay_payment_limiter = RateLimiter(1_000_000)
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
    found: PayContext = pay_app.state.pay
    return found


@pytest.fixture
def sandbox(context: PayContext) -> SandboxProvider:
    """The built-in sandbox provider (it delivers its notifications in-process)."""
    provider = context.providers["sandbox"]
    assert isinstance(provider, SandboxProvider)
    return provider
