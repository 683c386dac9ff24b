"""Roles: named permission sets, bound to users at tenants, and the one authorisation check."""

from civicloud.core.actor import Actor, Grant, authorize
from civicloud.core.permissions import (
    BUILTIN_ROLES,
    RoleSpec,
    known_permissions,
    matches,
    register_permissions,
)
from civicloud.core.roles.models import Role, RoleBinding
from civicloud.core.roles.schemas import RoleBindingCreate, RoleBindingRead, RoleCreate, RoleRead
from civicloud.core.roles.service import (
    LastPlatformAdmin,
    authenticate_api_key,
    authenticate_session,
    count_platform_admins,
    create_role,
    ensure_an_administrator_remains,
    ensure_builtin_roles,
    get_role_or_raise,
    grant_role,
    list_bindings,
    list_roles,
    load_actor,
    revoke_role,
)

__all__ = [
    "BUILTIN_ROLES",
    "Actor",
    "Grant",
    "LastPlatformAdmin",
    "Role",
    "RoleBinding",
    "RoleBindingCreate",
    "RoleBindingRead",
    "RoleCreate",
    "RoleRead",
    "RoleSpec",
    "authenticate_api_key",
    "authenticate_session",
    "authorize",
    "count_platform_admins",
    "create_role",
    "ensure_an_administrator_remains",
    "ensure_builtin_roles",
    "get_role_or_raise",
    "grant_role",
    "known_permissions",
    "list_bindings",
    "list_roles",
    "load_actor",
    "matches",
    "register_permissions",
    "revoke_role",
]
