"""The blob backend contract, one suite over every backend: memory, local files, and an upstream
S3 server."""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicloud.store.backends import (
    BlobBackend,
    BlobReader,
    BlobWriter,
    LocalBackend,
    MemoryBackend,
    check_blob_id,
)
from civicloud.store.errors import Corrupted
from civicloud.store.upstream import UpstreamBackend

MIB = 1 << 20
FAR_FUTURE = timedelta(days=1)


def new_id() -> str:
    return secrets.token_hex(16)


@pytest.fixture(params=["memory", "local", "upstream"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobBackend]:
    if request.param == "memory":
        yield MemoryBackend()
    elif request.param == "local":
        yield LocalBackend(tmp_path / "store")
    else:
        upstream = request.getfixturevalue("upstream_endpoint")
        remote = UpstreamBackend(
            endpoint=upstream.endpoint,
            region=upstream.region,
            bucket=upstream.bucket,
            access_key=upstream.access_key,
            secret=upstream.secret,
            prefix=f"contract-{uuid.uuid4().hex}/",
            spool_dir=tmp_path / "spool",
        )
        yield remote
        for blob_id, _, _ in list(remote.blobs()):
            remote.delete(blob_id)
        remote.close()


def put(backend: BlobBackend, data: bytes, blob_id: str | None = None) -> str:
    blob_id = blob_id or new_id()
    writer = backend.create(blob_id)
    writer.write(data)
    writer.commit()
    return blob_id


def read_all(backend: BlobBackend, blob_id: str, chunk: int = MIB) -> bytes:
    reader = backend.open(blob_id)
    try:
        parts = []
        offset = 0
        while data := reader.read(offset, chunk):
            parts.append(data)
            offset += len(data)
        return b"".join(parts)
    finally:
        reader.close()


def test_backends_satisfy_the_protocols(backend: BlobBackend) -> None:
    # Given a backend, when a writer and a reader are made, then each has the protocol's shape.
    assert isinstance(backend, BlobBackend)
    assert backend.name in {"memory", "local", "upstream"}
    writer = backend.create(new_id())
    assert isinstance(writer, BlobWriter)
    writer.commit()
    blob_id = put(backend, b"x")
    reader = backend.open(blob_id)
    assert isinstance(reader, BlobReader)
    reader.close()


def test_write_commit_read_size_delete(backend: BlobBackend) -> None:
    # Given a blob written in pieces of both types
    blob_id = new_id()
    writer = backend.create(blob_id)
    writer.write(b"hello, ")
    writer.write(memoryview(b"--world--")[2:7])
    writer.write(b"")

    # Then nothing is visible before commit
    assert backend.size(blob_id) is None
    with pytest.raises(Corrupted):
        backend.open(blob_id)
    assert blob_id not in {b for b, _, _ in backend.blobs()}

    # When it is committed
    writer.commit()
    writer.commit()  # a second commit does nothing

    # Then it reads back whole, and is listed
    assert backend.size(blob_id) == 12
    assert read_all(backend, blob_id) == b"hello, world"
    listed = {b: (size, modified) for b, size, modified in backend.blobs()}
    assert listed[blob_id][0] == 12
    modified = listed[blob_id][1]
    assert modified.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - modified) < timedelta(hours=1)

    # When it is deleted, then it is gone, and deleting again is fine
    backend.delete(blob_id)
    backend.delete(blob_id)
    assert backend.size(blob_id) is None
    assert blob_id not in {b for b, _, _ in backend.blobs()}


def test_open_of_a_missing_blob_is_corrupted(backend: BlobBackend) -> None:
    blob_id = new_id()
    with pytest.raises(Corrupted) as caught:
        backend.open(blob_id)
    assert caught.value.params == {"blob": blob_id}


def test_an_empty_blob(backend: BlobBackend) -> None:
    blob_id = new_id()
    writer = backend.create(blob_id)
    writer.commit()
    assert backend.size(blob_id) == 0
    reader = backend.open(blob_id)
    assert reader.read(0, 10) == b""
    assert reader.read(5, 10) == b""
    reader.close()


def test_commit_replaces_a_blob_of_the_same_id(backend: BlobBackend) -> None:
    blob_id = put(backend, b"first version")
    put(backend, b"second", blob_id)
    assert read_all(backend, blob_id) == b"second"
    assert backend.size(blob_id) == 6


def test_abort_leaves_nothing(backend: BlobBackend) -> None:
    # Given a writer with bytes written
    blob_id = new_id()
    writer = backend.create(blob_id)
    writer.write(b"x" * 100_000)

    # When it is aborted (twice)
    writer.abort()
    writer.abort()

    # Then no blob, no listing, no temporary
    assert backend.size(blob_id) is None
    assert list(backend.blobs()) == []
    assert backend.temporaries(datetime.now(UTC) + FAR_FUTURE) == []
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"more")
    with pytest.raises(ValueError, match="aborted"):
        writer.commit()


def test_abort_after_commit_keeps_the_blob(backend: BlobBackend) -> None:
    blob_id = new_id()
    writer = backend.create(blob_id)
    writer.write(b"kept")
    writer.commit()
    writer.abort()
    assert read_all(backend, blob_id) == b"kept"


def test_abort_keeps_the_previous_blob_of_that_id(backend: BlobBackend) -> None:
    blob_id = put(backend, b"old")
    writer = backend.create(blob_id)
    writer.write(b"new")
    writer.abort()
    assert read_all(backend, blob_id) == b"old"


DATA = bytes(range(256)) * 40 + b"tail"  # 10,244 bytes


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(offset=st.integers(0, len(DATA) + 100), length=st.integers(0, len(DATA) + 100))
def test_reads_at_offsets_and_past_the_end(
    backend: BlobBackend, offset: int, length: int, request: pytest.FixtureRequest
) -> None:
    # Given one blob per backend (made once, read by every example)
    cache = request.node.__dict__.setdefault("blob", {})
    if "id" not in cache:
        cache["id"] = put(backend, DATA)
    reader = backend.open(cache["id"])
    try:
        # When a range is read, then it is the slice: shorter only where the blob ends
        assert reader.read(offset, length) == DATA[offset : offset + length]
    finally:
        reader.close()


def test_one_reader_serves_jumps_and_sequential_reads(backend: BlobBackend) -> None:
    data = os.urandom(3 * MIB + 17)
    blob_id = put(backend, data)
    reader = backend.open(blob_id)
    for offset, length in [
        (0, 1000),
        (1000, 64 * 1024),
        (2 * MIB, 4096),
        (2 * MIB + 4096, MIB),
        (10, 10),
        (3 * MIB, 100),
        (3 * MIB + 17, 1),
        (5 * MIB, 1),
        (0, 4 * MIB),
    ]:
        assert reader.read(offset, length) == data[offset : offset + length]
    reader.close()
    reader.close()


def test_bad_ranges_are_refused(backend: BlobBackend) -> None:
    reader = backend.open(put(backend, b"abc"))
    with pytest.raises(ValueError, match="range"):
        reader.read(-1, 2)
    with pytest.raises(ValueError, match="range"):
        reader.read(0, -2)
    reader.close()


def test_many_blobs_are_all_listed(backend: BlobBackend) -> None:
    expected = {put(backend, os.urandom(n), None): n for n in range(60)}
    listed = {b: size for b, size, _ in backend.blobs()}
    assert listed == expected


def test_a_20_mib_blob(backend: BlobBackend) -> None:
    # Given 20 MiB written in uneven pieces (the local backend starts writeback twice on the way)
    data = os.urandom(20 * MIB)
    blob_id = new_id()
    writer = backend.create(blob_id)
    view = memoryview(data)
    step = 3 * MIB + 12_345
    for start in range(0, len(data), step):
        writer.write(view[start : start + step])
    writer.commit()

    # Then it reads back whole in big and in small pieces
    assert backend.size(blob_id) == len(data)
    assert hashlib.sha256(read_all(backend, blob_id, 4 * MIB)).digest() == (
        hashlib.sha256(data).digest()
    )
    reader = backend.open(blob_id)
    assert reader.read(len(data) - 5, 100) == data[-5:]
    reader.close()


def test_concurrent_writers_of_different_blobs(backend: BlobBackend) -> None:
    # Given eight threads, each writing its own blob in pieces
    blobs = {new_id(): os.urandom(300_000 + i) for i in range(8)}
    errors: list[BaseException] = []
    start = threading.Barrier(len(blobs))

    def write(blob_id: str, data: bytes) -> None:
        try:
            writer = backend.create(blob_id)
            start.wait()
            for at in range(0, len(data), 65_536):
                writer.write(data[at : at + 65_536])
            writer.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=item) for item in blobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then every blob is whole
    assert errors == []
    for blob_id, data in blobs.items():
        assert read_all(backend, blob_id) == data


def test_an_unfinished_write_is_a_temporary(backend: BlobBackend) -> None:
    # Given a write that is neither committed nor aborted (as a crash leaves it)
    blob_id = new_id()
    writer = backend.create(blob_id)
    writer.write(b"partial" * 1000)
    now = datetime.now(UTC)

    # Then it is a temporary older than a moment from now, but not older than an hour ago
    names = backend.temporaries(now + FAR_FUTURE)
    assert len(names) == 1
    assert backend.temporaries(now - timedelta(hours=1)) == []
    # and it is no blob
    assert backend.size(blob_id) is None
    assert list(backend.blobs()) == []

    # When fsck removes it, then it is gone (twice is fine)
    backend.remove_temporary(names[0])
    backend.remove_temporary(names[0])
    assert backend.temporaries(now + FAR_FUTURE) == []
    writer.abort()


def test_committed_and_aborted_writes_leave_no_temporaries(backend: BlobBackend) -> None:
    put(backend, b"done")
    writer = backend.create(new_id())
    writer.write(b"dropped")
    writer.abort()
    assert backend.temporaries(datetime.now(UTC) + FAR_FUTURE) == []


BAD_IDS = [
    "",
    "0" * 31,
    "0" * 33,
    "A" * 32,
    "g" * 32,
    "../" + "0" * 29,
    "0" * 30 + "/a",
    "０" * 32,  # full-width digits  # noqa: RUF001
    "0" * 31 + "\n",
    " " + "0" * 31,
]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_blob_ids_are_refused(backend: BlobBackend, bad: str) -> None:
    for call in (backend.create, backend.open, backend.size, backend.delete):
        with pytest.raises(ValueError, match="blob id"):
            call(bad)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=40))
def test_any_other_text_is_no_blob_id(backend: BlobBackend, text: str) -> None:
    try:
        check_blob_id(text)
    except ValueError:
        with pytest.raises(ValueError, match="blob id"):
            backend.size(text)
    else:
        assert backend.size(text) is None


def test_health(backend: BlobBackend) -> None:
    assert backend.health() is None


# ---- LocalBackend's own promises ---------------------------------------------------------------


def test_local_layout_and_temporary_files(tmp_path: Path) -> None:
    # Given a local backend with one write in progress
    local = LocalBackend(tmp_path / "store")
    blob_id = new_id()
    writer = local.create(blob_id)
    writer.write(b"abc" * 1000)
    final = tmp_path / "store" / "blobs" / blob_id[0:2] / blob_id

    # Then its bytes are under tmp/ only
    assert not final.exists()
    assert len(list((tmp_path / "store" / "tmp").iterdir())) == 1

    # When it commits, then the blob is at its final path and tmp/ is empty
    writer.commit()
    assert final.read_bytes() == b"abc" * 1000
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_local_leftovers_of_a_crash_are_temporaries(tmp_path: Path) -> None:
    # Given files a crashed process left in tmp/, and strays under blobs/
    local = LocalBackend(tmp_path / "store")
    leftover = tmp_path / "store" / "tmp" / f"{new_id()}.0123456789abcdef.tmp"
    leftover.write_bytes(b"half a blob")
    old = datetime.now(UTC) - timedelta(days=2)
    os.utime(leftover, (old.timestamp(), old.timestamp()))
    stray = tmp_path / "store" / "blobs" / "ab" / "cd"
    stray.mkdir(parents=True)
    (stray / "not-a-blob").write_bytes(b"?")
    (stray / new_id()).write_bytes(b"in the wrong directory")

    # Then fsck sees the leftover as a temporary older than a day, and no blobs
    assert local.temporaries(datetime.now(UTC) - timedelta(days=1)) == [leftover.name]
    assert list(local.blobs()) == []
    local.remove_temporary(leftover.name)
    assert not leftover.exists()


@pytest.mark.parametrize("name", ["", ".", "..", "../blobs", "a/b", "x\0y"])
def test_local_remove_temporary_refuses_paths(tmp_path: Path, name: str) -> None:
    local = LocalBackend(tmp_path / "store")
    with pytest.raises(ValueError, match="temporary"):
        local.remove_temporary(name)


def test_local_health_names_a_missing_directory(tmp_path: Path) -> None:
    local = LocalBackend(tmp_path / "store")
    (tmp_path / "store" / "tmp").rmdir()
    health = local.health()
    assert health is not None
    assert "missing" in health


def test_local_reader_keeps_serving_after_delete(tmp_path: Path) -> None:
    # Given an open reader, when the blob is deleted, then the open descriptor still reads it
    local = LocalBackend(tmp_path / "store")
    blob_id = put(local, b"still here")
    reader = local.open(blob_id)
    local.delete(blob_id)
    assert reader.read(0, 100) == b"still here"
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.read(0, 1)
