"""Traffic's tables: each tenant's road networks, as imported from SUMO network files.

The file itself is kept (gzip-compressed) beside the summary the importer read from it, so that
plans, evaluations and the console's map all read the same network a bureau loaded, and a later
importer can read it again.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from civicloud.core.db import Base, new_id, utcnow


class TrafficNetwork(Base):
    """A road network of a tenant's: a SUMO network file and what was read from it."""

    __tablename__ = "traffic_network"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_traffic_network_name"),
        CheckConstraint("signals > 0", name="has_signals"),
        CheckConstraint("edges >= 0", name="edges_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(120))
    source_name: Mapped[str] = mapped_column(String(255))
    signals: Mapped[int]
    edges: Mapped[int]
    #: The network file, gzip-compressed.
    content: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
