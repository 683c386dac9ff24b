"""Encryption at rest for Store's objects.

Keys come in two layers. Each tenant has *data keys* (random, one cipher's size) that encrypt
its objects; a data key is kept only *wrapped*: encrypted with AES-256-GCM under the
installation's *master key*, with the tenant id as associated data, so that a wrapped key
copied to another tenant's row does not open. Master keys are files in
``<data dir>/store/keys/`` (or one hex key given in the settings); rotating makes a new current
key and keeps the old ones for unwrapping.

An object's bytes are stored as one *blob*::

    header (HEADER_SIZE bytes)
    segment 0: ciphertext of plaintext[0 : S] + tag (TAG_SIZE bytes)
    segment 1: ciphertext of plaintext[S : 2S] + tag
    ...
    last segment: the rest (1..S bytes; none for an empty object) + tag, flagged final

Each segment is sealed on its own (AES-256-GCM, or SM4-GCM where China's national algorithms
are required), so a ranged read decrypts only the segments it touches and a huge object
streams through in constant memory. Every blob has its own key, HKDF-SHA256 of the data key and
the blob id, so the nonces (the segment index) never repeat under one key. The associated data
of a segment is the blob id, its index and whether it is the last one: a segment moved to
another place or another blob, a blob cut at a segment boundary or one with bytes appended all
fail their check (:class:`~civicloud.store.errors.Corrupted`), and nothing unauthenticated is
ever returned.

The header (big-endian)::

    magic b"CCS1" | version (1 byte) | cipher id (1) | reserved, zero (2) | segment size (4)
    | blob id (16)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from civicloud.core.errors import Misconfigured
from civicloud.core.keyfiles import write_private_once
from civicloud.store import errors

__all__ = [
    "CIPHERS",
    "HEADER_SIZE",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "SEGMENT_SIZE",
    "TAG_SIZE",
    "MasterKeys",
    "SegmentWriter",
    "ciphertext_size",
    "new_data_key",
    "parse_header",
    "read_plain",
]

#: The ciphers an object can be encrypted with.
CIPHERS: Final = ("AES256-GCM", "SM4-GCM")
#: Plaintext bytes per segment unless told otherwise (each blob's header says its own).
SEGMENT_SIZE: Final = 1 << 16
#: The bytes of a GCM tag, at the end of every segment.
TAG_SIZE: Final = 16
#: The smallest and largest segment sizes a blob may have.
MIN_SEGMENT_SIZE: Final = 16
MAX_SEGMENT_SIZE: Final = 1 << 24

_MAGIC: Final = b"CCS1"
_VERSION: Final = 1
_HEADER: Final = struct.Struct(">4sBBHI16s")
#: The bytes of a blob's header.
HEADER_SIZE: Final = _HEADER.size
_BLOB_ID_SIZE: Final = 16
_CIPHER_IDS: Final = {"AES256-GCM": 1, "SM4-GCM": 2}
_CIPHER_NAMES: Final = {number: name for name, number in _CIPHER_IDS.items()}
_KEY_SIZES: Final = {"AES256-GCM": 32, "SM4-GCM": 16}
_BLOB_INFO: Final = b"civicloud-store-blob"
#: Ciphertext asked of ``read`` at most per call (whole segments, at least one).
_READ_BYTES: Final = 1 << 20

_MASTER_KEY_SIZE: Final = 32
_MASTER_ID_PREFIX: Final = b"civicloud-store-master"
_WRAP_VERSION: Final = 1
_WRAP_HEAD: Final = struct.Struct(">B8s")
_WRAP_NONCE_SIZE: Final = 12
_MASTER_FILE: Final = re.compile(r"master-(\d{6})\.key")

_BAD_HEADER: Final = "stored data %(blob_id)s is damaged: its header is not valid"
_WRONG_HEADER: Final = "stored data %(blob_id)s is damaged: its header does not match its object"
_BAD_SEGMENT: Final = "stored data %(blob_id)s is damaged: segment %(segment)s fails its check"
_TOO_SHORT: Final = "stored data %(blob_id)s is damaged: it is shorter than its object"
_TOO_LONG: Final = "stored data %(blob_id)s is damaged: it is longer than its object"
_BAD_WRAP: Final = "a wrapped data key is damaged or belongs to another owner"
_UNKNOWN_MASTER: Final = "the store master key %(key_id)s is not in %(directory)s"
_BAD_MASTER_FILE: Final = "the store master key file %(path)s does not hold a 32-byte hex key"
_BAD_CONFIGURED: Final = "the configured store master key is not 64 hex digits"
_ROTATE_CONFIGURED: Final = "the store master key is set in the settings: change it there"

_Buffer: TypeAlias = bytes | bytearray | memoryview
# A segment's sealing and opening: (nonce, data, associated data) -> ciphertext + tag / plain.
_Seal: TypeAlias = Callable[[bytes, _Buffer, bytes], bytes]


# ---- master keys -----------------------------------------------------------------------------


def _master_id(key: bytes) -> str:
    return hashlib.sha256(_MASTER_ID_PREFIX + key).hexdigest()[:16]


class MasterKeys:
    """The installation's master keys: the current one (wraps new data keys) and older ones
    still able to unwrap (rotation)."""

    def __init__(
        self, keys: dict[str, bytes], current_id: str, directory: Path | None = None
    ) -> None:
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._order = list(keys)
        self._current = current_id
        self._directory = directory

    @classmethod
    def load(cls, directory: Path, *, configured: str | None = None) -> MasterKeys:
        """The keys in ``directory`` (``<data dir>/store/keys/``), the first made on first use;
        or only ``configured``, a hex key from the settings (then no file is read or made)."""
        if configured is not None:
            try:
                key = bytes.fromhex(configured.strip())
            except ValueError:
                key = b""
            if len(key) != _MASTER_KEY_SIZE:
                raise Misconfigured(_BAD_CONFIGURED)
            key_id = _master_id(key)
            return cls({key_id: key}, key_id)
        keys = _read_master_files(directory)
        if not keys:
            _write_master_file(directory, 1)
            keys = _read_master_files(directory)
        ordered = {_master_id(key): key for _, key in sorted(keys.items())}
        return cls(ordered, _master_id(keys[max(keys)]), directory)

    @property
    def current_id(self) -> str:
        """The id of the key new data keys are wrapped with."""
        return self._current

    def ids(self) -> list[str]:
        """The ids of every known key, oldest first (the current one last)."""
        return list(self._order)

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        """``data_key`` sealed under the current master key, bound to ``context`` (the owning
        tenant's id); the result names the key it was wrapped with."""
        head = _WRAP_HEAD.pack(_WRAP_VERSION, bytes.fromhex(self._current))
        nonce = os.urandom(_WRAP_NONCE_SIZE)
        sealed = self._ciphers[self._current].encrypt(nonce, data_key, head + context)
        return head + nonce + sealed

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        """The data key in ``wrapped`` (made by :meth:`wrap` under any known key); ``Corrupted``
        when it was damaged or wrapped for another ``context``, ``Misconfigured`` when its
        master key is not known here."""
        if len(wrapped) < _WRAP_HEAD.size + _WRAP_NONCE_SIZE + TAG_SIZE:
            raise errors.Corrupted(_BAD_WRAP)
        version, raw_id = _WRAP_HEAD.unpack_from(wrapped)
        if version != _WRAP_VERSION:
            raise errors.Corrupted(_BAD_WRAP)
        key_id = raw_id.hex()
        cipher = self._ciphers.get(key_id)
        if cipher is None and self._directory is not None:
            self._reload()  # another process may have rotated since this one loaded
            cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise Misconfigured(
                _UNKNOWN_MASTER,
                params={"key_id": key_id, "directory": str(self._directory or "the settings")},
            )
        head = bytes(wrapped[: _WRAP_HEAD.size])
        nonce = bytes(wrapped[_WRAP_HEAD.size : _WRAP_HEAD.size + _WRAP_NONCE_SIZE])
        try:
            return cipher.decrypt(
                nonce, wrapped[_WRAP_HEAD.size + _WRAP_NONCE_SIZE :], head + context
            )
        except InvalidTag as error:
            raise errors.Corrupted(_BAD_WRAP) from error

    def rotate(self) -> str:
        """Make a new current master key (a new file) and return its id; the older keys stay
        to unwrap what they wrapped. Of processes rotating at once, one key wins for all."""
        if self._directory is None:
            raise Misconfigured(_ROTATE_CONFIGURED)
        keys = _read_master_files(self._directory)
        _write_master_file(self._directory, max(keys, default=0) + 1)
        self._reload()
        return self._current

    def _reload(self) -> None:
        assert self._directory is not None
        fresh = MasterKeys.load(self._directory)
        self._ciphers, self._order, self._current = fresh._ciphers, fresh._order, fresh._current


def _read_master_files(directory: Path) -> dict[int, bytes]:
    """The master keys in ``directory`` by generation."""
    keys: dict[int, bytes] = {}
    if not directory.is_dir():
        return keys
    for path in directory.iterdir():
        match = _MASTER_FILE.fullmatch(path.name)
        if match is None:
            continue
        try:
            key = bytes.fromhex(path.read_text(encoding="ascii").strip())
        except (ValueError, UnicodeDecodeError, OSError) as error:
            raise Misconfigured(_BAD_MASTER_FILE, params={"path": str(path)}) from error
        if len(key) != _MASTER_KEY_SIZE:
            raise Misconfigured(_BAD_MASTER_FILE, params={"path": str(path)})
        keys[int(match.group(1))] = key
    return keys


def _write_master_file(directory: Path, generation: int) -> None:
    # Named by generation, not by key id: two processes making the same generation at once
    # race for one name, so exactly one key becomes that generation for both.
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    content = (secrets.token_hex(_MASTER_KEY_SIZE) + "\n").encode("ascii")
    write_private_once(directory / f"master-{generation:06d}.key", content)


# ---- data keys and blobs ---------------------------------------------------------------------


def _key_size(cipher: str) -> int:
    size = _KEY_SIZES.get(cipher)
    if size is None:
        raise errors.InvalidEncryptionAlgorithm(
            "%(cipher)s is not an encryption algorithm Store offers", params={"cipher": cipher}
        )
    return size


def new_data_key(cipher: str) -> bytes:
    """A fresh random data key for ``cipher`` (32 bytes for AES256-GCM, 16 for SM4-GCM)."""
    return secrets.token_bytes(_key_size(cipher))


def ciphertext_size(plain_size: int, segment_size: int = SEGMENT_SIZE) -> int:
    """The stored size of a blob holding ``plain_size`` bytes."""
    segments = max(1, -(-plain_size // segment_size))
    return HEADER_SIZE + plain_size + segments * TAG_SIZE


def _check_blob_args(data_key: bytes, cipher: str, blob_id: bytes, segment_size: int) -> None:
    size = _key_size(cipher)
    if len(data_key) != size:
        raise errors.InvalidEncryptionAlgorithm(
            "a %(cipher)s data key has %(expected)s bytes, not %(actual)s",
            params={"cipher": cipher, "expected": size, "actual": len(data_key)},
        )
    if len(blob_id) != _BLOB_ID_SIZE:
        raise errors.InvalidArgument(
            "a blob id has 16 bytes, not %(actual)s", params={"actual": len(blob_id)}
        )
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise errors.InvalidArgument(
            "a segment size must be from %(low)s to %(high)s bytes, not %(actual)s",
            params={"low": MIN_SEGMENT_SIZE, "high": MAX_SEGMENT_SIZE, "actual": segment_size},
        )


_NO_SALT: Final = bytes(32)


def _blob_key(data_key: bytes, blob_id: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) of the data key, no salt, info ``_BLOB_INFO + blob_id``: the
    extract step and the one expand block a key of 32 bytes or fewer needs, as two HMACs (the
    same bytes as ``cryptography``'s ``HKDF``, without building its objects on every request)."""
    if not 0 < len(data_key) <= 32:
        raise ValueError("a blob key is derived from a data key of 1 to 32 bytes")
    pseudorandom = hmac.digest(_NO_SALT, data_key, "sha256")
    return hmac.digest(pseudorandom, _BLOB_INFO + blob_id + b"\x01", "sha256")[: len(data_key)]


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


def _aad(blob_id: bytes, index: int, final: bool) -> bytes:
    return blob_id + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


def _sealer(cipher: str, key: bytes) -> _Seal:
    if cipher == "AES256-GCM":
        return AESGCM(key).encrypt
    sm4 = algorithms.SM4(key)

    def seal(nonce: bytes, data: _Buffer, aad: bytes) -> bytes:
        encryptor = Cipher(sm4, modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(aad)
        return encryptor.update(data) + encryptor.finalize() + encryptor.tag

    return seal


def _opener(cipher: str, key: bytes) -> _Seal:
    """Opens a segment or raises ``InvalidTag`` (nothing of it is returned then)."""
    if cipher == "AES256-GCM":
        return AESGCM(key).decrypt
    sm4 = algorithms.SM4(key)

    def open_(nonce: bytes, data: _Buffer, aad: bytes) -> bytes:
        view = memoryview(data)
        if len(view) < TAG_SIZE:
            raise InvalidTag
        decryptor = Cipher(sm4, modes.GCM(nonce, bytes(view[-TAG_SIZE:]))).decryptor()
        decryptor.authenticate_additional_data(aad)
        plain = decryptor.update(view[:-TAG_SIZE])
        return plain + decryptor.finalize()  # finalize checks the tag before anything leaves

    return open_


def _pack_header(cipher: str, segment_size: int, blob_id: bytes) -> bytes:
    return _HEADER.pack(_MAGIC, _VERSION, _CIPHER_IDS[cipher], 0, segment_size, blob_id)


def _unpack_header(header: _Buffer) -> tuple[str, int, bytes] | None:
    if len(header) != HEADER_SIZE:
        return None
    magic, version, cipher_id, reserved, segment_size, blob_id = _HEADER.unpack(header)
    cipher = _CIPHER_NAMES.get(cipher_id)
    if magic != _MAGIC or version != _VERSION or cipher is None or reserved != 0:
        return None
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        return None
    return cipher, segment_size, blob_id


def parse_header(header: bytes) -> tuple[str, int, bytes]:
    """A blob header's cipher, segment size and blob id; ``Corrupted`` when it is not one."""
    parsed = _unpack_header(header)
    if parsed is None:
        blob_id = bytes(header[-_BLOB_ID_SIZE:]) if len(header) == HEADER_SIZE else b""
        raise errors.Corrupted(_BAD_HEADER, params={"blob_id": blob_id.hex()})
    return parsed


class SegmentWriter:
    """Encrypts one blob: header, then segments of segment_size plaintext each with its tag; the
    last segment is flagged final (so truncation at a segment boundary is detected); an empty
    object is one empty final segment.

    Write :meth:`header`, then every piece :meth:`update` returns, then :meth:`finish`'s.
    """

    def __init__(
        self,
        *,
        data_key: bytes,
        cipher: str,
        blob_id: bytes,
        segment_size: int = SEGMENT_SIZE,
    ) -> None:
        _check_blob_args(data_key, cipher, blob_id, segment_size)
        self._cipher = cipher
        self._blob_id = bytes(blob_id)
        self._segment_size = segment_size
        self._seal = _sealer(cipher, _blob_key(data_key, self._blob_id))
        self._pending = bytearray()  # at most one segment, held until it is known not last
        self._index = 0
        self._finished = False
        #: The plaintext bytes given so far.
        self.plain_size = 0

    def header(self) -> bytes:
        """The blob's header: its first HEADER_SIZE bytes."""
        return _pack_header(self._cipher, self._segment_size, self._blob_id)

    def _sealed(self, data: _Buffer, *, final: bool) -> bytes:
        index = self._index
        self._index += 1
        return self._seal(_nonce(index), data, _aad(self._blob_id, index, final))

    def update(self, data: _Buffer) -> list[bytes]:
        """Take more plaintext; the sealed segments it completed, in order (maybe none)."""
        if self._finished:
            raise errors.InvalidRequest("the encrypted blob is finished already")
        view = memoryview(data).cast("B")
        size = len(view)
        self.plain_size += size
        sealed: list[bytes] = []
        segment, pending = self._segment_size, self._pending
        position = 0
        if pending:
            room = segment - len(pending)
            if size <= room:
                pending += view
                return sealed
            pending += view[:room]
            position = room
            sealed.append(self._sealed(pending, final=False))
            pending.clear()
        # Whole segments straight from the caller's buffer; the last one waits, as it may be
        # the blob's last.
        while size - position > segment:
            sealed.append(self._sealed(view[position : position + segment], final=False))
            position += segment
        pending += view[position:]
        return sealed

    def finish(self) -> bytes:
        """The last segment (flagged final); the writer takes nothing more."""
        if self._finished:
            raise errors.InvalidRequest("the encrypted blob is finished already")
        self._finished = True
        last = self._sealed(self._pending, final=True)
        self._pending = bytearray()
        return last


def read_plain(
    *,
    read: Callable[[int, int], bytes],
    data_key: bytes,
    cipher: str,
    blob_id: bytes,
    plain_size: int,
    offset: int = 0,
    length: int | None = None,
    segment_size: int | None = None,
) -> Iterator[bytes]:
    """The plaintext of ``[offset, offset + length)`` of a stored blob, in pieces, decrypting only
    the segments it touches; each piece is yielded only once its segment passed its check.

    ``read(offset, length)`` returns the blob's stored bytes from ``offset``: ``length`` of them,
    fewer only where the blob ends (so that a blob longer than ``plain_size`` says is seen).
    Whole segments are asked for, up to about 1 MiB per call; the header is one more small
    call when the range does not start in the first segment or ``segment_size`` (the blob's,
    known from its metadata) is not given. The arguments are checked here; a damaged blob
    raises ``Corrupted`` (with the blob id) while the pieces are taken.
    """
    _check_blob_args(
        data_key, cipher, blob_id, SEGMENT_SIZE if segment_size is None else segment_size
    )
    if plain_size < 0:
        raise errors.InvalidArgument(
            "an object's size cannot be %(size)s", params={"size": plain_size}
        )
    if length is None:
        length = plain_size - offset
    if offset < 0 or length < 0 or offset + length > plain_size:
        raise errors.InvalidRange(
            "bytes %(offset)s to %(end)s are not within the object's %(size)s bytes",
            params={"offset": offset, "end": offset + length, "size": plain_size},
        )
    return _read_plain(
        read=read,
        open_=_opener(cipher, _blob_key(data_key, blob_id)),
        cipher=cipher,
        blob_id=bytes(blob_id),
        plain_size=plain_size,
        offset=offset,
        length=length,
        segment_size=segment_size,
    )


def _check_header(
    header: _Buffer,
    *,
    cipher: str,
    blob_id: bytes,
    segment_size: int | None,
) -> int:
    """The blob's segment size from its header, which must be the expected one's."""
    if len(header) < HEADER_SIZE:
        raise errors.Corrupted(_TOO_SHORT, params={"blob_id": blob_id.hex()})
    parsed = _unpack_header(header)
    if parsed is None:
        raise errors.Corrupted(_BAD_HEADER, params={"blob_id": blob_id.hex()})
    found_cipher, found_size, found_id = parsed
    if (
        found_cipher != cipher
        or found_id != blob_id
        or (segment_size is not None and found_size != segment_size)
    ):
        raise errors.Corrupted(_WRONG_HEADER, params={"blob_id": blob_id.hex()})
    return found_size


def _read_plain(
    *,
    read: Callable[[int, int], bytes],
    open_: _Seal,
    cipher: str,
    blob_id: bytes,
    plain_size: int,
    offset: int,
    length: int,
    segment_size: int | None,
) -> Iterator[bytes]:
    header_checked = segment_size is None
    if segment_size is None:
        segment_size = _check_header(
            memoryview(read(0, HEADER_SIZE)), cipher=cipher, blob_id=blob_id, segment_size=None
        )
    nothing = length == 0 and plain_size > 0  # (an empty object's one segment is still checked)
    first = offset // segment_size if plain_size else 0
    if not header_checked and (first != 0 or nothing):
        _check_header(
            memoryview(read(0, HEADER_SIZE)),
            cipher=cipher,
            blob_id=blob_id,
            segment_size=segment_size,
        )
        header_checked = True
    if nothing:
        return
    stride = segment_size + TAG_SIZE
    last = max(0, (plain_size - 1) // segment_size)
    last_size = plain_size - last * segment_size + TAG_SIZE
    end = offset + length
    last_wanted = (end - 1) // segment_size if plain_size else 0
    per_read = max(1, _READ_BYTES // stride)
    for index in range(first, last_wanted + 1, per_read):
        upto = min(last_wanted, index + per_read - 1)
        start = HEADER_SIZE + index * stride
        expected = (upto - index) * stride + (last_size if upto == last else stride)
        # One byte more past the last segment: bytes appended to the blob show.
        ask = expected + (1 if upto == last else 0)
        if header_checked:
            chunk = memoryview(read(start, ask))
        else:
            chunk = memoryview(read(0, HEADER_SIZE + ask))
            _check_header(
                chunk[:HEADER_SIZE], cipher=cipher, blob_id=blob_id, segment_size=segment_size
            )
            chunk = chunk[HEADER_SIZE:]
            header_checked = True
        if len(chunk) != expected:
            raise errors.Corrupted(
                _TOO_SHORT if len(chunk) < expected else _TOO_LONG,
                params={"blob_id": blob_id.hex()},
            )
        position = 0
        for current in range(index, upto + 1):
            size = last_size if current == last else stride
            plain = _open_segment(open_, chunk[position : position + size], blob_id, current, last)
            position += size
            base = current * segment_size
            low, high = max(offset - base, 0), min(end - base, len(plain))
            if low == 0 and high == len(plain):
                if plain:
                    yield plain
            elif high > low:
                yield plain[low:high]


def _open_segment(open_: _Seal, sealed: _Buffer, blob_id: bytes, index: int, last: int) -> bytes:
    try:
        return open_(_nonce(index), sealed, _aad(blob_id, index, index == last))
    except InvalidTag as error:
        raise errors.Corrupted(
            _BAD_SEGMENT, params={"blob_id": blob_id.hex(), "segment": index}
        ) from error
