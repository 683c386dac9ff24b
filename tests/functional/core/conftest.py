"""The API over each database: the app, a client, and worlds of tenants to call it about.

Everything the fixtures create is committed (the app runs its own transactions), under a root
tenant made for the test alone; see the top-level conftest for why that isolates tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from tests.factories.core import SiblingWorld, make_sibling_world

from civicloud.app import create_app
from civicloud.core.services import Services

BASE_URL = "https://testserver"


@pytest.fixture(scope="session")
def api_app(core_services: Services) -> FastAPI:
    """The civicloud application over the shared database of the current backend."""
    return create_app(services=core_services)


@pytest.fixture
def client(api_app: FastAPI) -> Iterator[TestClient]:
    """A fresh HTTP client (no cookies) for the application.

    Not entered as a context manager: the lifespan would dispose the shared engine's pool.
    """
    test_client = TestClient(api_app, base_url=BASE_URL)
    yield test_client
    test_client.close()


@pytest.fixture
def committed(core_services: Services) -> Callable[[], AbstractContextManager[Session]]:
    """``with committed() as session:`` one committed unit of work, to set the scene."""
    return core_services.db.unit_of_work


@pytest.fixture
def world(core_services: Services) -> SiblingWorld:
    """Two sibling provinces A and B under a fresh root, with admins, users, keys and roles."""
    with core_services.db.unit_of_work() as session:
        return make_sibling_world(session, core_services.passwords)
