"""Decoding a ``Content-Encoding: aws-chunked`` request body as it arrives.

S3 clients stream uploads in the aws-chunked encoding, in three forms, named by the request's
``x-amz-content-sha256``:

``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``
    ``<hex size>;chunk-signature=<sig>\\r\\n<data>\\r\\n`` per chunk, ending with a zero-size
    chunk ``0;chunk-signature=<sig>\\r\\n\\r\\n``; each signature chains from the previous one.
``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER``
    the same, then after the zero-size chunk's line the trailer lines (``name:value``), a line
    ``x-amz-trailer-signature:<sig>`` and an empty line. The signed text of the trailer is each
    trailer as ``name:value\\n``, in the order sent.
``STREAMING-UNSIGNED-PAYLOAD-TRAILER``
    ``<hex size>\\r\\n<data>\\r\\n`` per chunk, then ``0\\r\\n``, the trailer lines and an empty
    line: what boto3 and the AWS CLI send over HTTPS by default.

The reader accepts what the common clients really send beside that: a body that ends where its
final empty line should be, trailer lines ended by a bare ``\\n`` with an empty line between
them and the trailer signature and a spare ``\\r\\n`` at the very end (the MinIO SDKs), chunk
extensions on unsigned chunks (ignored, as HTTP says).

The signatures themselves are checked by a :class:`ChunkSigner`, which holds the chain; this
module only frames the body. Every malformed body becomes an S3 error from
:mod:`civicloud.store.errors`: ``IncompleteBody`` when it ends too early, ``InvalidRequest`` when
it breaks the encoding, ``SignatureDoesNotMatch`` when a signature is missing or wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, Protocol

from civicloud.store import errors

MiB: Final = 1024 * 1024
DEFAULT_MAX_CHUNK: Final = 16 * MiB
MAX_LINE: Final = 4096
"""The longest size or trailer line accepted, without its line ending."""
_LOOKAHEAD: Final = 256
"""How much a line read asks of the raw stream at once (a signed size line is about 90)."""
_MAX_SIZE_DIGITS: Final = 16
TRAILER_SIGNATURE: Final = "x-amz-trailer-signature"

_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"[\x20-\x7e\t]*")


class Raw(Protocol):
    """The raw request body: a socket file, whose ``read`` returns fewer than ``n`` bytes only
    at the end of the stream."""

    def read(self, n: int, /) -> bytes: ...


class ChunkSigner(Protocol):
    """The chain of a streaming SigV4 upload's signatures: each call checks the next link and
    raises ``errors.SignatureDoesNotMatch`` when it does not hold."""

    def verify_chunk(self, data: bytes | memoryview, signature: str) -> None:
        """Check the signature of the next chunk (the final one has empty ``data``)."""
        ...

    def verify_trailer(self, trailer: bytes, signature: str) -> None:
        """Check the trailer's signature; ``trailer`` is each trailer as ``name:value\\n``."""
        ...


def _incomplete() -> errors.IncompleteBody:
    return errors.IncompleteBody(
        "The request body terminated unexpectedly: its aws-chunked encoding did not end."
    )


class AwsChunkedReader:
    """The decoded payload of an aws-chunked body, read as a file.

    ``raw`` is the body as received. ``encoded_length`` is its ``Content-Length``: the reader
    never reads past it (the connection's next request may follow); ``None`` when the body
    arrives with ``Transfer-Encoding: chunked`` and ``raw`` ends where it does.
    ``decoded_length`` is ``x-amz-decoded-content-length``, which the chunks' sizes must add up
    to (``None``: not checked). ``signer`` checks the chunk and trailer signatures of the signed
    forms; ``None`` for the unsigned form (chunk extensions are then ignored).
    ``trailer_names`` are the names ``x-amz-trailer`` declared: every one must come in the
    trailer and no other. With a ``signer`` and any ``trailer_names``, the trailer must be
    signed. A signed chunk is read whole and checked before any of it is returned, so one
    larger than ``max_chunk`` is refused before it is read; unsigned chunks are streamed and
    may be of any size (the AWS CRT, under the AWS CLI v2, sends a whole part as one chunk).

    :meth:`read` returns decoded bytes and ``b""`` at the end, once everything after the data
    (the final chunk, the trailer, its signature) was read and checked; ``trailers`` then holds
    the trailers by lower-case name and ``finished`` is true. A caller must read to the end (or
    until ``finished``) before trusting the data: the last signature and the trailer come
    after it. After an error every further :meth:`read` raises it again.
    """

    def __init__(
        self,
        raw: Raw,
        *,
        encoded_length: int | None,
        decoded_length: int | None,
        signer: ChunkSigner | None,
        trailer_names: Sequence[str],
        max_chunk: int = DEFAULT_MAX_CHUNK,
    ) -> None:
        self._raw = raw
        self._left = encoded_length
        self._decoded_length = decoded_length
        self._signer = signer
        self._trailer_names = tuple(dict.fromkeys(n.strip().lower() for n in trailer_names))
        self._max_chunk = max_chunk
        self._buf = b""
        self._pos = 0
        self._decoded = 0  # the sum of the sizes of the chunks announced so far
        self._chunk_left = 0  # payload bytes of the current chunk still on the wire
        self._chunk_signature = ""
        self._ready: bytes | None = None  # a verified signed chunk, not yet all returned
        self._ready_pos = 0
        self._error: errors.StoreError | None = None
        self.trailers: dict[str, str] = {}
        """The trailers by lower-case name (the trailer signature aside), once finished."""
        self.finished = False
        """Whether the end of the encoding was reached and everything in it checked."""

    # ---- reading -----------------------------------------------------------------------------

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` decoded bytes (all that is left when ``n`` is negative), ``b""`` only at
        the end. It may return fewer than ``n`` at a chunk's end."""
        if self._error is not None:
            raise self._error
        try:
            if n < 0:
                pieces = []
                while piece := self._read(DEFAULT_MAX_CHUNK):
                    pieces.append(piece)
                return b"".join(pieces)
            if n == 0:
                return b""
            return self._read(n)
        except errors.StoreError as error:
            self._error = error
            raise

    def readall(self) -> bytes:
        """All the decoded bytes left."""
        return self.read(-1)

    def _read(self, n: int) -> bytes:
        while True:
            ready = self._ready
            if ready is not None:
                start = self._ready_pos
                end = min(start + n, len(ready))
                piece = ready if start == 0 and end == len(ready) else ready[start:end]
                self._ready_pos = end
                if end == len(ready):
                    self._ready = None
                    self._next_chunk()
                return piece
            if self._chunk_left:
                if self._signer is not None:
                    self._read_signed_chunk()
                    continue
                piece = self._take(min(n, self._chunk_left))
                self._chunk_left -= len(piece)
                if not self._chunk_left:
                    self._expect_crlf()
                    self._next_chunk()
                return piece
            if self.finished:
                return b""
            self._next_chunk()

    def _read_signed_chunk(self) -> None:
        """Read the current chunk whole and check its signature before any of it is returned."""
        data = self._take(self._chunk_left)
        self._chunk_left = 0
        self._expect_crlf()
        assert self._signer is not None
        self._signer.verify_chunk(data, self._chunk_signature)
        self._ready = data
        self._ready_pos = 0

    # ---- the raw stream ----------------------------------------------------------------------

    def _raw_read(self, n: int) -> bytes:
        """Up to ``n`` raw bytes, never past ``encoded_length``; ``b""`` at the end."""
        if self._left is not None:
            n = min(n, self._left)
            if n <= 0:
                return b""
        data = self._raw.read(n)
        if self._left is not None:
            self._left -= len(data)
        return data

    def _take(self, n: int) -> bytes:
        """Up to ``n`` bytes: the buffered ones and, to make up ``n``, the raw stream's."""
        pending = len(self._buf) - self._pos
        if not pending:
            data = self._raw_read(n)
            if len(data) < n:
                raise _incomplete()
            return data
        if pending >= n:
            data = self._buf[self._pos : self._pos + n]
            self._pos += n
            return data
        head = self._buf[self._pos :]
        self._buf, self._pos = b"", 0
        return head + self._take_exactly(n - len(head))

    def _take_exactly(self, n: int) -> bytes:
        data = self._raw_read(n)
        if len(data) < n:
            raise _incomplete()
        return data

    def _fill(self) -> bool:
        """Read more into the buffer; false at the end of the stream."""
        more = self._raw_read(_LOOKAHEAD)
        if not more:
            return False
        self._buf = self._buf[self._pos :] + more
        self._pos = 0
        return True

    def _readline(self, *, bare_lf: bool) -> bytes | None:
        """The next line without its ending; ``None`` at the end of the stream (between lines).
        A line must end with CRLF, or also a bare LF where ``bare_lf``."""
        scan_from = self._pos
        while True:
            end = self._buf.find(b"\n", scan_from)
            if end >= 0:
                line = self._buf[self._pos : end]
                self._pos = end + 1
                if line.endswith(b"\r"):
                    line = line[:-1]
                elif not bare_lf:
                    raise errors.InvalidRequest(
                        "The aws-chunked body is malformed: a line does not end with CRLF."
                    )
                if len(line) > MAX_LINE:
                    raise errors.InvalidRequest(
                        "The aws-chunked body is malformed: a line is too long."
                    )
                return line
            scanned = len(self._buf) - self._pos
            if scanned > MAX_LINE + 1:
                raise errors.InvalidRequest(
                    "The aws-chunked body is malformed: a line is too long."
                )
            if not self._fill():
                if not scanned:
                    return None
                raise _incomplete()
            scan_from = self._pos + scanned

    def _expect_crlf(self) -> None:
        while len(self._buf) - self._pos < 2:
            if not self._fill():
                raise _incomplete()
        if self._buf[self._pos : self._pos + 2] != b"\r\n":
            raise errors.InvalidRequest(
                "The aws-chunked body is malformed: a chunk's data is not followed by CRLF."
            )
        self._pos += 2

    # ---- framing -----------------------------------------------------------------------------

    def _next_chunk(self) -> None:
        """Read the next chunk's size line; at the zero-size chunk, the rest of the body."""
        line = self._readline(bare_lf=False)
        if line is None:
            raise _incomplete()
        size_text, _, extensions = line.partition(b";")
        if not _HEX.fullmatch(size_text):
            raise errors.InvalidRequest(
                "The aws-chunked body is malformed: a chunk size is not a hexadecimal number."
            )
        size = int(size_text, 16)
        if self._signer is not None:
            self._chunk_signature = _chunk_signature(extensions)
        if size > self._max_chunk and self._signer is not None:
            raise errors.InvalidRequest(
                "A chunk of %(size)s bytes is larger than the %(max)s bytes allowed.",
                params={"size": size, "max": self._max_chunk},
            )
        if size == 0:
            self._finish()
            return
        self._decoded += size
        if self._decoded_length is not None and self._decoded > self._decoded_length:
            raise errors.InvalidRequest(
                "The chunks hold more than the %(length)s bytes of x-amz-decoded-content-length.",
                params={"length": self._decoded_length},
            )
        pending = len(self._buf) - self._pos
        if self._left is not None and size + 2 > pending + self._left:
            raise _incomplete()
        self._chunk_left = size

    def _finish(self) -> None:
        if self._signer is not None:
            self._signer.verify_chunk(b"", self._chunk_signature)
        if self._decoded_length is not None and self._decoded != self._decoded_length:
            raise errors.IncompleteBody(
                "The chunks hold %(got)s bytes, not the %(length)s of "
                "x-amz-decoded-content-length.",
                params={"got": self._decoded, "length": self._decoded_length},
            )
        self._read_trailer()
        self._end_of_body()
        self.finished = True

    def _read_trailer(self) -> None:
        names = self._trailer_names
        signed = self._signer is not None and bool(names)
        trailers: dict[str, str] = {}
        canonical: list[bytes] = []
        signature: str | None = None
        budget = 2 * len(names) + 4  # lines, empty ones included

        def complete() -> bool:
            return len(trailers) == len(names) and (signature is not None or not signed)

        while True:
            line = self._readline(bare_lf=True)
            if line is None:  # the body ends where its last empty line would be
                break
            budget -= 1
            if budget < 0:
                raise errors.InvalidRequest(
                    "The aws-chunked body is malformed: the trailer has too many lines."
                )
            if not line:
                if complete():
                    break
                continue  # an empty line before the trailer signature (MinIO SDKs)
            name, value = _trailer_line(line)
            if name == TRAILER_SIGNATURE and self._signer is not None:
                if signature is not None:
                    raise errors.InvalidRequest(
                        "The aws-chunked body is malformed: the trailer signature comes twice."
                    )
                signature = value
                continue
            if name not in names:
                raise errors.InvalidRequest(
                    "The trailer %(name)s was not declared in x-amz-trailer.",
                    params={"name": name[:128]},
                )
            if name in trailers:
                raise errors.InvalidRequest(
                    "The aws-chunked body is malformed: a trailer comes twice."
                )
            trailers[name] = value
            canonical.append(f"{name}:{value}\n".encode("ascii"))
        missing = [name for name in names if name not in trailers]
        if missing:
            raise errors.InvalidRequest(
                "The trailer %(name)s declared in x-amz-trailer did not come.",
                params={"name": missing[0]},
            )
        if signature is not None or signed:
            if signature is None:
                raise errors.SignatureDoesNotMatch("The trailer of the request is not signed.")
            assert self._signer is not None
            self._signer.verify_trailer(b"".join(canonical), signature)
        self.trailers = trailers

    def _end_of_body(self) -> None:
        """Nothing but a spare CRLF may follow the encoding's end."""
        while len(self._buf) - self._pos < 2 and self._fill():
            pass
        if self._buf[self._pos : self._pos + 2] == b"\r\n":
            self._pos += 2
            self._fill()
        extra = len(self._buf) - self._pos + (self._left or 0)
        if extra:
            raise errors.InvalidRequest(
                "The body goes on for %(extra)s bytes past the end of its aws-chunked encoding.",
                params={"extra": extra},
            )


def _trailer_line(line: bytes) -> tuple[str, str]:
    """A trailer line's lower-case name and its value, both trimmed."""
    name, colon, value = line.partition(b":")
    name, value = name.strip(b" \t"), value.strip(b" \t")
    if not colon or not _TOKEN.fullmatch(name) or not _VALUE.fullmatch(value):
        raise errors.InvalidRequest(
            "The aws-chunked body is malformed: a trailer line is not name:value."
        )
    return name.decode("ascii").lower(), value.decode("ascii")


def _chunk_signature(extensions: bytes) -> str:
    for extension in extensions.split(b";"):
        key, _, value = extension.partition(b"=")
        if key.strip() == b"chunk-signature":
            signature = value.strip()
            if signature and _TOKEN.fullmatch(signature):
                return signature.decode("ascii")
            break
    raise errors.SignatureDoesNotMatch("A chunk of the request has no valid chunk-signature.")


__all__ = [
    "DEFAULT_MAX_CHUNK",
    "MAX_LINE",
    "TRAILER_SIGNATURE",
    "AwsChunkedReader",
    "ChunkSigner",
    "Raw",
]
