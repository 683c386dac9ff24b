"""The console's audit log: a list on the console's list component (``web.lists``) over the
authorised query ``core.audit.audit_select``, filtered by tenant (among those the reader audits),
outcome, action, actor and a range of days (in the installation's zone), sorted, paged by cursor
and exported as CSV or Excel; each record's detail view; and verifying the chains.

Verifying walks every record of every chain, which on a large log takes minutes: the button
starts it in a thread of its own (``core.audit.Verifier``, one at a time per process) and the
page answers at once. The verification page shows how far it has got, refreshing itself every
few seconds (a ``Refresh`` header: no script), and then the result, which is also written to the
log (``core.audit.verify``), so any server shows the last one. Only those who may verify
(platform-wide ``core.audit.read``) see the button and the page.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, aliased

from civicloud.core import audit, tenants
from civicloud.core.actor import Actor
from civicloud.core.audit.query import (
    audited_tenants,
    by_action,
    by_actor,
    by_outcome,
    in_tenant,
    within,
)
from civicloud.core.i18n import N_
from civicloud.core.tenants.models import Tenant
from civicloud.web import lists
from civicloud.web.api.audit import MAX_SEQ
from civicloud.web.deps import SessionDep, services_of
from civicloud.web.pages.guards import ConsoleActorDep, see_other
from civicloud.web.pages.labels import OUTCOME_LABELS
from civicloud.web.pages.rendering import page_language, render

router = APIRouter(prefix="/console", include_in_schema=False)

NOT_ALLOWED = N_("You may not read the audit log: it needs the audit read permission.")
NOT_THIS_TENANT = N_("You cannot see the audit records of this tenant.")


def _outcome_badge(code: str) -> str:
    return code if code in audit.OUTCOMES else "neutral"


def _detail_href(row: Any) -> str:
    return f"/console/audit/{row['_key']}"


def _tenant_name(language: str) -> Any:
    """The name of a record's tenant in the page's language (``None``: it has none)."""
    # An alias: the reader's query may join the tenants already, and must not correlate to them.
    owner = aliased(Tenant)
    name = owner.name_zh if language == "zh" else owner.name_en
    return select(name).where(owner.id == audit.AuditRecord.tenant_id).scalar_subquery()


def _reason() -> Any:
    """What ``core.audit.reason_of`` reads, in SQL: the reason given, else the error code."""
    detail = audit.AuditRecord.detail
    return func.coalesce(
        func.nullif(detail["reason"].as_string(), ""), func.nullif(detail["code"].as_string(), "")
    )


def audit_spec(session: Session, actor: Actor, language: str) -> lists.ListSpec:
    """The audit log as the list component shows it: newest first (by number, the order of
    the log), each record linked to its page; exports add its reason and hash."""
    record = audit.AuditRecord
    query: Select[Any] = audit.audit_select(session=session, actor=actor).order_by(None)
    tenant_choices = [
        (str(t.id), t.name_zh if language == "zh" else t.name_en)
        for t in audited_tenants(session=session, actor=actor)
    ]
    return lists.ListSpec(
        name="audit",
        title=N_("Audit records"),
        query=query,
        key=record.seq,
        default_sort="seq",
        columns=(
            lists.Column("seq", N_("No."), record.seq, "text", sortable=True, href=_detail_href),
            lists.Column("at", N_("Time"), record.at, "datetime", sortable=True),
            lists.Column("actor", N_("Actor"), record.actor),
            lists.Column("via", N_("Via"), record.detail[audit.VIA_KEY].as_string(), "code"),
            lists.Column("action", N_("Action"), record.action, "code", sortable=True),
            lists.Column("target", N_("Target"), record.target),
            lists.Column("tenant", N_("Tenant"), _tenant_name(language)),
            lists.Column(
                "outcome",
                N_("Outcome"),
                record.outcome,
                "label",
                labels=OUTCOME_LABELS,
                badge=_outcome_badge,
            ),
            lists.Column("reason", N_("Reason"), _reason(), show=False),
            lists.Column("hash", N_("Hash"), record.hash, "code", show=False),
            lists.Column(
                "detail",
                N_("Detail"),
                record.seq,
                text=N_("Open"),
                href=_detail_href,
                export=False,
            ),
        ),
        filters=(
            lists.Filter(
                "tenant",
                N_("Tenant"),
                "choice",
                lambda q, value: in_tenant(q, session=session, actor=actor, tenant=value),
                choices=tenant_choices,
                translate=False,
                open=True,
                refused=NOT_THIS_TENANT,
            ),
            lists.Filter(
                "outcome",
                N_("Outcome"),
                "choice",
                by_outcome,
                choices=[(code, OUTCOME_LABELS[code]) for code in audit.OUTCOMES],
            ),
            lists.Filter("action", N_("Action starts with"), "text", by_action, max_length=100),
            lists.Filter(
                "actor",
                N_("Actor"),
                "text",
                by_actor,
                hint=N_("The whole name, as recorded."),
                max_length=160,
            ),
            lists.Filter(
                "days",
                N_("Days"),
                "date_range",
                lambda q, days: within(q, days.start, days.end),
            ),
        ),
        empty=N_("No records match."),
    )


@router.get("/audit", name="page.audit", response_model=None)
def audit_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> Response:
    """The audit log of the tenants you audit, newest first, filtered; or its CSV or Excel
    export (``format=csv|xlsx``)."""
    context: dict[str, Any] = {
        "section": "audit",
        "not_allowed": None,
        "view": None,
        "may_verify": audit.may_verify(actor),
    }
    if not audit.may_read(actor):
        context["not_allowed"] = NOT_ALLOWED
        return render(request, "console/audit.html", context, status_code=403)
    spec = audit_spec(session, actor, page_language(request))

    def page(view: lists.ListView) -> Response:
        # A tenant the reader may not audit is refused plainly, as the API refuses it.
        status = 403 if view.page.refused else 200
        return render(request, "console/audit.html", {**context, "view": view}, status_code=status)

    return lists.respond(request, spec, session, page)


@router.get("/audit/verify", name="page.audit_verify")
def verify_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> HTMLResponse:
    """The verification of the log's chains: how far the one running has got, or the last result."""
    audit.require_verify(actor)
    # Whether it runs is read before the log: one that ends in between has written its result
    # already, so the page never shows neither the progress nor the result.
    current = _verifier(request).current
    running = current is not None and current.running
    last = audit.last_verification(session=session, actor=actor)
    response = render(
        request,
        "console/audit_verify.html",
        {"section": "audit", "current": current, "running": running, "last": last},
    )
    if running:
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
