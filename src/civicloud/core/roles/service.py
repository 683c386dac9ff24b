"""Roles, role bindings, and building the ``Actor`` of a user."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from civicloud.core import audit
from civicloud.core.actor import Actor, Grant, authorize, grants_cover_all
from civicloud.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from civicloud.core.identity.models import User
from civicloud.core.identity.service import (
    get_user_or_raise,
    resolve_api_key,
    resolve_web_session_row,
)
from civicloud.core.permissions import builtin_roles, known_permissions, matches
from civicloud.core.principals import Principal, PrincipalCache, invalidate_principals
from civicloud.core.roles.models import Role, RoleBinding
from civicloud.core.roles.schemas import RoleBindingCreate, RoleCreate
from civicloud.core.tenants.models import Tenant
from civicloud.core.tenants.service import get_tenant_or_raise, in_subtrees

ADMIN = "core.role.admin"
#: The built-in role holding every permission; its row is the lock of the check below.
PLATFORM_ADMIN = "platform_admin"


def ensure_builtin_roles(*, session: Session) -> None:
    """Create or refresh the built-in roles (idempotent)."""
    for spec in builtin_roles():
        role = session.get(Role, spec.name)
        if role is None:
            session.add(
                Role(
                    name=spec.name,
                    name_zh=spec.name_zh,
                    name_en=spec.name_en,
                    permissions=list(spec.permissions),
                    builtin=True,
                )
            )
        else:
            role.name_zh, role.name_en = spec.name_zh, spec.name_en
            role.permissions, role.builtin = list(spec.permissions), True
    invalidate_principals(session)


def list_roles(*, session: Session) -> Sequence[Role]:
    """Every role, by name."""
    return session.scalars(select(Role).order_by(Role.name)).all()


def get_role_or_raise(*, session: Session, name: str) -> Role:
    """The role ``name``; raises ``NotFound``."""
    role = session.get(Role, name)
    if role is None:
        raise NotFound("no role %(role)s", params={"role": name}, resource="role")
    return role


def may_create_role(actor: Actor) -> bool:
    """Whether ``actor`` may define roles (:func:`create_role`'s rule): ``core.role.admin``
    held platform-wide."""
    try:
        actor.require_platform(ADMIN)
    except PermissionDenied:
        return False
    return True


def may_grant_roles(actor: Actor) -> bool:
    """Whether ``actor`` may grant roles anywhere (``core.role.admin`` held somewhere): the
    grant form is offered then, and :func:`grant_role` decides each grant."""
    return actor.roots(ADMIN) != []


def create_role(*, session: Session, actor: Actor, data: RoleCreate) -> Role:
    """Define a custom role (platform administrators only)."""
    actor.require_platform(ADMIN)
    known = known_permissions()
    for pattern in data.permissions:
        if not any(matches(pattern, name) for name in known):
            raise InvalidInput(
                "%(pattern)s matches no known permission", params={"pattern": pattern}
            )
    if session.get(Role, data.name) is not None:
        raise Conflict("role %(role)s exists already", params={"role": data.name})
    role = Role(**data.model_dump(), builtin=False)
    session.add(role)
    audit.record(
        session=session, actor=actor, action="core.role.create", target=f"role:{data.name}"
    )
    return role


def load_actor(*, session: Session, user: User, via: str) -> Actor:
    """The ``Actor`` for ``user``: its home and every grant it holds, with tenant paths."""
    rows = session.execute(
        select(RoleBinding.role_name, RoleBinding.tenant_id, Tenant.path, Role.permissions)
        .join(Role, Role.name == RoleBinding.role_name)
        .outerjoin(Tenant, Tenant.id == RoleBinding.tenant_id)
        .where(RoleBinding.user_id == user.id)
    ).all()
    home = session.get(Tenant, user.tenant_id)
    # A binding whose tenant is gone (possible only if foreign keys were bypassed) grants
    # nothing: without this, its missing path would read as "platform-wide".
    grants = tuple(
        Grant(role=name, tenant_id=tenant_id, tenant_path=path, permissions=frozenset(perms))
        for name, tenant_id, path, perms in rows
        if tenant_id is None or path is not None
    )
    return Actor(
        kind="user",
        name=user.username,
        via=via,
        user_id=user.id,
        tenant_id=user.tenant_id,
        region_code=home.region_code if home else None,
        grants=grants,
    )


def _binding_scope(session: Session, actor: Actor, tenant_id: uuid.UUID | None) -> Tenant | None:
    if tenant_id is None:
        actor.require_platform(ADMIN)
        return None
    return get_tenant_or_raise(session=session, actor=actor, tenant_id=tenant_id, permission=ADMIN)


def grant_role(*, session: Session, actor: Actor, data: RoleBindingCreate) -> RoleBinding:
    """Give a user a role at a tenant; nobody can grant permissions they do not hold there."""
    scope = _binding_scope(session, actor, data.tenant_id)
    user = session.get(User, data.user_id)
    home = session.get(Tenant, user.tenant_id) if user else None
    if user is None or home is None or not actor.can("core.user.read", home.path):
        raise NotFound("no such user", resource="user")
    role = get_role_or_raise(session=session, name=data.role_name)
    # Platform-wide (scope None) as much as at a tenant: nobody hands out more than they hold.
    if not grants_cover_all(actor.grants, role.permissions, scope.path if scope else None):
        raise PermissionDenied(
            "you do not hold every permission of %(role)s there", params={"role": role.name}
        )
    existing = session.scalars(
        select(RoleBinding).where(
            RoleBinding.user_id == user.id,
            RoleBinding.role_name == role.name,
            RoleBinding.tenant_id.is_(None)
            if data.tenant_id is None
            else RoleBinding.tenant_id == data.tenant_id,
        )
    ).one_or_none()
    if existing is not None:
        raise Conflict(
            "%(username)s already holds %(role)s there",
            params={"username": user.username, "role": role.name},
        )
    binding = RoleBinding(
        id=uuid.uuid4(),
        user_id=user.id,
        role_name=role.name,
        tenant_id=data.tenant_id,
        granted_by=actor.name,
    )
    session.add(binding)
    invalidate_principals(session)
    audit.record(
        session=session,
        actor=actor,
        action="core.role.grant",
        tenant_id=data.tenant_id,
        target=f"user:{user.username}",
        detail={"role": role.name, "binding": str(binding.id)},
    )
    return binding


def revoke_role(*, session: Session, actor: Actor, binding_id: uuid.UUID) -> None:
    """Take back a role binding."""
    binding, user = get_revocable_binding_or_raise(
        session=session, actor=actor, binding_id=binding_id
    )
    if binding.tenant_id is None and user is not None:
        ensure_an_administrator_remains(session=session, binding=binding)
    session.delete(binding)
    invalidate_principals(session)
    audit.record(
        session=session,
        actor=actor,
        action="core.role.revoke",
        tenant_id=binding.tenant_id,
        target=f"user:{user.username if user else binding.user_id}",
        detail={"role": binding.role_name, "binding": str(binding.id)},
    )


def _require_may_revoke(session: Session, actor: Actor, binding: RoleBinding) -> None:
    """Refuse unless ``actor`` holds ``core.role.admin`` where ``binding`` is (platform-wide
    for a platform-wide one): 404 where they cannot see it, 403 where they only see it."""
    if binding.tenant_id is None:
        if not actor.is_platform_wide:
            raise NotFound("no such role binding", resource="role_binding")
        actor.require_platform(ADMIN)
        return
    tenant = session.get(Tenant, binding.tenant_id)
    if tenant is None:
        raise NotFound("no such role binding", resource="role_binding")
    authorize(actor, ADMIN, path=tenant.path, what="role binding")


def get_revocable_binding_or_raise(
    *, session: Session, actor: Actor, binding_id: uuid.UUID
) -> tuple[RoleBinding, User | None]:
    """The binding ``binding_id`` and its holder, if ``actor`` may revoke it (404 where they
    cannot see it, 403 where they only see it)."""
    binding = session.get(RoleBinding, binding_id)
    if binding is None:
        raise NotFound("no such role binding", resource="role_binding")
    _require_may_revoke(session, actor, binding)
    return binding, session.get(User, binding.user_id)


def may_revoke_role(*, session: Session, actor: Actor, binding: RoleBinding) -> bool:
    """Whether :func:`revoke_role` would let ``actor`` take ``binding`` back (its permission
    rule; the last platform administrator's binding is still refused then, with a reason)."""
    try:
        _require_may_revoke(session, actor, binding)
    except (NotFound, PermissionDenied):
        return False
    return True


# --- the last platform administrator -----------------------------------------------------


class LastPlatformAdmin(Conflict):
    """The change would leave the installation with no active platform administrator."""

    code = "core.last_platform_admin"


def _platform_admin_roles(session: Session) -> list[str]:
    """The roles that make a platform administrator when held platform-wide: every permission."""
    return [r.name for r in session.scalars(select(Role)) if "*" in r.permissions]


def count_platform_admins(
    *,
    session: Session,
    without_binding: uuid.UUID | None = None,
    without_user: uuid.UUID | None = None,
) -> int:
    """Active users holding every permission platform-wide, leaving out one binding or user."""
    query = (
        select(func.count(func.distinct(RoleBinding.user_id)))
        .join(User, User.id == RoleBinding.user_id)
        .where(
            RoleBinding.tenant_id.is_(None),
            RoleBinding.role_name.in_(_platform_admin_roles(session)),
            User.is_active.is_(True),
        )
    )
    if without_binding is not None:
        query = query.where(RoleBinding.id != without_binding)
    if without_user is not None:
        query = query.where(RoleBinding.user_id != without_user)
    return int(session.scalar(query) or 0)


def ensure_an_administrator_remains(
    *, session: Session, binding: RoleBinding | None = None, user: User | None = None
) -> None:
    """Refuse (``LastPlatformAdmin``) to revoke ``binding`` or deactivate ``user`` when that
    would leave no active platform administrator.

    Whatever may take an administrator away calls this first, in its own transaction. The
    count is taken under a lock on the ``platform_admin`` role's row, so two administrators
    revoking each other at once on PostgreSQL are serialised and the second sees the first's
    change (each statement reads what is committed, under READ COMMITTED); SQLite serialises
    every writer already.
    """
    if binding is None and user is None:
        return
    session.execute(select(Role.name).where(Role.name == PLATFORM_ADMIN).with_for_update())
    if (
        binding is not None
        and session.scalar(select(RoleBinding.id).where(RoleBinding.id == binding.id)) is None
    ):
        # Revoked by a racing request while this one waited for the lock.
        raise NotFound("no such role binding", resource="role_binding")
    # Counted after the lock: what was an administrator before it may be gone meanwhile.
    before = count_platform_admins(session=session)
    left = count_platform_admins(
        session=session,
        without_binding=binding.id if binding is not None else None,
        without_user=user.id if user is not None else None,
    )
    if before > 0 and left == 0:
        raise LastPlatformAdmin(
            "the installation would be left without a platform administrator: grant the role "
            "to someone else first"
        )


def list_bindings(
    *,
    session: Session,
    actor: Actor,
    user_id: uuid.UUID | None = None,
    tenant_id: uuid.UUID | None = None,
) -> Sequence[RoleBinding]:
    """Role bindings at tenants the actor may read users of (platform-wide ones for platform
    admins), and the actor's own wherever they are."""
    roots = actor.roots("core.user.read")
    if user_id is not None and user_id == actor.user_id:
        roots = None  # one's own roles are always one's to see, wherever they are held
    query = select(RoleBinding).outerjoin(Tenant, Tenant.id == RoleBinding.tenant_id)
    if roots is not None:
        query = query.where(in_subtrees(Tenant.path, roots))
    if tenant_id is not None:
        scope = get_tenant_or_raise(
            session=session, actor=actor, tenant_id=tenant_id, permission="core.user.read"
        )
        query = query.where(RoleBinding.tenant_id == scope.id)
    if user_id is not None:
        # Like every other id filter: a user the actor cannot see is not there (404).
        get_user_or_raise(session=session, actor=actor, user_id=user_id)
        query = query.where(RoleBinding.user_id == user_id)
    return session.scalars(query.order_by(RoleBinding.created_at, RoleBinding.id)).all()


# --- credentials → principals ----------------------------------------------------------


def authenticate_api_key(
    *, session: Session, token: str, cache: PrincipalCache
) -> Principal | None:
    """The principal behind a bearer ``token``, or ``None`` (unknown, expired, revoked)."""
    cached = cache.get("api_key", token)
    if cached is not None:
        return cached
    found = resolve_api_key(session=session, token=token)
    if found is None:
        return None
    key, user = found
    principal = Principal(
        actor=load_actor(session=session, user=user, via=f"api_key:{key.prefix}"),
        expires_at=key.expires_at,
        api_key_id=key.id,
        last_used_at=key.last_used_at,
    )
    cache.put("api_key", token, principal)
    return principal


def authenticate_session(
    *, session: Session, token: str, cache: PrincipalCache
) -> Principal | None:
    """The principal behind a session cookie's ``token``, or ``None``."""
    cached = cache.get("session", token)
    if cached is not None:
        return cached
    found = resolve_web_session_row(session=session, token=token)
    if found is None:
        return None
    web_session, user = found
    principal = Principal(
        actor=load_actor(session=session, user=user, via="session"),
        expires_at=web_session.expires_at,
    )
    cache.put("session", token, principal)
    return principal
