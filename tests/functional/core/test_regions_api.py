"""``/api/v1/regions``: the registry of data-residency regions."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from tests.factories.core import SiblingWorld

REGIONS = "/api/v1/regions"


def test_every_signed_in_user_sees_the_builtin_regions(
    client: TestClient, world: SiblingWorld
) -> None:
    listed = client.get(REGIONS, headers=world.a.member.headers)
    assert listed.status_code == 200
    codes = [r["code"] for r in listed.json()]
    assert codes == sorted(codes)
    assert {"cn-beijing", "cn-dalian", "ap-singapore"} <= set(codes)


def test_only_platform_administrators_register_regions(
    client: TestClient, world: SiblingWorld
) -> None:
    code = f"cn-t{uuid.uuid4().hex[:12]}"
    body = {"code": code, "name_zh": "测试", "name_en": "Test", "country_code": "CN"}
    assert client.post(REGIONS, json=body, headers=world.a.admin.headers).status_code == 403
    created = client.post(REGIONS, json=body, headers=world.platform.headers)
    assert created.status_code == 201
    assert created.json() == body
    assert client.post(REGIONS, json=body, headers=world.platform.headers).status_code == 409
    assert code in {r["code"] for r in client.get(REGIONS, headers=world.a.member.headers).json()}


def test_malformed_region_codes_are_invalid(client: TestClient, world: SiblingWorld) -> None:
    body = {"code": "Dalian", "name_zh": "大连", "name_en": "Dalian", "country_code": "cn"}
    response = client.post(REGIONS, json=body, headers=world.platform.headers)
    assert response.status_code == 422
    assert {tuple(e["loc"]) for e in response.json()["errors"]} == {
        ("body", "code"),
        ("body", "country_code"),
    }
