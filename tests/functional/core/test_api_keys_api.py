"""``/api/v1/api-keys``: shown once, hashed at rest, expiring and revocable."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session
from tests.factories.core import SiblingWorld

from civicloud.core.db import utcnow
from civicloud.core.identity import ApiKey

KEYS = "/api/v1/api-keys"
Committed = Callable[[], AbstractContextManager[Session]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_new_key_is_shown_once_and_works(client: TestClient, world: SiblingWorld) -> None:
    # when a user creates a key for themselves
    response = client.post(
        KEYS, json={"name": "nightly import", "expires_in_days": 7}, headers=world.a.member.headers
    )
    # then the response carries the token, which starts with the visible prefix
    assert response.status_code == 201, response.text
    issued = response.json()
    assert issued["token"].startswith(f"cck_{issued['prefix']}_")
    assert issued["user_id"] == str(world.a.member.user.id)
    # and the token authenticates
    me = client.get("/api/v1/me", headers=bearer(issued["token"]))
    assert me.json()["via"] == f"api_key:{issued['prefix']}"
    # and listing shows the prefix but never the token again
    listed = client.get(KEYS, headers=world.a.member.headers)
    assert issued["token"] not in listed.text
    (shown,) = [k for k in listed.json() if k["id"] == issued["id"]]
    assert shown["prefix"] == issued["prefix"]
    assert "token" not in shown
    assert "secret_hash" not in shown
    assert shown["last_used_at"] is not None


def test_the_secret_is_hashed_at_rest(
    client: TestClient, world: SiblingWorld, committed: Committed
) -> None:
    issued = client.post(KEYS, json={"name": "audit"}, headers=world.a.member.headers).json()
    secret = issued["token"].split("_", 2)[2]
    with committed() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.prefix == issued["prefix"])).one()
        raw = session.execute(
            text("SELECT * FROM api_key WHERE prefix = :p"), {"p": issued["prefix"]}
        ).one()
    assert secret not in row.secret_hash
    assert all(secret not in str(value) for value in raw)
    assert len(row.secret_hash) == 64


def test_the_default_lifetime_comes_from_the_settings(
    client: TestClient, world: SiblingWorld
) -> None:
    issued = client.post(KEYS, json={"name": "default"}, headers=world.a.member.headers).json()
    created = issued["created_at"][:10]
    assert issued["expires_at"] > created


def test_a_wrong_secret_or_a_malformed_token_is_not_authenticated(
    client: TestClient, world: SiblingWorld
) -> None:
    token = world.a.member.key.token
    wrong = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    for attempt in (wrong, "cck_nope", "not-a-key", f"{token}x", "cck_" + "a" * 300):
        response = client.get("/api/v1/me", headers=bearer(attempt))
        assert response.status_code == 401, attempt
        assert response.headers["www-authenticate"] == "Bearer"
    basic = client.get("/api/v1/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401


def test_an_expired_key_stops_working(
    client: TestClient, world: SiblingWorld, committed: Committed
) -> None:
    # given a key whose expiry has passed
    with committed() as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == world.a.member.key.key.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    # then it is refused
    assert client.get("/api/v1/me", headers=world.a.member.headers).status_code == 401


def test_revoking_a_key_stops_it_at_once(client: TestClient, world: SiblingWorld) -> None:
    key = world.a.member.key
    assert client.get("/api/v1/me", headers=world.a.member.headers).status_code == 200
    # when the user revokes their own key
    response = client.delete(f"{KEYS}/{key.key.id}", headers=world.a.member.headers)
    # then it is marked revoked and no longer authenticates
    assert response.status_code == 200
    assert response.json()["revoked_at"] is not None
    assert client.get("/api/v1/me", headers=world.a.member.headers).status_code == 401


def test_an_admin_manages_the_keys_of_users_below_them(
    client: TestClient, world: SiblingWorld
) -> None:
    user_id = str(world.a.member.user.id)
    listed = client.get(KEYS, params={"user_id": user_id}, headers=world.a.admin.headers)
    assert [k["id"] for k in listed.json()] == [str(world.a.member.key.key.id)]
    issued = client.post(
        KEYS, params={"user_id": user_id}, json={"name": "for them"}, headers=world.a.admin.headers
    )
    assert issued.status_code == 201
    assert issued.json()["user_id"] == user_id
    revoked = client.delete(f"{KEYS}/{world.a.member.key.key.id}", headers=world.a.admin.headers)
    assert revoked.status_code == 200


def test_someone_elses_key_is_not_yours_to_see_or_revoke(
    client: TestClient, world: SiblingWorld
) -> None:
    # the city's viewer cannot see the province's admin, so not their keys either
    admin_keys = client.get(
        KEYS, params={"user_id": str(world.a.admin.user.id)}, headers=world.a.member.headers
    )
    assert admin_keys.status_code == 404
    revoke = client.delete(f"{KEYS}/{world.a.admin.key.key.id}", headers=world.a.member.headers)
    assert revoke.status_code == 404
    assert client.get("/api/v1/me", headers=world.a.admin.headers).status_code == 200
    # and B's admin cannot touch A's keys
    other_side = client.delete(f"{KEYS}/{world.a.member.key.key.id}", headers=world.b.admin.headers)
    assert other_side.status_code == 404
    assert client.get("/api/v1/me", headers=world.a.member.headers).status_code == 200


def test_the_first_call_of_a_new_key_may_be_a_change(
    client: TestClient, world: SiblingWorld
) -> None:
    # given a key never used before, when its first request changes something
    issued = client.post(KEYS, json={"name": "first"}, headers=world.a.admin.headers).json()
    response = client.patch(
        f"/api/v1/tenants/{world.a.child.id}",
        json={"name_en": "First"},
        headers=bearer(issued["token"]),
    )
    # then it succeeds (noting the key's use in the same transaction)
    assert response.status_code == 200, response.text
    listed = client.get(KEYS, headers=world.a.admin.headers).json()
    (used,) = [k for k in listed if k["id"] == issued["id"]]
    assert used["last_used_at"] is not None
