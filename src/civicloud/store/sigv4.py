"""AWS Signature Version 4 as S3 does it: verifying what S3 clients send, and signing Store's
own requests.

A signed request carries its authentication in one of two places:

- the ``Authorization`` header (``AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…,
  Signature=…``) with ``X-Amz-Date`` (or ``Date``) and ``x-amz-content-sha256``;
- the query of a presigned URL (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``,
  ``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature``), whose payload is
  ``UNSIGNED-PAYLOAD``.

The server calls :func:`parse_auth` (``None``: an anonymous request), looks the access key up,
then :func:`check_time` and :func:`verify`. A body sent as ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``
(``-TRAILER``) is checked chunk by chunk with the :class:`ChunkChain` of :func:`chain_for`,
seeded with the signature :func:`verify` returned.

The canonical request is S3's, which differs from other services' in one way: the path is not
normalised (no ``.``/``..`` removal, no merging of ``//``) nor encoded twice; it is the path as
the client encoded it. The query is decoded and encoded again (RFC 3986 unreserved characters
kept, everything else ``%XX``), sorted by name then value. Header values are trimmed, runs of
white space collapsed to one space, repeated values joined with ``,``.

Should the client have encoded its path or query in another way than the canonical one (a
sub-delimiter left raw, lower-case hex), the canonical forms of the *same decoded* path and
query, and the query exactly as sent, are tried too: each names the same request, so accepting
it changes nothing about what was authorised.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes

from civicloud.store.errors import (
    AccessDenied,
    AuthorizationMalformed,
    InvalidArgument,
    InvalidRequest,
    RequestExpired,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)

ALGORITHM = "AWS4-HMAC-SHA256"
"""The one signing algorithm Store accepts."""

TERMINAL = "aws4_request"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
PAYLOAD_HASH_KEYWORDS = frozenset(
    {
        UNSIGNED_PAYLOAD,
        STREAMING_PAYLOAD,
        STREAMING_PAYLOAD_TRAILER,
        STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    }
)
"""The ``x-amz-content-sha256`` values that are not a SHA-256 of the body."""

MAX_SKEW = timedelta(minutes=15)
"""How far a header-signed request's time may be from the server's clock (S3's 15 minutes)."""

MAX_EXPIRES_SECONDS = 604_800
"""The longest life of a presigned URL: seven days."""

MAX_AUTHORIZATION_LENGTH = 8192
MAX_QUERY_LENGTH = 16_384
MAX_QUERY_PARAMETERS = 500

_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_TIMESTAMP_RE = re.compile(r"\d{8}T\d{6}Z", re.ASCII)
_DATE_RE = re.compile(r"\d{8}", re.ASCII)
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+", re.ASCII)
_UNRESERVED_RE = re.compile(r"[A-Za-z0-9_.~-]*", re.ASCII)
_CREDENTIAL_PART_RE = re.compile(r"[\x21-\x7e]{1,128}", re.ASCII)

# Headers a signer leaves out because proxies change them (botocore's list).
_UNSIGNABLE_HEADERS = frozenset(
    {
        "authorization",
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)

_PRESIGN_PARAMETERS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)

_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method."
)
_CREDENTIAL_SHAPE = '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request"'


@dataclass(frozen=True)
class Credential:
    """The ``Credential`` of a signature: who signed, on which day, for which region and service."""

    access_key: str
    date: str  # YYYYMMDD
    region: str
    service: str
    terminal: str  # always "aws4_request"

    def scope(self) -> str:
        """The credential scope, ``date/region/service/aws4_request`` (no access key)."""
        return f"{self.date}/{self.region}/{self.service}/{self.terminal}"


@dataclass(frozen=True)
class ParsedAuth:
    """A request's SigV4 authentication, parsed and well-formed but not yet verified."""

    credential: Credential
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: datetime  # aware, UTC
    payload_hash: str  # x-amz-content-sha256; UNSIGNED-PAYLOAD for presigned URLs
    presigned: bool
    expires_seconds: int | None

    @functools.cached_property
    def timestamp(self) -> str:
        """The request time as signed, ``YYYYMMDDTHHMMSSZ``."""
        return self.amz_date.strftime(_TIMESTAMP_FORMAT)


# ---- encoding --------------------------------------------------------------------------------


def uri_encode(value: str, *, safe: str = "-_.~") -> str:
    """``value`` encoded as SigV4 wants it: UTF-8, every byte but ``A-Za-z0-9`` and ``safe``
    as upper-case ``%XX`` (a space is ``%20``, never ``+``)."""
    return quote(value, safe=safe)


def _decode_component(raw: str, *, plus_is_space: bool) -> bytes:
    if plus_is_space and "+" in raw:
        raw = raw.replace("+", " ")
    if "%" not in raw:
        return raw.encode("utf-8", "surrogateescape")
    return unquote_to_bytes(raw)


def _split_query(raw_query: str) -> list[tuple[str, str]]:
    """The query's ``name=value`` pairs exactly as sent (still encoded), empty pieces left out."""
    pairs: list[tuple[str, str]] = []
    if not raw_query:
        return pairs
    for piece in raw_query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append((name, value))
    return pairs


def _reencode(raw: str) -> str:
    if _UNRESERVED_RE.fullmatch(raw):  # the common case: nothing to decode or encode
        return raw
    return quote_from_bytes(_decode_component(raw, plus_is_space=True), safe="-_.~")


def _canonical_query_normalised(pairs: Iterable[tuple[str, str]]) -> str:
    encoded = [(_reencode(name), _reencode(value)) for name, value in pairs]
    encoded.sort()
    return "&".join(f"{name}={value}" for name, value in encoded)


def _canonical_query_as_sent(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _canonical_query_decoded(query: Sequence[tuple[str, str]]) -> str:
    encoded = sorted((uri_encode(name), uri_encode(value)) for name, value in query)
    return "&".join(f"{name}={value}" for name, value in encoded)


def _path_normalised(raw_path: str) -> str:
    return quote_from_bytes(_decode_component(raw_path, plus_is_space=False), safe="/~")


def _trim(value: str) -> str:
    return " ".join(value.split())


# ---- signing primitives ----------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The day's signing key: HMAC chain of ``AWS4<secret>`` over date, region, service and
    ``aws4_request`` (cached: one per key and day)."""
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, TERMINAL):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _hmac_hex(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def _canonical_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Sequence[tuple[str, str]],
    signed_line: str,
    payload_hash: str,
) -> str:
    canonical_headers = "".join(f"{name}:{value}\n" for name, value in headers)
    return f"{method}\n{path}\n{query}\n{canonical_headers}\n{signed_line}\n{payload_hash}"


def _string_to_sign(timestamp: str, scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def _same(expected: str, given: str | bytes) -> bool:
    given_bytes = given if isinstance(given, bytes) else given.encode("utf-8", "replace")
    return hmac.compare_digest(expected.encode("ascii"), given_bytes)


# ---- parsing ---------------------------------------------------------------------------------


def _parse_credential(
    value: str, error: type[InvalidArgument | AuthorizationMalformed]
) -> Credential:
    parts = value.split("/")
    if len(parts) != 5 or not all(_CREDENTIAL_PART_RE.fullmatch(p) for p in parts):
        raise error(
            "The Credential is mal-formed; expecting %(expected)s.",
            params={"expected": _CREDENTIAL_SHAPE},
        )
    access_key, date, region, service, terminal = parts
    if not _DATE_RE.fullmatch(date) or _day(date) is None:
        raise error(
            "Invalid credential date %(date)s: it must be in YYYYMMDD format.",
            params={"date": date},
        )
    if service != "s3":
        raise error(
            'The Credential is mal-formed; incorrect service "%(service)s". '
            'This endpoint belongs to "s3".',
            params={"service": service},
        )
    if terminal != TERMINAL:
        raise error(
            'The Credential is mal-formed; incorrect terminal "%(terminal)s". '
            'This endpoint uses "aws4_request".',
            params={"terminal": terminal},
        )
    return Credential(access_key, date, region, service, terminal)


def _day(date: str) -> datetime | None:
    try:
        return datetime(int(date[:4]), int(date[4:6]), int(date[6:8]), tzinfo=UTC)
    except ValueError:
        return None


def _parse_timestamp(value: str) -> datetime | None:
    if not _TIMESTAMP_RE.fullmatch(value):
        return None
    try:
        return datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def _parse_http_date(value: str) -> datetime | None:
    if len(value) > 64:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:  # pragma: no cover - older Pythons returned None
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).replace(microsecond=0)


def _parse_signed_headers(
    value: str, error: type[InvalidArgument | AuthorizationMalformed]
) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if not value or not all(_HEADER_NAME_RE.fullmatch(n) for n in names):
        raise error(
            "The SignedHeaders %(signed_headers)s are mal-formed: lower-case header names "
            "separated by ';' are expected.",
            params={"signed_headers": value[:256]},
        )
    if "host" not in names:
        raise error("The host header must be signed.", params={})
    return names


def _check_payload_hash(value: str) -> str:
    if value in PAYLOAD_HASH_KEYWORDS or _SHA256_RE.fullmatch(value):
        return value
    raise InvalidArgument(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, STREAMING-UNSIGNED-PAYLOAD-TRAILER or "
        "a valid sha256 value.",
        params={"value": value[:128]},
    )


def parse_auth(
    *, method: str, raw_path: str, raw_query: str, headers: Mapping[str, str]
) -> ParsedAuth | None:
    """The request's SigV4 authentication, or ``None`` for an anonymous request.

    ``headers`` maps lower-case names to values, repeats joined with ``,``. Raises
    :class:`AuthorizationMalformed` for a bad ``Authorization`` header, :class:`InvalidArgument`
    for bad presigned-URL parameters, :class:`AccessDenied` for Signature Version 2 or a missing
    date, :class:`InvalidRequest` for a header signature without ``x-amz-content-sha256``.
    """
    del method, raw_path  # part of the signature, not of its form
    authorization = headers.get("authorization")
    maybe_query_auth = "X-Amz-" in raw_query or "AWSAccessKeyId" in raw_query
    query_pairs = _split_query(raw_query[: MAX_QUERY_LENGTH + 1]) if maybe_query_auth else []
    query_names = {name for name, _ in query_pairs}
    if authorization is not None:
        if "X-Amz-Algorithm" in query_names or "Signature" in query_names:
            raise InvalidArgument(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be "
                "specified.",
                params={},
            )
        return _parse_header_auth(authorization, headers)
    if "X-Amz-Algorithm" in query_names:
        return _parse_query_auth(raw_query, query_pairs, headers)
    if "AWSAccessKeyId" in query_names and "Signature" in query_names:
        raise AccessDenied(
            "Signature Version 2 is not supported: sign requests with AWS4-HMAC-SHA256.",
            params={},
        )
    return None


def _authorization_fields(rest: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for raw_piece in rest.split(","):
        piece = raw_piece.strip()
        if not piece:
            continue
        name, sep, value = piece.partition("=")
        name = name.strip()
        if not sep or name in fields:
            raise AuthorizationMalformed(
                "The authorization header is malformed; %(part)s is not a single name=value.",
                params={"part": name[:64]},
            )
        fields[name] = value.strip()
    return fields


def _header_date(headers: Mapping[str, str]) -> datetime | None:
    if "x-amz-date" in headers:
        return _parse_timestamp(headers["x-amz-date"])
    if "date" in headers:
        return _parse_http_date(headers["date"])
    return None


def _parse_header_auth(authorization: str, headers: Mapping[str, str]) -> ParsedAuth:
    if len(authorization) > MAX_AUTHORIZATION_LENGTH:
        raise AuthorizationMalformed(
            "The authorization header is malformed; it is longer than %(limit)s characters.",
            params={"limit": MAX_AUTHORIZATION_LENGTH},
        )
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm == "AWS":
        raise AccessDenied(
            "Signature Version 2 is not supported: sign requests with AWS4-HMAC-SHA256.",
            params={},
        )
    if algorithm != ALGORITHM:
        raise AuthorizationMalformed(
            "The authorization mechanism you have provided is not supported. "
            "Please use AWS4-HMAC-SHA256.",
            params={"algorithm": algorithm[:64]},
        )
    fields = _authorization_fields(rest)
    for required in ("Credential", "SignedHeaders", "Signature"):
        if required not in fields:
            raise AuthorizationMalformed(
                "The authorization header is malformed; it requires the %(field)s parameter.",
                params={"field": required},
            )
    credential = _parse_credential(fields["Credential"], AuthorizationMalformed)
    signed_headers = _parse_signed_headers(fields["SignedHeaders"], AuthorizationMalformed)
    signature = fields["Signature"]
    if not _SIGNATURE_RE.fullmatch(signature):
        raise AuthorizationMalformed(
            "The authorization header is malformed; the Signature must be 64 lower-case "
            "hexadecimal digits.",
            params={},
        )
    amz_date = _header_date(headers)
    if amz_date is None:
        raise AccessDenied(
            "AWS authentication requires a valid Date or x-amz-date header", params={}
        )
    payload_hash = headers.get("x-amz-content-sha256")
    if payload_hash is None:
        raise InvalidRequest(
            "Missing required header for this request: x-amz-content-sha256", params={}
        )
    return ParsedAuth(
        credential=credential,
        signed_headers=signed_headers,
        signature=signature,
        amz_date=amz_date,
        payload_hash=_check_payload_hash(payload_hash),
        presigned=False,
        expires_seconds=None,
    )


def _parse_query_auth(
    raw_query: str, pairs: list[tuple[str, str]], headers: Mapping[str, str]
) -> ParsedAuth:
    if len(raw_query) > MAX_QUERY_LENGTH or len(pairs) > MAX_QUERY_PARAMETERS:
        raise InvalidArgument(
            "The query string is longer than %(limit)s characters.",
            params={"limit": MAX_QUERY_LENGTH},
        )
    values: dict[str, str] = {}
    for name, raw_value in pairs:
        if not name.startswith("X-Amz-"):
            continue
        if name in values:
            raise InvalidArgument(
                "The query parameter %(name)s is given more than once.", params={"name": name}
            )
        values[name] = _decode_component(raw_value, plus_is_space=True).decode("utf-8", "replace")
    if any(name not in values for name in _PRESIGN_PARAMETERS):
        raise InvalidArgument(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
            "X-Amz-Expires parameters.",
            params={},
        )
    if values["X-Amz-Algorithm"] != ALGORITHM:
        raise InvalidArgument(
            'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"',
            params={"algorithm": values["X-Amz-Algorithm"][:64]},
        )
    credential = _parse_credential(values["X-Amz-Credential"], InvalidArgument)
    amz_date = _parse_timestamp(values["X-Amz-Date"])
    if amz_date is None:
        raise InvalidArgument(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"", params={}
        )
    expires_text = values["X-Amz-Expires"]
    if not expires_text.isascii() or not expires_text.isdigit() or len(expires_text) > 10:
        raise InvalidArgument(
            "X-Amz-Expires should be a number of seconds", params={"expires": expires_text[:32]}
        )
    expires = int(expires_text)
    if expires > MAX_EXPIRES_SECONDS:
        raise InvalidArgument(
            "X-Amz-Expires must be less than a week (in seconds) that is, the given "
            "X-Amz-Expires must be less than %(limit)s seconds",
            params={"limit": MAX_EXPIRES_SECONDS},
        )
    signed_headers = _parse_signed_headers(values["X-Amz-SignedHeaders"], InvalidArgument)
    signature = values["X-Amz-Signature"]
    if not _SIGNATURE_RE.fullmatch(signature):
        raise InvalidArgument(
            "X-Amz-Signature must be 64 lower-case hexadecimal digits.", params={}
        )
    # A presigned URL may sign a payload hash in its query; otherwise the payload is unsigned.
    payload_hash = _check_payload_hash(values.get("X-Amz-Content-Sha256", UNSIGNED_PAYLOAD))
    del headers
    return ParsedAuth(
        credential=credential,
        signed_headers=signed_headers,
        signature=signature,
        amz_date=amz_date,
        payload_hash=payload_hash,
        presigned=True,
        expires_seconds=expires,
    )


# ---- checking --------------------------------------------------------------------------------


def check_time(parsed: ParsedAuth, now: datetime) -> None:
    """Refuse a signature out of its time: a header signature more than 15 minutes from ``now``
    (:class:`RequestTimeTooSkewed`), a presigned URL past its expiry (:class:`RequestExpired`)
    or dated more than 15 minutes ahead (:class:`AccessDenied`), or a credential dated another
    day than the request."""
    now = now.astimezone(UTC)
    if parsed.credential.date != parsed.amz_date.strftime("%Y%m%d"):
        error = InvalidArgument if parsed.presigned else AuthorizationMalformed
        raise error(
            "Invalid credential date. Date is not the same as X-Amz-Date.",
            params={"credential_date": parsed.credential.date},
        )
    if parsed.presigned:
        if parsed.amz_date - now > MAX_SKEW:
            raise AccessDenied(
                "Request is not valid yet",
                params={"request_time": parsed.timestamp},
            )
        expires = parsed.amz_date + timedelta(seconds=parsed.expires_seconds or 0)
        if now > expires:
            raise RequestExpired(
                "Request has expired",
                params={
                    "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "server_time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            )
        return
    if abs(now - parsed.amz_date) > MAX_SKEW:
        raise RequestTimeTooSkewed(
            "The difference between the request time and the current time is too large.",
            params={
                "request_time": parsed.timestamp,
                "server_time": now.strftime(_TIMESTAMP_FORMAT),
                "max_allowed_skew_milliseconds": int(MAX_SKEW.total_seconds() * 1000),
            },
        )


def _check_all_amz_headers_signed(parsed: ParsedAuth, headers: Mapping[str, str]) -> None:
    signed = set(parsed.signed_headers)
    unsigned = sorted(
        name
        for name in headers
        if name.startswith("x-amz-") and name not in signed and name != "x-amz-content-sha256"
    )
    if unsigned:
        raise AccessDenied(
            "There were headers present in the request which were not signed",
            params={"headers_not_signed": ", ".join(unsigned)[:512]},
        )


def verify(
    parsed: ParsedAuth,
    *,
    secret: str,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
) -> str:
    """Check the request's signature with the access key's ``secret``; return it (the seed of
    a chunked body's :class:`ChunkChain`). Raises :class:`SignatureDoesNotMatch`, or
    :class:`AccessDenied` when an ``x-amz-*`` header was sent but not signed."""
    _check_all_amz_headers_signed(parsed, headers)
    if len(raw_query) > MAX_QUERY_LENGTH:
        raise InvalidArgument(
            "The query string is longer than %(limit)s characters.",
            params={"limit": MAX_QUERY_LENGTH},
        )
    pairs = _split_query(raw_query)
    if len(pairs) > MAX_QUERY_PARAMETERS:
        raise InvalidArgument(
            "The query has more than %(limit)s parameters.",
            params={"limit": MAX_QUERY_PARAMETERS},
        )
    if parsed.presigned:
        pairs = [(name, value) for name, value in pairs if name != "X-Amz-Signature"]
    canonical_headers = [(name, _trim(headers.get(name, ""))) for name in parsed.signed_headers]
    credential = parsed.credential
    key = signing_key(secret, credential.date, credential.region, credential.service)
    timestamp = parsed.timestamp
    scope = credential.scope()
    signed_line = ";".join(parsed.signed_headers)
    method = method.upper()

    def attempt(path: str, query: str) -> tuple[bool, str, str]:
        canonical = _canonical_request(
            method=method,
            path=path,
            query=query,
            headers=canonical_headers,
            signed_line=signed_line,
            payload_hash=parsed.payload_hash,
        )
        string_to_sign = _string_to_sign(timestamp, scope, canonical)
        return _same(_hmac_hex(key, string_to_sign), parsed.signature), canonical, string_to_sign

    query = _canonical_query_normalised(pairs)
    ok, canonical, string_to_sign = attempt(raw_path, query)
    if ok:
        return parsed.signature
    # The same request encoded another way (see the module's docstring).
    tried = {(raw_path, query)}
    for path, other in (
        (_path_normalised(raw_path), query),
        (raw_path, _canonical_query_as_sent(pairs)),
        (_path_normalised(raw_path), _canonical_query_as_sent(pairs)),
    ):
        if (path, other) in tried:
            continue
        tried.add((path, other))
        if attempt(path, other)[0]:
            return parsed.signature
    raise SignatureDoesNotMatch(
        _MISMATCH,
        params={
            "access_key_id": credential.access_key,
            "string_to_sign": string_to_sign,
            "canonical_request": canonical,
            "signature_provided": parsed.signature,
        },
    )


# ---- chunked bodies --------------------------------------------------------------------------


def canonical_trailer(trailers: Iterable[tuple[str, str]]) -> bytes:
    """The trailing headers as their signature covers them: ``name:value\\n`` each, names in
    lower case, in the order sent (``x-amz-trailer-signature`` itself left out)."""
    return b"".join(
        f"{name.lower()}:{value.strip()}\n".encode("utf-8", "surrogateescape")
        for name, value in trailers
        if name.lower() != "x-amz-trailer-signature"
    )


class ChunkChain:
    """The chained signatures of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` (``-TRAILER``) body:
    each chunk's signature covers its data and the previous signature, the first the request's
    (the seed). Verify every chunk in order, the final empty one included, then the trailer."""

    __slots__ = ("_chunk_prefix", "_key", "_previous", "_trailer_prefix")

    def __init__(self, *, key: bytes, amz_date: str, scope: str, seed_signature: str) -> None:
        self._key = key
        self._chunk_prefix = f"AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n"
        self._trailer_prefix = f"AWS4-HMAC-SHA256-TRAILER\n{amz_date}\n{scope}\n"
        self._previous = seed_signature

    @property
    def previous_signature(self) -> str:
        """The last verified signature (the seed before any chunk)."""
        return self._previous

    def sign_chunk_sha256(self, sha256_hex: str) -> str:
        """The signature the next chunk, whose SHA-256 is ``sha256_hex``, must carry."""
        string_to_sign = f"{self._chunk_prefix}{self._previous}\n{EMPTY_SHA256}\n{sha256_hex}"
        return _hmac_hex(self._key, string_to_sign)

    def sign_chunk(self, data: bytes | memoryview) -> str:
        """The signature the next chunk, ``data``, must carry (the chain does not advance)."""
        return self.sign_chunk_sha256(hashlib.sha256(data).hexdigest())

    def verify_chunk_sha256(self, sha256_hex: str, signature: str | bytes) -> None:
        """Check the next chunk by its SHA-256 (for a caller that hashed it while reading)."""
        expected = self.sign_chunk_sha256(sha256_hex)
        if not _same(expected, signature):
            raise SignatureDoesNotMatch(_MISMATCH, params={"part": "chunk"})
        self._previous = expected

    def verify_chunk(self, data: bytes | memoryview, signature: str | bytes) -> None:
        """Check the next chunk's signature; it becomes the previous one. Raises
        :class:`SignatureDoesNotMatch`."""
        self.verify_chunk_sha256(hashlib.sha256(data).hexdigest(), signature)

    def sign_trailer(self, trailer: bytes) -> str:
        """The ``x-amz-trailer-signature`` of the trailer (see :func:`canonical_trailer`)."""
        string_to_sign = f"{self._trailer_prefix}{self._previous}\n"
        string_to_sign += hashlib.sha256(trailer).hexdigest()
        return _hmac_hex(self._key, string_to_sign)

    def verify_trailer(self, trailer: bytes, signature: str | bytes) -> None:
        """Check ``x-amz-trailer-signature``; ``trailer`` is :func:`canonical_trailer` of the
        trailing headers. Raises :class:`SignatureDoesNotMatch`."""
        expected = self.sign_trailer(trailer)
        if not _same(expected, signature):
            raise SignatureDoesNotMatch(_MISMATCH, params={"part": "trailer"})
        self._previous = expected


def chain_for(parsed: ParsedAuth, *, secret: str, seed_signature: str) -> ChunkChain:
    """The :class:`ChunkChain` of a verified request's body."""
    credential = parsed.credential
    return ChunkChain(
        key=signing_key(secret, credential.date, credential.region, credential.service),
        amz_date=parsed.timestamp,
        scope=credential.scope(),
        seed_signature=seed_signature,
    )


# ---- signing ---------------------------------------------------------------------------------


def sign_request(
    *,
    method: str,
    host: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    payload_sha256: str,
    access_key: str,
    secret: str,
    region: str,
    now: datetime,
    service: str = "s3",
) -> dict[str, str]:
    """The headers that sign a request: ``Authorization``, ``X-Amz-Date`` and
    ``X-Amz-Content-Sha256``. ``path`` is already URI-encoded (as it goes on the wire);
    ``query`` holds decoded pairs; ``host`` is the ``Host`` header sent (with its port, if
    any). Every header in ``headers`` is signed, and ``host``, but those proxies change
    (``user-agent``, ``connection``, …)."""
    timestamp = now.astimezone(UTC).strftime(_TIMESTAMP_FORMAT)
    to_sign: dict[str, list[str]] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in _UNSIGNABLE_HEADERS or lower in {"x-amz-date", "x-amz-content-sha256"}:
            continue
        to_sign.setdefault(lower, []).append(value)
    to_sign.setdefault("host", [host])
    to_sign["x-amz-date"] = [timestamp]
    to_sign["x-amz-content-sha256"] = [payload_sha256]
    names = sorted(to_sign)
    canonical_headers = [(n, ",".join(_trim(v) for v in to_sign[n])) for n in names]
    signed_line = ";".join(names)
    scope = f"{timestamp[:8]}/{region}/{service}/{TERMINAL}"
    canonical = _canonical_request(
        method=method.upper(),
        path=path,
        query=_canonical_query_decoded(query),
        headers=canonical_headers,
        signed_line=signed_line,
        payload_hash=payload_sha256,
    )
    key = signing_key(secret, timestamp[:8], region, service)
    signature = _hmac_hex(key, _string_to_sign(timestamp, scope, canonical))
    return {
        "Authorization": (
            f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed_line}, "
            f"Signature={signature}"
        ),
        "X-Amz-Date": timestamp,
        "X-Amz-Content-Sha256": payload_sha256,
    }


def presign(
    *,
    method: str,
    host: str,
    path: str,
    query: Sequence[tuple[str, str]],
    access_key: str,
    secret: str,
    region: str,
    now: datetime,
    expires_seconds: int,
    service: str = "s3",
) -> str:
    """A presigned URL's whole query string (``query``'s decoded pairs, then the signature's
    parameters, ``X-Amz-Signature`` last), to append after ``?``. Only ``host`` is signed."""
    if not 1 <= expires_seconds <= MAX_EXPIRES_SECONDS:
        raise InvalidArgument(
            "X-Amz-Expires must be between 1 and %(limit)s seconds",
            params={"limit": MAX_EXPIRES_SECONDS},
        )
    timestamp = now.astimezone(UTC).strftime(_TIMESTAMP_FORMAT)
    scope = f"{timestamp[:8]}/{region}/{service}/{TERMINAL}"
    auth = [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{access_key}/{scope}"),
        ("X-Amz-Date", timestamp),
        ("X-Amz-Expires", str(expires_seconds)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    everything = [*query, *auth]
    canonical = _canonical_request(
        method=method.upper(),
        path=path,
        query=_canonical_query_decoded(everything),
        headers=[("host", _trim(host))],
        signed_line="host",
        payload_hash=UNSIGNED_PAYLOAD,
    )
    key = signing_key(secret, timestamp[:8], region, service)
    signature = _hmac_hex(key, _string_to_sign(timestamp, scope, canonical))
    encoded = "&".join(f"{uri_encode(n)}={uri_encode(v)}" for n, v in everything)
    return f"{encoded}&X-Amz-Signature={signature}"


__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "MAX_EXPIRES_SECONDS",
    "MAX_SKEW",
    "PAYLOAD_HASH_KEYWORDS",
    "STREAMING_PAYLOAD",
    "STREAMING_PAYLOAD_TRAILER",
    "STREAMING_UNSIGNED_PAYLOAD_TRAILER",
    "UNSIGNED_PAYLOAD",
    "ChunkChain",
    "Credential",
    "ParsedAuth",
    "canonical_trailer",
    "chain_for",
    "check_time",
    "parse_auth",
    "presign",
    "sign_request",
    "signing_key",
    "uri_encode",
    "verify",
]
