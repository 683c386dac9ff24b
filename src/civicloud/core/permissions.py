"""The registry of permission names (``module.action``) and the built-in roles.

Modules add their permissions with :func:`register_permissions` from their package's
``__init__``; roles name permissions exactly, or with a trailing wildcard (``pay.*``, ``*``).
"""

from __future__ import annotations

from dataclasses import dataclass

_PERMISSIONS: dict[str, str] = {}


def register_permissions(permissions: dict[str, str]) -> None:
    """Make ``{name: description}`` known; names look like ``module.thing.action``."""
    for name, description in permissions.items():
        parts = name.split(".")
        if len(parts) < 2 or not all(part.isidentifier() for part in parts):
            raise ValueError(f"bad permission name {name!r}")
        _PERMISSIONS[name] = description


def known_permissions() -> dict[str, str]:
    """Every registered permission with its description."""
    return dict(sorted(_PERMISSIONS.items()))


def matches(pattern: str, permission: str) -> bool:
    """Whether a role's ``pattern`` (``pay.refund``, ``pay.*`` or ``*``) grants ``permission``."""
    if pattern in ("*", permission):
        return True
    return pattern.endswith(".*") and permission.startswith(pattern[:-1])


register_permissions(
    {
        "core.tenant.read": "See tenants and their details",
        "core.tenant.admin": "Create, rename, move and delete tenants",
        "core.user.read": "See users",
        "core.user.admin": "Create, change and deactivate users",
        "core.role.admin": "Grant and revoke roles",
        "core.audit.read": "Read the audit log",
        "core.region.admin": "Register regions (platform-wide only)",
        "core.job.read": "See the background jobs and their runs (platform-wide only)",
    }
)


@dataclass(frozen=True)
class RoleSpec:
    """A role that every installation has."""

    name: str
    name_zh: str
    name_en: str
    permissions: tuple[str, ...]


BUILTIN_ROLES: tuple[RoleSpec, ...] = (
    RoleSpec("platform_admin", "平台管理员", "Platform administrator", ("*",)),
    RoleSpec(
        "tenant_admin",
        "租户管理员",
        "Tenant administrator",
        (
            "core.tenant.read",
            "core.tenant.admin",
            "core.user.read",
            "core.user.admin",
            "core.role.admin",
            "core.audit.read",
        ),
    ),
    RoleSpec(
        "auditor", "审计员", "Auditor", ("core.tenant.read", "core.user.read", "core.audit.read")
    ),
    RoleSpec("operator", "业务操作员", "Operator", ("core.tenant.read", "core.user.read")),
    RoleSpec("viewer", "只读用户", "Viewer", ("core.tenant.read",)),
)


_MODULE_ROLES: dict[str, RoleSpec] = {}


def register_roles(*roles: RoleSpec) -> None:
    """Add built-in roles of a module (``pay_operator``…); created by ``ensure_builtin_roles``."""
    for role in roles:
        if role.name in {r.name for r in BUILTIN_ROLES}:
            raise ValueError(f"role {role.name!r} is core's")
        _MODULE_ROLES[role.name] = role


def builtin_roles() -> tuple[RoleSpec, ...]:
    """Core's built-in roles and every module's."""
    return BUILTIN_ROLES + tuple(_MODULE_ROLES.values())
