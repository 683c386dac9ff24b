"""The pages in a real browser: Debian's Chromium driven by Playwright against uvicorn on loopback.

Screenshots of every step land in ``test-artifacts/screenshots/``. The browser is never
downloaded: without ``/usr/bin/chromium`` these tests are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import Page, ViewportSize, expect, sync_playwright
from tests.functional.live_server import serving
from tests.functional.web.helpers import PASSWORD, World

from civicloud.app import create_app
from civicloud.core.services import Services

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[3]
SHOTS = REPO / "test-artifacts" / "screenshots"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
MOBILE: ViewportSize = {"width": 375, "height": 812}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
]


@pytest.fixture(scope="module")
def live_url(app: FastAPI) -> Iterator[str]:
    """The module's app, served on a free loopback port."""
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    """Headless Chromium from the system (never a downloaded browser)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def shot(page: Page, name: str) -> None:
    """Save a full-page screenshot of this step."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, base: str, username: str) -> None:
    """Sign in through the form in the page's current language."""
    page.goto(f"{base}/login")
    page.locator("#login-username").fill(username)
    page.locator("#login-password").fill(PASSWORD)
    page.locator("#login-password").press("Enter")
    expect(page).to_have_url(f"{base}/console")


def test_citizen_then_operator_journey(chromium: Chromium, live_url: str, world: World) -> None:
    context = chromium.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    # Given the home page, in Chinese for a Chinese browser
    page.goto(f"{live_url}/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("heading", name="缴费服务")).to_be_visible()
    shot(page, "01-home-zh")
    # When the visitor switches to English
    page.get_by_role("navigation", name="语言").get_by_role("link", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Bill payment")).to_be_visible()
    shot(page, "02-home-en")
    # And signs in as Dalian's administrator
    page.get_by_role("link", name="Staff sign-in").click()
    page.get_by_label("Username").fill("dalian.admin")
    page.get_by_label("Password").fill(PASSWORD)
    shot(page, "03-login-en")
    page.get_by_role("button", name="Sign in", exact=True).click()
    # Then the console greets them, in English still
    expect(page).to_have_url(f"{live_url}/console")
    expect(page.get_by_role("heading", name="Operator console")).to_be_visible()
    expect(page.get_by_text("Dalian and everything below it")).to_be_visible()
    shot(page, "04-console-en")
    # And the tenant tree holds Dalian's subtree only
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Tenants").click()
    expect(page.get_by_role("link", name="Dalian Water Supply")).to_be_visible()
    expect(page.get_by_text("Guiyang")).to_have_count(0)
    shot(page, "05-tenants-en")
    # And a tenant's page shows where it sits
    page.get_by_role("link", name="Dalian Water Supply").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Dalian Water Supply")
    crumbs = page.get_by_role("navigation", name="Breadcrumb")
    expect(crumbs.get_by_role("link", name="Dalian", exact=True)).to_be_visible()
    expect(page.get_by_text("Agency").first).to_be_visible()
    shot(page, "06-tenant-en")
    # Over plain HTTP to loopback, the automatic rule leaves the cookies without Secure (and so
    # without the __Host- prefix, which a browser accepts on Secure cookies only)
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["civicloud_session"]["httpOnly"]
    assert cookies["civicloud_session"]["sameSite"] == "Lax"
    assert not cookies["civicloud_session"]["secure"]
    # And signing out leads back to the portal
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("You have signed out.")
    context.close()


def test_keyboard_reaches_the_skip_link_first(chromium: Chromium, live_url: str) -> None:
    context = chromium.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{live_url}/?lang=zh")
    # When the visitor presses Tab once
    page.keyboard.press("Tab")
    # Then the skip link has the focus, is on screen, and shows a focus ring
    focused = page.evaluate(
        "() => { const e = document.activeElement; const s = getComputedStyle(e);"
        " const r = e.getBoundingClientRect();"
        " return {href: e.getAttribute('href'), text: e.textContent.trim(),"
        " outline: s.outlineStyle, top: r.top, height: r.height}; }"
    )
    assert focused["href"] == "#main"
    assert focused["text"] == "跳到主要内容"
    assert focused["outline"] != "none"
    assert focused["top"] >= 0
    assert focused["height"] > 0
    shot(page, "07-skip-link-focused")
    # And Enter moves the focus to the main content
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    context.close()


def test_sign_in_works_from_the_keyboard(chromium: Chromium, live_url: str, world: World) -> None:
    context = chromium.new_context(viewport=DESKTOP, locale="en-US")
    page = context.new_page()
    page.goto(f"{live_url}/login")
    page.locator("#login-username").focus()
    page.keyboard.type("guiyang.admin")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "login-password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent.trim()") == "Sign in"
    shot(page, "08-login-keyboard-focus")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_url}/console")
    context.close()


def test_pages_fit_a_375px_screen(chromium: Chromium, live_url: str, world: World) -> None:
    context = chromium.new_context(viewport=MOBILE, locale="zh-CN", device_scale_factor=2)
    page = context.new_page()
    pages = [("/", "home"), ("/login", "login")]
    for path, name in pages:
        page.goto(f"{live_url}{path}")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= MOBILE["width"]
        shot(page, f"mobile-{name}-zh")
    sign_in(page, live_url, "dalian.admin")
    console_pages = [
        ("/console", "console"),
        ("/console/tenants", "tenants"),
        (f"/console/tenants/{world.tenants['dalian']}", "tenant"),
        ("/console/users", "users"),
        ("/console/api-keys", "api-keys"),
        ("/console/audit", "audit"),
    ]
    for path, name in console_pages:
        page.goto(f"{live_url}{path}")
        expect(page.locator("main h1")).to_be_visible()
        assert page.evaluate("() => document.documentElement.scrollWidth") <= MOBILE["width"]
        shot(page, f"mobile-{name}-zh")
    context.close()


def test_chromium_keeps_secure_cookies_on_loopback_http(
    chromium: Chromium, services: Services, world: World
) -> None:
    # Given cookie_secure forced on, served over plain HTTP at 127.0.0.1
    settings = services.settings.model_copy(
        update={"web": services.settings.web.model_copy(update={"cookie_secure": True})}
    )
    app = create_app(services=services.with_settings(settings))
    with serving(app) as url:
        context = chromium.new_context(viewport=DESKTOP)
        page = context.new_page()
        # When an operator signs in
        sign_in(page, url, "water.viewer")
        # Then Chromium treats loopback as trustworthy and keeps the Secure, __Host- cookies
        # (other clients, such as httpx or curl's cookie jar, do not; hence the automatic rule)
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["__Host-civicloud_session"]["secure"]
        assert cookies["__Host-civicloud_csrf"]["secure"]
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        context.close()
