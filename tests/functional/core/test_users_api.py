"""``/api/v1/users`` and ``/api/v1/me``."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from tests.factories.core import SiblingWorld, unique

USERS = "/api/v1/users"


def new_user(tenant_id: uuid.UUID, **extra: object) -> dict:
    return {
        "username": unique("li.wei"),
        "display_name": "李伟",
        "tenant_id": str(tenant_id),
        "password": "correct horse battery",
        **extra,
    }


def test_me_says_who_is_calling_how_and_with_which_roles(
    client: TestClient, world: SiblingWorld
) -> None:
    response = client.get("/api/v1/me", headers=world.a.admin.headers)
    assert response.status_code == 200
    me = response.json()
    assert me["user"]["id"] == str(world.a.admin.user.id)
    assert me["user"]["username"] == world.a.admin.user.username
    assert me["via"] == f"api_key:{world.a.admin.key.key.prefix}"
    assert [(r["role_name"], r["tenant_id"]) for r in me["roles"]] == [
        ("tenant_admin", str(world.a.tenant.id))
    ]
    assert "password_hash" not in me["user"]


def test_a_user_without_any_role_still_sees_themselves(
    client: TestClient, world: SiblingWorld
) -> None:
    # given a member whose role was taken away
    binding = world.a.member.binding
    assert binding is not None
    revoked = client.delete(f"/api/v1/role-bindings/{binding.id}", headers=world.a.admin.headers)
    assert revoked.status_code == 204
    # then they can still ask who they are and read their own user
    me = client.get("/api/v1/me", headers=world.a.member.headers)
    assert me.status_code == 200
    assert me.json()["roles"] == []
    own = client.get(f"{USERS}/{world.a.member.user.id}", headers=world.a.member.headers)
    assert own.status_code == 200


def test_creating_a_user_in_a_tenant_you_administer(
    client: TestClient, world: SiblingWorld
) -> None:
    body = new_user(world.a.child.id, email="li.wei@dalian.gov.cn")
    response = client.post(USERS, json=body, headers=world.a.admin.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["username"] == body["username"]
    assert created["tenant_id"] == str(world.a.child.id)
    assert created["is_active"] is True
    assert "password" not in created
    assert "password_hash" not in created
    listed = client.get(
        USERS, params={"tenant_id": str(world.a.child.id)}, headers=world.a.admin.headers
    ).json()
    assert body["username"] in {u["username"] for u in listed}


def test_a_taken_username_is_a_conflict_and_a_weak_password_invalid(
    client: TestClient, world: SiblingWorld
) -> None:
    taken = new_user(world.a.tenant.id, username=world.b.admin.user.username)
    assert client.post(USERS, json=taken, headers=world.a.admin.headers).status_code == 409
    weak = new_user(world.a.tenant.id, password="short")
    response = client.post(USERS, json=weak, headers=world.a.admin.headers)
    assert response.status_code == 422
    assert "at least" in response.json()["detail"]


def test_users_are_listed_only_within_your_subtree(client: TestClient, world: SiblingWorld) -> None:
    listed = client.get(USERS, headers=world.a.admin.headers).json()
    assert {u["id"] for u in listed} == {str(world.a.admin.user.id), str(world.a.member.user.id)}


def test_a_viewer_cannot_list_or_create_users(client: TestClient, world: SiblingWorld) -> None:
    headers = world.a.member.headers
    assert client.get(USERS, headers=headers).json() == []
    assert client.post(USERS, json=new_user(world.a.child.id), headers=headers).status_code == 403


def test_updating_a_user_and_deactivating_them_stops_their_key(
    client: TestClient, world: SiblingWorld
) -> None:
    url = f"{USERS}/{world.a.member.user.id}"
    renamed = client.patch(
        url, json={"display_name": "张伟", "email": "zw@example.cn"}, headers=world.a.admin.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["display_name"] == "张伟"
    assert client.get("/api/v1/me", headers=world.a.member.headers).status_code == 200
    # when the user is deactivated
    off = client.patch(url, json={"is_active": False}, headers=world.a.admin.headers)
    assert off.json()["is_active"] is False
    # then their API key no longer works
    assert client.get("/api/v1/me", headers=world.a.member.headers).status_code == 401


def test_users_may_not_administer_themselves_without_the_right(
    client: TestClient, world: SiblingWorld
) -> None:
    url = f"{USERS}/{world.a.member.user.id}"
    response = client.patch(url, json={"display_name": "Me"}, headers=world.a.member.headers)
    assert response.status_code == 403
