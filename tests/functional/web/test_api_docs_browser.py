"""The API reference at /docs in a real browser, with the network closed to everything but the
server: Swagger UI comes from the installation, runs under its Content-Security-Policy, and
lists the operations. The browser is never downloaded: without ``/usr/bin/chromium`` this
module is skipped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import ConsoleMessage, Route, ViewportSize, expect, sync_playwright
from tests.functional.live_server import serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
]


@pytest.fixture(scope="module")
def site(app: FastAPI) -> Iterator[str]:
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.mark.parametrize(
    "viewport", [ViewportSize(width=390, height=844), ViewportSize(width=1280, height=900)]
)
def test_the_api_reference_works_with_nothing_but_the_server(
    chromium: Chromium, site: str, viewport: ViewportSize
) -> None:
    context = chromium.new_context(viewport=viewport)
    page = context.new_page()
    # Given a network that reaches nothing but the server (an intranet without the Internet)
    ours = urlsplit(site).netloc
    elsewhere: list[str] = []

    def only_the_server(route: Route) -> None:
        if urlsplit(route.request.url).netloc == ours:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_server)
    refused: list[str] = []

    def note(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    page.on("console", note)
    # When someone opens the API reference
    page.goto(f"{site}/docs")
    # Then Swagger UI shows the API and its operations
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("civicloud")
    expect(page.locator(".opblock").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/tenants").first).to_be_visible()
    assert page.locator(".opblock").count() > 20
    # And an operation opens, showing what it takes
    page.locator(".opblock-summary", has_text="/api/v1/me").first.click()
    expect(page.locator(".opblock-body").first).to_be_visible()
    # And nothing was asked of anyone else, nor refused by the page's policy
    assert elsewhere == []
    assert refused == []
    context.close()
