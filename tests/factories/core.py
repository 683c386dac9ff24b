"""Factories for core's rows: tenants, users, role bindings and API keys, with unique names.

Every factory goes through the service layer as the platform's system actor, so the rows it makes
are the rows the application would make (paths, depths, audit records and all). Names carry a
random suffix: API and CLI tests share a database and must never collide.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from civicloud.core import identity, roles, tenants
from civicloud.core.actor import Actor
from civicloud.core.identity import IssuedKey, Passwords, User
from civicloud.core.roles import RoleBinding
from civicloud.core.tenants import Tenant, TenantKind

#: Good enough for the password policy; tests never need it to be secret.
PASSWORD = "correct horse battery staple"
SYSTEM = Actor.system("tests")


def unique(prefix: str) -> str:
    """``prefix`` with a random suffix, valid as a slug and as a username."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_tenant(
    session: Session,
    *,
    parent: Tenant | None = None,
    kind: TenantKind | None = None,
    slug: str | None = None,
    region_code: str | None = None,
    actor: Actor = SYSTEM,
) -> Tenant:
    """A tenant under ``parent`` (a root country when there is none)."""
    if kind is None:
        kind = TenantKind.COUNTRY if parent is None else _child_kind(TenantKind(parent.kind))
    slug = slug or unique(kind.value)
    return tenants.create_tenant(
        session=session,
        actor=actor,
        data=tenants.TenantCreate(
            slug=slug,
            name_zh=f"租户 {slug}",
            name_en=f"Tenant {slug}",
            kind=kind,
            parent_id=parent.id if parent else None,
            region_code=region_code or ("cn-beijing" if parent is None else None),
        ),
    )


def _child_kind(kind: TenantKind) -> TenantKind:
    # A kind that may sit below ``kind`` and may itself have children, where there is one.
    for candidate in (TenantKind.PROVINCE, TenantKind.CITY, TenantKind.AGENCY):
        if candidate in tenants.CHILD_KINDS[kind]:
            return candidate
    return next(iter(sorted(tenants.CHILD_KINDS[kind])))


def make_user(
    session: Session,
    passwords: Passwords,
    *,
    tenant: Tenant,
    username: str | None = None,
    password: str | None = PASSWORD,
    actor: Actor = SYSTEM,
) -> User:
    """A user homed in ``tenant`` (with ``PASSWORD`` unless told otherwise)."""
    return identity.create_user(
        session=session,
        actor=actor,
        data=identity.UserCreate(
            username=username or unique("user"),
            display_name="测试用户 Test User",
            password=password,
            tenant_id=tenant.id,
        ),
        passwords=passwords,
    )


def grant(
    session: Session, *, user: User, role: str, tenant: Tenant | None, actor: Actor = SYSTEM
) -> RoleBinding:
    """Give ``user`` the role ``role`` at ``tenant`` (``None``: platform-wide)."""
    return roles.grant_role(
        session=session,
        actor=actor,
        data=roles.RoleBindingCreate(
            user_id=user.id, role_name=role, tenant_id=tenant.id if tenant else None
        ),
    )


def make_api_key(
    session: Session, *, user: User, days: int = 30, actor: Actor = SYSTEM
) -> IssuedKey:
    """An API key for ``user``; ``.token`` is the bearer token."""
    return identity.issue_api_key(
        session=session,
        actor=actor,
        data=identity.ApiKeyCreate(name=unique("key"), expires_in_days=days),
        default_days=days,
        user_id=user.id,
    )


@dataclass(frozen=True)
class Member:
    """A user with a role somewhere, and a working API key."""

    user: User
    binding: RoleBinding | None
    key: IssuedKey

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header of this member's API key."""
        return {"Authorization": f"Bearer {self.key.token}"}


def make_member(
    session: Session,
    passwords: Passwords,
    *,
    home: Tenant,
    role: str | None,
    at: Tenant | None = None,
    platform: bool = False,
) -> Member:
    """A user homed in ``home`` holding ``role`` at ``at`` (default ``home``; or platform-wide)."""
    user = make_user(session, passwords, tenant=home)
    binding = None
    if role is not None:
        binding = grant(session, user=user, role=role, tenant=None if platform else (at or home))
    return Member(user=user, binding=binding, key=make_api_key(session, user=user))


@dataclass(frozen=True)
class Side:
    """One of two sibling tenants: its administrator, a child tenant, a user with a key and role."""

    tenant: Tenant
    child: Tenant
    admin: Member
    member: Member


@dataclass(frozen=True)
class SiblingWorld:
    """A root with two sibling provinces A and B, each administered by its own tenant_admin."""

    root: Tenant
    platform: Member
    a: Side
    b: Side


def make_side(session: Session, passwords: Passwords, *, root: Tenant) -> Side:
    """A province below ``root`` with a city, a tenant_admin and a viewer holding a key."""
    tenant = make_tenant(session, parent=root, kind=TenantKind.PROVINCE)
    child = make_tenant(session, parent=tenant, kind=TenantKind.CITY)
    admin = make_member(session, passwords, home=tenant, role="tenant_admin")
    member = make_member(session, passwords, home=child, role="viewer")
    return Side(tenant=tenant, child=child, admin=admin, member=member)


def make_sibling_world(session: Session, passwords: Passwords) -> SiblingWorld:
    """Build a ``SiblingWorld`` with fresh, unique names."""
    root = make_tenant(session, kind=TenantKind.COUNTRY)
    platform = make_member(session, passwords, home=root, role="platform_admin", platform=True)
    return SiblingWorld(
        root=root,
        platform=platform,
        a=make_side(session, passwords, root=root),
        b=make_side(session, passwords, root=root),
    )
