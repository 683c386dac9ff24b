"""Store's test data: a tenant's S3 user with an access key, and clients for the S3 port."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM, grant, make_user

from civicloud.core.actor import Actor
from civicloud.core.identity.models import User
from civicloud.core.identity.passwords import Passwords
from civicloud.core.tenants.models import Tenant
from civicloud.store.context import StoreContext
from civicloud.store.keys import issue_key


@dataclass(frozen=True)
class S3Member:
    """A user holding a Store role at a tenant, and an access key of theirs."""

    user: User
    tenant: Tenant
    access_key: str
    secret: str


def make_s3_member(
    session: Session,
    passwords: Passwords,
    context: StoreContext,
    *,
    tenant: Tenant,
    role: str | None = "store_admin",
    actor: Actor = SYSTEM,
    **scope: Any,
) -> S3Member:
    """A user of ``tenant`` with ``role`` there and an access key (narrowed by ``scope``:
    ``buckets``, ``prefixes``, ``read_only``)."""
    user = make_user(session, passwords, tenant=tenant)
    if role is not None:
        grant(session, user=user, role=role, tenant=tenant)
    issued = issue_key(session=session, actor=actor, context=context, user_id=user.id, **scope)
    return S3Member(user, tenant, issued.key.access_key_id, issued.secret)
