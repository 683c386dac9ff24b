"""The tests of outside S3 clients (awscli, rclone, the MinIO SDK, boto3's CRT) run against one
SQLite installation of their own, serving the S3 port over HTTP and TLS.

They prove what the clients send and accept, which does not depend on the database: the S3
port's rules are tested on both databases by the boto3 suite (``../test_s3_*.py``). These
fixtures take the place of the parent conftest's in this directory, so each client test runs
once, not once per database.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.conftest import make_settings
from tests.functional.store.conftest import Port, serve

from civicloud.app import build_services, prepare_database
from civicloud.core.services import Services
from civicloud.store.context import StoreContext


@pytest.fixture(scope="session")
def core_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """An installation of the module's own, on SQLite."""
    services = build_services(make_settings(tmp_path_factory.mktemp("clients")))
    prepare_database(services)
    yield services
    services.db.dispose()


@pytest.fixture(scope="session")
def store_context(core_services: Services) -> StoreContext:
    """Store's context over it."""
    return core_services.context("store", StoreContext)


@pytest.fixture(scope="session")
def s3_http(core_services: Services, store_context: StoreContext) -> Iterator[Port]:
    """Its S3 port over plain HTTP."""
    yield from serve(core_services, store_context, tls=False)


@pytest.fixture(scope="session")
def s3_tls(core_services: Services, store_context: StoreContext) -> Iterator[Port]:
    """Its S3 port over TLS."""
    yield from serve(core_services, store_context, tls=True)
