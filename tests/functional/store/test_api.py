"""Store's HTTP API: buckets, access keys and usage, with problem+json errors and another
tenant's buckets not existing for you."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.factories.core import make_tenant
from tests.factories.store import S3Member
from tests.functional.store.conftest import bucket_name

from civicloud.app import create_app
from civicloud.core.identity import ApiKeyCreate, issue_api_key
from civicloud.core.services import Services
from civicloud.core.tenants.models import Tenant


@pytest.fixture(scope="session")
def api_app(core_services: Services) -> FastAPI:
    return create_app(services=core_services)


@pytest.fixture
def api(api_app: FastAPI) -> Iterator[TestClient]:
    test_client = TestClient(api_app, base_url="https://testserver")
    yield test_client
    test_client.close()


def headers_of(services: Services, member: S3Member) -> dict[str, str]:
    from civicloud.core.actor import Actor

    with services.db.unit_of_work() as session:
        issued = issue_api_key(
            session=session,
            actor=Actor.system("tests"),
            data=ApiKeyCreate(name="api"),
            default_days=1,
            user_id=member.user.id,
        )
        token = issued.token
    return {"Authorization": f"Bearer {token}"}


def test_buckets_are_created_read_listed_and_deleted(
    api: TestClient, core_services: Services, member: S3Member
) -> None:
    headers = headers_of(core_services, member)
    name = bucket_name("api")
    made = api.post("/api/v1/store/buckets", json={"name": name}, headers=headers)
    assert made.status_code == 201, made.text
    assert made.json()["region_code"] == "cn-beijing"
    assert api.get(f"/api/v1/store/buckets/{name}", headers=headers).json()["used_bytes"] == 0
    listed = api.get("/api/v1/store/buckets", headers=headers).json()
    assert name in [b["name"] for b in listed]
    again = api.post("/api/v1/store/buckets", json={"name": name}, headers=headers)
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert api.delete(f"/api/v1/store/buckets/{name}", headers=headers).status_code == 204
    assert api.get(f"/api/v1/store/buckets/{name}", headers=headers).status_code == 404


@pytest.mark.parametrize("body", [{"name": "Bad_Name"}, {"name": "ok-name", "acl": "world"}, {}])
def test_bad_bucket_bodies_are_refused(
    api: TestClient, core_services: Services, member: S3Member, body: dict[str, str]
) -> None:
    refused = api.post(
        "/api/v1/store/buckets", json=body, headers=headers_of(core_services, member)
    )
    assert refused.status_code in (400, 422)
    assert refused.headers["content-type"].startswith("application/problem+json")


def test_keys_are_issued_listed_and_revoked(
    api: TestClient, core_services: Services, member: S3Member
) -> None:
    headers = headers_of(core_services, member)
    made = api.post("/api/v1/store/keys", json={"description": "ci"}, headers=headers)
    assert made.status_code == 201, made.text
    key = made.json()
    assert key["secret"]
    listed = api.get("/api/v1/store/keys", headers=headers).json()
    assert key["access_key_id"] in [k["access_key_id"] for k in listed]
    assert all("secret" not in k for k in listed)
    assert (
        api.delete(f"/api/v1/store/keys/{key['access_key_id']}", headers=headers).status_code == 204
    )
    listed = api.get("/api/v1/store/keys", headers=headers).json()
    assert key["access_key_id"] not in [k["access_key_id"] for k in listed]


def test_usage_and_another_tenants_bucket(
    api: TestClient,
    core_services: Services,
    member: S3Member,
    member_factory: Callable[..., S3Member],
) -> None:
    headers = headers_of(core_services, member)
    usage = api.get(
        "/api/v1/store/usage", params={"tenant_id": str(member.tenant.id)}, headers=headers
    )
    assert usage.status_code in (200, 404)
    with core_services.db.unit_of_work() as session:
        other: Tenant = make_tenant(session, parent=make_tenant(session))
    stranger = member_factory(other)
    theirs = bucket_name("theirs")
    made = api.post(
        "/api/v1/store/buckets", json={"name": theirs}, headers=headers_of(core_services, stranger)
    )
    assert made.status_code == 201
    assert api.get(f"/api/v1/store/buckets/{theirs}", headers=headers).status_code == 404
    assert api.delete(f"/api/v1/store/buckets/{theirs}", headers=headers).status_code == 404
    assert (
        api.get(
            "/api/v1/store/usage", params={"tenant_id": str(uuid.uuid4())}, headers=headers
        ).status_code
        == 404
    )
