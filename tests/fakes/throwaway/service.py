"""The throwaway module's rules: its context, its items, its job and its demo seeding."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.fakes.throwaway.models import ThrowawayItem

from civicloud.core import tenants
from civicloud.core.actor import Actor, authorize
from civicloud.core.jobs.service import JobEnv, Work
from civicloud.core.services import Services


@dataclass(frozen=True)
class ThrowawayContext:
    """The module's context: what its settings say."""

    greeting: str


def build_context(services: Services, section: BaseModel | None) -> ThrowawayContext:
    """Built once per process by the core (``Module.context``)."""
    return ThrowawayContext(greeting=str(getattr(section, "greeting", "hello")))


def list_items(*, session: Session, actor: Actor, tenant_id: uuid.UUID) -> list[ThrowawayItem]:
    """A tenant's items (404 for a tenant the actor cannot see)."""
    tenant = tenants.get_tenant_or_raise(session=session, actor=actor, tenant_id=tenant_id)
    authorize(actor, "throwaway.item.read", path=tenant.path, what="tenant")
    return list(session.scalars(select(ThrowawayItem).where(ThrowawayItem.tenant_id == tenant_id)))


def add_item(*, session: Session, tenant_id: uuid.UUID, note: str) -> ThrowawayItem:
    """Add an item (the test's and the demo's)."""
    item = ThrowawayItem(tenant_id=tenant_id, note=note, done=False)
    session.add(item)
    return item


def _due(session: Session, env: JobEnv) -> Sequence[uuid.UUID]:
    return list(session.scalars(select(ThrowawayItem.id).where(ThrowawayItem.done.is_(False))))


def _finish(session: Session, env: JobEnv, item_id: uuid.UUID) -> str:
    item = session.get(ThrowawayItem, item_id)
    if item is None:
        return "gone"
    item.done = True
    return "finished"


#: The module's job: finish every unfinished item, one unit of work each.
finish_items = Work(_due, _finish)


def seed(*, session: Session, services: Services, context: object) -> list[str]:
    """The module's part of the demo world."""
    root = tenants.get_tenant_by_slug(session=session, slug="china")
    if root is not None:
        add_item(session=session, tenant_id=root.id, note="demo")
    return [f"Throwaway: {getattr(context, 'greeting', '?')}"]
