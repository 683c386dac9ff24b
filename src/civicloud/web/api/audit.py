"""``/api/v1/audit``: the audit log of the caller's subtree."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import AfterValidator, AwareDatetime

from civicloud.core import audit
from civicloud.core.audit import AuditPage, AuditRecordRead, Outcome
from civicloud.web.deps import ActorDep, SessionDep

router = APIRouter(prefix="/audit", tags=["audit"])


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00+14:00 is before the year 1 in UTC
        raise ValueError("the time is out of range once converted to UTC") from exc


#: A time with its UTC offset (a naive one is ambiguous), representable in UTC.
UtcTime = Annotated[AwareDatetime, AfterValidator(_in_utc)]
#: Sequence numbers are 64-bit integers in the database.
MAX_SEQ = 2**63 - 1


@router.get("", name="core.audit.list")
def list_audit(
    session: SessionDep,
    actor: ActorDep,
    tenant_id: uuid.UUID | None = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    actor_name: Annotated[str | None, Query(alias="actor", max_length=160)] = None,
    outcome: Annotated[Outcome | None, Query()] = None,
    since: Annotated[UtcTime | None, Query()] = None,
    until: Annotated[UtcTime | None, Query()] = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Query the audit log of tenants you audit, newest first (403 if you audit none)."""
    query = audit.audit_select(
        session=session,
        actor=actor,
        filters=audit.AuditFilter(
            action=action,
            actor_name=actor_name,
            tenant_id=tenant_id,
            outcome=outcome,
            since=since,
            until=until,
        ),
    )
    if before is not None:
        query = query.where(audit.AuditRecord.seq < before)
    rows = session.scalars(query.limit(limit)).all()
    items = [AuditRecordRead.model_validate(r) for r in rows]
    next_before = items[-1].seq if len(items) == limit else None
    return AuditPage(items=items, next_before=next_before)


@router.get("/{seq}", name="core.audit.get")
def get_audit_record(
    session: SessionDep, actor: ActorDep, seq: Annotated[int, Path(ge=1, le=MAX_SEQ)]
) -> AuditRecordRead:
    """Show one audit record of a tenant you audit, with its place in its chain."""
    found = audit.get_record_or_raise(session=session, actor=actor, seq=seq)
    return AuditRecordRead.model_validate(found)
