"""Per-request context that services may read without depending on the web layer."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("civicloud_request_id", default=None)


def current_request_id() -> str:
    """The id of the request, command or job being handled; made up when there is none."""
    value = _request_id.get()
    if value is None:
        value = uuid.uuid4().hex
        _request_id.set(value)
    return value


def peek_request_id() -> str | None:
    """The id being handled, ``None`` when there is none (nothing is made up)."""
    return _request_id.get()


def set_request_id(value: str | None) -> None:
    """Set the id of the request, command or job being handled (``None`` clears it)."""
    _request_id.set(value)


#: The tenants (materialised paths) that ``authorize`` was asked about during this request,
#: newest last; ``None`` outside a request. A list shared by every copy of the context (a
#: request's worker thread, its error handler), so what the service noted is seen at the edge.
_targets: ContextVar[list[str] | None] = ContextVar("civicloud_targets", default=None)
_MAX_TARGETS = 32


def begin_targets() -> None:
    """Start noting the tenants this request is authorised against (the web layer, per request)."""
    _targets.set([])


def note_target(path: str) -> None:
    """Note that the call being served was authorised against the tenant at ``path``."""
    noted = _targets.get()
    if noted is not None and len(noted) < _MAX_TARGETS:
        noted.append(path)


def last_target() -> str | None:
    """The path of the tenant the request was last authorised against (``None``: none yet)."""
    noted = _targets.get()
    return noted[-1] if noted else None
