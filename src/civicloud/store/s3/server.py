"""The S3 port's HTTP/1.1 server: one thread per connection (bounded), keep-alive, TLS, and
bodies streamed straight from the socket.

A small server of its own rather than the web application's stack: S3 clients stream bodies of
gigabytes with ``Expect: 100-continue`` and ``aws-chunked`` encodings, sign the exact bytes of
the request line, and send thousands of tiny requests per second, so the port reads the raw
request and writes each small answer in one ``send`` (with ``TCP_NODELAY``: no 40 ms stall on
Nagle and delayed ACK).
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any

log = logging.getLogger(__name__)

#: How long a connection may wait for its next request (or a TLS client for its handshake).
IDLE_SECONDS = 15.0
#: While every worker is taken and a connection waits for one: a connection that has waited
#: this long for its next request is closed (a keep-alive close, which clients meet by opening a
#: new connection) ...
REAP_IDLE_SECONDS = 1.0
#: ... else the next answer sent ends its connection with ``Connection: close``; and this long
#: later, the same again.
REAP_AFTER_SECONDS = 0.1
#: Longest request line and header block accepted.
MAX_LINE = 16 * 1024
REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    414: "URI Too Long",
    416: "Requested Range Not Satisfiable",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class Exchange:
    """One request as the operations see it, and the way to answer it."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.method: str = handler.command
        self.target: str = handler.path
        raw_path, _, raw_query = self.target.partition("?")
        self.raw_path = raw_path
        self.raw_query = raw_query
        self.headers: dict[str, str] = {}
        for name, raw in handler.headers.items():
            lower = name.lower()
            value = " ".join(raw.split()) if "\n" in raw else raw
            self.headers[lower] = (
                f"{self.headers[lower]},{value}" if lower in self.headers else value
            )
        self.remote: str = handler.client_address[0] if handler.client_address else ""
        self.tls = isinstance(handler.connection, ssl.SSLSocket)
        self.sent_headers = False
        self.body_read = 0
        #: A chunked body read to its end.
        self.body_done = False
        self.bytes_out = 0
        self.close_after = False
        self._continue_sent = False

    # -- the body ------------------------------------------------------------------------

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of the raw body (the caller bounds it by Content-Length)."""
        self._send_continue()
        data = self._handler.rfile.read(n)
        self.body_read += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:
        """Up to ``len(buffer)`` bytes of the raw body into ``buffer``; how many (0 at its
        end). The caller bounds it by Content-Length."""
        self._send_continue()
        got: int = self._handler.rfile.readinto(buffer)
        self.body_read += got
        return got

    def readline(self, limit: int) -> bytes:
        """One line of the raw body (chunk sizes), at most ``limit`` bytes."""
        self._send_continue()
        data = self._handler.rfile.readline(limit)
        self.body_read += len(data)
        return data

    def _send_continue(self) -> None:
        if self._continue_sent:
            return
        self._continue_sent = True
        if self.headers.get("expect", "").lower() == "100-continue":
            self._handler.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- the answer ----------------------------------------------------------------------

    def respond(self, status: int, headers: Iterable[tuple[str, str]], body: bytes = b"") -> None:
        """Answer with ``body`` in one send."""
        self._make_room()
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        if status != 304 and not any(n.lower() == "content-length" for n, _ in headers):
            lines.append(f"Content-Length: {len(body)}")
        if self.close_after:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._handler.wfile.write(head + body if self.method != "HEAD" else head)
        self.sent_headers = True
        self.bytes_out += len(body) if self.method != "HEAD" else 0

    def start(self, status: int, headers: Iterable[tuple[str, str]], first: bytes = b"") -> None:
        """Send the status and headers of a streamed answer (``Content-Length`` given), with
        its first piece in the same send (a small object goes out in one)."""
        self._make_room()
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        if self.close_after:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._handler.wfile.write(head + first if len(first) <= 1 << 16 else head)
        if len(first) > 1 << 16:
            self._handler.wfile.write(first)
        self.bytes_out += len(first)
        self.sent_headers = True

    def _make_room(self) -> None:
        """End the connection after this answer when a waiting connection needs the worker."""
        if not self.close_after and self._handler.server.take_close():
            self.close_after = True

    def send(self, data: bytes | memoryview) -> None:
        """A piece of a streamed answer."""
        self._handler.wfile.write(data)
        self.bytes_out += len(data)

    def abort_connection(self) -> None:
        """Cut the connection: a streamed answer that cannot be finished must not look whole."""
        self.close_after = True
        self._handler.close_connection = True
        with contextlib.suppress(OSError):
            self._handler.connection.shutdown(socket.SHUT_RDWR)


Dispatch = Callable[[Exchange], None]


#: A header line's longest length and the most header lines (``http.client``'s limits).
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100


class Headers:
    """A request's header lines in order, looked up by any case (what the handler needs of
    ``email.message.Message``, which ``http.server`` builds through the e-mail parser at a cost
    that small requests feel)."""

    __slots__ = ("_pairs",)

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def get(self, name: str, default: str = "") -> str:
        wanted = name.lower()
        return next((v for n, v in self._pairs if n.lower() == wanted), default)


class BadHeaders(Exception):
    """A header block that cannot be read, with the status that says so."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def read_headers(rfile: Any) -> Headers:
    """The header block up to its empty line, as ``name: value`` lines. ``BadHeaders(431)``
    past the limits (every line counts); ``BadHeaders(400)`` for a line that is no header: a
    name that is not an RFC 9110 token, a value with a control character, or an obsolete folded
    line (RFC 9112 lets a server refuse it; no S3 client sends one, and joining folds is how
    headers are smuggled past a proxy)."""
    pairs: list[tuple[str, str]] = []
    while True:
        line = rfile.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise BadHeaders(431)
        if line in (b"\r\n", b"\n", b""):
            return Headers(pairs)
        if len(pairs) >= MAX_HEADERS:
            raise BadHeaders(431)
        text = line.decode("iso-8859-1")
        text = text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
        name, colon, value = text.partition(":")
        if not colon or not _TOKEN.fullmatch(name) or _CONTROL.search(value):
            raise BadHeaders(400)
        pairs.append((name, value.strip(" \t")))


#: RFC 9110's token (a field name) and the characters a field value may not hold (controls
#: other than a tab, CR and LF among them, and DEL).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class Handler(BaseHTTPRequestHandler):
    """Parses requests and hands each to the dispatcher."""

    protocol_version = "HTTP/1.1"
    server_version = "civicloud"
    sys_version = ""
    #: The socket is wrapped without a write buffer: answers are written whole.
    wbufsize = 0
    rbufsize = 64 * 1024
    timeout = 120
    server: S3Server

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def parse_request(self) -> bool:
        """The request line and headers, as ``BaseHTTPRequestHandler.parse_request`` reads
        them (the same answers to a bad request line), with :func:`read_headers` for the
        header block."""
        self.command = ""
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            numbers = version[5:].split(".") if version.startswith("HTTP/") else []
            if len(numbers) != 2 or not all(
                n.isascii() and n.isdigit() and len(n) <= 10 for n in numbers
            ):
                self.send_error(400)
                return False
            major, minor = int(numbers[0]), int(numbers[1])
            if major >= 2:
                self.send_error(505)
                return False
            if (major, minor) >= (1, 1):
                self.close_connection = False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(400)
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(400)
                return False
        self.command, self.path = command, path
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")
        try:
            self.headers = read_headers(self.rfile)  # type: ignore[assignment]
        except BadHeaders as bad:
            self.send_error(bad.status)
            return False
        connection = self.headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        return True

    def handle_expect_100(self) -> bool:
        # Sent when the body is first read, after the request was authenticated and checked
        # (``Exchange.read``): a refused upload never sends its gigabytes.
        return True

    def handle_one_request(self) -> None:
        try:
            # An idle connection (between requests, or one that never sends a request) holds
            # a worker for IDLE_SECONDS at most; a request's body then gets ``timeout``.
            with contextlib.suppress(OSError):
                self.connection.settimeout(IDLE_SECONDS)
            self.server.idle(self.connection)
            try:
                self.raw_requestline = self.rfile.readline(MAX_LINE + 1)
            finally:
                still_open = self.server.busy(self.connection)
            if not still_open:
                # Closed to make room for a waiting connection while it idled.
                self.close_connection = True
                return
            with contextlib.suppress(OSError):
                self.connection.settimeout(self.timeout)
            if len(self.raw_requestline) > MAX_LINE:
                self.requestline = ""
                self.request_version = ""
                self.command = ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            exchange = Exchange(self)
            self.server.dispatch(exchange)
            if exchange.close_after:
                self.close_connection = True
            self.wfile.flush()
        except (TimeoutError, ConnectionError, ssl.SSLError) as exc:
            log.debug("s3: connection ended: %s", exc)
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A request that could not even be parsed: an S3 error document, and the connection
        closed (whatever the client wrote cannot be trusted to end where it says)."""
        del message, explain
        s3_code = {414: "KeyTooLongError", 431: "RequestHeaderSectionTooLarge"}.get(
            code, "BadRequest"
        )
        status = code if code in REASONS else 400
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
            f"{s3_code}</Code><Message>The request could not be parsed.</Message></Error>"
        ).encode()
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Bad Request')}\r\n"
            "Content-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.write(head + body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("s3: " + format, *args)


class S3Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """The listening socket; each connection in a thread, at most ``max_connections`` at once.

    More connections wait in the listen backlog, but not behind other clients' keep-alive
    connections: while one waits for a worker, a connection idle for ``REAP_IDLE_SECONDS`` is
    closed, or else the next answer sent says ``Connection: close`` and ends its connection
    (HTTP lets a server close a keep-alive connection; clients open a new one). So a thousand
    clients with keep-alive pools share the workers, rather than the first ``max_connections``
    of them holding every worker until they stop.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(
        self,
        address: tuple[str, int],
        dispatch: Dispatch,
        *,
        tls: ssl.SSLContext | None = None,
        max_connections: int = 64,
    ) -> None:
        self.dispatch = dispatch
        self._tls = tls
        self._slots = threading.BoundedSemaphore(max_connections)
        #: Connections waiting for their next request, with when they began to wait.
        self._idle: dict[socket.socket, float] = {}
        self._idle_lock = threading.Lock()
        #: Idle connections closed, and answers that closed theirs, to make room for others.
        self.reaped = 0
        self.closed_for_room = 0
        self._close_wanted = False
        super().__init__(address, Handler)

    def idle(self, connection: socket.socket) -> None:
        """``connection`` waits for its next request: it may be closed to make room."""
        with self._idle_lock:
            self._idle[connection] = time.monotonic()

    def busy(self, connection: socket.socket) -> bool:
        """``connection`` has a request (or ended); False when it was closed to make room."""
        with self._idle_lock:
            return self._idle.pop(connection, None) is not None

    def _reap_one(self) -> bool:
        """Close the connection idle the longest, if it has been for ``REAP_IDLE_SECONDS``."""
        with self._idle_lock:
            if not self._idle:
                return False
            connection = min(self._idle, key=self._idle.__getitem__)
            if time.monotonic() - self._idle[connection] < REAP_IDLE_SECONDS:
                return False
            del self._idle[connection]
            self.reaped += 1
        # The plain socket's shutdown, also under TLS: the worker blocked in its read wakes to
        # an end of stream and closes the connection itself.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(connection, socket.SHUT_RDWR)
        return True

    def take_close(self) -> bool:
        """True once for the answer that is to end its connection to make room."""
        if not self._close_wanted:
            return False
        with self._idle_lock:
            if not self._close_wanted:
                return False
            self._close_wanted = False
            self.closed_for_room += 1
            return True

    def process_request(self, request: Any, client_address: Any) -> None:
        # Every worker taken: a connection idle for a while is closed, or else the next answer
        # closes its connection; again while no worker frees up.
        if not self._slots.acquire(blocking=False):
            while True:
                if self._reap_one():
                    log.debug("s3: every worker taken; closed an idle connection")
                else:
                    self._close_wanted = True
                if self._slots.acquire(timeout=REAP_AFTER_SECONDS):
                    break
            self._close_wanted = False
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        if self._tls is not None:
            # The handshake happens in the connection's own thread, on its first read.
            sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if isinstance(request, ssl.SSLSocket):
                request.settimeout(IDLE_SECONDS)
                try:
                    request.do_handshake()
                except (OSError, ssl.SSLError) as exc:
                    log.debug("s3: TLS handshake failed: %s", exc)
                    self.shutdown_request(request)
                    return
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
