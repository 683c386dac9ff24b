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
    """Readiness: the database answers and carries every migration (else 503); each listener's
    health (and the MQTT hub's), ``degraded`` when one is unwell.

    A listener that is unwell does not make the web app unready: a load balancer would take
    every web server out for a broker that is away, and citizens could not pay a bill. What is
    wrong with it is logged by the supervisor, not told to whoever asks here; one that fails for
    good stops ``civicloud serve`` (exit 1), for the service manager to restart it."""
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
    listeners = {name: "ok" if why is None else "unwell" for name, why in health.items()}
    status = "ready" if all(why is None for why in health.values()) else "degraded"
    return {"status": status, "listeners": listeners}


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
