"""The errors every civicloud service raises, translated once at the edge.

::

    CivicloudError                 code "core.error"          HTTP 500 / exit 1
    ├── InvalidInput               code "core.invalid_input"  HTTP 422 / exit 2
    ├── NotAuthenticated           code "core.not_authenticated" HTTP 401 / exit 3
    ├── PermissionDenied           code "core.permission_denied" HTTP 403 / exit 3
    ├── NotFound                   code "core.not_found"      HTTP 404 / exit 4
    ├── Conflict                   code "core.conflict"       HTTP 409 / exit 5
    ├── PayloadTooLarge            code "core.payload_too_large" HTTP 413 / exit 2
    ├── Throttled                  code "core.throttled"      HTTP 429 / exit 5
    ├── ServiceBusy                code "core.service_busy"   HTTP 503 / exit 1
    └── Misconfigured              code "core.misconfigured"  HTTP 500 / exit 1

Modules subclass these (``pay.errors.BillAlreadyPaid(Conflict)``) and give each subclass its own
stable ``code``. Services raise them; HTTP handlers turn them into RFC 9457 problem documents
and the CLI into one line on stderr and an exit code. Services never raise HTTP exceptions.

An error's message is an English template, which is also its msgid in the translation catalogs,
and its parameters travel beside it rather than inside the text::

    raise RefundExceedsPayment(
        "%(asked)s is more than the %(refundable)s that can still be refunded",
        params={"asked_fen": 100_000, "refundable_fen": 48_599},
    )

A parameter named ``*_label`` holds a word that is itself a msgid (``"biller"``), translated
with the template. Amounts are parameters named ``*_fen``, integer fen; the template names them without the
suffix and they are written as yuan (``CNY 485.99``, ``¥485.99``). ``detail`` is the English
text, the fallback wherever no translation is asked for; the edges (``web.messages``, the CLI)
render the template translated, with the parameters, in the reader's language.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar


def message_values(
    params: Mapping[str, Any], money: Callable[[int], str] | None = None
) -> dict[str, Any]:
    """A message's parameters ready for ``%``: each ``<name>_fen`` also as ``<name>``, in yuan."""
    if money is None:
        # Imported here: core.money's own errors subclass this module's.
        from civicloud.core.money import format_yuan

        money = format_yuan
    values = dict(params)
    for key, value in params.items():
        if key.endswith("_fen") and isinstance(value, int) and not isinstance(value, bool):
            values[key.removesuffix("_fen")] = money(value)
    return values


def format_message(
    template: str, params: Mapping[str, Any], money: Callable[[int], str] | None = None
) -> str:
    """``template`` filled in with ``params`` (see :func:`message_values`); as it is without any."""
    if not params:
        return template
    try:
        return template % message_values(params, money)
    except (KeyError, TypeError, ValueError):  # a translation that lost a placeholder
        return template


class CivicloudError(Exception):
    """Base of every error a civicloud service raises on purpose."""

    code: ClassVar[str] = "core.error"
    title: ClassVar[str] = "Internal error"
    status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(
        self, message: str, /, *, params: Mapping[str, Any] | None = None, **extra: Any
    ) -> None:
        self.message = message
        self.params: dict[str, Any] = dict(params or {})
        self.detail = format_message(message, self.params)
        super().__init__(self.detail)
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


class ServiceBusy(CivicloudError):
    """The installation is too busy to serve this request in time: try again after
    ``retry_after`` seconds (HTTP 503 with ``Retry-After``). Nothing was changed."""

    code = "core.service_busy"
    title = "Service busy"
    status = 503
    exit_code = 1
