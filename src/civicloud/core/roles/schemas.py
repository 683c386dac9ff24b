"""Pydantic shapes of roles and bindings."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from civicloud.core.text import DisplayText


class RoleRead(BaseModel):
    """A role and the permission patterns it grants."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    name_zh: str
    name_en: str
    permissions: list[str]
    builtin: bool


class RoleCreate(BaseModel):
    """A custom role."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    name_zh: DisplayText = Field(min_length=1, max_length=100)
    name_en: DisplayText = Field(min_length=1, max_length=100)
    permissions: list[str] = Field(min_length=1, max_length=200)


class RoleBindingCreate(BaseModel):
    """Grant ``role_name`` to ``user_id`` at ``tenant_id`` (``None``: platform-wide)."""

    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID
    role_name: str = Field(min_length=1, max_length=64)
    tenant_id: uuid.UUID | None = None


class RoleBindingRead(BaseModel):
    """A role held by a user at a tenant."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID
    role_name: str
    tenant_id: uuid.UUID | None
    granted_by: str
    created_at: datetime
