"""Pay's lists in Chromium, as an operator at a desk and on a phone uses them, in Chinese and
in English, with no script: filter by a day range and a status, sort, page, and find the
exports; on a wide screen the console uses the width, on a phone each row is a card and
nothing is wider than the screen. Screenshots land in ``test-artifacts/screenshots/pay-list-*``.
"""

# The fixtures are imported from the Pay browser tests and named again as parameters.
# ruff: noqa: F811
from __future__ import annotations

from datetime import timedelta

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

from civicloud.core.db import utcnow
from civicloud.pay.models import Biller

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
]

WIDE: ViewportSize = {"width": 1680, "height": 1000}
WORDS = {
    "zh-CN": ("zh", "缴费记录", "查询", "下一页", "共 ", "¥"),
    "en-US": ("en", "Payments", "Search", "Next page", " match.", "CNY "),
}


@pytest.fixture(scope="module")
def paid(town: Town) -> Town:
    """Sixty payments over the last days at Dalian's billers, some failed."""
    now = utcnow()
    with town.services.db.unit_of_work() as session:
        billers = session.scalars(select(Biller).order_by(Biller.code)).all()
        for index in range(60):
            make_payment(
                session,
                billers[index % len(billers)],
                amount_fen=1_000 + index,
                status="failed" if index % 5 == 0 else "succeeded",
                provider=("alipay", "wechatpay", "sandbox")[index % 3],
                finished_at=now - timedelta(hours=index * 3),
            )
    return town


@pytest.mark.parametrize(
    ("viewport", "device"), [(PHONE, "phone"), (DESKTOP, "desktop"), (WIDE, "wide")]
)
@pytest.mark.parametrize("locale", sorted(WORDS))
def test_an_operator_filters_pages_and_exports_payments(
    chromium: Chromium, paid: Town, locale: str, viewport: ViewportSize, device: str
) -> None:
    lang, heading, search, next_page, count, currency = WORDS[locale]
    context = chromium.new_context(viewport=viewport, locale=locale, java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, paid.site)
        page.goto(f"{paid.site.url}/console/pay/payments?lang={lang}")
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        # when the operator narrows the list to the last week's successes
        today = (utcnow() + timedelta(hours=8)).date()
        page.locator("#payments-created-from").fill(str(today - timedelta(days=7)))
        page.locator("#payments-created-to").fill(str(today))
        page.locator("#payments-status").select_option("succeeded")
        page.locator("#payments-size").select_option("25")
        page.get_by_role("button", name=search, exact=True).click()
        # then the count and the totals say what matched, in yuan
        expect(page.locator(".list-count")).to_contain_text(count)
        expect(page.locator(".list-totals").first).to_contain_text(currency)
        rows = page.locator(".list-table tbody tr")
        expect(rows).to_have_count(25)
        # and the exports and the next page carry the same filters
        assert "status=succeeded" in (
            page.locator("a[href*='format=csv']").get_attribute("href") or ""
        )
        page.get_by_role("link", name=next_page).click()
        expect(page.locator(".list-table tbody tr").first).to_be_visible()
        assert "cursor=" in page.url
        assert "status=succeeded" in page.url
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than the {device}'s screen"
        if device == "wide":
            # the console uses a wide screen's width
            box = page.locator("main").bounding_box()
            assert box is not None
            assert box["width"] > 1400
        if device == "phone":
            # each row is a card whose cells name their column
            cell = page.locator(".list-table tbody tr").first.locator("td").first
            label = cell.evaluate("td => getComputedStyle(td, '::before').content")
            assert label.strip('"'), "a phone's cell names its column"
        shot(page, f"list-payments-{locale}-{device}")
        for path in ("bills", "refunds", "settlements"):
            page.goto(f"{paid.site.url}/console/pay/{path}?lang={lang}")
            expect(page.locator("main h1")).to_be_visible()
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} is {overflow}px wider than the {device}'s screen"
            shot(page, f"list-{path}-{locale}-{device}")
    finally:
        context.close()
