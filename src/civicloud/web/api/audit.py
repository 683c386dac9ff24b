"""``/api/v1/audit``: the audit log of the caller's subtree."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from civicloud.core import audit
from civicloud.core.audit import AuditPage, AuditRecordRead
from civicloud.web.deps import ActorDep, SessionDep

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", name="core.audit.list")
def list_audit(
    session: SessionDep,
    actor: ActorDep,
    tenant_id: uuid.UUID | None = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    actor_name: Annotated[str | None, Query(alias="actor", max_length=160)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Query the audit log of tenants you audit, newest first."""
    rows = audit.list_records(
        session=session,
        actor=actor,
        tenant_id=tenant_id,
        action=action,
        actor_name=actor_name,
        since=since,
        until=until,
        before=before,
        limit=limit,
    )
    items = [AuditRecordRead.model_validate(r) for r in rows]
    next_before = items[-1].seq if len(items) == limit else None
    return AuditPage(items=items, next_before=next_before)
