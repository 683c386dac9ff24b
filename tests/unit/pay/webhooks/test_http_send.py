"""The default ``send``: a POST over http(s) to a loopback server, no redirects followed."""

from __future__ import annotations

import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from civicloud.core.errors import InvalidInput
from civicloud.pay.webhooks import http_send


class _Handler(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, dict(self.headers), body))
        status = int(self.path.rsplit("/", 1)[1])
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/hooks/200")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    _Handler.received.clear()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("status", [200, 204, 500, 404])
def test_the_status_is_returned(server: str, status: int) -> None:
    # given / when
    got = http_send(f"{server}/hooks/{status}", {"X-Civicloud-Event-Id": "e1"}, b'{"a":1}')
    # then
    assert got == status
    path, headers, body = _Handler.received[-1]
    assert (path, headers["X-Civicloud-Event-Id"], body) == (f"/hooks/{status}", "e1", b'{"a":1}')


def test_a_redirect_is_an_answer_not_followed(server: str) -> None:
    # given / when
    got = http_send(f"{server}/hooks/302", {}, b"{}")
    # then: one request only, and a 3xx is not a success
    assert got == 302
    assert [path for path, _, _ in _Handler.received] == ["/hooks/302"]


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://biller.example/x", "gopher://x", "http:///no-host", "x"]
)
def test_other_schemes_are_refused(url: str) -> None:
    # given / when / then
    with pytest.raises(InvalidInput, match="http"):
        http_send(url, {}, b"{}")


def test_an_unreachable_biller_raises() -> None:
    # given: a port nobody listens on (the server's, once closed)
    closed = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = closed.server_address[1]
    closed.server_close()
    # when / then
    with pytest.raises(urllib.error.URLError, match="refused"):
        http_send(f"http://127.0.0.1:{port}/hooks/200", {}, b"{}", timeout=2)
