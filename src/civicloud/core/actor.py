"""Who is acting: the principal, where it is homed, and the grants it holds.

An ``Actor`` is built once per request, command or job and passed to every service function.
A grant at a tenant applies to that tenant and everything below it; a grant with no tenant is
platform-wide.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from civicloud.core.context import note_target
from civicloud.core.errors import NotFound, PermissionDenied
from civicloud.core.permissions import matches


@dataclass(frozen=True)
class Grant:
    """A role held at a tenant (``tenant_path`` ``None``: everywhere)."""

    role: str
    tenant_id: uuid.UUID | None
    tenant_path: str | None
    permissions: frozenset[str]

    def covers(self, path: str) -> bool:
        """Whether this grant reaches the tenant whose materialised path is ``path``."""
        return self.tenant_path is None or path.startswith(self.tenant_path)

    def allows(self, permission: str) -> bool:
        """Whether this grant's role includes ``permission``."""
        return any(matches(pattern, permission) for pattern in self.permissions)


@dataclass(frozen=True)
class Actor:
    """The principal behind a call, with everything authorisation needs."""

    kind: Literal["user", "system"]
    name: str
    via: str
    user_id: uuid.UUID | None = None
    tenant_id: uuid.UUID | None = None
    region_code: str | None = None
    grants: tuple[Grant, ...] = field(default=())

    @classmethod
    def system(cls, via: str = "cli") -> Actor:
        """The operator at the machine's shell: platform-wide, all permissions."""
        return cls(
            kind="system",
            name=f"system:{via}",
            via=via,
            grants=(Grant("platform_admin", None, None, frozenset({"*"})),),
        )

    @property
    def is_platform_wide(self) -> bool:
        """Whether some grant reaches every tenant."""
        return any(grant.tenant_path is None for grant in self.grants)

    def sees(self, path: str) -> bool:
        """Whether any grant reaches the tenant at ``path`` (otherwise it does not exist for us)."""
        return any(grant.covers(path) for grant in self.grants)

    def can(self, permission: str, path: str) -> bool:
        """Whether some grant reaching ``path`` includes ``permission``."""
        return any(grant.covers(path) and grant.allows(permission) for grant in self.grants)

    def permissions_at(self, path: str) -> set[str]:
        """The permission patterns that reach ``path``."""
        found: set[str] = set()
        for grant in self.grants:
            if grant.covers(path):
                found |= grant.permissions
        return found

    def roots(self, permission: str | None = None) -> list[str] | None:
        """Paths of the subtrees reached (with ``permission``); ``None`` means everything."""
        chosen = [g for g in self.grants if permission is None or g.allows(permission)]
        if any(g.tenant_path is None for g in chosen):
            return None
        paths = sorted({g.tenant_path for g in chosen if g.tenant_path is not None})
        # Drop paths inside another chosen path: their subtree is already included.
        return [p for p in paths if not any(p != q and p.startswith(q) for q in paths)]

    def require_platform(self, permission: str) -> None:
        """Raise unless a platform-wide grant includes ``permission``."""
        if not any(g.tenant_path is None and g.allows(permission) for g in self.grants):
            raise PermissionDenied(
                "%(permission)s is needed platform-wide", params={"permission": permission}
            )


def authorize(actor: Actor, permission: str, *, path: str, what: str = "resource") -> None:
    """The one authorisation check: 404 when the actor cannot see ``path``, 403 when it may see
    it but lacks ``permission``.

    The tenant is noted for the request (``core.context.note_target``): a refused call is
    audited under the tenant it was aimed at, so that tenant's auditors see it.
    """
    note_target(path)
    if not actor.sees(path):
        raise NotFound("no such %(what_label)s", params={"what_label": what})
    if not actor.can(permission, path):
        raise PermissionDenied(
            "%(permission)s is needed for this %(what_label)s",
            params={"permission": permission, "what_label": what},
        )


def grants_cover_all(grants: Iterable[Grant], permissions: Iterable[str], path: str | None) -> bool:
    """Whether ``grants`` together allow every one of ``permissions`` at ``path``.

    ``path`` ``None`` means everywhere: only platform-wide grants count then.
    """
    held = [g for g in grants if (g.tenant_path is None if path is None else g.covers(path))]
    return all(any(g.allows(p) for g in held) for p in permissions)


def holds_all_of(actor: Actor, other: Actor) -> bool:
    """Whether ``actor`` holds every permission ``other`` holds, wherever ``other`` holds it.

    Whoever may act as someone (set their password, issue their keys, grant their roles) must
    pass this, or administering a user would be a way to gain their permissions.
    """
    return all(grants_cover_all(actor.grants, g.permissions, g.tenant_path) for g in other.grants)
