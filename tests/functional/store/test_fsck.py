"""The integrity check (``civicloud.store.fsck``) finding and repairing each kind of damage, on
SQLite and PostgreSQL: an installation of its own (a fresh database and data directory), so that
what it finds is only what the test did."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from tests.factories.core import SYSTEM, make_tenant

from civicloud.core.db import utcnow
from civicloud.core.services import Services
from civicloud.store import fsck, objects, service
from civicloud.store.backends import LocalBackend
from civicloud.store.context import StoreContext
from civicloud.store.models import Bucket, Garbage, ObjectVersion, StoreTenant

NOW = timedelta(0)


@dataclass
class World:
    """An installation with one tenant's bucket."""

    services: Services
    context: StoreContext
    bucket: service.BucketRef

    @property
    def backend(self) -> LocalBackend:
        assert isinstance(self.context.backend, LocalBackend)
        return self.context.backend

    def put(self, key: str, data: bytes) -> str:
        """Upload ``data`` as ``key`` as the S3 port does; the blob's id."""
        with self.services.db.unit_of_work() as session:
            written = self.write(data)
            objects.commit_version(
                session=session,
                bucket=self.bucket,
                key=key,
                new=objects.NewVersion(
                    size=written.size,
                    etag=written.etag,
                    blob_id=written.blob_id,
                    data_key_id=written.data_key_id,
                ),
                owner_id=None,
            )
        return written.blob_id

    def write(self, data: bytes) -> objects.Written:
        """Bytes made durable, not committed (a crash right after)."""
        with self.services.db.unit_of_work(write=False) as reading:
            key = self.context.active_key(reading, self.bucket.tenant_id)
        assert key is not None
        return objects.write_blob(
            self.context, key, objects.Incoming(read=io.BytesIO(data).read, length=len(data))
        )

    def check(self, *, repair: bool = False, deep: bool = False, **kw: object) -> fsck.FsckReport:
        with self.services.db.unit_of_work() as session:
            return fsck.check(
                session=session,
                context=self.context,
                repair=repair,
                deep=deep,
                **kw,  # type: ignore[arg-type]
            )

    def age(self, path: Path, hours: float = 2) -> None:
        then = time.time() - hours * 3600
        os.utime(path, (then, then))


@pytest.fixture
def world(fresh_services: Callable[[], Services]) -> World:
    services = fresh_services()
    context = services.context("store", StoreContext)
    with services.db.unit_of_work() as session:
        tenant = make_tenant(session)
        service.create_bucket(
            session=session, actor=SYSTEM, context=context, name="fsck-bucket", tenant_id=tenant.id
        )
        ref = service.bucket_ref(session, "fsck-bucket")
    return World(services, context, ref)


def kinds(report: fsck.FsckReport) -> list[str]:
    return [f.kind for f in report.findings]


def test_a_healthy_store_has_nothing_to_report(world: World) -> None:
    # given two objects
    world.put("a.txt", b"alpha")
    world.put("docs/b.bin", os.urandom(200_000))
    # when checked, deeply
    report = world.check(deep=True, older_than=NOW)
    # then every blob was seen and nothing is wrong
    assert report.ok
    assert report.findings == []
    assert (report.blobs, report.referenced, report.buckets, report.tenants) == (2, 2, 1, 1)


def test_an_orphan_from_a_crash_is_found_and_deleted(world: World) -> None:
    # given bytes written but never committed (the process died in between)
    orphan = world.write(b"never committed").blob_id
    kept = world.put("kept", b"kept")
    # then a fresh orphan is left alone (a write may be about to commit it)
    assert world.check().ok
    # but one older than the limit is reported, and deleted by a repair
    world.age(world.backend.path_of(orphan))
    report = world.check()
    assert kinds(report) == ["orphan"]
    assert report.findings[0].subject == orphan
    assert not report.ok
    assert world.check(repair=True).findings[0].repaired
    assert world.backend.size(orphan) is None
    assert world.backend.size(kept) is not None
    assert world.check().ok


def test_an_old_temporary_is_removed(world: World) -> None:
    # given a write's temporary file left by a crash mid-write
    leftover = world.backend.root / "tmp" / "0123456789abcdef0123456789abcdef.0011223344556677.tmp"
    leftover.write_bytes(b"half a blob")
    world.age(leftover)
    # when checked, then reported; repaired, then gone
    assert kinds(world.check()) == ["temporary"]
    assert world.check(repair=True).findings[0].repaired
    assert not leftover.exists()
    assert world.check().ok


def test_a_missing_blob_is_reported_and_never_repaired(world: World) -> None:
    # given an object whose stored bytes were lost
    blob = world.put("lost.txt", b"gone")
    world.backend.path_of(blob).unlink()
    # when checked and repaired
    report = world.check(repair=True)
    # then it is named with its object, and the metadata is still there
    [finding] = report.findings
    assert (finding.kind, finding.subject, finding.bucket, finding.key) == (
        "missing",
        blob,
        "fsck-bucket",
        "lost.txt",
    )
    assert not finding.repaired
    assert not report.ok
    with world.services.db.session(write=False) as session:
        assert session.scalar(select(ObjectVersion.id).where(ObjectVersion.blob_id == blob))


def test_a_blob_of_the_wrong_size_is_reported(world: World) -> None:
    # given a blob cut short
    blob = world.put("short.bin", os.urandom(5000))
    path = world.backend.path_of(blob)
    path.write_bytes(path.read_bytes()[:-10])
    # then
    report = world.check()
    assert kinds(report) == ["size"]
    assert report.findings[0].key == "short.bin"
    assert not world.check(repair=True).ok


def test_bit_rot_is_found_by_a_deep_check_with_the_objects_version(world: World) -> None:
    # given a versioned object with one flipped byte in its stored bytes
    with world.services.db.unit_of_work() as session:
        service.set_versioning(session=session, actor=SYSTEM, name="fsck-bucket", status="Enabled")
        world.bucket = service.bucket_ref(session, "fsck-bucket")
    blob = world.put("rotten.csv", b"a,b\n" * 10_000)
    path = world.backend.path_of(blob)
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    path.write_bytes(bytes(damaged))
    # then a quick check sees nothing (the size is right) and a deep one finds it
    assert world.check().ok
    report = world.check(deep=True)
    [finding] = report.findings
    assert (finding.kind, finding.bucket, finding.key) == ("corrupt", "fsck-bucket", "rotten.csv")
    assert finding.version_id is not None
    assert finding.version_id != "null"
    assert "fails its check" in finding.detail
    assert not report.ok


def test_skewed_usage_counters_are_set_right(world: World) -> None:
    # given an object, and counters someone changed by hand
    world.put("one", b"12345")
    with world.services.db.unit_of_work() as session:
        session.execute(
            update(Bucket)
            .where(Bucket.id == world.bucket.id)
            .values(used_bytes=999, used_objects=7)
        )
        session.execute(
            update(StoreTenant)
            .where(StoreTenant.tenant_id == world.bucket.tenant_id)
            .values(used_bytes=1)
        )
    # when checked: both the bucket and the tenant are reported
    report = world.check()
    assert kinds(report) == ["usage", "usage"]
    assert {f.subject.split()[0] for f in report.findings} == {"bucket", "tenant"}
    # when repaired: the counters are what is stored
    assert world.check(repair=True).ok
    with world.services.db.session(write=False) as session:
        used = service.tenant_usage(session=session, tenant_id=world.bucket.tenant_id)
        bucket = session.get(Bucket, world.bucket.id)
        assert bucket is not None
        assert (used.used_bytes, used.used_objects) == (5, 1)
        assert (bucket.used_bytes, bucket.used_objects) == (5, 1)
    assert world.check().ok


def test_stale_garbage_is_deleted(world: World) -> None:
    # given an overwritten object whose old bytes were queued long ago (the job is not running)
    old = world.put("k", b"first")
    world.put("k", b"second")
    with world.services.db.unit_of_work() as session:
        session.execute(
            update(Garbage)
            .where(Garbage.blob_id == old)
            .values(queued_at=utcnow() - timedelta(hours=1))
        )
    # then it is reported and a repair deletes bytes and row
    assert kinds(world.check()) == ["garbage"]
    assert world.check(repair=True).ok
    assert world.backend.size(old) is None
    assert world.check().ok


def test_progress_is_reported_every_n_blobs(world: World) -> None:
    for n in range(5):
        world.put(f"k{n}", b"x")
    seen: list[int] = []
    world.check(progress=seen.append, every=2)
    assert seen == [2, 4]
