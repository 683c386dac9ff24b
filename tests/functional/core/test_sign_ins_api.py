"""A user's browser sign-ins over the API: listed and ended by the user or their administrator,
never by anyone else, each ending audited."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.factories.core import SiblingWorld

from civicloud.core import identity
from civicloud.core.audit import AuditRecord
from civicloud.core.services import Services


def sign_in_twice(services: Services, world: SiblingWorld) -> list[str]:
    """Two browser sessions of A's member; their ids."""
    with services.db.unit_of_work() as session:
        user = session.merge(world.a.member.user)
        made = [
            identity.start_web_session(
                session=session, user=user, hours=1, client_address="10.0.0.7", user_agent="UA"
            )[0]
            for _ in range(2)
        ]
        return [str(s.id) for s in made]


def test_an_administrator_lists_and_ends_a_users_sign_ins(
    client: TestClient, world: SiblingWorld, core_services: Services
) -> None:
    first, second = sign_in_twice(core_services, world)
    url = f"/api/v1/users/{world.a.member.user.id}/sessions"
    admin = world.a.admin.headers
    # the user and their administrator see both; the other side's administrator sees no user
    listed = client.get(url, headers=admin)
    assert listed.status_code == 200
    assert {s["id"] for s in listed.json()} >= {first, second}
    assert {s["client_address"] for s in listed.json()} == {"10.0.0.7"}
    assert "token_hash" not in listed.json()[0]
    assert client.get(url, headers=world.a.member.headers).status_code == 200
    assert client.get(url, headers=world.b.admin.headers).status_code == 404
    assert (
        client.delete(f"/api/v1/sessions/{first}", headers=world.b.admin.headers).status_code == 404
    )
    # one ended, then every other
    assert client.delete(f"/api/v1/sessions/{first}", headers=admin).status_code == 204
    assert {s["id"] for s in client.get(url, headers=admin).json()} == {second}
    ended = client.delete(url, headers=admin)
    assert ended.status_code == 200
    assert ended.json() == {"ended": 1}
    assert client.get(url, headers=admin).json() == []
    with core_services.db.unit_of_work(write=False) as session:
        records = session.scalars(
            select(AuditRecord).where(
                AuditRecord.action == "core.session.end",
                AuditRecord.target == f"user:{world.a.member.user.username}",
            )
        ).all()
    assert len(records) == 2
    assert all(r.actor == world.a.admin.user.username for r in records)
