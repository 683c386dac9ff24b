"""Pydantic shapes of users, API keys and sessions."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from civicloud.core.text import DisplayText

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{2,63}$"


class UserCreate(BaseModel):
    """A new user, homed in ``tenant_id``."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN, examples=["li.wei"])
    display_name: DisplayText = Field(min_length=1, max_length=200, examples=["李伟"])
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    tenant_id: uuid.UUID


class UserUpdate(BaseModel):
    """Changes to a user."""

    model_config = ConfigDict(extra="forbid")

    display_name: DisplayText | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    is_active: bool | None = None
    password: str | None = Field(default=None, min_length=1, max_length=1024)


class UserRead(BaseModel):
    """A user as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    display_name: str
    email: str | None
    tenant_id: uuid.UUID
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class ApiKeyCreate(BaseModel):
    """A new API key for the caller."""

    model_config = ConfigDict(extra="forbid")

    name: DisplayText = Field(min_length=1, max_length=100, examples=["billing import job"])
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiKeyRead(BaseModel):
    """An API key as listed: its prefix, never its secret."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyIssued(ApiKeyRead):
    """A freshly created API key: ``token`` is shown this once and never again."""

    token: str


class WebSessionRead(BaseModel):
    """A live browser sign-in: when it began and ends, and where it came from (never its token)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime
    expires_at: datetime
    client_address: str | None
    user_agent: str | None


class SessionsEnded(BaseModel):
    """How many sign-ins were ended."""

    ended: int
