"""A citizen pays a Dalian water bill in a real browser: Debian's Chromium, driven by Playwright.

The application (Pay's pages mounted) runs under uvicorn on a free loopback port, over a fresh
SQLite database holding Dalian and its billers, with ``public_base_url`` set to that port so
that the sandbox's checkout and the receipt's QR code lead back to it. In the console, Dalian's
Pay operator refunds and settles, and the platform administrator (reconciliation is done
platform-wide) imports the sandbox's statement and resolves an exception. Screenshots of every step
land in ``test-artifacts/screenshots/pay-*.png``; with ``CIVICLOUD_UPDATE_DOCS_SCREENSHOTS=1`` the
bills page and the receipt also go to ``docs/screenshots/``. The browser is never downloaded: without ``/usr/bin/chromium`` these
tests are skipped.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import FilePayload, Locator, Page, ViewportSize, expect, sync_playwright
from tests.functional.live_server import free_port, serving

from civicloud.app import build_services, create_app, load_settings, prepare_database
from civicloud.core import identity, roles, tenants
from civicloud.core.actor import Actor
from civicloud.core.config import AuthSettings
from civicloud.core.db import utcnow
from civicloud.core.services import Services
from civicloud.core.tenants import TenantCreate, TenantKind
from civicloud.pay import billing
from civicloud.pay import web as pay_web
from civicloud.pay.models import BillerCategory
from civicloud.pay.payments import PayContext
from civicloud.pay.providers import SandboxProvider
from civicloud.pay.schemas import BillerCreate
from civicloud.pay.settings import PaySettings
from civicloud.pay.web.views import beijing_now

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
DOCS = REPO / "docs" / "screenshots"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 375, "height": 812}
OPERATOR, PASSWORD = "water.cashier", "correct-horse-battery-staple"
#: The platform administrator, as in the demo (``civicloud.demo``): reconciliation is done
#: platform-wide (``pay.reconcile`` granted at platform level), which Dalian's operator is not.
ADMIN = "admin"
SANDBOX_ZH = "沙箱（演示，不涉及真实资金）"  # noqa: RUF001

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
]


@dataclass(frozen=True)
class Site:
    """The running application's address, and its sandbox (whose statement the tests import)."""

    url: str
    sandbox: SandboxProvider


def seed_dalian(services: Services) -> None:
    """Dalian, its water, power and traffic-police billers, and bills of two water accounts."""
    system = Actor.system("tests")
    today = utcnow().date()
    with services.db.unit_of_work() as session:
        ids: dict[str, uuid.UUID] = {}
        for slug, name_zh, name_en, kind, parent, region in (
            ("china", "中华人民共和国", "China", TenantKind.COUNTRY, None, "cn-beijing"),
            ("liaoning", "辽宁省", "Liaoning Province", TenantKind.PROVINCE, "china", "cn-dalian"),
            ("dalian", "大连市", "Dalian", TenantKind.CITY, "liaoning", None),
            (
                "dalian-water",
                "大连市供水有限公司",
                "Dalian Water Supply",
                TenantKind.AGENCY,
                "dalian",
                None,
            ),
            (
                "dalian-power",
                "国网大连供电公司",
                "Dalian Power Supply",
                TenantKind.AGENCY,
                "dalian",
                None,
            ),
            (
                "dalian-traffic-police",
                "大连市公安局交通警察支队",
                "Dalian Traffic Police",
                TenantKind.AGENCY,
                "dalian",
                None,
            ),
        ):
            created = tenants.create_tenant(
                session=session,
                actor=system,
                data=TenantCreate(
                    slug=slug,
                    name_zh=name_zh,
                    name_en=name_en,
                    kind=kind,
                    parent_id=ids[parent] if parent else None,
                    region_code=region,
                ),
            )
            ids[slug] = created.id
        billers = {}
        for home, code, name_zh, name_en, category, pattern in (
            (
                "dalian-water",
                "water",
                "大连市供水有限公司",
                "Dalian Water Supply",
                "water",
                r"\d{10}",
            ),
            (
                "dalian-power",
                "power",
                "国网大连供电公司",
                "Dalian Power Supply",
                "power",
                r"\d{12}",
            ),
            (
                "dalian-traffic-police",
                "fines",
                "大连市公安局交通警察支队",
                "Dalian Traffic Police",
                "fine",
                r"辽B[A-Z0-9]{5}",
            ),
        ):
            billers[code] = billing.create_biller(
                session=session,
                actor=system,
                data=BillerCreate(
                    tenant_id=ids[home],
                    code=code,
                    name_zh=name_zh,
                    name_en=name_en,
                    category=BillerCategory(category),
                    account_pattern=pattern,
                    settlement_bank="中国工商银行大连分行",
                    settlement_account="6222020200112233445",
                    settlement_account_name=name_zh,
                ),
            )
        late_fee = {"per_day_basis_points": 5, "cap_fen": 5_000}
        rows = [
            ("WATER-202610-000001", "0411000001", "王建国", 8_650, "2026-10", -12),
            ("WATER-202611-000001", "0411000001", "王建国", 7_320, "2026-11", 18),
            ("WATER-202611-000002", "0411000002", "Li Wei", 5_480, "2026-11", 18),
            # Paid by the operator's console tour itself, which then finds that payment.
            ("WATER-202611-000004", "0411000004", "陈静", 6_210, "2026-11", 18),
        ]
        billing.import_bills(
            session=session,
            actor=system,
            biller_id=billers["water"].id,
            rows=[
                {
                    "bill_number": number,
                    "account_number": account,
                    "payer_name": payer,
                    "amount_fen": amount,
                    "period": period,
                    "due_date": (today + timedelta(days=days)).isoformat(),
                    "late_fee_rule": late_fee,
                }
                for number, account, payer, amount, period, days in rows
            ],
        )
        # A power bill, paid and then partly refunded by the console tests below.
        billing.import_bills(
            session=session,
            actor=system,
            biller_id=billers["power"].id,
            rows=[
                {
                    "bill_number": "POWER-202611-000001",
                    "account_number": "041100000003",
                    "payer_name": "赵丽",
                    "amount_fen": 12_800,
                    "period": "2026-11",
                    "due_date": (today + timedelta(days=20)).isoformat(),
                }
            ],
        )
        # Dalian's Pay operator (a role Pay brings along).
        operator = identity.create_user(
            session=session,
            actor=system,
            data=identity.UserCreate(
                username=OPERATOR,
                display_name="刘敏",
                password=PASSWORD,
                tenant_id=ids["dalian"],
            ),
            passwords=services.passwords,
        )
        roles.grant_role(
            session=session,
            actor=system,
            data=roles.RoleBindingCreate(
                user_id=operator.id,
                role_name="pay_operator",
                tenant_id=ids["dalian"],
            ),
        )
        # The platform administrator (the demo's ``admin``), who may reconcile.
        admin = identity.create_user(
            session=session,
            actor=system,
            data=identity.UserCreate(
                username=ADMIN,
                display_name="平台管理员 Platform Admin",
                password=PASSWORD,
                tenant_id=ids["china"],
            ),
            passwords=services.passwords,
        )
        roles.grant_role(
            session=session,
            actor=system,
            data=roles.RoleBindingCreate(
                user_id=admin.id, role_name="platform_admin", tenant_id=None
            ),
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Dalian's bill payment, served on a free loopback port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("civicloud-pay-browser"),
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
            yield Site(url, sandbox)
    finally:
        services.db.dispose()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    """Headless Chromium from the system (never a downloaded browser)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def shot(page: Page, name: str, *, docs: str | None = None) -> None:
    """Save a full-page screenshot of this step (and a copy for the docs, when named)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"pay-{name}.png"), full_page=True)
    # The copies under docs/ change only when asked for, so a test run leaves the tree clean.
    if docs and os.environ.get("CIVICLOUD_UPDATE_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS / docs), full_page=True)


def fits(page: Page, width: int) -> None:
    """Nothing on the page is wider than the screen."""
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width


def test_a_citizen_pays_a_dalian_water_bill_on_a_phone_in_chinese(
    chromium: Chromium, site: Site
) -> None:
    context = chromium.new_context(viewport=PHONE, locale="zh-CN", device_scale_factor=2)
    page = context.new_page()
    # Given the bill payment portal, in Chinese for a Chinese phone
    page.goto(f"{site.url}/pay")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("heading", name="生活缴费")).to_be_visible()
    expect(page.get_by_role("link", name="大连市", exact=True)).to_have_attribute(
        "aria-current", "true"
    )
    fits(page, PHONE["width"])
    shot(page, "01-billers-zh")
    # When the citizen chooses the water company and enters the account number
    page.get_by_role("link", name="大连市供水有限公司").click()
    expect(page.get_by_text("格式：10 位数字。")).to_be_visible()  # noqa: RUF001
    page.get_by_label("户号").fill("0411000001")
    fits(page, PHONE["width"])
    shot(page, "02-account-zh")
    page.get_by_role("button", name="查询账单").click()
    # Then both open bills are listed, the payer's name masked, the overdue one with its late fee
    expect(page.get_by_role("heading", name="待缴账单")).to_be_visible()
    bills = page.locator(".pay-bill")
    expect(bills).to_have_count(2)
    expect(bills.first).to_contain_text("王*国")
    expect(bills.first).to_contain_text("已逾期")
    expect(page.locator("body")).not_to_contain_text("王建国")
    expect(page.get_by_label("沙箱（演示，不涉及真实资金）")).to_be_checked()  # noqa: RUF001
    fits(page, PHONE["width"])
    shot(page, "03-bills-zh", docs="pay-bills-zh.png")
    # When they check what they pay, then pay both with the sandbox
    page.get_by_role("button", name="核对并缴费").click()
    expect(page.get_by_role("heading", name="核对缴费信息")).to_be_visible()
    page.get_by_role("button", name="立即缴费").click()
    expect(page.get_by_role("heading", name="收银台")).to_be_visible()
    expect(page.locator(".pay-amount")).to_contain_text("¥")
    fits(page, PHONE["width"])
    shot(page, "04-sandbox-zh")
    page.get_by_role("button", name="模拟支付成功").click()
    # Then the payment succeeded and the receipt is one tap away
    expect(page.get_by_role("heading", name="缴费成功")).to_be_visible()
    number = page.locator(".pay-receipt-number").inner_text().strip()
    assert number.startswith("R")
    fits(page, PHONE["width"])
    shot(page, "05-paid-zh")
    page.get_by_role("link", name="查看电子收据").click()
    expect(page.get_by_role("heading", name="电子缴费收据")).to_be_visible()
    expect(page.locator("body")).to_contain_text(number)
    expect(page.locator("svg").first).to_be_visible()
    fits(page, PHONE["width"])
    shot(page, "06-receipt-zh", docs="pay-receipt-zh.png")
    # And the link under its QR code says the receipt is genuine
    page.locator(".verify a").click()
    expect(page.get_by_text("收据真实有效")).to_be_visible()
    fits(page, PHONE["width"])
    shot(page, "07-verify-zh")
    # And the bills are gone from the account
    page.goto(f"{site.url}/pay")
    page.get_by_role("link", name="大连市供水有限公司").click()
    page.get_by_label("户号").fill("0411000001")
    page.get_by_role("button", name="查询账单").click()
    expect(page.get_by_text("暂无待缴账单", exact=True)).to_be_visible()
    context.close()


def test_a_citizen_pays_in_english_on_a_desktop(chromium: Chromium, site: Site) -> None:
    context = chromium.new_context(viewport=DESKTOP, locale="en-US")
    page = context.new_page()
    page.goto(f"{site.url}/pay")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Pay bills online")).to_be_visible()
    shot(page, "11-billers-en")
    page.get_by_role("link", name="Dalian Water Supply").click()
    page.get_by_label("Customer account number").fill("0411000002")
    page.get_by_role("button", name="Find my bills").click()
    expect(page.locator(".pay-bill")).to_have_count(1)
    expect(page.locator(".pay-bill")).to_contain_text("L****i")
    expect(page.locator(".pay-sum")).to_contain_text("CNY 54.80")
    shot(page, "12-bills-en")
    page.get_by_role("button", name="Check and pay CNY 54.80").click()
    page.get_by_role("button", name="Pay CNY 54.80 now").click()
    expect(page.get_by_role("heading", name="Checkout")).to_be_visible()
    shot(page, "13-sandbox-en")
    page.get_by_role("button", name="Pay successfully").click()
    expect(page.get_by_role("heading", name="Payment successful")).to_be_visible()
    shot(page, "14-paid-en")
    page.get_by_role("link", name="View the receipt").click()
    expect(page.get_by_role("heading", name="Payment receipt")).to_be_visible()
    expect(page.locator("body")).to_contain_text("CNY 54.80")
    shot(page, "15-receipt-en")
    context.close()


def test_a_wrong_account_number_is_explained_next_to_the_field(
    chromium: Chromium, site: Site
) -> None:
    context = chromium.new_context(viewport=PHONE, locale="zh-CN", device_scale_factor=2)
    page = context.new_page()
    page.goto(f"{site.url}/pay")
    page.get_by_role("link", name="大连市供水有限公司").click()
    page.get_by_label("户号").fill("12345")
    page.get_by_role("button", name="查询账单").click()
    field = page.get_by_label("户号")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#pay-account-error")).to_contain_text("不符合此收费单位的格式")
    fits(page, PHONE["width"])
    shot(page, "08-account-error-zh")
    context.close()


def pay_with_sandbox(page: Page, site: Site, biller: str, account: str) -> None:
    """A citizen pays every open bill of ``account`` at ``biller`` with the sandbox."""
    page.goto(f"{site.url}/pay")
    page.get_by_role("link", name=biller).click()
    page.get_by_label("户号").fill(account)
    page.get_by_role("button", name="查询账单").click()
    page.get_by_role("button", name="核对并缴费").click()
    page.get_by_role("button", name="立即缴费").click()
    page.get_by_role("button", name="模拟支付成功").click()
    expect(page.get_by_role("heading", name="缴费成功")).to_be_visible()


def sign_in(page: Page, site: Site, username: str = OPERATOR) -> None:
    """Sign Dalian's Pay operator (or ``username``) in, landing on the console's Pay pages."""
    page.goto(f"{site.url}/login?next=/console/pay")
    page.locator("#login-username").fill(username)
    page.locator("#login-password").fill(PASSWORD)
    page.locator("#login-password").press("Enter")
    expect(page).to_have_url(f"{site.url}/console/pay")


def test_an_operator_works_in_the_pay_console(chromium: Chromium, site: Site) -> None:
    context = chromium.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    # Given a citizen has paid her water bill (this scene does not count on the scenes above:
    # it passes alone, and wherever the runner puts it)
    pay_with_sandbox(page, site, "大连市供水有限公司", "0411000004")
    # And Dalian's Pay operator signs in
    sign_in(page, site)
    # Then the billers of Dalian are listed with their bills
    expect(page.get_by_role("heading", name="缴费服务", exact=True)).to_be_visible()
    water = page.get_by_role("link", name="大连市供水有限公司").first
    expect(water).to_have_attribute("href", re.compile(r"^/console/pay/billers/"))
    shot(page, "21-console-billers-zh")
    # And a biller's page shows its bills, payer names in full, and the CSV form
    water.click()
    expect(page.get_by_role("heading", name="通过 CSV 文件发布账单")).to_be_visible()
    expect(page.get_by_role("cell", name="王建国").first).to_be_visible()
    shot(page, "22-console-biller-zh")
    # And the payments are listed with their count and totals
    page.get_by_role("navigation", name="缴费服务").get_by_role("link", name="缴费记录").click()
    expect(page.get_by_role("heading", name="缴费记录", level=1)).to_be_visible()
    expect(page.locator(".list-count")).to_have_text(re.compile(r"共 \d+ 条。"))
    expect(page.locator(".list-totals")).to_contain_text("¥")
    shot(page, "23-console-payments-zh")
    # And can be searched by the citizen's account number, and opened
    account, payer = "0411000004", "陈静"
    expect(page.locator(".list-table tbody tr").first).to_contain_text(account)
    search = page.get_by_role("search")
    search.locator("#payments-account").fill(account)
    search.get_by_role("button", name="查询").click()
    rows = page.locator(".list-table tbody tr")
    expect(rows.first).to_contain_text(account)
    expect(rows.first).to_contain_text(payer)
    for index in range(rows.count()):
        expect(rows.nth(index)).to_contain_text(account)
    rows.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name="为本笔缴费退款")).to_be_visible()
    shot(page, "24-console-payment-zh")
    # And the ledger shows, by name, what is owed to the water company (the provider's clearing
    # account is the installation's, not Dalian's)
    page.goto(f"{site.url}/console/pay/ledger")
    balances = page.locator("section[aria-labelledby=balances-title]")
    expect(
        balances.get_by_role("link", name="大连市供水有限公司 — 应付款", exact=True)
    ).to_be_visible()
    shot(page, "25-console-ledger-zh")
    # And on a phone the console's Pay pages fit the screen
    phone = chromium.new_context(viewport=PHONE, locale="zh-CN", device_scale_factor=2)
    small = phone.new_page()
    sign_in(small, site)
    for path in ("/console/pay", "/console/pay/payments", "/console/pay/settlements"):
        small.goto(f"{site.url}{path}")
        expect(small.locator("main h1")).to_be_visible()
        fits(small, PHONE["width"])
    shot(small, "26-console-settlements-phone-zh")
    phone.close()
    context.close()


def test_an_operator_refunds_part_of_a_payment_and_settles_a_day(
    chromium: Chromium, site: Site
) -> None:
    context = chromium.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    # Given a citizen has paid her power bill with the sandbox
    pay_with_sandbox(page, site, "国网大连供电公司", "041100000003")
    # And Dalian's Pay operator signs in and opens that payment
    sign_in(page, site)
    page.get_by_role("navigation", name="缴费服务").get_by_role("link", name="缴费记录").click()
    search = page.get_by_role("search")
    search.locator("#payments-biller").select_option(label="国网大连供电公司")
    search.get_by_role("button", name="查询").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("¥128.00")
    rows.get_by_role("link").click()
    expect(page.get_by_role("heading", name="为本笔缴费退款")).to_be_visible()
    expect(page.get_by_text("暂无退款")).to_be_visible()
    # When they refund part of it through the refund form
    page.get_by_label("金额（元）").fill("30.00")  # noqa: RUF001
    page.get_by_label("原因").fill("电费多算了一个月的峰时电价，退还差额")  # noqa: RUF001
    page.get_by_role("button", name="核对退款").click()
    expect(page.get_by_role("heading", name="确认退款 ¥30.00？")).to_be_visible()  # noqa: RUF001
    page.get_by_role("button", name="退款 ¥30.00").click()
    # Then the refund is listed, refunded by the sandbox, and the rest can still be refunded
    expect(page.get_by_role("status")).to_have_text("退款已提交，处理状态见下方。")  # noqa: RUF001
    refunds = page.locator("section[aria-labelledby=refunds-title] tbody tr")
    expect(refunds).to_have_count(1)
    expect(refunds).to_contain_text("¥30.00")
    expect(refunds).to_contain_text("电费多算了一个月的峰时电价，退还差额")  # noqa: RUF001
    expect(refunds.locator(".badge")).to_have_text("已退款")
    expect(refunds.locator("code")).to_have_text(re.compile(r"^RF[0-9A-F]{30}$"))
    expect(page.get_by_text("最多还可退 ¥98.00。")).to_be_visible()
    shot(page, "27-console-refund-zh")
    # When they try to settle yesterday of the power company, which had no payment
    # (settling a day with payments: test_confirm_browser.py)
    page.get_by_role("navigation", name="缴费服务").get_by_role("link", name="结算").click()
    yesterday = (beijing_now() - timedelta(days=1)).date().isoformat()
    expect(page.locator("#settle-business_date")).to_have_value(yesterday)
    page.locator("#settle-biller_id").select_option(label="国网大连供电公司")
    page.get_by_role("button", name="预览结算").click()
    # Then it is refused: there is nothing to settle
    expect(page.get_by_role("alert")).to_contain_text("没有可结算的款项")
    shot(page, "28-console-nothing-to-settle-zh")
    # And the reconciliation tab shows them the exceptions touching their billers, and tells
    # them that statements are imported, and exceptions resolved, platform-wide: with no form
    # to do either
    page.get_by_role("navigation", name="缴费服务").get_by_role("link", name="对账").click()
    expect(page.get_by_role("heading", name="对账", level=1)).to_be_visible()
    expect(page.locator("main .notice[role=status]")).to_contain_text(
        "由平台对账人员导入并处理差异"
    )
    expect(page.get_by_role("heading", name="差错", level=2)).to_be_visible()
    expect(page.get_by_role("heading", name="导入对账单")).to_have_count(0)
    expect(page.locator("input[type=file]")).to_have_count(0)
    expect(page.locator("main form[method=post]")).to_have_count(0)
    shot(page, "29-console-reconciliation-denied-zh")
    context.close()


def exception(page: Page, kind: str, text: str) -> Locator:
    """The listed reconciliation exception of ``kind`` (its badge's words) that shows ``text``."""
    return (
        page.locator(".pay-exception")
        .filter(has=page.locator(".badge", has_text=re.compile(f"^{kind}$")))
        .filter(has_text=text)
    )


def test_the_platform_administrator_reconciles_the_sandbox_statement(
    chromium: Chromium, site: Site
) -> None:
    # Given today's statement of the sandbox (the payments and the refund of the tests above,
    # every one of them ours), with two lines of a trade we know nothing about added: a payment,
    # and a refund of it under a refund number we never issued
    day = beijing_now().date()
    ours = site.sandbox.statement(day).decode()
    lines = [line for line in ours.splitlines() if line and not line.startswith("#")][1:]
    unknown = f"CC{day:%Y%m%d}{uuid.uuid4().int % 10**16:016d}"
    refund_no = f"RF{uuid.uuid4().hex[:30].upper()}"
    statement = (
        ours
        + f"{unknown},SBXFAKE0001,payment,777,{day.isoformat()}T10:00:00+08:00,\n"
        + f"{unknown},SBXFAKE0001,refund,200,{day.isoformat()}T11:00:00+08:00,{refund_no}\n"
    )
    context = chromium.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    # When the platform administrator imports it on the reconciliation page
    sign_in(page, site, ADMIN)
    page.get_by_role("navigation", name="缴费服务").get_by_role("link", name="对账").click()
    expect(page.get_by_text("尚未导入对账单。")).to_be_visible()
    # (the import form, not the sandbox's download form beside it, nor the exceptions' filters)
    importing = page.get_by_role("region", name="导入对账单").locator("form[method=post]")
    importing.get_by_label("支付渠道").select_option("sandbox")
    importing.get_by_label("业务日期").fill(day.isoformat())
    importing.get_by_label("对账单文件").set_input_files(
        FilePayload(name="sandbox-statement.csv", mimeType="text/csv", buffer=statement.encode())
    )
    importing.get_by_role("button", name="导入并对账").click()
    # Then every line is classified: ours matched, the two unknown ones exceptions
    expect(page.get_by_role("status").first).to_have_text(
        "对账单已导入，各行均已完成核对分类。"  # noqa: RUF001
    )
    imported = page.locator("section[aria-labelledby=imports-title] tbody tr")
    expect(imported).to_have_count(1)
    expect(imported.locator("td")).to_have_text(
        [
            SANDBOX_ZH,
            day.isoformat(),
            str(len(lines)),
            "2",
            "2",
            re.compile(ADMIN),
        ]
    )
    exceptions = page.locator("section[aria-labelledby=items-title]")
    expect(exceptions.locator(".list-count")).to_have_text("共 2 条。")
    expect(page.locator(".pay-exception")).to_have_count(2)
    # And each exception says whether it is a payment or a refund; the refund shows its number
    paid = exception(page, "支付", unknown)
    expect(paid.locator(".badge")).to_have_text(["本平台无记录", "支付"])
    expect(paid).to_contain_text("¥7.77")
    refunded = exception(page, "退款", refund_no)
    expect(refunded.locator(".badge")).to_have_text(["本平台无记录", "退款"])
    expect(refunded).to_contain_text("退款单号")
    expect(refunded).to_contain_text("-¥2.00")
    expect(page.locator("main")).not_to_contain_text(
        re.compile(r"\b(Payment|Refund|Missing|Provider|Resolve)")
    )
    shot(page, "30-console-statement-imported-zh")
    # When they resolve the unknown payment with the adjustment the form suggests, its accounts
    # chosen by name
    paid.get_by_text("通过调账处理").click()
    debit, credit = paid.get_by_label("借方科目"), paid.get_by_label("贷方科目")
    expect(debit).to_have_value("clearing:sandbox")
    expect(debit.locator("option:checked")).to_have_text(f"清算 — {SANDBOX_ZH}")
    expect(credit).to_have_value("suspense")
    expect(credit.locator("option:checked")).to_have_text("待查明款项")
    expect(paid.get_by_label("金额（元）")).to_have_value("7.77")  # noqa: RUF001
    paid.get_by_label("说明").fill("渠道多出一笔未知收款，暂挂待查")  # noqa: RUF001
    shot(page, "31-console-resolve-zh")
    paid.get_by_role("button", name="核对调账").click()
    # Then a confirmation repeats the amount and both accounts by name, and nothing is posted yet
    expect(page.get_by_role("heading", level=1)).to_have_text("确认记一笔 ¥7.77 的调账？")  # noqa: RUF001
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("¥7.77")
    expect(facts).to_contain_text(f"清算 — {SANDBOX_ZH}")
    expect(facts).to_contain_text("待查明款项")
    expect(facts).to_contain_text(unknown)
    expect(facts).to_contain_text("渠道多出一笔未知收款，暂挂待查")  # noqa: RUF001
    # When they confirm
    page.get_by_role("button", name=re.compile(r"^将 ¥7\.77 从")).click()
    # Then it is resolved: only the refund is left unresolved, and the resolved one is shown
    # as such among all exceptions
    expect(page.get_by_role("status").first).to_have_text("差错已通过调账处理并记账。")
    expect(imported.locator("td").nth(4)).to_have_text("1")
    page.get_by_role("link", name="只显示未处理的").click()
    expect(page.locator("#exceptions-state")).to_have_value("open")
    expect(page.locator(".pay-exception")).to_have_count(1)
    expect(exception(page, "退款", refund_no)).to_have_count(1)
    expect(exception(page, "支付", unknown)).to_have_count(0)
    search = exceptions.get_by_role("search")
    search.get_by_label("处理状态").select_option(label="全部")
    search.get_by_role("button", name="查询").click()
    expect(exceptions.locator(".list-count")).to_have_text("共 2 条。")
    expect(page.locator(".pay-exception")).to_have_count(2)
    expect(paid.locator(".pay-resolved")).to_contain_text("已处理")
    expect(paid.get_by_text("通过调账处理")).to_have_count(0)
    shot(page, "32-console-resolved-zh")
    # When they switch the site to English
    page.get_by_role("navigation", name="语言").get_by_role("link", name="English").click()
    # Then the same page reads in English
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Reconciliation", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Exceptions", exact=True)).to_be_visible()
    expect(exceptions.locator(".list-count")).to_have_text("2 match.")
    expect(imported.locator("td").nth(0)).to_have_text("Sandbox (demo, no real money)")
    paid = exception(page, "Payment", unknown)
    expect(paid.locator(".badge")).to_have_text(["Missing on our side", "Payment", "Resolved"])
    expect(paid).to_contain_text("CNY 7.77")
    refunded = exception(page, "Refund", refund_no)
    expect(refunded.locator(".badge")).to_have_text(["Missing on our side", "Refund"])
    expect(refunded).to_contain_text("Refund no.")
    expect(refunded).to_contain_text("-CNY 2.00")
    expect(refunded.get_by_text("Resolve with an adjustment")).to_be_visible()
    shot(page, "33-console-reconciliation-en")
    context.close()
    # And on a phone the reconciliation page (every exception, resolved or not, unless filtered),
    # its resolve form open, fits the screen
    phone = chromium.new_context(viewport=PHONE, locale="zh-CN", device_scale_factor=2)
    small = phone.new_page()
    sign_in(small, site, ADMIN)
    small.goto(f"{site.url}/console/pay/reconciliation")
    expect(small.get_by_role("heading", name="对账", exact=True)).to_be_visible()
    expect(small.locator(".pay-exception")).to_have_count(2)
    fits(small, PHONE["width"])
    exception(small, "退款", refund_no).get_by_text("通过调账处理").click()
    expect(exception(small, "退款", refund_no).get_by_label("说明")).to_be_visible()
    fits(small, PHONE["width"])
    shot(small, "34-console-reconciliation-phone-zh")
    phone.close()
