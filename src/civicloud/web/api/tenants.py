"""``/api/v1/tenants``: the caller's subtree of the tenant tree."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from civicloud.core import tenants
from civicloud.core.tenants import TenantCreate, TenantKind, TenantMove, TenantRead, TenantRename
from civicloud.web.deps import ActorDep, SessionDep

router = APIRouter(prefix="/tenants", tags=["tenants"])


@router.get("", name="core.tenant.list")
def list_tenants(
    session: SessionDep,
    actor: ActorDep,
    root_id: uuid.UUID | None = None,
    kind: TenantKind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[TenantRead]:
    """List the tenants you may read (optionally one tenant's subtree), in tree order."""
    found = tenants.list_tenants(
        session=session, actor=actor, root_id=root_id, kind=kind, limit=limit, offset=offset
    )
    return [TenantRead.model_validate(t) for t in found]


@router.post("", status_code=status.HTTP_201_CREATED, name="core.tenant.create")
def create_tenant(session: SessionDep, actor: ActorDep, data: TenantCreate) -> TenantRead:
    """Create a tenant below a parent you administer."""
    return TenantRead.model_validate(tenants.create_tenant(session=session, actor=actor, data=data))


@router.get("/{tenant_id}", name="core.tenant.get")
def get_tenant(session: SessionDep, actor: ActorDep, tenant_id: uuid.UUID) -> TenantRead:
    """Show one tenant."""
    return tenants.read_tenant(session=session, actor=actor, tenant_id=tenant_id)


@router.patch("/{tenant_id}", name="core.tenant.rename")
def rename_tenant(
    session: SessionDep, actor: ActorDep, tenant_id: uuid.UUID, data: TenantRename
) -> TenantRead:
    """Rename a tenant (send ``version`` to refuse overwriting a concurrent change)."""
    renamed = tenants.rename_tenant(session=session, actor=actor, tenant_id=tenant_id, data=data)
    return TenantRead.model_validate(renamed)


@router.post("/{tenant_id}/move", name="core.tenant.move")
def move_tenant(
    session: SessionDep, actor: ActorDep, tenant_id: uuid.UUID, data: TenantMove
) -> TenantRead:
    """Move a tenant and its whole subtree under another parent."""
    moved = tenants.move_tenant(session=session, actor=actor, tenant_id=tenant_id, data=data)
    return TenantRead.model_validate(moved)


@router.delete("/{tenant_id}", status_code=status.HTTP_204_NO_CONTENT, name="core.tenant.delete")
def delete_tenant(session: SessionDep, actor: ActorDep, tenant_id: uuid.UUID) -> Response:
    """Delete a tenant that has no children and owns nothing."""
    tenants.delete_tenant(session=session, actor=actor, tenant_id=tenant_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
