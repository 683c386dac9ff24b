"""``UpstreamBackend`` against a small S3 server in the test process: a loopback
``http.server`` that keeps objects in memory and speaks what the backend uses (PUT, GET with
Range, HEAD, DELETE, ListObjectsV2, multipart uploads and their listing), refusing requests whose
SigV4 signature does not verify. The whole backend contract runs against it too."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import secrets
import socket
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.unit.store import test_backends as contract

from civicloud.core.errors import Misconfigured, ServiceBusy
from civicloud.store import sigv4
from civicloud.store.backends import BlobBackend
from civicloud.store.errors import Corrupted
from civicloud.store.upstream import UpstreamBackend

MIB = 1 << 20
ACCESS_KEY = "AKIDSTUB"
SECRET = "stub-secret-key"
BUCKET = "blobs"
PREFIX = "p/"


@dataclass
class Upload:
    key: str
    initiated: datetime
    parts: dict[int, bytes] = field(default_factory=dict)


@dataclass
class StubState:
    """What the stub holds and saw; tests set ``fail`` (statuses answered to the next requests,
    before anything is done) and ``page_limit``."""

    objects: dict[str, tuple[bytes, datetime]] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)
    log: list[tuple[str, str, dict[str, str], int]] = field(default_factory=list)
    fail: list[int] = field(default_factory=list)
    fail_when: Any = None  # a predicate (method, query) -> bool choosing which requests fail
    page_limit: int = 1000
    connections: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requests(self, method: str) -> list[tuple[str, str, dict[str, str], int]]:
        return [entry for entry in self.log if entry[0] == method]


def _xml(root: str, body: str) -> bytes:
    ns = "http://s3.amazonaws.com/doc/2006-03-01/"
    return f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{ns}">{body}</{root}>'.encode()


def _time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class StubHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: StubServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        self._answer(status, _xml("Error", f"<Code>{code}</Code><Message>{code}</Message>"))

    def _handle(self) -> None:
        state = self.server.state
        state.connections.add(id(self.connection))
        raw_path, _, raw_query = self.path.partition("?")
        query = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(headers.get("content-length", "0"))
        body = self.rfile.read(length) if length else b""
        with state.lock:
            status = 0
            if state.fail and (state.fail_when is None or state.fail_when(self.command, query)):
                status = state.fail.pop(0)
            state.log.append((self.command, raw_path, query, len(body)))
        if status:
            return self._error(status, "InternalError" if status >= 500 else "InvalidRequest")
        # Authentication: a SigV4 header that verifies, and a body matching its hash.
        if not headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 "):
            return self._error(403, "AccessDenied")
        try:
            parsed = sigv4.parse_auth(
                method=self.command, raw_path=raw_path, raw_query=raw_query, headers=headers
            )
            assert parsed is not None
            sigv4.verify(
                parsed,
                secret=SECRET,
                method=self.command,
                raw_path=raw_path,
                raw_query=raw_query,
                headers=headers,
            )
        except Exception:
            return self._error(403, "SignatureDoesNotMatch")
        claimed = headers.get("x-amz-content-sha256", "")
        if claimed != "UNSIGNED-PAYLOAD" and claimed != hashlib.sha256(body).hexdigest():
            return self._error(400, "XAmzContentSHA256Mismatch")
        bucket, _, key = urllib.parse.unquote(raw_path).lstrip("/").partition("/")
        if bucket != BUCKET:
            return self._error(404, "NoSuchBucket")
        with state.lock:
            self._dispatch(state, key, query, headers, body)

    def _dispatch(  # noqa: PLR0912 (one branch per S3 operation, as a server dispatches)
        self,
        state: StubState,
        key: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        method = self.command
        now = datetime.now(UTC)
        if not key:
            if method == "HEAD":
                return self._answer(200)
            if method == "GET" and "uploads" in query:
                return self._list_uploads(state, query)
            if method == "GET" and query.get("list-type") == "2":
                return self._list(state, query)
            return self._error(400, "InvalidRequest")
        if method == "PUT" and "uploadId" in query:
            upload = state.uploads.get(query["uploadId"])
            if upload is None or upload.key != key:
                return self._error(404, "NoSuchUpload")
            upload.parts[int(query["partNumber"])] = body
            return self._answer(200, headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})  # noqa: S324
        if method == "PUT":
            state.objects[key] = (body, now)
            return self._answer(200, headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})  # noqa: S324
        if method == "POST" and "uploads" in query:
            upload_id = secrets.token_urlsafe(12)
            state.uploads[upload_id] = Upload(key, now)
            return self._answer(
                200, _xml("InitiateMultipartUploadResult", f"<UploadId>{upload_id}</UploadId>")
            )
        if method == "POST" and "uploadId" in query:
            upload = state.uploads.pop(query["uploadId"], None)
            if upload is None:
                return self._error(404, "NoSuchUpload")
            root = ET.fromstring(body)  # noqa: S314 (the test's own client)
            numbers = [int(p.findtext("PartNumber") or "0") for p in root]
            etags = [p.findtext("ETag") for p in root]
            if numbers != sorted(upload.parts) or any(
                e != f'"{hashlib.md5(upload.parts[n]).hexdigest()}"'  # noqa: S324
                for n, e in zip(numbers, etags, strict=True)
            ):
                return self._error(400, "InvalidPart")
            state.objects[key] = (b"".join(upload.parts[n] for n in numbers), now)
            return self._answer(200, _xml("CompleteMultipartUploadResult", f"<Key>{key}</Key>"))
        if method == "DELETE" and "uploadId" in query:
            if state.uploads.pop(query["uploadId"], None) is None:
                return self._error(404, "NoSuchUpload")
            return self._answer(204)
        if method == "DELETE":
            state.objects.pop(key, None)
            return self._answer(204)
        found = state.objects.get(key)
        if found is None:
            return self._error(404, "NoSuchKey")
        data = found[0]
        if method == "HEAD":
            return self._answer(200, headers={"Content-Length": str(len(data))})
        if method == "GET":
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", headers.get("range", ""))
            if match is None:
                return self._answer(200, data)
            first = int(match[1])
            last = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
            if first >= len(data):
                return self._error(416, "InvalidRange")
            return self._answer(
                206,
                data[first : last + 1],
                {"Content-Range": f"bytes {first}-{last}/{len(data)}"},
            )
        return self._error(405, "MethodNotAllowed")

    def _list(self, state: StubState, query: dict[str, str]) -> None:
        prefix = query.get("prefix", "")
        limit = min(int(query.get("max-keys", "1000")), state.page_limit)
        keys = sorted(k for k in state.objects if k.startswith(prefix))
        after = query.get("continuation-token", "")
        keys = [k for k in keys if k > after]
        page, more = keys[:limit], len(keys) > limit
        body = "".join(
            f"<Contents><Key>{k}</Key><Size>{len(state.objects[k][0])}</Size>"
            f"<LastModified>{_time(state.objects[k][1])}</LastModified></Contents>"
            for k in page
        )
        body += f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>"
        if more:
            body += f"<NextContinuationToken>{page[-1]}</NextContinuationToken>"
        self._answer(200, _xml("ListBucketResult", body))

    def _list_uploads(self, state: StubState, query: dict[str, str]) -> None:
        prefix = query.get("prefix", "")
        items = sorted(
            (u.key, upload_id, u)
            for upload_id, u in state.uploads.items()
            if u.key.startswith(prefix)
        )
        marker = (query.get("key-marker", ""), query.get("upload-id-marker", ""))
        items = [i for i in items if (i[0], i[1]) > marker] if marker[0] else items
        page, more = items[: state.page_limit], len(items) > state.page_limit
        body = "".join(
            f"<Upload><Key>{k}</Key><UploadId>{i}</UploadId>"
            f"<Initiated>{_time(u.initiated)}</Initiated></Upload>"
            for k, i, u in page
        )
        body += f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>"
        if more:
            body += f"<NextKeyMarker>{page[-1][0]}</NextKeyMarker>"
            body += f"<NextUploadIdMarker>{page[-1][1]}</NextUploadIdMarker>"
        self._answer(200, _xml("ListMultipartUploadsResult", body))

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815 (http.server names them)


class StubServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), StubHandler)
        self.state = StubState()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def make_backend() -> Iterator[Any]:
    made: list[UpstreamBackend] = []

    def make(endpoint: str, spool: Path, **options: Any) -> UpstreamBackend:
        made.append(_backend(endpoint, spool, **options))
        return made[-1]

    yield make
    for backend in made:
        backend.close()


def _backend(endpoint: str, spool: Path, **options: Any) -> UpstreamBackend:
    return UpstreamBackend(
        endpoint=endpoint,
        region="us-east-1",
        bucket=options.pop("bucket", BUCKET),
        access_key=ACCESS_KEY,
        secret=options.pop("secret", SECRET),
        prefix=PREFIX,
        spool_dir=spool,
        part_size=options.pop("part_size", 5 * MIB),
        **options,
    )


@pytest.fixture
def upstream(stub: StubServer, tmp_path: Path) -> Iterator[UpstreamBackend]:
    backend = _backend(stub.endpoint, tmp_path / "spool")
    yield backend
    backend.close()


# The backend contract (tests/unit/store/test_backends.py), run here over the stub: the same
# test functions, with this module's ``backend`` fixture.
@pytest.fixture
def backend(upstream: UpstreamBackend) -> BlobBackend:
    return upstream


for _name, _test in vars(contract).items():
    if _name.startswith("test_") and not _name.startswith("test_local_"):
        globals()[f"{_name}_over_the_stub"] = _test


def new_id() -> str:
    return secrets.token_hex(16)


def put(backend: UpstreamBackend, data: bytes, blob_id: str | None = None) -> str:
    blob_id = blob_id or new_id()
    writer = backend.create(blob_id)
    writer.write(data)
    writer.commit()
    return blob_id


# ---- what goes over the wire -------------------------------------------------------------------


def test_a_small_blob_is_one_signed_put_at_prefix_and_id(
    stub: StubServer, upstream: UpstreamBackend, tmp_path: Path
) -> None:
    # Given a blob under the part size, when it is committed
    data = os.urandom(100_000)
    blob_id = put(upstream, data)

    # Then one PUT (signed, its payload hashed: the stub checks both) stored it at prefix + id
    assert stub.state.objects[PREFIX + blob_id][0] == data
    assert [(m, p) for m, p, _, _ in stub.state.requests("PUT")] == [
        ("PUT", f"/{BUCKET}/{PREFIX}{blob_id}")
    ]
    assert stub.state.requests("POST") == []
    # and the spool file is gone
    assert list((tmp_path / "spool").iterdir()) == []


def test_a_blob_over_the_part_size_is_a_multipart_upload(
    stub: StubServer, upstream: UpstreamBackend
) -> None:
    # Given 12 MiB with 5 MiB parts
    data = os.urandom(12 * MIB)
    blob_id = new_id()
    writer = upstream.create(blob_id)
    for at in range(0, len(data), 700_001):
        writer.write(memoryview(data)[at : at + 700_001])
    writer.commit()

    # Then it went up in three parts and was completed
    parts = [q for m, _, q, _ in stub.state.requests("PUT") if "partNumber" in q]
    assert [q["partNumber"] for q in parts] == ["1", "2", "3"]
    assert [size for m, _, q, size in stub.state.requests("PUT")] == [5 * MIB, 5 * MIB, 2 * MIB]
    assert stub.state.objects[PREFIX + blob_id][0] == data
    assert stub.state.uploads == {}


def test_a_blob_of_exactly_the_part_size_is_one_put(
    stub: StubServer, upstream: UpstreamBackend
) -> None:
    put(upstream, os.urandom(5 * MIB))
    assert stub.state.requests("POST") == []


def test_a_failed_part_aborts_the_upload(
    stub: StubServer, upstream: UpstreamBackend, tmp_path: Path
) -> None:
    # Given an upstream that refuses the second part
    stub.state.fail = [400]
    stub.state.fail_when = lambda method, query: query.get("partNumber") == "2"
    blob_id = new_id()
    writer = upstream.create(blob_id)
    writer.write(os.urandom(11 * MIB))

    # When the blob is committed, then it fails
    with pytest.raises(Exception, match="400"):
        writer.commit()

    # and the upload was aborted, nothing stored, nothing spooled
    assert any("uploadId" in q for _, _, q, _ in stub.state.requests("DELETE"))
    assert stub.state.uploads == {}
    assert stub.state.objects == {}
    assert list((tmp_path / "spool").iterdir()) == []
    writer.abort()


def test_5xx_answers_are_retried(stub: StubServer, upstream: UpstreamBackend) -> None:
    # Given an upstream that fails twice, then recovers
    stub.state.fail = [503, 500]
    # When a blob is written, then it is stored once it answers
    blob_id = put(upstream, b"retried")
    assert stub.state.objects[PREFIX + blob_id][0] == b"retried"
    assert len(stub.state.requests("PUT")) == 3


def test_an_upstream_that_keeps_failing_is_busy(
    stub: StubServer, upstream: UpstreamBackend
) -> None:
    stub.state.fail = [503] * 10
    with pytest.raises(ServiceBusy):
        upstream.size(new_id())
    assert len(stub.state.requests("HEAD")) == 4  # the first try and three retries


def test_an_unreachable_upstream_is_busy(tmp_path: Path, make_backend: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = make_backend(f"http://127.0.0.1:{port}", tmp_path, retries=1)
    with pytest.raises(ServiceBusy, match="unreachable"):
        backend.size(new_id())
    assert backend.health() is not None


def test_wrong_credentials_are_misconfigured(
    stub: StubServer, tmp_path: Path, make_backend: Any
) -> None:
    backend = make_backend(stub.endpoint, tmp_path, secret="wrong")
    writer = backend.create(new_id())
    writer.write(b"x")
    with pytest.raises(Misconfigured):
        writer.commit()
    assert backend.health() is not None


def test_a_missing_bucket_is_misconfigured(
    stub: StubServer, tmp_path: Path, make_backend: Any
) -> None:
    backend = make_backend(stub.endpoint, tmp_path, bucket="nope")
    with pytest.raises(Misconfigured):
        backend.delete(new_id())


def test_health_of_a_reachable_bucket(upstream: UpstreamBackend) -> None:
    assert upstream.health() is None


# ---- reads -------------------------------------------------------------------------------------


def test_sequential_reads_stream_from_one_get(stub: StubServer, upstream: UpstreamBackend) -> None:
    # Given a 2 MiB blob, when it is read front to back in 64 KiB pieces
    data = os.urandom(2 * MIB)
    blob_id = put(upstream, data)
    reader = upstream.open(blob_id)
    got = b"".join(reader.read(at, 65_536) for at in range(0, len(data), 65_536))
    reader.close()

    # Then one ranged GET served them all
    assert got == data
    assert len(stub.state.requests("GET")) == 1


def test_a_jump_asks_for_its_range_then_streams_again(
    stub: StubServer, upstream: UpstreamBackend
) -> None:
    data = os.urandom(MIB)
    blob_id = put(upstream, data)
    reader = upstream.open(blob_id)
    assert reader.read(0, 10) == data[:10]
    assert reader.read(500_000, 4096) == data[500_000:504_096]  # a jump: a new GET
    assert reader.read(504_096, 4096) == data[504_096:508_192]  # sequential again: a new GET
    assert reader.read(508_192, 4096) == data[508_192:512_288]  # served by the same stream
    reader.close()
    assert len(stub.state.requests("GET")) == 3


def test_a_blob_deleted_under_a_reader_is_corrupted(upstream: UpstreamBackend) -> None:
    blob_id = put(upstream, b"soon gone")
    reader = upstream.open(blob_id)
    upstream.delete(blob_id)
    with pytest.raises(Corrupted) as caught:
        reader.read(0, 4)
    assert caught.value.params == {"blob": blob_id}


def test_keep_alive_connections_are_reused(stub: StubServer, upstream: UpstreamBackend) -> None:
    for _ in range(20):
        blob_id = put(upstream, b"small")
        assert upstream.size(blob_id) == 5
    assert len(stub.state.connections) <= 2


# ---- listings ----------------------------------------------------------------------------------


def test_blobs_pages_through_the_listing_and_skips_foreign_keys(
    stub: StubServer, upstream: UpstreamBackend
) -> None:
    # Given ten blobs, and keys that are not this backend's blobs, listed three per page
    expected = {put(upstream, os.urandom(n)): n for n in range(10)}
    now = datetime.now(UTC)
    stub.state.objects[PREFIX + "not-a-blob"] = (b"?", now)
    stub.state.objects["other/" + new_id()] = (b"?", now)
    stub.state.page_limit = 3

    # Then every blob is listed once, with its size and an aware time
    listed = list(upstream.blobs())
    assert {b: s for b, s, _ in listed} == expected
    assert len(listed) == 10
    assert all(m.utcoffset() == timedelta(0) for _, _, m in listed)
    assert len(stub.state.requests("GET")) == 4


def test_abandoned_multipart_uploads_are_temporaries(
    stub: StubServer, upstream: UpstreamBackend
) -> None:
    # Given uploads a crashed writer left, one old and one new, and one of another prefix
    old, new = new_id(), new_id()
    now = datetime.now(UTC)
    stub.state.uploads["u-old"] = Upload(PREFIX + old, now - timedelta(days=3))
    stub.state.uploads["u-new"] = Upload(PREFIX + new, now)
    stub.state.uploads["u-foreign"] = Upload("other/" + old, now - timedelta(days=3))
    stub.state.page_limit = 1

    # Then fsck finds the old one of this prefix
    names = upstream.temporaries(now - timedelta(days=1))
    assert names == [f"upload:{old}:u-old"]

    # When it removes it, then the upload is aborted
    upstream.remove_temporary(names[0])
    assert set(stub.state.uploads) == {"u-new", "u-foreign"}


@pytest.mark.parametrize(
    "name", ["", "spool:", "spool:../x", "upload:", "upload:nothex:u1", f"upload:{'0' * 32}:", "x"]
)
def test_remove_temporary_refuses_other_names(upstream: UpstreamBackend, name: str) -> None:
    with pytest.raises(ValueError, match="temporary"):
        upstream.remove_temporary(name)


# ---- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["", "ftp://host", "host:9000", "http://"])
def test_endpoints_must_be_http_urls(endpoint: str, tmp_path: Path, make_backend: Any) -> None:
    with pytest.raises(Misconfigured):
        make_backend(endpoint, tmp_path)


@pytest.mark.parametrize("part_size", [MIB, 6 * 1024 * MIB])
def test_part_sizes_outside_s3s_limits_are_refused(
    part_size: int, tmp_path: Path, make_backend: Any
) -> None:
    with pytest.raises(ValueError, match="part size"):
        make_backend("http://127.0.0.1:9", tmp_path, part_size=part_size)


def test_from_settings(stub: StubServer, tmp_path: Path) -> None:
    from pydantic import SecretStr

    from civicloud.store.settings import UpstreamSettings

    settings = UpstreamSettings(
        endpoint=stub.endpoint,
        bucket=BUCKET,
        access_key=ACCESS_KEY,
        secret_key=SecretStr(SECRET),
        prefix=PREFIX,
    )
    backend = UpstreamBackend.from_settings(settings, spool_dir=tmp_path)
    blob_id = put(backend, b"configured")
    assert stub.state.objects[PREFIX + blob_id][0] == b"configured"
    backend.close()
