"""Bodies signed chunk by chunk (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``, with and without a
signed trailer), as minio-go and the AWS SDKs' streaming signers send them, on a real socket;
and boto3 asked to send checksums only ``when_required``."""

from __future__ import annotations

import base64
import socket
import zlib
from typing import Any

import pytest
from tests.factories.store import S3Member
from tests.functional.store.conftest import Port, bucket_name, client

from civicloud.core.db import utcnow
from civicloud.store import sigv4

CHUNK = 64 * 1024


def send_signed_chunks(
    port: Port,
    member: S3Member,
    path: str,
    body: bytes,
    *,
    trailer: bool = False,
    tamper: bool = False,
) -> tuple[int, bytes]:
    host = port.endpoint.removeprefix("http://")
    now = utcnow()
    region = "us-east-1"
    chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()

    # the encoded length, known before signing: each chunk's line, data and CRLF
    def line(size: int) -> int:
        return len(f"{size:x};chunk-signature=".encode()) + 64 + 2

    encoded = sum(line(len(c)) + len(c) + 2 for c in chunks) + line(0)
    trailer_lines = b""
    if trailer:
        trailer_lines = f"x-amz-checksum-crc32:{crc}\r\n".encode()
        encoded += len(trailer_lines) + len(b"x-amz-trailer-signature:") + 64 + 2
    encoded += 2
    headers = {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(body)),
        "content-length": str(encoded),
    }
    if trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
    mode = sigv4.STREAMING_PAYLOAD_TRAILER if trailer else sigv4.STREAMING_PAYLOAD
    signed = sigv4.sign_request(
        method="PUT", host=host, path=path, query=[], headers=headers, payload_sha256=mode,
        access_key=member.access_key, secret=member.secret, region=region, now=now,
    )  # fmt: skip
    seed = signed["Authorization"].rsplit("Signature=", 1)[1]
    day = signed["X-Amz-Date"][:8]
    chain = sigv4.ChunkChain(
        key=sigv4.signing_key(member.secret, day, region, "s3"),
        amz_date=signed["X-Amz-Date"],
        scope=f"{day}/{region}/s3/aws4_request",
        seed_signature=seed,
    )
    out = bytearray()
    for index, chunk in enumerate([*chunks, b""]):
        signature = chain.sign_chunk(chunk)
        chain.verify_chunk(chunk, signature)  # advances the chain
        data = chunk
        if tamper and index == 1:
            data = bytes([chunk[0] ^ 1]) + chunk[1:]
        out += f"{len(chunk):x};chunk-signature={signature}\r\n".encode() + data
        out += b"\r\n" if chunk else b""
    if trailer:
        signature = chain.sign_trailer(sigv4.canonical_trailer([("x-amz-checksum-crc32", crc)]))
        out += trailer_lines + f"x-amz-trailer-signature:{signature}\r\n".encode()
    out += b"\r\n"
    assert len(out) == encoded
    lines = [f"PUT {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in {**headers, **signed}.items()]
    hostname, _, number = host.partition(":")
    with socket.create_connection((hostname, int(number)), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + bytes(out))
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head, _, rest = answer.partition(b"\r\n\r\n")
        length = next(
            (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")),
            0,
        )  # fmt: skip
        while len(rest) < length:
            rest += sock.recv(65536)
    return int(head.split(b" ")[1]), rest


@pytest.mark.parametrize("trailer", [False, True], ids=["signed-chunks", "signed-trailer"])
def test_signed_chunks_are_verified_and_stored(
    s3_http: Port, member: S3Member, trailer: bool
) -> None:
    s3 = client(s3_http, member)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    body = bytes(range(256)) * 1000  # four chunks
    status, answer = send_signed_chunks(s3_http, member, f"/{name}/streamed", body, trailer=trailer)
    assert status == 200, answer
    got = s3.get_object(Bucket=name, Key="streamed", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    if trailer:
        assert (
            got["ChecksumCRC32"] == base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        )


def test_a_tampered_chunk_is_refused_and_nothing_stored(s3_http: Port, member: S3Member) -> None:
    s3 = client(s3_http, member)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    status, answer = send_signed_chunks(
        s3_http, member, f"/{name}/tampered", b"x" * (3 * CHUNK), tamper=True
    )
    assert status == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in answer
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0


def test_boto3_sending_checksums_only_when_required(s3_tls: Port, member: S3Member) -> None:
    s3: Any = client(
        s3_tls,
        member,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    body = b"when required " * 10_000
    s3.put_object(Bucket=name, Key="plain", Body=body)
    assert s3.get_object(Bucket=name, Key="plain")["Body"].read() == body
    s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "plain"}]})  # needs Content-MD5
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0
