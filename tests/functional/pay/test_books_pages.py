"""Pay's books in the console: reconciliation (importing, the exceptions a reader may see,
resolving with a confirmed adjustment, the sandbox's statement) and the ledger (accounts by
name, memos in the reader's language, pages and exports), on both databases."""

from __future__ import annotations

import uuid

import tests.functional.pay.test_pages as pages
from sqlalchemy import select
from tests.functional.pay.test_pages import Town, ledger_balanced, pay_all, sign_in
from tests.functional.web.helpers import Browser, text_of

from civicloud.core.services import Services
from civicloud.pay.models import ReconciliationItem
from civicloud.pay.providers import SandboxProvider
from civicloud.pay.web.views import beijing_now

# The pages' application, its sandbox and a town with its biller and operators.
app, browser, sandbox, town = pages.app, pages.browser, pages.sandbox, pages.town


def import_with_stranger(browser: Browser, sandbox: SandboxProvider) -> str:
    """Import today's sandbox statement with a line we know nothing about; its trade number."""
    day = beijing_now().date()
    unknown = f"CC{uuid.uuid4().int % 10**20:020d}"
    statement = sandbox.statement(day).decode()
    statement += f"{unknown},SBXFAKE0001,payment,777,{day.isoformat()}T10:00:00+08:00,\n"
    imported = browser.client.post(
        "/console/pay/reconciliation",
        data={"csrf_token": browser.csrf(), "provider": "sandbox", "business_date": str(day)},
        files={"file": ("statement.csv", statement.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert imported.status_code == 303, imported.text
    return unknown


def test_an_operator_reconciles_a_statement_and_resolves_an_exception_after_confirming(
    browser: Browser, town: Town, sandbox: SandboxProvider, core_services: Services
) -> None:
    trade_no = pay_all(browser, town)
    sign_in(browser, town.platform)
    # given an imported statement with a line we know nothing about
    unknown = import_with_stranger(browser, sandbox)
    # (found by its number, as an operator would: other tests' imports fill the same pages)
    text = text_of(
        browser.client.get(
            f"/console/pay/reconciliation?lang=en&done=statement_imported&number={unknown}"
        ).text
    )
    assert "The statement was imported and every line classified." in text
    assert unknown in text
    assert "Missing on our side" in text
    with core_services.db.unit_of_work(write=False) as session:
        item = session.scalars(
            select(ReconciliationItem).where(ReconciliationItem.trade_no == unknown)
        ).one()
        ours = session.scalars(
            select(ReconciliationItem).where(ReconciliationItem.trade_no == trade_no)
        ).one()
    assert ours.classification == "matched"
    form = {
        "item_id": str(item.id),
        "debit_code": "clearing:sandbox",
        "credit_code": "suspense",
        "amount": "7.77",
        "memo": "unknown sandbox line, held in suspense",
    }
    # when the adjustment is sent, then a confirmation repeats the amount and both accounts
    # by name, and nothing is posted yet
    asked = browser.submit("/console/pay/reconciliation/resolve?lang=en", form)
    assert asked.status_code == 200, asked.text
    asked_text = text_of(asked.text)
    assert "CNY 7.77" in asked_text
    assert "Clearing — Sandbox (demo, no real money)" in asked_text
    assert "Suspense: not yet explained" in asked_text
    with core_services.db.unit_of_work(write=False) as session:
        assert session.get(ReconciliationItem, item.id).resolved_at is None  # type: ignore[union-attr]
    # and an account the adjustment cannot take is refused
    odd = browser.submit(
        "/console/pay/reconciliation/resolve?lang=en", {**form, "credit_code": "payable:x"}
    )
    assert odd.status_code == 422
    assert "Choose one of the accounts offered." in text_of(odd.text)
    # when it is confirmed, then it is resolved and posted
    resolved = browser.submit("/console/pay/reconciliation/resolve", {**form, "confirm": "yes"})
    assert resolved.status_code == 303, resolved.text
    with core_services.db.unit_of_work(write=False) as session:
        assert session.get(ReconciliationItem, item.id).resolved_at is not None  # type: ignore[union-attr]
    # and the ledger shows the adjustment between the accounts by name
    books = text_of(browser.client.get("/console/pay/ledger?lang=en&account=suspense").text)
    assert "unknown sandbox line, held in suspense" in books
    assert "Clearing — Sandbox (demo, no real money)" in books
    assert ledger_balanced(core_services)
    # and sending the confirmation again resolves nothing twice
    again = browser.submit("/console/pay/reconciliation/resolve", {**form, "confirm": "yes"})
    assert again.status_code == 409


def test_the_reconciliation_page_shows_refund_exceptions_with_their_refund_number(
    browser: Browser, town: Town, sandbox: SandboxProvider, core_services: Services
) -> None:
    trade_no = pay_all(browser, town)
    day = beijing_now().date()
    # given a statement with a refund of our trade that we never asked for
    refund_no = f"RF{uuid.uuid4().hex[:30].upper()}"
    statement = sandbox.statement(day).decode()
    statement += f"{trade_no},SBXREFUND01,refund,100,{day.isoformat()}T11:00:00+08:00,{refund_no}\n"
    sign_in(browser, town.platform)
    imported = browser.client.post(
        "/console/pay/reconciliation",
        data={"csrf_token": browser.csrf(), "provider": "sandbox", "business_date": str(day)},
        files={"file": ("statement.csv", statement.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert imported.status_code == 303, imported.text
    # when the page is read, then the exception says it is a refund, and which one
    for lang, kind, number in (("en", "Refund", "Refund no."), ("zh", "退款", "退款单号")):
        text = text_of(
            browser.client.get(f"/console/pay/reconciliation?lang={lang}&number={refund_no}").text
        )
        assert refund_no in text
        assert kind in text
        assert number in text
    with core_services.db.unit_of_work(write=False) as session:
        item = session.scalars(
            select(ReconciliationItem).where(ReconciliationItem.refund_no == refund_no)
        ).one()
    assert (item.kind, item.classification, item.trade_no) == ("refund", "missing_ours", trade_no)


def test_a_billers_operator_sees_the_exceptions_of_its_payments_only_and_cannot_resolve(
    browser: Browser, town: Town, sandbox: SandboxProvider, core_services: Services
) -> None:
    trade_no = pay_all(browser, town)
    day = beijing_now().date()
    # given a statement that took another amount for the town's payment, and a stranger line
    statement = sandbox.statement(day).decode().replace(f"{trade_no},", f"{trade_no},", 1)
    lines = statement.splitlines()
    ours = next(i for i, line in enumerate(lines) if line.startswith(f"{trade_no},"))
    cells = lines[ours].split(",")
    cells[3] = str(int(cells[3]) + 1)
    lines[ours] = ",".join(cells)
    unknown = f"CC{uuid.uuid4().int % 10**20:020d}"
    lines.append(f"{unknown},SBXFAKE0002,payment,5,{day.isoformat()}T10:00:00+08:00,")
    sign_in(browser, town.platform)
    imported = browser.client.post(
        "/console/pay/reconciliation",
        data={"csrf_token": browser.csrf(), "provider": "sandbox", "business_date": str(day)},
        files={"file": ("statement.csv", ("\n".join(lines) + "\n").encode(), "text/csv")},
        follow_redirects=False,
    )
    assert imported.status_code == 303, imported.text
    browser.client.cookies.clear()
    # when the biller's operator reads the page
    sign_in(browser, town.operator)
    page = browser.client.get(f"/console/pay/reconciliation?lang=en&number={trade_no}")
    assert page.status_code == 200
    text = text_of(page.text)
    stranger = text_of(
        browser.client.get(f"/console/pay/reconciliation?lang=en&number={unknown}").text
    )
    assert unknown not in stranger
    # then the mismatch of its payment is there, the stranger is not, and neither the import
    # form nor the adjustment form are offered
    assert trade_no in text
    assert "Amount mismatch" in text
    assert unknown not in text
    assert "Import and reconcile" not in text
    assert "Resolve with an adjustment" not in text
    assert "imported, and exceptions resolved, by the platform's reconciliation team" in text
    # and the sandbox's statement is not theirs to download
    refused = browser.client.get(
        f"/console/pay/reconciliation/sandbox-statement.csv?date={day.isoformat()}"
    )
    assert refused.status_code == 403


def test_a_platform_reconciler_downloads_the_sandboxs_statement_of_a_day(
    browser: Browser, town: Town, sandbox: SandboxProvider
) -> None:
    trade_no = pay_all(browser, town)
    sign_in(browser, town.platform)
    day = beijing_now().date().isoformat()
    page = text_of(browser.client.get("/console/pay/reconciliation?lang=en").text)
    assert "Download the sandbox's statement" in page
    got = browser.client.get(f"/console/pay/reconciliation/sandbox-statement.csv?date={day}")
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/csv")
    assert trade_no in got.text
    assert f"# business_date: {day}" in got.text
    bad = browser.client.get("/console/pay/reconciliation/sandbox-statement.csv?date=nope")
    assert bad.status_code == 404


def test_the_ledger_names_accounts_and_says_memos_in_the_readers_language(
    browser: Browser, town: Town
) -> None:
    trade_no = pay_all(browser, town)
    sign_in(browser, town.platform)
    account = f"payable:{town.biller.id}"
    en = text_of(browser.client.get(f"/console/pay/ledger?lang=en&account={account}").text)
    assert f"Payment {trade_no}" in en
    assert f"{town.biller.name_en} — payable" in en
    zh = text_of(browser.client.get(f"/console/pay/ledger?lang=zh&account={account}").text)
    assert f"缴费 {trade_no}" in zh
    assert f"{town.biller.name_zh} — 应付款" in zh
    # and the export is what is listed, with the names and codes
    exported = browser.client.get(f"/console/pay/ledger?lang=en&account={account}&format=csv")
    assert exported.status_code == 200
    assert f"Payment {trade_no}" in exported.text
    assert account in exported.text
