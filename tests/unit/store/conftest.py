"""Fixtures of Store's unit tests: the upstream of the upstream backend (a second civicloud)."""

from tests.factories.store_upstream import (  # noqa: F401 - fixtures
    Upstream,
    UpstreamEndpoint,
    upstream_endpoint,
    upstream_server,
)
