"""Money moves only after a confirmation that repeats it: an operator refunds and settles in a real
browser (Debian's Chromium, no JavaScript needed), in Chinese on a desktop and in English on a
phone. The site is Dalian's, as in ``test_pay_browser``, with its database at hand so that a
payment can be dated back to a day that has ended.
"""

# The chromium fixture is imported from the Pay browser tests and named again as a parameter.
# ruff: noqa: F811
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import Page, expect
from sqlalchemy import select
from tests.functional.live_server import free_port, serving
from tests.functional.pay.test_pay_browser import (  # noqa: F401 - the chromium fixture
    DESKTOP,
    PHONE,
    Site,
    chromium,
    seed_dalian,
    shot,
    sign_in,
)

from civicloud.app import build_services, create_app, load_settings, prepare_database
from civicloud.core.config import AuthSettings
from civicloud.core.services import Services
from civicloud.pay import web as pay_web
from civicloud.pay.models import Payment
from civicloud.pay.payments import PayContext
from civicloud.pay.providers import SandboxProvider
from civicloud.pay.settings import PaySettings
from civicloud.pay.web.views import beijing_now

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


@dataclass(frozen=True)
class Town:
    """The running site and its services."""

    site: Site
    services: Services


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Town]:
    """Dalian's bill payment on a free loopback port, with its services."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("civicloud-confirm-browser"),
        auth=AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1),
        pay=PaySettings(public_base_url=url),
    )
    services = build_services(settings)
    prepare_database(services)
    seed_dalian(services)
    app: FastAPI = create_app(services=services)
    app.include_router(pay_web.router)
    sandbox = app.state.services.context("pay", PayContext).providers["sandbox"]
    assert isinstance(sandbox, SandboxProvider)
    try:
        with serving(app, port):
            yield Town(Site(url, sandbox), services)
    finally:
        services.db.dispose()


def pay_bill(
    page: Page, site: Site, biller: str = "国网大连供电公司", account: str = "041100000003"
) -> None:
    """A citizen pays an account's bills (by default the power bill, ¥128.00) with the sandbox."""
    page.goto(f"{site.url}/pay?lang=zh")
    page.get_by_role("link", name=biller).click()
    page.get_by_label("户号").fill(account)
    page.get_by_role("button", name="查询账单").click()
    # The bills page leads to a check of what is paid, whose button pays (each shows the sum).
    page.get_by_role("button", name=re.compile("^核对并缴费")).click()
    page.get_by_role("button", name=re.compile("^立即缴费")).click()
    page.get_by_role("button", name="模拟支付成功").click()
    expect(page.get_by_role("heading", name="缴费成功")).to_be_visible()


def test_a_refund_is_confirmed_with_its_amount_and_payee_in_chinese(
    chromium: Chromium, town: Town
) -> None:
    context = chromium.new_context(viewport=DESKTOP, locale="zh-CN", java_script_enabled=False)
    page = context.new_page()
    # Given a paid power bill, and the operator on its payment's page
    pay_bill(page, town.site)
    sign_in(page, town.site)
    page.goto(f"{town.site.url}/console/pay/payments?lang=zh")
    page.locator("table tbody tr a").first.click()
    # Then the amount is not filled in for them
    expect(page.get_by_label("金额（元）")).to_have_value("")  # noqa: RUF001
    # When they type an ambiguous amount, then it is refused in Chinese
    page.get_by_label("金额（元）").fill("52,31")  # noqa: RUF001
    page.get_by_label("原因").fill("电费多算，退还差额")  # noqa: RUF001
    page.get_by_role("button", name="核对退款").click()
    expect(page.locator(".field-error")).to_contain_text("有歧义")
    # When they ask for ¥30.00, then a confirmation repeats the amount and who gets it back
    page.get_by_label("金额（元）").fill("30")  # noqa: RUF001
    page.get_by_label("原因").fill("电费多算，退还差额")  # noqa: RUF001
    page.get_by_role("button", name="核对退款").click()
    expect(page.get_by_role("heading", name="确认退款 ¥30.00？")).to_be_visible()  # noqa: RUF001
    expect(page.locator("dl.facts")).to_contain_text("¥98.00")
    shot(page, "40-console-refund-confirm-zh")
    # And nothing is refunded until it is confirmed
    with town.services.db.unit_of_work(write=False) as session:
        assert session.scalars(select(Payment.refunded_fen)).all() == [0]
    page.get_by_role("button", name="退款 ¥30.00").click()
    expect(page.get_by_role("status")).to_contain_text("退款已提交")
    expect(page.get_by_text("最多还可退 ¥98.00", exact=False)).to_be_visible()
    context.close()


def test_a_settlement_is_previewed_then_confirmed_on_a_phone_in_english(
    chromium: Chromium, town: Town
) -> None:
    context = chromium.new_context(viewport=PHONE, locale="en", java_script_enabled=False)
    page = context.new_page()
    # Given a water payment that ended yesterday (Beijing time)
    pay_bill(page, town.site, "大连市供水有限公司", "0411000002")
    with town.services.db.unit_of_work() as session:
        for payment in session.scalars(select(Payment).where(Payment.amount_fen != 12_800)):
            assert payment.finished_at is not None
            payment.finished_at = payment.finished_at - timedelta(days=1)
    yesterday = (beijing_now() - timedelta(days=1)).date().isoformat()
    sign_in(page, town.site)
    page.goto(f"{town.site.url}/console/pay/settlements?lang=en")
    # Then the settlements page lists that day as still to settle
    waiting = page.locator("section[aria-labelledby=waiting-title] tbody tr")
    expect(waiting).to_have_count(1)
    expect(waiting).to_contain_text(yesterday)
    # When a day with nothing to settle is chosen, then it is refused with a clear message
    page.locator("#settle-biller_id").select_option(label="Dalian Water Supply")
    page.locator("#settle-business_date").fill("2020-01-01")
    page.get_by_role("button", name="Preview the settlement").click()
    expect(page.get_by_role("alert")).to_contain_text("there is nothing to settle")
    # When the waiting day is previewed, then the figures and the payee's account are shown
    page.locator("section[aria-labelledby=waiting-title]").get_by_role(
        "button", name="Preview"
    ).click()
    expect(page.locator("h1")).to_contain_text(yesterday)
    expect(page.get_by_text("6222", exact=False).first).to_be_visible()
    shot(page, "41-console-settlement-preview-phone-en")
    # And when it is confirmed, the day is settled once and no longer waits
    page.get_by_role("button", name="Settle and pay", exact=False).click()
    expect(page.get_by_role("status")).to_contain_text("The day was settled.")
    expect(page.locator("section[aria-labelledby=waiting-title] tbody tr")).to_have_count(0)
    # And its bank batch file downloads, in the bank's format
    settled = page.locator("section[aria-labelledby=settlements-list-title] tbody tr")
    expect(settled).to_have_count(1)
    with page.expect_download() as download:
        settled.get_by_role("link", name="Download CSV").click()
    batch = Path(download.value.path()).read_text(encoding="utf-8")
    assert batch.splitlines()[-1].startswith("TRAILER,STL")
    assert "6222020200112233445" in batch
    context.close()
