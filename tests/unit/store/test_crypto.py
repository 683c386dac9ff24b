"""Encryption at rest: master keys wrap data keys, blobs are sealed segment by segment, and any
damage to a stored blob is refused rather than served."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from civicloud.core.errors import Misconfigured
from civicloud.store import crypto as store_crypto
from civicloud.store import errors
from civicloud.store.crypto import (
    CIPHERS,
    HEADER_SIZE,
    SEGMENT_SIZE,
    TAG_SIZE,
    MasterKeys,
    SegmentWriter,
    ciphertext_size,
    new_data_key,
    parse_header,
    read_plain,
)

SMALL = 64  # a small segment size, so that short blobs have many segments
STRIDE = SMALL + TAG_SIZE
ciphers = pytest.mark.parametrize("cipher", CIPHERS)


def seal(
    plain: bytes,
    *,
    cipher: str = "AES256-GCM",
    key: bytes | None = None,
    blob_id: bytes = b"B" * 16,
    segment_size: int = SEGMENT_SIZE,
    chunks: list[int] | None = None,
) -> bytes:
    writer = SegmentWriter(
        data_key=key if key is not None else bytes(range(len(new_data_key(cipher)))),
        cipher=cipher,
        blob_id=blob_id,
        segment_size=segment_size,
    )
    pieces = [writer.header()]
    position = 0
    for size in chunks or []:
        pieces += writer.update(memoryview(plain)[position : position + size])
        position += size
    pieces += writer.update(plain[position:])
    pieces.append(writer.finish())
    assert writer.plain_size == len(plain)
    return b"".join(pieces)


def reader(blob: bytes, calls: list[tuple[int, int]] | None = None) -> Callable[[int, int], bytes]:
    def read(offset: int, length: int) -> bytes:
        if calls is not None:
            calls.append((offset, length))
        return blob[offset : offset + length]

    return read


def opened(
    blob: bytes,
    plain_size: int,
    *,
    cipher: str = "AES256-GCM",
    key: bytes | None = None,
    blob_id: bytes = b"B" * 16,
    offset: int = 0,
    length: int | None = None,
    segment_size: int | None = None,
) -> bytes:
    return b"".join(
        read_plain(
            read=reader(blob),
            data_key=key if key is not None else bytes(range(len(new_data_key(cipher)))),
            cipher=cipher,
            blob_id=blob_id,
            plain_size=plain_size,
            offset=offset,
            length=length,
            segment_size=segment_size,
        )
    )


# ---- round trips -----------------------------------------------------------------------------


@ciphers
@pytest.mark.parametrize(
    "size",
    [0, 1, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * (1 << 20) + 5],
)
def test_a_sealed_blob_opens_to_its_plaintext(cipher: str, size: int) -> None:
    # given a plaintext of a size around the segment boundaries
    plain = os.urandom(size)
    # when it is sealed
    blob = seal(plain, cipher=cipher)
    # then the blob has the announced size, hides the plaintext and opens to it, with or
    # without the segment size given
    assert len(blob) == ciphertext_size(size)
    assert size < 64 or plain[:64] not in blob
    assert parse_header(blob[:HEADER_SIZE]) == (cipher, SEGMENT_SIZE, b"B" * 16)
    assert opened(blob, size, cipher=cipher) == plain
    assert opened(blob, size, cipher=cipher, segment_size=SEGMENT_SIZE) == plain


def test_the_sizes_of_blobs() -> None:
    assert ciphertext_size(0) == HEADER_SIZE + TAG_SIZE
    assert ciphertext_size(1) == HEADER_SIZE + 1 + TAG_SIZE
    assert ciphertext_size(SEGMENT_SIZE) == HEADER_SIZE + SEGMENT_SIZE + TAG_SIZE
    assert ciphertext_size(SEGMENT_SIZE + 1) == HEADER_SIZE + SEGMENT_SIZE + 1 + 2 * TAG_SIZE
    assert ciphertext_size(10, 4) == HEADER_SIZE + 10 + 3 * TAG_SIZE


@settings(max_examples=60, deadline=None)
@given(
    cipher=st.sampled_from(CIPHERS),
    plain=st.binary(max_size=700),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
)
def test_how_the_plaintext_is_split_into_updates_does_not_change_the_blob(
    cipher: str, plain: bytes, cuts: list[int]
) -> None:
    # given the same plaintext given to the writer in one piece and in arbitrary pieces
    whole = seal(plain, cipher=cipher, segment_size=SMALL)
    pieces = seal(plain, cipher=cipher, segment_size=SMALL, chunks=cuts)
    # then both make the same blob, which opens to the plaintext
    assert pieces == whole
    assert len(whole) == ciphertext_size(len(plain), SMALL)
    assert opened(whole, len(plain), cipher=cipher) == plain


def test_update_returns_only_segments_known_not_to_be_last() -> None:
    writer = SegmentWriter(
        data_key=bytes(32), cipher="AES256-GCM", blob_id=bytes(16), segment_size=SMALL
    )
    # a whole segment is held: it may be the last one
    assert writer.update(b"x" * SMALL) == []
    # one byte more releases it
    released = writer.update(b"y")
    assert [len(piece) for piece in released] == [STRIDE]
    assert len(writer.finish()) == 1 + TAG_SIZE


def test_the_same_data_key_makes_different_blobs_for_different_blob_ids() -> None:
    plain = b"same plaintext" * 20
    one, two = seal(plain, blob_id=b"1" * 16), seal(plain, blob_id=b"2" * 16)
    assert one[HEADER_SIZE:] != two[HEADER_SIZE:]
    assert one[HEADER_SIZE : HEADER_SIZE + 16] != two[HEADER_SIZE : HEADER_SIZE + 16]


# ---- ranged reads ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    cipher=st.sampled_from(CIPHERS),
    size=st.integers(min_value=0, max_value=1000),
    data=st.data(),
    give_segment_size=st.booleans(),
)
def test_a_ranged_read_is_the_slice_of_the_plaintext(
    cipher: str, size: int, data: st.DataObject, give_segment_size: bool
) -> None:
    # given a blob of many small segments
    plain = bytes((i * 7 + 3) % 256 for i in range(size))
    blob = seal(plain, cipher=cipher, segment_size=SMALL)
    offset = data.draw(st.integers(min_value=0, max_value=size))
    length = data.draw(st.none() | st.integers(min_value=0, max_value=size - offset))
    # when a range of it is read
    got = opened(
        blob,
        size,
        cipher=cipher,
        offset=offset,
        length=length,
        segment_size=SMALL if give_segment_size else None,
    )
    # then it is that slice of the plaintext
    assert got == plain[offset : None if length is None else offset + length]


def test_a_small_ranged_read_decrypts_one_segment_only() -> None:
    # given a 4 MiB object
    size = 4 << 20
    key = new_data_key("AES256-GCM")
    plain = os.urandom(size)
    blob = seal(plain, key=key)
    calls: list[tuple[int, int]] = []
    offset = 3 * SEGMENT_SIZE + 100
    # when 4 KiB in the middle are read
    got = b"".join(
        read_plain(
            read=reader(blob, calls),
            data_key=key,
            cipher="AES256-GCM",
            blob_id=b"B" * 16,
            plain_size=size,
            offset=offset,
            length=4096,
            segment_size=SEGMENT_SIZE,
        )
    )
    # then only the header and that one segment were read
    assert got == plain[offset : offset + 4096]
    assert sum(length for _, length in calls) == HEADER_SIZE + SEGMENT_SIZE + TAG_SIZE
    assert (HEADER_SIZE + 3 * (SEGMENT_SIZE + TAG_SIZE), SEGMENT_SIZE + TAG_SIZE) in calls


def test_a_whole_read_asks_for_about_a_mebibyte_at_a_time() -> None:
    size = 5 << 20
    key = new_data_key("AES256-GCM")
    plain = os.urandom(size)
    blob = seal(plain, key=key)
    calls: list[tuple[int, int]] = []
    got = b"".join(
        read_plain(
            read=reader(blob, calls),
            data_key=key,
            cipher="AES256-GCM",
            blob_id=b"B" * 16,
            plain_size=size,
            segment_size=SEGMENT_SIZE,
        )
    )
    assert got == plain
    assert len(calls) <= 8
    assert all(length <= (1 << 20) + HEADER_SIZE + 1 for _, length in calls)


def test_arguments_out_of_the_object_are_refused() -> None:
    blob = seal(b"x" * 100, segment_size=SMALL)
    for offset, length in [(-1, 1), (0, 101), (50, 51), (101, None), (0, -1)]:
        with pytest.raises(errors.InvalidRange):
            opened(blob, 100, offset=offset, length=length)
    with pytest.raises(errors.InvalidArgument):
        opened(blob, -1)


def test_reading_nothing_of_a_non_empty_object_yields_nothing() -> None:
    blob = seal(b"x" * 100, segment_size=SMALL)
    assert opened(blob, 100, offset=100) == b""
    assert opened(blob, 100, offset=10, length=0, segment_size=SMALL) == b""


# ---- damage ----------------------------------------------------------------------------------

PLAIN = bytes(range(256)) + bytes(64) + b"13 bytes more"  # 5 segments of 64 bytes, then 13


@ciphers
@pytest.mark.parametrize("segment_size", [SMALL, None])
def test_a_flipped_byte_anywhere_is_refused(cipher: str, segment_size: int | None) -> None:
    # given a blob of several segments
    blob = seal(PLAIN, cipher=cipher, segment_size=SMALL)
    for position in range(len(blob)):
        # when any one byte of it is changed
        damaged = bytearray(blob)
        damaged[position] ^= 0x01
        # then reading the whole object fails as damaged, with the blob named
        with pytest.raises(errors.Corrupted) as caught:
            opened(bytes(damaged), len(PLAIN), cipher=cipher, segment_size=segment_size)
        assert caught.value.params["blob_id"] == (b"B" * 16).hex()


@ciphers
def test_a_flipped_byte_fails_the_ranged_reads_of_its_segment(cipher: str) -> None:
    blob = seal(PLAIN, cipher=cipher, segment_size=SMALL)
    for segment in range(5):
        damaged = bytearray(blob)
        damaged[HEADER_SIZE + segment * STRIDE + 10] ^= 0x80
        with pytest.raises(errors.Corrupted) as caught:
            opened(bytes(damaged), len(PLAIN), cipher=cipher, offset=segment * SMALL + 5, length=3)
        assert caught.value.params["segment"] == segment
        # the other segments still read
        other = (segment + 1) % 5
        assert (
            opened(bytes(damaged), len(PLAIN), cipher=cipher, offset=other * SMALL, length=SMALL)
            == PLAIN[other * SMALL : (other + 1) * SMALL]
        )


@ciphers
def test_a_blob_cut_short_anywhere_is_refused(cipher: str) -> None:
    blob = seal(PLAIN, cipher=cipher, segment_size=SMALL)
    for cut in [HEADER_SIZE + k * STRIDE for k in range(6)] + list(range(len(blob))):
        with pytest.raises(errors.Corrupted):
            opened(blob[:cut], len(PLAIN), cipher=cipher, segment_size=SMALL)


@ciphers
def test_a_blob_cut_at_a_segment_boundary_is_refused_even_with_a_matching_size(
    cipher: str,
) -> None:
    # given a blob cut after its third segment, read as if the object were three segments long
    blob = seal(PLAIN, cipher=cipher, segment_size=SMALL)
    cut = blob[: HEADER_SIZE + 3 * STRIDE]
    # then the third segment, not sealed as the last one, is refused
    with pytest.raises(errors.Corrupted):
        opened(cut, 3 * SMALL, cipher=cipher)


@ciphers
def test_bytes_appended_to_a_blob_are_refused(cipher: str) -> None:
    blob = seal(PLAIN, cipher=cipher, segment_size=SMALL)
    for extra in [b"\x00", b"x" * STRIDE, blob[HEADER_SIZE:]]:
        with pytest.raises(errors.Corrupted):
            opened(blob + extra, len(PLAIN), cipher=cipher)
        with pytest.raises(errors.Corrupted):
            opened(blob + extra, len(PLAIN), cipher=cipher, offset=len(PLAIN) - 1)


@ciphers
def test_an_empty_object_is_checked_too(cipher: str) -> None:
    blob = seal(b"", cipher=cipher)
    assert opened(blob, 0, cipher=cipher) == b""
    with pytest.raises(errors.Corrupted):
        opened(blob[:-1], 0, cipher=cipher)
    with pytest.raises(errors.Corrupted):
        opened(blob + b"x", 0, cipher=cipher)
    damaged = bytearray(blob)
    damaged[-1] ^= 1
    with pytest.raises(errors.Corrupted):
        opened(bytes(damaged), 0, cipher=cipher)
    # and a non-empty blob is not taken for an empty object
    with pytest.raises(errors.Corrupted):
        opened(seal(b"x", cipher=cipher), 0, cipher=cipher)


@ciphers
def test_swapped_segments_are_refused(cipher: str) -> None:
    blob = seal(PLAIN, cipher=cipher, segment_size=SMALL)

    def part(k: int) -> bytes:
        return blob[HEADER_SIZE + k * STRIDE : HEADER_SIZE + (k + 1) * STRIDE]

    swapped = blob[:HEADER_SIZE] + part(1) + part(0) + blob[HEADER_SIZE + 2 * STRIDE :]
    with pytest.raises(errors.Corrupted):
        opened(swapped, len(PLAIN), cipher=cipher)
    with pytest.raises(errors.Corrupted):
        opened(swapped, len(PLAIN), cipher=cipher, offset=SMALL, length=1)


@ciphers
def test_another_blobs_id_or_segments_are_refused(cipher: str) -> None:
    # given two blobs of the same plaintext under the same data key
    one = seal(PLAIN, cipher=cipher, blob_id=b"1" * 16, segment_size=SMALL)
    two = seal(PLAIN, cipher=cipher, blob_id=b"2" * 16, segment_size=SMALL)
    # a blob read as another one is refused
    with pytest.raises(errors.Corrupted):
        opened(one, len(PLAIN), cipher=cipher, blob_id=b"2" * 16)
    # so is one given the other's header
    with pytest.raises(errors.Corrupted):
        opened(two[:HEADER_SIZE] + one[HEADER_SIZE:], len(PLAIN), cipher=cipher, blob_id=b"2" * 16)
    # and one with a segment of the other at the same place
    mixed = one[: HEADER_SIZE + STRIDE] + two[HEADER_SIZE + STRIDE : HEADER_SIZE + 2 * STRIDE]
    mixed += one[HEADER_SIZE + 2 * STRIDE :]
    with pytest.raises(errors.Corrupted):
        opened(mixed, len(PLAIN), cipher=cipher, blob_id=b"1" * 16)


@ciphers
def test_a_wrong_data_key_or_cipher_is_refused(cipher: str) -> None:
    blob = seal(PLAIN, cipher=cipher, segment_size=SMALL)
    with pytest.raises(errors.Corrupted):
        opened(blob, len(PLAIN), cipher=cipher, key=new_data_key(cipher))
    other = next(name for name in CIPHERS if name != cipher)
    with pytest.raises(errors.Corrupted):
        opened(blob, len(PLAIN), cipher=other)


def test_a_different_segment_size_than_the_blobs_is_refused() -> None:
    blob = seal(PLAIN, segment_size=SMALL)
    with pytest.raises(errors.Corrupted):
        opened(blob, len(PLAIN), segment_size=128)


@settings(max_examples=200, deadline=None)
@given(
    garbage=st.binary(max_size=400),
    size=st.integers(min_value=0, max_value=300),
    segment_size=st.none() | st.just(SMALL),
)
def test_any_bytes_are_either_a_blob_or_refused_as_damaged(
    garbage: bytes, size: int, segment_size: int | None
) -> None:
    # garbage with a valid header in front, and plain garbage
    header = seal(b"", segment_size=SMALL)[:HEADER_SIZE]
    for blob in (garbage, header + garbage):
        with pytest.raises(errors.Corrupted):
            opened(blob, size, segment_size=segment_size)


# ---- headers and arguments -------------------------------------------------------------------


@given(header=st.binary(max_size=HEADER_SIZE + 2))
def test_parse_header_refuses_what_is_not_a_header(header: bytes) -> None:
    try:
        cipher, segment_size, blob_id = parse_header(header)
    except errors.Corrupted:
        return
    assert cipher in CIPHERS
    assert len(blob_id) == 16
    assert segment_size > 0


def test_parse_header_reads_a_writers_header() -> None:
    writer = SegmentWriter(
        data_key=bytes(16), cipher="SM4-GCM", blob_id=b"\x07" * 16, segment_size=1 << 20
    )
    header = writer.header()
    assert len(header) == HEADER_SIZE
    assert header.startswith(b"CCS1")
    assert parse_header(header) == ("SM4-GCM", 1 << 20, b"\x07" * 16)


def test_data_keys_fit_their_cipher() -> None:
    assert len(new_data_key("AES256-GCM")) == 32
    assert len(new_data_key("SM4-GCM")) == 16
    assert new_data_key("AES256-GCM") != new_data_key("AES256-GCM")
    with pytest.raises(errors.InvalidEncryptionAlgorithm):
        new_data_key("ROT13")


def test_bad_writer_and_reader_arguments_are_refused() -> None:
    with pytest.raises(errors.InvalidEncryptionAlgorithm):
        SegmentWriter(data_key=bytes(32), cipher="aes", blob_id=bytes(16))
    with pytest.raises(errors.InvalidEncryptionAlgorithm):
        SegmentWriter(data_key=bytes(16), cipher="AES256-GCM", blob_id=bytes(16))
    with pytest.raises(errors.InvalidArgument):
        SegmentWriter(data_key=bytes(32), cipher="AES256-GCM", blob_id=bytes(15))
    for segment_size in (0, -1, 1 << 30):
        with pytest.raises(errors.InvalidArgument):
            SegmentWriter(
                data_key=bytes(32),
                cipher="AES256-GCM",
                blob_id=bytes(16),
                segment_size=segment_size,
            )
    with pytest.raises(errors.InvalidEncryptionAlgorithm):
        opened(b"", 0, cipher="none", key=bytes(32))
    with pytest.raises(errors.InvalidEncryptionAlgorithm):
        opened(b"", 0, key=bytes(5))


def test_a_finished_writer_takes_nothing_more() -> None:
    writer = SegmentWriter(data_key=bytes(32), cipher="AES256-GCM", blob_id=bytes(16))
    writer.finish()
    with pytest.raises(errors.InvalidRequest):
        writer.update(b"more")
    with pytest.raises(errors.InvalidRequest):
        writer.finish()


# ---- master keys -----------------------------------------------------------------------------


def test_the_first_master_key_is_made_on_first_use_and_kept(tmp_path: Path) -> None:
    directory = tmp_path / "store" / "keys"
    # when the keys are loaded twice
    first = MasterKeys.load(directory)
    again = MasterKeys.load(directory)
    # then one private key file was made, named the same id both times
    files = list(directory.iterdir())
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    key = bytes.fromhex(files[0].read_text())
    assert len(key) == 32
    assert first.current_id == again.current_id
    assert first.current_id == hashlib.sha256(b"civicloud-store-master" + key).hexdigest()[:16]
    assert first.ids() == [first.current_id]


def test_processes_starting_at_once_share_one_master_key(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    barrier = threading.Barrier(8)
    found: list[str] = []

    def load() -> None:
        barrier.wait()
        found.append(MasterKeys.load(directory).current_id)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(found) == 8
    assert len(set(found)) == 1


def test_a_wrapped_key_unwraps_only_with_its_context(tmp_path: Path) -> None:
    keys = MasterKeys.load(tmp_path)
    data_key = new_data_key("AES256-GCM")
    wrapped = keys.wrap(data_key, context=b"tenant-1")
    assert data_key not in wrapped
    assert keys.unwrap(wrapped, context=b"tenant-1") == data_key
    assert MasterKeys.load(tmp_path).unwrap(wrapped, context=b"tenant-1") == data_key
    with pytest.raises(errors.Corrupted):
        keys.unwrap(wrapped, context=b"tenant-2")
    # two wraps of one key differ (a fresh nonce each)
    assert keys.wrap(data_key, context=b"tenant-1") != wrapped


def test_a_damaged_wrapped_key_is_refused(tmp_path: Path) -> None:
    keys = MasterKeys.load(tmp_path)
    wrapped = keys.wrap(new_data_key("SM4-GCM"), context=b"t")
    for position in range(len(wrapped)):
        damaged = bytearray(wrapped)
        damaged[position] ^= 0x04
        # a changed key id names a key this installation does not have
        expected = Misconfigured if 1 <= position < 9 else errors.Corrupted
        with pytest.raises(expected):
            keys.unwrap(bytes(damaged), context=b"t")
    for cut in range(len(wrapped)):
        with pytest.raises((errors.Corrupted, Misconfigured)):
            keys.unwrap(wrapped[:cut], context=b"t")


def test_a_key_wrapped_by_another_installation_is_misconfigured(tmp_path: Path) -> None:
    ours = MasterKeys.load(tmp_path / "ours")
    theirs = MasterKeys.load(tmp_path / "theirs")
    with pytest.raises(Misconfigured) as caught:
        ours.unwrap(theirs.wrap(bytes(32), context=b"t"), context=b"t")
    assert caught.value.params["key_id"] == theirs.current_id


def test_rotation_wraps_with_a_new_key_and_old_wraps_still_open(tmp_path: Path) -> None:
    # given a key wrapped before a rotation
    keys = MasterKeys.load(tmp_path)
    old_id = keys.current_id
    data_key = new_data_key("AES256-GCM")
    old_wrap = keys.wrap(data_key, context=b"t")
    loaded_before = MasterKeys.load(tmp_path)
    # when the master key is rotated
    new_id = keys.rotate()
    # then new wraps use the new key, and both old and new wraps open, also in a fresh load and
    # in an instance loaded before the rotation
    assert new_id != old_id
    assert keys.current_id == new_id
    assert keys.ids() == [old_id, new_id]
    new_wrap = keys.wrap(data_key, context=b"t")
    assert new_wrap != old_wrap
    fresh = MasterKeys.load(tmp_path)
    assert fresh.current_id == new_id
    assert fresh.ids() == [old_id, new_id]
    for instance in (keys, fresh, loaded_before):
        assert instance.unwrap(old_wrap, context=b"t") == data_key
        assert instance.unwrap(new_wrap, context=b"t") == data_key
    # and a second rotation keeps all three
    assert len({*keys.ids(), keys.rotate()}) == 3


def test_a_configured_master_key_is_used_instead_of_the_file(tmp_path: Path) -> None:
    key = bytes(range(32))
    keys = MasterKeys.load(tmp_path / "keys", configured=key.hex().upper() + "\n")
    assert keys.current_id == hashlib.sha256(b"civicloud-store-master" + key).hexdigest()[:16]
    assert not (tmp_path / "keys").exists()
    wrapped = keys.wrap(b"k" * 16, context=b"t")
    again = MasterKeys.load(tmp_path / "elsewhere", configured=key.hex())
    assert again.unwrap(wrapped, context=b"t") == b"k" * 16
    with pytest.raises(Misconfigured):
        keys.rotate()


@pytest.mark.parametrize("configured", ["", "zz" * 32, "00" * 31, "00" * 33])
def test_a_bad_configured_master_key_is_misconfigured(tmp_path: Path, configured: str) -> None:
    with pytest.raises(Misconfigured):
        MasterKeys.load(tmp_path, configured=configured)


@pytest.mark.parametrize(
    "content", [b"", b"not hex\n", b"00" * 16 + b"\n", b"\xff\xfe", b"00" * 33]
)
def test_a_master_key_file_with_bad_contents_is_misconfigured(
    tmp_path: Path, content: bytes
) -> None:
    MasterKeys.load(tmp_path)
    (next(tmp_path.iterdir())).write_bytes(content)
    with pytest.raises(Misconfigured):
        MasterKeys.load(tmp_path)


@settings(max_examples=60, deadline=None)
@given(data_key=st.binary(min_size=16, max_size=32), blob_id=st.binary(min_size=16, max_size=16))
def test_the_blob_key_is_rfc_5869_hkdf_sha256(data_key: bytes, blob_id: bytes) -> None:
    """Blobs written before keep opening: the derivation is byte for byte RFC 5869's."""
    expected = HKDF(
        algorithm=hashes.SHA256(),
        length=len(data_key),
        salt=None,
        info=b"civicloud-store-blob" + blob_id,
    ).derive(data_key)
    assert store_crypto._blob_key(data_key, blob_id) == expected
