"""The throwaway module's console page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from civicloud.web.pages.guards import ConsoleActorDep
from civicloud.web.pages.rendering import render

router = APIRouter(include_in_schema=False)


@router.get("/console/throwaway", name="throwaway.page")
def page(request: Request, actor: ConsoleActorDep) -> HTMLResponse:
    """The module's page."""
    return render(request, "throwaway/page.html", {"section": "throwaway"})
