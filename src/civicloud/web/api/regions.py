"""``/api/v1/regions``: the data-residency regions."""

from __future__ import annotations

from fastapi import APIRouter, status

from civicloud.core import regions
from civicloud.core.regions import RegionCreate, RegionRead
from civicloud.web.deps import ActorDep, SessionDep

router = APIRouter(prefix="/regions", tags=["regions"])


@router.get("", name="core.region.list")
def list_regions(session: SessionDep, actor: ActorDep) -> list[RegionRead]:
    """List every region."""
    return [RegionRead.model_validate(r) for r in regions.list_regions(session=session)]


@router.post("", status_code=status.HTTP_201_CREATED, name="core.region.create")
def create_region(session: SessionDep, actor: ActorDep, data: RegionCreate) -> RegionRead:
    """Register a region (platform administrators only)."""
    return RegionRead.model_validate(regions.create_region(session=session, actor=actor, data=data))
