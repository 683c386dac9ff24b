"""The throwaway module's one table.

Its metadata is its own, not civicloud's: the test process shares ``civicloud.core.db.Base``
with every other test, whose models-against-migrations checks must not see this table.
"""

from __future__ import annotations

import uuid

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class ThrowawayBase(DeclarativeBase):
    """The throwaway module's own declarative base."""

    metadata = MetaData()


class ThrowawayItem(ThrowawayBase):
    """An item of a tenant's, finished by the module's job."""

    __tablename__ = "throwaway_item"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID]
    note: Mapped[str]
    done: Mapped[bool] = mapped_column(default=False)
