"""Pydantic shapes of tenants."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from civicloud.core.tenants.models import TenantKind
from civicloud.core.text import DisplayText

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"


class TenantCreate(BaseModel):
    """A new tenant. Without ``parent_id`` it is a root (platform administrators only)."""

    model_config = ConfigDict(extra="forbid")

    slug: str = Field(pattern=SLUG_PATTERN, examples=["dalian-water"])
    name_zh: DisplayText = Field(min_length=1, max_length=200, examples=["大连市供水有限公司"])
    name_en: DisplayText = Field(min_length=1, max_length=200, examples=["Dalian Water Supply"])
    kind: TenantKind
    parent_id: uuid.UUID | None = None
    #: The home region; defaults to the parent's.
    region_code: str | None = Field(default=None, max_length=32)


class TenantRename(BaseModel):
    """New display names; ``version`` guards against overwriting someone else's change."""

    model_config = ConfigDict(extra="forbid")

    name_zh: DisplayText | None = Field(default=None, min_length=1, max_length=200)
    name_en: DisplayText | None = Field(default=None, min_length=1, max_length=200)
    version: int | None = Field(default=None, ge=1)


class TenantMove(BaseModel):
    """A new parent for a tenant (its whole subtree moves with it)."""

    model_config = ConfigDict(extra="forbid")

    parent_id: uuid.UUID
    version: int | None = Field(default=None, ge=1)


class TenantRead(BaseModel):
    """A tenant as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    slug: str
    name_zh: str
    name_en: str
    kind: TenantKind
    parent_id: uuid.UUID | None
    region_code: str
    depth: int
    created_at: datetime
    updated_at: datetime
    version: int
