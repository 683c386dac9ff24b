"""What Store's console and HTTP API need beyond the services: buckets as a reader may see them,
a bucket browsed by folder, uploads from a form, share links, usage over time and the access
log's queries.

Framework-free like the services: keyword arguments, ``session`` first, nothing committed here.
An upload is three steps, as the S3 port's writes are, so that no transaction is held while
bytes stream: :func:`prepare_upload` (a read unit), :func:`receive_upload` (no database) and
:func:`commit_upload` (a write unit); the page runs them. A bucket the reader may not see at all is ``NoSuchBucket`` (404), so that
the console never says which names another tenant uses; one they see but may not change is
``AccessDenied`` (403).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from civicloud.core.actor import Actor
from civicloud.core.db import utcnow
from civicloud.core.tenants.models import Tenant
from civicloud.core.tenants.service import in_subtrees
from civicloud.store import listing, sigv4
from civicloud.store.context import OpenKey, StoreContext
from civicloud.store.errors import (
    AccessDenied,
    EntityTooLarge,
    InvalidArgument,
    NoSuchAccessKey,
    NoSuchBucket,
    QuotaExceeded,
)
from civicloud.store.models import (
    AccessKey,
    AccessRecord,
    Bucket,
    ObjectVersion,
    StoreTenant,
    UsageSample,
)
from civicloud.store.names import check_key
from civicloud.store.objects import (
    Incoming,
    NewVersion,
    StoredObject,
    Written,
    commit_version,
    write_blob,
)
from civicloud.store.service import BucketRef, Usage, bucket_ref, has_room

BUCKET_READ = "store.bucket.read"
BUCKET_ADMIN = "store.bucket.admin"
OBJECT_READ = "store.object.read"
OBJECT_WRITE = "store.object.write"
QUOTA_ADMIN = "store.quota.admin"
LOG_READ = "store.log.read"
#: The expiries a share link offers, in seconds: 15 minutes to 7 days.
SHARE_EXPIRIES = (900, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400)
#: Objects (and folders) a browser page shows at most.
PAGE_SIZE = 100
READ_STEP = 1 << 20


def may_see(actor: Actor, ref: BucketRef) -> bool:
    """Whether ``actor`` may see the bucket at all (its settings or its objects)."""
    return actor.can(BUCKET_READ, ref.tenant_path) or actor.can(OBJECT_READ, ref.tenant_path)


def visible_bucket(
    *, session: Session, actor: Actor, name: str, permission: str | None = None
) -> BucketRef:
    """The bucket ``name`` as ``actor`` may see it (``NoSuchBucket`` when they may not see it at
    all), and ``AccessDenied`` unless they hold ``permission`` there."""
    if not name or len(name) > 63:
        raise NoSuchBucket("The specified bucket does not exist.", params={"bucket": name[:63]})
    ref = bucket_ref(session, name)
    if not may_see(actor, ref):
        raise NoSuchBucket("The specified bucket does not exist.", params={"bucket": name})
    if permission is not None and not actor.can(permission, ref.tenant_path):
        raise AccessDenied("Access Denied", params={"bucket": name})
    return ref


def buckets_query(actor: Actor) -> Select[Any]:
    """The buckets ``actor`` may read (``store.bucket.read``), unexecuted, for the list."""
    query = select(Bucket).join(Tenant, Tenant.id == Bucket.tenant_id)
    roots = actor.roots(BUCKET_READ)
    if roots is None:
        return query
    if not roots:
        return query.where(Bucket.id.is_(None))
    return query.where(in_subtrees(Tenant.path, roots))


def get_bucket(*, session: Session, actor: Actor, name: str) -> Bucket:
    """One bucket the reader may read, with its settings and usage."""
    ref = visible_bucket(session=session, actor=actor, name=name, permission=BUCKET_READ)
    bucket = session.get(Bucket, ref.id)
    if bucket is None:
        raise NoSuchBucket("The specified bucket does not exist.", params={"bucket": name})
    return bucket


# ---- browsing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Folder:
    """A bucket's folder as the browser shows it: its prefix and what is in it."""

    prefix: str
    folders: list[str]
    objects: list[ObjectVersion]
    #: Where the next page starts, when there is one.
    next_after: str | None


def breadcrumbs(prefix: str) -> list[tuple[str, str]]:
    """Each folder from the bucket's top down to ``prefix``: ``(name, prefix)`` pairs."""
    crumbs: list[tuple[str, str]] = []
    path = ""
    for part in prefix.split("/")[:-1] if prefix.endswith("/") else prefix.split("/"):
        if not part:
            continue
        path += part + "/"
        crumbs.append((part, path))
    return crumbs


def browse(
    *,
    session: Session,
    bucket: BucketRef,
    prefix: str = "",
    search: str = "",
    start_after: str | None = None,
    limit: int = PAGE_SIZE,
) -> Folder:
    """A page of one folder of the bucket (``/`` separates folders): its sub-folders and objects,
    optionally those whose names start with ``search``, after ``start_after``."""
    wanted = prefix + search
    if len(wanted.encode("utf-8")) > 1024 or "\x00" in wanted:
        raise InvalidArgument("The prefix is not valid.")
    if start_after is not None and not start_after.startswith(wanted):
        start_after = None
    page = listing.list_objects(
        session,
        bucket.id,
        prefix=wanted,
        delimiter="/",
        start_after=start_after,
        max_keys=max(1, min(limit, 1000)),
    )
    return Folder(
        prefix=prefix,
        folders=page.prefixes,
        objects=page.entries,
        next_after=page.next_marker if page.truncated else None,
    )


def versions_of(*, session: Session, bucket: BucketRef, key: str) -> list[ObjectVersion]:
    """Every version and delete marker of ``key``, newest first (at most 1,000)."""
    check_key(key)
    return list(
        session.scalars(
            select(ObjectVersion)
            .where(ObjectVersion.bucket_id == bucket.id, ObjectVersion.key == key)
            .order_by(ObjectVersion.id.desc())
            .limit(1000)
        )
    )


# ---- uploads --------------------------------------------------------------------------------


def upload_key(prefix: str, filename: str) -> str:
    """The key a file uploaded into folder ``prefix`` gets: its (relative) name with ``\\``
    turned into ``/`` and no empty, ``.`` or ``..`` parts, so a folder keeps its structure and
    nothing climbs out of the folder."""
    parts = [p for p in filename.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if not parts:
        raise InvalidArgument("A file needs a name.")
    return check_key(prefix + "/".join(parts))


@dataclass(frozen=True)
class Uploaded:
    """A file the console stored."""

    key: str
    size: int
    etag: str
    version_id: str


def prepare_upload(
    *,
    session: Session,
    context: StoreContext,
    actor: Actor,
    bucket: BucketRef,
    key: str,
    length: int | None = None,
) -> OpenKey:
    """Check an upload of ``key`` before its bytes are read (the actor may write, the key is
    valid, a declared ``length`` fits the size limit and the quota) and return the tenant's data
    key to encrypt it with. Reads only."""
    if not actor.can(OBJECT_WRITE, bucket.tenant_path):
        raise AccessDenied("Access Denied", params={"bucket": bucket.name})
    check_key(key)
    limit = context.settings.max_put_bytes
    if length is not None and length > limit:
        raise EntityTooLarge(
            "Your proposed upload exceeds the maximum allowed object size.",
            params={"max_size": limit},
        )
    if length is not None and not has_room(session, bucket_id=bucket.id, size=length):
        raise QuotaExceeded("The quota of the bucket or its tenant would be exceeded.")
    data_key = context.active_key(session, bucket.tenant_id)
    if data_key is None:
        raise InvalidArgument("The bucket's tenant has no data key.")
    return data_key


def receive_upload(context: StoreContext, data_key: OpenKey, stream: BinaryIO) -> Written:
    """Stream ``stream`` into a new blob, encrypted and durable, refusing it past the size limit
    (nothing is left behind then). No database: the caller commits it with
    :func:`commit_upload`, outside any transaction while the bytes arrive."""
    limit = context.settings.max_put_bytes
    seen = 0

    def read(n: int) -> bytes:
        nonlocal seen
        chunk = stream.read(n)
        seen += len(chunk)
        if seen > limit:
            raise EntityTooLarge(
                "Your proposed upload exceeds the maximum allowed object size.",
                params={"max_size": limit},
            )
        return chunk

    return write_blob(context, data_key, Incoming(read=read, length=None))


def commit_upload(
    *,
    session: Session,
    actor: Actor,
    bucket: BucketRef,
    key: str,
    written: Written,
    content_type: str,
) -> Uploaded:
    """Make the received blob ``written`` the latest version of ``key`` (the quota charged
    here). If this fails, the caller deletes the blob (``context.backend.delete``)."""
    current = session.get(Bucket, bucket.id)
    if current is None:
        raise NoSuchBucket("The specified bucket does not exist.")
    ref = BucketRef(
        bucket.id,
        bucket.name,
        bucket.tenant_id,
        bucket.tenant_path,
        bucket.region_code,
        current.versioning,
        current.acl,
    )
    new = NewVersion(
        size=written.size,
        etag=written.etag,
        headers={"content-type": _content_type(content_type)},
        blob_id=written.blob_id,
        data_key_id=written.data_key_id,
    )
    version = commit_version(session=session, bucket=ref, key=key, new=new, owner_id=actor.user_id)
    return Uploaded(key, written.size, written.etag, version.version_id)


def _content_type(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 200 or any(ord(c) < 32 or ord(c) > 126 for c in value):
        return "binary/octet-stream"
    return value


def content_disposition(key: str) -> str:
    """A download's ``Content-Disposition``: the key's last part as the file's name (RFC 6266,
    an ASCII fallback and the UTF-8 name)."""
    name = key.rsplit("/", 1)[-1] or "download"
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def downloaded(context: StoreContext, stored: StoredObject) -> Callable[[], Any]:
    """The plain bytes of ``stored`` as a generator factory for a streamed answer."""
    from civicloud.store.objects import read_range

    def chunks() -> Any:
        if stored.size == 0:
            return
        yield from read_range(context, stored, 0, stored.size - 1)

    return chunks


# ---- share links ----------------------------------------------------------------------------


def s3_public_url(context: StoreContext) -> str:
    """Where clients reach the S3 port: ``store.public_url``, else where it listens."""
    settings = context.settings
    if settings.public_url:
        return settings.public_url.rstrip("/")
    scheme = "http" if settings.tls == "off" else "https"
    host = settings.s3_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - where it listens, not a binding
        host = "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{settings.s3_port}"


def own_keys(*, session: Session, actor: Actor) -> Sequence[AccessKey]:
    """The caller's live access keys that may read."""
    if actor.user_id is None:
        return []
    return session.scalars(
        select(AccessKey)
        .where(AccessKey.user_id == actor.user_id, AccessKey.revoked_at.is_(None))
        .order_by(AccessKey.created_at)
    ).all()


def share_link(
    *,
    session: Session,
    actor: Actor,
    context: StoreContext,
    bucket: BucketRef,
    key: str,
    access_key_id: str,
    expires_seconds: int,
    version_id: str | None = None,
    now: datetime | None = None,
) -> str:
    """A presigned GET URL of ``key`` signed with one of the caller's own keys, valid for
    ``expires_seconds`` (15 minutes to the installation's longest, at most 7 days)."""
    longest = min(context.settings.max_presign_seconds, sigv4.MAX_EXPIRES_SECONDS)
    if not 900 <= expires_seconds <= longest:
        raise InvalidArgument(
            "A link expires after %(low)s to %(high)s seconds.",
            params={"low": 900, "high": longest},
        )
    check_key(key)
    found = next(
        (k for k in own_keys(session=session, actor=actor) if k.access_key_id == access_key_id),
        None,
    )
    if found is None:
        raise NoSuchAccessKey("no such access key", params={"key": access_key_id[:20]})
    secret = context.master.unwrap(found.secret_wrapped, context=found.access_key_id.encode())
    base = s3_public_url(context)
    parts = urlsplit(base)
    path = (parts.path.rstrip("/") or "") + "/" + quote(bucket.name, safe="") + "/"
    path += quote(key, safe="/~")
    query = [("versionId", version_id)] if version_id else []
    signed = sigv4.presign(
        method="GET",
        host=parts.netloc,
        path=path,
        query=query,
        access_key=found.access_key_id,
        secret=secret.decode(),
        region=bucket.region_code,
        now=now or utcnow(),
        expires_seconds=expires_seconds,
    )
    return f"{parts.scheme}://{parts.netloc}{path}?{signed}"


# ---- usage ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TenantUsage:
    """A tenant's usage as the usage page shows it."""

    tenant: Tenant
    usage: Usage

    @property
    def share(self) -> float | None:
        """The share of the byte quota used (``None`` without a quota)."""
        quota = self.usage.quota_bytes
        if not quota:
            return None
        return self.usage.used_bytes / quota


def tenant_usages(*, session: Session, actor: Actor) -> list[TenantUsage]:
    """The usage of every tenant with a Store account whose buckets ``actor`` may read."""
    roots = actor.roots(BUCKET_READ)
    if roots == []:
        return []
    query = select(StoreTenant, Tenant).join(Tenant, Tenant.id == StoreTenant.tenant_id)
    if roots is not None:
        query = query.where(in_subtrees(Tenant.path, roots))
    rows = session.execute(query.order_by(Tenant.path).limit(500)).all()
    return [
        TenantUsage(
            tenant,
            Usage(row.used_bytes, row.used_objects, row.quota_bytes, row.quota_objects),
        )
        for row, tenant in rows
    ]


def usage_series(
    *,
    session: Session,
    tenant_id: uuid.UUID,
    zone: tzinfo = UTC,
    days: int = 30,
    now: datetime | None = None,
) -> list[UsageSample]:
    """A tenant's usage samples of the last ``days`` days, oldest first (at most one a day is
    kept in the answer: the last of each day in the installation's ``zone``)."""
    since = (now or utcnow()) - timedelta(days=days)
    samples = session.scalars(
        select(UsageSample)
        .where(UsageSample.tenant_id == tenant_id, UsageSample.at >= since)
        .order_by(UsageSample.at)
    ).all()
    by_day: dict[str, UsageSample] = {}
    for sample in samples:
        by_day[sample.at.astimezone(zone).date().isoformat()] = sample
    return list(by_day.values())


def quota_tenant(*, session: Session, actor: Actor, tenant_id: uuid.UUID) -> Tenant:
    """A tenant whose quota ``actor`` may set (``store.quota.admin`` there); ``NoSuchBucket``-like
    ``NotFound`` otherwise."""
    from civicloud.core.errors import NotFound

    tenant = session.get(Tenant, tenant_id)
    if tenant is None or not actor.can(QUOTA_ADMIN, tenant.path):
        raise NotFound("no such tenant", resource="tenant")
    return tenant


# ---- the access log -------------------------------------------------------------------------


def access_log_query(actor: Actor) -> Select[Any]:
    """The access records of the tenants where ``actor`` may read the log, unexecuted."""
    query = select(AccessRecord).join(Tenant, Tenant.id == AccessRecord.tenant_id)
    roots = actor.roots(LOG_READ)
    if roots is None:
        return query
    if not roots:
        return query.where(AccessRecord.id.is_(None))
    return query.where(in_subtrees(Tenant.path, roots))
