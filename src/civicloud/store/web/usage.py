"""Usage and the access log in the console: each tenant's bytes, objects and quota with a
chart over time, its buckets, a tenant's quota, and the access log with its exports."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloud.core.actor import Actor
from civicloud.core.errors import NotFound
from civicloud.core.i18n import N_
from civicloud.store import console, service
from civicloud.store.models import Bucket
from civicloud.store.web import lists as store_lists
from civicloud.store.web.views import (
    PREFIX,
    form_state,
    page,
    parse_count,
    parse_quota_gib,
    size_text,
    store_context,
)
from civicloud.web import lists
from civicloud.web.deps import SessionDep, services_of
from civicloud.web.pages.forms import rejected_form
from civicloud.web.pages.guards import ConsoleActorDep, FormRejected, see_other
from civicloud.web.pages.rendering import holds_somewhere

router = APIRouter(prefix=PREFIX, include_in_schema=False)

_QUOTA_HINT = N_("Enter a size in GiB (such as 50 or 0.5), or leave it empty for no quota.")
_COUNT_HINT = N_("Enter a whole number of objects, or leave it empty for no limit.")


def _usage_context(
    request: Request, session: Session, actor: Actor, tenant_id: str
) -> dict[str, Any]:
    usages = console.tenant_usages(session=session, actor=actor)
    chosen = None
    if tenant_id:
        try:
            wanted = uuid.UUID(tenant_id)
        except ValueError as exc:
            raise NotFound("no such tenant", resource="tenant") from exc
        chosen = next((u for u in usages if u.tenant.id == wanted), None)
        if chosen is None:
            raise NotFound("no such tenant", resource="tenant")
    elif usages:
        chosen = usages[0]
    points: list[tuple[str, int]] = []
    buckets: list[Bucket] = []
    if chosen is not None:
        zone = ZoneInfo(services_of(request).settings.web.time_zone)
        samples = console.usage_series(session=session, tenant_id=chosen.tenant.id, zone=zone)
        points = [(s.at.astimezone(zone).strftime("%m-%d"), s.bytes) for s in samples]
        buckets = list(
            session.scalars(
                select(Bucket)
                .where(Bucket.tenant_id == chosen.tenant.id)
                .order_by(Bucket.used_bytes.desc(), Bucket.name)
                .limit(200)
            )
        )
    return {
        "store_tab": "usage",
        "allowed": holds_somewhere(actor, console.BUCKET_READ),
        "usages": usages,
        "chosen": chosen,
        "points": points,
        "buckets": buckets,
        "may_quota": chosen is not None and actor.can(console.QUOTA_ADMIN, chosen.tenant.path),
        "quota_form": form_state(
            {
                "quota_gb": ""
                if chosen is None or chosen.usage.quota_bytes is None
                else f"{chosen.usage.quota_bytes / (1 << 30):g}",
                "quota_objects": ""
                if chosen is None or chosen.usage.quota_objects is None
                else str(chosen.usage.quota_objects),
            }
        ),
        "size_text": size_text,
    }


@router.get("/usage", name="store.page.usage")
def usage_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    tenant_id: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    """What each tenant stores against its quota, over time, and its buckets."""
    return page(
        request, "store/console/usage.html", _usage_context(request, session, actor, tenant_id)
    )


@router.post("/usage/quota", name="store.page.tenant_quota")
def set_tenant_quota(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    tenant_id: Annotated[str, Form(max_length=40)] = "",
    quota_gb: Annotated[str, Form(max_length=30)] = "",
    quota_objects: Annotated[str, Form(max_length=30)] = "",
) -> Response:
    """Set or lift a tenant's quota over all its buckets."""
    try:
        wanted = uuid.UUID(tenant_id)
    except ValueError as exc:
        raise NotFound("no such tenant", resource="tenant") from exc
    tenant = console.quota_tenant(session=session, actor=actor, tenant_id=wanted)
    max_bytes, bytes_ok = parse_quota_gib(quota_gb)
    max_objects, objects_ok = parse_count(quota_objects)
    errors: dict[str, str] = {}
    if not bytes_ok:
        errors["quota_gb"] = _QUOTA_HINT
    if not objects_ok:
        errors["quota_objects"] = _COUNT_HINT
    if errors:
        context = _usage_context(request, session, actor, str(tenant.id))
        context["quota_form"] = rejected_form(
            {"quota_gb": quota_gb, "quota_objects": quota_objects}, errors
        )
        raise FormRejected(page(request, "store/console/usage.html", context, status_code=422))
    service.set_quota(
        session=session,
        actor=actor,
        tenant_id=tenant.id,
        max_bytes=max_bytes,
        max_objects=max_objects,
        context=store_context(request),
    )
    return see_other(f"{PREFIX}/usage?tenant_id={tenant.id}&done=quota_set")


@router.get("/log", name="store.page.log")
def log_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> Response:
    """The access log: every S3 request on the buckets you may audit, with CSV/Excel export."""
    context: dict[str, Any] = {"store_tab": "log", "not_allowed": None, "view": None}
    if not holds_somewhere(actor, console.LOG_READ):
        context["not_allowed"] = store_lists.NOT_ALLOWED["log"]
        return page(request, "store/console/log.html", context)
    spec = store_lists.log_spec(actor)
    return lists.respond(
        request,
        spec,
        session,
        lambda view: page(request, "store/console/log.html", {**context, "view": view}),
    )
