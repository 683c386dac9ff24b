"""S3's checksums: known values, combining part CRCs, the multipart forms, bad headers."""

from __future__ import annotations

import base64
import hashlib
import itertools
import threading
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicloud.store import checksums, errors

CHECK = b"123456789"
KNOWN = {
    "CRC32": zlib.crc32(CHECK).to_bytes(4, "big"),
    "CRC32C": (0xE3069283).to_bytes(4, "big"),
    "CRC64NVME": (0xAE8B14860A799888).to_bytes(8, "big"),
    "SHA1": hashlib.sha1(CHECK, usedforsecurity=False).digest(),
    "SHA256": hashlib.sha256(CHECK).digest(),
}


def md5(data: bytes) -> hashlib._Hash:
    return hashlib.md5(data, usedforsecurity=False)


def digest_of(algorithm: str, data: bytes) -> bytes:
    d = checksums.new_digest(algorithm)
    d.update(data)
    return d.digest()


@pytest.mark.parametrize("algorithm", checksums.ALGORITHMS)
def test_known_values(algorithm: str) -> None:
    assert digest_of(algorithm, CHECK) == KNOWN[algorithm]
    d = checksums.new_digest(algorithm.lower())
    d.update(memoryview(CHECK)[:4])
    d.update(bytearray(CHECK[4:]))
    assert d.digest() == KNOWN[algorithm]
    assert d.b64() == base64.b64encode(KNOWN[algorithm]).decode()
    assert d.algorithm == algorithm


def test_empty_input() -> None:
    assert digest_of("CRC32", b"") == b"\0\0\0\0"
    assert digest_of("CRC64NVME", b"") == bytes(8)
    assert digest_of("SHA256", b"") == hashlib.sha256(b"").digest()


def test_algorithm_lists() -> None:
    assert checksums.ALGORITHMS == ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
    assert checksums.CRC_ALGORITHMS == ("CRC32", "CRC32C", "CRC64NVME")


@pytest.mark.parametrize("name", ["MD5", "crc16", "", "sha512", "x" * 1000])
def test_unknown_algorithm_is_invalid_request(name: str) -> None:
    with pytest.raises(errors.InvalidRequest):
        checksums.new_digest(name)
    with pytest.raises(errors.InvalidRequest):
        checksums.header_name(name)


def test_header_names() -> None:
    assert checksums.header_name("crc64nvme") == "x-amz-checksum-crc64nvme"
    assert checksums.header_name("SHA256") == "x-amz-checksum-sha256"
    assert checksums.algorithm_of_header("X-Amz-Checksum-CRC32C") == "CRC32C"
    for algorithm in checksums.ALGORITHMS:
        assert checksums.algorithm_of_header(checksums.header_name(algorithm)) == algorithm
    for other in (
        "x-amz-checksum-algorithm",
        "x-amz-checksum-type",
        "x-amz-checksum-mode",
        "x-amz-checksum-",
        "content-md5",
        "x-amz-checksum-md5",
    ):
        assert checksums.algorithm_of_header(other) is None


@pytest.mark.parametrize("algorithm", checksums.ALGORITHMS)
def test_parse_b64_round_trip(algorithm: str) -> None:
    value = base64.b64encode(KNOWN[algorithm]).decode()
    assert checksums.parse_b64(algorithm, value) == KNOWN[algorithm]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64!",
        "AAA",
        "AAAAAAA",
        "AAAAAAAA",
        "AAAAAAA=",
        "AAAAAAAAAAA=",
        "AAA=AAA=",
        "ü",
        "AAAAAA=\0",
    ],
)
def test_parse_b64_refuses_bad_values(value: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        checksums.parse_b64("crc32", value)
    assert caught.value.detail == "Value for x-amz-checksum-crc32 header is invalid."


def test_parse_b64_refuses_the_wrong_length() -> None:
    crc32 = base64.b64encode(b"1234").decode()
    assert checksums.parse_b64("CRC32", crc32) == b"1234"
    with pytest.raises(errors.InvalidRequest, match="x-amz-checksum-crc64nvme"):
        checksums.parse_b64("CRC64NVME", crc32)
    with pytest.raises(errors.InvalidRequest, match="x-amz-checksum-sha256"):
        checksums.parse_b64("sha256", base64.b64encode(bytes(20)).decode())


def test_parse_content_md5() -> None:
    value = md5(b"x").digest()
    assert checksums.parse_content_md5(base64.b64encode(value).decode()) == value
    for bad in ("", "abc", value.hex(), base64.b64encode(value[:15]).decode(), "é" * 24):
        with pytest.raises(errors.InvalidDigest):
            checksums.parse_content_md5(bad)


@settings(max_examples=60, deadline=None)
@given(
    algorithm=st.sampled_from(checksums.CRC_ALGORITHMS),
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=8),
)
def test_combining_part_crcs_is_the_crc_of_the_whole(
    algorithm: str, data: bytes, cuts: list[int]
) -> None:
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)] or [b""]
    parts = [(digest_of(algorithm, p), len(p)) for p in pieces]
    assert checksums.combine_full_object(algorithm, parts) == digest_of(algorithm, data)


def test_combine_of_no_parts_is_the_empty_crc() -> None:
    assert checksums.combine_full_object("crc32c", []) == digest_of("CRC32C", b"")


def test_combine_refuses_sha_and_bad_parts() -> None:
    with pytest.raises(errors.InvalidRequest):
        checksums.combine_full_object("SHA256", [(bytes(32), 1)])
    with pytest.raises(errors.InvalidRequest):
        checksums.combine_full_object("CRC32", [(bytes(8), 1)])
    with pytest.raises(errors.InvalidRequest):
        checksums.combine_full_object("CRC32", [(bytes(4), -1)])


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256"])
def test_composite(algorithm: str) -> None:
    parts = [b"a" * 10, b"b" * 20, b"c"]
    digests = [digest_of(algorithm, p) for p in parts]
    expected = base64.b64encode(digest_of(algorithm, b"".join(digests))).decode() + "-3"
    assert checksums.composite(algorithm, digests) == expected
    assert checksums.composite(algorithm.lower(), digests[:1]).endswith("-1")


def test_composite_known_value() -> None:
    # Two parts' CRC32s, as S3 composes them: CRC32 of the two 4-byte values end to end.
    a, b = digest_of("CRC32", b"hello "), digest_of("CRC32", b"world")
    value = zlib.crc32(a + b).to_bytes(4, "big")
    assert checksums.composite("CRC32", [a, b]) == base64.b64encode(value).decode() + "-2"


def test_composite_refuses_crc64nvme_and_bad_digests() -> None:
    with pytest.raises(errors.InvalidRequest):
        checksums.composite("CRC64NVME", [bytes(8)])
    with pytest.raises(errors.InvalidRequest):
        checksums.composite("SHA256", [bytes(20)])


def test_multipart_etag() -> None:
    md5s = [md5(p).digest() for p in (b"one", b"two")]
    etag = checksums.multipart_etag(md5s)
    assert etag == md5(md5s[0] + md5s[1]).hexdigest() + "-2"
    assert '"' not in etag
    with pytest.raises(errors.InvalidRequest):
        checksums.multipart_etag([b"short"])


@pytest.mark.parametrize("threaded", [False, True])
@settings(max_examples=25, deadline=None)
@given(pieces=st.lists(st.binary(max_size=200_000), max_size=6))
def test_body_digests_match_one_shot(threaded: bool, pieces: list[bytes]) -> None:
    body = BodyDigestsCase(["crc32", "SHA256", "crc64nvme"], threaded)
    for i, piece in enumerate(pieces):
        # bytes, a read-only view of bytes and a bytearray the caller then overwrites
        if i % 3 == 0:
            body.digests.update(piece)
        elif i % 3 == 1:
            body.digests.update(memoryview(piece))
        else:
            scratch = bytearray(piece)
            body.digests.update(scratch)
            scratch[:] = bytes(len(scratch))
    whole = b"".join(pieces)
    assert body.digests.length == len(whole)
    assert body.digests.md5() == md5(whole).digest()
    assert body.digests.digest("MD5") == md5(whole).digest()
    assert body.digests.digest("CRC32") == digest_of("CRC32", whole)
    assert body.digests.digest("sha256") == hashlib.sha256(whole).digest()
    assert body.digests.b64("CRC64NVME") == base64.b64encode(digest_of("CRC64NVME", whole)).decode()
    assert body.digests.algorithms == ("CRC32", "SHA256", "CRC64NVME")


class BodyDigestsCase:
    def __init__(self, algorithms: list[str], threaded: bool) -> None:
        self.digests = checksums.BodyDigests(algorithms, threaded=threaded)


def test_body_digests_md5_only_and_not_asked_for() -> None:
    digests = checksums.BodyDigests()
    digests.update(b"abc")
    assert digests.md5() == md5(b"abc").digest()
    with pytest.raises(KeyError):
        digests.digest("CRC32")
    with pytest.raises(errors.InvalidRequest):
        checksums.BodyDigests(["nope"])


def test_threaded_body_digests_can_be_read_midway() -> None:
    digests = checksums.BodyDigests(["CRC32C"], threaded=True)
    big = bytes(range(256)) * 4096
    digests.update(big)
    assert digests.md5() == md5(big).digest()
    digests.update(big)
    assert digests.md5() == md5(big + big).digest()
    assert digests.digest("CRC32C") == digest_of("CRC32C", big + big)


def test_a_lane_hashes_its_pieces_in_order_behind_the_caller() -> None:
    seen: list[bytes] = []
    lane = checksums.Lane(seen.append)
    pieces = [bytes([i]) * 100 for i in range(50)]
    for piece in pieces:
        lane.put(piece)
    lane.wait(len(pieces))
    assert seen == pieces
    lane.wait(len(pieces) + 5)  # asks for more than was put: returns, does not hang


def test_a_lane_raises_a_failure_at_the_next_wait_and_stops() -> None:
    done: list[int] = []

    def update(piece: bytes) -> None:
        if piece == b"bad":
            raise ValueError("broken piece")
        done.append(len(piece))

    lane = checksums.Lane(update)
    for piece in (b"a", b"bad", b"ccc"):
        lane.put(piece)
    with pytest.raises(ValueError, match="broken piece"):
        lane.wait(3)
    assert done == [1]


def test_a_cancelled_lane_drops_what_it_has_not_started() -> None:
    gate, started = threading.Event(), threading.Event()
    done: list[bytes] = []

    def update(piece: bytes) -> None:
        started.set()
        gate.wait(5)
        done.append(piece)

    lane = checksums.Lane(update)
    for piece in (b"1", b"2", b"3"):
        lane.put(piece)
    assert started.wait(5)
    threading.Timer(0.05, gate.set).start()
    lane.cancel()
    assert done == [b"1"]
