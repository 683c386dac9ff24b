"""Console pages of the tenant tree: the caller's subtree, one tenant, and its forms."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from civicloud.core import identity, roles, tenants
from civicloud.core.errors import Conflict, InvalidInput
from civicloud.core.identity import User
from civicloud.core.regions import list_regions
from civicloud.core.roles import Actor, RoleBinding
from civicloud.core.tenants import CHILD_KINDS, Tenant, TenantCreate, TenantKind, TenantRename
from civicloud.web.deps import SessionDep
from civicloud.web.pages.forms import (
    DONE_MESSAGES,
    SLUG_TAKEN,
    field_errors,
    optional_text,
    service_error,
)
from civicloud.web.pages.guards import ConsoleActorDep, FormRejected, see_other
from civicloud.web.pages.rendering import render

router = APIRouter(prefix="/console/tenants", include_in_schema=False)
KIND_ORDER = {kind.value: position for position, kind in enumerate(TenantKind)}


@dataclass
class TreeNode:
    """A tenant and the visible tenants directly below it."""

    tenant: Tenant
    children: list[TreeNode] = field(default_factory=list)


def build_tree(found: Sequence[Tenant]) -> list[TreeNode]:
    """Nest tenants under their parents; tenants without a visible parent are roots.

    Siblings are ordered by kind (provinces before cities before agencies…), then identifier.
    """
    nodes = {t.id: TreeNode(t) for t in found}
    roots: list[TreeNode] = []
    for tenant in sorted(found, key=lambda t: (KIND_ORDER.get(t.kind, len(KIND_ORDER)), t.slug)):
        parent = nodes.get(tenant.parent_id) if tenant.parent_id else None
        (parent.children if parent else roots).append(nodes[tenant.id])
    return roots


@router.get("", name="page.tenants")
def tenant_tree(request: Request, session: SessionDep, actor: ConsoleActorDep) -> HTMLResponse:
    """The tenant tree of your subtree."""
    found = tenants.list_tenants(session=session, actor=actor)
    return render(
        request,
        "console/tenants.html",
        {"section": "tenants", "tree": build_tree(found), "count": len(found)},
    )


@router.get("/{tenant_id}", name="page.tenant")
def tenant_detail(
    request: Request, session: SessionDep, actor: ConsoleActorDep, tenant_id: uuid.UUID
) -> HTMLResponse:
    """One tenant: where it sits, what is below it, its users and role bindings."""
    context = _detail_context(request, session, actor, tenant_id)
    return render(request, "console/tenant.html", context)


@router.post("/{tenant_id}/children", name="page.tenant_create_child")
def create_child(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    tenant_id: uuid.UUID,
    slug: Annotated[str, Form()] = "",
    name_zh: Annotated[str, Form()] = "",
    name_en: Annotated[str, Form()] = "",
    kind: Annotated[str, Form()] = "",
    region_code: Annotated[str, Form()] = "",
) -> Response:
    """Create a tenant below this one."""
    values = {"slug": slug, "name_zh": name_zh, "name_en": name_en, "kind": kind}
    values["region_code"] = region_code
    try:
        data = TenantCreate(
            slug=slug.strip(),
            name_zh=name_zh.strip(),
            name_en=name_en.strip(),
            kind=kind,
            parent_id=tenant_id,
            region_code=optional_text(region_code),
        )
        child = tenants.create_tenant(session=session, actor=actor, data=data)
    except ValidationError as exc:
        raise _rejected(
            request, session, actor, tenant_id, "child", values, field_errors(exc)
        ) from exc
    except Conflict as exc:
        raise _rejected(
            request, session, actor, tenant_id, "child", values, {"slug": SLUG_TAKEN}, None, 409
        ) from exc
    except InvalidInput as exc:
        raise _rejected(
            request, session, actor, tenant_id, "child", values, {}, service_error(exc)
        ) from exc
    return see_other(f"/console/tenants/{child.id}?done=tenant_created")


@router.post("/{tenant_id}/rename", name="page.tenant_rename")
def rename(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    tenant_id: uuid.UUID,
    name_zh: Annotated[str, Form()] = "",
    name_en: Annotated[str, Form()] = "",
    version: Annotated[str, Form()] = "",
) -> Response:
    """Change this tenant's names."""
    values = {"name_zh": name_zh, "name_en": name_en}
    try:
        data = TenantRename(
            name_zh=name_zh.strip(), name_en=name_en.strip(), version=optional_text(version)
        )
        tenants.rename_tenant(session=session, actor=actor, tenant_id=tenant_id, data=data)
    except ValidationError as exc:
        raise _rejected(
            request, session, actor, tenant_id, "rename", values, field_errors(exc)
        ) from exc
    except (Conflict, InvalidInput) as exc:
        raise _rejected(
            request, session, actor, tenant_id, "rename", values, {}, service_error(exc), exc.status
        ) from exc
    return see_other(f"/console/tenants/{tenant_id}?done=tenant_renamed")


def _rejected(
    request: Request,
    session: Session,
    actor: Actor,
    tenant_id: uuid.UUID,
    form: str,
    values: dict[str, str],
    errors: dict[str, str],
    summary: dict[str, str] | None = None,
    status_code: int = 422,
) -> FormRejected:
    context = _detail_context(request, session, actor, tenant_id)
    context["forms"][form] = {"data": values, "errors": errors, "summary": summary}
    return FormRejected(render(request, "console/tenant.html", context, status_code=status_code))


def _detail_context(
    request: Request, session: Session, actor: Actor, tenant_id: uuid.UUID
) -> dict[str, Any]:
    tenant = tenants.get_tenant_or_raise(session=session, actor=actor, tenant_id=tenant_id)
    subtree = tenants.list_tenants(session=session, actor=actor, root_id=tenant.id)
    # Only the ancestors the caller may see: the others do not exist as far as it is concerned.
    trail = [t for t in tenants.ancestors(session=session, tenant=tenant) if actor.sees(t.path)]
    reads_users = actor.can("core.user.read", tenant.path)
    users: list[User] = []
    bindings: list[RoleBinding] = []
    user_names: dict[uuid.UUID, User] = {}
    if reads_users:
        below = identity.list_users(session=session, actor=actor, tenant_id=tenant.id)
        users = [u for u in below if u.tenant_id == tenant.id]
        bindings = list(roles.list_bindings(session=session, actor=actor, tenant_id=tenant.id))
        # Holders may be homed anywhere the caller can see, not only below this tenant.
        user_names = {u.id: u for u in identity.list_users(session=session, actor=actor)}
    child_kinds = sorted(k.value for k in CHILD_KINDS[TenantKind(tenant.kind)])
    return {
        "section": "tenants",
        "tenant": tenant,
        "trail": trail,
        "children": [node.tenant for root in build_tree(subtree) for node in root.children],
        "subtree_size": len(subtree) - 1,
        "users": users,
        "reads_users": reads_users,
        "bindings": bindings,
        "user_names": user_names,
        "role_names": {r.name: r for r in roles.list_roles(session=session)},
        "administers": actor.can("core.tenant.admin", tenant.path),
        "child_kinds": child_kinds,
        "regions": list_regions(session=session),
        "forms": {
            "child": {"data": {"region_code": ""}, "errors": {}, "summary": None},
            "rename": {
                "data": {"name_zh": tenant.name_zh, "name_en": tenant.name_en},
                "errors": {},
                "summary": None,
            },
        },
        "done": DONE_MESSAGES.get(request.query_params.get("done", "")),
    }
