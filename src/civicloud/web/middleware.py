"""Pure ASGI middleware: request ids, body-size limits, access logs and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from civicloud.core.context import begin_targets, set_request_id
from civicloud.web.pages.rendering import SECURITY_HEADERS
from civicloud.web.problems import PROBLEM_TYPE_BASE

log = logging.getLogger("civicloud.access")
#: The headers every response gets unless it set them itself: the pages' own (web.pages), so
#: nothing is framed, sniffed or allowed to load from elsewhere, whatever route answered.
DEFAULT_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = tuple(
    (name.lower().encode("latin-1"), value.encode("latin-1"))
    for name, value in SECURITY_HEADERS.items()
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _TooLarge(StarletteHTTPException):
    """Raised from ``receive`` so that FastAPI's body parsing passes it on as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


#: The scope key a route sets before it reads its body to take a larger one than
#: ``web.max_body_bytes`` (a module's uploads, with a limit of their own).
BODY_LIMIT_KEY = "civicloud.body_limit"


class Metrics:
    """The application's Prometheus collectors, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "civicloud_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "civicloud_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            registry=self.registry,
        )


class RequestContextMiddleware:
    """Gives each request an id, refuses oversized bodies with 413, logs it and counts it."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        set_request_id(request_id)
        begin_targets()  # the tenants the request is authorised against, for auditing refusals
        status = 500
        response_started = False
        head = scope["method"] == "HEAD"
        if head:
            # Every GET route answers HEAD too (uptime checkers use it): served as the GET, the
            # headers kept and the body dropped, as RFC 9110 section 9.3.2 asks.
            scope = {**scope, "method": "GET"}

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                # Every response carries the pages' security headers unless it set its own
                # (the API's JSON, /openapi.json, static files, redirects, error documents).
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in DEFAULT_SECURITY_HEADERS if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        declared = _content_length(scope)
        escaped = False
        try:
            await self.app(scope, self._limited(receive, scope, declared), send_wrapper)
        except _TooLarge:
            if not response_started:
                await self._send_413(send_wrapper, request_id, scope)
        except BaseException:
            escaped = True
            raise
        finally:
            elapsed = time.perf_counter() - started
            template = _route_template(scope)
            method = "HEAD" if head else scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": method,
                    "path": scope["path"],
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            # An unhandled error is answered (and logged) next, outside this middleware: leave
            # the id set so that the 500 and its log line name this request too.
            if not escaped:
                set_request_id(None)

    def _limited(self, receive: Receive, scope: Scope, declared: int | None) -> Receive:
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            # Read when the body is: a route may have raised its own request's limit by then
            # (BODY_LIMIT_KEY); a declared length over it is refused before a byte is read.
            limit = int(scope.get(BODY_LIMIT_KEY, self.max_body_bytes))
            if declared is not None and declared > limit:
                raise _TooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        return limited_receive

    async def _send_413(self, send: Send, request_id: str, scope: Scope) -> None:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + "core.payload_too_large",
            "title": "Payload too large",
            "status": 413,
            "detail": f"the request body is larger than {self.max_body_bytes} bytes",
            "code": "core.payload_too_large",
            "request_id": request_id,
            "instance": scope["path"],
        }
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _route_template(scope: Scope) -> str:
    """The matched route's full path template (``/api/v1/tenants/{tenant_id}``), or ``unmatched``.

    FastAPI hands over a route of an included router as that router declared it, without the
    prefix it was included under (``/tenants/{tenant_id}``, not ``/api/v1/...``): the prefix is
    whatever the request path holds before the route's own segments.
    """
    route = scope.get("route")
    relative: str | None = getattr(route, "path", None)
    if route is None or relative is None:
        return "unmatched"
    if isinstance(route, Mount):
        return f"{relative}/{{path}}"
    path: str = scope["path"]
    segments = path.split("/")
    prefix = "/".join(segments[: max(len(segments) - relative.count("/"), 0)])
    return prefix + relative


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _REQUEST_ID.match(text) else None
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
