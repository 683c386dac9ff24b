"""The administrator's pages for users, roles and sign-ins in Chromium: in Chinese and English, on
a phone and a desktop. A city's administrator creates a user and goes straight on to grant them a
role, deactivates and reactivates them after a confirmation that repeats who and what ends, sets
their password, and ends their sign-in; everyone finds their own sign-ins from the overview; the
platform's administrator defines a role. On a phone nothing is wider than the screen but a
table's own box. Screenshots: core-people-*."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import Page, ViewportSize, expect
from tests.functional.web.helpers import PASSWORD, World
from tests.functional.web.test_browser import (  # noqa: F401 - the module's shared fixtures
    CHROMIUM,
    DESKTOP,
    MOBILE,
    chromium,
    live_url,
    shot,
    sign_in,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
]

WORDS = {
    "zh-CN": {
        "users": "用户",
        "create": "创建用户",
        "username": "用户名",
        "name": "姓名",
        "roles": "角色与授权",
        "grant": "授予",
        "created": "用户已创建",
        "granted": "角色已授予",
        "deactivate": "停用",
        "deactivate_confirm": "停用并结束其全部登录",
        "deactivated": "用户已停用",
        "reactivate": "重新启用",
        "reactivated": "用户已重新启用",
        "password": "设置新密码",
        "password_field": "新密码",
        "password_confirm": "设置密码",
        "password_set": "密码已设置",
        "sign_ins": "我的登录",
        "this_browser": "当前浏览器",
        "end": "结束",
        "end_confirm": "结束此次登录",
        "ended": "该次登录已结束",
        "ends": "结束的登录",
        "create_role": "创建角色",
        "role_created": "角色已创建",
    },
    "en-US": {
        "users": "Users",
        "create": "Create user",
        "username": "Username",
        "name": "Name",
        "roles": "Roles and access",
        "grant": "Grant role",
        "created": "The user was created",
        "granted": "The role was granted.",
        "deactivate": "Deactivate",
        "deactivate_confirm": "Deactivate and end their sign-ins",
        "deactivated": "The user was deactivated",
        "reactivate": "Reactivate",
        "reactivated": "The user was reactivated",
        "password": "Set a new password",
        "password_field": "New password",
        "password_confirm": "Set password",
        "password_set": "The password was set",
        "sign_ins": "My sign-ins",
        "this_browser": "This browser",
        "end": "End",
        "end_confirm": "End the sign-in",
        "ended": "The sign-in was ended",
        "ends": "Sign-ins that end",
        "create_role": "Create role",
        "role_created": "The role was created",
    },
}
CASES = [
    pytest.param(locale, viewport, device, id=f"{locale}-{device}")
    for locale in sorted(WORDS)
    for viewport, device in ((MOBILE, "phone"), (DESKTOP, "desktop"))
]


def fits(page: Page, device: str) -> None:
    """Nothing but a table's own box is wider than the screen."""
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{page.url} is {overflow}px wider than the {device}'s screen"


@pytest.mark.parametrize(("locale", "viewport", "device"), CASES)
def test_an_administrator_creates_grants_deactivates_and_resets_a_user(
    chromium: Chromium,  # noqa: F811 - the fixture imported above
    live_url: str,  # noqa: F811 - the fixture imported above
    world: World,
    locale: str,
    viewport: ViewportSize,
    device: str,
) -> None:
    words = WORDS[locale]
    username = f"people.{locale[:2]}.{device}"
    admin_context = chromium.new_context(viewport=viewport, locale=locale)
    user_context = chromium.new_context(viewport=viewport, locale=locale)
    page = admin_context.new_page()
    try:
        # given Dalian's administrator on the users page, reached by the console's link
        sign_in(page, live_url, "dalian.admin")
        page.locator('nav.console-nav a[href="/console/users"]').click()
        expect(page.get_by_role("heading", level=1)).to_have_text(words["users"])
        fits(page, device)
        shot(page, f"core-people-users-{locale}-{device}")
        # when they create a user
        page.locator("#user-username").fill(username)
        page.locator("#user-display_name").fill("赵敏")
        page.locator("#user-password").fill(PASSWORD)
        page.get_by_role("button", name=words["create"]).click()
        # then the grant form comes next, with that user chosen
        expect(page.get_by_role("heading", level=1)).to_have_text(words["roles"])
        expect(page.get_by_role("status")).to_contain_text(words["created"])
        expect(page.locator("#grant-user_id option:checked")).to_contain_text(username)
        fits(page, device)
        shot(page, f"core-people-grant-{locale}-{device}")
        page.locator("#grant-role_name").select_option("viewer")
        page.get_by_role("button", name=words["grant"], exact=True).click()
        expect(page.get_by_role("status")).to_contain_text(words["granted"])

        # given the new user is signed in on a browser of their own
        theirs = user_context.new_page()
        sign_in(theirs, live_url, username)
        # when the administrator opens the user's page and deactivates them
        page.goto(f"{live_url}/console/users")
        page.get_by_role("link", name=username).click()
        expect(page.get_by_role("heading", level=1)).to_contain_text(username)
        fits(page, device)
        shot(page, f"core-people-user-{locale}-{device}")
        page.get_by_role("button", name=words["deactivate"], exact=True).click()
        # then a confirmation repeats who, where and what ends, before anything happens
        confirm = page.locator("section.confirm")
        expect(confirm).to_contain_text(username)
        expect(confirm).to_contain_text("大连" if locale == "zh-CN" else "Dalian")
        expect(confirm.locator("dt", has_text=words["ends"])).to_have_count(1)
        fits(page, device)
        shot(page, f"core-people-deactivate-{locale}-{device}")
        page.get_by_role("button", name=words["deactivate_confirm"]).click()
        expect(page.get_by_role("status")).to_contain_text(words["deactivated"])
        # and their browser is signed out
        theirs.goto(f"{live_url}/console")
        expect(theirs).to_have_url(f"{live_url}/login?next=%2Fconsole")
        # when they are reactivated, and given a new password after its confirmation page
        page.get_by_role("button", name=words["reactivate"]).click()
        expect(page.get_by_role("status")).to_contain_text(words["reactivated"])
        page.get_by_role("link", name=words["password"]).click()
        expect(page.locator("dl.facts")).to_contain_text(username)
        page.get_by_label(words["password_field"]).fill("a new passphrase for 2027")
        fits(page, device)
        shot(page, f"core-people-password-{locale}-{device}")
        page.get_by_role("button", name=words["password_confirm"]).click()
        expect(page.get_by_role("status")).to_contain_text(words["password_set"])
    finally:
        admin_context.close()
        user_context.close()


@pytest.mark.parametrize(("locale", "viewport", "device"), CASES)
def test_everyone_finds_and_ends_their_own_sign_ins(
    chromium: Chromium,  # noqa: F811 - the fixture imported above
    live_url: str,  # noqa: F811 - the fixture imported above
    world: World,
    locale: str,
    viewport: ViewportSize,
    device: str,
) -> None:
    words = WORDS[locale]
    here = chromium.new_context(viewport=viewport, locale=locale)
    there = chromium.new_context(viewport=viewport, locale=locale)
    page = here.new_page()
    try:
        # given the viewer is signed in on two browsers
        other = there.new_page()
        sign_in(other, live_url, "water.viewer")
        sign_in(page, live_url, "water.viewer")
        # when they follow the overview's link to their sign-ins
        page.locator('main a[href="/console/sign-ins"]').first.click()
        expect(page.get_by_role("heading", level=1)).to_have_text(words["sign_ins"])
        # then this browser is marked, and the other can be ended after a confirmation
        mine = page.locator("tbody tr", has_text=words["this_browser"])
        expect(mine).to_have_count(1)
        fits(page, device)
        shot(page, f"core-people-sign-ins-{locale}-{device}")
        rows = page.locator("#sessions-title ~ .table-wrap tbody tr")
        row = rows.filter(has_not_text=words["this_browser"]).first
        row.get_by_role("button", name=words["end"]).click()
        expect(page.locator("section.confirm")).to_be_visible()
        fits(page, device)
        shot(page, f"core-people-end-sign-in-{locale}-{device}")
        page.get_by_role("button", name=words["end_confirm"]).click()
        expect(page.get_by_role("status")).to_contain_text(words["ended"])
        other.goto(f"{live_url}/console")
        expect(other).to_have_url(f"{live_url}/login?next=%2Fconsole")
    finally:
        here.close()
        there.close()


@pytest.mark.parametrize(("locale", "viewport", "device"), CASES)
def test_the_platform_administrator_defines_a_role(
    chromium: Chromium,  # noqa: F811 - the fixture imported above
    live_url: str,  # noqa: F811 - the fixture imported above
    world: World,
    locale: str,
    viewport: ViewportSize,
    device: str,
) -> None:
    words = WORDS[locale]
    context = chromium.new_context(viewport=viewport, locale=locale)
    page = context.new_page()
    try:
        sign_in(page, live_url, "admin")
        page.goto(f"{live_url}/console/roles")
        # the permissions are offered with their descriptions in the page's language
        described = "查看审计日志" if locale == "zh-CN" else "Read the audit log"
        expect(page.locator("label", has_text=described)).to_have_count(1)
        page.locator("#role-name").fill(f"reader_{locale[:2]}_{device}")
        page.locator("#role-name_zh").fill("审计阅读")
        page.locator("#role-name_en").fill("Audit reader")
        page.locator("label", has_text=described).click()
        fits(page, device)
        shot(page, f"core-people-create-role-{locale}-{device}")
        page.get_by_role("button", name=words["create_role"]).click()
        expect(page.get_by_role("status")).to_contain_text(words["role_created"])
        expect(page.locator("dl.role-list")).to_contain_text(f"reader_{locale[:2]}_{device}")
    finally:
        context.close()
