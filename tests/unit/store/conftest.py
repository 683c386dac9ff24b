"""Fixtures of Store's unit tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class UpstreamEndpoint:
    """A running S3-compatible server and a bucket on it that tests may write to."""

    endpoint: str
    region: str
    bucket: str
    access_key: str
    secret: str


@pytest.fixture
def upstream_endpoint() -> UpstreamEndpoint:
    """A second civicloud Store server, the upstream of ``UpstreamBackend`` in the backend
    contract suite."""
    pytest.skip("the S3 server fixture is wired when civicloud.store.s3 lands")
