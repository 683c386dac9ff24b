"""The operator's daily dashboard in Chromium: in Chinese and in English, on a phone and a wide
screen, reached by Pay's tab, its charts drawn (SVG, no script) and none wider than the screen,
their figures a click away. Screenshots land in ``test-artifacts/screenshots/pay-dashboard-*``.
"""

# The fixtures are imported from the Pay browser tests and named again as parameters.
# ruff: noqa: F811
from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import ViewportSize, expect
from sqlalchemy import select
from tests.factories.pay_money import make_payment
from tests.functional.pay.test_confirm_browser import Town, town  # noqa: F401 - the fixture
from tests.functional.pay.test_pay_browser import (  # noqa: F401 - the chromium fixture
    CHROMIUM,
    DESKTOP,
    PHONE,
    chromium,
    shot,
    sign_in,
)

from civicloud.pay import dashboard
from civicloud.pay.models import Biller

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
]

#: The installation's zone in these tests (the default ``web.time_zone``).
SHANGHAI = ZoneInfo("Asia/Shanghai")
WORDS = {
    "zh-CN": ("zh", "每日概览", "每小时实收", "查看数据", "¥"),
    "en-US": ("en", "Dashboard", "Takings by hour", "The figures", "CNY "),
}


@pytest.fixture(scope="module")
def paid(town: Town) -> Town:
    """Today's payments at Dalian's water and power companies through three providers, and
    yesterday's, so that every chart has something to draw."""
    today = dashboard.today_in(SHANGHAI)
    with town.services.db.unit_of_work() as session:
        billers = session.scalars(select(Biller).order_by(Biller.code)).all()
        for index, (provider, hour, amount) in enumerate(
            [
                ("alipay", 0, 12_800),
                ("alipay", 0, 4_550),
                ("wechatpay", 0, 9_900),
                ("sandbox", 0, 2_000),
            ]
        ):
            ended = datetime.combine(today, time(hour, 1 + index), tzinfo=SHANGHAI)
            biller = billers[index % len(billers)]
            make_payment(session, biller, amount_fen=amount, provider=provider, finished_at=ended)
            make_payment(
                session,
                biller,
                amount_fen=amount * 2,
                provider=provider,
                finished_at=ended - timedelta(days=1 + index),
            )
    return town


@pytest.mark.parametrize(("viewport", "device"), [(PHONE, "phone"), (DESKTOP, "desktop")])
@pytest.mark.parametrize("locale", sorted(WORDS))
def test_the_operator_sees_the_day_as_charts_that_fit_the_screen(
    chromium: Chromium,
    paid: Town,
    locale: str,
    viewport: ViewportSize,
    device: str,
) -> None:
    lang, heading, hours_title, figures, currency = WORDS[locale]
    context = chromium.new_context(viewport=viewport, locale=locale, java_script_enabled=False)
    page = context.new_page()
    try:
        # given Dalian's Pay operator, signed in, in the browser's language
        sign_in(page, paid.site)
        page.goto(f"{paid.site.url}/console/pay?lang={lang}")
        # when they follow Pay's dashboard tab
        page.locator('.pay-tabs a[href="/console/pay/dashboard"]').click()
        expect(page).to_have_url(f"{paid.site.url}/console/pay/dashboard")
        # then the day's takings are in yuan, with the zone's offset
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        expect(page.locator(".pay-day-figures .stat-value").first).to_contain_text(currency)
        expect(page.locator(".lead")).to_contain_text("UTC+8")
        # and the four charts are drawn, each a named image no wider than the screen
        charts = page.locator("figure.chart svg[role=img]")
        expect(charts).to_have_count(4)
        expect(page.get_by_role("heading", name=hours_title)).to_be_visible()
        for index in range(4):
            chart = charts.nth(index)
            chart.scroll_into_view_if_needed()
            expect(chart).to_be_visible()
            box = chart.bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= viewport["width"], f"chart {index} is too wide"
            assert box["height"] > 20
        # and the figures of a chart open as a table, without a script
        details = page.locator("details.chart-data").first
        details.locator("summary", has_text=figures).click()
        expect(details.locator("table")).to_be_visible()
        # and nothing on the page is wider than the screen
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than the {device}'s screen"
        shot(page, f"dashboard-{locale}-{device}")
    finally:
        context.close()
