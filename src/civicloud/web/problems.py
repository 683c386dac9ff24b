"""RFC 9457 problem documents: every error leaves the API as ``application/problem+json``.

Service errors are translated here, once: ``detail`` is in the language the caller's
``Accept-Language`` asks for (English when it asks for none we have), and an error's parameters
(amounts as integer fen) travel as the ``params`` member for programs. Failed state-changing
calls are also audited here, in a transaction of their own, because the request's own
transaction has been rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from civicloud.core import audit
from civicloud.core.context import current_request_id, last_target
from civicloud.core.errors import CivicloudError, ServiceBusy
from civicloud.core.roles import Actor
from civicloud.web import i18n
from civicloud.web.deps import SAFE_METHODS, admission_of, services_of
from civicloud.web.messages import error_text, translate, validation_text

log = logging.getLogger("civicloud.web")

PROBLEM_TYPE_BASE = "https://civicloud.dev/problems/"
_STATUS_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Permission denied",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    503: "Not ready",
    500: "Internal error",
}

#: Starlette's own details, which ``web.pages.labels`` holds translations of.
_HTTP_DETAILS = frozenset({"Not Found", "Method Not Allowed", "Request Entity Too Large"})
_UNEXPECTED = "an unexpected error occurred; it was logged"


def problem(
    status: int,
    *,
    code: str,
    detail: str,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """An ``application/problem+json`` response."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title or _STATUS_TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": current_request_id(),
    }
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


def wants_html(request: Request) -> bool:
    """Whether the request is a browser's page request rather than an API call."""
    if request.url.path.startswith("/api/"):
        return False
    return "text/html" in request.headers.get("accept", "")


def api_language(request: Request) -> str | None:
    """The language an API caller's ``Accept-Language`` asks for, if it asks for one we have."""
    header = request.headers.get("accept-language")
    if not header:
        return None
    chosen = i18n.choose_language(requested=None, cookie=None, accept_language=header, default="")
    return chosen if chosen in i18n.LANGUAGES and header.strip() != "*" else None


#: The text of an error in a language (``zh``/``en``).
Translated = Callable[[str], str]


def _may_audit(request: Request) -> bool:
    """Whether a failure of this request is audited: a signed-in caller's change, by route."""
    return (
        request.method not in SAFE_METHODS
        and getattr(request.scope.get("route"), "name", None) is not None
        and getattr(request.state, "actor", None) is not None
    )


async def audit_failure(request: Request, status: int, code: str) -> None:
    """:func:`audit_failed_change`, as the error handlers call it: a write unit of work (and on
    SQLite an fsync), so off the event loop and in a writer's slot like any other write
    (``web.admission``); a server too busy for one records no refusal."""
    if not _may_audit(request):
        return
    try:
        async with admission_of(request).slot(write=True):
            await run_in_threadpool(audit_failed_change, request, status, code)
    except ServiceBusy:
        log.warning("too busy to audit a failed request", extra={"code": code})


def audit_failed_change(request: Request, status: int, code: str) -> None:
    """Audit a state-changing request (API call or form post) that failed, in its own transaction.

    The request's own transaction was rolled back, so the record is written in a new one.
    """
    route = request.scope.get("route")
    action = getattr(route, "name", None)
    actor: Actor | None = getattr(request.state, "actor", None)
    # Anonymous failures are not recorded: anyone could grow the log at will, and nobody acted.
    if request.method in SAFE_METHODS or not action or actor is None:
        return
    outcome: audit.Outcome = "denied" if status in (401, 403, 404) else "failed"
    try:
        with services_of(request).db.unit_of_work() as session:
            audit.record(
                session=session,
                actor=actor,
                action=action,
                target=request.url.path,
                # Under the tenant the call was aimed at, where it is known, so that tenant's
                # own administrators and auditors see what was tried against it.
                tenant_id=audit.tenant_of_target(
                    session=session,
                    path=last_target(),
                    tenant_id=request.path_params.get("tenant_id"),
                ),
                outcome=outcome,
                detail={"status": status, "code": code},
            )
    except Exception:  # an audit failure must not hide the caller's own error
        log.exception("could not audit a failed request")


def install_problem_handlers(app: FastAPI, html_renderer: Any = None) -> None:
    """Translate every error into a problem document (or an HTML page for browsers)."""

    async def respond(
        request: Request,
        status: int,
        code: str,
        detail: str,
        *,
        translated: Translated | None = None,
        **extra: Any,
    ) -> Response:
        if status != 503:
            await audit_failure(request, status, code)
        if html_renderer is not None and wants_html(request):
            response: Response = html_renderer(request, status, detail, translated=translated)
            if status in (429, 503) and "retry_after" in extra:
                response.headers["Retry-After"] = str(extra["retry_after"])
            return response
        language = api_language(request)
        if translated is not None and language is not None:
            detail = translated(language)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if status in (429, 503) and "retry_after" in extra:
            headers = {"Retry-After": str(extra["retry_after"])}
        return problem(
            status, code=code, detail=detail, instance=request.url.path, headers=headers, **extra
        )

    @app.exception_handler(CivicloudError)
    async def _civicloud_error(request: Request, exc: CivicloudError) -> Response:
        # An error's extra fields (a bad import's row errors, a retry delay) join the document;
        # reserved problem members are never overwritten.
        extra = {
            k: v
            for k, v in jsonable_encoder(exc.extra).items()
            if k not in ("type", "title", "status", "detail", "code", "request_id", "instance")
        }
        if exc.params:
            extra.setdefault("params", jsonable_encoder(exc.params))
        return await respond(
            request,
            exc.status,
            exc.code,
            exc.detail,
            translated=lambda language: error_text(exc, language),
            title=exc.title,
            **extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
            for err in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"])
        detail = f"{where}: {first['msg']}" if where else str(first["msg"])
        return await respond(
            request,
            422,
            "core.invalid_input",
            detail,
            translated=lambda language: validation_text(exc.errors(), language),
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {
            404: "core.not_found",
            405: "core.method_not_allowed",
            413: "core.payload_too_large",
        }.get(exc.status_code, f"core.http_{exc.status_code}")
        detail = (
            exc.detail if isinstance(exc.detail, str) else _STATUS_TITLES.get(exc.status_code, "")
        )
        known = isinstance(exc.detail, str) and exc.detail in _HTTP_DETAILS
        response = await respond(
            request,
            exc.status_code,
            code,
            detail,
            translated=(lambda language: translate(language, detail)) if known else None,
        )
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.url.path})
        response = await respond(
            request,
            500,
            "core.internal",
            _UNEXPECTED,
            translated=lambda language: translate(language, _UNEXPECTED),
        )
        # Answered outside the request-id middleware, which would otherwise add the header.
        response.headers["x-request-id"] = current_request_id()
        return response
