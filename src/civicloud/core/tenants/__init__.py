"""Tenants: the tree (country → province → city → agency / enterprise → facility) that owns everything."""

from civicloud.core.tenants.models import CHILD_KINDS, Tenant, TenantKind
from civicloud.core.tenants.schemas import TenantCreate, TenantMove, TenantRead, TenantRename
from civicloud.core.tenants.service import (
    TenantRef,
    ancestors,
    create_tenant,
    delete_tenant,
    get_tenant,
    get_tenant_by_slug,
    get_tenant_or_raise,
    in_subtrees,
    list_tenants,
    move_tenant,
    read_tenant,
    rename_tenant,
    resolve_tenant,
    subtree_bounds,
)

__all__ = [
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
]
