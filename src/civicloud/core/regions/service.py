"""Region registry: the places tenants' data may live."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloud.core import audit
from civicloud.core.actor import Actor
from civicloud.core.errors import Conflict, NotFound
from civicloud.core.regions.models import Region
from civicloud.core.regions.schemas import RegionCreate

#: The regions a fresh installation knows; operators add more with ``civicloud admin region add``.
BUILTIN_REGIONS: tuple[RegionCreate, ...] = (
    RegionCreate(code="cn-beijing", name_zh="北京", name_en="Beijing", country_code="CN"),
    RegionCreate(code="cn-dalian", name_zh="大连", name_en="Dalian", country_code="CN"),
    RegionCreate(code="cn-guiyang", name_zh="贵阳", name_en="Guiyang", country_code="CN"),
    RegionCreate(code="cn-shanghai", name_zh="上海", name_en="Shanghai", country_code="CN"),
    RegionCreate(code="ap-singapore", name_zh="新加坡", name_en="Singapore", country_code="SG"),
)


def list_regions(*, session: Session) -> Sequence[Region]:
    """Every region, by code."""
    return session.scalars(select(Region).order_by(Region.code)).all()


def get_region(*, session: Session, code: str) -> Region | None:
    """The region ``code``, or ``None``."""
    return session.get(Region, code)


def get_region_or_raise(*, session: Session, code: str) -> Region:
    """The region ``code``; raises ``NotFound``."""
    region = get_region(session=session, code=code)
    if region is None:
        raise NotFound("no region %(code)s", params={"code": code}, resource="region", id=code)
    return region


def create_region(*, session: Session, actor: Actor, data: RegionCreate) -> Region:
    """Register a region; only platform-wide administrators may."""
    actor.require_platform("core.region.admin")
    if get_region(session=session, code=data.code) is not None:
        raise Conflict("region %(code)s exists already", params={"code": data.code})
    region = Region(**data.model_dump())
    session.add(region)
    audit.record(session=session, actor=actor, action="core.region.create", target=data.code)
    return region


def ensure_builtin_regions(*, session: Session) -> None:
    """Add any built-in region that is missing (idempotent)."""
    for data in BUILTIN_REGIONS:
        if get_region(session=session, code=data.code) is None:
            session.add(Region(**data.model_dump()))
