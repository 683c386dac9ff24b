"""The tenant tree: create, list a subtree, rename, move and delete tenants."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, false, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from civicloud.core import audit
from civicloud.core.actor import Actor, authorize
from civicloud.core.caches import caches_of, invalidate_on_commit
from civicloud.core.errors import Conflict, InvalidInput, NotFound
from civicloud.core.principals import invalidate_principals
from civicloud.core.regions.service import get_region_or_raise
from civicloud.core.tenants.models import CHILD_KINDS, Tenant, TenantKind
from civicloud.core.tenants.schemas import TenantCreate, TenantMove, TenantRead, TenantRename

READ = "core.tenant.read"
#: The per-database cache of ``TenantRef`` by id (see ``core.caches``).
CACHE = "tenants"
ADMIN = "core.tenant.admin"
#: The deepest a tenant may sit: a path adds 33 characters (32 hex and a slash) per level, and
#: the column holds 1024 (PostgreSQL refuses longer ones, SQLite would not notice).
MAX_DEPTH = (1024 - 1) // 33 - 1


def subtree_bounds(path: str) -> tuple[str, str]:
    """``(lo, hi)`` such that a tenant is at or below ``path`` exactly when ``lo <= its path < hi``.

    Paths hold only ``[0-9a-f/]`` and end in ``/``; ``'0'`` is the character after ``'/'``.
    """
    return path, path[:-1] + "0"


def in_subtrees(column: InstrumentedAttribute[str], roots: list[str] | None) -> ColumnElement[bool]:
    """SQL condition: ``column`` (a tenant path) lies under one of ``roots`` (``None``: anywhere)."""
    if roots is None:
        return literal(True)
    if not roots:
        return false()
    clauses = []
    for root in roots:
        lo, hi = subtree_bounds(root)
        clauses.append(and_(column >= lo, column < hi))
    return or_(*clauses)


def get_tenant(*, session: Session, tenant_id: uuid.UUID) -> Tenant | None:
    """The tenant ``tenant_id`` with no access check, or ``None`` (for other core services)."""
    return session.get(Tenant, tenant_id)


def get_tenant_by_slug(*, session: Session, slug: str) -> Tenant | None:
    """The tenant with ``slug`` with no access check, or ``None``."""
    return session.scalars(select(Tenant).where(Tenant.slug == slug)).one_or_none()


def get_tenant_or_raise(
    *,
    session: Session,
    actor: Actor,
    tenant_id: uuid.UUID,
    permission: str = READ,
    lock: bool = False,
) -> Tenant:
    """The tenant ``tenant_id`` if ``actor`` holds ``permission`` there; 404 if it cannot see it.

    With ``lock``, the row is locked for the rest of the transaction and read afresh, so that its
    path cannot change under a caller that builds on it (PostgreSQL; SQLite writers are serial).
    """
    if lock:
        tenant = session.get(Tenant, tenant_id, with_for_update=True, populate_existing=True)
    else:
        tenant = get_tenant(session=session, tenant_id=tenant_id)
    if tenant is None:
        raise NotFound("no such tenant", resource="tenant")
    authorize(actor, permission, path=tenant.path, what="tenant")
    return tenant


@dataclass(frozen=True)
class TenantRef:
    """What other code needs of a tenant to place and authorise a resource: a cacheable copy."""

    id: uuid.UUID
    path: str
    region_code: str
    kind: str
    read: TenantRead


def resolve_tenant(*, session: Session, tenant_id: uuid.UUID) -> TenantRef | None:
    """The tenant ``tenant_id`` as a ``TenantRef`` with no access check, from the cache if fresh.

    Every request of every module places its resource in a tenant; this is the read it makes.
    """
    caches = caches_of(session)
    cache = caches.get(CACHE) if caches is not None else None
    ref: TenantRef | None = cache.get(tenant_id) if cache is not None else None
    if ref is None:
        tenant = get_tenant(session=session, tenant_id=tenant_id)
        if tenant is None:
            return None
        ref = TenantRef(
            id=tenant.id,
            path=tenant.path,
            region_code=tenant.region_code,
            kind=tenant.kind,
            read=TenantRead.model_validate(tenant),
        )
        if cache is not None:
            cache.put(tenant_id, ref)
    return ref


def read_tenant(
    *, session: Session, actor: Actor, tenant_id: uuid.UUID, permission: str = READ
) -> TenantRead:
    """The tenant ``tenant_id`` for display if ``actor`` holds ``permission`` there (404 if unseen)."""
    ref = resolve_tenant(session=session, tenant_id=tenant_id)
    if ref is None:
        raise NotFound("no such tenant", resource="tenant")
    authorize(actor, permission, path=ref.path, what="tenant")
    return ref.read


def _tenants_changed(session: Session) -> None:
    invalidate_on_commit(session, CACHE)


def list_tenants(
    *,
    session: Session,
    actor: Actor,
    root_id: uuid.UUID | None = None,
    kind: TenantKind | None = None,
    limit: int = 500,
    offset: int = 0,
) -> Sequence[Tenant]:
    """Tenants the actor may read, in tree order; with ``root_id``, only that tenant's subtree."""
    query = select(Tenant).where(in_subtrees(Tenant.path, actor.roots(READ)))
    if root_id is not None:
        root = get_tenant_or_raise(session=session, actor=actor, tenant_id=root_id)
        query = query.where(in_subtrees(Tenant.path, [root.path]))
    if kind is not None:
        query = query.where(Tenant.kind == kind.value)
    return session.scalars(query.order_by(Tenant.path).limit(limit).offset(offset)).all()


def ancestors(*, session: Session, tenant: Tenant) -> list[Tenant]:
    """The tenant's ancestors, root first (no access check)."""
    ids = [uuid.UUID(part) for part in tenant.path.strip("/").split("/")[:-1]]
    if not ids:
        return []
    found = {t.id: t for t in session.scalars(select(Tenant).where(Tenant.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def create_tenant(*, session: Session, actor: Actor, data: TenantCreate) -> Tenant:
    """Create a tenant under ``data.parent_id`` (or a root, for platform administrators)."""
    kind = TenantKind(data.kind)
    parent: Tenant | None = None
    if data.parent_id is None:
        actor.require_platform(ADMIN)
        if kind is TenantKind.FACILITY:
            raise InvalidInput("a facility needs a parent")
    else:
        # Locked: a move of the parent waits for this child, or this child sees the move.
        parent = get_tenant_or_raise(
            session=session, actor=actor, tenant_id=data.parent_id, permission=ADMIN, lock=True
        )
        _check_kind(parent, kind)
        _check_depth(parent.depth + 1)
    region_code = data.region_code or (parent.region_code if parent else None)
    if region_code is None:
        raise InvalidInput("a root tenant needs a region_code")
    get_region_or_raise(session=session, code=region_code)
    if get_tenant_by_slug(session=session, slug=data.slug) is not None:
        raise Conflict("slug %(slug)s is taken", params={"slug": data.slug})
    tenant_id = uuid.uuid4()
    tenant = Tenant(
        id=tenant_id,
        slug=data.slug,
        name_zh=data.name_zh,
        name_en=data.name_en,
        kind=kind.value,
        parent_id=parent.id if parent else None,
        region_code=region_code,
        path=(parent.path if parent else "/") + tenant_id.hex + "/",
        depth=parent.depth + 1 if parent else 0,
    )
    session.add(tenant)
    audit.record(
        session=session,
        actor=actor,
        action="core.tenant.create",
        tenant_id=tenant_id,
        target=f"tenant:{data.slug}",
        detail={"kind": kind.value, "region": region_code},
    )
    return tenant


def rename_tenant(
    *, session: Session, actor: Actor, tenant_id: uuid.UUID, data: TenantRename
) -> Tenant:
    """Change a tenant's display names."""
    tenant = get_tenant_or_raise(
        session=session, actor=actor, tenant_id=tenant_id, permission=ADMIN
    )
    _check_version(tenant, data.version)
    before = {"name_zh": tenant.name_zh, "name_en": tenant.name_en}
    _tenants_changed(session)
    if data.name_zh is not None:
        tenant.name_zh = data.name_zh
    if data.name_en is not None:
        tenant.name_en = data.name_en
    audit.record(
        session=session,
        actor=actor,
        action="core.tenant.rename",
        tenant_id=tenant.id,
        target=f"tenant:{tenant.slug}",
        detail={"before": before, "after": {"name_zh": tenant.name_zh, "name_en": tenant.name_en}},
    )
    return tenant


def move_tenant(
    *, session: Session, actor: Actor, tenant_id: uuid.UUID, data: TenantMove
) -> Tenant:
    """Move a tenant, with everything below it, under a new parent."""
    tenant = get_tenant_or_raise(
        session=session, actor=actor, tenant_id=tenant_id, permission=ADMIN, lock=True
    )
    _check_version(tenant, data.version)
    parent = get_tenant_or_raise(
        session=session, actor=actor, tenant_id=data.parent_id, permission=ADMIN, lock=True
    )
    # Lock the whole subtree before rewriting its paths: a child being created below it holds
    # its parent's lock, so this waits for it, and the UPDATE below (a new statement) sees it.
    lo_lock, hi_lock = subtree_bounds(tenant.path)
    session.execute(
        select(Tenant.id)
        .where(Tenant.path >= lo_lock, Tenant.path < hi_lock)
        .order_by(Tenant.path)
        .with_for_update()
    )
    if parent.path.startswith(tenant.path):
        raise InvalidInput("a tenant cannot move below itself")
    _check_kind(parent, TenantKind(tenant.kind))
    old_path, old_parent = tenant.path, tenant.parent_id
    new_path = parent.path + tenant.id.hex + "/"
    delta = parent.depth + 1 - tenant.depth
    lo, hi = subtree_bounds(old_path)
    deepest = session.scalar(
        select(func.max(Tenant.depth)).where(Tenant.path >= lo, Tenant.path < hi)
    )
    _check_depth((deepest or tenant.depth) + delta)
    session.execute(
        update(Tenant)
        .where(Tenant.path >= lo, Tenant.path < hi)
        .values(
            path=literal(new_path) + func.substr(Tenant.path, len(old_path) + 1),
            depth=Tenant.depth + delta,
        )
        .execution_options(synchronize_session="fetch")
    )
    tenant.parent_id = parent.id
    # Grants hold tenant paths, and this subtree's paths just changed.
    invalidate_principals(session)
    _tenants_changed(session)
    audit.record(
        session=session,
        actor=actor,
        action="core.tenant.move",
        tenant_id=tenant.id,
        target=f"tenant:{tenant.slug}",
        detail={"from": str(old_parent), "to": str(parent.id)},
    )
    return tenant


def delete_tenant(*, session: Session, actor: Actor, tenant_id: uuid.UUID) -> None:
    """Delete a tenant that has no children and owns nothing."""
    tenant = get_tenant_or_raise(
        session=session, actor=actor, tenant_id=tenant_id, permission=ADMIN
    )
    if session.scalar(select(func.count()).where(Tenant.parent_id == tenant.id)):
        raise Conflict("the tenant has child tenants; move or delete them first")
    slug = tenant.slug
    session.delete(tenant)
    # Role bindings at the tenant go with it (ON DELETE CASCADE).
    invalidate_principals(session)
    _tenants_changed(session)
    try:
        # Flushed here so that rows of any module still pointing at the tenant (foreign keys with
        # ON DELETE RESTRICT) surface as a clear conflict rather than at commit.
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise Conflict("the tenant still owns users or resources; remove them first") from exc
    audit.record(
        session=session,
        actor=actor,
        action="core.tenant.delete",
        tenant_id=tenant_id,
        target=f"tenant:{slug}",
    )


def _check_kind(parent: Tenant, kind: TenantKind) -> None:
    allowed = CHILD_KINDS[TenantKind(parent.kind)]
    if kind not in allowed:
        names = ", ".join(sorted(k.value for k in allowed)) or "nothing"
        raise InvalidInput(
            "a %(kind_label)s cannot sit below a %(parent_label)s (allowed: %(allowed)s)",
            params={"kind_label": kind.value, "parent_label": parent.kind, "allowed": names},
        )


def _check_depth(depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(
            "the tenant tree may be at most %(count)s levels deep",
            params={"count": MAX_DEPTH + 1},
        )


def _check_version(tenant: Tenant, version: int | None) -> None:
    if version is not None and version != tenant.version:
        raise Conflict(
            "the tenant changed meanwhile (version %(current)s, not %(given)s); reload it",
            params={"current": tenant.version, "given": version},
        )
