"""Role and role-binding tables."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from civicloud.core.db import Base, new_id, utcnow


class Role(Base):
    """A named set of permission patterns."""

    __tablename__ = "role"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    permissions: Mapped[list[str]] = mapped_column(JSON)
    builtin: Mapped[bool] = mapped_column(default=False)


class RoleBinding(Base):
    """A user holds a role at a tenant (and so below it), or platform-wide when ``tenant_id`` is null."""

    __tablename__ = "role_binding"
    __table_args__ = (
        UniqueConstraint("user_id", "role_name", "tenant_id"),
        # NULLs are distinct in a unique constraint, so platform-wide bindings need their own.
        Index(
            "uq_role_binding_platform",
            "user_id",
            "role_name",
            unique=True,
            sqlite_where=text("tenant_id IS NULL"),
            postgresql_where=text("tenant_id IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    role_name: Mapped[str] = mapped_column(ForeignKey("role.name", ondelete="RESTRICT"))
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), index=True
    )
    granted_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
