"""``/api/v1/api-keys``: bearer credentials, shown once."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from civicloud.core import identity
from civicloud.core.identity import ApiKeyCreate, ApiKeyIssued, ApiKeyRead
from civicloud.web.deps import ActorDep, ServicesDep, SessionDep

router = APIRouter(prefix="/api-keys", tags=["api keys"])


@router.get("", name="core.apikey.list")
def list_api_keys(
    session: SessionDep, actor: ActorDep, user_id: uuid.UUID | None = None
) -> list[ApiKeyRead]:
    """List your API keys (or a user's that you administer)."""
    keys = identity.list_api_keys(session=session, actor=actor, user_id=user_id)
    return [ApiKeyRead.model_validate(k) for k in keys]


@router.post("", status_code=status.HTTP_201_CREATED, name="core.apikey.create")
def create_api_key(
    session: SessionDep,
    actor: ActorDep,
    services: ServicesDep,
    data: ApiKeyCreate,
    user_id: uuid.UUID | None = None,
) -> ApiKeyIssued:
    """Create an API key; its ``token`` is in this response only."""
    issued = identity.issue_api_key(
        session=session,
        actor=actor,
        data=data,
        default_days=services.settings.auth.api_key_days,
        user_id=user_id,
    )
    return ApiKeyIssued(**ApiKeyRead.model_validate(issued.key).model_dump(), token=issued.token)


@router.delete("/{key_id}", name="core.apikey.revoke")
def revoke_api_key(session: SessionDep, actor: ActorDep, key_id: uuid.UUID) -> ApiKeyRead:
    """Revoke an API key (it stops working at once)."""
    return ApiKeyRead.model_validate(
        identity.revoke_api_key(session=session, actor=actor, key_id=key_id)
    )
