"""What every S3 request goes through before its operation: addressing (path-style and
virtual-hosted-style), authentication (SigV4 in headers or a presigned URL), the body's
decoding (plain, signed, ``aws-chunked`` with signed chunks or trailers) and its checks."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from urllib.parse import unquote, unquote_to_bytes

from civicloud.core.db import utcnow
from civicloud.store import checksums, sigv2, sigv4
from civicloud.store.chunked import AwsChunkedReader
from civicloud.store.context import StoreContext
from civicloud.store.errors import (
    AuthorizationMalformed,
    ContentSha256Mismatch,
    EntityTooLarge,
    IncompleteBody,
    InvalidArgument,
    InvalidRequest,
    InvalidURI,
    MissingContentLength,
)
from civicloud.store.keys import Caller, cached_caller, resolve_key
from civicloud.store.objects import Direct, Incoming
from civicloud.store.s3.server import Exchange
from civicloud.store.service import REGION_ALIASES

SIGNED_STREAMING = (
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
)
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


def decode_path(raw: str) -> str:
    """A percent-encoded path as text (``InvalidURI`` for bytes that are not UTF-8)."""
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidURI("Couldn't parse the specified URI.") from None


def parse_query(raw: str) -> dict[str, str]:
    """The query's parameters, decoded (a name without ``=`` maps to ``""``)."""
    found: dict[str, str] = {}
    if not raw:
        return found
    for item in raw.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        try:
            found[unquote(name, errors="strict")] = unquote(
                value.replace("+", "%20"), errors="strict"
            )
        except UnicodeDecodeError:
            raise InvalidURI("Couldn't parse the specified URI.") from None
    return found


@dataclass
class Request:
    """An S3 request, addressed and (when signed) authenticated."""

    ex: Exchange
    id: str
    bucket: str | None
    key: str | None
    query: dict[str, str]
    auth: sigv4.ParsedAuth | None = None
    caller: Caller | None = None
    seed: str = ""
    operation: str = ""
    tenant_id: object = None
    region: str | None = None
    #: Addressed virtual-hosted-style (``BUCKET.s3.DOMAIN``).
    virtual: bool = False
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return self.ex.headers

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.ex.headers.get(name, default)

    @property
    def resource(self) -> str:
        if self.bucket is None:
            return "/"
        return f"/{self.bucket}" + (f"/{self.key}" if self.key is not None else "")


def address(ex: Exchange, domain: str) -> tuple[str | None, str | None, bool]:
    """The bucket and key a request names: from the host (``BUCKET.s3.DOMAIN``) or the path."""
    host = ex.headers.get("host", "").lower()
    host = host.split("]")[0] + "]" if host.startswith("[") else host.rsplit(":", 1)[0]
    path = decode_path(ex.raw_path)
    if not path.startswith("/"):
        raise InvalidURI("Couldn't parse the specified URI.")
    suffixes = [f".s3.{domain}"] if domain else []
    suffixes.append(".s3.localhost")
    for suffix in suffixes:
        if host.endswith(suffix) and len(host) > len(suffix):
            bucket = host[: -len(suffix)]
            rest = path[1:]
            return bucket, rest if rest else None, True
    rest = path[1:]
    if not rest:
        return None, None, False
    bucket, slash, key = rest.partition("/")
    return bucket, key if slash and key else None, False


def authenticate(context: StoreContext, request: Request) -> None:
    """Check the request's signature and set its caller (anonymous: no caller)."""
    ex = request.ex
    v2 = sigv2.parse_v2(raw_query=ex.raw_query, headers=ex.headers, now=utcnow())
    if v2 is not None:
        caller = _caller(context, v2.access_key)
        text = sigv2.string_to_sign(
            v2,
            method=ex.method,
            raw_path=ex.raw_path,
            raw_query=ex.raw_query,
            headers=ex.headers,
            bucket=request.bucket,
            virtual_host=request.virtual,
        )
        sigv2.verify_v2(v2, secret=caller.secret, text=text)
        request.caller = caller
        return
    parsed = sigv4.parse_auth(
        method=ex.method, raw_path=ex.raw_path, raw_query=ex.raw_query, headers=ex.headers
    )
    if parsed is None:
        return
    sigv4.check_time(parsed, utcnow())
    caller = _caller(context, parsed.credential.access_key)
    request.seed = sigv4.verify(
        parsed,
        secret=caller.secret,
        method=ex.method,
        raw_path=ex.raw_path,
        raw_query=ex.raw_query,
        headers=ex.headers,
    )
    request.auth = parsed
    request.caller = caller


def _caller(context: StoreContext, access_key_id: str) -> Caller:
    """The key's caller: from the cache of the last seconds, else through a read unit."""
    cached = cached_caller(context, access_key_id)
    if cached is not None:
        return cached
    with context.db.unit_of_work(write=False) as session:
        return resolve_key(session=session, context=context, access_key_id=access_key_id)


def check_region(request: Request, region: str) -> None:
    """The request must be signed for the bucket's region (or the ``us-east-1`` alias)."""
    if request.auth is None:
        return
    signed = request.auth.credential.region
    if signed != region and signed not in REGION_ALIASES:
        raise AuthorizationMalformed(
            "The authorization header is malformed; the region '%(signed)s' is wrong; "
            "expecting '%(region)s'",
            params={"signed": signed, "region": region},
            region=region,
        )


class _Bounded:
    """The raw body, at most ``length`` bytes of it."""

    def __init__(self, ex: Exchange, length: int) -> None:
        self._ex = ex
        self.left = length

    def read(self, n: int, /) -> bytes:
        if self.left <= 0:
            return b""
        data = self._ex.read(min(n, self.left))
        self.left -= len(data)
        return data

    def readinto(self, buffer: memoryview, /) -> int:
        """Fill ``buffer`` with the next bytes, fewer only at the end; how many (0: the end,
        or the client stopped sending)."""
        want = min(len(buffer), self.left)
        got = 0
        while got < want:
            n = self._ex.readinto(buffer[got:want])
            if not n:
                break
            got += n
        self.left -= got
        return got


class _HttpChunked:
    """A body sent with ``Transfer-Encoding: chunked`` (what botocore does for streamed
    uploads over HTTPS), de-chunked; HTTP trailers after the last chunk are read and dropped."""

    def __init__(self, ex: Exchange, limit: int) -> None:
        self._ex = ex
        self._left_in_chunk = 0
        self._done = False
        self._limit = limit
        self.total = 0
        self.left = 1  # unknown until the end: "more to come"

    def _line(self) -> bytes:
        line = self._ex.readline(4096)
        if not line.endswith(b"\r\n"):
            if not line:
                raise IncompleteBody("The body ended before its last chunk.")
            raise InvalidRequest("A chunk size line of the body is not valid.")
        return line[:-2]

    def read(self, n: int, /) -> bytes:
        """Up to ``n`` bytes, fewer only at the end (across HTTP chunks)."""
        first = self._read_some(n)
        if len(first) == n or not first:
            return first
        pieces = [first]
        got = len(first)
        while got < n:
            more = self._read_some(n - got)
            if not more:
                break
            pieces.append(more)
            got += len(more)
        return b"".join(pieces)

    def _read_some(self, n: int) -> bytes:
        if self._done:
            return b""
        if self._left_in_chunk == 0:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise InvalidRequest("A chunk size line of the body is not valid.") from None
            if size < 0 or len(size_text) > 16:
                raise InvalidRequest("A chunk size line of the body is not valid.")
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                self._done, self.left = True, 0
                self._ex.body_done = True
                return b""
            self._left_in_chunk = size
            self.total += size
            if self.total > self._limit:
                raise EntityTooLarge("Your proposed upload exceeds the maximum allowed size")
        data = self._ex.read(min(n, self._left_in_chunk))
        if not data:
            raise IncompleteBody("The body ended before its last chunk.")
        self._left_in_chunk -= len(data)
        if self._left_in_chunk == 0 and self._ex.read(2) != b"\r\n":
            raise InvalidRequest("A chunk of the body is not followed by CRLF.")
        return data


class _Sha256Checked:
    """A body whose SHA-256 was signed: checked when it ends, before anything is kept. Large
    pieces are hashed in a worker thread while the next one is read (hashlib lets go of the
    GIL), one piece in flight at a time, in order."""

    def __init__(self, raw: _Bounded | _HttpChunked, expected: str) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self._expected = expected.lower()
        self._pending: Future[None] | None = None

    def _join(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def read(self, n: int, /) -> bytes:
        data = self._raw.read(n)
        self._join()
        if len(data) >= checksums.THREADED_MIN_CHUNK:
            self._pending = checksums.background().submit(self._hash.update, data)
        elif data:
            self._hash.update(data)
        if not data or self._raw.left == 0:
            self._join()
            if not hmac.compare_digest(self._hash.hexdigest(), self._expected):
                raise ContentSha256Mismatch(
                    "The provided 'x-amz-content-sha256' header does not match what was computed."
                )
        return data


def content_length(request: Request) -> int | None:
    """The declared Content-Length (``None`` when absent), checked."""
    value = request.header("content-length")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 16:
        raise InvalidArgument("The Content-Length header is not valid.")
    return int(value)


@dataclass
class Body:
    """A request body, decoded: how to read it, its size, and its integrity checks."""

    incoming: Incoming
    reader: AwsChunkedReader | None = None


def body(request: Request, *, max_bytes: int, required: bool = True) -> Body:
    """The request's body, ready to stream: decoded, with the checks its headers ask for."""
    declared = content_length(request)
    transfer = (request.header("transfer-encoding") or "").strip().lower()
    raw: _Bounded | _HttpChunked
    if transfer:
        if transfer != "chunked" or declared is not None:
            raise InvalidRequest("The Transfer-Encoding header is not valid.")
        raw = _HttpChunked(request.ex, max_bytes * 2 + (1 << 20))
    else:
        if declared is None:
            if required:
                raise MissingContentLength("You must provide the Content-Length HTTP header.")
            declared = 0
        raw = _Bounded(request.ex, declared)
    payload = request.header("x-amz-content-sha256") or ""
    if request.auth is not None and request.auth.presigned:
        payload = request.header("x-amz-content-sha256") or "UNSIGNED-PAYLOAD"
    chunked = (
        payload in SIGNED_STREAMING
        or payload == UNSIGNED_TRAILER
        or ("aws-chunked" in (request.header("content-encoding") or "").lower())
    )
    trailer_names = [
        t.strip().lower() for t in (request.header("x-amz-trailer") or "").split(",") if t.strip()
    ]
    reader: AwsChunkedReader | None = None
    length: int | None
    read: Callable[[int], bytes]
    direct: Direct | None = None
    if chunked:
        decoded = request.header("x-amz-decoded-content-length")
        if decoded is None or not (decoded.isascii() and decoded.isdigit()) or len(decoded) > 16:
            raise MissingContentLength(
                "You must provide the x-amz-decoded-content-length header with aws-chunked."
            )
        length = int(decoded)
        signer = None
        if payload in SIGNED_STREAMING:
            if request.auth is None or request.caller is None:
                raise AuthorizationMalformed("A signed streaming body needs a signed request.")
            signer = sigv4.chain_for(
                request.auth, secret=request.caller.secret, seed_signature=request.seed
            )
        reader = AwsChunkedReader(
            raw,
            encoded_length=declared if isinstance(raw, _Bounded) else None,
            decoded_length=length,
            signer=signer,
            trailer_names=trailer_names,
        )
        read = reader.read
    else:
        length = declared if isinstance(raw, _Bounded) else None
        signed = len(payload) == 64 and all(c in "0123456789abcdefABCDEF" for c in payload)
        read = _Sha256Checked(raw, payload).read if signed else raw.read
        if isinstance(raw, _Bounded):
            direct = Direct(readinto=raw.readinto, sha256=payload.lower() if signed else None)
    if length is not None and length > max_bytes:
        raise EntityTooLarge(
            "Your proposed upload exceeds the maximum allowed size",
            params={"size": length, "max_size": max_bytes},
        )
    algorithm, expected_header = _checksum_asked(request, trailer_names)
    content_md5 = request.header("content-md5")
    md5 = checksums.parse_content_md5(content_md5) if content_md5 is not None else None

    def expected() -> bytes | None:
        if expected_header is not None:
            return expected_header
        if reader is not None and algorithm is not None:
            value = reader.trailers.get(checksums.header_name(algorithm))
            if value is None:
                if checksums.header_name(algorithm) in trailer_names:
                    raise IncompleteBody("The trailing checksum was announced but not sent.")
                return None
            return checksums.parse_b64(algorithm, value)
        return None

    return Body(
        Incoming(
            read=read,
            length=length,
            content_md5=md5,
            algorithm=algorithm,
            expected=expected,
            direct=direct,
        ),
        reader,
    )


def _checksum_asked(request: Request, trailer_names: list[str]) -> tuple[str | None, bytes | None]:
    """The checksum algorithm the body comes with, and its value when sent as a header."""
    found: list[tuple[str, bytes | None]] = []
    for algorithm in checksums.ALGORITHMS:
        name = checksums.header_name(algorithm)
        value = request.header(name)
        if value is not None:
            found.append((algorithm, checksums.parse_b64(algorithm, value)))
        elif name in trailer_names:
            found.append((algorithm, None))
    if len(found) > 1:
        raise InvalidRequest(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    if found:
        return found[0]
    declared = request.header("x-amz-sdk-checksum-algorithm") or request.header(
        "x-amz-checksum-algorithm"
    )
    if declared:
        name = declared.strip().upper()
        if name not in checksums.ALGORITHMS:
            raise InvalidRequest(
                "Checksum algorithm provided is unsupported. Please try again with any of the "
                "valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]"
            )
        return name, None
    return None, None


def drain(request: Request, reader: Body | None = None, *, limit: int = 1 << 20) -> None:
    """Read what is left of a body we answer without (so the connection can be kept), or mark
    the connection to be closed when too much is left or the client still waits for 100."""
    ex = request.ex
    if request.header("transfer-encoding"):
        if not ex.body_done:
            ex.close_after = True
        return
    declared = request.header("content-length")
    if declared is None or not (declared.isascii() and declared.isdigit()):
        return
    left = int(declared) - ex.body_read
    if left <= 0:
        return
    expects = ex.headers.get("expect", "").lower() == "100-continue"
    if left > limit or (expects and ex.body_read == 0):
        ex.close_after = True
        return
    while left > 0:
        data = ex.read(min(left, 65536))
        if not data:
            break
        left -= len(data)
