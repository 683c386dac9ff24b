"""S3 access keys: a user's, acting as that user, optionally narrowed to some buckets or key
prefixes and to reading.

The secret is shown once, when the key is issued, and kept wrapped by the installation's master
key (SigV4 needs the secret itself on the server, so a hash will not do): someone who reads the
database alone cannot sign with it. A key works while its user is active and keeps the password
it had when the key was issued (``password_mark``); a new password, a deactivation or a
revocation stops it, within the few seconds resolved keys are cached. :func:`rewrap_keys`
wraps the secrets, and the tenants' data keys, again under a new master key.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from civicloud.core.actor import Actor
from civicloud.core.audit import record as audit
from civicloud.core.db import utcnow
from civicloud.core.identity.models import User
from civicloud.core.identity.service import administered_user_or_raise
from civicloud.core.roles.service import load_actor
from civicloud.store.context import StoreContext
from civicloud.store.errors import (
    AccessDenied,
    InvalidAccessKeyId,
    InvalidArgument,
    NoSuchAccessKey,
)
from civicloud.store.models import AccessKey, DataKey

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def password_mark(user: User) -> str:
    """What ties a key to the password its user had when it was issued."""
    return hashlib.sha256(f"store-key\n{user.password_hash or ''}".encode()).hexdigest()


def new_access_key_id() -> str:
    """``CC`` and 18 random base32 characters: 20, like AWS's."""
    return "CC" + "".join(secrets.choice(_ALPHABET) for _ in range(18))


@dataclass(frozen=True)
class IssuedKey:
    """A new key and its secret (shown once)."""

    key: AccessKey
    secret: str


def _scope(values: Sequence[str] | None, what: str, limit: int) -> list[str] | None:
    if values is None:
        return None
    cleaned = [v.strip() for v in values if v.strip()]
    if not cleaned or len(cleaned) > 100 or any(len(v) > limit for v in cleaned):
        raise InvalidArgument(
            "A key's %(what_label)s must be 1 to 100 values.", params={"what_label": what}
        )
    return cleaned


def issue_key(
    *,
    session: Session,
    actor: Actor,
    context: StoreContext,
    user_id: uuid.UUID | None = None,
    buckets: Sequence[str] | None = None,
    prefixes: Sequence[str] | None = None,
    read_only: bool = False,
    description: str = "",
) -> IssuedKey:
    """Issue an access key for ``user_id`` (default: the caller): one's own needs a Store
    permission somewhere, another user's needs the right to administer them."""
    owner_id = user_id or actor.user_id
    if owner_id is None:
        raise InvalidArgument("An access key belongs to a user.")
    if owner_id == actor.user_id:
        user = session.get(User, owner_id)
        if user is None or not any(
            g.allows("store.object.read") or g.allows("store.bucket.read") for g in actor.grants
        ):
            raise AccessDenied("You hold no Store permission to use an access key with.")
    else:
        user = administered_user_or_raise(session=session, actor=actor, user_id=owner_id)
    access_key_id = new_access_key_id()
    secret = secrets.token_urlsafe(30)[:40]
    key = AccessKey(
        access_key_id=access_key_id,
        user_id=user.id,
        tenant_id=user.tenant_id,
        secret_wrapped=context.master.wrap(secret.encode(), context=access_key_id.encode()),
        master_key_id=context.master.current_id,
        password_mark=password_mark(user),
        buckets=_scope(buckets, "buckets", 63),
        prefixes=_scope(prefixes, "prefixes", 1024),
        read_only=read_only,
        description=description.strip()[:200],
    )
    session.add(key)
    audit(
        session=session,
        actor=actor,
        action="store.key.issue",
        target=f"store-key:{access_key_id}",
        tenant_id=user.tenant_id,
        detail={
            "user": user.username,
            "read_only": read_only,
            "buckets": key.buckets,
            "prefixes": key.prefixes,
        },
    )
    return IssuedKey(key, secret)


def get_key_or_raise(*, session: Session, actor: Actor, access_key_id: str) -> AccessKey:
    """A key the actor may manage: their own, or one of a user they administer."""
    key = session.scalar(select(AccessKey).where(AccessKey.access_key_id == access_key_id))
    if key is None:
        raise NoSuchAccessKey("no such access key", params={"key": access_key_id[:20]})
    if key.user_id != actor.user_id:
        administered_user_or_raise(session=session, actor=actor, user_id=key.user_id)
    return key


def revoke_key(*, session: Session, actor: Actor, access_key_id: str) -> AccessKey:
    """Stop a key for good."""
    key = get_key_or_raise(session=session, actor=actor, access_key_id=access_key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit(
            session=session,
            actor=actor,
            action="store.key.revoke",
            target=f"store-key:{access_key_id}",
            tenant_id=key.tenant_id,
        )
    return key


def list_keys(
    *, session: Session, actor: Actor, user_id: uuid.UUID | None = None
) -> Sequence[AccessKey]:
    """The live keys of ``user_id`` (default: the caller's own)."""
    owner = user_id or actor.user_id
    if owner is None:
        return []
    if owner != actor.user_id:
        administered_user_or_raise(session=session, actor=actor, user_id=owner)
    return session.scalars(
        select(AccessKey)
        .where(AccessKey.user_id == owner, AccessKey.revoked_at.is_(None))
        .order_by(AccessKey.created_at)
    ).all()


@dataclass(frozen=True)
class Caller:
    """Who signed an S3 request: the key's user as an actor, the secret, and the key's scope."""

    actor: Actor
    access_key_id: str
    secret: str
    buckets: tuple[str, ...] | None
    prefixes: tuple[str, ...] | None
    read_only: bool

    def allows(
        self, bucket: str | None, key: str | None, *, write: bool, per_key: bool = False
    ) -> bool:
        """Whether the key's own scope admits this request (the user's grants are checked
        apart). A key narrowed to prefixes writes objects under them only, never a bucket
        (its ACL, versioning, the bucket itself), unless ``per_key``: the operation checks each
        key it touches."""
        if write and self.read_only:
            return False
        if bucket is not None and self.buckets is not None and bucket not in self.buckets:
            return False
        if self.prefixes is not None:
            if key is not None:
                return key.startswith(self.prefixes)
            if write and not per_key:
                return False
        return True


def cached_caller(context: StoreContext, access_key_id: str) -> Caller | None:
    """The caller behind ``access_key_id`` when resolved in the last few seconds (no database
    needed), else None: then :func:`resolve_key`."""
    cached = context.credentials.get(access_key_id)
    return cached if isinstance(cached, Caller) else None


def resolve_key(*, session: Session, context: StoreContext, access_key_id: str) -> Caller:
    """The caller behind ``access_key_id`` (``InvalidAccessKeyId`` when it is unknown, revoked,
    its user inactive or their password changed since it was issued)."""
    cached = cached_caller(context, access_key_id)
    if cached is not None:
        return cached
    refused = InvalidAccessKeyId(
        "The AWS Access Key Id you provided does not exist in our records.",
        params={"key": access_key_id[:20]},
    )
    if len(access_key_id) > 20:
        raise refused
    row = session.execute(
        select(AccessKey, User)
        .join(User, User.id == AccessKey.user_id)
        .where(AccessKey.access_key_id == access_key_id)
    ).first()
    if row is None:
        raise refused
    key, user = row
    if key.revoked_at is not None or not user.is_active or key.password_mark != password_mark(user):
        raise refused
    secret = context.master.unwrap(key.secret_wrapped, context=access_key_id.encode()).decode()
    caller = Caller(
        actor=load_actor(session=session, user=user, via=f"s3:{access_key_id}"),
        access_key_id=access_key_id,
        secret=secret,
        buckets=tuple(key.buckets) if key.buckets is not None else None,
        prefixes=tuple(key.prefixes) if key.prefixes is not None else None,
        read_only=key.read_only,
    )
    context.credentials.put(access_key_id, caller)
    return caller


def touch(session: Session, access_key_id: str) -> None:
    """Note that a key was used (at most every few minutes, by the caller)."""
    session.execute(
        update(AccessKey)
        .where(AccessKey.access_key_id == access_key_id)
        .values(last_used_at=utcnow())
    )


def rewrap_keys(*, session: Session, actor: Actor, context: StoreContext) -> tuple[int, int]:
    """Wrap every tenant's data key and every access-key secret again under the current master
    key (after ``context.master.rotate()``); how many of each, audited as one action. Objects
    are not rewritten: their data keys do not change."""
    current = context.master.current_id
    data_keys = access_keys = 0
    for data_key in session.scalars(select(DataKey).where(DataKey.master_key_id != current)):
        plain = context.master.unwrap(data_key.wrapped, context=data_key.tenant_id.bytes)
        data_key.wrapped = context.master.wrap(plain, context=data_key.tenant_id.bytes)
        data_key.master_key_id = current
        data_keys += 1
    for key in session.scalars(select(AccessKey).where(AccessKey.master_key_id != current)):
        bound = key.access_key_id.encode()
        secret = context.master.unwrap(key.secret_wrapped, context=bound)
        key.secret_wrapped = context.master.wrap(secret, context=bound)
        key.master_key_id = current
        access_keys += 1
    audit(
        session=session,
        actor=actor,
        action="store.master_key.rotate",
        target=f"store-master-key:{current}",
        detail={"data_keys": data_keys, "access_keys": access_keys},
    )
    return data_keys, access_keys
