"""The S3 port, served for real on loopback (over HTTP and over TLS with a self-signed
certificate made in the data directory) on the run's shared database, and clients for it.

Each test builds its own tenant and users (``tests.factories``) and its own buckets with unique
names, so tests share the servers without seeing each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from sqlalchemy.orm import Session
from tests.factories.core import make_tenant
from tests.factories.store import S3Member, make_s3_member
from tests.factories.store_upstream import upstream_endpoint, upstream_server  # noqa: F401

from civicloud.core.services import Services
from civicloud.core.tenants.models import Tenant
from civicloud.store.context import StoreContext
from civicloud.store.s3.listener import RunningS3, tls_context
from civicloud.store.settings import StoreSettings


@dataclass(frozen=True)
class Port:
    """A running S3 port: its endpoint, and the CA file that verifies it (TLS)."""

    endpoint: str
    ca_file: str | None
    context: StoreContext
    services: Services


@pytest.fixture(scope="session")
def store_context(core_services: Services) -> StoreContext:
    """Store's context over the shared database."""
    return core_services.context("store", StoreContext)


def serve(services: Services, context: StoreContext, tls: bool) -> Iterator[Port]:
    """Serve the S3 port of ``context`` (over TLS with a self-signed certificate) until the
    generator is closed."""
    settings = StoreSettings(tls="self-signed" if tls else "off")
    running = RunningS3(
        context, host="127.0.0.1", port=0, tls=tls_context(settings, services.settings.data_dir)
    )
    ca = str(services.settings.data_dir / "store" / "tls" / "s3-cert.pem") if tls else None
    yield Port(
        running.address.replace("127.0.0.1", "localhost") if tls else running.address,
        ca,
        context,
        services,
    )
    running.server.shutdown()
    running.server.server_close()
    context.log.flush()


@pytest.fixture(scope="session")
def s3_http(core_services: Services, store_context: StoreContext) -> Iterator[Port]:
    """The S3 port over plain HTTP."""
    yield from serve(core_services, store_context, tls=False)


@pytest.fixture(scope="session")
def s3_tls(core_services: Services, store_context: StoreContext) -> Iterator[Port]:
    """The S3 port over TLS (botocore sends checksum trailers only over HTTPS)."""
    yield from serve(core_services, store_context, tls=True)


@pytest.fixture
def tenant(core_services: Services) -> Tenant:
    """A fresh city tenant (region cn-beijing) of its own."""
    with core_services.db.unit_of_work() as session:
        root = make_tenant(session)
        return make_tenant(session, parent=root)


@pytest.fixture
def member_factory(core_services: Services, store_context: StoreContext) -> Callable[..., S3Member]:
    """``member_factory(tenant, role=..., **scope)``: a user with an access key."""

    def make(tenant: Tenant, role: str | None = "store_admin", **scope: Any) -> S3Member:
        with core_services.db.unit_of_work() as session:
            return make_s3_member(
                session, core_services.passwords, store_context, tenant=tenant, role=role, **scope
            )

    return make


@pytest.fixture
def member(tenant: Tenant, member_factory: Callable[..., S3Member]) -> S3Member:
    """A Store administrator of ``tenant``."""
    return member_factory(tenant)


def client(port: Port, member: S3Member | None, **config: Any) -> Any:
    """A boto3 S3 client for ``member`` (anonymous when ``None``) against ``port``."""
    options: dict[str, Any] = {"retries": {"max_attempts": 1, "mode": "standard"}}
    if member is None:
        from botocore import UNSIGNED

        options["signature_version"] = UNSIGNED
    options.update(config)
    return boto3.session.Session().client(
        "s3",
        endpoint_url=port.endpoint,
        region_name=config.pop("region", None) or "us-east-1",
        aws_access_key_id=member.access_key if member else "x",
        aws_secret_access_key=member.secret if member else "x",
        verify=port.ca_file if port.ca_file else True,
        config=Config(**{k: v for k, v in options.items() if k != "region"}),
    )


def bucket_name(prefix: str = "b") -> str:
    """A bucket name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def sessions(services: Services) -> Session:
    """A session of the shared database (for checks)."""
    return services.db.session(write=False)


__all__ = ["Path", "Port", "bucket_name", "client"]
