"""Signature Version 4: what botocore signs, Store accepts; what Store signs, botocore would have
signed the same; AWS's published examples hold; anything changed after signing is refused."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from unittest.mock import patch
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicloud.store import sigv4
from civicloud.store.errors import (
    AccessDenied,
    AuthorizationMalformed,
    InvalidArgument,
    InvalidRequest,
    RequestExpired,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)

ACCESS_KEY = "AKIDEXAMPLESTORE"
SECRET = "s3cr3t/with+odd=chars"
REGION = "cn-north-1"
NOW = datetime(2026, 11, 3, 9, 30, 15, tzinfo=UTC)
ENDPOINT = "http://store.example.test:9000"
HOST = "store.example.test:9000"

DOC_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_TIME = datetime(2013, 5, 24, tzinfo=UTC)

ODD_KEYS = [
    "plain.txt",
    "with space.txt",
    "unicodé/文件/ß.bin",
    "plus+sign",
    "eq=ual&amp",
    "per%cent",
    "tilde~name",
    "double//slash",
    "/leading-slash",
    "trailing/",
    "!*'();:@$,?#[]",
    "dot/./and/../parent",
]


@dataclass
class Wire:
    """A request as the S3 port receives it."""

    method: str
    raw_path: str
    raw_query: str
    headers: dict[str, str]


def object_url(bucket: str, key: str, query: str = "") -> str:
    # What botocore's serializer puts on the wire for a key: everything but unreserved and "/".
    url = f"{ENDPOINT}/{bucket}/{percent_encode(key, safe='/~')}"
    return f"{url}?{query}" if query else url


def to_wire(request: AWSRequest) -> Wire:
    parts = urlsplit(str(request.url))
    headers = {str(name).lower(): str(value) for name, value in request.headers.items()}
    headers.setdefault("host", parts.netloc)
    return Wire(str(request.method), parts.path, parts.query, headers)


def boto_sign(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    when: datetime = NOW,
    secret: str = SECRET,
    access_key: str = ACCESS_KEY,
    region: str = REGION,
) -> Wire:
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}), data=body)
    with patch("botocore.auth.get_current_datetime", return_value=when.replace(tzinfo=None)):
        S3SigV4Auth(Credentials(access_key, secret), "s3", region).add_auth(request)
    return to_wire(request)


def boto_presign(method: str, url: str, *, expires: int = 3600, when: datetime = NOW) -> Wire:
    request = AWSRequest(method=method, url=url)
    with patch("botocore.auth.get_current_datetime", return_value=when.replace(tzinfo=None)):
        S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET), "s3", REGION, expires=expires).add_auth(
            request
        )
    return to_wire(request)


def parse(wire: Wire) -> sigv4.ParsedAuth:
    parsed = sigv4.parse_auth(
        method=wire.method, raw_path=wire.raw_path, raw_query=wire.raw_query, headers=wire.headers
    )
    assert parsed is not None
    return parsed


def accept(wire: Wire, *, secret: str = SECRET, now: datetime = NOW) -> sigv4.ParsedAuth:
    parsed = parse(wire)
    sigv4.check_time(parsed, now)
    signature = sigv4.verify(
        parsed,
        secret=secret,
        method=wire.method,
        raw_path=wire.raw_path,
        raw_query=wire.raw_query,
        headers=wire.headers,
    )
    assert signature == parsed.signature
    return parsed


# ---- botocore-signed requests are accepted ---------------------------------------------------


@pytest.mark.parametrize("key", ODD_KEYS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
def test_botocore_signed_object_requests_are_accepted(method: str, key: str) -> None:
    # Given a request for an odd key signed by botocore
    body = b"hello" if method == "PUT" else b""
    wire = boto_sign(method, object_url("bucket", key), body=body)
    # When Store checks it, then it passes, with the payload hash botocore sent
    parsed = accept(wire)
    assert parsed.credential == sigv4.Credential(
        ACCESS_KEY, "20261103", REGION, "s3", "aws4_request"
    )
    assert parsed.payload_hash == hashlib.sha256(body).hexdigest()
    assert not parsed.presigned
    assert parsed.amz_date == NOW


@pytest.mark.parametrize(
    "query",
    [
        "uploads",
        "versionId=3HL4kqtJlcpXroDTDmJ%2Brmsr&partNumber=1",
        "list-type=2&prefix=a%2Fb&delimiter=%2F",
        "prefix=with%20space&start-after=%E6%96%87&encoding-type=url",
        "uploadId=abc&partNumber=10&partNumber=2",
        "tagging=",
        "max-keys=2&prefix=J",
    ],
)
def test_botocore_signed_queries_are_accepted(query: str) -> None:
    wire = boto_sign("GET", object_url("bucket", "k", query))
    accept(wire)


def test_signed_headers_with_repeats_and_spaces_are_accepted() -> None:
    # Given extra headers whose values botocore trims and whose runs of spaces it collapses
    headers = {
        "Content-Type": "text/plain;   charset=utf-8",
        "x-amz-meta-note": "  a   b  ",
        "x-amz-storage-class": "STANDARD",
        "Range": "bytes=0-9",
    }
    wire = boto_sign("PUT", object_url("b", "k"), headers=headers, body=b"data")
    accept(wire)


def test_date_header_instead_of_x_amz_date_is_accepted() -> None:
    request = AWSRequest(
        method="GET", url=object_url("b", "k"), headers={"Date": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    with patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        S3SigV4Auth(Credentials(ACCESS_KEY, SECRET), "s3", REGION).add_auth(request)
    wire = to_wire(request)
    assert "x-amz-date" not in wire.headers
    parsed = accept(wire)
    assert parsed.amz_date == NOW


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.text(st.characters(codec="utf-8"), min_size=1, max_size=60),
    params=st.lists(
        st.tuples(
            st.text(st.characters(codec="utf-8"), min_size=1, max_size=12),
            st.text(st.characters(codec="utf-8"), max_size=20),
        ),
        max_size=4,
    ),
    method=st.sampled_from(["GET", "PUT", "DELETE", "POST"]),
)
def test_random_keys_and_query_values_signed_by_botocore_are_accepted(
    key: str, params: list[tuple[str, str]], method: str
) -> None:
    query = "&".join(f"{percent_encode(n)}={percent_encode(v)}" for n, v in params)
    wire = boto_sign(method, object_url("bucket", key, query))
    accept(wire)


# ---- presigned URLs --------------------------------------------------------------------------


@pytest.mark.parametrize("key", ODD_KEYS)
def test_botocore_presigned_urls_are_accepted(key: str) -> None:
    wire = boto_presign("GET", object_url("bucket", key, "versionId=v%2B1"), expires=600)
    parsed = accept(wire, now=NOW + timedelta(seconds=600))
    assert parsed.presigned
    assert parsed.expires_seconds == 600
    assert parsed.payload_hash == "UNSIGNED-PAYLOAD"


def test_presigned_url_past_its_expiry_is_refused() -> None:
    wire = boto_presign("GET", object_url("bucket", "k"), expires=600)
    parsed = parse(wire)
    with pytest.raises(RequestExpired, match="Request has expired"):
        sigv4.check_time(parsed, NOW + timedelta(seconds=601))


def test_presigned_url_from_the_future_is_refused() -> None:
    wire = boto_presign("GET", object_url("bucket", "k"), when=NOW + timedelta(minutes=16))
    with pytest.raises(AccessDenied, match="not valid yet"):
        sigv4.check_time(parse(wire), NOW)
    # within the allowed skew it is fine
    sigv4.check_time(parse(boto_presign("GET", object_url("b", "k"), when=NOW)), NOW)


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("X-Amz-Expires", "604801"),
        ("X-Amz-Expires", "-1"),
        ("X-Amz-Expires", "ten"),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA1"),
        ("X-Amz-Date", "2026-11-03T09:30:15Z"),
        ("X-Amz-Credential", "AKID%2F20261103%2Fcn-north-1%2Fs3"),
        ("X-Amz-Credential", "AKID%2F20261103%2Fcn-north-1%2Fiam%2Faws4_request"),
        ("X-Amz-SignedHeaders", "x-amz-date"),
        ("X-Amz-Signature", "XYZ"),
    ],
)
def test_bad_presigned_parameters_are_invalid_arguments(change: str, value: str) -> None:
    wire = boto_presign("GET", object_url("bucket", "k"))
    pairs = [
        (n, value if n == change else v)
        for n, v in (p.partition("=")[::2] for p in wire.raw_query.split("&"))
    ]
    query = "&".join(f"{n}={v}" for n, v in pairs)
    with pytest.raises(InvalidArgument):
        sigv4.parse_auth(
            method="GET", raw_path=wire.raw_path, raw_query=query, headers=wire.headers
        )


@pytest.mark.parametrize("missing", ["X-Amz-Credential", "X-Amz-Expires", "X-Amz-Signature"])
def test_presigned_url_missing_a_parameter_is_invalid(missing: str) -> None:
    wire = boto_presign("GET", object_url("bucket", "k"))
    query = "&".join(p for p in wire.raw_query.split("&") if not p.startswith(missing + "="))
    with pytest.raises(InvalidArgument, match="requires"):
        sigv4.parse_auth(
            method="GET", raw_path=wire.raw_path, raw_query=query, headers=wire.headers
        )


def test_presigned_url_with_an_added_unsigned_amz_header_is_refused() -> None:
    wire = boto_presign("PUT", object_url("bucket", "k"))
    wire.headers["x-amz-copy-source"] = "/other/secret"
    with pytest.raises(AccessDenied, match="not signed"):
        accept(wire)


def test_presigned_url_with_a_tampered_query_is_refused() -> None:
    wire = boto_presign("GET", object_url("bucket", "k", "partNumber=1"))
    wire.raw_query = wire.raw_query.replace("partNumber=1", "partNumber=2")
    with pytest.raises(SignatureDoesNotMatch):
        accept(wire)


# ---- tampering -------------------------------------------------------------------------------


def _tamper_method(w: Wire) -> None:
    w.method = "DELETE"


def _tamper_path(w: Wire) -> None:
    w.raw_path = w.raw_path + "x"


def _tamper_encoded_slash(w: Wire) -> None:
    w.raw_path = w.raw_path.replace("a%2Fb", "a/b")


def _tamper_query(w: Wire) -> None:
    w.raw_query = w.raw_query + "&x=1"


def _tamper_header(w: Wire) -> None:
    w.headers["content-type"] = "text/html"


def _tamper_host(w: Wire) -> None:
    w.headers["host"] = "elsewhere.test"


def _tamper_payload(w: Wire) -> None:
    w.headers["x-amz-content-sha256"] = hashlib.sha256(b"other").hexdigest()


def _tamper_date(w: Wire) -> None:
    w.headers["x-amz-date"] = "20261103T093016Z"


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_method,
        _tamper_path,
        _tamper_encoded_slash,
        _tamper_query,
        _tamper_header,
        _tamper_host,
        _tamper_payload,
        _tamper_date,
    ],
)
def test_anything_changed_after_signing_is_refused(tamper: object) -> None:
    wire = boto_sign(
        "PUT",
        object_url("bucket", "a/b", "partNumber=1&uploadId=u"),
        headers={"Content-Type": "text/plain"},
        body=b"x",
    )
    wire.raw_path = wire.raw_path.replace("a/b", "a%2Fb")
    # re-sign with the encoded slash, so that decoding it is a change
    wire = boto_sign(
        "PUT",
        f"{ENDPOINT}{wire.raw_path}?partNumber=1&uploadId=u",
        headers={"Content-Type": "text/plain"},
        body=b"x",
    )
    accept(wire)
    assert callable(tamper)
    tamper(wire)
    with pytest.raises(SignatureDoesNotMatch) as caught:
        accept(wire)
    assert SECRET not in str(caught.value.params)
    assert caught.value.detail.startswith("The request signature we calculated does not match")


def test_the_wrong_secret_is_refused() -> None:
    wire = boto_sign("GET", object_url("b", "k"), secret="another-secret")
    with pytest.raises(SignatureDoesNotMatch):
        accept(wire)


def test_an_unsigned_amz_header_is_refused() -> None:
    wire = boto_sign("PUT", object_url("b", "k"), body=b"x")
    wire.headers["x-amz-meta-late"] = "added"
    with pytest.raises(AccessDenied, match="not signed"):
        accept(wire)
    # other unsigned headers are fine
    wire = boto_sign("PUT", object_url("b", "k"), body=b"x")
    wire.headers["user-agent"] = "curl"
    accept(wire)


# ---- time ------------------------------------------------------------------------------------


def test_a_header_signature_far_from_the_clock_is_refused() -> None:
    wire = boto_sign("GET", object_url("b", "k"))
    for skew in (timedelta(minutes=15), -timedelta(minutes=15)):
        sigv4.check_time(parse(wire), NOW + skew)
    for skew in (timedelta(minutes=15, seconds=1), -timedelta(minutes=15, seconds=1)):
        with pytest.raises(RequestTimeTooSkewed):
            sigv4.check_time(parse(wire), NOW + skew)


def test_a_credential_of_another_day_is_malformed() -> None:
    wire = boto_sign("GET", object_url("b", "k"))
    wire.headers["authorization"] = wire.headers["authorization"].replace(
        "/20261103/", "/20261102/"
    )
    with pytest.raises(AuthorizationMalformed, match="Invalid credential date"):
        sigv4.check_time(parse(wire), NOW)


# ---- malformed headers -----------------------------------------------------------------------


def test_anonymous_requests_parse_to_none() -> None:
    assert (
        sigv4.parse_auth(
            method="GET", raw_path="/b/k", raw_query="prefix=X-Amz-", headers={"host": HOST}
        )
        is None
    )


GOOD_AUTH = (
    f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20261103/{REGION}/s3/aws4_request, "
    f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={'a' * 64}"
)


def _headers(authorization: str, **extra: str) -> dict[str, str]:
    headers = {
        "host": HOST,
        "authorization": authorization,
        "x-amz-date": "20261103T093015Z",
        "x-amz-content-sha256": sigv4.EMPTY_SHA256,
    }
    headers.update(extra)
    return headers


def _parse_headers(headers: Mapping[str, str], raw_query: str = "") -> sigv4.ParsedAuth | None:
    return sigv4.parse_auth(method="GET", raw_path="/b/k", raw_query=raw_query, headers=headers)


def test_a_well_formed_header_parses() -> None:
    parsed = _parse_headers(_headers(GOOD_AUTH))
    assert parsed is not None
    assert parsed.signed_headers == ("host", "x-amz-content-sha256", "x-amz-date")
    assert parsed.credential.scope() == f"20261103/{REGION}/s3/aws4_request"


@pytest.mark.parametrize(
    "authorization",
    [
        GOOD_AUTH.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"),
        GOOD_AUTH.replace("/aws4_request", ""),
        GOOD_AUTH.replace("/aws4_request", "/aws5_request"),
        GOOD_AUTH.replace("/s3/", "/ec2/"),
        GOOD_AUTH.replace("/20261103/", "/2026113/"),
        GOOD_AUTH.replace("/20261103/", "/20261399/"),
        GOOD_AUTH.replace("SignedHeaders=host;x-amz-content-sha256;x-amz-date, ", ""),
        GOOD_AUTH.replace("SignedHeaders=host;", "SignedHeaders="),
        GOOD_AUTH.replace("SignedHeaders=host;", "SignedHeaders=Host;;"),
        GOOD_AUTH.replace("a" * 64, "A" * 64),
        GOOD_AUTH.replace("a" * 64, "a" * 63),
        GOOD_AUTH.replace(", Signature=", ", Signature"),
        GOOD_AUTH + ", Signature=" + "b" * 64,
        GOOD_AUTH.replace("Credential=", "Credential=\u00e9"),
        GOOD_AUTH + " " * 9000,
        "AWS4-HMAC-SHA256",
        "",
    ],
)
def test_malformed_authorization_headers(authorization: str) -> None:
    with pytest.raises(AuthorizationMalformed):
        _parse_headers(_headers(authorization))


def test_signature_version_2_is_refused() -> None:
    with pytest.raises(AccessDenied):
        _parse_headers(_headers("AWS AKIDEXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg="))
    with pytest.raises(AccessDenied):
        _parse_headers({"host": HOST}, "AWSAccessKeyId=AKID&Expires=1&Signature=abc")


def test_the_payload_hash_header_is_required_and_checked() -> None:
    headers = _headers(GOOD_AUTH)
    del headers["x-amz-content-sha256"]
    with pytest.raises(InvalidRequest, match="x-amz-content-sha256"):
        _parse_headers(headers)
    with pytest.raises(InvalidArgument):
        _parse_headers(_headers(GOOD_AUTH, **{"x-amz-content-sha256": "not-a-hash"}))
    for keyword in sigv4.PAYLOAD_HASH_KEYWORDS:
        parsed = _parse_headers(_headers(GOOD_AUTH, **{"x-amz-content-sha256": keyword}))
        assert parsed is not None
        assert parsed.payload_hash == keyword


def test_a_missing_or_bad_date_is_refused() -> None:
    headers = _headers(GOOD_AUTH)
    del headers["x-amz-date"]
    with pytest.raises(AccessDenied, match="Date"):
        _parse_headers(headers)
    for bad in (
        "20261103T093015",
        "2026-11-03T09:30:15Z",
        "20261303T093015Z",
        "\u0662\u0660\u0662\u06661103T093015Z",
    ):
        with pytest.raises(AccessDenied):
            _parse_headers(_headers(GOOD_AUTH, **{"x-amz-date": bad}))
    del headers["host"]
    with pytest.raises(AccessDenied):
        _parse_headers({**headers, "date": "not a date"})


def test_two_auth_mechanisms_at_once_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="Only one auth mechanism"):
        _parse_headers(_headers(GOOD_AUTH), "X-Amz-Algorithm=AWS4-HMAC-SHA256")


def test_oversized_queries_are_refused() -> None:
    wire = boto_sign("GET", object_url("b", "k", "a=" + "x" * 20_000))
    with pytest.raises(InvalidArgument):
        accept(wire)


@settings(max_examples=300, deadline=None)
@given(
    authorization=st.text(max_size=200),
    query=st.text(max_size=200),
    date=st.text(max_size=40),
    payload=st.text(max_size=80),
)
def test_any_garbage_maps_to_an_s3_error(
    authorization: str, query: str, date: str, payload: str
) -> None:
    headers = {"host": HOST, "x-amz-date": date, "x-amz-content-sha256": payload}
    for auth in (authorization, "AWS4-HMAC-SHA256 " + authorization, None):
        h = dict(headers)
        if auth is not None:
            h["authorization"] = auth
        for q in (query, "X-Amz-Algorithm=AWS4-HMAC-SHA256&" + query):
            try:
                parsed = sigv4.parse_auth(method="GET", raw_path="/b/k", raw_query=q, headers=h)
                if parsed is not None:
                    sigv4.check_time(parsed, NOW)
                    sigv4.verify(
                        parsed, secret=SECRET, method="GET", raw_path="/b/k", raw_query=q, headers=h
                    )
            except (
                AuthorizationMalformed,
                InvalidArgument,
                InvalidRequest,
                AccessDenied,
                SignatureDoesNotMatch,
                RequestTimeTooSkewed,
                RequestExpired,
            ):
                pass


# ---- AWS's published examples ----------------------------------------------------------------


def _doc_accept(wire: Wire) -> str:
    parsed = parse(wire)
    sigv4.check_time(parsed, DOC_TIME)
    return sigv4.verify(
        parsed,
        secret=DOC_SECRET,
        method=wire.method,
        raw_path=wire.raw_path,
        raw_query=wire.raw_query,
        headers=wire.headers,
    )


def _doc_authorization(signed: str, signature: str) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential={DOC_ACCESS_KEY}/20130524/us-east-1/s3/aws4_request,"
        f"SignedHeaders={signed},Signature={signature}"
    )


@pytest.mark.parametrize(
    ("method", "path", "query", "extra", "payload", "signed", "signature"),
    [
        (
            "GET",
            "/test.txt",
            "",
            {"range": "bytes=0-9"},
            sigv4.EMPTY_SHA256,
            "host;range;x-amz-content-sha256;x-amz-date",
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        ),
        (
            "PUT",
            "/test%24file.text",
            "",
            {
                "date": "Fri, 24 May 2013 00:00:00 GMT",
                "x-amz-storage-class": "REDUCED_REDUNDANCY",
            },
            hashlib.sha256(b"Welcome to Amazon S3.").hexdigest(),
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        ),
        (
            "GET",
            "/",
            "lifecycle",
            {},
            sigv4.EMPTY_SHA256,
            "host;x-amz-content-sha256;x-amz-date",
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        ),
        (
            "GET",
            "/",
            "max-keys=2&prefix=J",
            {},
            sigv4.EMPTY_SHA256,
            "host;x-amz-content-sha256;x-amz-date",
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
    ],
)
def test_the_documented_header_examples_verify(
    method: str,
    path: str,
    query: str,
    extra: dict[str, str],
    payload: str,
    signed: str,
    signature: str,
) -> None:
    headers = {
        "host": "examplebucket.s3.amazonaws.com",
        "x-amz-date": "20130524T000000Z",
        "x-amz-content-sha256": payload,
        "authorization": _doc_authorization(signed, signature),
        **extra,
    }
    assert _doc_accept(Wire(method, path, query, headers)) == signature
    # and our own signer makes the same signature
    ours = sigv4.sign_request(
        method=method,
        host="examplebucket.s3.amazonaws.com",
        path=path,
        query=parse_qsl(query, keep_blank_values=True),
        headers=extra,
        payload_sha256=payload,
        access_key=DOC_ACCESS_KEY,
        secret=DOC_SECRET,
        region="us-east-1",
        now=DOC_TIME,
    )
    assert ours["Authorization"].endswith(f"SignedHeaders={signed}, Signature={signature}")


def test_the_documented_presigned_example() -> None:
    query = sigv4.presign(
        method="GET",
        host="examplebucket.s3.amazonaws.com",
        path="/test.txt",
        query=[],
        access_key=DOC_ACCESS_KEY,
        secret=DOC_SECRET,
        region="us-east-1",
        now=DOC_TIME,
        expires_seconds=86400,
    )
    assert query == (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    wire = Wire("GET", "/test.txt", query, {"host": "examplebucket.s3.amazonaws.com"})
    assert _doc_accept(wire).startswith("aeeed9bb")


DOC_CHUNK_HEADERS = {
    "host": "s3.amazonaws.com",
    "x-amz-date": "20130524T000000Z",
    "x-amz-storage-class": "REDUCED_REDUNDANCY",
    "content-encoding": "aws-chunked",
    "x-amz-decoded-content-length": "66560",
}


def test_the_documented_chunked_upload() -> None:
    # Given the seed request of AWS's chunked-upload example
    seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    headers = {
        **DOC_CHUNK_HEADERS,
        "content-length": "66824",
        "x-amz-content-sha256": sigv4.STREAMING_PAYLOAD,
        "authorization": _doc_authorization(
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class",
            seed,
        ),
    }
    wire = Wire("PUT", "/examplebucket/chunkObject.txt", "", headers)
    # When it is verified and its chunks are checked in turn
    parsed = parse(wire)
    assert _doc_accept(wire) == seed
    chain = sigv4.chain_for(parsed, secret=DOC_SECRET, seed_signature=seed)
    data = memoryview(b"a" * 65536)
    chain.verify_chunk(data, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648")
    chain.verify_chunk(
        data[:1024], "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
    )
    chain.verify_chunk(b"", b"b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9")
    # Then each documented signature holds, and nothing else does
    with pytest.raises(SignatureDoesNotMatch):
        chain.verify_chunk(b"", "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9")


def test_chunks_out_of_order_or_altered_are_refused() -> None:
    seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    key = sigv4.signing_key(DOC_SECRET, "20130524", "us-east-1", "s3")
    scope = "20130524/us-east-1/s3/aws4_request"

    def chain() -> sigv4.ChunkChain:
        return sigv4.ChunkChain(
            key=key, amz_date="20130524T000000Z", scope=scope, seed_signature=seed
        )

    with pytest.raises(SignatureDoesNotMatch):  # the second chunk first
        chain().verify_chunk(
            b"a" * 1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
        )
    with pytest.raises(SignatureDoesNotMatch):  # one byte changed
        chain().verify_chunk(
            b"a" * 65535 + b"b", "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
        )
    with pytest.raises(SignatureDoesNotMatch):  # not even hex
        chain().verify_chunk(b"", "zz\u00e9")


def test_the_documented_chunked_upload_with_a_trailer() -> None:
    seed = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
    headers = {
        **DOC_CHUNK_HEADERS,
        "x-amz-content-sha256": sigv4.STREAMING_PAYLOAD_TRAILER,
        "x-amz-trailer": "x-amz-checksum-crc32c",
        "authorization": _doc_authorization(
            "content-encoding;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer",
            seed,
        ),
    }
    wire = Wire("PUT", "/examplebucket/chunkObject.txt", "", headers)
    parsed = parse(wire)
    assert _doc_accept(wire) == seed
    chain = sigv4.chain_for(parsed, secret=DOC_SECRET, seed_signature=seed)
    chain.verify_chunk(
        b"a" * 65536, "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"
    )
    chain.verify_chunk(
        b"a" * 1024, "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"
    )
    chain.verify_chunk(b"", "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992")
    trailer = sigv4.canonical_trailer([("x-amz-checksum-crc32c", "sOO8/Q==")])
    assert trailer == b"x-amz-checksum-crc32c:sOO8/Q==\n"
    with pytest.raises(SignatureDoesNotMatch):
        chain.verify_trailer(
            b"x-amz-checksum-crc32c:AAAAAA==\n",
            "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435",
        )
    chain.verify_trailer(
        trailer, "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
    )


def test_a_chunk_verified_by_its_hash_is_the_same_as_by_its_data() -> None:
    key = sigv4.signing_key(SECRET, "20261103", REGION, "s3")
    a = sigv4.ChunkChain(key=key, amz_date="20261103T093015Z", scope="s", seed_signature="0" * 64)
    b = sigv4.ChunkChain(key=key, amz_date="20261103T093015Z", scope="s", seed_signature="0" * 64)
    for data in (b"one", b"two" * 1000, b""):
        signature = a.sign_chunk(data)
        a.verify_chunk(data, signature)
        b.verify_chunk_sha256(hashlib.sha256(data).hexdigest(), signature)
        assert a.previous_signature == b.previous_signature == signature


# ---- our signer, compared with botocore's ----------------------------------------------------


@pytest.mark.parametrize("key", ODD_KEYS)
@pytest.mark.parametrize(
    ("method", "query", "headers", "body"),
    [
        ("GET", [], {}, b""),
        ("PUT", [], {"Content-Type": "text/plain", "x-amz-meta-a": " x   y "}, b"data"),
        ("DELETE", [("versionId", "v+1/2=")], {}, b""),
        ("POST", [("uploads", "")], {}, b""),
        ("GET", [("list-type", "2"), ("prefix", "a/b c"), ("delimiter", "/")], {}, b""),
    ],
)
def test_our_signatures_are_botocores(
    key: str, method: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes
) -> None:
    path = f"/bucket/{percent_encode(key, safe='/~')}"
    raw_query = "&".join(f"{percent_encode(n)}={percent_encode(v)}" for n, v in query)
    botos = boto_sign(
        method,
        f"{ENDPOINT}{path}" + (f"?{raw_query}" if raw_query else ""),
        headers=headers,
        body=body,
    )
    ours = sigv4.sign_request(
        method=method,
        host=HOST,
        path=path,
        query=query,
        headers=headers,
        payload_sha256=hashlib.sha256(body).hexdigest(),
        access_key=ACCESS_KEY,
        secret=SECRET,
        region=REGION,
        now=NOW,
    )
    assert ours["Authorization"] == botos.headers["authorization"]
    assert ours["X-Amz-Date"] == botos.headers["x-amz-date"]
    assert ours["X-Amz-Content-Sha256"] == botos.headers["x-amz-content-sha256"]
    wire = Wire(
        method,
        path,
        raw_query,
        {
            **{n.lower(): v for n, v in headers.items()},
            "host": HOST,
            **{n.lower(): v for n, v in ours.items()},
        },
    )
    accept(wire)


@pytest.mark.parametrize("key", ODD_KEYS)
def test_our_presigned_urls_are_botocores(key: str) -> None:
    path = f"/bucket/{percent_encode(key, safe='/~')}"
    query = [("versionId", "v+1"), ("response-content-type", "text/plain; charset=utf-8")]
    raw = "&".join(f"{percent_encode(n)}={percent_encode(v)}" for n, v in query)
    botos = boto_presign("GET", f"{ENDPOINT}{path}?{raw}", expires=900)
    ours = sigv4.presign(
        method="GET",
        host=HOST,
        path=path,
        query=query,
        access_key=ACCESS_KEY,
        secret=SECRET,
        region=REGION,
        now=NOW,
        expires_seconds=900,
    )
    assert ours == botos.raw_query
    accept(Wire("GET", path, ours, {"host": HOST}))


@settings(max_examples=100, deadline=None)
@given(
    key=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    params=st.lists(
        st.tuples(
            st.text(st.characters(codec="utf-8"), min_size=1, max_size=10),
            st.text(st.characters(codec="utf-8"), max_size=15),
        ),
        max_size=3,
        unique_by=lambda p: p[0],
    ),
)
def test_random_requests_we_sign_are_botocores_and_accepted(
    key: str, params: list[tuple[str, str]]
) -> None:
    path = f"/b/{percent_encode(key, safe='/~')}"
    raw = "&".join(f"{percent_encode(n)}={percent_encode(v)}" for n, v in params)
    ours = sigv4.sign_request(
        method="GET",
        host=HOST,
        path=path,
        query=params,
        headers={},
        payload_sha256=sigv4.EMPTY_SHA256,
        access_key=ACCESS_KEY,
        secret=SECRET,
        region=REGION,
        now=NOW,
    )
    botos = boto_sign("GET", f"{ENDPOINT}{path}" + (f"?{raw}" if raw else ""))
    assert ours["Authorization"] == botos.headers["authorization"]
    presigned = sigv4.presign(
        method="GET",
        host=HOST,
        path=path,
        query=params,
        access_key=ACCESS_KEY,
        secret=SECRET,
        region=REGION,
        now=NOW,
        expires_seconds=60,
    )
    accept(Wire("GET", path, presigned, {"host": HOST}))


def test_presign_refuses_a_life_outside_one_second_to_a_week() -> None:
    for expires in (0, 604_801):
        with pytest.raises(InvalidArgument):
            sigv4.presign(
                method="GET",
                host=HOST,
                path="/b/k",
                query=[],
                access_key=ACCESS_KEY,
                secret=SECRET,
                region=REGION,
                now=NOW,
                expires_seconds=expires,
            )


# ---- other encodings of the same request ------------------------------------------------------


def test_a_client_that_leaves_sub_delimiters_raw_is_accepted() -> None:
    # Given a client that signs the canonical form but sends "!" and "(" unencoded
    canonical_path = "/bucket/a%21b%28c%29"
    ours = sigv4.sign_request(
        method="GET",
        host=HOST,
        path=canonical_path,
        query=[("prefix", "x y")],
        headers={},
        payload_sha256=sigv4.EMPTY_SHA256,
        access_key=ACCESS_KEY,
        secret=SECRET,
        region=REGION,
        now=NOW,
    )
    headers = {"host": HOST, **{n.lower(): v for n, v in ours.items()}}
    accept(Wire("GET", "/bucket/a!b(c)", "prefix=x+y", headers))


def test_uri_encode() -> None:
    assert sigv4.uri_encode("a b+c/d~e_f.g-h*") == "a%20b%2Bc%2Fd~e_f.g-h%2A"
    assert sigv4.uri_encode("a/b", safe="/~") == "a/b"
    assert sigv4.uri_encode("文") == "%E6%96%87"


# ---- the MinIO SDK's signer ------------------------------------------------------------------


@pytest.mark.parametrize("key", ODD_KEYS)
def test_minio_signed_and_presigned_requests_are_accepted(key: str) -> None:
    from minio import signer
    from minio.credentials.credentials import Credentials as MinioCredentials
    from minio.helpers import queryencode, quote

    credentials = MinioCredentials(ACCESS_KEY, SECRET)
    path = "/bucket/" + quote(key)
    query = "&".join(
        f"{queryencode(n)}={queryencode(v)}"
        for n, v in sorted([("versionId", "v+1 2"), ("uploads", "")])
    )
    url = urlsplit(f"{ENDPOINT}{path}?{query}")
    when = NOW.replace(tzinfo=None)
    headers: dict[str, str] = {
        "Host": HOST,
        "x-amz-content-sha256": sigv4.EMPTY_SHA256,
        "x-amz-date": NOW.strftime("%Y%m%dT%H%M%SZ"),
        "Content-Type": "application/octet-stream",
    }
    signed = signer.sign_v4_s3(
        method="PUT",
        url=url,
        region=REGION,
        headers=dict(headers),
        credentials=credentials,
        content_sha256=sigv4.EMPTY_SHA256,
        date=when,
    )
    accept(Wire("PUT", path, query, {n.lower(): str(v) for n, v in signed.items()}))
    presigned = signer.presign_v4(
        method="GET", url=url, region=REGION, credentials=credentials, date=when, expires=300
    )
    accept(Wire("GET", presigned.path, presigned.query, {"host": HOST}))
