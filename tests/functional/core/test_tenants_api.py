"""``/api/v1/tenants``: listing a subtree, creating, renaming, moving and deleting tenants."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from tests.factories.core import SiblingWorld, make_member, make_tenant, make_user, unique

from civicloud.core.services import Services
from civicloud.core.tenants import TenantKind

API = "/api/v1/tenants"
Committed = Callable[[], AbstractContextManager[Session]]


def new_tenant(parent_id: uuid.UUID | None, kind: str = "city", **extra: object) -> dict:
    slug = unique(kind)
    return {
        "slug": slug,
        "name_zh": "新租户",
        "name_en": f"New {slug}",
        "kind": kind,
        "parent_id": str(parent_id) if parent_id else None,
        **extra,
    }


def ids(response_json: list[dict]) -> list[str]:
    return [item["id"] for item in response_json]


def test_a_tenant_admin_lists_exactly_their_subtree_in_tree_order(
    client: TestClient, world: SiblingWorld
) -> None:
    # when A's administrator lists tenants
    response = client.get(API, headers=world.a.admin.headers)
    # then they see A and A's city, parent first, and nothing of B or the root
    assert response.status_code == 200
    assert ids(response.json()) == [str(world.a.tenant.id), str(world.a.child.id)]


def test_listing_a_subtree_by_root_and_kind(client: TestClient, world: SiblingWorld) -> None:
    headers = world.platform.headers
    below_root = client.get(API, params={"root_id": str(world.root.id)}, headers=headers).json()
    assert set(ids(below_root)) == {
        str(t.id)
        for t in (world.root, world.a.tenant, world.a.child, world.b.tenant, world.b.child)
    }
    cities = client.get(
        API, params={"root_id": str(world.root.id), "kind": "city"}, headers=headers
    ).json()
    assert set(ids(cities)) == {str(world.a.child.id), str(world.b.child.id)}


def test_paging_through_a_subtree(client: TestClient, world: SiblingWorld) -> None:
    params = {"root_id": str(world.root.id), "limit": 2}
    first = client.get(API, params=params, headers=world.platform.headers).json()
    rest = client.get(
        API, params={**params, "offset": 2, "limit": 10}, headers=world.platform.headers
    ).json()
    assert len(first) == 2
    assert len(first) + len(rest) == 5
    assert not set(ids(first)) & set(ids(rest))


def test_creating_a_tenant_below_one_you_administer(
    client: TestClient, world: SiblingWorld
) -> None:
    # when A's admin creates a city under A without naming a region
    body = new_tenant(world.a.tenant.id)
    response = client.post(API, json=body, headers=world.a.admin.headers)
    # then it is created one level down, in its parent's region
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["slug"] == body["slug"]
    assert created["parent_id"] == str(world.a.tenant.id)
    assert created["depth"] == world.a.tenant.depth + 1
    assert created["region_code"] == world.a.tenant.region_code
    assert created["version"] == 1
    # and it is visible on its own
    shown = client.get(f"{API}/{created['id']}", headers=world.a.admin.headers)
    assert shown.json() == created


def test_only_platform_administrators_create_root_tenants(
    client: TestClient, world: SiblingWorld
) -> None:
    body = new_tenant(None, "country", region_code="cn-beijing")
    refused = client.post(API, json=body, headers=world.a.admin.headers)
    assert refused.status_code == 403
    created = client.post(API, json=body, headers=world.platform.headers)
    assert created.status_code == 201, created.text
    assert created.json()["depth"] == 0


@pytest.mark.parametrize(
    ("kind", "extra", "detail"),
    [
        ("country", {}, "cannot sit below"),
        ("facility", {}, "cannot sit below"),
        ("city", {"region_code": "xx-nowhere"}, "no region"),
    ],
)
def test_kinds_and_regions_follow_the_rules(
    client: TestClient, world: SiblingWorld, kind: str, extra: dict, detail: str
) -> None:
    # when A's admin puts a country (or a facility) directly below a province
    response = client.post(
        API, json=new_tenant(world.a.tenant.id, kind, **extra), headers=world.a.admin.headers
    )
    # then it is refused as invalid (an unknown region is simply not found)
    assert response.status_code in (404, 422)
    assert detail in response.json()["detail"]


def test_a_root_facility_or_a_root_without_region_is_invalid(
    client: TestClient, world: SiblingWorld
) -> None:
    facility = client.post(
        API,
        json=new_tenant(None, "facility", region_code="cn-dalian"),
        headers=world.platform.headers,
    )
    assert facility.status_code == 422
    assert (
        client.post(
            API, json=new_tenant(None, "country"), headers=world.platform.headers
        ).status_code
        == 422
    )


def test_a_taken_slug_is_a_conflict(client: TestClient, world: SiblingWorld) -> None:
    body = new_tenant(world.a.tenant.id) | {"slug": world.b.child.slug}
    response = client.post(API, json=body, headers=world.a.admin.headers)
    assert response.status_code == 409
    assert response.json()["code"] == "core.conflict"


@pytest.mark.parametrize(
    "change",
    [
        {"slug": "Not A Slug"},
        {"name_zh": ""},
        {"kind": "galaxy"},
        {"unexpected": 1},
        {"name_en": "x" * 201},
    ],
)
def test_malformed_tenants_are_invalid(
    client: TestClient, world: SiblingWorld, change: dict
) -> None:
    response = client.post(
        API, json=new_tenant(world.a.tenant.id) | change, headers=world.a.admin.headers
    )
    assert response.status_code == 422
    assert response.json()["errors"]


def test_text_with_a_nul_character_is_invalid_on_every_database(
    client: TestClient, world: SiblingWorld
) -> None:
    body = new_tenant(world.a.tenant.id) | {"name_en": "Da\x00lian"}
    response = client.post(API, json=body, headers=world.a.admin.headers)
    assert response.status_code == 422
    assert "U+0000" in response.json()["detail"]  # named, whichever check refuses it first


def test_renaming_with_the_current_version_and_then_a_stale_one(
    client: TestClient, world: SiblingWorld
) -> None:
    url = f"{API}/{world.a.child.id}"
    # when the city is renamed with the version last read
    renamed = client.patch(
        url, json={"name_en": "Renamed", "version": 1}, headers=world.a.admin.headers
    )
    # then the name changes and the version moves on
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name_en"] == "Renamed"
    assert renamed.json()["name_zh"] == world.a.child.name_zh
    assert renamed.json()["version"] == 2
    # when someone renames it again with the old version, then it is a conflict
    stale = client.patch(url, json={"name_zh": "旧", "version": 1}, headers=world.a.admin.headers)
    assert stale.status_code == 409
    assert "version" in stale.json()["detail"]
    assert client.get(url, headers=world.a.admin.headers).json()["name_zh"] == world.a.child.name_zh


def test_moving_a_subtree_moves_everything_below_it(
    client: TestClient, world: SiblingWorld, committed: Committed
) -> None:
    # given a second city in A, and an agency below A's first city
    with committed() as session:
        other_city = make_tenant(session, parent=world.a.tenant, kind=TenantKind.CITY)
        agency = make_tenant(session, parent=world.a.child, kind=TenantKind.AGENCY)
    # when the agency moves under the other city
    moved = client.post(
        f"{API}/{agency.id}/move",
        json={"parent_id": str(other_city.id)},
        headers=world.a.admin.headers,
    )
    # then it hangs below the other city, at the same depth, with a new version
    assert moved.status_code == 200, moved.text
    assert moved.json()["parent_id"] == str(other_city.id)
    assert moved.json()["depth"] == agency.depth
    assert moved.json()["version"] == 2
    subtree = client.get(
        API, params={"root_id": str(other_city.id)}, headers=world.a.admin.headers
    ).json()
    assert ids(subtree) == [str(other_city.id), str(agency.id)]
    left = client.get(
        API, params={"root_id": str(world.a.child.id)}, headers=world.a.admin.headers
    ).json()
    assert ids(left) == [str(world.a.child.id)]


def test_moving_a_tenant_and_its_children_changes_their_depths(
    client: TestClient, world: SiblingWorld, committed: Committed
) -> None:
    # given an agency with a sub-agency below A's city
    with committed() as session:
        agency = make_tenant(session, parent=world.a.child, kind=TenantKind.AGENCY)
        sub = make_tenant(session, parent=agency, kind=TenantKind.AGENCY)
    # when the agency moves up, directly under the province
    response = client.post(
        f"{API}/{agency.id}/move",
        json={"parent_id": str(world.a.tenant.id)},
        headers=world.a.admin.headers,
    )
    # then both are one level higher
    assert response.status_code == 200, response.text
    assert response.json()["depth"] == agency.depth - 1
    shown = client.get(f"{API}/{sub.id}", headers=world.a.admin.headers).json()
    assert shown["depth"] == sub.depth - 1


def test_moving_below_itself_or_under_a_wrong_kind_is_invalid(
    client: TestClient, world: SiblingWorld
) -> None:
    headers = world.a.admin.headers
    below_itself = client.post(
        f"{API}/{world.a.tenant.id}/move",
        json={"parent_id": str(world.a.child.id)},
        headers=headers,
    )
    assert below_itself.status_code == 422
    onto_itself = client.post(
        f"{API}/{world.a.child.id}/move", json={"parent_id": str(world.a.child.id)}, headers=headers
    )
    assert onto_itself.status_code == 422


def test_moving_with_a_stale_version_is_a_conflict(
    client: TestClient, world: SiblingWorld, committed: Committed
) -> None:
    with committed() as session:
        agency = make_tenant(session, parent=world.a.child, kind=TenantKind.AGENCY)
    client.patch(f"{API}/{agency.id}", json={"name_en": "Bumped"}, headers=world.a.admin.headers)
    response = client.post(
        f"{API}/{agency.id}/move",
        json={"parent_id": str(world.a.tenant.id), "version": 1},
        headers=world.a.admin.headers,
    )
    assert response.status_code == 409


def test_moving_out_of_your_subtree_is_not_found(client: TestClient, world: SiblingWorld) -> None:
    # when A's admin moves A's city under B, which A's admin cannot see
    response = client.post(
        f"{API}/{world.a.child.id}/move",
        json={"parent_id": str(world.b.tenant.id)},
        headers=world.a.admin.headers,
    )
    # then B does not exist for them
    assert response.status_code == 404


def test_a_viewer_may_read_but_not_change(client: TestClient, world: SiblingWorld) -> None:
    headers = world.a.member.headers
    assert client.get(f"{API}/{world.a.child.id}", headers=headers).status_code == 200
    assert client.get(f"{API}/{world.a.tenant.id}", headers=headers).status_code == 404
    renamed = client.patch(f"{API}/{world.a.child.id}", json={"name_en": "No"}, headers=headers)
    assert renamed.status_code == 403
    assert renamed.json()["code"] == "core.permission_denied"


def test_deleting_an_empty_tenant(
    client: TestClient, world: SiblingWorld, committed: Committed
) -> None:
    with committed() as session:
        agency = make_tenant(session, parent=world.a.child, kind=TenantKind.AGENCY)
    response = client.delete(f"{API}/{agency.id}", headers=world.a.admin.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"{API}/{agency.id}", headers=world.a.admin.headers).status_code == 404


def test_deleting_a_tenant_with_children_is_a_conflict(
    client: TestClient, world: SiblingWorld
) -> None:
    response = client.delete(f"{API}/{world.a.tenant.id}", headers=world.platform.headers)
    assert response.status_code == 409
    assert "child" in response.json()["detail"]


def test_deleting_a_tenant_that_homes_users_is_a_conflict(
    client: TestClient, world: SiblingWorld, committed: Committed, core_services: Services
) -> None:
    # given an agency that is the home of a user
    with committed() as session:
        agency = make_tenant(session, parent=world.a.child, kind=TenantKind.AGENCY)
        make_user(session, core_services.passwords, tenant=agency)
    # when it is deleted, then the users keep it alive
    response = client.delete(f"{API}/{agency.id}", headers=world.a.admin.headers)
    assert response.status_code == 409
    assert "users" in response.json()["detail"]
    assert client.get(f"{API}/{agency.id}", headers=world.a.admin.headers).status_code == 200


def test_deleting_a_tenant_takes_the_roles_held_there_with_it(
    client: TestClient, world: SiblingWorld, committed: Committed, core_services: Services
) -> None:
    # given a user homed in A who is viewer at an agency of A
    with committed() as session:
        agency = make_tenant(session, parent=world.a.child, kind=TenantKind.AGENCY)
        viewer = make_member(
            session, core_services.passwords, home=world.a.tenant, role="viewer", at=agency
        )
    assert client.get(f"{API}/{agency.id}", headers=viewer.headers).status_code == 200
    # when the agency is deleted
    assert client.delete(f"{API}/{agency.id}", headers=world.a.admin.headers).status_code == 204
    # then the binding is gone and the user sees no tenant at all
    assert client.get(API, headers=viewer.headers).json() == []
    assert client.get("/api/v1/me", headers=viewer.headers).json()["roles"] == []
