"""Objects: writing bytes durably, committing versions, reading, copying and deleting.

A write is two steps with no transaction held in between: the bytes are streamed, encrypted,
checked and made durable (:func:`write_blob`: temporary file, fsync, rename, directory fsync),
then one unit of work commits the version (:func:`commit_version`), charging the quota and
taking the key's latest slot. A crash before the commit leaves an unreferenced blob, which
``civicloud store fsck`` removes; after it, the whole object. Blobs a write or a delete drops
are queued in ``store_garbage`` in the same transaction and deleted later, so a read already
streaming them is not cut short.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from civicloud.core.db import utcnow
from civicloud.store import checksums, crypto
from civicloud.store.backends import BlobWriter
from civicloud.store.context import OpenKey, StoreContext
from civicloud.store.errors import (
    BadDigest,
    ConditionalRequestConflict,
    ContentSha256Mismatch,
    IncompleteBody,
    InvalidRange,
    MethodNotAllowed,
    NoSuchKey,
    NoSuchVersion,
    NotModified,
    PreconditionFailed,
)
from civicloud.store.models import Garbage, ObjectPart, ObjectVersion
from civicloud.store.names import new_blob_id, new_version_id
from civicloud.store.service import BucketRef, charge

#: Plain bytes read from a client per step.
READ_STEP = 1 << 20
NULL_VERSION = "null"
#: Bodies above this size are digested in a thread of their own.
THREADED_DIGEST_BYTES = 4 << 20
#: A large body read straight from the socket is read into a ring of this many READ_STEP
#: buffers, so the hashes in their lanes run behind the reader by up to that much.
RING_BUFFERS = 8


# ---- writing bytes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Direct:
    """A raw body that can be read into the writer's own buffers, and the SHA-256 its request
    was signed with (hex), when it was: :func:`write_blob` then reads through this instead of
    ``Incoming.read`` and checks the SHA-256 itself, in a lane beside the MD5's."""

    readinto: Callable[[memoryview], int]
    sha256: str | None = None


@dataclass
class Incoming:
    """A body on its way in: how to read it, and what it must match."""

    read: Callable[[int], bytes]
    #: The decoded length, when the client declared it.
    length: int | None
    content_md5: bytes | None = None
    #: The checksum algorithm to compute and store (``CRC32``, …), if any.
    algorithm: str | None = None
    #: The checksum the client sent (a header, or a trailer: asked after the body ended).
    expected: Callable[[], bytes | None] = lambda: None
    #: The same body, readable into buffers (a body of declared length, not chunked).
    direct: Direct | None = None


@dataclass(frozen=True)
class Written:
    """A blob made durable."""

    blob_id: str
    size: int
    md5: bytes
    algorithm: str | None
    checksum: bytes | None
    data_key_id: uuid.UUID

    @property
    def etag(self) -> str:
        return self.md5.hex()


def _check_size(body: Incoming, size: int, *, ended: bool) -> None:
    if body.length is None:
        return
    if size > body.length:
        raise IncompleteBody(
            "The body is longer than its declared length.",
            params={"expected": body.length, "received": size},
        )
    if ended and size != body.length:
        raise IncompleteBody(
            "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            params={"expected": body.length, "received": size},
        )


def _pass_read(
    body: Incoming, sealer: crypto.SegmentWriter, writer: BlobWriter
) -> tuple[int, bytes, bytes | None]:
    """Read ``body`` piece by piece through ``body.read``: size, MD5 and checksum."""
    # A large body's MD5 runs in a thread of its own beside the encryption and the writes
    # (hashlib lets go of the GIL), so the two cores share the work.
    large = body.length is None or body.length > THREADED_DIGEST_BYTES
    digests = checksums.BodyDigests([body.algorithm] if body.algorithm else [], threaded=large)
    size = 0
    while True:
        # Read to the end even once the declared length is in: an aws-chunked body's last
        # chunk and trailers (its checksum) come after the data.
        chunk = body.read(READ_STEP)
        if not chunk:
            break
        size += len(chunk)
        _check_size(body, size, ended=False)
        digests.update(chunk)
        for piece in sealer.update(chunk):
            writer.write(piece)
    _check_size(body, size, ended=True)
    checksum = digests.digest(body.algorithm) if body.algorithm else None
    return size, digests.md5(), checksum


def _pass_direct(
    direct: Direct, body: Incoming, sealer: crypto.SegmentWriter, writer: BlobWriter
) -> tuple[int, bytes, bytes | None]:
    """Read ``body`` into a ring of buffers: size, MD5 and checksum. The MD5 and the signed
    SHA-256 each run in a lane of their own behind the reader (hashlib lets go of the GIL),
    while this thread computes the checksum, encrypts and writes; it waits only when it comes
    round to a buffer a lane has not finished with."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha256 = hashlib.sha256() if direct.sha256 is not None else None
    lanes = [checksums.Lane(md5.update)]
    if sha256 is not None:
        lanes.append(checksums.Lane(sha256.update))
    checksum = checksums.Digest(body.algorithm) if body.algorithm else None
    ring = [memoryview(bytearray(READ_STEP)) for _ in range(RING_BUFFERS)]
    size = count = 0
    try:
        while True:
            if count >= RING_BUFFERS:
                for lane in lanes:
                    lane.wait(count - RING_BUFFERS + 1)
            buffer = ring[count % RING_BUFFERS]
            got = direct.readinto(buffer)
            if not got:
                break
            piece = buffer[:got]
            size += got
            _check_size(body, size, ended=False)
            for lane in lanes:
                lane.put(piece)
            count += 1
            if checksum is not None:
                checksum.update(piece)
            for sealed in sealer.update(piece):
                writer.write(sealed)
        _check_size(body, size, ended=True)
        for lane in lanes:
            lane.wait(count)
    except BaseException:
        for lane in lanes:
            lane.cancel()
        raise
    if sha256 is not None and not hmac.compare_digest(sha256.hexdigest(), direct.sha256 or ""):
        raise ContentSha256Mismatch(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return size, md5.digest(), checksum.digest() if checksum is not None else None


def write_blob(context: StoreContext, key: OpenKey, body: Incoming) -> Written:
    """Stream ``body`` into a new blob, encrypted under ``key``, checking its length, MD5 and
    checksum; durable when this returns. On any failure nothing is left behind."""
    blob_id = new_blob_id()
    writer = context.backend.create(blob_id)
    try:
        sealer = crypto.SegmentWriter(
            data_key=key.key, cipher=key.cipher, blob_id=bytes.fromhex(blob_id)
        )
        writer.write(sealer.header())
        direct = body.direct
        if direct is not None and body.length is not None and body.length > THREADED_DIGEST_BYTES:
            size, md5, checksum = _pass_direct(direct, body, sealer, writer)
        else:
            size, md5, checksum = _pass_read(body, sealer, writer)
        writer.write(sealer.finish())
        if body.content_md5 is not None and body.content_md5 != md5:
            raise BadDigest("The Content-MD5 you specified did not match what we received.")
        expected = body.expected()
        if expected is not None and checksum is not None and expected != checksum:
            raise BadDigest(
                "The %(algorithm)s you specified did not match the calculated checksum.",
                params={"algorithm": body.algorithm},
            )
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return Written(blob_id, size, md5, body.algorithm, checksum, key.id)


def copy_into_blob(
    context: StoreContext,
    key: OpenKey,
    source: StoredObject,
    start: int,
    end: int,
    algorithm: str | None,
) -> Written:
    """A new blob holding bytes ``start..end`` (inclusive) of ``source``, re-encrypted under
    ``key`` (copies stream: memory stays flat for any size)."""
    pieces = read_range(context, source, start, end)
    buffer = bytearray()

    def read(n: int) -> bytes:
        while len(buffer) < n:
            piece = next(pieces, None)
            if piece is None:
                break
            buffer.extend(piece)
        taken = bytes(buffer[:n])
        del buffer[:n]
        return taken

    return write_blob(
        context, key, Incoming(read=read, length=end - start + 1, algorithm=algorithm)
    )


# ---- committing versions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Conditions:
    """A write's conditions: ``If-None-Match: *`` (create only) and ``If-Match`` (replace only
    this ETag)."""

    if_none_match: str | None = None
    if_match: str | None = None

    @property
    def any(self) -> bool:
        return self.if_none_match is not None or self.if_match is not None


@dataclass
class NewVersion:
    """What a committed write stores beside its bytes."""

    size: int
    etag: str
    headers: dict[str, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    acl: str = "private"
    checksum_algorithm: str | None = None
    checksum_value: str | None = None
    checksum_type: str | None = None
    blob_id: str | None = None
    data_key_id: uuid.UUID | None = None
    parts: Sequence[ObjectPart] = ()
    #: Blobs of the multipart upload this write completes, already charged to the quota.
    precharged: int = 0


def unquote_etag(value: str) -> str:
    """An ETag as compared: without quotes and a weak prefix."""
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def etag_matches(header: str, etag: str) -> bool:
    """Whether an ``If-Match``/``If-None-Match`` list names ``etag`` (or is ``*``)."""
    return any(
        item.strip() == "*" or unquote_etag(item) == etag for item in header.split(",") if item
    )


#: A write's two statements on the key's latest version, built once (each write runs them, and
#: building them cost more than running them: the store_throughput benchmark).
LATEST = (
    select(
        ObjectVersion.id,
        ObjectVersion.version_id,
        ObjectVersion.is_delete_marker,
        ObjectVersion.etag,
        ObjectVersion.size,
        ObjectVersion.blob_id,
        ObjectVersion.parts_count,
    )
    .where(
        ObjectVersion.bucket_id == bindparam("bucket"),
        ObjectVersion.key == bindparam("key"),
        ObjectVersion.is_latest.is_(True),
    )
    .with_for_update()
)
UNLATEST = (
    update(ObjectVersion)
    .where(ObjectVersion.id == bindparam("version"), ObjectVersion.is_latest.is_(True))
    .values(is_latest=False)
    .execution_options(synchronize_session=False)
)


_INSERT_VERSION = insert(ObjectVersion).returning(ObjectVersion.id)
_DELETE_VERSION = delete(ObjectVersion).where(ObjectVersion.id == bindparam("version"))
#: A version as a write reads it: an entity, or a row of :data:`LATEST` (Core statements on
#: the hot path: the ORM's entities cost more than the statements they stand for).
Version = ObjectVersion | Row[Any]


def _latest(session: Session, bucket_id: uuid.UUID, key: str) -> Row[Any] | None:
    return cast(
        "Row[Any] | None",
        session.connection().execute(LATEST, {"bucket": bucket_id, "key": key}).first(),
    )


def check_write_conditions(current: Version | None, conditions: Conditions) -> None:
    """Raise unless ``conditions`` hold for the key's current version."""
    live = current is not None and not current.is_delete_marker
    if conditions.if_none_match is not None:
        if conditions.if_none_match.strip() != "*":
            raise PreconditionFailed(
                "If-None-Match on a write takes only '*'.", params={"condition": "If-None-Match"}
            )
        if live:
            raise PreconditionFailed(
                "At least one of the pre-conditions you specified did not hold",
                params={"condition": "If-None-Match"},
            )
    if conditions.if_match is not None:
        if not live:
            raise NoSuchKey("The specified key does not exist.")
        assert current is not None
        if not etag_matches(conditions.if_match, current.etag):
            raise PreconditionFailed(
                "At least one of the pre-conditions you specified did not hold",
                params={"condition": "If-Match"},
            )


def _garbage(session: Session, version: Version) -> None:
    blobs: list[str] = []
    if version.blob_id:
        blobs.append(version.blob_id)
    if version.parts_count:
        blobs.extend(
            session.scalars(select(ObjectPart.blob_id).where(ObjectPart.object_id == version.id))
        )
    for blob in blobs:
        session.merge(Garbage(blob_id=blob, queued_at=utcnow()))


def _drop_version(session: Session, bucket: BucketRef, version: Version) -> None:
    """Remove one version for good: its bytes queued as garbage, its usage released."""
    _garbage(session, version)
    if not version.is_delete_marker:
        charge(
            session, bucket_id=bucket.id, tenant_id=bucket.tenant_id, size=-version.size, objects=-1
        )
    # Gone at once, before a new version takes the latest slot (or, on SQLite, its id: an
    # entity of it is taken out of the session, which would otherwise answer for a new row
    # with the same id).
    session.connection().execute(_DELETE_VERSION, {"version": version.id})
    loaded = session.identity_map.get(identity_key(ObjectVersion, version.id))
    if loaded is not None:
        session.expunge(loaded)


def commit_version(
    *,
    session: Session,
    bucket: BucketRef,
    key: str,
    new: NewVersion,
    owner_id: uuid.UUID | None,
    conditions: Conditions = Conditions(),
    delete_marker: bool = False,
) -> ObjectVersion:
    """Make ``new`` the key's latest version (or a delete marker), as the bucket's versioning
    state says: enabled keeps the old versions, off and suspended replace the ``null`` one."""
    current = _latest(session, bucket.id, key)
    if current is None and session.get_bind().dialect.name == "postgresql":
        # PostgreSQL skips a locked row that a concurrent commit replaced; look again, fresh
        # (SQLite runs one writer at a time: nothing can have been replaced).
        current = _latest(session, bucket.id, key)
    check_write_conditions(current, conditions)
    versioned = bucket.versioning == "enabled"
    version_id = new_version_id() if versioned else NULL_VERSION
    if not versioned:
        if current is not None and current.version_id == NULL_VERSION:
            _drop_version(session, bucket, current)
            current = None
        elif current is not None:
            old_null = session.scalar(
                select(ObjectVersion).where(
                    ObjectVersion.bucket_id == bucket.id,
                    ObjectVersion.key == key,
                    ObjectVersion.version_id == NULL_VERSION,
                )
            )
            if old_null is not None:
                _drop_version(session, bucket, old_null)
    if current is not None:
        moved = session.connection().execute(UNLATEST, {"version": current.id})
        if moved.rowcount != 1:
            raise ConditionalRequestConflict(
                "A conflicting operation occurred. If using PutObject you can retry the request."
            )
    if not delete_marker:
        charge(
            session,
            bucket_id=bucket.id,
            tenant_id=bucket.tenant_id,
            size=new.size - new.precharged,
            objects=1,
        )
    values: dict[str, Any] = {
        "bucket_id": bucket.id,
        "key": key,
        "version_id": version_id,
        "is_latest": True,
        "is_delete_marker": delete_marker,
        "size": 0 if delete_marker else new.size,
        "etag": "" if delete_marker else new.etag,
        "headers": {} if delete_marker else new.headers,
        "meta": {} if delete_marker else new.meta,
        "acl": new.acl,
        "checksum_algorithm": new.checksum_algorithm,
        "checksum_value": new.checksum_value,
        "checksum_type": new.checksum_type,
        "blob_id": new.blob_id,
        "data_key_id": new.data_key_id,
        "parts_count": len(new.parts),
        "owner_id": owner_id,
        "created_at": utcnow(),
    }
    # One Core INSERT ... RETURNING rather than the ORM's flush: every write makes a version.
    # What is returned is the version as written, not attached to the session.
    made = session.connection().execute(_INSERT_VERSION, values).scalar_one()
    version = ObjectVersion(id=made, **values)
    for part in new.parts:
        part.object_id = version.id
        session.add(part)
    return version


# ---- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A blob of an object: where its bytes start in the object, how many, under which key."""

    blob_id: str
    offset: int
    size: int
    data_key_id: uuid.UUID
    number: int = 0
    etag: str = ""
    checksum: str | None = None


@dataclass(frozen=True)
class StoredObject:
    """A version as a read needs it, detached from the session that found it."""

    bucket: str
    key: str
    version_id: str
    size: int
    etag: str
    last_modified: datetime
    headers: Mapping[str, str]
    meta: Mapping[str, str]
    acl: str
    checksum_algorithm: str | None
    checksum_value: str | None
    checksum_type: str | None
    segments: tuple[Segment, ...]
    keys: Mapping[uuid.UUID, OpenKey]
    is_delete_marker: bool = False
    parts_count: int = 0


def find_version(
    session: Session, bucket: BucketRef, key: str, version_id: str | None
) -> ObjectVersion:
    """The version asked for: the latest (``NoSuchKey`` when none or a delete marker, which
    the caller reports as such), or ``version_id`` (``NoSuchVersion``)."""
    query = select(ObjectVersion).where(
        ObjectVersion.bucket_id == bucket.id, ObjectVersion.key == key
    )
    if version_id is None:
        found = session.scalar(query.where(ObjectVersion.is_latest.is_(True)))
        if found is None:
            raise NoSuchKey("The specified key does not exist.", params={"key": key[:200]})
        return found
    found = session.scalar(query.where(ObjectVersion.version_id == version_id))
    if found is None:
        raise NoSuchVersion(
            "The specified version does not exist.", params={"version": version_id[:100]}
        )
    return found


def snapshot(
    session: Session, context: StoreContext, bucket: BucketRef, version: ObjectVersion
) -> StoredObject:
    """``version`` with its segments and keys, to be read after the session ends."""
    return _assemble(session, context, bucket, version)


def _assemble(
    session: Session, context: StoreContext, bucket: BucketRef, version: ObjectVersion | Row[Any]
) -> StoredObject:
    """A version (an entity, or a row of :data:`_STORED_COLUMNS`) as a read needs it."""
    segments: tuple[Segment, ...]
    if version.parts_count:
        assert version.data_key_id is not None
        segments = tuple(
            Segment(
                p.blob_id, p.offset, p.size, version.data_key_id, p.number, p.etag, p.checksum_value
            )
            for p in session.connection().execute(_STORED_PARTS, {"object": version.id})
        )
    elif version.blob_id is not None and version.data_key_id is not None:
        segments = (Segment(version.blob_id, 0, version.size, version.data_key_id),)
    else:
        segments = ()
    keys = {s.data_key_id: context.data_key(session, s.data_key_id) for s in segments[:1]}
    return StoredObject(
        bucket=bucket.name,
        key=version.key,
        version_id=version.version_id,
        size=version.size,
        etag=version.etag,
        last_modified=version.created_at,
        headers=dict(version.headers or {}),
        meta=dict(version.meta or {}),
        acl=version.acl,
        checksum_algorithm=version.checksum_algorithm,
        checksum_value=version.checksum_value,
        checksum_type=version.checksum_type,
        segments=segments,
        keys=keys,
        is_delete_marker=version.is_delete_marker,
        parts_count=version.parts_count,
    )


#: The columns a read needs of a version (one Core statement: a GET is the hottest path, and
#: building an ORM entity with its JSON columns tracked cost a third of its time).
_STORED_COLUMNS = (
    ObjectVersion.id,
    ObjectVersion.key,
    ObjectVersion.version_id,
    ObjectVersion.size,
    ObjectVersion.etag,
    ObjectVersion.created_at,
    ObjectVersion.headers,
    ObjectVersion.meta,
    ObjectVersion.acl,
    ObjectVersion.checksum_algorithm,
    ObjectVersion.checksum_value,
    ObjectVersion.checksum_type,
    ObjectVersion.blob_id,
    ObjectVersion.data_key_id,
    ObjectVersion.is_delete_marker,
    ObjectVersion.parts_count,
)
_STORED_LATEST = select(*_STORED_COLUMNS).where(
    ObjectVersion.bucket_id == bindparam("bucket"),
    ObjectVersion.key == bindparam("key"),
    ObjectVersion.is_latest.is_(True),
)
_STORED_VERSION = select(*_STORED_COLUMNS).where(
    ObjectVersion.bucket_id == bindparam("bucket"),
    ObjectVersion.key == bindparam("key"),
    ObjectVersion.version_id == bindparam("version"),
)
_STORED_PARTS = (
    select(
        ObjectPart.blob_id,
        ObjectPart.offset,
        ObjectPart.size,
        ObjectPart.number,
        ObjectPart.etag,
        ObjectPart.checksum_value,
    )
    .where(ObjectPart.object_id == bindparam("object"))
    .order_by(ObjectPart.number)
)


def stored_version(
    session: Session,
    context: StoreContext,
    bucket: BucketRef,
    key: str,
    version_id: str | None,
) -> StoredObject:
    """The version asked for, with its segments and keys, to be read after the session ends:
    what :func:`snapshot` of :func:`find_version` gives (the same errors), in fewer steps."""
    connection = session.connection()
    if version_id is None:
        row = connection.execute(_STORED_LATEST, {"bucket": bucket.id, "key": key}).first()
        if row is None:
            raise NoSuchKey("The specified key does not exist.", params={"key": key[:200]})
    else:
        row = connection.execute(
            _STORED_VERSION, {"bucket": bucket.id, "key": key, "version": version_id}
        ).first()
        if row is None:
            raise NoSuchVersion(
                "The specified version does not exist.", params={"version": version_id[:100]}
            )
    return _assemble(session, context, bucket, row)


def read_range(
    context: StoreContext, stored: StoredObject, start: int, end: int
) -> Iterator[bytes]:
    """The plain bytes ``start..end`` (inclusive) of ``stored``, decrypted and authenticated
    segment by segment; ``Corrupted`` rather than a damaged byte."""
    for segment in stored.segments:
        seg_end = segment.offset + segment.size - 1
        if seg_end < start or segment.offset > end or segment.size == 0:
            continue
        key = stored.keys[segment.data_key_id]
        reader = context.backend.open(segment.blob_id)
        try:
            first = max(start, segment.offset) - segment.offset
            last = min(end, seg_end) - segment.offset
            yield from crypto.read_plain(
                read=reader.read,
                data_key=key.key,
                cipher=key.cipher,
                blob_id=bytes.fromhex(segment.blob_id),
                plain_size=segment.size,
                offset=first,
                length=last - first + 1,
            )
        finally:
            reader.close()


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive byte range a ``Range`` header asks of an object of ``size`` bytes; ``None``
    when the header is not a single byte range (S3 then sends the whole object);
    ``InvalidRange`` when it is one but starts past the end."""
    value = header.strip()
    if not value.startswith("bytes=") or "," in value:
        return None
    first, dash, last = value[6:].strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                raise InvalidRange("The requested range is not satisfiable", params={"size": size})
            return max(0, size - suffix), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        raise InvalidRange("The requested range is not satisfiable", params={"size": size})
    if start < 0 or end < start:
        return None
    return start, min(end, size - 1)


def check_read_conditions(
    headers: Mapping[str, str], etag: str, last_modified: datetime, *, copy: bool = False
) -> None:
    """RFC 9110's order, as S3 applies it (``copy``: the ``x-amz-copy-source-if-*`` forms,
    where every failure is 412)."""
    from email.utils import parsedate_to_datetime

    prefix = "x-amz-copy-source-" if copy else ""

    def when(name: str) -> datetime | None:
        value = headers.get(prefix + name)
        if not value:
            return None
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return parsed if parsed.tzinfo else None

    modified = last_modified.replace(microsecond=0)
    if_match = headers.get(prefix + "if-match")
    if_none = headers.get(prefix + "if-none-match")
    if if_match is not None:
        if not etag_matches(if_match, etag):
            raise PreconditionFailed(
                "At least one of the pre-conditions you specified did not hold",
                params={"condition": "If-Match"},
            )
    else:
        since = when("if-unmodified-since")
        if since is not None and modified > since:
            raise PreconditionFailed(
                "At least one of the pre-conditions you specified did not hold",
                params={"condition": "If-Unmodified-Since"},
            )
    if if_none is not None:
        if etag_matches(if_none, etag):
            if copy:
                raise PreconditionFailed(
                    "At least one of the pre-conditions you specified did not hold",
                    params={"condition": "If-None-Match"},
                )
            raise NotModified("Not Modified")
    else:
        since = when("if-modified-since")
        if since is not None and modified <= since:
            if copy:
                raise PreconditionFailed(
                    "At least one of the pre-conditions you specified did not hold",
                    params={"condition": "If-Modified-Since"},
                )
            raise NotModified("Not Modified")


def refuse_delete_marker(version: ObjectVersion, *, by_id: bool) -> None:
    """A read that met a delete marker: 404 for the latest, 405 when asked by version id."""
    if not version.is_delete_marker:
        return
    if by_id:
        raise MethodNotAllowed(
            "The specified method is not allowed against this resource.",
            delete_marker=True,
            version_id=version.version_id,
        )
    raise NoSuchKey(
        "The specified key does not exist.", delete_marker=True, version_id=version.version_id
    )


# ---- deleting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deleted:
    """What a delete did: the version removed or the delete marker made."""

    key: str
    version_id: str | None
    delete_marker: bool
    marker_version_id: str | None = None


def delete_object(
    *,
    session: Session,
    bucket: BucketRef,
    key: str,
    version_id: str | None,
    owner_id: uuid.UUID | None,
    if_match: str | None = None,
) -> Deleted:
    """S3's DeleteObject: a version by id is removed for good (the next newest becomes the
    latest); without one, versioning enabled adds a delete marker, off removes the object,
    suspended replaces the ``null`` version with a ``null`` delete marker. Deleting what is not
    there succeeds."""
    if version_id is not None:
        found = session.scalar(
            select(ObjectVersion)
            .where(
                ObjectVersion.bucket_id == bucket.id,
                ObjectVersion.key == key,
                ObjectVersion.version_id == version_id,
            )
            .with_for_update()
        )
        if found is None:
            if version_id != NULL_VERSION and not _looks_like_version(version_id):
                raise NoSuchVersion("The specified version does not exist.")
            return Deleted(key, version_id, False)
        if if_match is not None and not etag_matches(if_match, found.etag):
            raise PreconditionFailed(
                "At least one of the pre-conditions you specified did not hold",
                params={"condition": "If-Match"},
            )
        was_latest, marker = found.is_latest, found.is_delete_marker
        _drop_version(session, bucket, found)
        if was_latest:
            successor = session.scalar(
                select(ObjectVersion)
                .where(ObjectVersion.bucket_id == bucket.id, ObjectVersion.key == key)
                .order_by(ObjectVersion.id.desc())
                .limit(1)
            )
            if successor is not None:
                successor.is_latest = True
        return Deleted(key, version_id, marker)
    current = _latest(session, bucket.id, key)
    if if_match is not None:
        if current is None or current.is_delete_marker:
            raise NoSuchKey("The specified key does not exist.")
        if not etag_matches(if_match, current.etag):
            raise PreconditionFailed(
                "At least one of the pre-conditions you specified did not hold",
                params={"condition": "If-Match"},
            )
    if bucket.versioning == "off":
        if current is not None:
            _drop_version(session, bucket, current)
        return Deleted(key, None, False)
    made = commit_version(
        session=session,
        bucket=bucket,
        key=key,
        new=NewVersion(size=0, etag=""),
        owner_id=owner_id,
        delete_marker=True,
    )
    return Deleted(key, None, True, made.version_id)


def _looks_like_version(value: str) -> bool:
    return 0 < len(value) <= 64 and all(c.isalnum() or c in "-_." for c in value)


def collect_garbage(
    session: Session, context: StoreContext, *, older_than: datetime, limit: int = 1000
) -> int:
    """Delete queued blobs queued before ``older_than``; how many."""
    rows = session.scalars(
        select(Garbage.blob_id).where(Garbage.queued_at < older_than).limit(limit)
    ).all()
    for blob in rows:
        if not still_referenced(session, blob):
            context.backend.delete(blob)
    if rows:
        session.execute(delete(Garbage).where(Garbage.blob_id.in_(rows)))
    return len(rows)


def still_referenced(session: Session, blob_id: str) -> bool:
    """Whether a version, an object's part or an upload's part names ``blob_id``."""
    from civicloud.store.models import UploadPart

    for column in (ObjectVersion.blob_id, ObjectPart.blob_id, UploadPart.blob_id):
        if session.scalar(select(column).where(column == blob_id).limit(1)) is not None:
            return True
    return False


def b64(value: bytes | None) -> str | None:
    """Base64 of a digest, as S3 headers carry them."""
    return None if value is None else base64.b64encode(value).decode("ascii")


def md5_of(data: bytes) -> str:
    """The hex MD5 of ``data`` (an empty object's ETag is MD5 of nothing)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
