"""Decoding aws-chunked bodies: the three forms, what real clients send, every bad input."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum, Sha256Checksum
from hypothesis import given, settings
from hypothesis import strategies as st

from civicloud.store import checksums, errors
from civicloud.store.chunked import AwsChunkedReader

NEXT_REQUEST = b"GET /next HTTP/1.1\r\n"


class ChainSigner:
    """A stand-in for SigV4's chain: each signature is a hash of the previous one and of what
    it signs; it records what it was asked to verify."""

    def __init__(self, seed: str = "seed") -> None:
        self.previous = seed
        self.chunks: list[bytes] = []
        self.trailers: list[bytes] = []

    @staticmethod
    def sign(previous: str, kind: bytes, data: bytes) -> str:
        return hashlib.sha256(previous.encode() + kind + data).hexdigest()

    def verify_chunk(self, data: bytes | memoryview, signature: str) -> None:
        data = bytes(data)
        self.chunks.append(data)
        if signature != self.sign(self.previous, b"chunk", data):
            raise errors.SignatureDoesNotMatch("chunk signature")
        self.previous = signature

    def verify_trailer(self, trailer: bytes, signature: str) -> None:
        self.trailers.append(trailer)
        if signature != self.sign(self.previous, b"trailer", trailer):
            raise errors.SignatureDoesNotMatch("trailer signature")


def pieces_of(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(data):
        size = max(1, sizes[k % len(sizes)]) if sizes else len(data)
        out.append(data[i : i + size])
        i += size
        k += 1
    return out


def unsigned_body(
    data: bytes, sizes: Sequence[int] = (), trailers: dict[str, str] | None = None
) -> bytes:
    out = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces_of(data, sizes)]
    out.append(b"0\r\n")
    out.extend(f"{k}:{v}\r\n".encode() for k, v in (trailers or {}).items())
    out.append(b"\r\n")
    return b"".join(out)


def signed_body(
    data: bytes,
    sizes: Sequence[int] = (),
    trailers: dict[str, str] | None = None,
    seed: str = "seed",
) -> bytes:
    previous, out = seed, []
    for piece in [*pieces_of(data, sizes), b""]:
        previous = ChainSigner.sign(previous, b"chunk", piece)
        out.append(b"%x;chunk-signature=%s\r\n" % (len(piece), previous.encode()))
        if piece:
            out.append(piece + b"\r\n")
    if trailers is None:
        out.append(b"\r\n")
    else:
        canonical = "".join(f"{k}:{v}\n" for k, v in trailers.items()).encode()
        out.extend(f"{k}:{v}\r\n".encode() for k, v in trailers.items())
        signature = ChainSigner.sign(previous, b"trailer", canonical)
        out.append(f"x-amz-trailer-signature:{signature}\r\n\r\n".encode())
    return b"".join(out)


def reader(
    body: bytes,
    *,
    decoded: int | None = None,
    signer: ChainSigner | None = None,
    trailers: Sequence[str] = (),
    max_chunk: int = 16 * 1024 * 1024,
    known_length: bool = True,
    raw: io.BytesIO | None = None,
) -> AwsChunkedReader:
    return AwsChunkedReader(
        raw if raw is not None else io.BytesIO(body + NEXT_REQUEST),
        encoded_length=len(body) if known_length else None,
        decoded_length=decoded,
        signer=signer,
        trailer_names=trailers,
        max_chunk=max_chunk,
    )


def read_in(r: AwsChunkedReader, size: int) -> bytes:
    out = []
    while piece := r.read(size):
        assert len(piece) <= size
        out.append(piece)
    assert r.read(size) == b""
    return b"".join(out)


# ---- round trips -----------------------------------------------------------------------------

sizes_st = st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=5)


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=20_000),
    sizes=sizes_st,
    read_size=st.integers(min_value=1, max_value=10_000),
    with_trailer=st.booleans(),
    known_length=st.booleans(),
)
def test_unsigned_round_trip(
    data: bytes, sizes: list[int], read_size: int, with_trailer: bool, known_length: bool
) -> None:
    crc = checksums.new_digest("CRC32C")
    crc.update(data)
    trailer = {"x-amz-checksum-crc32c": crc.b64()} if with_trailer else {}
    body = unsigned_body(data, sizes, trailer)
    # Without a Content-Length the raw stream is the body alone (HTTP chunked, decoded).
    raw = io.BytesIO(body + NEXT_REQUEST if known_length else body)
    r = reader(body, decoded=len(data), trailers=list(trailer), raw=raw, known_length=known_length)
    assert read_in(r, read_size) == data
    assert r.finished
    assert r.trailers == trailer
    if known_length:
        assert raw.read() == NEXT_REQUEST  # not a byte past Content-Length


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=20_000),
    sizes=sizes_st,
    read_size=st.integers(min_value=1, max_value=10_000),
    with_trailer=st.booleans(),
)
def test_signed_round_trip(
    data: bytes, sizes: list[int], read_size: int, with_trailer: bool
) -> None:
    trailer = (
        {"x-amz-checksum-sha256": "x" * 43 + "=", "x-amz-meta-a": "b"} if with_trailer else None
    )
    body = signed_body(data, sizes, trailer)
    signer = ChainSigner()
    raw = io.BytesIO(body + NEXT_REQUEST)
    r = reader(body, decoded=len(data), signer=signer, trailers=list(trailer or ()), raw=raw)
    assert read_in(r, read_size) == data
    assert r.finished
    assert r.trailers == (trailer or {})
    assert signer.chunks == [*pieces_of(data, sizes), b""]
    if trailer:
        assert signer.trailers == [b"x-amz-checksum-sha256:" + b"x" * 43 + b"=\nx-amz-meta-a:b\n"]
    else:
        assert signer.trailers == []
    assert raw.read() == NEXT_REQUEST


def test_read_all_and_zero() -> None:
    data = b"hello world" * 1000
    r = reader(unsigned_body(data, [777]), decoded=len(data))
    assert r.read(0) == b""
    assert r.read() == data
    assert r.finished
    assert r.read() == b""
    assert r.readall() == b""


def test_empty_bodies() -> None:
    r = reader(b"0\r\n\r\n", decoded=0)
    assert r.read() == b""
    assert r.finished
    signer = ChainSigner()
    r = reader(signed_body(b""), decoded=0, signer=signer)
    assert r.read(10) == b""
    assert signer.chunks == [b""]


def test_finished_as_the_last_bytes_are_returned() -> None:
    data = b"x" * 100
    r = reader(
        unsigned_body(data, [60], {"x-amz-checksum-crc32": "AAAAAA=="}),
        trailers=["X-Amz-Checksum-CRC32"],
    )
    assert r.read(60) == data[:60]
    assert not r.finished
    assert r.read(40) == data[60:]
    assert r.finished
    assert r.trailers == {"x-amz-checksum-crc32": "AAAAAA=="}


def test_a_signed_chunk_is_checked_before_any_of_it_is_returned() -> None:
    data = b"a" * 50 + b"b" * 50
    body = signed_body(data, [50]).replace(b"b" * 50, b"c" * 50)
    r = reader(body, signer=ChainSigner())
    assert r.read(50) == b"a" * 50
    with pytest.raises(errors.SignatureDoesNotMatch):
        r.read(10)
    with pytest.raises(errors.SignatureDoesNotMatch):  # and again after that
        r.read(10)


# ---- what real clients send ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("checksum_cls", "name"),
    [(Crc32Checksum, "x-amz-checksum-crc32"), (Sha256Checksum, "x-amz-checksum-sha256")],
)
@pytest.mark.parametrize("size", [0, 1, 65_535, 65_536, 300_001])
def test_botocore_unsigned_trailer_body(checksum_cls: type, name: str, size: int) -> None:
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    wrapper = AwsChunkedWrapper(
        io.BytesIO(data), checksum_cls=checksum_cls, checksum_name=name, chunk_size=65_536
    )
    body = wrapper.read()
    r = reader(body, decoded=size, trailers=[name])
    assert read_in(r, 100_000) == data
    algorithm = checksums.algorithm_of_header(name)
    assert algorithm is not None
    digest = checksums.new_digest(algorithm)
    digest.update(data)
    assert r.trailers == {name: digest.b64()}


def test_botocore_without_a_checksum() -> None:
    body = AwsChunkedWrapper(io.BytesIO(b"abc")).read()
    assert body == b"3\r\nabc\r\n0\r\n\r\n"
    assert reader(body, decoded=3).read() == b"abc"


@pytest.mark.parametrize("known_length", [True, False])
def test_a_body_that_ends_instead_of_its_last_empty_line(known_length: bool) -> None:
    body = b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n"
    r = reader(
        body,
        decoded=3,
        trailers=["x-amz-checksum-crc32"],
        known_length=known_length,
        raw=None if known_length else io.BytesIO(body),
    )
    assert r.read() == b"abc"
    assert r.trailers == {"x-amz-checksum-crc32": "NSRBwg=="}


def test_minio_unsigned_trailer_form() -> None:
    # minio-go: trailer lines end with a bare LF, then CRLF CRLF.
    body = b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32c:Nks/tw==\n\r\n\r\n"
    r = reader(body, decoded=3, trailers=["x-amz-checksum-crc32c"])
    assert r.read() == b"abc"
    assert r.trailers == {"x-amz-checksum-crc32c": "Nks/tw=="}


def test_minio_signed_trailer_form() -> None:
    # minio-go: ... 0;chunk-signature=..\r\n name:value\n \r\n x-amz-trailer-signature:..\r\n\r\n
    data = b"abc"
    previous = "seed"
    out = []
    for piece in (data, b""):
        previous = ChainSigner.sign(previous, b"chunk", piece)
        out.append(b"%x;chunk-signature=%s\r\n" % (len(piece), previous.encode()))
        if piece:
            out.append(piece + b"\r\n")
    trailer = b"x-amz-checksum-crc32c:Nks/tw==\n"
    out.append(trailer + b"\r\n")
    out.append(
        b"x-amz-trailer-signature:%s\r\n\r\n"
        % ChainSigner.sign(previous, b"trailer", trailer).encode()
    )
    signer = ChainSigner()
    r = reader(b"".join(out), decoded=3, signer=signer, trailers=["x-amz-checksum-crc32c"])
    assert r.read() == data
    assert signer.trailers == [trailer]


def test_unsigned_chunk_extensions_are_ignored() -> None:
    assert reader(b"3;foo=bar\r\nabc\r\n0;\r\n\r\n", decoded=3).read() == b"abc"


def test_upper_case_hex_and_leading_zeros() -> None:
    data = b"z" * 0x1A
    assert reader(b"001A\r\n" + data + b"\r\n0\r\n\r\n").read() == data


# ---- bad input -------------------------------------------------------------------------------


def drain(r: AwsChunkedReader) -> None:
    while r.read(7):
        pass


def fails(body: bytes, error: type[Exception], **kwargs: object) -> None:
    r = reader(body, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(error):
        drain(r)
    with pytest.raises(error):
        r.read()


@pytest.mark.parametrize(
    "line",
    [b"zz", b"", b"-3", b"+3", b"0x3", b"3 ", b" 3", b"1_0", b"3\xff", b"11111111111111111"],
)
def test_a_size_that_is_not_hex(line: bytes) -> None:
    fails(line + b"\r\nabc\r\n0\r\n\r\n", errors.InvalidRequest)


def test_a_size_line_too_long_or_without_crlf() -> None:
    fails(b"3" + b";x" * 5000 + b"\r\nabc\r\n0\r\n\r\n", errors.InvalidRequest)
    fails(b"3" * 10_000, errors.InvalidRequest)
    fails(b"3\nabc\r\n0\r\n\r\n", errors.InvalidRequest)


def test_a_signed_chunk_over_the_limit_is_refused_before_it_is_read() -> None:
    class NoLargeReads(io.BytesIO):
        def read(self, n: int | None = -1, /) -> bytes:
            assert n is not None
            assert 0 <= n <= 4096
            return super().read(n)

    body = signed_body(b"x" * 0x100001)
    r = reader(body, max_chunk=0x100000, signer=ChainSigner(), raw=NoLargeReads(body))
    with pytest.raises(errors.InvalidRequest):
        r.read(10)


def test_an_unsigned_chunk_of_any_size_streams() -> None:
    # The AWS CRT's form: a whole part as one chunk, its size in upper-case hex.
    data = bytes(range(256)) * (17 * 4096)
    body = b"%X\r\n%s\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n" % (len(data), data)
    r = reader(body, decoded=len(data), trailers=["x-amz-checksum-crc32"], max_chunk=1024)
    first = r.read(1 << 20)
    assert first == data[: 1 << 20]
    assert first + r.read() == data
    assert r.finished


def test_data_not_followed_by_crlf() -> None:
    fails(b"3\r\nabcd\r\n0\r\n\r\n", errors.InvalidRequest)
    fails(b"3\r\nabc\n0\r\n\r\n", errors.InvalidRequest)
    fails(
        signed_body(b"abc").replace(b"abc\r\n", b"abcXX"),
        errors.InvalidRequest,
        signer=ChainSigner(),
    )


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 8, 10, 11, 13, 16, 40, 48])
def test_eof_before_the_end(cut: int) -> None:
    body = unsigned_body(b"abcdefghij", [10], {"x-amz-checksum-crc32": "AAAAAA=="})
    assert len(body) == 51
    truncated = body[:cut]
    for known_length in (True, False):
        fails(
            truncated,
            errors.IncompleteBody,
            trailers=["x-amz-checksum-crc32"],
            known_length=known_length,
            raw=io.BytesIO(truncated),
        )


@pytest.mark.parametrize("cut", [1, 20, 70, 100, 150])
def test_eof_before_the_end_signed(cut: int) -> None:
    body = signed_body(b"abcdefghij" * 10, [50])
    fails(body[:cut], errors.IncompleteBody, signer=ChainSigner(), raw=io.BytesIO(body[:cut]))


def test_content_length_shorter_than_the_chunks() -> None:
    body = unsigned_body(b"abcdefghij" * 10, [50])
    r = AwsChunkedReader(
        io.BytesIO(body), encoded_length=30, decoded_length=None, signer=None, trailer_names=()
    )
    with pytest.raises(errors.IncompleteBody):
        r.read()


def test_sizes_that_do_not_add_up_to_the_decoded_length() -> None:
    body = unsigned_body(b"abcdef", [3])
    fails(body, errors.IncompleteBody, decoded=7)
    fails(body, errors.InvalidRequest, decoded=5)
    fails(body, errors.InvalidRequest, decoded=0)


def test_bytes_past_the_end() -> None:
    body = unsigned_body(b"abc") + b"junk"
    fails(body, errors.InvalidRequest)
    fails(body, errors.InvalidRequest, known_length=False, raw=io.BytesIO(body))
    fails(unsigned_body(b"abc") + b"\r\n\r\n", errors.InvalidRequest)


def test_trailers_not_declared_missing_or_malformed() -> None:
    declared = ["x-amz-checksum-crc32"]
    fails(
        unsigned_body(b"abc", trailers={"x-amz-checksum-sha1": "x"}),
        errors.InvalidRequest,
        trailers=declared,
    )
    fails(unsigned_body(b"abc", trailers={"x-amz-checksum-crc32": "x"}), errors.InvalidRequest)
    fails(unsigned_body(b"abc"), errors.InvalidRequest, trailers=declared)
    for line in (
        b"x-amz-checksum-crc32 AAAAAA==",
        b":AAAAAA==",
        b"x amz:1",
        b"x-amz-checksum-crc32:\x01",
        b"x-amz-checksum-crc32:\xff",
        b" x:y",
    ):
        fails(b"3\r\nabc\r\n0\r\n" + line + b"\r\n\r\n", errors.InvalidRequest, trailers=declared)
    twice = b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:A\r\nx-amz-checksum-crc32:B\r\n\r\n"
    fails(twice, errors.InvalidRequest, trailers=declared)
    fails(b"3\r\nabc\r\n0\r\n" + b"\r\n" * 20, errors.InvalidRequest, trailers=declared)
    fails(
        b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:" + b"A" * 5000 + b"\r\n\r\n",
        errors.InvalidRequest,
        trailers=declared,
    )


def test_an_unsigned_body_has_no_trailer_signature() -> None:
    body = b"0\r\nx-amz-trailer-signature:" + b"0" * 64 + b"\r\n\r\n"
    fails(body, errors.InvalidRequest)


def test_bad_chunk_signatures() -> None:
    data = b"abcdef"
    good = signed_body(data, [3])
    sig = good.split(b"chunk-signature=")[1][:64]
    fails(good.replace(sig, b"0" * 64), errors.SignatureDoesNotMatch, signer=ChainSigner())
    fails(
        good.replace(b";chunk-signature=" + sig, b""),
        errors.SignatureDoesNotMatch,
        signer=ChainSigner(),
    )
    fails(
        good.replace(b"chunk-signature=" + sig, b"chunk-signature="),
        errors.SignatureDoesNotMatch,
        signer=ChainSigner(),
    )
    # the chain: a chunk signed from another seed
    fails(signed_body(data, [3], seed="other"), errors.SignatureDoesNotMatch, signer=ChainSigner())
    # the final chunk's signature is checked too
    last = good.split(b"chunk-signature=")[-1][:64]
    fails(good.replace(last, b"f" * 64), errors.SignatureDoesNotMatch, signer=ChainSigner())


def test_bad_trailer_signatures() -> None:
    trailer = {"x-amz-checksum-crc32": "AAAAAA=="}
    good = signed_body(b"abc", trailers=trailer)
    names = list(trailer)
    assert reader(good, signer=ChainSigner(), trailers=names).read() == b"abc"
    fails(
        good.replace(b"AAAAAA==", b"AAAAAB=="),
        errors.SignatureDoesNotMatch,
        signer=ChainSigner(),
        trailers=names,
    )
    unsigned = good.split(b"x-amz-trailer-signature")[0] + b"\r\n"
    fails(unsigned, errors.SignatureDoesNotMatch, signer=ChainSigner(), trailers=names)
    twice_sig = good.replace(b"\r\n\r\n", b"\r\nx-amz-trailer-signature:00\r\n\r\n")
    fails(twice_sig, errors.InvalidRequest, signer=ChainSigner(), trailers=names)


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=3)), max_size=3),
    signed=st.booleans(),
)
def test_garbled_bodies_fail_with_an_s3_error(
    data: bytes, flips: list[tuple[int, bytes]], signed: bool
) -> None:
    trailer = {"x-amz-checksum-crc32": "AAAAAA=="}
    body = signed_body(data, [100], trailer) if signed else unsigned_body(data, [100], trailer)
    for offset, new in flips:
        at = offset % (len(body) + 1)
        body = body[:at] + new + body[at + len(new) :]
    r = reader(
        body, decoded=len(data), signer=ChainSigner() if signed else None, trailers=list(trailer)
    )
    try:
        while r.read(64):
            pass
    except errors.StoreError:
        return
