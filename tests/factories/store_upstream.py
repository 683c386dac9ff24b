"""The upstream of Store's upstream backend in tests: a second civicloud serving its S3 port
(fixtures, imported by the conftests that use them)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from tests.conftest import make_settings
from tests.factories.core import make_tenant
from tests.factories.store import make_s3_member

from civicloud.app import build_services, prepare_database
from civicloud.store.context import StoreContext
from civicloud.store.s3.listener import RunningS3


@dataclass(frozen=True)
class UpstreamEndpoint:
    """A running S3-compatible server and a bucket on it that tests may write to."""

    endpoint: str
    region: str
    bucket: str
    access_key: str
    secret: str


@dataclass(frozen=True)
class Upstream:
    """A second civicloud, serving its S3 port, and an access key of one of its users."""

    endpoint: str
    access_key: str
    secret: str


@pytest.fixture(scope="session")
def upstream_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """A second civicloud installation of its own (SQLite, its own data directory) serving its
    S3 port on loopback: what a deployment would point ``backend = upstream`` at."""
    services = build_services(make_settings(tmp_path_factory.mktemp("upstream")))
    prepare_database(services)
    context = services.context("store", StoreContext)
    with services.db.unit_of_work() as session:
        tenant = make_tenant(session, parent=make_tenant(session))
        member = make_s3_member(session, services.passwords, context, tenant=tenant)
    running = RunningS3(context, host="127.0.0.1", port=0, tls=None)
    yield Upstream(running.address, member.access_key, member.secret)

    running.stop(5)
    services.db.dispose()


@pytest.fixture
def upstream_endpoint(upstream_server: Upstream) -> UpstreamEndpoint:
    """A fresh bucket on the second civicloud, the upstream of ``UpstreamBackend`` in the
    backend contract suite."""
    import boto3
    from botocore.config import Config

    name = f"upstream-{uuid.uuid4().hex[:16]}"
    boto3.session.Session().client(
        "s3",
        endpoint_url=upstream_server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=upstream_server.access_key,
        aws_secret_access_key=upstream_server.secret,
        config=Config(retries={"max_attempts": 1}),
    ).create_bucket(Bucket=name)
    return UpstreamEndpoint(
        endpoint=upstream_server.endpoint,
        region="us-east-1",
        bucket=name,
        access_key=upstream_server.access_key,
        secret=upstream_server.secret,
    )
