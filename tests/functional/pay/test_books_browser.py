"""Pay's books in Chromium, in Chinese and in English, on a phone and a desktop, with no script.

The platform's reconciler downloads the sandbox's statement of the day from the reconciliation
page, imports it through the form's file upload, finds the exception it raised, resolves it with
an adjustment between accounts chosen by their names, confirms it on a page repeating the amount
and both accounts, and finds the item resolved and the adjustment on the ledger, its accounts by
name and its memo in the page's language. Dalian's Pay operator sees the exceptions of Dalian's
payments only, with neither the import form nor an adjustment form. No page is wider than the
screen. Screenshots land in ``test-artifacts/screenshots/pay-books-<page>-<locale>-<device>``.
"""

# The fixtures are imported from the Pay browser tests and named again as parameters.
# ruff: noqa: F811
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import FilePayload, Locator, Page, ViewportSize, expect
from sqlalchemy import select
from tests.factories.pay_money import make_payment
from tests.functional.pay.test_confirm_browser import Town, town  # noqa: F401 - the fixture
from tests.functional.pay.test_pay_browser import (  # noqa: F401 - the chromium fixture
    ADMIN,
    CHROMIUM,
    DESKTOP,
    PHONE,
    chromium,
    shot,
    sign_in,
)

from civicloud.core.actor import Actor
from civicloud.pay import reconciliation
from civicloud.pay.models import Biller, Payment
from civicloud.pay.web.views import beijing_now

pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("browser"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
]

#: What a page says in each language (the catalogs' words, as a reader sees them).
WORDS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "lang": "zh",
        "reconciliation": "对账",
        "ledger": "账务",
        "sandbox": "沙箱（演示，不涉及真实资金）",  # noqa: RUF001
        "download": "下载沙箱对账单",
        "import": "导入并对账",
        "imported": "对账单已导入，各行均已完成核对分类。",  # noqa: RUF001
        "mismatch": "金额不符",
        "resolve": "通过调账处理",
        "debit": "借方科目",
        "credit": "贷方科目",
        "amount": "金额（元）",  # noqa: RUF001
        "explanation": "说明",
        "check": "核对调账",
        "clearing": "清算 — 沙箱（演示，不涉及真实资金）",  # noqa: RUF001
        "payable": "大连市供水有限公司 — 应付款",
        "confirm": "确认记一笔 ¥1.00 的调账？",  # noqa: RUF001
        "post": "将 ¥1.00 从",
        "money": "¥1.00",
        "resolved_notice": "差错已通过调账处理并记账。",
        "resolved": "已处理",
        "adjustment": "调账",
        "payment_memo": "缴费 ",
        "memo": "渠道多收一元，应付供水公司",  # noqa: RUF001
        "team": "由平台对账人员导入",
    },
    "en-US": {
        "lang": "en",
        "reconciliation": "Reconciliation",
        "ledger": "Ledger",
        "sandbox": "Sandbox (demo, no real money)",
        "download": "Download the sandbox's statement",
        "import": "Import and reconcile",
        "imported": "The statement was imported and every line classified.",
        "mismatch": "Amount mismatch",
        "resolve": "Resolve with an adjustment",
        "debit": "Debit account",
        "credit": "Credit account",
        "amount": "Amount in yuan",
        "explanation": "Explanation",
        "check": "Check the adjustment",
        "clearing": "Clearing — Sandbox (demo, no real money)",
        "payable": "Dalian Water Supply — payable",
        "confirm": "Post an adjustment of CNY 1.00?",
        "post": "Post CNY 1.00 from",
        "money": "CNY 1.00",
        "resolved_notice": "The exception was resolved with a posted adjustment.",
        "resolved": "Resolved",
        "adjustment": "Adjustment",
        "payment_memo": "Payment ",
        "memo": "the provider took one yuan more, owed to the water company",
        "team": "by the platform's reconciliation team",
    },
}
DEVICES = [(PHONE, "phone"), (DESKTOP, "desktop")]
#: English a Chinese page should not show (labels, headings, buttons left untranslated).
ENGLISH = re.compile(
    r"\b(Payment|Refund|Missing|Provider|Resolve|Resolved|Amount|Debit|Credit|Ledger|Balance|"
    r"Import|Statement|Exceptions?|Suspense|Clearing|Adjustment|Confirm|Cancel|Memo)\b"
)
#: Chinese an English page should not show.
CHINESE = re.compile(r"[\u4e00-\u9fff]")
#: A ledger code with a biller's id, never the main text a person reads.
RAW_ACCOUNT = re.compile(r"^(payable|settlement):[0-9a-f-]{36}$")


@dataclass(frozen=True)
class Mismatch:
    """A payment of Dalian's water company the sandbox's statement shows one yuan more for."""

    trade_no: str
    provider_trade_no: str
    amount_fen: int
    biller_id: uuid.UUID

    def line(self) -> str:
        """The statement's line of it, one yuan more than we took."""
        day = beijing_now().date().isoformat()
        return (
            f"{self.trade_no},{self.provider_trade_no},payment,{self.amount_fen + 100},"
            f"{day}T10:00:00+08:00,\n"
        )


def water_payment(town: Town, amount_fen: int) -> Mismatch:
    """A sandbox payment of Dalian's water company, succeeded now and posted to the ledger."""
    with town.services.db.unit_of_work() as session:
        water = session.scalars(select(Biller).where(Biller.code == "water")).one()
        payment: Payment = make_payment(session, water, amount_fen=amount_fen)
        assert payment.provider_trade_no is not None
        return Mismatch(payment.trade_no, payment.provider_trade_no, amount_fen, water.id)


def fits(page: Page, device: str, what: str) -> None:
    """Nothing on the page is wider than the screen."""
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    if overflow > 0:
        # The deepest elements past the screen's edge, to say what does not fit.
        wide = page.evaluate(
            """() => [...document.querySelectorAll('main *')]
                .filter(e => e.getBoundingClientRect().right
                    > document.documentElement.clientWidth + 1)
                .filter(e => ![...e.children].some(c => c.getBoundingClientRect().right
                    > document.documentElement.clientWidth + 1))
                .slice(0, 5)
                .map(e => e.tagName.toLowerCase() + '.' + e.className + ': '
                    + e.textContent.trim().slice(0, 60))"""
        )
        pytest.fail(f"the {what} page is {overflow}px wider than the {device}'s screen: {wide}")


def in_its_language(locator: Locator, locale: str) -> None:
    """The text of ``locator`` is in the page's language: no English left on a Chinese page,
    no Chinese on an English one."""
    text = locator.inner_text()
    found = (ENGLISH if locale == "zh-CN" else CHINESE).findall(text)
    assert not found, f"{found} on a {locale} page: {text[:2000]}"


def exception_of(page: Page, trade_no: str, classification: str) -> Locator:
    """The listed exception of ``trade_no`` whose badge says ``classification``."""
    return (
        page.locator(".pay-exception")
        .filter(has=page.locator(".badge", has_text=re.compile(f"^{re.escape(classification)}$")))
        .filter(has_text=trade_no)
    )


@pytest.mark.parametrize(("viewport", "device"), DEVICES)
@pytest.mark.parametrize("locale", sorted(WORDS))
def test_the_reconciler_imports_the_sandboxs_statement_and_resolves_an_exception(
    chromium: Chromium, town: Town, locale: str, viewport: ViewportSize, device: str
) -> None:
    words = WORDS[locale]
    mismatch = water_payment(town, 4_321)
    # The memo in the page's language, told apart from the other tests' by the trade's end.
    memo = f"{words['memo']} {mismatch.trade_no[-6:]}"
    today = beijing_now().date().isoformat()
    context = chromium.new_context(viewport=viewport, locale=locale, java_script_enabled=False)
    page = context.new_page()
    try:
        # given the platform's reconciler on the reconciliation page
        sign_in(page, town.site, ADMIN)
        page.goto(f"{town.site.url}/console/pay/reconciliation?lang={words['lang']}")
        expect(page.get_by_role("heading", level=1)).to_have_text(words["reconciliation"])
        # when they download the sandbox's statement of today
        page.locator("#sandbox-date").fill(today)
        with page.expect_download() as download:
            page.get_by_role("button", name=words["download"]).click()
        statement = Path(download.value.path()).read_text(encoding="utf-8")
        assert f"# business_date: {today}" in statement
        # and import it, the provider having taken one yuan more for a water payment
        page.locator("#statement-provider").select_option(label=words["sandbox"])
        page.locator("#statement-business_date").fill(today)
        page.locator("#statement-file").set_input_files(
            FilePayload(
                name=f"sandbox-{today}.csv",
                mimeType="text/csv",
                buffer=(statement + mismatch.line()).encode(),
            )
        )
        page.get_by_role("button", name=words["import"]).click()
        # then the import is said done and the exception is listed, in the page's language
        expect(page.get_by_role("status").first).to_have_text(words["imported"])
        item = exception_of(page, mismatch.trade_no, words["mismatch"])
        expect(item).to_have_count(1)
        in_its_language(page.locator("main"), locale)
        fits(page, device, "reconciliation")
        shot(page, f"books-reconciliation-{locale}-{device}")
        # when they open its resolve form and choose the accounts by their names
        item.locator("summary", has_text=words["resolve"]).click()
        item.get_by_label(words["debit"]).select_option(label=words["clearing"])
        item.get_by_label(words["credit"]).select_option(label=words["payable"])
        expect(item.get_by_label(words["amount"])).to_have_value("1.00")
        item.get_by_label(words["explanation"]).fill(memo)
        fits(page, device, "resolve")
        shot(page, f"books-resolve-{locale}-{device}")
        item.get_by_role("button", name=words["check"]).click()
        # then a confirmation repeats the amount and both accounts, by name
        expect(page.get_by_role("heading", level=1)).to_have_text(words["confirm"])
        facts = page.locator("dl.facts")
        expect(facts).to_contain_text(words["money"])
        expect(facts).to_contain_text(words["clearing"])
        expect(facts).to_contain_text(words["payable"])
        expect(facts).to_contain_text(memo)
        expect(facts).not_to_contain_text(f"payable:{mismatch.biller_id}")
        in_its_language(page.locator("main"), locale)
        fits(page, device, "confirmation")
        shot(page, f"books-confirm-{locale}-{device}")
        # when they confirm
        page.get_by_role("button", name=re.compile(f"^{re.escape(words['post'])}")).click()
        # then the item is resolved
        expect(page.get_by_role("status").first).to_have_text(words["resolved_notice"])
        item = exception_of(page, mismatch.trade_no, words["mismatch"])
        expect(item.locator(".pay-resolved")).to_contain_text(words["resolved"])
        expect(item.locator("summary", has_text=words["resolve"])).to_have_count(0)
        fits(page, device, "resolved")
        shot(page, f"books-resolved-{locale}-{device}")
        # and the ledger, reached by Pay's tab, names the water company's account
        page.locator('.pay-tabs a[href="/console/pay/ledger"]').click()
        expect(page.get_by_role("heading", level=1)).to_have_text(words["ledger"])
        balances = page.locator("section[aria-labelledby=balances-title]")
        balances.get_by_role("link", name=words["payable"], exact=True).click()
        expect(page.locator("#journal-title")).to_contain_text(words["payable"])
        rows = page.locator(".pay-journal tbody tr")
        # and the adjustment is there, its accounts by name and its memo as written
        adjustment = rows.filter(has_text=memo)
        expect(adjustment).to_have_count(1)
        expect(adjustment.locator(".badge")).to_have_text(words["adjustment"])
        debit, credit = adjustment.locator("td").nth(2), adjustment.locator("td").nth(3)
        expect(debit.locator("span").first).to_have_text(words["clearing"])
        expect(credit.locator("span").first).to_have_text(words["payable"])
        expect(credit.locator("code")).to_have_text(f"payable:{mismatch.biller_id}")
        expect(adjustment.locator("td.num")).to_have_text(words["money"])
        # and the payment's own entry says so in the page's language
        paid = rows.filter(has_text=mismatch.trade_no)
        expect(paid.locator(".pay-ledger-memo")).to_have_text(
            f"{words['payment_memo']}{mismatch.trade_no}"
        )
        # and no account is shown by its raw code as the main text
        for name in rows.locator("td span[title]").all_inner_texts():
            assert not RAW_ACCOUNT.match(name.strip()), f"a raw account code shown: {name}"
        for name in balances.locator("tbody a").all_inner_texts():
            assert not RAW_ACCOUNT.match(name.strip()), f"a raw account code shown: {name}"
        in_its_language(page.locator(".page-head"), locale)
        in_its_language(balances, locale)
        in_its_language(page.locator(".pay-journal thead"), locale)
        fits(page, device, "ledger")
        shot(page, f"books-ledger-{locale}-{device}")
    finally:
        context.close()


@pytest.fixture(scope="module")
def imported(town: Town) -> tuple[Mismatch, str]:
    """A statement of today imported by the platform: a water payment of Dalian taken with one
    yuan more, and a line of a trade nobody here knows (whose trade number is returned)."""
    mismatch = water_payment(town, 2_468)
    stranger = f"CC{uuid.uuid4().int % 10**20:020d}"
    day = beijing_now().date()
    statement = (
        town.site.sandbox.statement(day).decode()
        + mismatch.line()
        + f"{stranger},SBXFAKE0009,payment,555,{day.isoformat()}T11:00:00+08:00,\n"
    )
    with town.services.db.unit_of_work() as session:
        reconciliation.import_statement(
            session=session,
            actor=Actor.system("tests"),
            provider=town.site.sandbox,
            content=statement.encode(),
            business_date=day,
        )
    return mismatch, stranger


@pytest.mark.parametrize(("viewport", "device"), DEVICES)
@pytest.mark.parametrize("locale", sorted(WORDS))
def test_a_billers_operator_sees_its_exceptions_without_the_reconcilers_forms(
    chromium: Chromium,
    town: Town,
    imported: tuple[Mismatch, str],
    locale: str,
    viewport: ViewportSize,
    device: str,
) -> None:
    words = WORDS[locale]
    mismatch, stranger = imported
    context = chromium.new_context(viewport=viewport, locale=locale, java_script_enabled=False)
    page = context.new_page()
    try:
        # given Dalian's Pay operator (the demo's water.cashier), signed in
        sign_in(page, town.site)
        # when they open the reconciliation tab
        page.goto(f"{town.site.url}/console/pay?lang={words['lang']}")
        page.locator('.pay-tabs a[href="/console/pay/reconciliation"]').click()
        expect(page.get_by_role("heading", level=1)).to_have_text(words["reconciliation"])
        # then the exception of Dalian's payment is listed, the stranger's is not
        expect(exception_of(page, mismatch.trade_no, words["mismatch"]).first).to_be_visible()
        expect(page.locator("main")).not_to_contain_text(stranger)
        # and they are told who imports and resolves, with no form to do either
        expect(page.locator("main .notice[role=status]")).to_contain_text(words["team"])
        expect(page.locator("input[type=file]")).to_have_count(0)
        expect(page.locator("main form[method=post]")).to_have_count(0)
        expect(page.locator("form[action$='sandbox-statement.csv']")).to_have_count(0)
        expect(page.locator("details.pay-resolve")).to_have_count(0)
        expect(page.locator("summary", has_text=words["resolve"])).to_have_count(0)
        in_its_language(page.locator("main"), locale)
        fits(page, device, "operator's reconciliation")
        shot(page, f"books-operator-reconciliation-{locale}-{device}")
        # and the ledger shows Dalian's accounts by name, with no form that posts
        page.locator('.pay-tabs a[href="/console/pay/ledger"]').click()
        expect(page.get_by_role("heading", level=1)).to_have_text(words["ledger"])
        balances = page.locator("section[aria-labelledby=balances-title]")
        expect(balances.get_by_role("link", name=words["payable"], exact=True)).to_be_visible()
        for name in balances.locator("tbody a").all_inner_texts():
            assert not RAW_ACCOUNT.match(name.strip()), f"a raw account code shown: {name}"
        expect(page.locator("main form[method=post]")).to_have_count(0)
        in_its_language(page.locator(".page-head"), locale)
        in_its_language(balances, locale)
        fits(page, device, "operator's ledger")
        shot(page, f"books-operator-ledger-{locale}-{device}")
    finally:
        context.close()
