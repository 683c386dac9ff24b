"""A Store whose bytes live in an upstream S3 cluster (here a second civicloud): clients see
the same S3 port, and the upstream holds only ciphertext under blob ids."""

from __future__ import annotations

import dataclasses
from typing import Any

import boto3
import pytest
from tests.factories.store import S3Member
from tests.factories.store_upstream import UpstreamEndpoint
from tests.functional.store.conftest import Port, bucket_name, client

from civicloud.core.services import Services
from civicloud.store.context import StoreContext
from civicloud.store.s3.listener import RunningS3
from civicloud.store.upstream import UpstreamBackend


@pytest.fixture
def upstream_port(
    core_services: Services, store_context: StoreContext, upstream_endpoint: UpstreamEndpoint
) -> Any:
    backend = UpstreamBackend(
        endpoint=upstream_endpoint.endpoint,
        region=upstream_endpoint.region,
        bucket=upstream_endpoint.bucket,
        access_key=upstream_endpoint.access_key,
        secret=upstream_endpoint.secret,
        spool_dir=core_services.settings.data_dir / "store" / "spool",
    )
    context = dataclasses.replace(store_context, backend=backend)
    running = RunningS3(context, host="127.0.0.1", port=0, tls=None)
    yield Port(running.address, None, context, core_services), upstream_endpoint
    running.server.shutdown()
    running.server.server_close()
    backend.close()


def test_objects_round_trip_through_the_upstream_encrypted(
    upstream_port: tuple[Port, UpstreamEndpoint], member: S3Member
) -> None:
    port, upstream = upstream_port
    s3 = client(port, member)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    secret_text = b"the city's budget draft, not public yet " * 5000
    s3.put_object(Bucket=name, Key="draft.txt", Body=secret_text)
    assert s3.get_object(Bucket=name, Key="draft.txt")["Body"].read() == secret_text
    assert (
        s3.get_object(Bucket=name, Key="draft.txt", Range="bytes=70000-70100")["Body"].read()
        == secret_text[70000:70101]
    )
    raw = boto3.session.Session().client(
        "s3",
        endpoint_url=upstream.endpoint,
        region_name="us-east-1",
        aws_access_key_id=upstream.access_key,
        aws_secret_access_key=upstream.secret,
    )
    stored = raw.list_objects_v2(Bucket=upstream.bucket)["Contents"]
    assert len(stored) == 1
    assert "draft" not in stored[0]["Key"]
    blob = raw.get_object(Bucket=upstream.bucket, Key=stored[0]["Key"])["Body"].read()
    assert b"budget" not in blob
    assert len(blob) > len(secret_text)
