"""Fixtures of the web shell's tests: a fresh app per test module on a temporary SQLite directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.functional.web.helpers import HTML, Browser, World, cheap_settings, seed_world

from civicloud.app import build_services, create_app, prepare_database
from civicloud.core.services import Services


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """The module's database and services, migrated."""
    built = build_services(cheap_settings(tmp_path_factory.mktemp("civicloud-web")))
    prepare_database(built)
    yield built
    built.db.dispose()


@pytest.fixture(scope="module")
def world(services: Services) -> World:
    """The seeded tenant tree and users."""
    return seed_world(services)


@pytest.fixture(scope="module")
def app(services: Services, world: World) -> FastAPI:
    """The application over the module's database."""
    return create_app(services=services)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A browser-like client over HTTPS (so that Secure cookies flow), with fresh cookies."""
    with TestClient(app, base_url="https://testserver", headers=HTML) as browser:
        yield browser


@pytest.fixture
def browser(client: TestClient) -> Browser:
    """The client, with form and sign-in helpers."""
    return Browser(client)
