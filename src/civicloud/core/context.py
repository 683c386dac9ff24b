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


def set_request_id(value: str | None) -> None:
    """Set the id of the request, command or job being handled (``None`` clears it)."""
    _request_id.set(value)
