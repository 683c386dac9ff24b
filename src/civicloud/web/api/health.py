"""Public operational endpoints: ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

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
def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
