"""The errors every civicloud service raises, translated once at the edge.

::

    CivicloudError                 code "core.error"          HTTP 500 / exit 1
    ├── InvalidInput               code "core.invalid_input"  HTTP 422 / exit 2
    ├── NotAuthenticated           code "core.not_authenticated" HTTP 401 / exit 3
    ├── PermissionDenied           code "core.permission_denied" HTTP 403 / exit 3
    ├── NotFound                   code "core.not_found"      HTTP 404 / exit 4
    ├── Conflict                   code "core.conflict"       HTTP 409 / exit 5
    └── PayloadTooLarge            code "core.payload_too_large" HTTP 413 / exit 2

Modules subclass these (``pay.errors.BillAlreadyPaid(Conflict)``) and give each subclass its own
stable ``code``. Services raise them; HTTP handlers turn them into RFC 9457 problem documents
and the CLI into one line on stderr and an exit code. Services never raise HTTP exceptions.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CivicloudError(Exception):
    """Base of every error a civicloud service raises on purpose."""

    code: ClassVar[str] = "core.error"
    title: ClassVar[str] = "Internal error"
    status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidInput(CivicloudError):
    """The request is well-formed but its values break a rule."""

    code = "core.invalid_input"
    title = "Invalid input"
    status = 422
    exit_code = 2


class NotAuthenticated(CivicloudError):
    """No valid credentials came with the request."""

    code = "core.not_authenticated"
    title = "Not authenticated"
    status = 401
    exit_code = 3


class PermissionDenied(CivicloudError):
    """The caller may see the resource but not do this to it."""

    code = "core.permission_denied"
    title = "Permission denied"
    status = 403
    exit_code = 3


class NotFound(CivicloudError):
    """No such resource, or one the caller may not see (existence is not leaked)."""

    code = "core.not_found"
    title = "Not found"
    status = 404
    exit_code = 4


class Conflict(CivicloudError):
    """The request clashes with the current state (a duplicate, a stale version, a non-empty tenant)."""

    code = "core.conflict"
    title = "Conflict"
    status = 409
    exit_code = 5


class PayloadTooLarge(CivicloudError):
    """The request body is larger than the configured limit."""

    code = "core.payload_too_large"
    title = "Payload too large"
    status = 413
    exit_code = 2


class Throttled(CivicloudError):
    """Too many requests of one kind from one client: slow down (HTTP 429, ``Retry-After``)."""

    code = "core.throttled"
    title = "Too many requests"
    status = 429
    exit_code = 5


class Misconfigured(CivicloudError):
    """A setting or a key file is missing or unusable: the installation must be fixed."""

    code = "core.misconfigured"
    title = "Misconfigured"
    status = 500
    exit_code = 1
