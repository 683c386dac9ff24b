"""Cached credentials and tenants never outlive a change made through this process."""

from __future__ import annotations

from fastapi.testclient import TestClient
from tests.factories.core import SiblingWorld


def test_a_revoked_role_stops_working_on_the_next_request(
    client: TestClient, world: SiblingWorld
) -> None:
    # given A's viewer reads its city (so its credential and the city are cached)
    member, city = world.a.member, world.a.child
    assert client.get(f"/api/v1/tenants/{city.id}", headers=member.headers).status_code == 200
    assert member.binding is not None
    # when A's admin revokes the viewer's role
    revoked = client.delete(
        f"/api/v1/role-bindings/{member.binding.id}", headers=world.a.admin.headers
    )
    assert revoked.status_code == 204
    # then the very next read is refused as if the city did not exist
    assert client.get(f"/api/v1/tenants/{city.id}", headers=member.headers).status_code == 404


def test_a_revoked_key_stops_working_on_the_next_request(
    client: TestClient, world: SiblingWorld
) -> None:
    member = world.a.member
    assert client.get("/api/v1/me", headers=member.headers).status_code == 200
    key_id = member.key.key.id
    assert client.delete(f"/api/v1/api-keys/{key_id}", headers=member.headers).status_code == 200
    assert client.get("/api/v1/me", headers=member.headers).status_code == 401


def test_a_moved_tenant_is_out_of_reach_of_its_old_subtree_at_once(
    client: TestClient, world: SiblingWorld
) -> None:
    # given A's admin reads A's city
    city, admin = world.a.child, world.a.admin
    assert client.get(f"/api/v1/tenants/{city.id}", headers=admin.headers).status_code == 200
    # when the platform admin moves the city under B
    moved = client.post(
        f"/api/v1/tenants/{city.id}/move",
        headers=world.platform.headers,
        json={"parent_id": str(world.b.tenant.id)},
    )
    assert moved.status_code == 200, moved.text
    # then A's admin no longer sees it, and B's admin does, on the next request
    assert client.get(f"/api/v1/tenants/{city.id}", headers=admin.headers).status_code == 404
    seen_by_b = client.get(f"/api/v1/tenants/{city.id}", headers=world.b.admin.headers)
    assert seen_by_b.json()["parent_id"] == str(world.b.tenant.id)
