"""Traffic's context: its settings and where the counts are kept, built once per process from
the core's services (``Module.context`` of Traffic's declaration)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from civicloud.core.services import Services
from civicloud.traffic.settings import TrafficSettings


@dataclass(frozen=True)
class TrafficContext:
    settings: TrafficSettings
    #: The root of the counts' Parquet files (``tenant=…/day=…/<batch>.parquet``).
    counts_dir: Path
    #: The installation's zone: a count's day and time of day are local.
    zone: ZoneInfo


def build(services: Services, section: BaseModel | None) -> TrafficContext:
    settings = section if isinstance(section, TrafficSettings) else TrafficSettings()
    return TrafficContext(
        settings=settings,
        counts_dir=services.settings.data_dir / "traffic" / "counts",
        zone=ZoneInfo(services.settings.web.time_zone),
    )
