"""``UpstreamBackend``: blobs kept in an upstream S3-compatible cluster (Ceph RGW, MinIO, or
another civicloud), one bucket, key ``<prefix><blob id>``, path-style requests signed with
Signature Version 4.

The client is small on purpose: ``http.client`` over a pool of keep-alive connections, shared by
threads. A writer spools the blob to a local file and uploads it on ``commit()``: one PUT up to
``part_size`` (64 MiB), a multipart upload above (aborted if it fails). A reader serves
sequential reads from one streaming ranged GET and starts another when the offset jumps.

Failures of the upstream are ``ServiceBusy`` (unreachable, 5xx, throttled; idempotent requests
are retried first), ``Corrupted`` (a blob that metadata names is not there) or ``Misconfigured``
(credentials refused, no such bucket). The XML answers come from the operator's own cluster and
are parsed with ``xml.etree.ElementTree``, but never more than ``MAX_XML_BYTES`` of them.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import ssl
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final
from xml.sax.saxutils import escape

from civicloud.core.errors import Misconfigured, ServiceBusy
from civicloud.store.backends import BlobBackend, BlobReader, BlobWriter, blob_missing
from civicloud.store.backends import check_blob_id as _check_blob_id
from civicloud.store.errors import StoreError

if TYPE_CHECKING:
    from civicloud.store.settings import UpstreamSettings

__all__ = ["MAX_XML_BYTES", "PART_SIZE", "UpstreamBackend"]

MIB: Final = 1 << 20
#: The largest single PUT, and the size of each part of a multipart upload.
PART_SIZE: Final = 64 * MIB
#: S3 refuses parts (but the last) under 5 MiB and single requests over 5 GiB.
_MIN_PART: Final = 5 * MIB
_MAX_PART: Final = 5 * 1024 * MIB
_MAX_PARTS: Final = 10_000
#: The most of an XML answer (or an error body) read from the upstream.
MAX_XML_BYTES: Final = 8 * MIB
_UNSIGNED: Final = "UNSIGNED-PAYLOAD"
_EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
#: Bytes sent per socket write when a body is streamed from a file.
_SEND_BLOCK: Final = MIB
_RETRY_STATUSES: Final = frozenset({500, 502, 503, 504})
_BUSY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


def _local(tag: str) -> str:
    """An element's name without its namespace."""
    return tag.rpartition("}")[2]


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return child.text or ""
    return None


def _parse_time(text: str | None) -> datetime:
    if not text:
        return datetime.fromtimestamp(0, UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class _Response:
    """An upstream answer: status, headers (lower-case names), and the body still to be read
    from ``raw`` unless it was read into ``body``."""

    def __init__(self, raw: http.client.HTTPResponse, conn: _Connection) -> None:
        self.raw = raw
        self.status = raw.status
        self.headers = {k.lower(): v for k, v in raw.getheaders()}
        self._conn: _Connection | None = conn

    def read_body(self, limit: int = MAX_XML_BYTES) -> bytes:
        """The whole body (at most ``limit`` bytes, else ``ServiceBusy``), then the connection
        goes back to the pool."""
        data = self.raw.read(limit + 1)
        if len(data) > limit:
            self.discard()
            raise ServiceBusy(
                "the upstream store sent an answer over %(limit)s bytes",
                params={"limit": limit},
            )
        self.release()
        return data

    def release(self) -> None:
        """Give the connection back (keep-alive) once the body has been read to its end."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self.raw.isclosed() and not self.raw.will_close:
            # The body was read to its end and the server keeps the connection open.
            conn.pool.put(conn)
        else:
            conn.close()

    def discard(self) -> None:
        """Drop the connection (the body was not read to its end)."""
        conn, self._conn = self._conn, None
        self.raw.close()
        if conn is not None:
            conn.close()


class _Connection:
    def __init__(self, pool: _Pool, http: http.client.HTTPConnection) -> None:
        self.pool = pool
        self.http = http
        self.reused = False

    def close(self) -> None:
        self.http.close()


class _Pool:
    """Idle keep-alive connections (at most ``size``), shared by threads; a request finding none
    idle opens a new one."""

    def __init__(
        self,
        *,
        scheme: str,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        size: int,
        timeout: float,
    ) -> None:
        self._scheme = scheme
        self._host = host
        self._port = port
        self._context = context
        self._size = size
        self._timeout = timeout
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def get(self) -> _Connection:
        with self._lock:
            if self._idle:
                conn = self._idle.pop()
                conn.reused = True
                return conn
        http_conn: http.client.HTTPConnection
        if self._scheme == "https":
            http_conn = http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=self._timeout,
                context=self._context,
                blocksize=_SEND_BLOCK,
            )
        else:
            http_conn = http.client.HTTPConnection(
                self._host, self._port, timeout=self._timeout, blocksize=_SEND_BLOCK
            )
        return _Connection(self, http_conn)

    def put(self, conn: _Connection) -> None:
        with self._lock:
            if len(self._idle) < self._size:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _FileSlice:
    """``length`` bytes of a file from ``offset``, read in blocks as ``http.client`` sends them."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self._fd = fd
        self._pos = offset
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if size < 0 else min(size, self._left)
        data = os.pread(self._fd, want, self._pos)
        self._pos += len(data)
        self._left -= len(data)
        if not data:
            self._left = 0
        return data


_Body = bytes | tuple[int, int, int] | None  # bytes, or (fd, offset, length) of a spool file


class _Client:
    """A tiny S3 client for one bucket (path-style), thread-safe."""

    def __init__(
        self,
        *,
        endpoint: str,
        region: str,
        bucket: str,
        access_key: str,
        secret: str,
        ca_file: Path | None,
        verify: bool,
        timeout: float,
        pool_size: int,
        retries: int,
    ) -> None:
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme not in {"http", "https"} or not url.hostname:
            raise Misconfigured(
                "the upstream endpoint %(endpoint)s is not an http:// or https:// URL",
                params={"endpoint": endpoint},
            )
        self.endpoint = endpoint
        self.secure = url.scheme == "https"
        port = url.port or (443 if self.secure else 80)
        default_port = (self.secure and port == 443) or (not self.secure and port == 80)
        host = url.hostname if ":" not in url.hostname else f"[{url.hostname}]"
        self.host = host if default_port else f"{host}:{port}"
        self._base = url.path.rstrip("/")
        self.region = region
        self.bucket = bucket
        self._access_key = access_key
        self._secret = secret
        self._retries = retries
        context: ssl.SSLContext | None = None
        if self.secure:
            context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if not verify:
                # The operator turned verification off (a lab cluster with its own certificate).
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        self.pool = _Pool(
            scheme=url.scheme,
            host=url.hostname,
            port=port,
            context=context,
            size=pool_size,
            timeout=timeout,
        )

    def path(self, key: str = "") -> str:
        """The URI-encoded request path of ``key`` in the bucket (of the bucket if empty)."""
        quoted = urllib.parse.quote(key, safe="/-_.~")
        return f"{self._base}/{self.bucket}" + (f"/{quoted}" if key else "")

    def _sign(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: dict[str, str],
        payload_sha256: str,
    ) -> dict[str, str]:
        from civicloud.store.sigv4 import sign_request

        signed = sign_request(
            method=method,
            host=self.host,
            path=path,
            query=sorted(query.items()),
            headers=headers,
            payload_sha256=payload_sha256,
            access_key=self._access_key,
            secret=self._secret,
            region=self.region,
            now=datetime.now(UTC),
            service="s3",
        )
        merged = dict(headers)
        merged.update(signed)
        return merged

    def request(
        self,
        method: str,
        key: str = "",
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: _Body = None,
        payload_sha256: str | None = None,
        idempotent: bool = True,
    ) -> _Response:
        """Send one request and return the answer with its body unread (the caller reads or
        releases it). Connection failures and 5xx answers are retried ``retries`` times with a
        growing pause if ``idempotent``; once, on a reused keep-alive connection the upstream
        closed, otherwise. Gives up with ``ServiceBusy``."""
        query = dict(query or {})
        path = self.path(key)
        target = path + (
            "?" + urllib.parse.urlencode(sorted(query.items()), quote_via=urllib.parse.quote)
            if query
            else ""
        )
        if payload_sha256 is None:
            if isinstance(body, bytes):
                payload_sha256 = hashlib.sha256(body).hexdigest()
            elif body is None:
                payload_sha256 = _EMPTY_SHA256
            else:
                payload_sha256 = _UNSIGNED
        base_headers = {k.lower(): v for k, v in (headers or {}).items()}
        if body is not None or method in {"PUT", "POST"}:
            length = len(body) if isinstance(body, bytes) else (body[2] if body else 0)
            base_headers["content-length"] = str(length)
        attempt = 0
        while True:
            conn = self.pool.get()
            try:
                send_headers = self._sign(method, path, query, dict(base_headers), payload_sha256)
                send_headers["host"] = self.host
                payload: bytes | _FileSlice | None
                payload = _FileSlice(*body) if isinstance(body, tuple) else body
                conn.http.request(method, target, body=payload, headers=send_headers)
                raw = conn.http.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                stale = conn.reused and isinstance(
                    exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError
                )
                if (idempotent and attempt < self._retries) or (stale and attempt == 0):
                    attempt += 1
                    if not stale:
                        time.sleep(0.05 * 2**attempt)
                    continue
                raise ServiceBusy(
                    "the upstream store %(endpoint)s is unreachable: %(reason)s",
                    params={"endpoint": self.endpoint, "reason": str(exc) or type(exc).__name__},
                    retry_after=5,
                ) from exc
            response = _Response(raw, conn)
            if response.status in _RETRY_STATUSES and idempotent and attempt < self._retries:
                _drain(response)
                attempt += 1
                time.sleep(0.05 * 2**attempt)
                continue
            return response

    def fail(self, response: _Response, what: str) -> StoreError | ServiceBusy | Misconfigured:
        """The error for an unexpected answer to S3 operation ``what`` (reads and releases its body)."""
        try:
            body = response.read_body(64 * 1024)
        except ServiceBusy:
            body = b""
        code = ""
        try:
            root = ET.fromstring(body) if body.strip() else None  # noqa: S314 (the operator's own cluster)
            if root is not None:
                code = _child_text(root, "Code") or ""
        except ET.ParseError:
            pass
        params = {"what": what, "status": response.status, "code": code or "-"}
        if response.status in _BUSY_STATUSES or code == "SlowDown":
            return ServiceBusy(
                "the upstream store is busy (%(what)s: %(status)s %(code)s)",
                params=params,
                retry_after=5,
            )
        if response.status in {401, 403} or code in {"NoSuchBucket", "InvalidAccessKeyId"}:
            return Misconfigured(
                "the upstream store refused %(what)s (%(status)s %(code)s): check its "
                "endpoint, bucket and credentials",
                params=params,
            )
        return StoreError(
            "the upstream store answered %(what)s with %(status)s %(code)s", params=params
        )

    def xml(self, response: _Response, what: str) -> ET.Element:
        """The answer's XML document (bounded); ``ServiceBusy`` if it is not XML."""
        body = response.read_body()
        try:
            return ET.fromstring(body)  # noqa: S314 (the operator's own cluster, bounded)
        except ET.ParseError as exc:
            raise ServiceBusy(
                "the upstream store answered %(what)s with something that is not XML",
                params={"what": what},
                retry_after=5,
            ) from exc


def _drain(response: _Response) -> None:
    try:
        response.read_body(64 * 1024)
    except (OSError, http.client.HTTPException, ServiceBusy):
        response.discard()


class _UpstreamWriter:
    """Spools to ``<spool dir>/<id>.<random>.spool``, hashing each part as it goes when the
    payload must be signed (plain HTTP), and uploads on commit."""

    def __init__(self, backend: UpstreamBackend, blob_id: str) -> None:
        self._backend = backend
        self._blob_id = blob_id
        self._spool = backend.spool_dir / f"{blob_id}.{secrets.token_hex(8)}.spool"
        fd = os.open(self._spool, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._file: IO[bytes] | None = open(fd, "w+b", buffering=MIB)  # noqa: SIM115 (closed by commit or abort)
        self._size = 0
        self._hash_parts = not backend.client.secure
        self._part_hashes: list[str] = []
        self._hasher = hashlib.sha256() if self._hash_parts else None
        self._in_part = 0
        self._committed = False

    def write(self, data: bytes | memoryview) -> None:
        if self._file is None:
            raise ValueError("write to a closed blob writer")
        self._file.write(data)
        self._size += len(data)
        if self._hasher is not None:
            view = memoryview(data).cast("B")
            part = self._backend.part_size
            while len(view):
                take = min(len(view), part - self._in_part)
                self._hasher.update(view[:take])
                self._in_part += take
                view = view[take:]
                if self._in_part == part:
                    self._part_hashes.append(self._hasher.hexdigest())
                    self._hasher = hashlib.sha256()
                    self._in_part = 0

    def _part_hash(self, number: int) -> str | None:
        """The SHA-256 of part ``number`` (from 1), or ``None`` over HTTPS."""
        if self._hasher is None:
            return None
        if number <= len(self._part_hashes):
            return self._part_hashes[number - 1]
        return self._hasher.hexdigest()

    def commit(self) -> None:
        if self._committed:
            return
        file = self._file
        if file is None:
            raise ValueError("commit of an aborted blob writer")
        try:
            file.flush()
            key = self._backend.key(self._blob_id)
            if self._size <= self._backend.part_size:
                self._put(file.fileno(), key)
            else:
                self._multipart(file.fileno(), key)
        finally:
            self.abort()  # the spool file is not needed either way
        self._committed = True

    def _put(self, fd: int, key: str) -> None:
        client = self._backend.client
        response = client.request(
            "PUT", key, body=(fd, 0, self._size), payload_sha256=self._part_hash(1) or _UNSIGNED
        )
        if response.status != 200:
            raise client.fail(response, "PutObject")
        response.read_body()

    def _multipart(self, fd: int, key: str) -> None:
        client = self._backend.client
        part = self._backend.part_size
        count = -(-self._size // part)
        if count > _MAX_PARTS:
            raise ValueError(f"a blob of {self._size} bytes needs more than {_MAX_PARTS} parts")
        # Not retried: each attempt would start another upload (fsck's temporaries find any).
        response = client.request("POST", key, query={"uploads": ""}, idempotent=False)
        if response.status != 200:
            raise client.fail(response, "CreateMultipartUpload")
        upload_id = _child_text(client.xml(response, "CreateMultipartUpload"), "UploadId")
        if not upload_id:
            raise ServiceBusy("the upstream store started an upload without an id", retry_after=5)
        try:
            etags = []
            for number in range(1, count + 1):
                offset = (number - 1) * part
                length = min(part, self._size - offset)
                response = client.request(
                    "PUT",
                    key,
                    query={"partNumber": str(number), "uploadId": upload_id},
                    body=(fd, offset, length),
                    payload_sha256=self._part_hash(number) or _UNSIGNED,
                )
                if response.status != 200:
                    raise client.fail(response, "UploadPart")
                etags.append(response.headers.get("etag", ""))
                response.read_body()
            document = "".join(
                f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(e)}</ETag></Part>"
                for n, e in enumerate(etags, start=1)
            )
            body = f"<CompleteMultipartUpload>{document}</CompleteMultipartUpload>".encode()
            # Completing twice is harmless to S3 (the second finds the upload done or gone).
            response = client.request("POST", key, query={"uploadId": upload_id}, body=body)
            if response.status != 200:
                raise client.fail(response, "CompleteMultipartUpload")
            # S3 may answer 200 and report a failure in the body.
            root = client.xml(response, "CompleteMultipartUpload")
            if _local(root.tag) == "Error":
                raise ServiceBusy(
                    "the upstream store could not complete an upload: %(code)s",
                    params={"code": _child_text(root, "Code") or "-"},
                    retry_after=5,
                )
        except BaseException:
            self._backend.abort_upload(key, upload_id)
            raise

    def abort(self) -> None:
        if self._committed:
            return
        file, self._file = self._file, None
        if file is not None:
            file.close()
        self._spool.unlink(missing_ok=True)


class _UpstreamReader:
    """Serves reads from one streaming ranged GET while they follow each other; a read elsewhere
    asks for just its range, and a sequential read after that streams to the end again."""

    def __init__(self, backend: UpstreamBackend, blob_id: str, size: int) -> None:
        self._backend = backend
        self._blob_id = blob_id
        self._key = backend.key(blob_id)
        self._size = size
        self._response: _Response | None = None
        self._pos = 0  # the offset the open response delivers next
        self._end = 0  # where the open response's range ends
        self._last_end: int | None = None  # where the previous read ended
        self._closed = False

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"bad range: offset {offset}, length {length}")
        if self._closed:
            raise ValueError("read from a closed blob reader")
        length = max(0, min(length, self._size - offset))
        if length == 0:
            return b""
        parts: list[bytes] = []
        got = 0
        failures = 0
        while got < length:
            at = offset + got
            if self._response is None or self._pos != at or self._pos >= self._end:
                self._drop()
                if not self._start(at, length - got):
                    break  # the blob is shorter than it was
            assert self._response is not None
            want = min(length - got, self._end - self._pos)
            try:
                data = self._response.raw.read(want)
                error: Exception | None = None
            except (OSError, http.client.HTTPException) as exc:
                data, error = b"", exc
            if not data:
                # The stream broke off or ended early: ask again from here.
                self._response.discard()
                self._response = None
                failures += 1
                if failures > self._backend.client_retries:
                    reason = (str(error) or type(error).__name__) if error else "the stream ended"
                    raise ServiceBusy(
                        "the upstream store broke off a read: %(reason)s",
                        params={"reason": reason},
                        retry_after=5,
                    ) from error
                continue
            parts.append(data)
            got += len(data)
            self._pos += len(data)
        self._last_end = offset + got
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _start(self, at: int, length: int) -> bool:
        """Open a GET from ``at``; ``False`` if the blob now ends before it."""
        sequential = self._last_end is None or self._last_end == at
        last = self._size - 1 if sequential else min(self._size, at + length) - 1
        client = self._backend.client
        response = client.request("GET", self._key, headers={"range": f"bytes={at}-{last}"})
        if response.status == 404:
            _drain(response)
            raise blob_missing(self._blob_id)
        if response.status == 416:
            _drain(response)
            self._size = at
            return False
        if response.status not in {200, 206}:
            raise client.fail(response, "GetObject")
        if response.status == 200:
            # The whole blob (a server that ignores Range): skip to the offset.
            skipped = 0
            while skipped < at:
                chunk = response.raw.read(min(MIB, at - skipped))
                if not chunk:
                    break
                skipped += len(chunk)
            last = self._size - 1
        self._response, self._pos, self._end = response, at, last + 1
        return True

    def _drop(self) -> None:
        response, self._response = self._response, None
        if response is None:
            return
        if response.raw.isclosed():
            response.release()
        else:
            response.discard()

    def close(self) -> None:
        self._closed = True
        self._drop()

    def __del__(self) -> None:
        self._drop()


class UpstreamBackend:
    """Blobs in one bucket of an S3-compatible cluster, at ``<prefix><blob id>``; the writers'
    spool files in ``spool_dir`` (local, for example ``<data dir>/store/tmp/``)."""

    name = "upstream"

    def __init__(
        self,
        *,
        endpoint: str,
        region: str,
        bucket: str,
        access_key: str,
        secret: str,
        spool_dir: Path,
        prefix: str = "",
        ca_file: Path | None = None,
        verify: bool = True,
        timeout: float = 60.0,
        pool_size: int = 8,
        retries: int = 3,
        part_size: int = PART_SIZE,
    ) -> None:
        if not _MIN_PART <= part_size <= _MAX_PART:
            raise ValueError(f"part size {part_size} outside S3's 5 MiB..5 GiB")
        if not bucket:
            raise Misconfigured("the upstream store needs a bucket")
        self.client = _Client(
            endpoint=endpoint,
            region=region,
            bucket=bucket,
            access_key=access_key,
            secret=secret,
            ca_file=ca_file,
            verify=verify,
            timeout=timeout,
            pool_size=pool_size,
            retries=retries,
        )
        self.client_retries = retries
        self.prefix = prefix
        self.part_size = part_size
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(cls, settings: UpstreamSettings, *, spool_dir: Path) -> UpstreamBackend:
        """The backend ``CIVICLOUD_STORE__UPSTREAM__*`` describes."""
        return cls(
            endpoint=settings.endpoint,
            region=settings.region,
            bucket=settings.bucket,
            access_key=settings.access_key,
            secret=settings.secret_key.get_secret_value() if settings.secret_key else "",
            prefix=settings.prefix,
            ca_file=settings.ca_file,
            verify=settings.verify_tls,
            spool_dir=spool_dir,
        )

    def key(self, blob_id: str) -> str:
        """The upstream key of blob ``blob_id``."""
        return self.prefix + _check_blob_id(blob_id)

    def create(self, blob_id: str) -> BlobWriter:
        """Start writing blob ``blob_id`` (spooled locally, uploaded on commit)."""
        _check_blob_id(blob_id)
        return _UpstreamWriter(self, blob_id)

    def open(self, blob_id: str) -> BlobReader:
        """Open blob ``blob_id`` (a HEAD now; the bytes are fetched as they are read)."""
        size = self.size(blob_id)
        if size is None:
            raise blob_missing(blob_id)
        return _UpstreamReader(self, blob_id, size)

    def size(self, blob_id: str) -> int | None:
        """The size of blob ``blob_id`` from a HEAD, ``None`` if there is none."""
        response = self.client.request("HEAD", self.key(blob_id))
        response.read_body(0)
        if response.status == 404:
            return None
        if response.status != 200:
            raise self.client.fail(response, "HeadObject")
        try:
            return int(response.headers.get("content-length", ""))
        except ValueError:
            raise ServiceBusy(
                "the upstream store answered a HEAD without a length", retry_after=5
            ) from None

    def delete(self, blob_id: str) -> None:
        """Remove blob ``blob_id`` (S3's DELETE succeeds on a missing key too)."""
        response = self.client.request("DELETE", self.key(blob_id))
        if response.status == 404:
            error = self.client.fail(response, "DeleteObject")
            if isinstance(error, Misconfigured):  # no such bucket, rather than no such key
                raise error
            return
        if response.status not in {200, 204}:
            raise self.client.fail(response, "DeleteObject")
        response.read_body()

    def blobs(self) -> Iterator[tuple[str, int, datetime]]:
        """Every blob under the prefix, page by page (ListObjectsV2); keys under the prefix that
        are not blob ids are skipped."""
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": self.prefix, "max-keys": "1000"}
            if token:
                query["continuation-token"] = token
            response = self.client.request("GET", query=query)
            if response.status != 200:
                raise self.client.fail(response, "ListObjectsV2")
            root = self.client.xml(response, "ListObjectsV2")
            for element in root:
                if _local(element.tag) != "Contents":
                    continue
                key = _child_text(element, "Key") or ""
                blob_id = key[len(self.prefix) :] if key.startswith(self.prefix) else ""
                if not _is_blob_id(blob_id):
                    continue
                try:
                    size = int(_child_text(element, "Size") or "0")
                except ValueError:
                    size = 0
                yield blob_id, size, _parse_time(_child_text(element, "LastModified"))
            token = _child_text(root, "NextContinuationToken")
            if _child_text(root, "IsTruncated") != "true" or not token:
                return

    def temporaries(self, older_than: datetime) -> list[str]:
        """Spool files last written before ``older_than`` (``spool:<file>``), and multipart
        uploads of blobs started before it and never completed (``upload:<id>:<upload id>``)."""
        cutoff = older_than.timestamp()
        found = []
        with os.scandir(self.spool_dir) as entries:
            for entry in entries:
                if entry.name.endswith(".spool"):
                    try:
                        if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                            found.append(f"spool:{entry.name}")
                    except FileNotFoundError:
                        continue
        found.extend(self._stale_uploads(older_than))
        return found

    def _stale_uploads(self, older_than: datetime) -> Iterator[str]:
        key_marker = upload_marker = ""
        while True:
            query = {"uploads": "", "prefix": self.prefix}
            if key_marker:
                query["key-marker"] = key_marker
                query["upload-id-marker"] = upload_marker
            response = self.client.request("GET", query=query)
            if response.status in {400, 501}:  # an upstream that does not list uploads
                _drain(response)
                return
            if response.status != 200:
                raise self.client.fail(response, "ListMultipartUploads")
            root = self.client.xml(response, "ListMultipartUploads")
            for element in root:
                if _local(element.tag) != "Upload":
                    continue
                key = _child_text(element, "Key") or ""
                upload_id = _child_text(element, "UploadId") or ""
                blob_id = key[len(self.prefix) :] if key.startswith(self.prefix) else ""
                initiated = _parse_time(_child_text(element, "Initiated"))
                if _is_blob_id(blob_id) and upload_id and initiated < older_than:
                    yield f"upload:{blob_id}:{upload_id}"
            key_marker = _child_text(root, "NextKeyMarker") or ""
            upload_marker = _child_text(root, "NextUploadIdMarker") or ""
            if _child_text(root, "IsTruncated") != "true" or not key_marker:
                return

    def remove_temporary(self, name: str) -> None:
        """Remove a spool file or abort an upload named by ``temporaries``."""
        kind, _, rest = name.partition(":")
        if kind == "spool" and rest and "/" not in rest and rest not in {".", ".."}:
            (self.spool_dir / rest).unlink(missing_ok=True)
            return
        blob_id, _, upload_id = rest.partition(":")
        if kind == "upload" and _is_blob_id(blob_id) and upload_id:
            self.abort_upload(self.key(blob_id), upload_id)
            return
        raise ValueError(f"not a temporary's name: {name!r}")

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort multipart upload ``upload_id`` of ``key``, best effort (fsck finds what is
        left)."""
        try:
            response = self.client.request("DELETE", key, query={"uploadId": upload_id})
            _drain(response)
        except ServiceBusy:
            pass

    def health(self) -> str | None:
        """``None`` if the bucket answers a HEAD, else why not."""
        try:
            response = self.client.request("HEAD")
            response.read_body(0)
        except ServiceBusy as exc:
            return exc.detail
        if response.status != 200:
            return f"the upstream store answered {response.status} for bucket {self.client.bucket}"
        return None

    def close(self) -> None:
        """Close the idle connections."""
        self.client.pool.close()


def _is_blob_id(text: str) -> bool:
    try:
        _check_blob_id(text)
    except ValueError:
        return False
    return True


if TYPE_CHECKING:
    _backend: BlobBackend = UpstreamBackend(
        endpoint="", region="", bucket="", access_key="", secret="", spool_dir=Path()
    )
