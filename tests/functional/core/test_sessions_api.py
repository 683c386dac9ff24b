"""The API called from a signed-in browser: the session cookie, and CSRF on every change."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.factories.core import SiblingWorld

from civicloud.core import identity
from civicloud.core.services import Services
from civicloud.web.deps import (
    CSRF_COOKIE,
    CSRF_HEADER,
    HOST_PREFIX,
    SESSION_COOKIE,
    session_csrf_token,
)

BASE_URL = "https://testserver"


def browser_of(app: FastAPI, services: Services, world: SiblingWorld) -> tuple[TestClient, str]:
    with services.db.unit_of_work() as session:
        user = session.merge(world.a.admin.user)
        _, token = identity.start_web_session(session=session, user=user, hours=1)
    browser = TestClient(app, base_url=BASE_URL)
    browser.cookies.set(HOST_PREFIX + SESSION_COOKIE, token)
    browser.cookies.set(HOST_PREFIX + CSRF_COOKIE, "csrf-secret")
    return browser, token


def test_a_session_cookie_authenticates_reads(
    api_app: FastAPI, core_services: Services, world: SiblingWorld
) -> None:
    browser, _ = browser_of(api_app, core_services, world)
    me = browser.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["via"] == "session"
    assert me.json()["user"]["id"] == str(world.a.admin.user.id)


def test_a_change_by_cookie_needs_the_csrf_header(
    api_app: FastAPI, core_services: Services, world: SiblingWorld
) -> None:
    browser, token = browser_of(api_app, core_services, world)
    url = f"/api/v1/tenants/{world.a.child.id}"
    # when a change comes with the cookie only, with a guess, or with the value of a CSRF
    # cookie (which a sibling site could plant)
    missing = browser.patch(url, json={"name_en": "Forged"})
    wrong = browser.patch(url, json={"name_en": "Forged"}, headers={CSRF_HEADER: "guess"})
    planted = browser.patch(url, json={"name_en": "Forged"}, headers={CSRF_HEADER: "csrf-secret"})
    # then it is refused
    assert missing.status_code == 403
    assert wrong.status_code == 403
    assert planted.status_code == 403
    assert "CSRF" in missing.json()["detail"]
    # when the header carries the token bound to the session, then the change is made
    made = browser.patch(
        url, json={"name_en": "Genuine"}, headers={CSRF_HEADER: session_csrf_token(token)}
    )
    assert made.status_code == 200, made.text
    assert made.json()["name_en"] == "Genuine"


def test_a_revoked_session_or_unknown_cookie_is_anonymous(
    api_app: FastAPI, core_services: Services, world: SiblingWorld
) -> None:
    browser, token = browser_of(api_app, core_services, world)
    with core_services.db.unit_of_work() as session:
        identity.end_web_session(session=session, token=token)
    assert browser.get("/api/v1/me").status_code == 401
    stranger = TestClient(api_app, base_url=BASE_URL)
    stranger.cookies.set(HOST_PREFIX + SESSION_COOKIE, "made-up")
    assert stranger.get("/api/v1/me").status_code == 401


def test_a_bearer_key_wins_over_a_cookie_and_needs_no_csrf(
    api_app: FastAPI, core_services: Services, world: SiblingWorld
) -> None:
    browser, _ = browser_of(api_app, core_services, world)
    response = browser.patch(
        f"/api/v1/tenants/{world.a.child.id}",
        json={"name_en": "By key"},
        headers=world.a.admin.headers,
    )
    assert response.status_code == 200
    me = browser.get("/api/v1/me", headers=world.a.member.headers).json()
    assert me["user"]["id"] == str(world.a.member.user.id)
