"""Regions: the registry of data-residency places (``cn-dalian``, ``ap-singapore``…)."""

from civicloud.core.regions.models import Region
from civicloud.core.regions.schemas import RegionCreate, RegionRead
from civicloud.core.regions.service import (
    BUILTIN_REGIONS,
    create_region,
    ensure_builtin_regions,
    get_region,
    get_region_or_raise,
    list_regions,
)

__all__ = [
    "BUILTIN_REGIONS",
    "Region",
    "RegionCreate",
    "RegionRead",
    "create_region",
    "ensure_builtin_regions",
    "get_region",
    "get_region_or_raise",
    "list_regions",
]
