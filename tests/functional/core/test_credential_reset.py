"""A new password is a credential reset: it ends the user's sessions and revokes every API key
the old password could have made, each revocation audited."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.factories.core import SiblingWorld

from civicloud.core.audit import AuditRecord
from civicloud.core.services import Services

NEW_PASSWORD = "a fresh passphrase 2026"


def test_setting_a_password_revokes_the_users_api_keys(
    client: TestClient, world: SiblingWorld, core_services: Services
) -> None:
    member, admin = world.a.member, world.a.admin
    # given the member made a second key of their own, and both work
    made = client.post("/api/v1/api-keys", json={"name": "laptop"}, headers=member.headers)
    assert made.status_code == 201, made.text
    second = {"Authorization": f"Bearer {made.json()['token']}"}
    assert client.get("/api/v1/me", headers=second).status_code == 200
    # when their administrator sets a new password for them
    changed = client.patch(
        f"/api/v1/users/{member.user.id}", json={"password": NEW_PASSWORD}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    # then neither key works any more, and both are listed as revoked
    assert client.get("/api/v1/me", headers=member.headers).status_code == 401
    assert client.get("/api/v1/me", headers=second).status_code == 401
    listed = client.get(
        "/api/v1/api-keys", params={"user_id": str(member.user.id)}, headers=admin.headers
    ).json()
    assert listed
    assert all(k["revoked_at"] is not None for k in listed)
    # and each revocation is on the record, under the user's tenant, saying why
    prefixes = {k["prefix"] for k in listed}
    with core_services.db.unit_of_work(write=False) as session:
        records = session.scalars(
            select(AuditRecord).where(
                AuditRecord.action == "core.apikey.revoke",
                AuditRecord.target.in_([f"apikey:{p}" for p in prefixes]),
            )
        ).all()
        update = session.scalars(
            select(AuditRecord)
            .where(
                AuditRecord.action == "core.user.update",
                AuditRecord.target == f"user:{member.user.username}",
            )
            .order_by(AuditRecord.seq.desc())
        ).first()
    assert {r.target.removeprefix("apikey:") for r in records} == prefixes
    assert all(r.detail["reason"] == "password_set" for r in records)
    assert all(r.tenant_id == member.user.tenant_id for r in records)
    assert all(r.actor == admin.user.username for r in records)
    assert update is not None
    assert sorted(update.detail["api_keys_revoked"]) == sorted(prefixes)
    # and the administrator's own key, and the other side's, are untouched
    assert client.get("/api/v1/me", headers=admin.headers).status_code == 200
    assert client.get("/api/v1/me", headers=world.b.member.headers).status_code == 200


def test_other_changes_to_a_user_leave_the_keys_alone(
    client: TestClient, world: SiblingWorld
) -> None:
    member, admin = world.a.member, world.a.admin
    renamed = client.patch(
        f"/api/v1/users/{member.user.id}", json={"display_name": "新名字"}, headers=admin.headers
    )
    assert renamed.status_code == 200
    assert client.get("/api/v1/me", headers=member.headers).status_code == 200


def test_a_refused_password_change_revokes_nothing(client: TestClient, world: SiblingWorld) -> None:
    member, admin = world.a.member, world.a.admin
    weak = client.patch(
        f"/api/v1/users/{member.user.id}", json={"password": "short"}, headers=admin.headers
    )
    assert weak.status_code == 422
    # (nor may a tenant admin of the other side touch this user at all)
    other = client.patch(
        f"/api/v1/users/{member.user.id}",
        json={"password": NEW_PASSWORD},
        headers=world.b.admin.headers,
    )
    assert other.status_code == 404
    assert client.get("/api/v1/me", headers=member.headers).status_code == 200
