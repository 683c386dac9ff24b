"""The administrator's pages for users, roles and sign-ins, on both databases: editing,
deactivating and reactivating a user, setting a password, creating a role, and ending sign-ins,
each consequential step confirmed first, and every action shown only to whom may take it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from html.parser import HTMLParser

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from tests.factories.core import PASSWORD, SiblingWorld, make_member, make_tenant, unique
from tests.functional.web.helpers import HTML, Browser, text_of

from civicloud.app import create_app
from civicloud.core import identity, roles
from civicloud.core.audit import AuditRecord
from civicloud.core.identity import User
from civicloud.core.services import Services
from civicloud.web.pages.console import browser_of

BASE_URL = "https://testserver"
NEW_PASSWORD = "a brand-new passphrase 2026"


@pytest.fixture
def browsers(api_app: FastAPI) -> Iterator[list[Browser]]:
    """Browsers over the application, each with cookies of its own (not entered: the lifespan
    would dispose the shared engine's pool)."""
    opened: list[TestClient] = []

    def make() -> Browser:
        client = TestClient(api_app, base_url=BASE_URL, headers=HTML)
        opened.append(client)
        return Browser(client)

    made = [make() for _ in range(3)]
    yield made
    for client in opened:
        client.close()


def confirmed(browser: Browser, action: str, data: dict[str, str] | None = None) -> httpx2.Response:
    """Send ``action``'s form, then the confirmation it answers with (its one-time token and
    all); the confirmation's answer."""
    asked = browser.submit(action, data)
    assert asked.status_code == 200, asked.text
    [values] = [v for a, v in forms_of(asked.text) if a == action.split("?", maxsplit=1)[0]]
    return browser.submit(action, {k: v for k, v in values.items() if k != "csrf_token"})


def signed_in(browser: Browser, user: User) -> Browser:
    reply = browser.sign_in(user.username, PASSWORD)
    assert reply.status_code == 303, reply.text
    return browser


def fresh_user(services: Services, world: SiblingWorld, role: str = "viewer") -> User:
    """A user homed in A's city, with one API key."""
    with services.db.unit_of_work() as session:
        home = session.merge(world.a.child)
        return make_member(session, services.passwords, home=home, role=role).user


def user_row(services: Services, user_id: uuid.UUID) -> User:
    with services.db.unit_of_work(write=False) as session:
        found = session.get(User, user_id)
        assert found is not None
        session.expunge(found)
        return found


def audits(services: Services, action: str, target: str) -> list[AuditRecord]:
    with services.db.unit_of_work(write=False) as session:
        found = session.scalars(
            select(AuditRecord)
            .where(AuditRecord.action == action, AuditRecord.target == target)
            .order_by(AuditRecord.seq)
        ).all()
        for record in found:
            session.expunge(record)
        return list(found)


# --- users ----------------------------------------------------------------------------------


def test_creating_a_user_leads_on_to_granting_them_a_role(
    browsers: list[Browser], world: SiblingWorld, core_services: Services
) -> None:
    admin = signed_in(browsers[0], world.a.admin.user)
    username = unique("new")
    # when A's administrator creates a user
    made = admin.submit(
        "/console/users",
        {
            "username": username,
            "display_name": "新同事",
            "email": "",
            "password": "",
            "tenant_id": str(world.a.child.id),
        },
    )
    # then the answer is the grant form, with that user chosen
    assert made.status_code == 303
    location = made.headers["location"]
    assert location.startswith("/console/roles?user_id=")
    page = admin.client.get(location)
    assert page.status_code == 200
    chosen = re.search(r'<option value="([0-9a-f-]+)" selected>([^<]*)</option>', page.text)
    assert chosen is not None
    assert username in chosen.group(2)
    assert "The user was created" in page.text or "用户已创建" in page.text


def test_an_administrator_edits_a_users_name_and_clears_their_address(
    browsers: list[Browser], world: SiblingWorld, core_services: Services
) -> None:
    admin = signed_in(browsers[0], world.a.admin.user)
    user = fresh_user(core_services, world)
    # given the user has an address
    assert admin.submit(
        f"/console/users/{user.id}", {"display_name": "王五", "email": "wang@example.gov.cn"}
    ).is_redirect
    assert user_row(core_services, user.id).email == "wang@example.gov.cn"
    # when the form is sent with an empty one
    saved = admin.submit(f"/console/users/{user.id}", {"display_name": "王五五", "email": ""})
    # then the name changed and the address is gone
    assert saved.status_code == 303
    row = user_row(core_services, user.id)
    assert (row.display_name, row.email) == ("王五五", None)
    # and a bad address is asked for again, nothing saved
    bad = admin.submit(f"/console/users/{user.id}", {"display_name": "x", "email": "no-at"})
    assert bad.status_code == 422
    assert user_row(core_services, user.id).display_name == "王五五"


def test_deactivation_is_confirmed_then_ends_every_credential(
    browsers: list[Browser], world: SiblingWorld, core_services: Services
) -> None:
    user = fresh_user(core_services, world)
    with core_services.db.unit_of_work() as session:
        key = identity.issue_api_key(
            session=session,
            actor=roles.load_actor(session=session, user=session.merge(user), via="test"),
            data=identity.ApiKeyCreate(name="script"),
            default_days=30,
        )
    theirs = signed_in(browsers[1], user)
    admin = signed_in(browsers[0], world.a.admin.user)
    # when the administrator asks to deactivate them
    asked = admin.submit(f"/console/users/{user.id}/deactivate")
    # then a confirmation repeats who, where, and what ends, and nothing has happened yet
    assert asked.status_code == 200
    said = text_of(asked.text)
    assert user.username in said
    assert world.a.child.name_zh in said or world.a.child.name_en in said
    assert re.search(r"(Sign-ins that end|结束的登录) 1 ", said), said
    assert re.search(r"(API keys revoked|吊销的 API 密钥) 2 ", said), said
    assert user_row(core_services, user.id).is_active
    # when it is confirmed
    [values] = [v for a, v in forms_of(asked.text) if a == f"/console/users/{user.id}/deactivate"]
    assert values["confirm"] == "yes"
    confirmation = {k: v for k, v in values.items() if k != "csrf_token"}
    done = admin.submit(f"/console/users/{user.id}/deactivate", confirmation)
    assert done.status_code == 303
    # and the same confirmation sent again does nothing more: it was already sent
    again = admin.submit(f"/console/users/{user.id}/deactivate", confirmation)
    assert again.status_code == 409
    # then the account is off, its browser signed out and its keys revoked
    assert not user_row(core_services, user.id).is_active
    assert theirs.client.get("/console", follow_redirects=False).status_code == 303
    bearer = {"Authorization": f"Bearer {key.token}"}
    assert admin.client.get("/api/v1/me", headers=bearer).status_code == 401
    [record] = audits(core_services, "core.user.update", f"user:{user.username}")[-1:]
    assert record.detail["sessions_ended"] == 1
    assert len(record.detail["api_keys_revoked"]) == 2
    # and reactivation lets them sign in again, the keys staying revoked
    assert admin.submit(f"/console/users/{user.id}/reactivate").status_code == 303
    assert user_row(core_services, user.id).is_active
    assert browsers[2].sign_in(user.username, PASSWORD).status_code == 303
    assert admin.client.get("/api/v1/me", headers=bearer).status_code == 401


def test_a_password_reset_repeats_what_ends_and_asks_again_for_a_weak_one(
    browsers: list[Browser], world: SiblingWorld, core_services: Services
) -> None:
    user = fresh_user(core_services, world)
    theirs = signed_in(browsers[1], user)
    admin = signed_in(browsers[0], world.a.admin.user)
    # the page says whom, where and what ends before anything is typed
    page = admin.client.get(f"/console/users/{user.id}/password?lang=en")
    assert page.status_code == 200
    said = text_of(page.text)
    assert user.username in said
    assert "Sign-ins that end 1" in said
    assert "API keys revoked 1" in said
    # a weak password is refused on the page, the user still signed in
    assert theirs.client.get("/console", follow_redirects=False).status_code == 200
    # a good one ends the sign-in
    [values] = [v for a, v in forms_of(page.text) if a.endswith("/password")]
    token = values["form_token"]
    weak = admin.submit(
        f"/console/users/{user.id}/password", {"password": "aaaaaaaaaaaa", "form_token": token}
    )
    assert weak.status_code == 422
    # a good one ends the sign-in (the token a refused form carried is still good)
    done = admin.submit(
        f"/console/users/{user.id}/password", {"password": NEW_PASSWORD, "form_token": token}
    )
    assert done.status_code == 303
    # and the same form sent twice sets nothing twice
    twice = admin.submit(
        f"/console/users/{user.id}/password", {"password": NEW_PASSWORD, "form_token": token}
    )
    assert twice.status_code == 409
    assert theirs.client.get("/console", follow_redirects=False).status_code == 303
    assert browsers[2].sign_in(user.username, NEW_PASSWORD).status_code == 303


def test_another_tenants_administrator_gets_no_confirmation_page(
    browsers: list[Browser], world: SiblingWorld, core_services: Services
) -> None:
    user = fresh_user(core_services, world)
    other = signed_in(browsers[0], world.b.admin.user)
    assert other.submit(f"/console/users/{user.id}/deactivate").status_code == 404
    assert other.client.get(f"/console/users/{user.id}/password").status_code == 404
    assert user_row(core_services, user.id).is_active


def test_the_last_platform_administrator_is_not_deactivated_and_the_page_says_why(
    fresh_services: Callable[[], Services],
) -> None:
    # given an installation whose one platform administrator is signed in
    services = fresh_services()
    with services.db.unit_of_work() as session:
        root = make_tenant(session)
        only = make_member(
            session, services.passwords, home=root, role="platform_admin", platform=True
        ).user
    client = TestClient(create_app(services=services), base_url=BASE_URL, headers=HTML)
    try:
        admin = signed_in(Browser(client), only)
        # when they deactivate themselves, and confirm it
        refused = confirmed(admin, f"/console/users/{only.id}/deactivate?lang=en")
        # then the user's page is back, refusing it with the reason
        assert refused.status_code == 409
        assert "without a platform administrator" in text_of(refused.text)
        with services.db.unit_of_work(write=False) as session:
            still = session.get(User, only.id)
            assert still is not None
            assert still.is_active
    finally:
        client.close()


# --- roles ----------------------------------------------------------------------------------


def test_a_platform_administrator_creates_a_role_from_the_registered_permissions(
    browsers: list[Browser], world: SiblingWorld, core_services: Services
) -> None:
    admin = signed_in(browsers[0], world.platform.user)
    page = admin.client.get("/console/roles?lang=en")
    # the form lists each permission with its description
    assert 'name="permissions" value="core.audit.read"' in page.text
    assert "Read the audit log" in page.text
    name = unique("water").replace("-", "_")
    made = admin.client.post(
        "/console/roles",
        data={
            "csrf_token": admin.csrf(),
            "name": name,
            "name_zh": "水务计费",
            "name_en": "Water billing",
            "permissions": ["core.tenant.read", "core.user.read"],
        },
        follow_redirects=False,
    )
    assert made.status_code == 303
    with core_services.db.unit_of_work(write=False) as session:
        role = roles.get_role_or_raise(session=session, name=name)
        assert sorted(role.permissions) == ["core.tenant.read", "core.user.read"]
    # none chosen is asked for again; a taken name is a conflict on the form
    none = admin.submit(
        "/console/roles?lang=en", {"name": unique("r").replace("-", "_"), "name_zh": "甲"}
    )
    assert none.status_code == 422
    assert "Choose at least one permission." in none.text
    again = admin.client.post(
        "/console/roles?lang=en",
        data={
            "csrf_token": admin.csrf(),
            "name": name,
            "name_zh": "水务",
            "name_en": "Water",
            "permissions": "core.tenant.read",
        },
        follow_redirects=False,
    )
    assert again.status_code == 409
    assert "A role of this name exists already" in again.text


def test_a_tenant_administrator_is_offered_no_role_creation(
    browsers: list[Browser], world: SiblingWorld
) -> None:
    admin = signed_in(browsers[0], world.a.admin.user)
    assert 'action="/console/roles"' not in admin.client.get("/console/roles").text
    refused = admin.submit(
        "/console/roles",
        {"name": "sneaky_role", "name_zh": "甲", "name_en": "A", "permissions": "core.audit.read"},
    )
    assert refused.status_code == 403


def test_revoking_a_role_is_confirmed_first(
    browsers: list[Browser], world: SiblingWorld, core_services: Services
) -> None:
    user = fresh_user(core_services, world)
    with core_services.db.unit_of_work(write=False) as session:
        [binding] = roles.list_bindings(
            session=session, actor=roles.Actor.system(), user_id=user.id
        )
    admin = signed_in(browsers[0], world.a.admin.user)
    asked = admin.submit(f"/console/roles/bindings/{binding.id}/revoke")
    assert asked.status_code == 200
    assert user.username in asked.text
    done = confirmed(admin, f"/console/roles/bindings/{binding.id}/revoke")
    assert done.status_code == 303
    with core_services.db.unit_of_work(write=False) as session:
        assert not roles.list_bindings(session=session, actor=roles.Actor.system(), user_id=user.id)


# --- sign-ins -------------------------------------------------------------------------------


def test_a_user_sees_and_ends_their_own_other_sign_ins(
    browsers: list[Browser], world: SiblingWorld, core_services: Services
) -> None:
    user = fresh_user(core_services, world)
    here = signed_in(browsers[0], user)
    there = signed_in(browsers[1], user)
    # the overview leads to "My sign-ins", which lists both and marks this browser
    assert 'href="/console/sign-ins"' in here.client.get("/console").text
    page = here.client.get("/console/sign-ins?lang=en")
    assert page.status_code == 200
    assert page.text.count('action="/console/sign-ins/') == 2
    assert "This browser" in page.text
    # ending every other one is confirmed, then signs the other browser out, not this one
    asked = here.submit(f"/console/users/{user.id}/sign-ins/end?lang=en")
    assert asked.status_code == 200
    assert "Sign-ins that end 1" in text_of(asked.text)
    done = confirmed(here, f"/console/users/{user.id}/sign-ins/end")
    assert done.status_code == 303
    assert there.client.get("/console", follow_redirects=False).status_code == 303
    assert here.client.get("/console", follow_redirects=False).status_code == 200
    [record] = audits(core_services, "core.session.end", f"user:{user.username}")
    assert record.actor == user.username
    assert record.detail["sessions"] == 1


def test_an_administrator_ends_one_sign_in_of_a_user(
    browsers: list[Browser], world: SiblingWorld, core_services: Services
) -> None:
    user = fresh_user(core_services, world)
    theirs = signed_in(browsers[1], user)
    admin = signed_in(browsers[0], world.a.admin.user)
    page = admin.client.get(f"/console/users/{user.id}")
    [session_id] = re.findall(r'action="/console/sign-ins/([0-9a-f-]+)/end"', page.text)
    asked = admin.submit(f"/console/sign-ins/{session_id}/end")
    assert asked.status_code == 200
    assert user.username in asked.text
    assert theirs.client.get("/console", follow_redirects=False).status_code == 200
    done = confirmed(admin, f"/console/sign-ins/{session_id}/end")
    assert done.status_code == 303
    assert done.headers["location"].startswith(f"/console/users/{user.id}")
    assert theirs.client.get("/console", follow_redirects=False).status_code == 303
    [record] = audits(core_services, "core.session.end", f"user:{user.username}")
    assert record.actor == world.a.admin.user.username
    assert record.detail["session"] == session_id
    # and the other side's administrator cannot end the user's sign-ins
    other = signed_in(browsers[2], world.b.admin.user)
    assert other.submit(f"/console/sign-ins/{session_id}/end").status_code == 404
    assert other.submit(f"/console/users/{user.id}/sign-ins/end").status_code == 404


# --- actions shown only to whom may take them -------------------------------------------------


class _Forms(HTMLParser):
    """The POST forms of a page: each one's action and the values it would send as it is."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method") == "post":
            self.forms.append((a["action"], {}))
        elif tag == "input" and self.forms and a.get("name"):
            if a.get("type") == "checkbox" and "checked" not in a:
                return
            self.forms[-1][1][a["name"]] = a.get("value", "")
        elif tag == "select" and self.forms:
            self._select = a.get("name")
        elif tag == "option" and self._select and self.forms:
            self.forms[-1][1].setdefault(self._select, a.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def forms_of(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


#: What a person would type into the text fields the walk finds empty.
TYPED = {"name": "walk", "display_name": "走查", "password": NEW_PASSWORD}


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_every_action_shown_to_an_operator_or_a_viewer_is_one_they_may_take(
    browsers: list[Browser], world: SiblingWorld, core_services: Services, role: str
) -> None:
    # given someone holding a reading role at A, and the users and bindings they can see
    person = fresh_user(core_services, world, role=role)
    fresh_user(core_services, world)
    walker = signed_in(browsers[0], person)
    pages = ["/console", "/console/users", "/console/roles", "/console/api-keys"]
    pages += ["/console/sign-ins"]
    users = walker.client.get("/console/users").text
    pages += sorted(set(re.findall(r'href="(/console/users/[0-9a-f-]{36})"', users)))
    # when every form of every page is sent as it stands (and its confirmation's, if any)
    refused: list[str] = []
    tried = 0
    for path in pages:
        page = walker.client.get(path, follow_redirects=False)
        if page.status_code == 303:  # a form ended this browser's sign-in: sign in again
            walker = signed_in(browsers[0], person)
            page = walker.client.get(path, follow_redirects=False)
        assert page.status_code == 200, path
        for action, values in forms_of(page.text):
            if action in ("/logout",):
                continue
            filled = {k: v or TYPED.get(k, "") for k, v in values.items() if k != "csrf_token"}
            reply = walker.submit(action, filled)
            tried += 1
            if reply.status_code in (401, 403, 404):
                refused.append(f"{path}: {action} -> {reply.status_code}")
            for inner, inner_values in forms_of(reply.text) if reply.status_code == 200 else []:
                if inner == action:
                    extra = {k: v for k, v in inner_values.items() if k != "csrf_token"}
                    again = walker.submit(inner, extra)
                    tried += 1
                    if again.status_code in (401, 403, 404):
                        refused.append(f"{path}: {inner} (confirmed) -> {again.status_code}")
    # then the service refused none of them
    assert tried
    assert not refused, "\n".join(refused)


def test_an_operator_is_shown_no_revoke_and_no_user_actions(
    browsers: list[Browser], world: SiblingWorld, core_services: Services
) -> None:
    person = fresh_user(core_services, world, role="operator")
    other = fresh_user(core_services, world)
    walker = signed_in(browsers[0], person)
    assert "/revoke" not in walker.client.get("/console/roles").text
    page = walker.client.get(f"/console/users/{other.id}").text
    assert "/deactivate" not in page
    assert "/password" not in page
    assert "/sign-ins/" not in page


def test_someone_who_may_not_see_users_is_told_so(
    browsers: list[Browser], world: SiblingWorld, core_services: Services
) -> None:
    person = fresh_user(core_services, world, role="viewer")
    walker = signed_in(browsers[0], person)
    page = text_of(walker.client.get("/console/users?lang=en").text)
    assert "You cannot see the users of any tenant" in page
    assert "No users are homed" not in page
    roles_page = text_of(walker.client.get("/console/roles?lang=en").text)
    assert "You cannot see who holds which role" in roles_page


def test_a_user_created_twice_is_refused_the_second_time(
    browsers: list[Browser], world: SiblingWorld
) -> None:
    admin = signed_in(browsers[0], world.a.admin.user)
    form = {
        "username": unique("twice"),
        "display_name": "两次",
        "email": "",
        "password": "",
        "tenant_id": str(world.a.child.id),
    }
    assert admin.submit("/console/users", form).status_code == 303
    again = admin.submit("/console/users", form)
    assert again.status_code == 409


# --- a sign-in's browser, in a few words ----------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "named"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Edge · Windows",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.49",
            "WeChat · iOS",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Firefox · Linux",
        ),
        ("curl/8.5.0", "curl"),
    ],
)
def test_a_browser_is_named_as_a_person_would_recognise_it(user_agent: str, named: str) -> None:
    assert browser_of(user_agent) == named


@given(st.text(max_size=400))
def test_any_user_agent_gives_a_short_name(user_agent: str) -> None:
    named = browser_of(user_agent)
    assert len(named) <= 60
    assert bool(named) == bool(user_agent)
