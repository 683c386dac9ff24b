"""Operational endpoints: ``/healthz`` and ``/readyz`` (public) and ``/metrics`` (this machine,
or a scraper holding the configured bearer token)."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from civicloud.core.listeners import Supervisor
from civicloud.core.migrate import pending
from civicloud.web.deps import ServicesDep
from civicloud.web.problems import problem

router = APIRouter(tags=["operations"])


@router.get("/healthz", name="core.healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


def supervisor_of(request: Request) -> Supervisor | None:
    """The listeners' supervisor ``civicloud serve`` runs beside the app (``None`` without one)."""
    found = getattr(request.app.state, "supervisor", None)
    return found if isinstance(found, Supervisor) else None


@router.get("/readyz", name="core.readyz", response_model=None)
def readyz(request: Request, services: ServicesDep) -> dict[str, object] | Response:
    """Readiness: the database answers and carries every migration, and every listener (and the
    MQTT hub) is well."""
    try:
        with services.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        if pending(services.db.engine, services.branches):
            return problem(503, code="core.not_ready", detail="database migrations are pending")
    except Exception as exc:  # any database failure means "not ready", reported, not raised
        return problem(
            503, code="core.not_ready", detail=f"database unavailable: {type(exc).__name__}"
        )
    supervisor = supervisor_of(request)
    if supervisor is None:
        return {"status": "ready"}
    health = supervisor.health()
    listeners = {name: why or "ok" for name, why in health.items()}
    unwell = [f"{name}: {why}" for name, why in health.items() if why is not None]
    if unwell:
        return problem(
            503,
            code="core.not_ready",
            detail="listeners unwell: " + "; ".join(unwell),
            listeners=listeners,
        )
    return {"status": "ready", "listeners": listeners}


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
