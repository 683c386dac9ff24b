"""Bad input on the S3 port: each answered with the right S3 error, nothing stored, nothing
leaked, and the server still answering."""

from __future__ import annotations

import hashlib
import socket
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.factories.store import S3Member
from tests.functional.store.conftest import Port, bucket_name, client

from civicloud.core.db import utcnow
from civicloud.store import sigv4


def code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


@pytest.fixture
def s3(s3_http: Port, member: S3Member) -> Any:
    return client(s3_http, member)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    return name


def raw(
    port: Port,
    member: S3Member,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    send: bytes | None = None,
    declared: int | None = None,
    payload: str = "UNSIGNED-PAYLOAD",
) -> tuple[int, bytes]:
    """A signed request written by hand on a socket (bodies that no client would send)."""
    host = port.endpoint.removeprefix("http://")
    pairs = query or []
    extra = dict(headers or {})
    signed = sigv4.sign_request(
        method=method, host=host, path=path, query=pairs, headers=extra,
        payload_sha256=payload, access_key=member.access_key,
        secret=member.secret, region="us-east-1", now=utcnow(),
    )  # fmt: skip
    target = path + (
        "?" + "&".join(f"{k}={sigv4.uri_encode(v)}" if v else k for k, v in pairs) if pairs else ""
    )
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in {**extra, **signed}.items()]
    lines.append(f"Content-Length: {len(body) if declared is None else declared}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    hostname, _, portnumber = host.partition(":")
    with socket.create_connection((hostname, int(portnumber)), timeout=10) as sock:
        sock.sendall(head + (body if send is None else send))
        if send is not None:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
            if b"\r\n\r\n" in data:
                header_part, _, rest = data.partition(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in header_part.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")),
                    0,
                )  # fmt: skip
                if len(rest) >= length:
                    break
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def test_malformed_xml_is_refused(s3_http: Port, member: S3Member, bucket: str) -> None:
    for document in (b"<Delete><Object><Key>a</Key>", b"not xml", b"<Other/>"):
        status, body = raw(
            s3_http, member, "POST", f"/{bucket}", query=[("delete", "")], body=document,
            headers={"Content-MD5": __import__("base64").b64encode(hashlib.md5(document, usedforsecurity=False).digest()).decode()},
        )  # fmt: skip
        assert status == 400
        assert b"<Code>MalformedXML</Code>" in body


def test_an_entity_declaring_document_is_refused(
    s3_http: Port, member: S3Member, bucket: str
) -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><VersioningConfiguration><Status>&b;</Status></VersioningConfiguration>'
    status, body = raw(s3_http, member, "PUT", f"/{bucket}", query=[("versioning", "")], body=bomb)
    assert status == 400
    assert b"<Code>MalformedXML</Code>" in body


def test_a_key_of_1025_bytes_is_refused(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as long_key:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert code(long_key.value) == "KeyTooLongError"
    s3.put_object(Bucket=bucket, Key="k" * 1024, Body=b"x")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k" * 1024]


def test_invalid_utf8_in_a_key_is_refused(s3_http: Port, member: S3Member, bucket: str) -> None:
    status, body = raw(s3_http, member, "PUT", f"/{bucket}/bad%FFkey", body=b"x")
    assert status == 400
    assert b"<Code>InvalidURI</Code>" in body


def test_an_absurd_content_length_is_refused(
    s3_http: Port, member: S3Member, bucket: str, s3: Any
) -> None:
    status, body = raw(s3_http, member, "PUT", f"/{bucket}/huge", declared=10**15, send=b"")
    assert status == 400
    assert b"<Code>EntityTooLarge</Code>" in body
    status, body = raw(
        s3_http, member, "PUT", f"/{bucket}/neg", headers={"X-Test": "1"}, declared=-1, send=b""
    )
    assert status == 400
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_a_body_shorter_than_declared_stores_nothing(
    s3_http: Port, member: S3Member, bucket: str, s3: Any
) -> None:
    status, body = raw(s3_http, member, "PUT", f"/{bucket}/short", declared=1000, send=b"x" * 10)
    assert status == 400
    assert b"<Code>IncompleteBody</Code>" in body
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="short")


def test_a_wrong_content_md5_or_checksum_stores_nothing(
    s3_http: Port, member: S3Member, bucket: str, s3: Any
) -> None:
    status, body = raw(
        s3_http, member, "PUT", f"/{bucket}/md5", body=b"hello",
        headers={"Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="},
    )  # fmt: skip
    assert status == 400
    assert b"<Code>BadDigest</Code>" in body
    status, body = raw(
        s3_http, member, "PUT", f"/{bucket}/crc", body=b"hello",
        headers={"x-amz-checksum-crc32": "AAAAAA=="},
    )  # fmt: skip
    assert status == 400
    assert b"<Code>BadDigest</Code>" in body
    status, body = raw(
        s3_http, member, "PUT", f"/{bucket}/bad64", body=b"hello",
        headers={"Content-MD5": "not-base64"},
    )  # fmt: skip
    assert status == 400
    assert b"<Code>InvalidDigest</Code>" in body
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


#: Over THREADED_DIGEST_BYTES, and not a whole number of the reader's steps: a large body is
#: read into a ring of buffers, its MD5 and signed SHA-256 hashed in lanes of their own.
LARGE = 9 * (1 << 20) + 12345


def test_a_large_body_is_checked_like_a_small_one_and_refused_whole(
    s3_http: Port, member: S3Member, bucket: str, s3: Any
) -> None:
    data = bytes(range(256)) * (LARGE // 256) + b"tail"
    sha = hashlib.sha256(data).hexdigest()
    other = hashlib.sha256(data[:-1] + b"!").hexdigest()
    cases = [
        ("sha", {}, other, data, None, "XAmzContentSHA256Mismatch"),
        ("md5", {"Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="}, sha, data, None, "BadDigest"),
        ("crc", {"x-amz-checksum-crc32": "AAAAAA=="}, sha, data, None, "BadDigest"),
        ("short", {}, sha, b"", data[: LARGE // 2], "IncompleteBody"),
    ]
    for key, headers, payload, body, send, expected in cases:
        status, answer = raw(
            s3_http, member, "PUT", f"/{bucket}/{key}", body=body, send=send,
            headers=headers, payload=payload,
            declared=len(data),
        )  # fmt: skip
        assert status == 400, (key, answer[:300])
        assert f"<Code>{expected}</Code>".encode() in answer, key
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    status, answer = raw(
        s3_http, member, "PUT", f"/{bucket}/good", body=data,
        payload=sha,
    )  # fmt: skip
    assert status == 200, answer[:300]
    got = s3.get_object(Bucket=bucket, Key="good")
    assert got["Body"].read() == data
    assert got["ETag"] == f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


def test_bad_part_numbers_and_orders(s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    for number in (0, 10001):
        with pytest.raises(ClientError) as bad:
            s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=number, Body=b"x")
        assert code(bad.value) == "InvalidArgument"
    e1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"a" * 10)[
        "ETag"
    ]
    e2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=2, Body=b"b" * 10)[
        "ETag"
    ]
    with pytest.raises(ClientError) as order:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="mp", UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]},
        )  # fmt: skip
    assert code(order.value) == "InvalidPartOrder"
    with pytest.raises(ClientError) as small:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="mp", UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]},
        )  # fmt: skip
    assert code(small.value) == "EntityTooSmall"
    with pytest.raises(ClientError) as wrong_etag:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="mp", UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00"'}]},
        )  # fmt: skip
    assert code(wrong_etag.value) == "InvalidPart"
    with pytest.raises(ClientError) as unknown:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId="nope", PartNumber=1, Body=b"x")
    assert code(unknown.value) == "NoSuchUpload"
    # Nothing was made of the refused completions.
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_invalid_bucket_names_and_unsupported_features(s3: Any, bucket: str) -> None:
    for name in ("ab", "Upper", "a..b", "192.168.1.1", "-start", "x" * 64):
        with pytest.raises(ClientError) as bad:
            s3.create_bucket(Bucket=name)
        assert code(bad.value) in ("InvalidBucketName", "InvalidURI")
    for attempt in (
        lambda: s3.get_bucket_policy(Bucket=bucket),
        lambda: s3.get_bucket_cors(Bucket=bucket),
        lambda: s3.get_bucket_tagging(Bucket=bucket),
        lambda: s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": []}),
    ):
        with pytest.raises(ClientError) as later:
            attempt()
        assert code(later.value) == "NotImplemented"
        assert later.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501


def test_a_non_empty_bucket_is_not_deleted(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as full:
        s3.delete_bucket(Bucket=bucket)
    assert code(full.value) == "BucketNotEmpty"
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as gone:
        s3.head_bucket(Bucket=bucket)
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_the_server_answers_after_garbage(s3_http: Port, s3: Any) -> None:
    host, _, portnumber = s3_http.endpoint.removeprefix("http://").partition(":")
    for junk in (
        b"\x00\x01\x02\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 70000 + b"\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ):
        with socket.create_connection((host, int(portnumber)), timeout=10) as sock:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            answer = sock.recv(200)
            assert answer == b"" or answer.startswith(b"HTTP/1.")
            assert b" 500 " not in answer
    assert "Buckets" in s3.list_buckets()


@pytest.mark.parametrize(
    "junk",
    [
        # A version number that Python's isdigit takes for one (a superscript two).
        b"GET / HTTP/1.\xb2\r\nHost: x\r\n\r\n",
        # An obsolete folded line, the way headers are smuggled past a proxy.
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Amz-Meta-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n",
        # A bare CR inside a field name, and a control character in a value.
        b"GET / HTTP/1.1\r\nHost: x\r\nx-amz-meta-a\rset-cookie: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nx-amz-meta-a: 1\x00\r\n\r\n",
        # More header lines than the limit: 431 (folded lines count too).
        b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(120)) + b"\r\n",
    ],
)
def test_a_malformed_request_head_gets_a_4xx_and_the_server_goes_on(
    s3_http: Port, s3: Any, junk: bytes
) -> None:
    host, _, portnumber = s3_http.endpoint.removeprefix("http://").partition(":")
    with socket.create_connection((host, int(portnumber)), timeout=10) as sock:
        sock.sendall(junk)
        sock.shutdown(socket.SHUT_WR)
        answer = sock.recv(400)
    assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 ")), answer[:80]
    assert b"Connection: close" in answer
    assert "Buckets" in s3.list_buckets()
