"""``/api/v1/roles``, ``/api/v1/role-bindings`` and ``/api/v1/permissions``."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from civicloud.core import roles
from civicloud.core.roles import RoleBindingCreate, RoleBindingRead, RoleCreate, RoleRead
from civicloud.web.deps import ActorDep, SessionDep

router = APIRouter(tags=["roles"])


@router.get("/permissions", name="core.permission.list")
def list_permissions(actor: ActorDep) -> dict[str, str]:
    """List every permission name with what it allows."""
    return roles.known_permissions()


@router.get("/roles", name="core.role.list")
def list_roles(session: SessionDep, actor: ActorDep) -> list[RoleRead]:
    """List the roles and the permissions each grants."""
    return [RoleRead.model_validate(r) for r in roles.list_roles(session=session)]


@router.post("/roles", status_code=status.HTTP_201_CREATED, name="core.role.create")
def create_role(session: SessionDep, actor: ActorDep, data: RoleCreate) -> RoleRead:
    """Define a custom role (platform administrators only)."""
    return RoleRead.model_validate(roles.create_role(session=session, actor=actor, data=data))


@router.get("/role-bindings", name="core.role_binding.list")
def list_bindings(
    session: SessionDep,
    actor: ActorDep,
    user_id: uuid.UUID | None = None,
    tenant_id: uuid.UUID | None = None,
) -> list[RoleBindingRead]:
    """List role bindings in your subtree."""
    found = roles.list_bindings(session=session, actor=actor, user_id=user_id, tenant_id=tenant_id)
    return [RoleBindingRead.model_validate(b) for b in found]


@router.post("/role-bindings", status_code=status.HTTP_201_CREATED, name="core.role.grant")
def grant_role(session: SessionDep, actor: ActorDep, data: RoleBindingCreate) -> RoleBindingRead:
    """Grant a role to a user at a tenant (and so everything below it)."""
    return RoleBindingRead.model_validate(roles.grant_role(session=session, actor=actor, data=data))


@router.delete(
    "/role-bindings/{binding_id}", status_code=status.HTTP_204_NO_CONTENT, name="core.role.revoke"
)
def revoke_role(session: SessionDep, actor: ActorDep, binding_id: uuid.UUID) -> Response:
    """Revoke a role binding."""
    roles.revoke_role(session=session, actor=actor, binding_id=binding_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
