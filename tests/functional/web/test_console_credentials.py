"""The console's users and roles pages: setting a password revokes the user's API keys and
sessions; the last platform administrator's role cannot be revoked from the roles page."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.functional.web.helpers import HTML, Browser, World, text_of

from civicloud.core import identity
from civicloud.core.roles import Actor, RoleBinding
from civicloud.core.services import Services

SYSTEM = Actor.system("tests")
NEW_PASSWORD = "another long passphrase"


def test_setting_a_password_from_the_users_page_revokes_keys_and_sessions(
    app: FastAPI, services: Services, world: World
) -> None:
    # given water.viewer has an API key and is signed in on a browser of their own
    with services.db.unit_of_work() as session:
        issued = identity.issue_api_key(
            session=session,
            actor=SYSTEM,
            data=identity.ApiKeyCreate(name="meter import"),
            default_days=30,
            user_id=world.users["water.viewer"],
        )
    bearer = {"Authorization": f"Bearer {issued.token}"}
    with (
        TestClient(app, base_url="https://testserver", headers=HTML) as theirs,
        TestClient(app, base_url="https://testserver", headers=HTML) as admins,
    ):
        viewer, admin = Browser(theirs), Browser(admins)
        assert viewer.sign_in("water.viewer").status_code == 303
        assert theirs.get("/api/v1/me", headers=bearer).status_code == 200
        # when their city's administrator sets a new password from the user's page
        assert admin.sign_in("dalian.admin").status_code == 303
        user_id = world.users["water.viewer"]
        page = admins.get(f"/console/users/{user_id}?lang=en")
        assert f'href="/console/users/{user_id}/password"' in page.text
        form = admins.get(f"/console/users/{user_id}/password?lang=en")
        assert "every API key is revoked" in text_of(form.text)
        token = re.search(r'name="form_token" value="([^"]+)"', form.text)
        assert token
        done = admin.submit(
            f"/console/users/{user_id}/password", {"password": NEW_PASSWORD, "form_token": token[1]}
        )
        # then the page says what happened, in Chinese too
        assert done.status_code == 303
        assert done.headers["location"] == f"/console/users/{user_id}?done=password_set"
        shown = admins.get(done.headers["location"] + "&lang=zh")
        assert "密码已设置" in text_of(shown.text)
        assert "API 密钥已全部吊销" in text_of(shown.text)
        # and the key and the session are dead, while the new password signs in
        assert theirs.get("/api/v1/me", headers=bearer).status_code == 401
        assert theirs.get("/console", follow_redirects=False).status_code == 303
        assert viewer.sign_in("water.viewer", NEW_PASSWORD).status_code == 303


def test_the_password_form_asks_again_for_what_is_missing_or_weak(
    browser: Browser, world: World
) -> None:
    browser.sign_in("dalian.admin")
    url = f"/console/users/{world.users['water.viewer']}/password"
    empty = browser.submit(url, {"password": ""})
    assert empty.status_code == 422
    assert "请输入新密码" in text_of(empty.text)
    weak = browser.submit(url, {"password": "short"})
    assert weak.status_code == 422
    assert 'aria-invalid="true"' in weak.text
    nobody = browser.submit("/console/users/x/password", {"password": "p" * 12})
    assert nobody.status_code == 422


def test_the_password_form_is_offered_only_for_users_one_administers(
    browser: Browser, world: World
) -> None:
    # an operator administers nobody: no link to the form, and no form
    browser.sign_in("lock.test")
    user_id = world.users["water.viewer"]
    page = browser.client.get(f"/console/users/{user_id}?lang=en")
    assert page.status_code == 200
    assert "/password" not in page.text
    assert browser.client.get(f"/console/users/{user_id}/password").status_code == 403
    # and Guiyang's administrator cannot set a Dalian user's password by posting anyway
    browser.client.cookies.clear()
    browser.sign_in("guiyang.admin")
    refused = browser.submit(f"/console/users/{user_id}/password", {"password": "p" * 12})
    assert refused.status_code == 404


def test_the_last_platform_administrator_cannot_revoke_their_role_on_the_roles_page(
    browser: Browser, services: Services, world: World
) -> None:
    # given "admin" is the one platform administrator
    with services.db.unit_of_work(write=False) as session:
        binding = session.scalars(
            select(RoleBinding).where(
                RoleBinding.user_id == world.users["admin"], RoleBinding.tenant_id.is_(None)
            )
        ).one()
    browser.sign_in("admin")
    # when they revoke their own role from the roles page
    for language, words in (
        ("zh", "此操作将使平台没有任何平台管理员"),
        ("en", "without a platform administrator"),
    ):
        browser.client.cookies.set("__Host-civicloud_lang", language)
        asked = browser.submit(f"/console/roles/bindings/{binding.id}/revoke")
        token = re.search(r'name="form_token" value="([^"]+)"', asked.text)
        assert token
        refused = browser.submit(
            f"/console/roles/bindings/{binding.id}/revoke",
            {"confirm": "yes", "form_token": token[1]},
        )
        # then the roles page comes back with a conflict, saying why in the page's language
        assert refused.status_code == 409
        assert words in text_of(refused.text)
    with services.db.unit_of_work(write=False) as session:
        assert session.get(RoleBinding, binding.id) is not None
