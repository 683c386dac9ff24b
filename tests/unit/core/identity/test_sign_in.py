"""Password sign-in, lockout and browser sessions, at the service layer (rolled back per test)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from tests.factories.core import PASSWORD, SYSTEM, make_tenant, make_user

from civicloud.core import identity
from civicloud.core.audit import AuditRecord
from civicloud.core.config import AuthSettings
from civicloud.core.db import utcnow
from civicloud.core.identity import Passwords, User, WebSession
from civicloud.core.services import Services


@pytest.fixture
def user(db_session: Session, core_services: Services) -> User:
    return make_user(db_session, core_services.passwords, tenant=make_tenant(db_session))


def sign_in(session: Session, services: Services, username: str, password: str) -> User | None:
    return identity.authenticate_password(
        session=session, username=username, password=password, passwords=services.passwords
    )


def login_records(session: Session, username: str) -> list[AuditRecord]:
    query = select(AuditRecord).where(
        AuditRecord.action == "core.session.login", AuditRecord.target == f"user:{username}"
    )
    return list(session.scalars(query.order_by(AuditRecord.seq)))


def test_the_right_password_signs_in_and_is_audited(
    db_session: Session, core_services: Services, user: User
) -> None:
    # when the user signs in, with stray spaces and capitals in the username
    found = sign_in(db_session, core_services, f"  {user.username.upper()} ", PASSWORD)
    # then it is them, the time is noted, and the login is on the record
    assert found is not None
    assert found.id == user.id
    assert found.last_login_at is not None
    assert [r.outcome for r in login_records(db_session, user.username)] == ["success"]


def test_a_wrong_password_or_unknown_user_is_refused_and_audited(
    db_session: Session, core_services: Services, user: User
) -> None:
    assert sign_in(db_session, core_services, user.username, "wrong password!") is None
    assert sign_in(db_session, core_services, "nobody-at-all", PASSWORD) is None
    assert user.failed_logins == 1
    assert [r.outcome for r in login_records(db_session, user.username)] == ["denied"]
    assert [r.detail["reason"] for r in login_records(db_session, "nobody-at-all")] == [
        "unknown user"
    ]


def test_failures_never_lock_the_account_and_the_next_sign_in_reports_them(
    db_session: Session, core_services: Services, user: User
) -> None:
    # given many wrong passwords in a row (from wherever: the service does not know addresses)
    for _ in range(12):
        assert sign_in(db_session, core_services, user.username, "wrong password!") is None
    assert user.failed_logins == 12
    # when the right password comes, then it signs in: a guesser cannot lock the owner out
    assert sign_in(db_session, core_services, user.username, PASSWORD) is user
    # and the sign-in says how many failures came before it; the count starts again
    assert login_records(db_session, user.username)[-1].detail["failures_before"] == 12
    assert user.failed_logins == 0


def test_an_inactive_user_cannot_sign_in(
    db_session: Session, core_services: Services, user: User
) -> None:
    user.is_active = False
    assert sign_in(db_session, core_services, user.username, PASSWORD) is None


def test_a_user_without_a_password_cannot_sign_in_with_any(
    db_session: Session, core_services: Services
) -> None:
    keyless = make_user(
        db_session, core_services.passwords, tenant=make_tenant(db_session), password=None
    )
    assert keyless.password_hash is None
    assert sign_in(db_session, core_services, keyless.username, "") is None
    assert sign_in(db_session, core_services, keyless.username, PASSWORD) is None


def test_signing_in_upgrades_a_hash_made_with_weaker_settings(
    db_session: Session, core_services: Services, user: User
) -> None:
    # given the installation now hashes with a higher cost
    stronger = Passwords(
        AuthSettings(argon2_time_cost=2, argon2_memory_kib=1024, argon2_parallelism=1)
    )
    old_hash = user.password_hash
    # when the user signs in
    found = identity.authenticate_password(
        session=db_session, username=user.username, password=PASSWORD, passwords=stronger
    )
    # then the stored hash is replaced by one of the new cost
    assert found is not None
    assert user.password_hash != old_hash
    assert user.password_hash is not None
    assert not stronger.needs_rehash(user.password_hash)


def test_a_session_token_finds_its_user_until_it_ends(db_session: Session, user: User) -> None:
    web_session, token = identity.start_web_session(session=db_session, user=user, hours=1)
    # the token itself is not stored
    assert token not in web_session.token_hash
    assert identity.resolve_web_session(session=db_session, token=token) is user
    assert identity.resolve_web_session(session=db_session, token=token + "x") is None
    assert identity.resolve_web_session(session=db_session, token="") is None
    assert identity.resolve_web_session(session=db_session, token="x" * 129) is None
    # when the user signs out, then the token is dead and the logout is on the record
    identity.end_web_session(session=db_session, token=token)
    assert identity.resolve_web_session(session=db_session, token=token) is None
    actions = db_session.scalars(
        select(AuditRecord.action).where(AuditRecord.target == f"user:{user.username}")
    ).all()
    assert "core.session.logout" in actions
    identity.end_web_session(session=db_session, token="unknown")


def test_an_expired_session_or_an_inactive_user_does_not_resolve(
    db_session: Session, core_services: Services, user: User
) -> None:
    expired, old = identity.start_web_session(session=db_session, user=user, hours=1)
    db_session.execute(
        update(WebSession)
        .where(WebSession.id == expired.id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db_session.expire_all()
    assert identity.resolve_web_session(session=db_session, token=old) is None
    _, fresh = identity.start_web_session(session=db_session, user=user, hours=1)
    identity.update_user(
        session=db_session,
        actor=SYSTEM,
        user_id=user.id,
        data=identity.UserUpdate(is_active=False),
        passwords=core_services.passwords,
    )
    assert identity.resolve_web_session(session=db_session, token=fresh) is None


def test_setting_a_password_starts_the_failure_count_again(
    db_session: Session, core_services: Services, user: User
) -> None:
    user.failed_logins = 3
    identity.update_user(
        session=db_session,
        actor=SYSTEM,
        user_id=user.id,
        data=identity.UserUpdate(password="a brand new passphrase"),
        passwords=core_services.passwords,
    )
    assert user.failed_logins == 0
    assert sign_in(db_session, core_services, user.username, "a brand new passphrase") is user


def test_a_new_password_ends_the_sessions_opened_with_the_old_one(
    db_session: Session, core_services: Services, user: User
) -> None:
    # given the user is signed in
    _, token = identity.start_web_session(session=db_session, user=user, hours=1)
    assert identity.resolve_web_session(session=db_session, token=token) is not None
    # when an administrator sets a new password
    identity.update_user(
        session=db_session,
        actor=SYSTEM,
        user_id=user.id,
        data=identity.UserUpdate(password="a whole new passphrase"),
        passwords=core_services.passwords,
    )
    # then the old session no longer signs anyone in
    assert identity.resolve_web_session(session=db_session, token=token) is None


def test_a_binding_whose_tenant_vanished_grants_nothing(core_services: Services) -> None:
    from sqlalchemy import text

    from civicloud.core.roles import RoleBinding, load_actor

    if not core_services.db.is_sqlite:
        pytest.skip("PostgreSQL's foreign keys cannot be switched off by a client: no orphan")
    db = core_services.db
    # given a user bound at a tenant whose row is then deleted with foreign keys switched off
    with db.unit_of_work() as session:
        home = make_tenant(session)
        tenant = make_tenant(session, parent=home)
        user = make_user(session, core_services.passwords, tenant=home)
        binding = RoleBinding(
            user_id=user.id, role_name="tenant_admin", tenant_id=tenant.id, granted_by="test"
        )
        session.add(binding)
    raw = db.engine.raw_connection()
    try:
        raw.execute("PRAGMA foreign_keys = OFF")
        raw.execute("DELETE FROM tenant WHERE id = ?", (tenant.id.hex,))
        raw.commit()
    finally:
        raw.execute("PRAGMA foreign_keys = ON")
        raw.close()
    try:
        # when the user's actor is built
        with db.unit_of_work(write=False) as session:
            actor = load_actor(session=session, user=user, via="test")
        # then that binding is no grant at all, least of all a platform-wide one
        assert not actor.is_platform_wide
        assert all(g.tenant_id != tenant.id for g in actor.grants)
    finally:
        with db.engine.begin() as connection:
            connection.execute(
                text("DELETE FROM role_binding WHERE id = :id"), {"id": binding.id.hex}
            )
