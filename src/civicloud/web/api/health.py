"""Operational endpoints: ``/healthz`` and ``/readyz`` (public) and ``/metrics`` (this machine,
or a scraper holding the configured bearer token)."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from civicloud.core.migrate import pending
from civicloud.web.deps import ServicesDep
from civicloud.web.problems import problem

router = APIRouter(tags=["operations"])


@router.get("/healthz", name="core.healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", name="core.readyz", response_model=None)
def readyz(services: ServicesDep) -> dict[str, str] | Response:
    """Readiness: the database answers and carries every migration."""
    try:
        with services.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        if pending(services.db.engine):
            return problem(503, code="core.not_ready", detail="database migrations are pending")
    except Exception as exc:  # any database failure means "not ready", reported, not raised
        return problem(
            503, code="core.not_ready", detail=f"database unavailable: {type(exc).__name__}"
        )
    return {"status": "ready"}


@router.get("/metrics", name="core.metrics", include_in_schema=False)
def metrics(request: Request, services: ServicesDep) -> Response:
    """Prometheus metrics: for a scraper with the bearer token, or on this machine without one.

    They tell who calls what how often, which is nobody else's business.
    """
    token = services.settings.web.metrics_token
    if token is not None:
        expected = f"Bearer {token.get_secret_value()}".encode()
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return problem(
                401,
                code="core.not_authenticated",
                detail="the metrics need the bearer token set in CIVICLOUD_WEB__METRICS_TOKEN",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    elif not _on_this_machine(request):
        return problem(
            403,
            code="core.permission_denied",
            detail="the metrics are served on this machine only; set "
            "CIVICLOUD_WEB__METRICS_TOKEN to scrape them from elsewhere",
        )
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


def _on_this_machine(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
