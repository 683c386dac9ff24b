"""Store's HTTP API under ``/api/v1/store``: buckets, access keys and usage, thin routes over
the same services as the console. Errors are the services' (``CivicloudError``), answered as
``application/problem+json`` by the core's handlers; a bucket the caller may not see is 404."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from civicloud.core.errors import NotFound
from civicloud.core.identity.service import get_user_or_raise
from civicloud.core.tenants.service import get_tenant_or_raise
from civicloud.store import console, keys, service
from civicloud.store.context import StoreContext
from civicloud.store.models import AccessKey, Bucket
from civicloud.web.deps import ActorDep, SessionDep, services_of

router = APIRouter(prefix="/store", tags=["store"])


def _context(request: Request) -> StoreContext:
    return services_of(request).context("store", StoreContext)


class BucketCreate(BaseModel):
    """A new bucket: its name and canned ACL (it lives in the tenant's home region)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=3, max_length=63)
    acl: str = Field(default="private", max_length=40)
    tenant_id: uuid.UUID | None = None


class BucketRead(BaseModel):
    """A bucket with its settings and usage."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    tenant_id: uuid.UUID
    region_code: str
    versioning: str
    acl: str
    quota_bytes: int | None
    quota_objects: int | None
    used_bytes: int
    used_objects: int
    created_at: datetime


class KeyCreate(BaseModel):
    """A new access key: for the caller, or for a user they administer."""

    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID | None = None
    description: str = Field(default="", max_length=200)
    read_only: bool = False
    buckets: list[str] | None = Field(default=None, max_length=100)
    prefixes: list[str] | None = Field(default=None, max_length=100)


class KeyRead(BaseModel):
    """An access key (never its secret)."""

    model_config = ConfigDict(from_attributes=True)

    access_key_id: str
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    description: str
    read_only: bool
    buckets: list[str] | None
    prefixes: list[str] | None
    created_at: datetime
    last_used_at: datetime | None


class KeyIssued(KeyRead):
    """A new access key with its secret, shown this once."""

    secret: str


class UsageRead(BaseModel):
    """A tenant's usage against its quota."""

    tenant_id: uuid.UUID
    used_bytes: int
    used_objects: int
    quota_bytes: int | None
    quota_objects: int | None


@router.get("/buckets", name="store.bucket.list")
def list_buckets(session: SessionDep, actor: ActorDep) -> list[BucketRead]:
    """The buckets of every tenant where you may read buckets."""
    found: Sequence[Bucket] = service.list_buckets(session=session, actor=actor)
    return [BucketRead.model_validate(b) for b in found]


@router.post("/buckets", status_code=201, name="store.bucket.create")
def create_bucket(
    request: Request, body: BucketCreate, session: SessionDep, actor: ActorDep
) -> BucketRead:
    """Create a bucket in its tenant's home region."""
    if body.tenant_id is not None:  # a tenant the caller cannot see does not exist for them
        get_tenant_or_raise(session=session, actor=actor, tenant_id=body.tenant_id)
    bucket = service.create_bucket(
        session=session,
        actor=actor,
        context=_context(request),
        name=body.name,
        acl=body.acl,
        tenant_id=body.tenant_id,
    )
    return BucketRead.model_validate(bucket)


@router.get("/buckets/{bucket}", name="store.bucket.get")
def get_bucket(bucket: str, session: SessionDep, actor: ActorDep) -> BucketRead:
    """One bucket's settings and usage."""
    return BucketRead.model_validate(console.get_bucket(session=session, actor=actor, name=bucket))


@router.delete("/buckets/{bucket}", status_code=204, name="store.bucket.delete")
def delete_bucket(bucket: str, session: SessionDep, actor: ActorDep) -> Response:
    """Delete an empty bucket."""
    ref = console.visible_bucket(session=session, actor=actor, name=bucket)
    service.delete_bucket(session=session, actor=actor, name=ref.name)
    return Response(status_code=204)


@router.get("/keys", name="store.key.list")
def list_keys(
    session: SessionDep,
    actor: ActorDep,
    user_id: Annotated[uuid.UUID | None, Query()] = None,
) -> list[KeyRead]:
    """Your live access keys, or those of a user you administer."""
    found: Sequence[AccessKey] = keys.list_keys(session=session, actor=actor, user_id=user_id)
    return [KeyRead.model_validate(k) for k in found]


@router.post("/keys", status_code=201, name="store.key.create")
def create_key(
    request: Request, body: KeyCreate, session: SessionDep, actor: ActorDep
) -> KeyIssued:
    """Issue an access key; the answer holds its secret, which is never shown again."""
    if body.user_id is not None:  # a user the caller cannot see does not exist for them
        get_user_or_raise(session=session, actor=actor, user_id=body.user_id)
    issued = keys.issue_key(
        session=session,
        actor=actor,
        context=_context(request),
        user_id=body.user_id,
        buckets=body.buckets,
        prefixes=body.prefixes,
        read_only=body.read_only,
        description=body.description,
    )
    session.flush()  # the key's defaults (its creation time), for the answer
    read = KeyRead.model_validate(issued.key)
    return KeyIssued(**read.model_dump(), secret=issued.secret)


@router.delete("/keys/{access_key_id}", status_code=204, name="store.key.revoke")
def revoke_key(access_key_id: str, session: SessionDep, actor: ActorDep) -> Response:
    """Revoke an access key; it stops working at once."""
    keys.revoke_key(session=session, actor=actor, access_key_id=access_key_id[:20])
    return Response(status_code=204)


@router.get("/usage", name="store.usage.list")
def usage(
    session: SessionDep,
    actor: ActorDep,
    tenant_id: Annotated[uuid.UUID | None, Query()] = None,
) -> list[UsageRead]:
    """The usage and quota of every tenant whose buckets you may read (or of one)."""
    found = console.tenant_usages(session=session, actor=actor)
    if tenant_id is not None:
        found = [u for u in found if u.tenant.id == tenant_id]
        if not found:
            raise NotFound("no such tenant", resource="tenant")
    return [
        UsageRead(
            tenant_id=u.tenant.id,
            used_bytes=u.usage.used_bytes,
            used_objects=u.usage.used_objects,
            quota_bytes=u.usage.quota_bytes,
            quota_objects=u.usage.quota_objects,
        )
        for u in found
    ]
