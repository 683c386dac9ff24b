"""``/api/v1/audit``: what changed, by whom, limited to the caller's subtree; failures too."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from tests.factories.core import SiblingWorld

AUDIT = "/api/v1/audit"


def without_via(detail: dict) -> dict:
    return {key: value for key, value in detail.items() if key != "via"}


def records(client: TestClient, headers: dict[str, str], **params: object) -> list[dict]:
    response = client.get(AUDIT, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_an_admin_reads_the_audit_of_their_subtree_only(
    client: TestClient, world: SiblingWorld
) -> None:
    # when A's admin reads the audit log
    items = records(client, world.a.admin.headers, limit=1000)
    tenants = {item["tenant_id"] for item in items}
    # then every record is about A or below, and the creation of A's city is there
    assert tenants <= {str(world.a.tenant.id), str(world.a.child.id)}
    assert any(
        i["action"] == "core.tenant.create" and i["target"] == f"tenant:{world.a.child.slug}"
        for i in items
    )
    # and records are newest first, with their chain hash
    seqs = [i["seq"] for i in items]
    assert seqs == sorted(seqs, reverse=True)
    assert all(len(i["hash"]) == 64 for i in items)


def test_asking_for_another_subtree_is_not_found(client: TestClient, world: SiblingWorld) -> None:
    response = client.get(
        AUDIT, params={"tenant_id": str(world.b.tenant.id)}, headers=world.a.admin.headers
    )
    assert response.status_code == 404


def test_a_viewer_may_not_read_the_audit_and_is_told_so(
    client: TestClient, world: SiblingWorld
) -> None:
    response = client.get(AUDIT, headers=world.a.member.headers)
    assert response.status_code == 403
    assert "core.audit.read" in response.json()["detail"]


def test_one_record_with_its_place_in_its_chain_and_an_outcome_filter(
    client: TestClient, world: SiblingWorld
) -> None:
    # given a refused change in A's city (a viewer may not rename it)
    refused = client.patch(
        f"/api/v1/tenants/{world.a.child.id}",
        json={"name_en": "Refused"},
        headers=world.a.member.headers,
    )
    assert refused.status_code == 403
    # when A's admin asks for the denied records of A's city
    denied = records(
        client, world.a.admin.headers, outcome="denied", tenant_id=str(world.a.child.id)
    )
    # then it is there, and only denied records are
    assert denied
    assert {item["outcome"] for item in denied} == {"denied"}
    # and one record, asked by number, gives its place in its chain and how its actor came
    one = client.get(f"{AUDIT}/{denied[0]['seq']}", headers=world.a.admin.headers)
    assert one.status_code == 200
    body = one.json()
    assert (body["chain"], len(body["prev_hash"])) == (str(world.root.id), 64)
    assert body["detail"]["via"].startswith("api_key:")
    # while B's admin does not find it at all
    theirs = client.get(f"{AUDIT}/{denied[0]['seq']}", headers=world.b.admin.headers)
    assert theirs.status_code == 404


def test_an_unknown_outcome_is_invalid_input(client: TestClient, world: SiblingWorld) -> None:
    response = client.get(AUDIT, params={"outcome": "maybe"}, headers=world.platform.headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "outcome"]


def test_a_change_through_the_api_is_recorded_with_its_request(
    client: TestClient, world: SiblingWorld
) -> None:
    # when A's admin renames A's city, naming the request
    response = client.patch(
        f"/api/v1/tenants/{world.a.child.id}",
        json={"name_en": "Audited"},
        headers=world.a.admin.headers | {"X-Request-ID": "rename-42"},
    )
    assert response.status_code == 200
    # then the record names the actor, the target, the request and the change
    (item,) = records(
        client, world.a.admin.headers, action="core.tenant.rename", tenant_id=str(world.a.child.id)
    )
    assert item["actor"] == world.a.admin.user.username
    assert item["request_id"] == "rename-42"
    assert item["outcome"] == "success"
    assert item["detail"]["after"]["name_en"] == "Audited"


def test_filtering_and_paging(client: TestClient, world: SiblingWorld) -> None:
    headers = world.platform.headers
    scope = {"tenant_id": str(world.root.id)}
    created = records(client, headers, action="core.tenant.create", **scope)
    assert {i["target"] for i in created} >= {
        f"tenant:{world.a.tenant.slug}",
        f"tenant:{world.b.tenant.slug}",
    }
    assert all(i["action"] == "core.tenant.create" for i in created)
    # paging: two at a time, following next_before, gives the same records as one page
    everything = records(client, headers, limit=1000, **scope)
    paged: list[dict] = []
    before = None
    while True:
        params = {"limit": 2, **scope} | ({"before": before} if before else {})
        page = client.get(AUDIT, params=params, headers=headers).json()
        paged += page["items"]
        before = page["next_before"]
        if before is None:
            break
    assert [i["seq"] for i in paged] == [i["seq"] for i in everything]
    # time window: nothing is recorded before the world existed
    first_at = everything[-1]["at"]
    assert records(client, headers, until=first_at, **scope) == []
    assert len(records(client, headers, since=first_at, limit=1000, **scope)) == len(everything)


def test_refused_and_failed_changes_are_audited(client: TestClient, world: SiblingWorld) -> None:
    admin = world.a.admin
    # when A's admin tries to delete B (hidden), a tenant with children, and sends nonsense
    denied = client.delete(f"/api/v1/tenants/{world.b.tenant.id}", headers=admin.headers)
    conflict = client.delete(f"/api/v1/tenants/{world.a.tenant.id}", headers=admin.headers)
    invalid = client.post("/api/v1/tenants", json={"slug": "?"}, headers=admin.headers)
    assert [denied.status_code, conflict.status_code, invalid.status_code] == [404, 409, 422]
    # then each attempt is in the log (platform-wide: it is about no tenant the caller owns)
    mine = records(client, world.platform.headers, actor=admin.user.username, limit=1000)
    # (each detail also says how the actor came: by its API key)
    assert all(i["detail"]["via"] == f"api_key:{admin.key.key.prefix}" for i in mine)
    outcomes = {(i["action"], i["target"]): (i["outcome"], without_via(i["detail"])) for i in mine}
    assert outcomes[("core.tenant.delete", f"/api/v1/tenants/{world.b.tenant.id}")] == (
        "denied",
        {"status": 404, "code": "core.not_found"},
    )
    assert outcomes[("core.tenant.delete", f"/api/v1/tenants/{world.a.tenant.id}")] == (
        "failed",
        {"status": 409, "code": "core.conflict"},
    )
    assert outcomes[("core.tenant.create", "/api/v1/tenants")][0] == "failed"


def test_anonymous_attempts_to_change_are_refused_without_growing_the_log(
    client: TestClient, world: SiblingWorld
) -> None:
    # Nobody acted, and anyone could otherwise append records at will: a 401 is only in the
    # access log. Authenticated failures are audited (the tests above).
    before = records(client, world.platform.headers, limit=1)[0]["seq"]
    response = client.delete(f"/api/v1/tenants/{world.a.child.id}")
    assert response.status_code == 401
    after = records(client, world.platform.headers, limit=1)[0]["seq"]
    assert after == before


def test_reads_are_not_audited(client: TestClient, world: SiblingWorld) -> None:
    before = records(client, world.platform.headers, limit=1)[0]["seq"]
    client.get(f"/api/v1/tenants/{world.b.tenant.id}", headers=world.a.admin.headers)
    client.get("/api/v1/tenants", headers=world.a.admin.headers)
    after = records(client, world.platform.headers, limit=1)[0]["seq"]
    assert after == before


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"until": "2026-01-01T08:00:00"}, "until"),
        ({"since": "0001-01-01T00:00:00+14:00"}, "since"),
        ({"until": "9999-12-31T23:59:59-12:00"}, "until"),
        ({"before": str(2**63)}, "before"),
        ({"limit": "1001"}, "limit"),
    ],
)
def test_unusable_filters_are_invalid_input_not_a_crash(
    client: TestClient, world: SiblingWorld, params: dict[str, str], where: str
) -> None:
    # a time without its offset is ambiguous; some times cannot be expressed in UTC at all
    response = client.get(AUDIT, params=params, headers=world.platform.headers)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["query", where]


def test_times_in_any_offset_select_the_same_records(
    client: TestClient, world: SiblingWorld
) -> None:
    scope = {"tenant_id": str(world.root.id), "limit": 1000}
    everything = records(client, world.platform.headers, **scope)
    oldest = datetime.fromisoformat(everything[-1]["at"].replace("Z", "+00:00"))
    # the same instant, written in Beijing time (UTC+8)
    moment = oldest.astimezone(timezone(timedelta(hours=8)))
    same = records(client, world.platform.headers, since=moment.isoformat(), **scope)
    assert [i["seq"] for i in same] == [i["seq"] for i in everything]
