"""Administering users at the service layer (rolled back per test, on both databases): the
predicates pages ask before offering an action agree with the services that act, sign-ins are
listed and ended, and deactivation ends every credential."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.factories.core import (
    SiblingWorld,
    grant,
    make_api_key,
    make_member,
    make_sibling_world,
    make_user,
)

from civicloud.core import identity, roles
from civicloud.core.actor import Actor
from civicloud.core.audit import AuditRecord
from civicloud.core.db import utcnow
from civicloud.core.errors import CivicloudError, NotFound, PermissionDenied
from civicloud.core.identity import User, UserUpdate
from civicloud.core.roles import LastPlatformAdmin
from civicloud.core.services import Services


@pytest.fixture
def world(db_session: Session, core_services: Services) -> SiblingWorld:
    return make_sibling_world(db_session, core_services.passwords)


def actor_of(session: Session, user: User) -> Actor:
    return roles.load_actor(session=session, user=user, via="test")


def outcome(act: Callable[[], object]) -> type[CivicloudError] | None:
    try:
        act()
    except CivicloudError as exc:
        return type(exc)
    return None


def test_may_administer_agrees_with_the_service_for_every_pair(
    db_session: Session, core_services: Services, world: SiblingWorld
) -> None:
    # given the world's people, and a platform administrator homed in A's tenant, whom A's
    # administrator may see but not administer (they hold more)
    boss = make_member(
        db_session,
        core_services.passwords,
        home=world.a.tenant,
        role="platform_admin",
        platform=True,
    )
    people = [
        world.platform.user,
        world.a.admin.user,
        world.a.member.user,
        world.b.admin.user,
        world.b.member.user,
        boss.user,
    ]
    for acting in people:
        actor = actor_of(db_session, acting)
        for target in people:
            # when a page asks, and when the service is asked to change the user
            shown = identity.may_administer_user(session=db_session, actor=actor, user=target)
            with db_session.begin_nested() as attempt:
                refused = outcome(
                    partial(
                        identity.update_user,
                        session=db_session,
                        actor=actor,
                        user_id=target.id,
                        data=UserUpdate(display_name="改名"),
                        passwords=core_services.passwords,
                    )
                )
                attempt.rollback()
            # then they agree
            assert shown == (refused is None), (acting.username, target.username, refused)
    assert not identity.may_administer_user(
        session=db_session, actor=actor_of(db_session, world.a.admin.user), user=boss.user
    )


def test_may_revoke_agrees_with_the_service_for_every_binding(
    db_session: Session, core_services: Services, world: SiblingWorld
) -> None:
    operator = make_member(
        db_session, core_services.passwords, home=world.a.tenant, role="operator"
    )
    bindings = [
        b
        for b in (
            world.platform.binding,
            world.a.admin.binding,
            world.a.member.binding,
            world.b.member.binding,
            operator.binding,
        )
        if b is not None
    ]
    for acting in (world.platform.user, world.a.admin.user, operator.user, world.b.admin.user):
        actor = actor_of(db_session, acting)
        for binding in bindings:
            shown = roles.may_revoke_role(session=db_session, actor=actor, binding=binding)
            with db_session.begin_nested() as attempt:
                refused = outcome(
                    partial(
                        roles.revoke_role, session=db_session, actor=actor, binding_id=binding.id
                    )
                )
                attempt.rollback()
            # the last platform administrator's binding is a conflict, not a permission: the
            # page offers it and says why when it is refused
            if refused is LastPlatformAdmin:
                refused = None
            assert shown == (refused is None), (acting.username, binding.role_name, refused)
    # an operator may revoke nothing, their own role included
    own = operator.binding
    assert own is not None
    assert not roles.may_revoke_role(
        session=db_session, actor=actor_of(db_session, operator.user), binding=own
    )


def test_live_credentials_leave_out_what_ended_or_expired(
    db_session: Session, core_services: Services, world: SiblingWorld
) -> None:
    user = world.a.member.user
    live, _ = identity.start_web_session(
        session=db_session, user=user, hours=1, client_address="10.1.2.3", user_agent="UA  x"
    )
    ended, _ = identity.start_web_session(session=db_session, user=user, hours=1)
    ended.revoked_at = utcnow()
    old, _ = identity.start_web_session(session=db_session, user=user, hours=1)
    old.expires_at = utcnow() - timedelta(minutes=1)
    expired_key = make_api_key(db_session, user=user)
    expired_key.key.expires_at = utcnow() - timedelta(minutes=1)
    db_session.flush()
    admin = actor_of(db_session, world.a.admin.user)
    found = identity.live_credentials(session=db_session, actor=admin, user_id=user.id)
    assert [s.id for s in found.sessions] == [live.id]
    assert (live.client_address, live.user_agent) == ("10.1.2.3", "UA x")
    assert [k.id for k in found.api_keys] == [world.a.member.key.key.id]
    # the user sees their own; the other side's administrator sees nothing of them
    mine = identity.live_credentials(
        session=db_session, actor=actor_of(db_session, user), user_id=user.id
    )
    assert [s.id for s in mine.sessions] == [live.id]
    with pytest.raises(NotFound):
        identity.live_credentials(
            session=db_session, actor=actor_of(db_session, world.b.admin.user), user_id=user.id
        )


def test_ending_sign_ins_is_for_the_user_and_their_administrator_and_is_audited(
    db_session: Session, core_services: Services, world: SiblingWorld
) -> None:
    user = world.a.member.user
    first, _ = identity.start_web_session(session=db_session, user=user, hours=1)
    second, _ = identity.start_web_session(session=db_session, user=user, hours=1)
    third, _ = identity.start_web_session(session=db_session, user=user, hours=1)
    db_session.flush()
    # the other side's administrator: no such sign-in; a colleague with no admin: refused
    with pytest.raises(NotFound):
        identity.end_user_session(
            session=db_session, actor=actor_of(db_session, world.b.admin.user), session_id=first.id
        )
    colleague = make_user(db_session, core_services.passwords, tenant=world.a.child)
    grant(db_session, user=colleague, role="operator", tenant=world.a.tenant)
    with pytest.raises(PermissionDenied):
        identity.end_user_session(
            session=db_session, actor=actor_of(db_session, colleague), session_id=first.id
        )
    # the user ends one of their own; ending it again changes nothing
    me = actor_of(db_session, user)
    identity.end_user_session(session=db_session, actor=me, session_id=first.id)
    identity.end_user_session(session=db_session, actor=me, session_id=first.id)
    assert first.revoked_at is not None
    # the user ends every other one, keeping this browser
    assert (
        identity.end_user_sessions(session=db_session, actor=me, user_id=user.id, keep=third.id)
        == 1
    )
    assert second.revoked_at is not None
    assert third.revoked_at is None
    # the administrator ends the rest
    admin = actor_of(db_session, world.a.admin.user)
    assert identity.end_user_sessions(session=db_session, actor=admin, user_id=user.id) == 1
    assert third.revoked_at is not None
    records = db_session.scalars(
        select(AuditRecord)
        .where(
            AuditRecord.action == "core.session.end", AuditRecord.target == f"user:{user.username}"
        )
        .order_by(AuditRecord.seq)
    ).all()
    assert [(r.actor, r.outcome) for r in records] == [
        (user.username, "success"),
        (user.username, "success"),
        (world.a.admin.user.username, "success"),
    ]
    assert records[0].detail["session"] == str(first.id)


def test_deactivation_ends_sessions_and_revokes_keys_for_good(
    db_session: Session, core_services: Services, world: SiblingWorld
) -> None:
    user = world.a.member.user
    web_session, token = identity.start_web_session(session=db_session, user=user, hours=1)
    admin = actor_of(db_session, world.a.admin.user)
    off = UserUpdate(is_active=False)
    identity.update_user(
        session=db_session,
        actor=admin,
        user_id=user.id,
        data=off,
        passwords=core_services.passwords,
    )
    assert web_session.revoked_at is not None
    assert world.a.member.key.key.revoked_at is not None
    identity.update_user(
        session=db_session,
        actor=admin,
        user_id=user.id,
        data=UserUpdate(is_active=True),
        passwords=core_services.passwords,
    )
    # back on, with neither the old sign-in nor the old key
    assert identity.resolve_web_session(session=db_session, token=token) is None
    assert identity.resolve_api_key(session=db_session, token=world.a.member.key.token) is None
    reasons = db_session.scalars(
        select(AuditRecord.detail).where(
            AuditRecord.action == "core.apikey.revoke",
            AuditRecord.target == f"apikey:{world.a.member.key.key.prefix}",
        )
    ).all()
    assert [r["reason"] for r in reasons] == ["deactivated"]


def test_an_email_is_cleared_only_when_given_as_null(
    db_session: Session, core_services: Services, world: SiblingWorld
) -> None:
    user = world.a.member.user
    admin = actor_of(db_session, world.a.admin.user)
    for data, expected in (
        (UserUpdate(email="li@example.gov.cn"), "li@example.gov.cn"),
        (UserUpdate(display_name="李"), "li@example.gov.cn"),
        (UserUpdate(email=None), None),
    ):
        identity.update_user(
            session=db_session,
            actor=admin,
            user_id=user.id,
            data=data,
            passwords=core_services.passwords,
        )
        assert user.email == expected
