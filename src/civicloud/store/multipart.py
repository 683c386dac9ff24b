"""Multipart uploads: create, upload parts (bytes written as for a PUT), complete with S3's
multipart ETag and checksums (COMPOSITE or FULL_OBJECT), abort, and list.

A part's bytes are charged to the quota when the part is stored; completing charges the object
and releases the parts it left out; aborting releases them all.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloud.core.db import utcnow
from civicloud.store import checksums
from civicloud.store.errors import (
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    InvalidRequest,
    NoSuchUpload,
)
from civicloud.store.models import Garbage, ObjectPart, ObjectVersion, Upload, UploadPart
from civicloud.store.names import new_upload_id
from civicloud.store.objects import Conditions, NewVersion, Written, commit_version, unquote_etag
from civicloud.store.service import BucketRef, charge

MAX_PARTS = 10_000


def create_upload(
    *,
    session: Session,
    bucket: BucketRef,
    key: str,
    headers: Mapping[str, str],
    meta: Mapping[str, str],
    acl: str,
    algorithm: str | None,
    checksum_type: str | None,
    initiator_id: uuid.UUID | None,
    initiator: str,
) -> Upload:
    """Start a multipart upload."""
    if checksum_type is not None:
        if checksum_type not in ("COMPOSITE", "FULL_OBJECT"):
            raise InvalidRequest("The x-amz-checksum-type header is not valid.")
        if algorithm is None:
            raise InvalidRequest(
                "The x-amz-checksum-type header can only be used with the "
                "x-amz-checksum-algorithm header."
            )
        if checksum_type == "FULL_OBJECT" and algorithm not in checksums.CRC_ALGORITHMS:
            raise InvalidRequest(
                "The FULL_OBJECT checksum type cannot be used with the %(algorithm)s checksum "
                "algorithm.",
                params={"algorithm": algorithm},
            )
        if checksum_type == "COMPOSITE" and algorithm == "CRC64NVME":
            raise InvalidRequest(
                "The COMPOSITE checksum type cannot be used with the CRC64NVME checksum algorithm."
            )
    elif algorithm is not None:
        checksum_type = "FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE"
    upload = Upload(
        id=new_upload_id(),
        bucket_id=bucket.id,
        key=key,
        headers=dict(headers),
        meta=dict(meta),
        acl=acl,
        checksum_algorithm=algorithm,
        checksum_type=checksum_type,
        initiator_id=initiator_id,
        initiator=initiator[:160],
    )
    session.add(upload)
    return upload


def find_upload(
    session: Session, bucket: BucketRef, key: str, upload_id: str, *, lock: bool = False
) -> Upload:
    """The upload ``upload_id`` of ``key`` in ``bucket`` (``NoSuchUpload``). A write unit
    takes it ``lock``ed: completing, aborting and storing a part of one upload then run one
    after the other, and the second of two completions finds no upload (instead of both
    making a version of the same parts)."""
    upload = (
        session.get(Upload, upload_id, with_for_update=lock, populate_existing=lock)
        if len(upload_id) <= 64
        else None
    )
    if upload is None or upload.bucket_id != bucket.id or upload.key != key:
        raise NoSuchUpload(
            "The specified upload does not exist. The upload ID may be invalid, or the upload "
            "may have been aborted or completed.",
            params={"upload": upload_id[:64]},
        )
    return upload


def check_part_number(value: str | None) -> int:
    """A part number from the query: 1 to 10,000."""
    try:
        number = int(value or "")
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_PARTS:
        raise InvalidArgument(
            "Part number must be an integer between 1 and 10000, inclusive",
            params={"part": (value or "")[:20]},
        )
    return number


def store_part(
    *, session: Session, bucket: BucketRef, upload: Upload, number: int, written: Written
) -> UploadPart:
    """Record a part whose bytes are durable (a part uploaded again replaces the first)."""
    if upload.checksum_algorithm is not None and written.algorithm not in (
        None,
        upload.checksum_algorithm,
    ):
        raise InvalidRequest(
            "Checksum Type mismatch occurred, expected checksum Type: %(algorithm)s",
            params={"algorithm": upload.checksum_algorithm.lower()},
        )
    old = session.get(UploadPart, (upload.id, number), with_for_update=True)
    released = 0
    if old is not None:
        session.merge(Garbage(blob_id=old.blob_id, queued_at=utcnow()))
        released = old.size
        session.delete(old)
        session.flush()  # the old part is gone before its number is taken again
    charge(
        session,
        bucket_id=bucket.id,
        tenant_id=bucket.tenant_id,
        size=written.size - released,
        objects=0,
    )
    part = UploadPart(
        upload_id=upload.id,
        number=number,
        size=written.size,
        etag=written.etag,
        checksum_value=None
        if written.checksum is None
        else base64.b64encode(written.checksum).decode(),
        blob_id=written.blob_id,
        data_key_id=written.data_key_id,
    )
    session.add(part)
    upload.touched_at = utcnow()
    return part


@dataclass(frozen=True)
class Asked:
    """A part as CompleteMultipartUpload lists it."""

    number: int
    etag: str
    checksum: str | None = None


def complete_upload(
    *,
    session: Session,
    bucket: BucketRef,
    upload: Upload,
    asked: Sequence[Asked],
    min_part_bytes: int,
    conditions: Conditions,
    owner_id: uuid.UUID | None,
    expected_checksum: str | None = None,
    expected_type: str | None = None,
) -> ObjectVersion:
    """Assemble the listed parts into the object: ascending part numbers, each ETag matching,
    every part but the last at least ``min_part_bytes``."""
    if not asked:
        raise InvalidRequest("You must specify at least one part")
    numbers = [a.number for a in asked]
    if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
        raise InvalidPartOrder("The list of parts was not in ascending order.")
    stored = {
        p.number: p
        for p in session.scalars(select(UploadPart).where(UploadPart.upload_id == upload.id))
    }
    chosen: list[UploadPart] = []
    for item in asked:
        part = stored.get(item.number)
        if part is None or unquote_etag(item.etag) != part.etag:
            raise InvalidPart(
                "One or more of the specified parts could not be found. The part may not have "
                "been uploaded, or the specified entity tag may not match the part's entity tag.",
                params={"part": item.number},
            )
        if (
            item.checksum is not None
            and part.checksum_value is not None
            and item.checksum != part.checksum_value
        ):
            raise InvalidPart(
                "The checksum of part %(part)s does not match.", params={"part": item.number}
            )
        chosen.append(part)
    for part in chosen[:-1]:
        if part.size < min_part_bytes:
            raise EntityTooSmall(
                "Your proposed upload is smaller than the minimum allowed object size.",
                params={"part": part.number, "size": part.size, "min_size": min_part_bytes},
            )
    if (
        expected_type is not None
        and upload.checksum_type is not None
        and expected_type != upload.checksum_type
    ):
        raise InvalidRequest(
            "The upload was created using the %(kind)s checksum mode. The complete request "
            "must use the same checksum mode.",
            params={"kind": upload.checksum_type},
        )
    algorithm, checksum_type = upload.checksum_algorithm, upload.checksum_type
    checksum_value: str | None = None
    if algorithm is not None:
        digests = []
        for part in chosen:
            if part.checksum_value is None:
                raise InvalidRequest(
                    "The upload was created using a %(algorithm)s checksum. The complete request "
                    "must include the checksum for each part.",
                    params={"algorithm": algorithm.lower()},
                )
            digests.append(base64.b64decode(part.checksum_value))
        if checksum_type == "FULL_OBJECT":
            whole = checksums.combine_full_object(
                algorithm, [(d, p.size) for d, p in zip(digests, chosen, strict=True)]
            )
            checksum_value = base64.b64encode(whole).decode()
        else:
            checksum_value = checksums.composite(algorithm, digests)
        if (
            expected_checksum is not None
            and expected_checksum.split("-")[0] != checksum_value.split("-")[0]
        ):
            from civicloud.store.errors import BadDigest

            raise BadDigest(
                "The %(algorithm)s you specified did not match the calculated checksum.",
                params={"algorithm": algorithm},
            )
    etag = checksums.multipart_etag([bytes.fromhex(p.etag) for p in chosen])
    parts: list[ObjectPart] = []
    offset = 0
    for part in chosen:
        parts.append(
            ObjectPart(
                number=part.number,
                offset=offset,
                size=part.size,
                etag=part.etag,
                checksum_value=part.checksum_value,
                blob_id=part.blob_id,
            )
        )
        offset += part.size
    keys = {p.data_key_id for p in chosen}
    if len(keys) != 1:
        raise InvalidRequest("The parts of an upload were encrypted under different keys.")
    left_out = [p for n, p in stored.items() if n not in set(numbers)]
    for part in left_out:
        session.merge(Garbage(blob_id=part.blob_id, queued_at=utcnow()))
    charge(
        session,
        bucket_id=bucket.id,
        tenant_id=bucket.tenant_id,
        size=-sum(p.size for p in left_out),
        objects=0,
    )
    version = commit_version(
        session=session,
        bucket=bucket,
        key=upload.key,
        new=NewVersion(
            size=offset,
            etag=etag,
            headers=dict(upload.headers or {}),
            meta=dict(upload.meta or {}),
            acl=upload.acl,
            checksum_algorithm=algorithm,
            checksum_value=checksum_value,
            checksum_type=checksum_type,
            data_key_id=next(iter(keys)),
            parts=parts,
            precharged=offset,
        ),
        owner_id=owner_id,
        conditions=conditions,
    )
    session.delete(upload)
    return version


def abort_upload(*, session: Session, bucket: BucketRef, upload: Upload) -> None:
    """Drop an upload and every part stored for it."""
    parts = session.scalars(select(UploadPart).where(UploadPart.upload_id == upload.id)).all()
    for part in parts:
        session.merge(Garbage(blob_id=part.blob_id, queued_at=utcnow()))
    charge(
        session,
        bucket_id=bucket.id,
        tenant_id=bucket.tenant_id,
        size=-sum(p.size for p in parts),
        objects=0,
    )
    session.delete(upload)


def list_parts(
    session: Session, upload: Upload, *, after: int, max_parts: int
) -> tuple[list[UploadPart], bool]:
    """The upload's parts after part number ``after``; whether more follow."""
    rows = list(
        session.scalars(
            select(UploadPart)
            .where(UploadPart.upload_id == upload.id, UploadPart.number > after)
            .order_by(UploadPart.number)
            .limit(max_parts + 1)
        )
    )
    return rows[:max_parts], len(rows) > max_parts


def list_uploads(
    session: Session,
    bucket: BucketRef,
    *,
    prefix: str,
    key_marker: str | None,
    upload_marker: str | None,
    max_uploads: int,
) -> tuple[list[Upload], bool]:
    """The bucket's uploads in progress, by key then age."""
    query = select(Upload).where(Upload.bucket_id == bucket.id)
    if prefix:
        query = query.where(Upload.key.startswith(prefix, autoescape=True))
    marker = session.get(Upload, upload_marker) if key_marker and upload_marker else None
    if marker is not None and marker.key == key_marker:
        # Within the marker's key, after the marker upload (by initiation, then id).
        query = query.where(
            (Upload.key > key_marker)
            | (
                (Upload.key == key_marker)
                & (
                    (Upload.created_at > marker.created_at)
                    | ((Upload.created_at == marker.created_at) & (Upload.id > marker.id))
                )
            )
        )
    elif key_marker:
        query = query.where(Upload.key > key_marker)
    rows = list(
        session.scalars(
            query.order_by(Upload.key, Upload.created_at, Upload.id).limit(max_uploads + 1)
        )
    )
    return rows[:max_uploads], len(rows) > max_uploads


def stale_uploads(session: Session, *, before: datetime, limit: int = 100) -> list[str]:
    """Uploads untouched since ``before`` (for ``store.clean_uploads``)."""
    return list(session.scalars(select(Upload.id).where(Upload.touched_at < before).limit(limit)))
