"""The console's jobs page: each background job, its schedule, its last run and its failures."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from civicloud.core import jobs
from civicloud.web.deps import ServicesDep, SessionDep
from civicloud.web.pages.guards import ConsoleActorDep
from civicloud.web.pages.rendering import render

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/jobs", name="page.jobs")
def jobs_page(
    request: Request, session: SessionDep, actor: ConsoleActorDep, services: ServicesDep
) -> HTMLResponse:
    """The background jobs: each one's schedule, last run, duration and failures."""
    statuses = jobs.job_statuses(session=session, actor=actor, services=services)
    return render(request, "console/jobs.html", {"section": "jobs", "statuses": statuses})
