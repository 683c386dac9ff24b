"""The console's audit log page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from civicloud.core import audit
from civicloud.web.api.audit import MAX_SEQ
from civicloud.web.deps import SessionDep
from civicloud.web.pages.guards import ConsoleActorDep
from civicloud.web.pages.rendering import render

router = APIRouter(prefix="/console", include_in_schema=False)

AUDIT_PAGE_SIZE = 50


@router.get("/audit", name="page.audit")
def audit_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    action: Annotated[str, Query(max_length=100)] = "",
    actor_name: Annotated[str, Query(alias="actor", max_length=160)] = "",
    before: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
) -> HTMLResponse:
    """The audit log of your subtree, newest first, filtered by action and actor."""
    records = audit.list_records(
        session=session,
        actor=actor,
        action=action.strip() or None,
        actor_name=actor_name.strip() or None,
        before=before,
        limit=AUDIT_PAGE_SIZE,
    )
    next_before = records[-1].seq if len(records) == AUDIT_PAGE_SIZE else None
    older = None
    if next_before is not None:
        older = request.url.remove_query_params("lang").include_query_params(before=next_before)
    return render(
        request,
        "console/audit.html",
        {
            "section": "audit",
            "records": records,
            "filters": {"action": action, "actor": actor_name},
            "older_url": f"{older.path}?{older.query}" if older else None,
            "newest_url": _without(request, "before", "lang") if before is not None else None,
        },
    )


def _without(request: Request, *names: str) -> str:
    """This page's address without the query parameters ``names``."""
    url = request.url.remove_query_params(list(names))
    return f"{url.path}?{url.query}" if url.query else url.path
