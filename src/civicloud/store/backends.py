"""Where Store keeps object bytes: the blob backends.

The storage engine above encrypts an object and hands this layer opaque bytes, one *blob* per
stored piece, named by a 32-character lowercase hex ``blob_id``. A backend writes a blob through a
``BlobWriter`` (nothing is visible until ``commit()``, which returns once the blob is durable),
reads it at offsets through a ``BlobReader``, and lists what it holds for ``civicloud store fsck``:
every blob, and the leftovers of writes that never committed (``temporaries``).

- ``LocalBackend``: files under ``<data dir>/store/`` (written to ``tmp/``, renamed into
  ``blobs/`` on commit, so a crash leaves a whole blob or none).
- ``UpstreamBackend`` (``civicloud.store.upstream``): an S3-compatible cluster.
- ``MemoryBackend``: a dictionary, for unit tests of the engine.
"""

from __future__ import annotations

import ctypes
import os
import re
import secrets
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, runtime_checkable

from civicloud.store.errors import Corrupted

__all__ = [
    "BlobBackend",
    "BlobReader",
    "BlobWriter",
    "LocalBackend",
    "MemoryBackend",
    "blob_missing",
    "check_blob_id",
]

_BLOB_ID = re.compile(r"[0-9a-f]{32}")
_SHARD = re.compile(r"[0-9a-f]{2}")
#: Buffer of a local writer: the engine writes chunks of any size; the disk sees ~1 MiB writes.
_WRITE_BUFFER = 1 << 20
#: A large blob's bytes are handed to the disk every this many bytes while it is still being
#: received (``sync_file_range``, asynchronous), so the fsync that makes it durable waits for
#: the last few MiB instead of all of it.
WRITEBACK_STEP = 8 << 20


def check_blob_id(blob_id: str) -> str:
    """Return ``blob_id`` if it is 32 lowercase hex characters; raise ``ValueError`` otherwise."""
    if not isinstance(blob_id, str) or _BLOB_ID.fullmatch(blob_id) is None:
        raise ValueError(f"not a blob id: {blob_id!r}")
    return blob_id


def blob_missing(blob_id: str) -> Corrupted:
    """The error for a blob that metadata names but whose bytes are gone."""
    return Corrupted("the stored bytes of blob %(blob)s are missing", params={"blob": blob_id})


def _check_range(offset: int, length: int) -> None:
    if offset < 0 or length < 0:
        raise ValueError(f"bad range: offset {offset}, length {length}")


@runtime_checkable
class BlobWriter(Protocol):
    """One blob being written; invisible to readers until ``commit()``."""

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` to the blob."""

    def commit(self) -> None:
        """Make the blob visible under its id (replacing any blob of that id); durable when it
        returns. A second ``commit()`` does nothing."""

    def abort(self) -> None:
        """Drop what was written (idempotent; does nothing after ``commit()``)."""


@runtime_checkable
class BlobReader(Protocol):
    """An open blob, read at offsets."""

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset``; fewer only where the blob ends (``b""`` past
        its end)."""

    def close(self) -> None:
        """Release the reader (idempotent)."""


@runtime_checkable
class BlobBackend(Protocol):
    """Where blobs live. ``blob_id`` arguments that are not 32 lowercase hex characters raise
    ``ValueError``."""

    name: str

    def create(self, blob_id: str) -> BlobWriter:
        """Start writing blob ``blob_id``."""

    def open(self, blob_id: str) -> BlobReader:
        """Open blob ``blob_id``; ``Corrupted`` (``params["blob"]``) if it is not there."""

    def size(self, blob_id: str) -> int | None:
        """The size of blob ``blob_id`` in bytes, ``None`` if there is no such blob."""

    def delete(self, blob_id: str) -> None:
        """Remove blob ``blob_id`` (nothing if it is not there)."""

    def blobs(self) -> Iterator[tuple[str, int, datetime]]:
        """Every committed blob: its id, size and last modification (aware, UTC)."""

    def temporaries(self, older_than: datetime) -> list[str]:
        """Names of leftovers of writes not committed (nor aborted), last touched before
        ``older_than``: for fsck to remove with ``remove_temporary``."""

    def remove_temporary(self, name: str) -> None:
        """Remove a leftover named by ``temporaries`` (nothing if it is gone)."""

    def health(self) -> str | None:
        """``None`` if the backend can serve, else what is wrong, in a sentence."""


# ---- memory ----------------------------------------------------------------------------------


class _MemoryWriter:
    def __init__(self, backend: MemoryBackend, blob_id: str, name: str) -> None:
        self._backend = backend
        self._blob_id = blob_id
        self._name = name
        self._chunks: list[bytes] = []
        self._state = "open"

    def write(self, data: bytes | memoryview) -> None:
        if self._state != "open":
            raise ValueError("write to a closed blob writer")
        self._chunks.append(bytes(data))
        self._backend._touch(self._name)

    def commit(self) -> None:
        if self._state == "committed":
            return
        if self._state != "open":
            raise ValueError("commit of an aborted blob writer")
        self._backend._commit(self._blob_id, self._name, b"".join(self._chunks))
        self._chunks = []
        self._state = "committed"

    def abort(self) -> None:
        if self._state == "open":
            self._backend.remove_temporary(self._name)
            self._chunks = []
            self._state = "aborted"


class _MemoryReader:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, offset: int, length: int) -> bytes:
        _check_range(offset, length)
        return self._data[offset : offset + length]

    def close(self) -> None:
        pass


class MemoryBackend:
    """Blobs in a dictionary (thread-safe); for tests. Writers not committed nor aborted are its
    temporaries."""

    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[str, tuple[bytes, datetime]] = {}
        self._pending: dict[str, datetime] = {}

    def _touch(self, name: str) -> None:
        with self._lock:
            if name in self._pending:
                self._pending[name] = datetime.now(UTC)

    def _commit(self, blob_id: str, name: str, data: bytes) -> None:
        with self._lock:
            self._pending.pop(name, None)
            self._blobs[blob_id] = (data, datetime.now(UTC))

    def create(self, blob_id: str) -> BlobWriter:
        """Start writing blob ``blob_id``."""
        check_blob_id(blob_id)
        name = f"{blob_id}.{secrets.token_hex(8)}"
        with self._lock:
            self._pending[name] = datetime.now(UTC)
        return _MemoryWriter(self, blob_id, name)

    def open(self, blob_id: str) -> BlobReader:
        """Open blob ``blob_id``."""
        check_blob_id(blob_id)
        with self._lock:
            found = self._blobs.get(blob_id)
        if found is None:
            raise blob_missing(blob_id)
        return _MemoryReader(found[0])

    def size(self, blob_id: str) -> int | None:
        """The size of blob ``blob_id``, ``None`` if there is none."""
        check_blob_id(blob_id)
        with self._lock:
            found = self._blobs.get(blob_id)
        return None if found is None else len(found[0])

    def delete(self, blob_id: str) -> None:
        """Remove blob ``blob_id``."""
        check_blob_id(blob_id)
        with self._lock:
            self._blobs.pop(blob_id, None)

    def blobs(self) -> Iterator[tuple[str, int, datetime]]:
        """Every committed blob (a snapshot taken when iteration starts)."""
        with self._lock:
            snapshot = [(k, len(v[0]), v[1]) for k, v in self._blobs.items()]
        yield from snapshot

    def temporaries(self, older_than: datetime) -> list[str]:
        """Writers neither committed nor aborted, last written before ``older_than``."""
        with self._lock:
            return [name for name, at in self._pending.items() if at < older_than]

    def remove_temporary(self, name: str) -> None:
        """Forget a pending writer's bytes."""
        with self._lock:
            self._pending.pop(name, None)

    def health(self) -> str | None:
        """Always healthy."""
        return None


# ---- local files -----------------------------------------------------------------------------


def _start_writeback_loader() -> Callable[[int, int, int], None] | None:
    """Linux's ``sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)``: start writing a
    range of dirty pages without waiting for it (durability still comes from the fsync). None
    where the C library has no such call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        call(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE; a failure only loses the head start

    return start


_start_writeback = _start_writeback_loader()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path, stop: Path) -> None:
    """Create ``path`` and its missing parents up to ``stop``, each made durable: the new
    directory fsynced, and its parent, which holds its entry."""
    if path.is_dir() or path == stop:
        return
    _make_dirs(path.parent, stop)
    try:
        path.mkdir()
    except FileExistsError:
        return  # another writer made it (and fsyncs it)
    _fsync_dir(path)
    _fsync_dir(path.parent)


class _LocalWriter:
    def __init__(self, backend: LocalBackend, blob_id: str) -> None:
        self._backend = backend
        self._blob_id = blob_id
        self._temp = backend.root / "tmp" / f"{blob_id}.{secrets.token_hex(8)}.tmp"
        fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._file: IO[bytes] | None = open(fd, "wb", buffering=_WRITE_BUFFER)  # noqa: SIM115 (closed by commit or abort)
        self._committed = False
        self._written = 0
        self._handed = 0  # bytes whose writeback has been started

    def write(self, data: bytes | memoryview) -> None:
        file = self._file
        if file is None:
            raise ValueError("write to a closed blob writer")
        file.write(data)
        self._written += len(data)
        if _start_writeback is not None and self._written - self._handed >= WRITEBACK_STEP:
            file.flush()
            _start_writeback(file.fileno(), self._handed, self._written - self._handed)
            self._handed = self._written

    def commit(self) -> None:
        if self._committed:
            return
        file = self._file
        if file is None:
            raise ValueError("commit of an aborted blob writer")
        try:
            file.flush()
            os.fsync(file.fileno())
            file.close()
            self._file = None
            final = self._backend.path_of(self._blob_id)
            _make_dirs(final.parent, self._backend.root)
            os.rename(self._temp, final)
            _fsync_dir(final.parent)
        except BaseException:
            self._file = file
            self.abort()
            raise
        self._committed = True

    def abort(self) -> None:
        if self._committed:
            return
        file, self._file = self._file, None
        if file is not None:
            file.close()
        self._temp.unlink(missing_ok=True)


class _LocalReader:
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def read(self, offset: int, length: int) -> bytes:
        _check_range(offset, length)
        if self._fd is None:
            raise ValueError("read from a closed blob reader")
        data = os.pread(self._fd, length, offset)
        if len(data) == length or not data:
            return data
        # A regular file answers a short pread only at its end, but be exact anyway.
        parts = [data]
        got = len(data)
        while got < length:
            more = os.pread(self._fd, length - got, offset + got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


class LocalBackend:
    """Blobs as files: ``root/blobs/<id[0:2]>/<id>``, written to ``root/tmp/`` (the same file
    system) and renamed into place on commit, so the final path holds a whole blob or nothing,
    whenever the machine stops. One level of 256 shard directories: each is made (and
    fsynced) by the first commit into it, after which a commit costs two fsyncs, the file and
    its directory."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs"
        self._tmp = self.root / "tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        _make_dirs(self._blobs, self.root)
        _make_dirs(self._tmp, self.root)

    def path_of(self, blob_id: str) -> Path:
        """The final path of blob ``blob_id``."""
        check_blob_id(blob_id)
        return self._blobs / blob_id[0:2] / blob_id

    def create(self, blob_id: str) -> BlobWriter:
        """Start writing blob ``blob_id`` into a temporary file."""
        check_blob_id(blob_id)
        return _LocalWriter(self, blob_id)

    def open(self, blob_id: str) -> BlobReader:
        """Open blob ``blob_id`` (one file descriptor, read with ``pread``)."""
        path = self.path_of(blob_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise blob_missing(blob_id) from None
        return _LocalReader(fd)

    def size(self, blob_id: str) -> int | None:
        """The size of blob ``blob_id``, ``None`` if there is none."""
        try:
            return self.path_of(blob_id).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, blob_id: str) -> None:
        """Remove blob ``blob_id``. Not fsynced: a delete undone by a crash leaves a blob no
        metadata names, which fsck finds."""
        self.path_of(blob_id).unlink(missing_ok=True)

    def blobs(self) -> Iterator[tuple[str, int, datetime]]:
        """Every blob file in its right place (anything else under ``blobs/`` is skipped)."""
        for first in _scan_dirs(self._blobs):
            with os.scandir(first.path) as entries:
                for entry in entries:
                    name = entry.name
                    if _BLOB_ID.fullmatch(name) is None or name[0:2] != first.name:
                        continue
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # deleted while listing
                    yield name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)

    def temporaries(self, older_than: datetime) -> list[str]:
        """Files in ``tmp/`` last modified before ``older_than``."""
        cutoff = older_than.timestamp()
        found = []
        with os.scandir(self._tmp) as entries:
            for entry in entries:
                try:
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        found.append(entry.name)
                except FileNotFoundError:
                    continue
        return found

    def remove_temporary(self, name: str) -> None:
        """Remove ``tmp/<name>``; ``ValueError`` if ``name`` is not a plain file name."""
        if not name or name in {".", ".."} or "/" in name or "\0" in name:
            raise ValueError(f"not a temporary's name: {name!r}")
        (self._tmp / name).unlink(missing_ok=True)

    def health(self) -> str | None:
        """``None`` if both directories are there and writable."""
        for directory in (self._blobs, self._tmp):
            if not directory.is_dir():
                return f"the store directory {directory} is missing"
            if not os.access(directory, os.W_OK | os.X_OK):
                return f"the store directory {directory} is not writable"
        return None


def _scan_dirs(path: Path) -> list[os.DirEntry[str]]:
    """The two-hex-character subdirectories of ``path``."""
    try:
        with os.scandir(path) as entries:
            return [
                e
                for e in entries
                if _SHARD.fullmatch(e.name) is not None and e.is_dir(follow_symlinks=False)
            ]
    except FileNotFoundError:
        return []


if TYPE_CHECKING:
    _local: BlobBackend = LocalBackend(Path())
    _memory: BlobBackend = MemoryBackend()
