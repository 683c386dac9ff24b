"""Store's rules for buckets, tenants' accounts and quotas.

Services take keyword arguments, ``session`` first, and never commit: the adapter (the S3 port,
a page, a command) owns the unit of work. Objects live in ``civicloud.store.objects``, access
keys in ``civicloud.store.keys``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, bindparam, func, select, update
from sqlalchemy.orm import Session

from civicloud.core.actor import Actor, authorize
from civicloud.core.audit import record as audit
from civicloud.core.caches import caches_of, invalidate_on_commit
from civicloud.core.db import Database
from civicloud.core.tenants.models import Tenant
from civicloud.core.tenants.service import in_subtrees
from civicloud.store import crypto
from civicloud.store.context import StoreContext
from civicloud.store.errors import (
    AccessDenied,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    InvalidArgument,
    InvalidLocationConstraint,
    InvalidQuota,
    NoSuchBucket,
    QuotaExceeded,
)
from civicloud.store.models import (
    CANNED_ACLS,
    Bucket,
    DataKey,
    ObjectVersion,
    StoreTenant,
    Upload,
)
from civicloud.store.names import check_bucket_name

#: Region names clients may sign with besides a bucket's own (S3 clients' default).
REGION_ALIASES = frozenset({"us-east-1"})


@dataclass(frozen=True)
class BucketRef:
    """What a request needs of a bucket: its ids, tenant, region and settings."""

    id: uuid.UUID
    name: str
    tenant_id: uuid.UUID
    tenant_path: str
    region_code: str
    versioning: str
    acl: str


def bucket_ref(session: Session, name: str) -> BucketRef:
    """The bucket called ``name`` (``NoSuchBucket``)."""
    row = session.execute(
        select(Bucket, Tenant.path)
        .join(Tenant, Tenant.id == Bucket.tenant_id)
        .where(Bucket.name == name)
    ).first()
    if row is None:
        raise NoSuchBucket("The specified bucket does not exist.", params={"bucket": name})
    bucket, path = row
    return BucketRef(
        bucket.id,
        bucket.name,
        bucket.tenant_id,
        path,
        bucket.region_code,
        bucket.versioning,
        bucket.acl,
    )


#: The per-process cache of buckets by name (``core.caches``): the S3 port looks a bucket up on
#: every request. A change to a bucket clears it when its transaction commits; other processes
#: see the change within the cache's few seconds.
BUCKETS = "store.buckets"


def cached_bucket_ref(session: Session, name: str) -> BucketRef:
    """:func:`bucket_ref`, from the cache when fresh."""
    caches = caches_of(session)
    cache = caches.get(BUCKETS) if caches is not None else None
    found = cache.get(name) if cache is not None else None
    if isinstance(found, BucketRef):
        return found
    ref = bucket_ref(session, name)
    if cache is not None:
        cache.put(name, ref)
    return ref


def peek_bucket_ref(db: Database, name: str) -> BucketRef | None:
    """The bucket ``name`` from the cache of ``db`` when fresh, without a unit of work (the
    S3 port's hot path); None: ask :func:`cached_bucket_ref` in a unit."""
    found = db.caches.get(BUCKETS).get(name)
    return found if isinstance(found, BucketRef) else None


def _buckets_changed(session: Session) -> None:
    invalidate_on_commit(session, BUCKETS)


def require(actor: Actor, permission: str, bucket: BucketRef) -> None:
    """Raise ``AccessDenied`` unless ``actor`` holds ``permission`` at the bucket's tenant (on
    the S3 port a bucket's existence is not hidden: names are global)."""
    if not actor.can(permission, bucket.tenant_path):
        raise AccessDenied("Access Denied", params={"bucket": bucket.name})


def ensure_account(session: Session, *, tenant_id: uuid.UUID, context: StoreContext) -> None:
    """The tenant's Store account and active data key, made on first use."""
    if session.get(StoreTenant, tenant_id) is None:
        session.add(StoreTenant(tenant_id=tenant_id))
    if (
        session.scalar(
            select(DataKey.id).where(DataKey.tenant_id == tenant_id, DataKey.active.is_(True))
        )
        is None
    ):
        cipher = context.settings.cipher
        session.add(
            DataKey(
                tenant_id=tenant_id,
                cipher=cipher,
                wrapped=context.master.wrap(crypto.new_data_key(cipher), context=tenant_id.bytes),
                master_key_id=context.master.current_id,
            )
        )
    session.flush()  # the account and key exist before a bucket refers to them


def home_tenant(session: Session, actor: Actor, tenant_id: uuid.UUID | None) -> Tenant:
    """The tenant a new bucket belongs to: ``tenant_id``, or the actor's home tenant."""
    chosen = tenant_id or actor.tenant_id
    tenant = session.get(Tenant, chosen) if chosen is not None else None
    if tenant is None:
        raise InvalidArgument("A bucket needs a tenant to belong to.")
    return tenant


def create_bucket(
    *,
    session: Session,
    actor: Actor,
    context: StoreContext,
    name: str,
    location: str | None = None,
    tenant_id: uuid.UUID | None = None,
    acl: str = "private",
) -> Bucket:
    """Create a bucket for a tenant (the actor's home tenant unless ``tenant_id``), in that
    tenant's home region: a ``location`` naming another region is refused (residency)."""
    check_bucket_name(name)
    check_acl(acl)
    tenant = home_tenant(session, actor, tenant_id)
    authorize(actor, "store.bucket.admin", path=tenant.path, what="tenant")
    if location not in (None, "", tenant.region_code):
        raise InvalidLocationConstraint(
            "The specified location-constraint is not valid: buckets of %(tenant)s live in "
            "%(region)s.",
            params={"tenant": tenant.slug, "region": tenant.region_code},
        )
    existing = session.scalar(select(Bucket).where(Bucket.name == name))
    if existing is not None:
        if existing.tenant_id == tenant.id:
            raise BucketAlreadyOwnedByYou(
                "Your previous request to create the named bucket succeeded and you already "
                "own it.",
                params={"bucket": name},
            )
        raise BucketAlreadyExists(
            "The requested bucket name is not available.", params={"bucket": name}
        )
    ensure_account(session, tenant_id=tenant.id, context=context)
    bucket = Bucket(
        name=name,
        tenant_id=tenant.id,
        region_code=tenant.region_code,
        owner_id=actor.user_id,
        acl=acl,
    )
    session.add(bucket)
    session.flush()  # the id, for the audit record
    _buckets_changed(session)
    audit(
        session=session,
        actor=actor,
        action="store.bucket.create",
        target=f"bucket:{name}",
        tenant_id=tenant.id,
        detail={"region": tenant.region_code, "acl": acl},
    )
    return bucket


def delete_bucket(*, session: Session, actor: Actor, name: str) -> None:
    """Delete an empty bucket: no versions, no delete markers, no multipart uploads."""
    ref = bucket_ref(session, name)
    require(actor, "store.bucket.admin", ref)
    bucket = session.get(Bucket, ref.id, with_for_update=True)
    assert bucket is not None
    if session.scalar(select(ObjectVersion.id).where(ObjectVersion.bucket_id == ref.id).limit(1)):
        raise BucketNotEmpty(
            "The bucket you tried to delete is not empty.", params={"bucket": name}
        )
    if session.scalar(select(Upload.id).where(Upload.bucket_id == ref.id).limit(1)):
        raise BucketNotEmpty(
            "The bucket you tried to delete has multipart uploads in progress.",
            params={"bucket": name},
        )
    session.delete(bucket)
    _buckets_changed(session)
    audit(
        session=session,
        actor=actor,
        action="store.bucket.delete",
        target=f"bucket:{name}",
        tenant_id=ref.tenant_id,
    )


def check_acl(acl: str) -> str:
    """``acl`` if it is a canned ACL Store knows."""
    if acl not in CANNED_ACLS:
        raise InvalidArgument("The canned ACL is not valid.", params={"acl": acl[:40]})
    return acl


def set_bucket_acl(*, session: Session, actor: Actor, name: str, acl: str) -> None:
    """Give a bucket one of the canned ACLs (audited)."""
    check_acl(acl)
    ref = bucket_ref(session, name)
    require(actor, "store.bucket.admin", ref)
    if ref.acl == acl:
        return
    session.execute(update(Bucket).where(Bucket.id == ref.id).values(acl=acl))
    _buckets_changed(session)
    audit(
        session=session,
        actor=actor,
        action="store.bucket.acl",
        target=f"bucket:{name}",
        tenant_id=ref.tenant_id,
        detail={"from": ref.acl, "to": acl},
    )


def set_versioning(*, session: Session, actor: Actor, name: str, status: str) -> None:
    """Turn versioning on (``Enabled``) or suspend it (``Suspended``); once on, a bucket never
    goes back to off, as in S3."""
    ref = bucket_ref(session, name)
    require(actor, "store.bucket.admin", ref)
    wanted = {"Enabled": "enabled", "Suspended": "suspended"}.get(status)
    if wanted is None:
        raise InvalidArgument("The versioning status is not valid.", params={"status": status[:40]})
    if wanted == "suspended" and ref.versioning == "off":
        return
    if ref.versioning == wanted:
        return
    session.execute(update(Bucket).where(Bucket.id == ref.id).values(versioning=wanted))
    _buckets_changed(session)
    audit(
        session=session,
        actor=actor,
        action="store.bucket.versioning",
        target=f"bucket:{name}",
        tenant_id=ref.tenant_id,
        detail={"from": ref.versioning, "to": wanted},
    )


def list_buckets(*, session: Session, actor: Actor) -> Sequence[Bucket]:
    """The buckets of every tenant where ``actor`` may read buckets, sorted by name."""
    roots = actor.roots("store.bucket.read")
    if roots == []:
        return []
    query = select(Bucket).join(Tenant, Tenant.id == Bucket.tenant_id).order_by(Bucket.name)
    if roots is not None:
        query = query.where(in_subtrees(Tenant.path, roots))
    return session.scalars(query).all()


def set_quota(
    *,
    session: Session,
    actor: Actor,
    bucket: str | None = None,
    tenant_id: uuid.UUID | None = None,
    max_bytes: int | None,
    max_objects: int | None,
    context: StoreContext,
) -> None:
    """Set (``None``: lift) the quota of a bucket, or of a tenant (all its buckets)."""
    for value in (max_bytes, max_objects):
        if value is not None and value < 0:
            raise InvalidQuota("A quota cannot be negative.")
    if bucket is not None:
        ref = bucket_ref(session, bucket)
        require(actor, "store.bucket.admin", ref)
        session.execute(
            update(Bucket)
            .where(Bucket.id == ref.id)
            .values(quota_bytes=max_bytes, quota_objects=max_objects)
        )
        target, tenant = f"bucket:{bucket}", ref.tenant_id
    else:
        tenant_row = session.get(Tenant, tenant_id) if tenant_id else None
        if tenant_row is None:
            raise InvalidArgument("A quota needs a bucket or a tenant.")
        authorize(actor, "store.quota.admin", path=tenant_row.path, what="tenant")
        ensure_account(session, tenant_id=tenant_row.id, context=context)
        session.execute(
            update(StoreTenant)
            .where(StoreTenant.tenant_id == tenant_row.id)
            .values(quota_bytes=max_bytes, quota_objects=max_objects)
        )
        target, tenant = f"tenant:{tenant_row.slug}", tenant_row.id
    audit(
        session=session,
        actor=actor,
        action="store.quota.set",
        target=target,
        tenant_id=tenant,
        detail={"max_bytes": max_bytes, "max_objects": max_objects},
    )


def _charge_statement(table: type[Bucket] | type[StoreTenant], *, grows: bool) -> Any:
    key = table.id if table is Bucket else StoreTenant.tenant_id
    size, objects = bindparam("size", type_=BigInteger), bindparam("objects", type_=BigInteger)
    statement = (
        update(table)
        .where(key == bindparam("key"))
        .values(used_bytes=table.used_bytes + size, used_objects=table.used_objects + objects)
        .execution_options(synchronize_session=False)
    )
    if grows:
        statement = statement.where(
            (table.quota_bytes.is_(None)) | (table.used_bytes + size <= table.quota_bytes),
            (table.quota_objects.is_(None)) | (table.used_objects + objects <= table.quota_objects),
        )
    return statement


#: The four statements ``charge`` runs, built once: every write runs two of them, and building
#: them anew cost more than running them (the store_throughput benchmark's small PUTs).
_CHARGES = {
    (table, grows): _charge_statement(table, grows=grows)
    for table in (Bucket, StoreTenant)
    for grows in (False, True)
}


def charge(
    session: Session, *, bucket_id: uuid.UUID, tenant_id: uuid.UUID, size: int, objects: int
) -> None:
    """Add ``size`` bytes and ``objects`` objects to a bucket's and its tenant's usage, refused
    with ``QuotaExceeded`` where a quota would be passed. Each is one conditional UPDATE, so
    concurrent uploads can never pass a quota together; releases (negative) always succeed."""
    if size == 0 and objects == 0:
        return
    grows = size > 0 or objects > 0
    # On the connection, not through the ORM's bulk-update path: the statements touch no
    # loaded entity (synchronize_session=False), and every write runs two of them.
    connection = session.connection()
    for table, key in ((Bucket, bucket_id), (StoreTenant, tenant_id)):
        done = connection.execute(
            _CHARGES[(table, grows)], {"key": key, "size": size, "objects": objects}
        )
        if done.rowcount != 1:
            raise QuotaExceeded(
                "The %(what_label)s's quota would be exceeded.",
                params={"what_label": "bucket" if table is Bucket else "tenant"},
            )


#: A bucket's and its tenant's quotas and usage, in one statement (the S3 port's pre-check).
ROOM = (
    select(
        Bucket.quota_bytes,
        Bucket.used_bytes,
        Bucket.quota_objects,
        Bucket.used_objects,
        StoreTenant.quota_bytes,
        StoreTenant.used_bytes,
        StoreTenant.quota_objects,
        StoreTenant.used_objects,
    )
    .outerjoin(StoreTenant, StoreTenant.tenant_id == Bucket.tenant_id)
    .where(Bucket.id == bindparam("bucket"))
)


def has_room(session: Session, *, bucket_id: uuid.UUID, size: int) -> bool:
    """Whether ``size`` more bytes and one more object fit the bucket's and tenant's quotas
    now (the commit's conditional updates decide; this refuses early)."""
    row = session.connection().execute(ROOM, {"bucket": bucket_id}).first()
    if row is None:
        return True
    for quota_bytes, used_bytes, quota_objects, used_objects in (row[0:4], row[4:8]):
        if quota_bytes is not None and (used_bytes or 0) + size > quota_bytes:
            return False
        if quota_objects is not None and (used_objects or 0) + 1 > quota_objects:
            return False
    return True


@dataclass(frozen=True)
class Usage:
    """What a tenant or bucket uses, and its quota."""

    used_bytes: int
    used_objects: int
    quota_bytes: int | None
    quota_objects: int | None


def tenant_usage(*, session: Session, tenant_id: uuid.UUID) -> Usage:
    """The tenant's usage and quota (zeros before its first bucket)."""
    row = session.get(StoreTenant, tenant_id)
    if row is None:
        return Usage(0, 0, None, None)
    return Usage(row.used_bytes, row.used_objects, row.quota_bytes, row.quota_objects)


def counted_usage(session: Session, bucket_id: uuid.UUID) -> tuple[int, int]:
    """A bucket's usage counted from its versions (fsck compares it with the counters)."""
    row = session.execute(
        select(func.coalesce(func.sum(ObjectVersion.size), 0), func.count(ObjectVersion.id)).where(
            ObjectVersion.bucket_id == bucket_id, ObjectVersion.is_delete_marker.is_(False)
        )
    ).one()
    return int(row[0]), int(row[1])
