"""Signing in and out: sessions, CSRF, lockout, safe redirects and the cookies' attributes."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.functional.web.helpers import HTML, PASSWORD, Browser, World, text_of

from civicloud.app import create_app
from civicloud.core import audit
from civicloud.core.roles import Actor
from civicloud.core.services import Services

#: The session cookie's name over HTTPS, where the tests' browser talks to the site.
SESSION = "__Host-civicloud_session"


def cookies_set(response_headers: list[str]) -> dict[str, SimpleCookie]:
    """The ``Set-Cookie`` headers of a response, by cookie name."""
    found: dict[str, SimpleCookie] = {}
    for header in response_headers:
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name in jar:
            found[name] = jar
    return found


def test_sign_in_starts_a_session_and_redirects_to_the_console(
    browser: Browser, world: World
) -> None:
    # Given the sign-in form
    form = browser.client.get("/login")
    assert 'name="csrf_token"' in form.text
    # When an operator signs in with the right password
    response = browser.sign_in("dalian.admin")
    # Then a session cookie is set (HttpOnly, SameSite=Lax, Secure over HTTPS) and the console opens
    assert response.status_code == 303
    assert response.headers["location"] == "/console"
    cookies = cookies_set(response.headers.get_list("set-cookie"))
    # (named __Host-: a browser keeps it for this host only, so a sibling subdomain cannot plant it)
    session = cookies[SESSION]["__Host-civicloud_session"]
    assert session["httponly"]
    assert session["samesite"].lower() == "lax"
    assert session["secure"]
    assert session["path"] == "/"
    console = browser.client.get("/console")
    assert console.status_code == 200
    assert "dalian.admin" in console.text


def test_sign_in_follows_a_local_next_only(browser: Browser, world: World) -> None:
    for target, expected in [
        ("/console/audit?action=core", "/console/audit?action=core"),
        ("//evil.example/phish", "/console"),
        ("https://evil.example/", "/console"),
        ("/\\evil.example", "/console"),
        ("javascript:alert(1)", "/console"),
    ]:
        # signed out again, with the sign-in form's token
        browser.client.cookies.delete(SESSION)
        csrf = browser.csrf()
        response = browser.client.post(
            "/login",
            data={"username": "admin", "password": PASSWORD, "csrf_token": csrf, "next": target},
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert response.headers["location"] == expected


def test_wrong_password_is_refused_and_audited(
    browser: Browser, world: World, services: Services
) -> None:
    # When someone tries a wrong password
    response = browser.sign_in("guiyang.admin", "not-the-password")
    # Then the form comes back with a message, status 401, and no session
    assert response.status_code == 401
    assert "civicloud_session" not in response.headers.get("set-cookie", "")
    assert "用户名或密码错误" in text_of(response.text)
    assert 'value="guiyang.admin"' in response.text
    # And the failure was recorded even though the sign-in failed
    with services.db.unit_of_work(write=False) as session:
        records = audit.list_records(
            session=session, actor=Actor.system(), action="core.session.login"
        )
        assert any(r.target == "user:guiyang.admin" and r.outcome == "denied" for r in records)


def test_empty_fields_are_asked_for_again(browser: Browser) -> None:
    response = browser.submit("/login", {"username": "", "password": ""})
    assert response.status_code == 422
    assert "请输入用户名和密码" in response.text


def test_repeated_failures_stop_the_guessing_address_not_the_account(
    app: FastAPI, world: World
) -> None:
    with (
        TestClient(
            app, base_url="https://testserver", headers=HTML, client=("203.0.113.7", 1)
        ) as a,
        TestClient(
            app, base_url="https://testserver", headers=HTML, client=("198.51.100.9", 1)
        ) as b,
    ):
        attacker, owner = Browser(a), Browser(b)
        # Given five wrong passwords at one account from one address
        for _ in range(5):
            assert attacker.sign_in("lock.test", "wrong-password-1").status_code == 401
        # When the right password comes next from that same address
        response = a.post(
            "/login",
            data={"username": "lock.test", "password": PASSWORD, "csrf_token": attacker.csrf()},
            headers={"Accept-Language": "en"},
            follow_redirects=False,
        )
        # Then that address is refused with a 429 that says how long to wait
        assert response.status_code == 429
        assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
        assert "Too many failed sign-ins at this account came from your network" in text_of(
            response.text
        )
        assert "civicloud_session" not in response.headers.get("set-cookie", "")
        # And the account's owner, from another address, signs in at once
        assert owner.sign_in("lock.test").status_code == 303
        assert b.get("/console", follow_redirects=False).status_code == 200
        # And the guessing address may still sign in to other accounts (under its own limit)
        assert attacker.sign_in("dalian.admin").status_code == 303


def test_sign_in_without_the_csrf_token_is_refused(browser: Browser, world: World) -> None:
    # Given a page that set the CSRF cookie
    browser.csrf()
    # When a form arrives without the token, or with another one
    for token in (None, "forged-token"):
        data = {"username": "admin", "password": PASSWORD}
        if token:
            data["csrf_token"] = token
        response = browser.client.post("/login", data=data, follow_redirects=False)
        # Then it is refused with an HTML error page and no session starts
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("text/html")
        assert "CSRF" in response.text
        assert "civicloud_session" not in response.headers.get("set-cookie", "")


def test_form_post_from_another_site_without_cookie_is_refused(app: FastAPI) -> None:
    with TestClient(app, base_url="https://testserver", headers=HTML) as fresh:
        response = fresh.post(
            "/login", data={"username": "admin", "password": PASSWORD, "csrf_token": "x"}
        )
    assert response.status_code == 403


def test_console_sends_anonymous_visitors_to_sign_in(browser: Browser) -> None:
    response = browser.client.get("/console/tenants?kind=city", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fconsole%2Ftenants%3Fkind%3Dcity"
    # And after signing in there, the visitor lands where they were going
    page = browser.client.get(response.headers["location"])
    assert 'name="next" value="/console/tenants?kind=city"' in page.text


def test_anonymous_form_post_is_sent_to_sign_in(browser: Browser, world: World) -> None:
    response = browser.submit("/console/api-keys", {"name": "x"})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


def test_sign_out_ends_the_session(browser: Browser, world: World) -> None:
    # Given a signed-in operator
    browser.sign_in("dalian.admin")
    session_token = browser.client.cookies.get(SESSION)
    assert session_token
    # When they sign out
    response = browser.submit("/logout")
    # Then they are back on the home page, the cookie is cleared and the session is over
    assert response.status_code == 303
    assert response.headers["location"].startswith("/")
    assert f'{SESSION}=""' in response.headers["set-cookie"]
    browser.client.cookies.set(SESSION, session_token)
    again = browser.client.get("/console", follow_redirects=False)
    assert again.status_code == 303


def test_sign_out_needs_the_csrf_token(browser: Browser, world: World) -> None:
    browser.sign_in("dalian.admin")
    response = browser.client.post("/logout", follow_redirects=False)
    assert response.status_code == 403
    assert browser.client.get("/console", follow_redirects=False).status_code == 200


@pytest.mark.parametrize(
    ("setting", "base_url", "secure"),
    [
        (None, "https://testserver", True),
        (None, "http://testserver", False),
        (None, "http://127.0.0.1:8000", False),
        (None, "http://localhost:8000", False),
        (None, "http://[::1]:8000", False),
        (None, "http://civicloud.example.gov.cn", True),
        (True, "http://127.0.0.1:8000", True),
        (False, "https://civicloud.example.gov.cn", False),
    ],
)
def test_cookies_are_secure_by_rule(
    services: Services, world: World, setting: bool | None, base_url: str, secure: bool
) -> None:
    # Given an app whose cookie_secure setting is ``setting``
    settings = services.settings.model_copy(
        update={"web": services.settings.web.model_copy(update={"cookie_secure": setting})}
    )
    app = create_app(services=services.with_settings(settings))
    with TestClient(app, base_url=base_url, headers=HTML) as client:
        # When a browser loads a form and signs in
        form = client.get("/login?lang=en")
        prefix = "__Host-" if secure else ""
        csrf = cookies_set(form.headers.get_list("set-cookie"))
        token = csrf[f"{prefix}civicloud_csrf"][f"{prefix}civicloud_csrf"].value
        response = client.post(
            "/login",
            data={"username": "admin", "password": PASSWORD, "csrf_token": token},
            # Sent by hand: a client keeps a Secure cookie to itself over plain HTTP.
            headers={"Cookie": f"{prefix}civicloud_csrf={token}"},
            follow_redirects=False,
        )
    # Then all three cookies carry Secure exactly when the rule says so
    assert response.status_code == 303
    issued = {
        **cookies_set(form.headers.get_list("set-cookie")),
        **cookies_set(response.headers.get_list("set-cookie")),
    }
    # (and the __Host- prefix, which a browser accepts on Secure cookies only)
    for name in (
        f"{prefix}civicloud_session",
        f"{prefix}civicloud_csrf",
        f"{prefix}civicloud_lang",
    ):
        assert bool(issued[name][name]["secure"]) is secure, name


def test_failed_sign_ins_are_limited_per_client_address_over_all_accounts(
    services: Services, world: World
) -> None:
    # Given an app allowing 3 failed sign-ins per client address in 10 minutes
    settings = services.settings.model_copy(
        update={"auth": services.settings.auth.model_copy(update={"failed_sign_ins_per_client": 3})}
    )
    app = create_app(services=services.with_settings(settings))
    with TestClient(
        app, base_url="https://testserver", headers=HTML, client=("192.0.2.30", 1)
    ) as client:
        browser = Browser(client)
        # When one address tries wrong passwords on three different accounts
        for username in ("spray.one", "spray.two", "admin"):
            assert browser.sign_in(username, "wrong-password-1").status_code == 401
        with services.db.unit_of_work(write=False) as session:
            before = audit.list_records(
                session=session, actor=Actor.system("tests"), action="core.session.login"
            )
        # Then the next attempt from it is refused before any password is checked, even the
        # right one: a 429 that says how long to wait, and no audit record is written for it
        response = client.post(
            "/login",
            data={"username": "admin", "password": PASSWORD, "csrf_token": browser.csrf()},
            headers={"Accept-Language": "en"},
            follow_redirects=False,
        )
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) > 0
        assert "Too many failed sign-ins came from your network" in text_of(response.text)
        assert "civicloud_session" not in response.headers.get("set-cookie", "")
        zh = browser.sign_in("admin")
        assert zh.status_code == 429
        assert "登录失败次数过多" in zh.text
        with services.db.unit_of_work(write=False) as session:
            after = audit.list_records(
                session=session, actor=Actor.system("tests"), action="core.session.login"
            )
        assert after[0].seq == before[0].seq  # the newest sign-in record is still the last failure
