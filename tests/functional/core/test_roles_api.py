"""Roles and role bindings: granting, revoking, and never handing out more than one holds."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM, Member, SiblingWorld, make_member, unique

from civicloud.core import roles
from civicloud.core.services import Services

BINDINGS = "/api/v1/role-bindings"
Committed = Callable[[], AbstractContextManager[Session]]


def binding(user: Member, role: str, tenant_id: object | None) -> dict:
    return {
        "user_id": str(user.user.id),
        "role_name": role,
        "tenant_id": str(tenant_id) if tenant_id else None,
    }


def test_granting_a_role_widens_what_the_user_sees_and_revoking_narrows_it_again(
    client: TestClient, world: SiblingWorld
) -> None:
    member = world.a.member
    assert (
        client.get(f"/api/v1/tenants/{world.a.tenant.id}", headers=member.headers).status_code
        == 404
    )
    # when A's admin makes the city's viewer a viewer of the whole province
    granted = client.post(
        BINDINGS, json=binding(member, "viewer", world.a.tenant.id), headers=world.a.admin.headers
    )
    assert granted.status_code == 201, granted.text
    assert granted.json()["granted_by"] == world.a.admin.user.username
    # then the province is visible to them
    assert (
        client.get(f"/api/v1/tenants/{world.a.tenant.id}", headers=member.headers).status_code
        == 200
    )
    # when the binding is revoked, then it is hidden again
    revoked = client.delete(f"{BINDINGS}/{granted.json()['id']}", headers=world.a.admin.headers)
    assert revoked.status_code == 204
    assert (
        client.get(f"/api/v1/tenants/{world.a.tenant.id}", headers=member.headers).status_code
        == 404
    )


def test_the_same_grant_twice_is_a_conflict(client: TestClient, world: SiblingWorld) -> None:
    body = binding(world.a.member, "viewer", world.a.child.id)
    response = client.post(BINDINGS, json=body, headers=world.a.admin.headers)
    assert response.status_code == 409


def test_an_unknown_role_is_not_found(client: TestClient, world: SiblingWorld) -> None:
    body = binding(world.a.member, "emperor", world.a.child.id)
    assert client.post(BINDINGS, json=body, headers=world.a.admin.headers).status_code == 404


@pytest.mark.parametrize(
    ("role", "where"),
    [("platform_admin", "tenant"), ("viewer", "platform"), ("tenant_admin", "platform")],
)
def test_a_tenant_admin_cannot_grant_more_than_they_hold(
    client: TestClient, world: SiblingWorld, role: str, where: str
) -> None:
    tenant_id = world.a.tenant.id if where == "tenant" else None
    response = client.post(
        BINDINGS, json=binding(world.a.member, role, tenant_id), headers=world.a.admin.headers
    )
    assert response.status_code == 403
    me = client.get("/api/v1/me", headers=world.a.member.headers).json()
    assert [r["role_name"] for r in me["roles"]] == ["viewer"]


def test_a_tenant_admin_cannot_make_themselves_admin_of_their_parent(
    client: TestClient, world: SiblingWorld
) -> None:
    body = binding(world.a.admin, "tenant_admin", world.root.id)
    assert client.post(BINDINGS, json=body, headers=world.a.admin.headers).status_code == 404


def test_a_platform_wide_role_granter_cannot_grant_themselves_more(
    client: TestClient, world: SiblingWorld, committed: Committed, core_services: Services
) -> None:
    # given a custom role that may only grant roles and read users, held platform-wide
    with committed() as session:
        name = unique("granter").replace("-", "_")
        roles.create_role(
            session=session,
            actor=SYSTEM,
            data=roles.RoleCreate(
                name=name,
                name_zh="授权员",
                name_en="Granter",
                permissions=["core.role.admin", "core.user.read"],
            ),
        )
        granter = make_member(
            session, core_services.passwords, home=world.a.tenant, role=name, platform=True
        )
    # when they grant themselves platform_admin, or tenant_admin at a tenant
    for role, tenant_id in (("platform_admin", None), ("tenant_admin", world.a.tenant.id)):
        response = client.post(
            BINDINGS, json=binding(granter, role, tenant_id), headers=granter.headers
        )
        # then they are refused
        assert response.status_code in (403, 404), (role, response.text)
    assert [
        r["role_name"] for r in client.get("/api/v1/me", headers=granter.headers).json()["roles"]
    ] == [name]
    # but a role within what they hold is theirs to give
    ok = client.post(BINDINGS, json=binding(world.a.member, name, None), headers=granter.headers)
    assert ok.status_code == 201, ok.text


def test_administering_a_more_powerful_user_is_refused(
    client: TestClient, world: SiblingWorld, committed: Committed, core_services: Services
) -> None:
    # given a platform administrator who happens to be homed inside A
    with committed() as session:
        boss = make_member(
            session,
            core_services.passwords,
            home=world.a.tenant,
            role="platform_admin",
            platform=True,
        )
    headers = world.a.admin.headers
    # when A's admin tries to act as them: issue them a key, set their password, lock them out
    attempts = [
        client.post(
            "/api/v1/api-keys",
            params={"user_id": str(boss.user.id)},
            json={"name": "mine now"},
            headers=headers,
        ),
        client.patch(
            f"/api/v1/users/{boss.user.id}",
            json={"password": "taken over, sorry!"},
            headers=headers,
        ),
        client.patch(f"/api/v1/users/{boss.user.id}", json={"is_active": False}, headers=headers),
        client.delete(f"/api/v1/api-keys/{boss.key.key.id}", headers=headers),
    ]
    # then every attempt is refused, and the administrator is untouched
    assert [r.status_code for r in attempts] == [403, 403, 403, 403]
    assert client.get("/api/v1/me", headers=boss.headers).status_code == 200
    assert len(client.get("/api/v1/api-keys", headers=boss.headers).json()) == 1


def test_revoking_is_limited_to_your_subtree(client: TestClient, world: SiblingWorld) -> None:
    b_binding = world.b.member.binding
    platform_binding = world.platform.binding
    assert b_binding is not None
    assert platform_binding is not None
    assert (
        client.delete(f"{BINDINGS}/{b_binding.id}", headers=world.a.admin.headers).status_code
        == 404
    )
    assert (
        client.delete(
            f"{BINDINGS}/{platform_binding.id}", headers=world.a.admin.headers
        ).status_code
        == 404
    )
    assert client.get("/api/v1/tenants", headers=world.b.member.headers).json() != []


def test_listing_bindings_by_tenant_and_by_user(client: TestClient, world: SiblingWorld) -> None:
    headers = world.a.admin.headers
    everything = client.get(BINDINGS, headers=headers).json()
    assert {b["user_id"] for b in everything} == {
        str(world.a.admin.user.id),
        str(world.a.member.user.id),
    }
    at_child = client.get(BINDINGS, params={"tenant_id": str(world.a.child.id)}, headers=headers)
    assert [b["role_name"] for b in at_child.json()] == ["viewer"]
    of_admin = client.get(BINDINGS, params={"user_id": str(world.a.admin.user.id)}, headers=headers)
    assert [b["role_name"] for b in of_admin.json()] == ["tenant_admin"]
    unseen = client.get(BINDINGS, params={"user_id": str(world.b.admin.user.id)}, headers=headers)
    assert unseen.status_code == 404


def test_roles_and_permissions_are_listed(client: TestClient, world: SiblingWorld) -> None:
    listed = client.get("/api/v1/roles", headers=world.a.member.headers).json()
    builtin = {r["name"]: r for r in listed if r["builtin"]}
    # core's roles, and those Pay, Store and Traffic register
    assert set(builtin) == {
        "platform_admin",
        "tenant_admin",
        "auditor",
        "operator",
        "viewer",
        "pay_operator",
        "pay_admin",
        "store_reader",
        "store_writer",
        "store_admin",
        "traffic_viewer",
        "traffic_engineer",
    }
    assert builtin["platform_admin"]["permissions"] == ["*"]
    assert builtin["pay_admin"]["permissions"] == ["core.tenant.read", "pay.*"]
    permissions = client.get("/api/v1/permissions", headers=world.a.member.headers).json()
    assert "core.tenant.read" in permissions
    assert "pay.refund" in permissions


def test_only_platform_administrators_define_roles(client: TestClient, world: SiblingWorld) -> None:
    name = unique("clerk").replace("-", "_")
    body = {
        "name": name,
        "name_zh": "文员",
        "name_en": "Clerk",
        "permissions": ["core.tenant.read"],
    }
    assert client.post("/api/v1/roles", json=body, headers=world.a.admin.headers).status_code == 403
    created = client.post("/api/v1/roles", json=body, headers=world.platform.headers)
    assert created.status_code == 201
    assert created.json()["builtin"] is False
    assert (
        client.post("/api/v1/roles", json=body, headers=world.platform.headers).status_code == 409
    )
    unknown = body | {"name": name + "_x", "permissions": ["core.nothing.*"]}
    assert (
        client.post("/api/v1/roles", json=unknown, headers=world.platform.headers).status_code
        == 422
    )
