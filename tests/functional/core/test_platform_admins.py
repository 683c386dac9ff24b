"""The installation always keeps a platform administrator: the last one can be neither revoked
nor deactivated, through the API or by the service, and racing revocations leave one.

Each test has a database of its own, since the shared one holds every other test's platform
administrators.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from tests.factories.core import Member, make_member, make_tenant

from civicloud.app import create_app
from civicloud.core import identity, roles
from civicloud.core.errors import CivicloudError
from civicloud.core.roles import LastPlatformAdmin
from civicloud.core.services import Services
from civicloud.core.tenants import TenantKind

BASE_URL = "https://testserver"


@dataclass(frozen=True)
class Installation:
    """A fresh installation with two platform administrators and a tenant admin."""

    services: Services
    first: Member
    second: Member
    tenant_admin: Member


@pytest.fixture
def installation(fresh_services: Callable[[], Services]) -> Installation:
    services = fresh_services()
    with services.db.unit_of_work() as session:
        root = make_tenant(session, kind=TenantKind.COUNTRY)
        first = make_member(
            session, services.passwords, home=root, role="platform_admin", platform=True
        )
        second = make_member(
            session, services.passwords, home=root, role="platform_admin", platform=True
        )
        tenant_admin = make_member(session, services.passwords, home=root, role="tenant_admin")
    return Installation(services, first, second, tenant_admin)


def admins(services: Services) -> int:
    with services.db.unit_of_work(write=False) as session:
        return roles.count_platform_admins(session=session)


def test_the_last_platform_administrator_cannot_revoke_their_own_role(
    installation: Installation,
) -> None:
    first, second = installation.first, installation.second
    assert first.binding is not None
    assert second.binding is not None
    with TestClient(create_app(services=installation.services), base_url=BASE_URL) as client:
        # given one of two administrators has given up the role
        gone = client.delete(f"/api/v1/role-bindings/{second.binding.id}", headers=first.headers)
        assert gone.status_code == 204
        # when the remaining one revokes their own
        refused = client.delete(
            f"/api/v1/role-bindings/{first.binding.id}",
            headers={**first.headers, "Accept-Language": "zh-CN"},
        )
        # then it is a conflict, said in the caller's language, and the role stays
        assert refused.status_code == 409
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "core.last_platform_admin"
        assert "平台管理员" in refused.json()["detail"]
        english = client.delete(f"/api/v1/role-bindings/{first.binding.id}", headers=first.headers)
        assert "without a platform administrator" in english.json()["detail"]
        assert client.get("/api/v1/me", headers=first.headers).json()["roles"]
    assert admins(installation.services) == 1


def test_the_last_platform_administrator_cannot_be_deactivated(
    installation: Installation,
) -> None:
    first, second = installation.first, installation.second
    with TestClient(create_app(services=installation.services), base_url=BASE_URL) as client:
        # given the second administrator is deactivated (that is allowed: one remains)
        off = client.patch(
            f"/api/v1/users/{second.user.id}", json={"is_active": False}, headers=first.headers
        )
        assert off.status_code == 200
        # when the first deactivates themselves, then it is refused and they stay active
        refused = client.patch(
            f"/api/v1/users/{first.user.id}", json={"is_active": False}, headers=first.headers
        )
        assert refused.status_code == 409
        assert refused.json()["code"] == "core.last_platform_admin"
        assert client.get("/api/v1/me", headers=first.headers).json()["user"]["is_active"]
        # and an inactive administrator's binding does not count: revoking it is fine
        assert second.binding is not None
        revoked = client.delete(f"/api/v1/role-bindings/{second.binding.id}", headers=first.headers)
        assert revoked.status_code == 204
    assert admins(installation.services) == 1


def test_other_bindings_and_users_come_and_go_as_before(installation: Installation) -> None:
    # given a lone platform administrator
    services = installation.services
    with services.db.unit_of_work() as session:
        assert installation.second.binding is not None
        roles.revoke_role(
            session=session,
            actor=roles.load_actor(session=session, user=installation.first.user, via="test"),
            binding_id=installation.second.binding.id,
        )
    # then a tenant-scoped binding and a non-administrator can still be revoked and deactivated
    with TestClient(create_app(services=services), base_url=BASE_URL) as client:
        binding = installation.tenant_admin.binding
        assert binding is not None
        first = installation.first.headers
        assert (
            client.delete(f"/api/v1/role-bindings/{binding.id}", headers=first).status_code == 204
        )
        off = client.patch(
            f"/api/v1/users/{installation.tenant_admin.user.id}",
            json={"is_active": False},
            headers=first,
        )
        assert off.status_code == 200


def _waiting_on_a_lock(services: Services) -> bool:
    """Whether some connection to this PostgreSQL database waits on a row or table lock."""
    with services.db.engine.connect() as connection:
        return bool(
            connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        )


def test_two_administrators_revoking_each_other_at_once_leave_one(
    installation: Installation,
) -> None:
    services = installation.services
    first, second = installation.first, installation.second
    assert first.binding is not None
    assert second.binding is not None
    outcome: dict[str, object] = {}
    # (each signed in with the role already: their actors were built before either change)
    with services.db.unit_of_work(write=False) as session:
        as_first = roles.load_actor(session=session, user=first.user, via="test")
        as_second = roles.load_actor(session=session, user=second.user, via="test")

    def second_revokes_first() -> None:
        try:
            with services.db.unit_of_work() as session:
                roles.revoke_role(session=session, actor=as_second, binding_id=first.binding.id)
            outcome["second"] = "revoked"
        except CivicloudError as exc:
            outcome["second"] = exc

    # given the first administrator's revocation of the second is under way, not committed
    with services.db.unit_of_work() as session:
        roles.revoke_role(session=session, actor=as_first, binding_id=second.binding.id)
        # when the second revokes the first meanwhile (and, on PostgreSQL, is seen to wait)
        racer = threading.Thread(target=second_revokes_first)
        racer.start()
        if not services.db.is_sqlite:
            for _ in range(600):
                if not racer.is_alive() or _waiting_on_a_lock(services):
                    break
                time.sleep(0.05)  # polling: the second transaction has not reached the lock yet
    racer.join(timeout=120)
    # then the one that came second is refused, and one administrator is left
    assert isinstance(outcome["second"], LastPlatformAdmin)
    assert admins(services) == 1


@pytest.mark.parametrize("rounds", [6])
def test_administrators_racing_to_revoke_each_other_never_leave_none(
    installation: Installation, rounds: int
) -> None:
    services = installation.services
    first, second = installation.first, installation.second
    for _ in range(rounds):
        # given both hold the role
        with services.db.unit_of_work() as session:
            held = {b.user_id for b in roles.list_bindings(session=session, actor=_system())}
            for member in (first, second):
                if member.user.id not in held:
                    roles.grant_role(
                        session=session,
                        actor=_system(),
                        data=roles.RoleBindingCreate(
                            user_id=member.user.id, role_name="platform_admin", tenant_id=None
                        ),
                    )
        with services.db.unit_of_work(write=False) as session:
            bindings = {
                b.user_id: b.id
                for b in roles.list_bindings(session=session, actor=_system())
                if b.tenant_id is None
            }
            signed_in = {
                m.user.id: roles.load_actor(session=session, user=m.user, via="t")
                for m in (first, second)
            }
        # when each revokes the other at the same moment
        results = _revoke_each_other(services, signed_in, bindings, first, second)
        # then exactly one succeeds, the other is refused, and one administrator is left
        assert results.count("revoked") == 1, results
        assert any(isinstance(r, LastPlatformAdmin) for r in results), results
        assert admins(services) == 1


def _revoke_each_other(
    services: Services,
    signed_in: dict[uuid.UUID, roles.Actor],
    bindings: dict[uuid.UUID, uuid.UUID],
    first: Member,
    second: Member,
) -> list[object]:
    """Run "first revokes second" and "second revokes first" in two threads released together."""
    start = threading.Barrier(2)
    results: list[object] = []

    def revoke(by: Member, target: Member) -> None:
        actor = signed_in[by.user.id]
        start.wait()
        try:
            with services.db.unit_of_work() as session:
                roles.revoke_role(session=session, actor=actor, binding_id=bindings[target.user.id])
            results.append("revoked")
        except CivicloudError as exc:
            results.append(exc)

    threads = [
        threading.Thread(target=revoke, args=(first, second)),
        threading.Thread(target=revoke, args=(second, first)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_the_service_refuses_to_deactivate_the_last_administrator(
    installation: Installation,
) -> None:
    services = installation.services
    with services.db.unit_of_work() as session:
        identity.update_user(
            session=session,
            actor=_system(),
            user_id=installation.second.user.id,
            data=identity.UserUpdate(is_active=False),
            passwords=services.passwords,
        )
    with pytest.raises(LastPlatformAdmin), services.db.unit_of_work() as session:
        identity.update_user(
            session=session,
            actor=_system(),
            user_id=installation.first.user.id,
            data=identity.UserUpdate(is_active=False),
            passwords=services.passwords,
        )
    assert admins(services) == 1


def _system() -> roles.Actor:
    return roles.Actor.system("tests")
