"""More clients than the S3 port has workers: every client is served, none waits behind other
clients' keep-alive connections (an idle one is closed, or an answer ends its connection with
``Connection: close``, to make room; clients open a new connection)."""

from __future__ import annotations

import contextlib
import dataclasses
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.factories.store import S3Member

from civicloud.store.context import StoreContext
from civicloud.store.s3.listener import RunningS3, tls_context
from civicloud.store.settings import StoreSettings

from .conftest import Port, bucket_name, client

pytestmark = pytest.mark.slow


@pytest.fixture(params=["http", "tls"])
def narrow_port(request: pytest.FixtureRequest, s3_http: Port) -> Iterator[tuple[Port, RunningS3]]:
    """The S3 port with only two workers, over plain HTTP and over TLS (where the worker of an
    idle connection is blocked in the TLS layer's read)."""
    context: StoreContext = dataclasses.replace(
        s3_http.context, settings=s3_http.context.settings.model_copy(update={"s3_threads": 2})
    )
    data_dir = s3_http.services.settings.data_dir
    if request.param == "tls":
        tls = tls_context(StoreSettings(tls="self-signed"), data_dir)
        running = RunningS3(context, host="127.0.0.1", port=0, tls=tls)
        ca: str | None = str(data_dir / "store" / "tls" / "s3-cert.pem")
        endpoint = running.address.replace("127.0.0.1", "localhost")
    else:
        running = RunningS3(context, host="127.0.0.1", port=0, tls=None)
        ca, endpoint = None, running.address
    yield Port(endpoint, ca, context, s3_http.services), running
    running.server.shutdown()
    running.server.server_close()


def test_six_times_more_boto3_clients_than_workers_are_all_served(
    narrow_port: tuple[Port, RunningS3], member: S3Member
) -> None:
    port, running = narrow_port
    name = bucket_name()
    client(port, member).create_bucket(Bucket=name)
    errors: list[str] = []
    start = threading.Barrier(12)

    # Default retries, as an unmodified client has them; each client its own connection pool.
    s3s = [client(port, member, retries={"mode": "standard"}) for _ in range(12)]

    def work(n: int) -> None:
        s3 = s3s[n]
        start.wait()
        try:
            for i in range(5):
                body = f"client {n} object {i}".encode()
                s3.put_object(Bucket=name, Key=f"{n}/{i}", Body=body)
                got = s3.get_object(Bucket=name, Key=f"{n}/{i}")["Body"].read()
                if got != body:
                    errors.append(f"{n}/{i}: read {got!r}")
        except Exception as exc:
            errors.append(f"{n}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    listed = client(port, member).list_objects_v2(Bucket=name)
    assert listed["KeyCount"] == 12 * 5
    # Answers ended their connections to let the waiting clients in.
    assert running.server.closed_for_room > 0


def _request(sock: socket.socket, host: str) -> bytes:
    """Send an anonymous ListBuckets on ``sock`` and read the whole answer."""
    sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return head + b"\r\n\r\n" + body


def test_more_keep_alive_connections_than_the_default_256_workers_are_all_answered(
    s3_http: Port,
) -> None:
    """400 clients each keep their connection open after an answer: all 400 are answered on
    the installation's default of 256 workers, and the first ones' idle connections were the
    ones closed (144 closed at least; other tests' idle connections, older, go first)."""
    host = s3_http.endpoint.removeprefix("http://")
    address: Any = (host.rsplit(":", 1)[0], int(host.rsplit(":", 1)[1]))
    assert s3_http.context.settings.s3_threads == 256
    sockets: list[socket.socket] = []
    try:
        answers = []
        for _ in range(400):
            sock = socket.create_connection(address, timeout=30)
            sockets.append(sock)
            answers.append(_request(sock, host))
        assert all(
            a.startswith(b"HTTP/1.1 403 ") and b"<Code>AccessDenied</Code>" in a for a in answers
        )
        # The earliest connections, idle the longest, were closed by the server: an end of
        # stream, not a hang until the idle timeout.
        sockets[0].settimeout(10)
        assert sockets[0].recv(1) == b""
        # The last one is still open and usable.
        assert _request(sockets[-1], host).startswith(b"HTTP/1.1 403 ")
    finally:
        for sock in sockets:
            sock.close()


def _connect(port: Port) -> socket.socket:
    """A raw connection to ``port`` (TLS-wrapped, verified with its CA, when it is TLS)."""
    host = port.endpoint.split("://", 1)[1]
    name, number = host.rsplit(":", 1)
    sock = socket.create_connection((name, int(number)), timeout=30)
    if port.ca_file is None:
        return sock
    return ssl.create_default_context(cafile=port.ca_file).wrap_socket(sock, server_hostname=name)


def test_an_idle_connection_is_closed_to_let_a_waiting_client_in(
    narrow_port: tuple[Port, RunningS3],
) -> None:
    """Both workers hold idle keep-alive connections: a third client is answered once one has
    been idle for a second, and that one is closed (an end of stream, not a hang), over plain
    HTTP and over TLS alike."""
    port, running = narrow_port
    host = port.endpoint.split("://", 1)[1]
    reaped_before, closed_before = running.server.reaped, running.server.closed_for_room
    first, second = _connect(port), _connect(port)
    try:
        assert _request(first, host).startswith(b"HTTP/1.1 403 ")
        assert _request(second, host).startswith(b"HTTP/1.1 403 ")
        # Both answers are out: both workers wait on an idle connection. (Were one still
        # answering, its answer would say Connection: close instead, the other way to make room.)
        time.sleep(0.3)
        third = _connect(port)
        try:
            assert _request(third, host).startswith(b"HTTP/1.1 403 ")
        finally:
            third.close()
        reaped = running.server.reaped - reaped_before
        assert reaped + running.server.closed_for_room - closed_before >= 1
        if reaped:
            # One of the two idle connections was closed: it reads an end of stream, not a
            # hang (a TLS connection cut without close_notify may say so instead).
            readable, _, _ = select.select([first, second], [], [], 10)
            assert readable
            with contextlib.suppress(ssl.SSLEOFError, ConnectionResetError):
                assert readable[0].recv(1) == b""
    finally:
        first.close()
        second.close()
