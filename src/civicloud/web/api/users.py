"""``/api/v1/users`` and ``/api/v1/me``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel

from civicloud.core import identity
from civicloud.core.identity import UserCreate, UserRead, UserUpdate
from civicloud.core.roles import RoleBindingRead, list_bindings
from civicloud.web.deps import ActorDep, ServicesDep, SessionDep

router = APIRouter(tags=["users"])


class Me(BaseModel):
    """The caller: the user, how it authenticated and the roles it holds."""

    user: UserRead
    via: str
    roles: list[RoleBindingRead]


@router.get("/me", name="core.me")
def me(session: SessionDep, actor: ActorDep) -> Me:
    """Show who you are and which roles you hold."""
    assert actor.user_id is not None  # an authenticated request always has a user
    user = identity.get_user_or_raise(session=session, actor=actor, user_id=actor.user_id)
    bindings = list(list_bindings(session=session, actor=actor, user_id=user.id))
    return Me(
        user=UserRead.model_validate(user),
        via=actor.via,
        roles=[RoleBindingRead.model_validate(b) for b in bindings],
    )


@router.get("/users", name="core.user.list")
def list_users(
    session: SessionDep,
    actor: ActorDep,
    tenant_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> list[UserRead]:
    """List users homed in tenants you may read users of."""
    found = identity.list_users(session=session, actor=actor, tenant_id=tenant_id, limit=limit)
    return [UserRead.model_validate(u) for u in found]


@router.post("/users", status_code=status.HTTP_201_CREATED, name="core.user.create")
def create_user(
    session: SessionDep, actor: ActorDep, services: ServicesDep, data: UserCreate
) -> UserRead:
    """Create a user in a tenant you administer."""
    user = identity.create_user(
        session=session, actor=actor, data=data, passwords=services.passwords
    )
    return UserRead.model_validate(user)


@router.get("/users/{user_id}", name="core.user.get")
def get_user(session: SessionDep, actor: ActorDep, user_id: uuid.UUID) -> UserRead:
    """Show one user."""
    return UserRead.model_validate(
        identity.get_user_or_raise(session=session, actor=actor, user_id=user_id)
    )


@router.patch("/users/{user_id}", name="core.user.update")
def update_user(
    session: SessionDep,
    actor: ActorDep,
    services: ServicesDep,
    user_id: uuid.UUID,
    data: UserUpdate,
) -> UserRead:
    """Change a user's name, e-mail, password or active flag."""
    user = identity.update_user(
        session=session, actor=actor, user_id=user_id, data=data, passwords=services.passwords
    )
    return UserRead.model_validate(user)
