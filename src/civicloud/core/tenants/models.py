"""Tenant table: the tree every resource hangs from."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from civicloud.core.db import Base, new_id, utcnow

#: ``path`` compares byte by byte on PostgreSQL too, so that subtree range scans use the index.
PathString = String(1024).with_variant(String(1024, collation="C"), "postgresql")


class TenantKind(enum.StrEnum):
    """What a tenant is; it decides which kinds may sit below it."""

    COUNTRY = "country"
    PROVINCE = "province"
    CITY = "city"
    DISTRICT = "district"
    AGENCY = "agency"
    ENTERPRISE = "enterprise"
    FACILITY = "facility"
    PARTNER = "partner"


#: Kinds allowed directly below each kind.
CHILD_KINDS: dict[TenantKind, frozenset[TenantKind]] = {
    TenantKind.COUNTRY: frozenset(
        {
            TenantKind.PROVINCE,
            TenantKind.CITY,
            TenantKind.AGENCY,
            TenantKind.ENTERPRISE,
            TenantKind.PARTNER,
        }
    ),
    TenantKind.PROVINCE: frozenset({TenantKind.CITY, TenantKind.AGENCY, TenantKind.ENTERPRISE}),
    TenantKind.CITY: frozenset({TenantKind.DISTRICT, TenantKind.AGENCY, TenantKind.ENTERPRISE}),
    TenantKind.DISTRICT: frozenset({TenantKind.AGENCY, TenantKind.ENTERPRISE}),
    TenantKind.AGENCY: frozenset({TenantKind.AGENCY, TenantKind.FACILITY}),
    TenantKind.ENTERPRISE: frozenset({TenantKind.ENTERPRISE, TenantKind.FACILITY}),
    TenantKind.FACILITY: frozenset(),
    TenantKind.PARTNER: frozenset({TenantKind.AGENCY, TenantKind.ENTERPRISE, TenantKind.FACILITY}),
}

_KIND_SQL = ", ".join(f"'{kind.value}'" for kind in TenantKind)


class Tenant(Base):
    """A node of the tenant tree.

    ``path`` is the materialised path of ids from the root, ``/<hex>/<hex>/``: "this tenant and
    everything below it" is the index range ``path >= P AND path < P'``.
    """

    __tablename__ = "tenant"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_KIND_SQL})", name="kind"),
        CheckConstraint("depth >= 0", name="depth"),
        Index("ix_tenant_path", "path", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenant.id", ondelete="RESTRICT"), index=True
    )
    region_code: Mapped[str] = mapped_column(ForeignKey("region.code", ondelete="RESTRICT"))
    path: Mapped[str] = mapped_column(PathString)
    depth: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}

    def name(self, language: str) -> str:
        """The display name in ``language`` (``zh`` or ``en``)."""
        return self.name_zh if language.startswith("zh") else self.name_en
