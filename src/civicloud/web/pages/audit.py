"""The console's audit log: records filtered by action, actor, a range of days (in the
installation's zone), outcome and tenant, counted and paged by cursor; each record's detail
view; CSV export of exactly what is filtered; and verifying the chains.

Verifying walks every record of every chain, which on a large log takes minutes: the button
starts it in a thread of its own (``core.audit.Verifier``, one at a time per process) and the
page answers at once. The verification page shows how far it has got, refreshing itself every
few seconds (a ``<meta http-equiv="refresh">``: no script), and then the result, which is also
written to the log (``core.audit.verify``), so any server shows the last one. Only those who
may verify (platform-wide ``core.audit.read``) see the button and the page.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from civicloud.core import audit, tenants
from civicloud.core.actor import Actor
from civicloud.core.csvsafe import write_csv
from civicloud.core.errors import InvalidInput, PermissionDenied
from civicloud.core.i18n import N_
from civicloud.core.zones import local_time
from civicloud.web.api.audit import MAX_SEQ
from civicloud.web.deps import SessionDep, services_of
from civicloud.web.messages import error_text
from civicloud.web.pages.guards import ConsoleActorDep, see_other
from civicloud.web.pages.rendering import page_language, render

router = APIRouter(prefix="/console", include_in_schema=False)

AUDIT_PAGE_SIZE = 50
#: Records counted at most (a bounded scan); past it the page says "more than".
COUNT_LIMIT = 10_000
#: Rows an export holds at most.
EXPORT_LIMIT = 100_000
NOT_ALLOWED = N_("You may not read the audit log: it needs the audit read permission.")
OUTCOME_CHOICES = (
    ("success", N_("Succeeded")),
    ("denied", N_("Denied")),
    ("failed", N_("Failed")),
)


def _zone(request: Request) -> ZoneInfo:
    """The installation's zone: the pages' times, and the days of the date filter."""
    return ZoneInfo(services_of(request).settings.web.time_zone)


def _filters(request: Request, typed: dict[str, str]) -> audit.AuditFilter:
    """The request's filters, checked: ``InvalidInput`` naming the field that cannot be used."""
    zone = _zone(request)
    since, until = audit.day_range(typed["from"], typed["to"], zone=zone)
    tenant_id = None
    if typed["tenant"].strip():
        try:
            tenant_id = uuid.UUID(typed["tenant"].strip())
        except ValueError:
            raise InvalidInput(
                "no such %(what_label)s", params={"what_label": "tenant"}, field="tenant"
            ) from None
    return audit.check_filter(
        audit.AuditFilter(
            action=typed["action"].strip() or None,
            actor_name=typed["actor"].strip() or None,
            tenant_id=tenant_id,
            outcome=typed["outcome"].strip() or None,
            since=since,
            until=until,
        )
    )


def _tenant_choices(session: Session, actor: Actor, language: str) -> list[tuple[str, str]]:
    """The tenants whose records the reader may read, by name."""
    found = tenants.list_tenants(session=session, actor=actor)
    return [
        (str(t.id), t.name_zh if language == "zh" else t.name_en)
        for t in found
        if actor.can("core.audit.read", t.path)
    ]


@router.get("/audit", name="page.audit", response_model=None)
def audit_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    action: Annotated[str, Query(max_length=100)] = "",
    actor_name: Annotated[str, Query(alias="actor", max_length=160)] = "",
    outcome: Annotated[str, Query(max_length=20)] = "",
    tenant: Annotated[str, Query(max_length=40)] = "",
    day_from: Annotated[str, Query(alias="from", max_length=40)] = "",
    day_to: Annotated[str, Query(alias="to", max_length=40)] = "",
    before: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
    format: Annotated[str, Query(max_length=8)] = "",
) -> Response:
    """The audit log of your subtree, newest first, filtered; or its CSV export."""
    typed = {
        "action": action,
        "actor": actor_name,
        "outcome": outcome,
        "tenant": tenant,
        "from": day_from,
        "to": day_to,
    }
    language = page_language(request)
    context: dict[str, Any] = {
        "section": "audit",
        "filters": typed,
        "outcomes": OUTCOME_CHOICES,
        "records": [],
        "errors": {},
        "refused": None,
        "count": None,
        "count_capped": False,
        "may_verify": audit.may_verify(actor),
        "tenant_choices": [],
        "tenant_names": {},
        "older_url": None,
        "newest_url": None,
        "export_url": None,
    }
    if not audit.may_read(actor):
        context["refused"] = NOT_ALLOWED
        return render(request, "console/audit.html", context, status_code=403)
    context["tenant_choices"] = _tenant_choices(session, actor, language)
    context["tenant_names"] = dict(context["tenant_choices"])
    try:
        filters = _filters(request, typed)
        query = audit.audit_select(session=session, actor=actor, filters=filters)
    except InvalidInput as exc:
        context["errors"] = {str(exc.extra.get("field", "action")): error_text(exc, language)}
        return render(request, "console/audit.html", context, status_code=422)
    except PermissionDenied as exc:
        context["refused"] = error_text(exc, language)
        return render(request, "console/audit.html", context, status_code=403)
    if format == "csv":
        return _export(request, session, query, context["tenant_names"])
    counted = session.execute(
        select(func.count()).select_from(query.order_by(None).limit(COUNT_LIMIT + 1).subquery())
    ).scalar_one()
    context["count"] = min(counted, COUNT_LIMIT)
    context["count_capped"] = counted > COUNT_LIMIT
    page = query.where(audit.AuditRecord.seq < before) if before is not None else query
    records = session.scalars(page.limit(AUDIT_PAGE_SIZE)).all()
    context["records"] = records
    if len(records) == AUDIT_PAGE_SIZE:
        older = request.url.remove_query_params(["lang", "before"]).include_query_params(
            before=records[-1].seq
        )
        context["older_url"] = f"{older.path}?{older.query}"
    if before is not None:
        context["newest_url"] = _without(request, "before", "lang")
    export = request.url.remove_query_params(["lang", "before"]).include_query_params(format="csv")
    context["export_url"] = f"{export.path}?{export.query}"
    return render(request, "console/audit.html", context)


def _export(
    request: Request, session: Session, query: Any, tenant_names: dict[str, str]
) -> Response:
    """Exactly the filtered records as CSV, newest first (at most ``EXPORT_LIMIT``)."""
    zone = _zone(request)
    rows = (
        [
            r.seq,
            local_time(r.at, zone),
            r.actor,
            str(r.detail.get(audit.VIA_KEY, "")),
            r.action,
            r.target,
            tenant_names.get(str(r.tenant_id), "") if r.tenant_id else "",
            r.outcome,
            audit.reason_of(r) or "",
            r.hash,
        ]
        for r in session.scalars(query.limit(EXPORT_LIMIT))
    )
    header = [
        "seq",
        "time",
        "actor",
        "via",
        "action",
        "target",
        "tenant",
        "outcome",
        "reason",
        "hash",
    ]
    return Response(
        write_csv(rows, header=header),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )


@router.get("/audit/verify", name="page.audit_verify")
def verify_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> HTMLResponse:
    """The verification of the log's chains: how far the one running has got, or the last result."""
    last = audit.last_verification(session=session, actor=actor)
    current = _verifier(request).current
    response = render(
        request,
        "console/audit_verify.html",
        {"section": "audit", "current": current, "last": last},
    )
    if current is not None and current.running:
        # Shown again in a few seconds until it ends: how far it got, then the result.
        response.headers["Refresh"] = "3"
    return response


@router.post("/audit/verify", name="page.audit_verify_start")
def start_verify(request: Request, actor: ConsoleActorDep) -> Response:
    """Start verifying every chain of the log (or follow the verification already running)."""
    _verifier(request).start(actor=actor)
    return see_other("/console/audit/verify")


def _verifier(request: Request) -> audit.Verifier:
    found: audit.Verifier | None = getattr(request.app.state, "audit_verifier", None)
    if found is None:
        found = audit.Verifier(services_of(request).db)
        request.app.state.audit_verifier = found
    return found


@router.get("/audit/{seq}", name="page.audit_record")
def record_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    seq: Annotated[int, Path(ge=1, le=MAX_SEQ)],
) -> HTMLResponse:
    """One audit record: who did what, to what, why, its data, and how it fits its chain."""
    entry = audit.get_record_or_raise(session=session, actor=actor, seq=seq)
    language = page_language(request)
    tenant = (
        tenants.get_tenant(session=session, tenant_id=entry.tenant_id) if entry.tenant_id else None
    )
    chain = audit.chain_label(entry.chain)
    root = (
        tenants.get_tenant(session=session, tenant_id=chain["root_id"])
        if chain["root_id"] is not None
        else None
    )
    return render(
        request,
        "console/audit_record.html",
        {
            "section": "audit",
            "r": entry,
            "via": entry.detail.get(audit.VIA_KEY),
            "reason": audit.reason_of(entry),
            "data": _readable({k: v for k, v in entry.detail.items() if k != audit.VIA_KEY}),
            "tenant_name": (tenant.name_zh if language == "zh" else tenant.name_en)
            if tenant
            else None,
            "chain": chain,
            "root_name": (root.name_zh if language == "zh" else root.name_en) if root else None,
            "check": audit.check_record(session=session, entry=entry),
        },
    )


def _readable(data: dict[str, Any]) -> str:
    """A record's data as indented JSON, Chinese as it is (the template escapes it)."""
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) if data else ""


def _without(request: Request, *names: str) -> str:
    """This page's address without the query parameters ``names``."""
    url = request.url.remove_query_params(list(names))
    return f"{url.path}?{url.query}" if url.query else url.path
