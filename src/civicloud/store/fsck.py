"""Store's integrity check (``civicloud store fsck``): the blobs in the backend against the
metadata that names them, and the usage counters against what is stored.

What it finds, and what ``repair`` does about it:

- ``orphan``: a blob nothing names (no version, part, upload part nor queued garbage) and older
  than ``older_than``: the leftover of a write that crashed between making its bytes durable
  and committing its version. Repair deletes it (after checking once more that nothing names
  it now).
- ``temporary``: a write's temporary file older than ``older_than`` (a crash mid-write). Repair
  removes it.
- ``missing``: a version, part or upload part whose blob is gone. Never repaired: metadata is
  not deleted silently; restore the blob from a backup, or delete the object.
- ``size``: a blob whose size is not the one its plain size gives (``crypto.ciphertext_size``).
  Reported only.
- ``corrupt`` (``deep``): a blob that fails its authentication when read in full (bit rot, a
  damaged header, a wrong data key). Reported with the object's bucket, key and version.
- ``usage``: a bucket's or a tenant's counters that differ from what its versions and upload
  parts add up to. Repair sets the counters.
- ``garbage``: blobs queued for deletion longer than the grace period (the
  ``store.collect_garbage`` job is not running). Repair deletes them.

A long check is one unit of work (the adapter's); it reads metadata first and the backend's
listing second, so a blob written meanwhile is never taken for an orphan while it is younger
than ``older_than``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from civicloud.core.tenants.models import Tenant
from civicloud.store import crypto
from civicloud.store.context import StoreContext
from civicloud.store.errors import Corrupted
from civicloud.store.jobs import GARBAGE_GRACE
from civicloud.store.models import (
    Bucket,
    Garbage,
    ObjectPart,
    ObjectVersion,
    StoreTenant,
    Upload,
    UploadPart,
)
from civicloud.store.service import counted_usage

__all__ = ["KINDS", "Finding", "FsckReport", "check", "lines"]

#: Every kind of finding, in the order a report lists them.
KINDS = ("orphan", "temporary", "missing", "size", "corrupt", "usage", "garbage")
#: The kinds ``repair`` cannot mend.
UNREPAIRABLE = frozenset({"missing", "size", "corrupt"})


@dataclass(frozen=True)
class Finding:
    """One thing found wrong: its kind, the blob (or bucket/tenant) and where it is used."""

    kind: str
    subject: str
    detail: str
    bucket: str | None = None
    key: str | None = None
    version_id: str | None = None
    repaired: bool = False

    def describe(self) -> str:
        """One line for a person."""
        where = ""
        if self.bucket is not None:
            where = f" ({self.bucket}/{self.key or ''}"
            where += f" version {self.version_id})" if self.version_id else ")"
        done = " [repaired]" if self.repaired else ""
        return f"{self.kind}: {self.subject}{where}: {self.detail}{done}"


@dataclass
class FsckReport:
    """What a check looked at and found."""

    blobs: int = 0
    referenced: int = 0
    temporaries: int = 0
    buckets: int = 0
    tenants: int = 0
    deep: bool = False
    findings: list[Finding] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many findings of each kind (every kind, zeros included)."""
        counted = dict.fromkeys(KINDS, 0)
        for finding in self.findings:
            counted[finding.kind] = counted.get(finding.kind, 0) + 1
        return counted

    @property
    def unrepaired(self) -> list[Finding]:
        """The findings still wrong after the check."""
        return [f for f in self.findings if not f.repaired]

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong (or everything found was repaired)."""
        return not self.unrepaired

    def summary(self) -> str:
        """One line: what was checked and how many of each kind were found."""
        found = ", ".join(f"{kind} {count}" for kind, count in self.counts().items())
        repaired = sum(1 for f in self.findings if f.repaired)
        return (
            f"checked {self.blobs} blobs ({self.referenced} referenced"
            f"{', read in full' if self.deep else ''}), {self.temporaries} temporaries, "
            f"{self.buckets} buckets, {self.tenants} tenants; found {found}; "
            f"repaired {repaired}"
        )


@dataclass(frozen=True)
class _Ref:
    """A blob as metadata names it."""

    plain_size: int
    data_key_id: uuid.UUID | None
    bucket: str
    key: str
    version_id: str | None
    what: str


def _references(session: Session) -> dict[str, _Ref]:
    """Every blob a version, part or upload part names. Upload parts are read before object
    parts, and those before versions: a part moving from an upload to its completed object
    between two reads is seen in the second."""
    refs: dict[str, _Ref] = {}
    uploads = session.execute(
        select(
            UploadPart.blob_id,
            UploadPart.size,
            UploadPart.data_key_id,
            Bucket.name,
            Upload.key,
            Upload.id,
            UploadPart.number,
        )
        .join(Upload, Upload.id == UploadPart.upload_id)
        .join(Bucket, Bucket.id == Upload.bucket_id)
    )
    for blob, size, key_id, bucket, key, upload_id, number in uploads:
        refs[blob] = _Ref(size, key_id, bucket, key, None, f"part {number} of upload {upload_id}")
    parts = session.execute(
        select(
            ObjectPart.blob_id,
            ObjectPart.size,
            ObjectVersion.data_key_id,
            Bucket.name,
            ObjectVersion.key,
            ObjectVersion.version_id,
            ObjectPart.number,
        )
        .join(ObjectVersion, ObjectVersion.id == ObjectPart.object_id)
        .join(Bucket, Bucket.id == ObjectVersion.bucket_id)
    )
    for row in parts:
        refs[row[0]] = _Ref(row[1], row[2], row[3], row[4], row[5], f"part {row[6]}")
    versions = session.execute(
        select(
            ObjectVersion.blob_id,
            ObjectVersion.size,
            ObjectVersion.data_key_id,
            Bucket.name,
            ObjectVersion.key,
            ObjectVersion.version_id,
        )
        .join(Bucket, Bucket.id == ObjectVersion.bucket_id)
        .where(ObjectVersion.blob_id.is_not(None))
    )
    for found in versions:
        assert found[0] is not None  # the query asks for versions with a blob
        refs[found[0]] = _Ref(found[1], found[2], found[3], found[4], found[5], "object")
    return refs


def _still_referenced(session: Session, blob_id: str) -> bool:
    """Whether anything names ``blob_id`` now (read again just before acting on it)."""
    for column in (
        ObjectVersion.blob_id,
        ObjectPart.blob_id,
        UploadPart.blob_id,
        Garbage.blob_id,
    ):
        if session.scalar(select(column).where(column == blob_id).limit(1)) is not None:
            return True
    return False


def _read_fully(session: Session, context: StoreContext, blob_id: str, ref: _Ref) -> str | None:
    """Why the blob fails its check when read in full; ``None`` when it reads back whole."""
    if ref.data_key_id is None:
        return "no data key is recorded for it"
    try:
        key = context.data_key(session, ref.data_key_id)
        reader = context.backend.open(blob_id)
        try:
            for _piece in crypto.read_plain(
                read=reader.read,
                data_key=key.key,
                cipher=key.cipher,
                blob_id=bytes.fromhex(blob_id),
                plain_size=ref.plain_size,
            ):
                pass
        finally:
            reader.close()
    except Corrupted as error:
        return error.detail
    return None


def _finding(kind: str, blob_id: str, detail: str, ref: _Ref | None, repaired: bool) -> Finding:
    if ref is None:
        return Finding(kind, blob_id, detail, repaired=repaired)
    version = ref.version_id if ref.what == "object" else None
    if ref.what != "object":
        detail = f"{ref.what}: {detail}"
    return Finding(kind, blob_id, detail, ref.bucket, ref.key, version, repaired)


def _check_blobs(
    session: Session,
    context: StoreContext,
    report: FsckReport,
    *,
    repair: bool,
    deep: bool,
    cutoff: datetime,
    progress: Callable[[int], None] | None,
    every: int,
) -> None:
    refs = _references(session)
    garbage = set(session.scalars(select(Garbage.blob_id)))
    seen: set[str] = set()
    for blob_id, size, modified in context.backend.blobs():
        report.blobs += 1
        if progress is not None and report.blobs % every == 0:
            progress(report.blobs)
        ref = refs.get(blob_id)
        if ref is None:
            if blob_id in garbage or modified >= cutoff:
                continue
            if _still_referenced(session, blob_id):
                continue
            if repair:
                context.backend.delete(blob_id)
            detail = f"{size} bytes nothing refers to, last written {modified:%Y-%m-%d %H:%M}"
            report.findings.append(_finding("orphan", blob_id, detail, None, repair))
            continue
        seen.add(blob_id)
        report.referenced += 1
        expected = crypto.ciphertext_size(ref.plain_size)
        if size != expected:
            detail = f"{size} bytes stored, {expected} expected for {ref.plain_size} bytes"
            report.findings.append(_finding("size", blob_id, detail, ref, False))
            continue
        if deep:
            failed = _read_fully(session, context, blob_id, ref)
            if failed is not None:
                report.findings.append(_finding("corrupt", blob_id, failed, ref, False))
    for blob_id, ref in refs.items():
        if blob_id in seen or context.backend.size(blob_id) is not None:
            continue
        if not _still_referenced(session, blob_id):
            continue  # dropped (and collected) while the backend was being listed
        detail = "its bytes are missing: restore the blob or delete the object"
        report.findings.append(_finding("missing", blob_id, detail, ref, False))


def _check_temporaries(
    context: StoreContext, report: FsckReport, *, repair: bool, cutoff: datetime
) -> None:
    leftovers = context.backend.temporaries(cutoff)
    report.temporaries = len(leftovers)
    for name in leftovers:
        if repair:
            context.backend.remove_temporary(name)
        detail = "the leftover of a write that never finished"
        report.findings.append(Finding("temporary", name, detail, repaired=repair))


def _upload_usage(session: Session) -> dict[uuid.UUID, int]:
    """Bytes of upload parts not yet completed, by bucket (charged when stored)."""
    rows = session.execute(
        select(Upload.bucket_id, func.coalesce(func.sum(UploadPart.size), 0))
        .join(UploadPart, UploadPart.upload_id == Upload.id)
        .group_by(Upload.bucket_id)
    )
    return {bucket_id: int(total) for bucket_id, total in rows}


def _check_usage(session: Session, report: FsckReport, *, repair: bool) -> None:
    parts = _upload_usage(session)
    query = select(Bucket).order_by(Bucket.name)
    if repair:
        query = query.with_for_update()
    totals: dict[uuid.UUID, tuple[int, int]] = {}
    for bucket in session.scalars(query):
        report.buckets += 1
        size, objects = counted_usage(session, bucket.id)
        size += parts.get(bucket.id, 0)
        held = totals.get(bucket.tenant_id, (0, 0))
        totals[bucket.tenant_id] = (held[0] + size, held[1] + objects)
        if (bucket.used_bytes, bucket.used_objects) == (size, objects):
            continue
        detail = _usage_detail(bucket.used_bytes, bucket.used_objects, size, objects)
        if repair:
            session.execute(
                update(Bucket)
                .where(Bucket.id == bucket.id)
                .values(used_bytes=size, used_objects=objects)
            )
        report.findings.append(Finding("usage", f"bucket {bucket.name}", detail, repaired=repair))
    accounts = (
        select(StoreTenant, Tenant.slug)
        .join(Tenant, Tenant.id == StoreTenant.tenant_id)
        .order_by(Tenant.slug)
    )
    if repair:
        accounts = accounts.with_for_update(of=StoreTenant)
    for account, slug in session.execute(accounts):
        report.tenants += 1
        size, objects = totals.get(account.tenant_id, (0, 0))
        if (account.used_bytes, account.used_objects) == (size, objects):
            continue
        detail = _usage_detail(account.used_bytes, account.used_objects, size, objects)
        if repair:
            session.execute(
                update(StoreTenant)
                .where(StoreTenant.tenant_id == account.tenant_id)
                .values(used_bytes=size, used_objects=objects)
            )
        report.findings.append(Finding("usage", f"tenant {slug}", detail, repaired=repair))


def _usage_detail(bytes_counted: int, objects_counted: int, size: int, objects: int) -> str:
    return (
        f"counters say {bytes_counted} bytes in {objects_counted} objects; "
        f"stored: {size} bytes in {objects} objects"
    )


def _check_garbage(
    session: Session, context: StoreContext, report: FsckReport, *, repair: bool, now: datetime
) -> None:
    stale = session.execute(
        select(Garbage.blob_id, Garbage.queued_at)
        .where(Garbage.queued_at < now - GARBAGE_GRACE)
        .order_by(Garbage.queued_at)
    ).all()
    for blob_id, queued_at in stale:
        if repair:
            named = any(
                session.scalar(select(column).where(column == blob_id).limit(1)) is not None
                for column in (ObjectVersion.blob_id, ObjectPart.blob_id, UploadPart.blob_id)
            )
            if not named:  # never delete bytes something still names
                context.backend.delete(blob_id)
            session.delete(session.get(Garbage, blob_id))
        detail = f"queued for deletion since {queued_at:%Y-%m-%d %H:%M} and not yet deleted"
        report.findings.append(Finding("garbage", blob_id, detail, repaired=repair))


def check(
    *,
    session: Session,
    context: StoreContext,
    repair: bool,
    deep: bool,
    older_than: timedelta = timedelta(hours=1),
    progress: Callable[[int], None] | None = None,
    every: int = 1000,
    now: datetime | None = None,
) -> FsckReport:
    """Check the backend's blobs against the metadata and the usage counters (``repair``: mend
    what can be mended; ``deep``: read every referenced blob in full); ``progress(n)`` is
    called every ``every`` blobs. Never commits."""
    now = now or datetime.now(UTC)
    cutoff = now - older_than
    report = FsckReport(deep=deep)
    _check_blobs(
        session,
        context,
        report,
        repair=repair,
        deep=deep,
        cutoff=cutoff,
        progress=progress,
        every=max(1, every),
    )
    _check_temporaries(context, report, repair=repair, cutoff=cutoff)
    _check_usage(session, report, repair=repair)
    _check_garbage(session, context, report, repair=repair, now=now)
    report.findings.sort(key=lambda f: KINDS.index(f.kind))
    return report


def lines(report: FsckReport, *, only: Iterable[str] = KINDS) -> list[str]:
    """The report's findings as lines, kinds in ``only``."""
    wanted = set(only)
    return [f.describe() for f in report.findings if f.kind in wanted]
