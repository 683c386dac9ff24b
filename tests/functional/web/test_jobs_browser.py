"""The Background jobs page in Chromium: in Chinese and in English, on a phone and a wide screen,
each job's last run shown in the installation's zone, and nothing wider than the phone's screen
but the table, which scrolls in its own box."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import ViewportSize, expect
from tests.functional.web.helpers import World
from tests.functional.web.test_browser import (  # noqa: F401 - the module's shared fixtures
    CHROMIUM,
    DESKTOP,
    MOBILE,
    chromium,
    live_url,
    shot,
    sign_in,
)

from civicloud.core import jobs
from civicloud.core.services import Services

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
]

WORDS = {
    "zh-CN": ("后台任务", "使未支付的缴费过期", "UTC+8"),
    "en-US": ("Background jobs", "Expire unpaid payments", "UTC+8"),
}


@pytest.mark.parametrize(("viewport", "device"), [(MOBILE, "phone"), (DESKTOP, "desktop")])
@pytest.mark.parametrize("locale", sorted(WORDS))
def test_the_platform_administrator_reads_each_jobs_last_run(
    chromium: Chromium,  # noqa: F811 - the fixture imported above
    live_url: str,  # noqa: F811 - the fixture imported above
    services: Services,
    world: World,
    locale: str,
    viewport: ViewportSize,
    device: str,
) -> None:
    # given Pay's jobs run once
    jobs.run_jobs(services)
    context = chromium.new_context(viewport=viewport, locale=locale)
    page = context.new_page()
    try:
        # when the platform's administrator follows the console's link to the jobs
        sign_in(page, live_url, "admin")
        link = page.locator('nav.console-nav a[href="/console/jobs"]')
        expect(link).to_have_count(1)
        link.click()
        expect(page).to_have_url(f"{live_url}/console/jobs")
        # then the page, in the browser's language, names each job and its last run, with the
        # zone's offset
        heading, title, offset = WORDS[locale]
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        row = page.locator("tbody tr", has_text="pay.expire_payments")
        expect(row).to_contain_text(title)
        expect(row).to_contain_text(offset)
        # and on a phone nothing but the table's own box is wider than the screen
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than the {device}'s screen"
        shot(page, f"core-jobs-{locale}-{device}")
    finally:
        context.close()
