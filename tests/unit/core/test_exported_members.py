"""Each core package's public surface is pinned: adding or removing a name is a decision."""

from __future__ import annotations

import importlib

import pytest

EXPECTED: dict[str, set[str]] = {
    "civicloud.core.tenants": {
        "CHILD_KINDS",
        "Tenant",
        "TenantCreate",
        "TenantKind",
        "TenantMove",
        "TenantRead",
        "TenantRef",
        "TenantRename",
        "ancestors",
        "create_tenant",
        "delete_tenant",
        "get_tenant",
        "get_tenant_by_slug",
        "get_tenant_or_raise",
        "in_subtrees",
        "list_tenants",
        "move_tenant",
        "read_tenant",
        "rename_tenant",
        "resolve_tenant",
        "subtree_bounds",
    },
    "civicloud.core.regions": {
        "BUILTIN_REGIONS",
        "Region",
        "RegionCreate",
        "RegionRead",
        "create_region",
        "ensure_builtin_regions",
        "get_region",
        "get_region_or_raise",
        "list_regions",
    },
    "civicloud.core.identity": {
        "ApiKey",
        "ApiKeyCreate",
        "ApiKeyIssued",
        "ApiKeyRead",
        "IssuedKey",
        "Passwords",
        "User",
        "UserCreate",
        "UserRead",
        "UserUpdate",
        "WebSession",
        "authenticate_password",
        "create_user",
        "end_web_session",
        "get_api_key_by_prefix",
        "get_user_by_username",
        "get_user_or_raise",
        "issue_api_key",
        "list_api_keys",
        "list_users",
        "resolve_api_key",
        "resolve_web_session",
        "revoke_api_key",
        "start_web_session",
        "touch_api_key",
        "update_user",
    },
    "civicloud.core.roles": {
        "BUILTIN_ROLES",
        "Actor",
        "Grant",
        "LastPlatformAdmin",
        "authenticate_api_key",
        "authenticate_session",
        "Role",
        "RoleBinding",
        "RoleBindingCreate",
        "RoleBindingRead",
        "RoleCreate",
        "RoleRead",
        "RoleSpec",
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
    },
    "civicloud.core.audit": {
        "GENESIS",
        "AuditHead",
        "AuditPage",
        "AuditRecord",
        "AuditRecordRead",
        "Outcome",
        "VerifyResult",
        "audit_key_of",
        "head_seal",
        "list_records",
        "record",
        "record_hash",
        "record_seal",
        "seal_chain",
        "tenant_of_target",
        "verify_chain",
    },
}


@pytest.mark.parametrize("package", sorted(EXPECTED))
def test_the_public_surface_is_exactly_what_is_documented(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) == EXPECTED[package]
    assert len(module.__all__) == len(set(module.__all__))


@pytest.mark.parametrize("package", sorted(EXPECTED))
def test_every_exported_name_can_be_imported(package: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)  # noqa: S102 - the import statement under test
    assert EXPECTED[package] <= set(namespace)
