"""Store's tables: buckets, object versions and their parts, multipart uploads, access keys,
tenants' data keys and usage, and the access log.

The rules that keep data from being lost or listed twice are constraints here, not only code:

- ``store_bucket.name`` is unique across the installation (S3's rule).
- An object key has at most one *latest* version per bucket: a partial unique index on
  ``(bucket_id, key) WHERE is_latest``; create-if-absent (``If-None-Match: *``) and plain
  overwrites racing each other meet there, so exactly one wins.
- ``(bucket_id, key, version_id)`` is unique: a version id names one version.
- Usage counters never go negative (checks), and quotas are enforced by conditional updates
  of those counters (``service.charge``), atomic under concurrent uploads.
- Keys are compared byte-wise (collation ``C`` on PostgreSQL; SQLite's ``BINARY``), so listings
  come in S3's order: UTF-8 binary.
- ``store_access_log`` is append-only (triggers refuse UPDATE and DELETE).
- Bytes are never referenced before they are durable: a version or part row names a blob only
  after the blob was fsynced and renamed into place; a blob no longer referenced is queued in
  ``store_garbage`` in the same transaction that dropped its last reference.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from civicloud.core.db import Base, new_id, utcnow

#: An object key: byte order on every database.
KeyString = String(1024).with_variant(String(1024, collation="C"), "postgresql")
#: A bucket name's characters are ASCII, but compared byte-wise too (ListBuckets is sorted).
NameString = String(63).with_variant(String(63, collation="C"), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")

VERSIONING_STATES = ("off", "enabled", "suspended")
CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read")


class StoreTenant(Base):
    """A tenant's Store account: its quotas and what it uses (every version's bytes count)."""

    __tablename__ = "store_tenant"
    __table_args__ = (
        CheckConstraint("used_bytes >= 0", name="used_bytes_positive"),
        CheckConstraint("used_objects >= 0", name="used_objects_positive"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="RESTRICT"), primary_key=True
    )
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    quota_objects: Mapped[int | None] = mapped_column(BigInteger)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    used_objects: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DataKey(Base):
    """A tenant's data key, wrapped by the installation's master key (rewrapped on rotation,
    never rewritten otherwise: objects name the key they were encrypted with)."""

    __tablename__ = "store_data_key"
    __table_args__ = (
        Index(
            "ix_store_data_key_active",
            "tenant_id",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="RESTRICT"))
    cipher: Mapped[str] = mapped_column(String(20))
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Bucket(Base):
    """A bucket: a tenant's, in the tenant's home region."""

    __tablename__ = "store_bucket"
    __table_args__ = (
        CheckConstraint("used_bytes >= 0", name="used_bytes_positive"),
        CheckConstraint("used_objects >= 0", name="used_objects_positive"),
        CheckConstraint("versioning IN ('off', 'enabled', 'suspended')", name="versioning_known"),
        CheckConstraint(
            "acl IN ('private', 'public-read', 'public-read-write', 'authenticated-read')",
            name="acl_known",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(NameString, unique=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="RESTRICT"), index=True
    )
    region_code: Mapped[str] = mapped_column(ForeignKey("region.code", ondelete="RESTRICT"))
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    versioning: Mapped[str] = mapped_column(String(10), default="off")
    acl: Mapped[str] = mapped_column(String(20), default="private")
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    quota_objects: Mapped[int | None] = mapped_column(BigInteger)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    used_objects: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ObjectVersion(Base):
    """One version of an object, or a delete marker. ``id`` grows with every write, so the
    newest version of a key is the one with the highest id. ``version_id`` is ``null`` for
    objects written while versioning was off or suspended."""

    __tablename__ = "store_object"
    __table_args__ = (
        UniqueConstraint("bucket_id", "key", "version_id", name="uq_store_object_version"),
        Index(
            "ix_store_object_latest",
            "bucket_id",
            "key",
            unique=True,
            sqlite_where=text("is_latest"),
            postgresql_where=text("is_latest"),
        ),
        Index("ix_store_object_versions", "bucket_id", "key", "id"),
        # garbage collection and fsck ask whether anything names a blob
        Index("ix_store_object_blob", "blob_id"),
        CheckConstraint("size >= 0", name="size_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    bucket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("store_bucket.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(KeyString)
    version_id: Mapped[str] = mapped_column(String(32))
    is_latest: Mapped[bool] = mapped_column(default=True)
    is_delete_marker: Mapped[bool] = mapped_column(default=False)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    etag: Mapped[str] = mapped_column(String(80), default="")
    #: Content-Type, Content-Encoding, …, the user metadata (``x-amz-meta-*``, lower-case
    #: names without the prefix) and the object's canned ACL.
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    acl: Mapped[str] = mapped_column(String(20), default="private")
    #: The checksum stored with the object: algorithm (CRC32, …), base64 value, and type
    #: (FULL_OBJECT or COMPOSITE).
    checksum_algorithm: Mapped[str | None] = mapped_column(String(10))
    checksum_value: Mapped[str | None] = mapped_column(String(120))
    checksum_type: Mapped[str | None] = mapped_column(String(12))
    #: A single-part object's blob; ``None`` for multipart objects (their ``store_object_part``
    #: rows) and delete markers.
    blob_id: Mapped[str | None] = mapped_column(String(32))
    data_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("store_data_key.id"))
    parts_count: Mapped[int] = mapped_column(default=0)
    owner_id: Mapped[uuid.UUID | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ObjectPart(Base):
    """A part of a multipart object, in order, with where its bytes start in the object."""

    __tablename__ = "store_object_part"
    __table_args__ = (Index("ix_store_object_part_blob", "blob_id"),)

    object_id: Mapped[int] = mapped_column(
        ForeignKey("store_object.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(40))
    checksum_value: Mapped[str | None] = mapped_column(String(120))
    blob_id: Mapped[str] = mapped_column(String(32))


class Upload(Base):
    """A multipart upload in progress."""

    __tablename__ = "store_upload"
    __table_args__ = (Index("ix_store_upload_bucket_key", "bucket_id", "key", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    bucket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("store_bucket.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(KeyString)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    acl: Mapped[str] = mapped_column(String(20), default="private")
    checksum_algorithm: Mapped[str | None] = mapped_column(String(10))
    checksum_type: Mapped[str | None] = mapped_column(String(12))
    initiator_id: Mapped[uuid.UUID | None] = mapped_column()
    initiator: Mapped[str] = mapped_column(String(160), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    touched_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class UploadPart(Base):
    """A part uploaded to a multipart upload (a part number uploaded again replaces it)."""

    __tablename__ = "store_upload_part"
    __table_args__ = (Index("ix_store_upload_part_blob", "blob_id"),)

    upload_id: Mapped[str] = mapped_column(
        ForeignKey("store_upload.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(40))
    checksum_value: Mapped[str | None] = mapped_column(String(120))
    blob_id: Mapped[str] = mapped_column(String(32))
    data_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("store_data_key.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Garbage(Base):
    """A blob no longer referenced, queued for deletion in the transaction that dropped its
    last reference (deleted after the commit, or by ``store.collect_garbage``)."""

    __tablename__ = "store_garbage"

    blob_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessKey(Base):
    """An S3 access key: a user's, acting as that user, optionally narrowed. The secret is kept
    wrapped by the master key (SigV4 needs it on the server); ``password_mark`` ties the key to
    the user's password at issue, so setting a new password stops it."""

    __tablename__ = "store_access_key"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    access_key_id: Mapped[str] = mapped_column(String(20), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="RESTRICT"))
    secret_wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))
    password_mark: Mapped[str] = mapped_column(String(64))
    #: ``None``: every bucket the user may reach; else these bucket names only.
    buckets: Mapped[list[str] | None] = mapped_column(JSON)
    #: ``None``: every key; else keys starting with one of these.
    prefixes: Mapped[list[str] | None] = mapped_column(JSON)
    read_only: Mapped[bool] = mapped_column(default=False)
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class UsageSample(Base):
    """A tenant's usage at one hour (``store.sample_usage``), for the usage chart."""

    __tablename__ = "store_usage_sample"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True
    )
    at: Mapped[datetime] = mapped_column(primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    objects: Mapped[int] = mapped_column(BigInteger)


class AccessRecord(Base):
    """A data event: one S3 request on an object or a bucket's contents (append-only)."""

    __tablename__ = "store_access_log"
    __table_args__ = (Index("ix_store_access_log_tenant_at", "tenant_id", "at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column()
    tenant_id: Mapped[uuid.UUID | None] = mapped_column()
    bucket: Mapped[str] = mapped_column(String(63), default="")
    key: Mapped[str] = mapped_column(String(1024), default="")
    operation: Mapped[str] = mapped_column(String(40))
    status: Mapped[int] = mapped_column()
    error_code: Mapped[str] = mapped_column(String(60), default="")
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)
    principal: Mapped[str] = mapped_column(String(160), default="")
    access_key_id: Mapped[str] = mapped_column(String(20), default="")
    remote: Mapped[str] = mapped_column(String(64), default="")
    request_id: Mapped[str] = mapped_column(String(40), default="")
    millis: Mapped[int] = mapped_column(default=0)
