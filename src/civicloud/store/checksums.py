"""S3's integrity checks: the ``x-amz-checksum-*`` algorithms, ``Content-MD5`` and the ETag.

S3 names five checksum algorithms (``ALGORITHMS``). A checksum travels base64-encoded, the CRCs
as their big-endian 4 or 8 bytes; :class:`Digest` computes one incrementally and
:func:`parse_b64` reads one a client sent. A multipart upload's checksum is either
``FULL_OBJECT`` (:func:`combine_full_object`: the CRC of the whole object, computed from each
part's CRC and length without reading the parts again) or ``COMPOSITE`` (:func:`composite`: the
digest of the parts' digests, with ``-<parts>`` after it), and its ETag is
:func:`multipart_etag`.

:class:`BodyDigests` computes, from one pass over a request body, the MD5 (for the ETag and
``Content-MD5``) and whichever checksums the request asks for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

from awscrt import checksums as _crt  # type: ignore[import-untyped]

from civicloud.store import errors

Buffer = bytes | bytearray | memoryview

ALGORITHMS: Final = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
"""S3's checksum algorithms, as S3 spells them (``x-amz-checksum-algorithm``)."""

CRC_ALGORITHMS: Final = ("CRC32", "CRC32C", "CRC64NVME")
"""The algorithms whose values combine (``FULL_OBJECT`` multipart checksums)."""

HEADER_PREFIX: Final = "x-amz-checksum-"

# awscrt ships no type information: its functions, typed once here.
_CrcUpdate = Callable[[Buffer, int], int]
_CrcCombine = Callable[[int, int, int], int]
_CRC_UPDATE: Final[dict[str, _CrcUpdate]] = {
    # zlib's CRC-32 is S3's CRC32 (the same polynomial), runs faster than awscrt's on large
    # pieces and lets go of the GIL while it runs.
    "CRC32": zlib.crc32,
    "CRC32C": _crt.crc32c,
    "CRC64NVME": _crt.crc64nvme,
}
_CRC_COMBINE: Final[dict[str, _CrcCombine]] = {
    "CRC32": _crt.combine_crc32,
    "CRC32C": _crt.combine_crc32c,
    "CRC64NVME": _crt.combine_crc64nvme,
}
_HASHLIB_NAME: Final = {"SHA1": "sha1", "SHA256": "sha256"}
_DIGEST_SIZE: Final = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8, "SHA1": 20, "SHA256": 32}


def canonical_algorithm(algorithm: str) -> str:
    """``algorithm`` as S3 spells it (``"crc32c"`` -> ``"CRC32C"``); an unknown one is refused."""
    name = algorithm.upper()
    if name not in _DIGEST_SIZE:
        raise errors.InvalidRequest(
            "Checksum algorithm %(algorithm)s is not supported.",
            params={"algorithm": algorithm[:64]},
        )
    return name


def digest_size(algorithm: str) -> int:
    """The length in bytes of one ``algorithm`` value (4 for CRC32, 32 for SHA256, …)."""
    return _DIGEST_SIZE[canonical_algorithm(algorithm)]


class Digest:
    """One checksum computed incrementally: :meth:`update` with the bytes in order, then
    :meth:`digest` (the raw value, big-endian for the CRCs) or :meth:`b64` (as S3 sends it)."""

    __slots__ = ("_crc", "_hash", "_size", "_value", "algorithm")

    def __init__(self, algorithm: str) -> None:
        self.algorithm = canonical_algorithm(algorithm)
        self._size = _DIGEST_SIZE[self.algorithm]
        self._crc = _CRC_UPDATE.get(self.algorithm)
        self._value = 0
        self._hash = None if self._crc is not None else hashlib.new(_HASHLIB_NAME[self.algorithm])

    def update(self, data: Buffer) -> None:
        """Feed the next bytes."""
        if self._crc is not None:
            self._value = self._crc(data, self._value)
        else:
            assert self._hash is not None
            self._hash.update(data)

    def digest(self) -> bytes:
        """The value so far: 4 or 8 big-endian bytes for a CRC, 20 or 32 for SHA1 or SHA256."""
        if self._hash is not None:
            return self._hash.digest()
        return self._value.to_bytes(self._size, "big")

    def b64(self) -> str:
        """The value so far, base64-encoded as in an ``x-amz-checksum-*`` header."""
        return base64.b64encode(self.digest()).decode("ascii")


def new_digest(algorithm: str) -> Digest:
    """A fresh :class:`Digest` for ``algorithm`` (S3's name, any case)."""
    return Digest(algorithm)


def header_name(algorithm: str) -> str:
    """The header that carries an ``algorithm`` checksum: ``"x-amz-checksum-crc64nvme"``."""
    return HEADER_PREFIX + canonical_algorithm(algorithm).lower()


def algorithm_of_header(name: str) -> str | None:
    """The algorithm a header (or trailer) name carries, ``None`` if it is no checksum header
    (``x-amz-checksum-algorithm``, ``x-amz-checksum-type`` and ``x-amz-checksum-mode`` are not)."""
    lowered = name.strip().lower()
    if not lowered.startswith(HEADER_PREFIX):
        return None
    algorithm = lowered[len(HEADER_PREFIX) :].upper()
    return algorithm if algorithm in _DIGEST_SIZE else None


def _b64decode(value: str) -> bytes | None:
    try:
        return binascii.a2b_base64(value.strip().encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def parse_b64(algorithm: str, value: str) -> bytes:
    """The raw value of an ``x-amz-checksum-*`` header; one that is not base64 of the
    algorithm's length is refused as S3 does."""
    name = canonical_algorithm(algorithm)
    raw = _b64decode(value)
    if raw is None or len(raw) != _DIGEST_SIZE[name]:
        raise errors.InvalidRequest(
            "Value for %(header)s header is invalid.",
            params={"header": HEADER_PREFIX + name.lower()},
        )
    return raw


def parse_content_md5(value: str) -> bytes:
    """The 16 bytes of a ``Content-MD5`` header; anything else is ``InvalidDigest``."""
    raw = _b64decode(value)
    if raw is None or len(raw) != 16:
        raise errors.InvalidDigest("The Content-MD5 you specified was invalid.")
    return raw


def _check_part_digest(name: str, digest: bytes) -> None:
    if len(digest) != _DIGEST_SIZE[name]:
        raise errors.InvalidRequest(
            "A part's %(algorithm)s checksum must be %(expected)s bytes long, not %(size)s.",
            params={"algorithm": name, "expected": _DIGEST_SIZE[name], "size": len(digest)},
        )


def combine_full_object(algorithm: str, parts: Sequence[tuple[bytes, int]]) -> bytes:
    """The ``FULL_OBJECT`` checksum of a multipart upload: the CRC of the parts' bytes end to
    end, from each part's ``(crc, length)`` (big-endian CRC bytes as :meth:`Digest.digest`
    gives). Only the CRCs combine: a SHA algorithm is refused."""
    name = canonical_algorithm(algorithm)
    combine = _CRC_COMBINE.get(name)
    if combine is None:
        raise errors.InvalidRequest(
            "The FULL_OBJECT checksum type is not supported for %(algorithm)s.",
            params={"algorithm": name},
        )
    total = 0
    for digest, length in parts:
        _check_part_digest(name, digest)
        if length < 0:
            raise errors.InvalidRequest(
                "A part's length cannot be negative (%(length)s).", params={"length": length}
            )
        total = combine(total, int.from_bytes(digest, "big"), length)
    return total.to_bytes(_DIGEST_SIZE[name], "big")


def composite(algorithm: str, part_digests: Sequence[bytes]) -> str:
    """The ``COMPOSITE`` checksum of a multipart upload as S3 shows it: the base64 of the
    algorithm over the parts' raw digests end to end, then ``-`` and the number of parts
    (``"1Y3ZMw==-3"``). CRC64NVME has no composite form (S3 allows it FULL_OBJECT only)."""
    name = canonical_algorithm(algorithm)
    if name == "CRC64NVME":
        raise errors.InvalidRequest(
            "The COMPOSITE checksum type is not supported for %(algorithm)s.",
            params={"algorithm": name},
        )
    outer = Digest(name)
    for digest in part_digests:
        _check_part_digest(name, digest)
        outer.update(digest)
    return f"{outer.b64()}-{len(part_digests)}"


def multipart_etag(part_md5s: Sequence[bytes]) -> str:
    """A multipart object's ETag, without quotes: the hex MD5 of the parts' raw MD5s end to
    end, then ``-`` and the number of parts."""
    outer = hashlib.md5(usedforsecurity=False)
    for md5 in part_md5s:
        if len(md5) != 16:
            raise errors.InvalidRequest(
                "A part's MD5 must be 16 bytes long, not %(size)s.", params={"size": len(md5)}
            )
        outer.update(md5)
    return f"{outer.hexdigest()}-{len(part_md5s)}"


# ---- one pass over a body --------------------------------------------------------------------

THREADED_MIN_CHUNK: Final = 64 * 1024
"""Below this, a threaded :class:`BodyDigests` hashes in the caller: handing a small buffer to
another thread costs more than hashing it."""

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _md5_executor() -> ThreadPoolExecutor:
    global _executor  # noqa: PLW0603 - one pool for the process, made on first use
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(thread_name_prefix="store-md5")
    return _executor


def background() -> ThreadPoolExecutor:
    """The process's pool for hashing pieces of bodies beside the thread that reads them."""
    return _md5_executor()


class Lane:
    """Feeds pieces of one body to ``update`` (a hash's), in order and one at a time, on the
    process's pool, while the caller goes on reading and writing the next pieces.

    Unlike :class:`BodyDigests`' threaded MD5, several pieces may wait in a lane: the caller
    reads into a ring of its own buffers and calls :meth:`wait` before it reuses one, so a lane
    never stops for the reader, nor the reader for a lane, until the ring is full. The pieces
    must stay unchanged until :meth:`wait` says they are done. A failure of ``update`` is
    raised by the next :meth:`wait`.
    """

    __slots__ = ("_done", "_error", "_lock", "_queue", "_running", "_update", "_wake")

    def __init__(self, update: Callable[[Buffer], object]) -> None:
        self._update = update
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[Buffer] = deque()
        self._running = False
        self._done = 0
        self._error: BaseException | None = None

    def put(self, piece: Buffer) -> None:
        """Queue the next piece."""
        with self._lock:
            self._queue.append(piece)
            if self._running:
                return
            self._running = True
        _md5_executor().submit(self._drain)

    def _drain(self) -> None:
        update, queue, lock, wake = self._update, self._queue, self._lock, self._wake
        while True:
            with lock:
                if not queue or self._error is not None:
                    self._running = False
                    queue.clear()
                    wake.notify_all()
                    return
                piece = queue.popleft()
            try:
                update(piece)
            except BaseException as exc:  # raised to the reader by wait()
                with lock:
                    self._error = exc
            with lock:
                self._done += 1
                wake.notify_all()

    def wait(self, count: int) -> None:
        """Return once the first ``count`` pieces are done (raising a failure of one)."""
        with self._wake:
            while self._done < count and self._error is None and (self._queue or self._running):
                self._wake.wait()
            if self._error is not None:
                raise self._error

    def cancel(self) -> None:
        """Drop the pieces not started yet (the body failed) and wait for the running one."""
        with self._wake:
            self._queue.clear()
            while self._running:
                self._wake.wait()


def _immutable(data: Buffer) -> bytes | memoryview:
    """``data``, or a copy of it where the caller could change it while another thread reads."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, memoryview) and data.readonly and isinstance(data.obj, bytes):
        return data
    return bytes(data)


class BodyDigests:
    """The MD5 of a body and any of S3's checksums of it, from one :meth:`update` per piece.

    With ``threaded=True`` the MD5 (the slowest of them, and what every PUT needs) runs in a
    worker thread while the caller computes the other checksums and goes on to read the next
    piece; hashlib releases the GIL on large buffers, so the two proceed in parallel. Each
    :meth:`update` first waits for the previous piece's MD5, so at most one piece is in
    flight and the pieces are hashed in order. A threaded instance keeps a reference to each
    piece until its MD5 is done: pass ``bytes`` (a ``bytearray`` or a writable
    ``memoryview`` is copied first, since the caller could reuse it).
    """

    __slots__ = ("_digests", "_md5", "_pending", "_threaded", "length")

    def __init__(self, algorithms: Iterable[str] = (), *, threaded: bool = False) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._digests: dict[str, Digest] = {}
        for algorithm in algorithms:
            digest = Digest(algorithm)
            self._digests.setdefault(digest.algorithm, digest)
        self._threaded = threaded
        self._pending: Future[None] | None = None
        self.length = 0
        """How many bytes were fed so far."""

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The checksums computed besides the MD5, as S3 spells them."""
        return tuple(self._digests)

    def update(self, data: Buffer) -> None:
        """Feed the next piece of the body."""
        size = len(data) if not isinstance(data, memoryview) else data.nbytes
        self.length += size
        if self._threaded:
            self._join()
            if size >= THREADED_MIN_CHUNK:
                piece = _immutable(data)
                self._pending = _md5_executor().submit(self._md5.update, piece)
                for digest in self._digests.values():
                    digest.update(piece)
                return
        self._md5.update(data)
        for digest in self._digests.values():
            digest.update(data)

    def _join(self) -> None:
        pending = self._pending
        if pending is not None:
            self._pending = None
            pending.result()

    def md5(self) -> bytes:
        """The MD5 of the bytes fed so far (16 bytes)."""
        self._join()
        return self._md5.digest()

    def digest(self, algorithm: str) -> bytes:
        """The raw ``algorithm`` checksum of the bytes fed so far (``"MD5"`` gives
        :meth:`md5`); an algorithm this instance was not asked for is a ``KeyError``."""
        name = algorithm.upper()
        if name == "MD5":
            return self.md5()
        self._join()
        return self._digests[name].digest()

    def b64(self, algorithm: str) -> str:
        """:meth:`digest`, base64-encoded as S3 sends it."""
        return base64.b64encode(self.digest(algorithm)).decode("ascii")


__all__ = [
    "ALGORITHMS",
    "CRC_ALGORITHMS",
    "HEADER_PREFIX",
    "BodyDigests",
    "Digest",
    "Lane",
    "algorithm_of_header",
    "canonical_algorithm",
    "combine_full_object",
    "composite",
    "digest_size",
    "header_name",
    "multipart_etag",
    "new_digest",
    "parse_b64",
    "parse_content_md5",
]
