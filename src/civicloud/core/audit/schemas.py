"""Pydantic shapes of audit records."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditRecordRead(BaseModel):
    """An audit record as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    actor: str
    tenant_id: uuid.UUID | None
    action: str
    target: str
    request_id: str
    outcome: str
    detail: dict[str, Any]
    #: Its place: the chain it belongs to (``platform``, or a root tenant's id and lane), and
    #: its number there.
    chain: str
    chain_seq: int
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    """A page of audit records, newest first; pass ``next_before`` as ``before`` for the next page."""

    items: list[AuditRecordRead]
    next_before: int | None
