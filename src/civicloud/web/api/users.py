"""``/api/v1/users``, their sign-ins (``/api/v1/users/{id}/sessions``, ``/api/v1/sessions``) and
``/api/v1/me``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel

from civicloud.core import identity
from civicloud.core.identity import (
    SessionsEnded,
    UserCreate,
    UserRead,
    UserUpdate,
    WebSessionRead,
)
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


@router.get("/users/{user_id}/sessions", name="core.user.sessions")
def list_sessions(session: SessionDep, actor: ActorDep, user_id: uuid.UUID) -> list[WebSessionRead]:
    """List a user's live browser sign-ins: your own, or those of a user you administer."""
    found = identity.live_credentials(session=session, actor=actor, user_id=user_id)
    return [WebSessionRead.model_validate(s) for s in found.sessions]


@router.delete("/users/{user_id}/sessions", name="core.user.sessions_end")
def end_sessions(session: SessionDep, actor: ActorDep, user_id: uuid.UUID) -> SessionsEnded:
    """End every live browser sign-in of a user (yours, or of a user you administer)."""
    ended = identity.end_user_sessions(session=session, actor=actor, user_id=user_id)
    return SessionsEnded(ended=ended)


@router.delete(
    "/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, name="core.session.end"
)
def end_session(session: SessionDep, actor: ActorDep, session_id: uuid.UUID) -> Response:
    """End one browser sign-in (signs that browser out at once)."""
    identity.end_user_session(session=session, actor=actor, session_id=session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
