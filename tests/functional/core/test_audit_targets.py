"""A refused change by a signed-in caller is recorded under the tenant it was aimed at, so that
tenant's own administrators and auditors see what was tried against it."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from tests.factories.core import SiblingWorld

AUDIT = "/api/v1/audit"


def records(client: TestClient, headers: dict[str, str], **params: object) -> list[dict]:
    response = client.get(AUDIT, params={"limit": 1000, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def refusals_by(client: TestClient, reader: dict[str, str], actor: str) -> dict[str, dict]:
    """The refused or failed calls of ``actor`` that ``reader`` may see, by target."""
    return {
        i["target"]: i
        for i in records(client, reader, actor=actor)
        if i["outcome"] in ("denied", "failed")
    }


def test_an_attempt_on_another_tenant_is_seen_by_that_tenants_admin(
    client: TestClient, world: SiblingWorld
) -> None:
    intruder = world.b.admin
    # when B's admin tries to delete A's city, which is hidden from them
    target = f"/api/v1/tenants/{world.a.child.id}"
    assert client.delete(target, headers=intruder.headers).status_code == 404
    # then A's admin finds the attempt in A's own log, under the city it was aimed at
    seen = refusals_by(client, world.a.admin.headers, intruder.user.username)
    assert seen[target]["tenant_id"] == str(world.a.child.id)
    assert seen[target]["outcome"] == "denied"
    assert seen[target]["detail"] | {"via": "-"} == {
        "status": 404,
        "code": "core.not_found",
        "via": "-",
    }
    # and the intruder's own side learns nothing of it
    assert target not in refusals_by(client, intruder.headers, intruder.user.username)


def test_a_permission_refused_inside_ones_tenant_is_recorded_there(
    client: TestClient, world: SiblingWorld
) -> None:
    viewer = world.a.member
    # when a viewer of A's city tries to rename it (they may read it, not change it)
    target = f"/api/v1/tenants/{world.a.child.id}"
    refused = client.patch(target, json={"name_en": "Mine now"}, headers=viewer.headers)
    assert refused.status_code == 403
    # then the refusal is in the city's log, for its administrator
    seen = refusals_by(client, world.a.admin.headers, viewer.user.username)
    assert seen[target]["tenant_id"] == str(world.a.child.id)
    assert seen[target]["detail"]["status"] == 403


def test_a_failure_after_authorisation_is_recorded_under_the_tenant_too(
    client: TestClient, world: SiblingWorld
) -> None:
    admin = world.a.admin
    # when A's admin tries to delete A itself, which has children (a conflict)
    target = f"/api/v1/tenants/{world.a.tenant.id}"
    assert client.delete(target, headers=admin.headers).status_code == 409
    seen = refusals_by(client, admin.headers, admin.user.username)
    assert seen[target]["tenant_id"] == str(world.a.tenant.id)
    assert seen[target]["outcome"] == "failed"


def test_a_refusal_before_any_service_ran_is_recorded_under_the_routes_tenant(
    client: TestClient, world: SiblingWorld
) -> None:
    viewer = world.a.member
    # when the body is refused before the service is called
    target = f"/api/v1/tenants/{world.a.child.id}"
    refused = client.patch(target, json={"name_en": ""}, headers=viewer.headers)
    assert refused.status_code == 422
    seen = refusals_by(client, world.a.admin.headers, viewer.user.username)
    assert seen[target]["tenant_id"] == str(world.a.child.id)


def test_a_refusal_aimed_at_no_known_tenant_belongs_to_none(
    client: TestClient, world: SiblingWorld
) -> None:
    admin = world.a.admin
    # when A's admin revokes a role binding that does not exist, or names a tenant that does not
    nothing = f"/api/v1/role-bindings/{uuid.uuid4()}"
    assert client.delete(nothing, headers=admin.headers).status_code == 404
    unknown = f"/api/v1/tenants/{uuid.uuid4()}"
    assert client.delete(unknown, headers=admin.headers).status_code == 404
    # then both are recorded, for platform-wide auditors, under no tenant
    seen = refusals_by(client, world.platform.headers, admin.user.username)
    assert seen[nothing]["tenant_id"] is None
    assert seen[unknown]["tenant_id"] is None
    assert nothing not in refusals_by(client, admin.headers, admin.user.username)
