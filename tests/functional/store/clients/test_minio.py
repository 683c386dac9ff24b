"""The MinIO Python SDK, unmodified, against the S3 port over TLS: buckets, streamed and file
uploads, listings, presigned URLs, bulk deletes, versioning and server-side copies."""

from __future__ import annotations

import io
import random
import ssl
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, REPLACE, ComposeSource, CopySource
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.versioningconfig import SUSPENDED, VersioningConfig
from tests.factories.store import S3Member
from tests.functional.store.clients.tools import md5
from tests.functional.store.conftest import Port, bucket_name, client

MiB = 1024 * 1024


def _minio(port: Port, member: S3Member) -> Minio:
    secure = port.endpoint.startswith("https://")
    http = urllib3.PoolManager(
        ca_certs=port.ca_file,
        cert_reqs="CERT_REQUIRED" if secure else "CERT_NONE",
        retries=urllib3.Retry(total=0),
        timeout=urllib3.Timeout(connect=10, read=60),
    )
    return Minio(
        port.endpoint.split("://", 1)[1],
        access_key=member.access_key,
        secret_key=member.secret,
        secure=secure,
        region="us-east-1",
        http_client=http,
    )


@pytest.fixture
def mc(s3_tls: Port, member: S3Member) -> Minio:
    """The MinIO SDK as ``member`` against the TLS port."""
    return _minio(s3_tls, member)


class _Unsized(io.RawIOBase):
    """A stream that does not know its length (read in the sizes the caller asks)."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._at = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else min(len(self._data), self._at + size)
        piece = bytes(self._data[self._at : end])
        self._at = end
        return piece


def _fetch(url: str, ca_file: str | None, *, method: str = "GET", data: bytes | None = None) -> Any:
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:  # noqa: S310
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_buckets_and_objects(mc: Minio, tmp_path: Path) -> None:
    name = bucket_name("mn")
    mc.make_bucket(name)
    assert mc.bucket_exists(name)
    assert name in [bucket.name for bucket in mc.list_buckets()]

    small = mc.put_object(name, "small.txt", io.BytesIO(b"hi"), 2, content_type="text/plain")
    assert small.etag == md5(b"hi")

    # A stream of unknown length: length -1 with a part size, so the SDK uploads parts of
    # 5 MiB as they fill (here 12 MiB: three parts).
    data = random.Random(2).randbytes(12 * MiB)
    streamed = mc.put_object(
        name, "stream.bin", _Unsized(data), -1, part_size=5 * MiB, metadata={"x-amz-meta-a": "1"}
    )
    assert streamed.etag.endswith("-3")
    stat = mc.stat_object(name, "stream.bin")
    assert stat.size == 12 * MiB
    assert stat.metadata["x-amz-meta-a"] == "1"
    answer = mc.get_object(name, "stream.bin")
    try:
        assert answer.read() == data
    finally:
        answer.close()
        answer.release_conn()
    ranged = mc.get_object(name, "stream.bin", offset=5 * MiB - 3, length=6)
    try:
        assert ranged.read() == data[5 * MiB - 3 : 5 * MiB + 3]
    finally:
        ranged.close()
        ranged.release_conn()

    source = tmp_path / "file.bin"
    source.write_bytes(data[: 3 * MiB])
    mc.fput_object(name, "dir/file.bin", str(source))
    mc.fget_object(name, "dir/file.bin", str(tmp_path / "got.bin"))
    assert (tmp_path / "got.bin").read_bytes() == data[: 3 * MiB]

    stat = mc.stat_object(name, "small.txt")
    assert (stat.size, stat.content_type, stat.etag) == (2, "text/plain", md5(b"hi"))
    with pytest.raises(S3Error) as missing:
        mc.stat_object(name, "nope")
    assert missing.value.code == "NoSuchKey"


def test_list_and_remove_objects(mc: Minio) -> None:
    name = bucket_name("mnl")
    mc.make_bucket(name)
    keys = [f"a/{i:03d}" for i in range(30)] + ["b/x/1", "b/y", "top"]
    for key in keys:
        mc.put_object(name, key, io.BytesIO(b"."), 1)
    assert [o.object_name for o in mc.list_objects(name, recursive=True)] == sorted(keys)
    # The SDK yields a page's objects before its common prefixes.
    assert [o.object_name for o in mc.list_objects(name)] == ["top", "a/", "b/"]
    assert [o.object_name for o in mc.list_objects(name, prefix="b/")] == ["b/y", "b/x/"]
    assert [o.object_name for o in mc.list_objects(name, start_after="a/028", recursive=True)] == [
        "a/029",
        "b/x/1",
        "b/y",
        "top",
    ]

    errors = list(mc.remove_objects(name, [DeleteObject(key) for key in keys[:31]]))
    assert errors == []
    assert [o.object_name for o in mc.list_objects(name, recursive=True)] == ["b/y", "top"]
    mc.remove_object(name, "b/y")
    mc.remove_object(name, "top")
    mc.remove_bucket(name)
    assert not mc.bucket_exists(name)


def test_presigned_urls(mc: Minio, s3_tls: Port) -> None:
    name = bucket_name("mnp")
    mc.make_bucket(name)
    put_url = mc.presigned_put_object(name, "up/ü.txt", expires=timedelta(minutes=5))
    assert _fetch(put_url, s3_tls.ca_file, method="PUT", data=b"put by URL")[0] == 200
    get_url = mc.presigned_get_object(name, "up/ü.txt", expires=timedelta(minutes=5))
    assert _fetch(get_url, s3_tls.ca_file) == (200, b"put by URL")

    # A GET URL does not sign a PUT.
    status, body = _fetch(get_url, s3_tls.ca_file, method="PUT", data=b"other")
    assert status == 403
    assert b"SignatureDoesNotMatch" in body

    short = mc.presigned_get_object(name, "up/ü.txt", expires=timedelta(seconds=1))
    time.sleep(2.1)
    status, body = _fetch(short, s3_tls.ca_file)
    assert status == 403
    assert b"expired" in body.lower()


def test_versioning(mc: Minio) -> None:
    name = bucket_name("mnv")
    mc.make_bucket(name)
    mc.set_bucket_versioning(name, VersioningConfig(ENABLED))
    assert mc.get_bucket_versioning(name).status == ENABLED
    first = mc.put_object(name, "doc", io.BytesIO(b"one"), 3)
    second = mc.put_object(name, "doc", io.BytesIO(b"two"), 3)
    assert first.version_id
    assert second.version_id
    assert first.version_id != second.version_id
    versions = list(mc.list_objects(name, include_version=True))
    assert [(v.version_id, v.is_latest) for v in versions] == [
        (second.version_id, "true"),
        (first.version_id, "false"),
    ]
    old = mc.get_object(name, "doc", version_id=first.version_id)
    try:
        assert old.read() == b"one"
    finally:
        old.close()
        old.release_conn()
    mc.remove_object(name, "doc", version_id=second.version_id)
    assert mc.stat_object(name, "doc").version_id == first.version_id
    mc.set_bucket_versioning(name, VersioningConfig(SUSPENDED))
    assert mc.get_bucket_versioning(name).status == SUSPENDED


def test_copy_and_compose(mc: Minio, s3_tls: Port, member: S3Member) -> None:
    name = bucket_name("mnc")
    mc.make_bucket(name)
    rng = random.Random(4)
    parts = [rng.randbytes(5 * MiB), rng.randbytes(5 * MiB + 17), rng.randbytes(1000)]
    for index, data in enumerate(parts):
        mc.put_object(name, f"part{index}", io.BytesIO(data), len(data))

    # Without a directive the SDK's metadata is ignored (COPY, as S3 does); with REPLACE it is set.
    kept = mc.copy_object(name, "kept", CopySource(name, "part2"), metadata={"x-amz-meta-k": "v"})
    assert kept.etag == md5(parts[2])
    assert "x-amz-meta-k" not in mc.stat_object(name, "kept").metadata
    copied = mc.copy_object(
        name,
        "copy",
        CopySource(name, "part2"),
        metadata={"x-amz-meta-k": "v", "Content-Type": "text/csv"},
        metadata_directive=REPLACE,
    )
    assert copied.etag == md5(parts[2])
    stat = mc.stat_object(name, "copy")
    assert stat.metadata["x-amz-meta-k"] == "v"
    assert stat.content_type == "text/csv"

    # compose_object: a multipart upload whose parts are server-side copies (UploadPartCopy,
    # with a byte range of the last source and the sources' ETags as conditions).
    sources = [
        ComposeSource(name, "part0"),
        ComposeSource(name, "part1"),
        ComposeSource(name, "part2", offset=100, length=500),
    ]
    composed = mc.compose_object(name, "composed", sources)
    assert composed.etag.endswith("-3")
    expected = parts[0] + parts[1] + parts[2][100:600]
    got = client(s3_tls, member).get_object(Bucket=name, Key="composed")["Body"].read()
    assert got == expected
