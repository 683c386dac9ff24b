"""The throwaway module's API route."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from tests.fakes.throwaway import service

from civicloud.web.deps import ActorDep, SessionDep

router = APIRouter(prefix="/throwaway", tags=["throwaway"])


@router.get("/tenants/{tenant_id}/items", name="throwaway.item.list")
def list_items(session: SessionDep, actor: ActorDep, tenant_id: uuid.UUID) -> list[str]:
    """A tenant's throwaway items."""
    found = service.list_items(session=session, actor=actor, tenant_id=tenant_id)
    return [item.note for item in found]
