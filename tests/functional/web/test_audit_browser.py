"""The audit log in Chromium, with no script, in Chinese and in English, on a phone and a desk:
a city's auditor narrows the log to today's failures, opens one and reads its reason and its
data; a platform-wide auditor starts verifying the chains and sees the result; and nothing is
wider than the screen. Screenshots land in ``test-artifacts/screenshots/core-audit-*``."""

# The fixtures are imported from the browser tests and named again as parameters.
# ruff: noqa: F811
from __future__ import annotations

import re
from datetime import timedelta

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

from civicloud.core import audit, identity, roles
from civicloud.core.actor import Actor
from civicloud.core.db import utcnow
from civicloud.core.services import Services

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
]

REASON = "市民重复缴费 退回第二笔"
WORDS = {
    "zh-CN": {
        "lang": "zh",
        "heading": "审计日志",
        "search": "查询",
        "failed": "失败",
        "open": "查看",
        "record": "审计记录",
        "intact": "审计日志完好",
    },
    "en-US": {
        "lang": "en",
        "heading": "Audit log",
        "search": "Search",
        "failed": "Failed",
        "open": "Open",
        "record": "Audit record",
        "intact": "The log is intact",
    },
}


@pytest.fixture(scope="module")
def auditors(services: Services, world: World) -> World:
    """Dalian's auditor and a platform-wide one; under Dalian, failed calls with a reason and
    data among successes."""
    system = Actor.system("tests")
    with services.db.unit_of_work() as session:
        for username, scope in (("dalian.auditor", "dalian"), ("platform.auditor", None)):
            user = identity.create_user(
                session=session,
                actor=system,
                data=identity.UserCreate(
                    username=username,
                    display_name="审计员",
                    password=PASSWORD,
                    tenant_id=world.tenants["dalian"],
                ),
                passwords=services.passwords,
            )
            roles.grant_role(
                session=session,
                actor=system,
                data=roles.RoleBindingCreate(
                    user_id=user.id,
                    role_name="auditor",
                    tenant_id=world.tenants[scope] if scope else None,
                ),
            )
        clerk = Actor(kind="user", name="dalian.admin", via="session")
        for index in range(12):
            audit.record(
                session=session,
                actor=clerk,
                action="tests.browser.refund",
                target=f"payment:{index:04d}",
                tenant_id=world.tenants["dalian-water"],
                outcome="failed" if index % 4 == 0 else "success",
                detail={"reason": REASON, "amount_yuan": "12.50", "account": "0012345678"},
            )
    return world


def fits(page: Page, device: str, what: str) -> None:
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the {what} is {overflow}px wider than the {device}'s screen"


@pytest.mark.parametrize(("viewport", "device"), [(MOBILE, "phone"), (DESKTOP, "desktop")])
@pytest.mark.parametrize("locale", sorted(WORDS))
def test_an_auditor_finds_todays_failures_and_reads_one(
    chromium: Chromium,
    live_url: str,
    auditors: World,
    locale: str,
    viewport: ViewportSize,
    device: str,
) -> None:
    words = WORDS[locale]
    context = chromium.new_context(viewport=viewport, locale=locale, java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, live_url, "dalian.auditor")
        page.goto(f"{live_url}/console/audit?lang={words['lang']}")
        expect(page.get_by_role("heading", level=1)).to_have_text(words["heading"])
        # when the auditor asks for today's failures (today in the installation's zone)
        today = (utcnow() + timedelta(hours=8)).date()
        page.locator("#audit-outcome").select_option("failed")
        page.locator("#audit-days-from").fill(str(today))
        page.locator("#audit-days-to").fill(str(today))
        page.get_by_role("button", name=words["search"], exact=True).click()
        # then every record listed failed, and the address carries the filters
        assert "outcome=failed" in page.url
        assert f"days_from={today}" in page.url
        rows = page.locator(".list-table tbody tr")
        expect(rows.first).to_be_visible()
        assert rows.count() >= 3
        expect(page.locator(".list-table tbody .badge-failed")).to_have_count(rows.count())
        expect(rows.first).to_contain_text(words["failed"])
        expect(page.locator("a[href*='format=xlsx']")).to_have_count(1)
        fits(page, device, "list")
        shot(page, f"core-audit-list-{locale}-{device}")
        # when they open the newest failure
        row = page.locator(".list-table tbody tr", has_text="tests.browser.refund").first
        row.get_by_role("link", name=words["open"], exact=True).click()
        # then its page says who, why and with what data
        expect(page).to_have_url(re.compile(r"/console/audit/\d+"))
        expect(page.get_by_role("heading", level=1)).to_contain_text(words["record"])
        expect(page.locator("#audit-reason")).to_have_text(REASON)
        expect(page.locator("#audit-data")).to_contain_text('"account": "0012345678"')
        expect(page.locator("#audit-data")).to_contain_text('"amount_yuan": "12.50"')
        expect(page.get_by_text("dalian.admin")).to_be_visible()
        fits(page, device, "record")
        shot(page, f"core-audit-record-{locale}-{device}")
        # and someone who audits only Dalian is not offered verifying the chains
        page.goto(f"{live_url}/console/audit?lang={words['lang']}")
        expect(page.locator("#verify-start")).to_have_count(0)
    finally:
        context.close()


@pytest.mark.parametrize(("viewport", "device"), [(MOBILE, "phone"), (DESKTOP, "desktop")])
@pytest.mark.parametrize("locale", sorted(WORDS))
def test_a_platform_auditor_verifies_the_chains(
    chromium: Chromium,
    live_url: str,
    auditors: World,
    locale: str,
    viewport: ViewportSize,
    device: str,
) -> None:
    words = WORDS[locale]
    context = chromium.new_context(viewport=viewport, locale=locale, java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, live_url, "platform.auditor")
        page.goto(f"{live_url}/console/audit?lang={words['lang']}")
        # when the platform's auditor starts verifying the chains
        page.locator("#verify-start").click()
        # then the verification page follows it (refreshing itself, with no script) to its end
        expect(page).to_have_url(f"{live_url}/console/audit/verify")
        expect(page.locator("#verify-progress")).to_have_count(0, timeout=60_000)
        expect(page.locator("#verify-result")).to_contain_text(words["intact"], timeout=60_000)
        expect(page.locator("#verify-result")).to_have_class(re.compile("notice-success"))
        fits(page, device, "verification")
        shot(page, f"core-audit-verify-{locale}-{device}")
    finally:
        context.close()
