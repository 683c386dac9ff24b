"""Pay's pages: a citizen pays through them end to end; operators import, refund, settle, reconcile.

The pages' router is mounted here on top of ``create_app`` as ``civicloud.app`` will mount it,
over the shared database, with ``public_base_url`` set to the test client's origin so that the
sandbox's checkout and the receipts' QR codes point back at it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.factories.core import PASSWORD, make_member, make_tenant
from tests.factories.pay import make_biller, make_bills
from tests.functional.web.helpers import HTML, Browser, text_of

import civicloud.pay
from civicloud.app import create_app
from civicloud.core.services import Services
from civicloud.core.tenants import Tenant, TenantKind
from civicloud.pay import ledger
from civicloud.pay import web as pay_web
from civicloud.pay.models import (
    Bill,
    Biller,
    Payment,
    Refund,
    Settlement,
)
from civicloud.pay.payments import PayContext
from civicloud.pay.providers import SandboxProvider
from civicloud.pay.receipts import receipt_content_security_policy, receipt_verify_url
from civicloud.pay.web.views import beijing_now

BASE_URL = "https://testserver"
ACCOUNT = "0411000001"
PAY_DIR = Path(civicloud.pay.__file__).resolve().parent


def pages_app(services: Services, **pay: object) -> FastAPI:
    """The application with Pay's pages mounted, its public address the test client's."""
    settings = services.settings.model_copy(
        update={
            "pay": services.settings.pay.model_copy(
                update={
                    "public_base_url": BASE_URL,
                    "lookups_per_minute": 10_000,
                    "payments_per_minute": 10_000,
                    **pay,
                }
            )
        }
    )
    app = create_app(services=services.with_settings(settings))
    app.include_router(pay_web.router)
    return app


@pytest.fixture(scope="module")
def app(core_services: Services) -> FastAPI:
    """The module's application, Pay's pages included."""
    return pages_app(core_services)


@pytest.fixture
def browser(app: FastAPI) -> Iterator[Browser]:
    """A browser-like client with fresh cookies (not entered: the shared pool stays open)."""
    client = TestClient(app, base_url=BASE_URL, headers=HTML)
    yield Browser(client)
    client.close()


@pytest.fixture
def sandbox(app: FastAPI) -> SandboxProvider:
    """This application's sandbox provider."""
    context: PayContext = app.state.services.context("pay", PayContext)
    provider = context.providers["sandbox"]
    assert isinstance(provider, SandboxProvider)
    return provider


@dataclass(frozen=True)
class Town:
    """A city with a water biller, two open bills of one account, and a Pay operator there."""

    city: Tenant
    biller: Biller
    bills: list[Bill]
    operator: str
    platform: str


@pytest.fixture
def town(core_services: Services) -> Town:
    """A fresh city with its water company, bills and operators."""
    with core_services.db.unit_of_work() as session:
        country = make_tenant(session, kind=TenantKind.COUNTRY)
        city = make_tenant(session, parent=country, kind=TenantKind.CITY)
        agency = make_tenant(session, parent=city, kind=TenantKind.AGENCY)
        biller = make_biller(session, tenant=agency)
        bills = make_bills(session, biller, count=2, account_number=ACCOUNT)
        operator = make_member(session, core_services.passwords, home=city, role="pay_operator")
        platform = make_member(
            session, core_services.passwords, home=country, role="platform_admin", platform=True
        )
        return Town(city, biller, bills, operator.user.username, platform.user.username)


def hidden(html: str, name: str) -> str:
    """The value of the form's hidden field ``name``."""
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name}"
    return found.group(1)


def bill_ids(html: str) -> list[str]:
    """The values of the bills page's checkboxes."""
    return re.findall(r'name="bill_id" value="([^"]+)"', html)


def path_of(location: str) -> str:
    """A redirect's path and query, whatever its origin."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def start_paying(browser: Browser, town: Town, lang: str = "zh") -> tuple[str, dict[str, str]]:
    """Open the bills page; returns its HTML and the pay form's fields (all bills chosen)."""
    page = browser.client.get(
        f"/pay/billers/{town.biller.id}/bills", params={"account": ACCOUNT, "lang": lang}
    )
    assert page.status_code == 200, page.text
    form = {
        "idempotency_key": hidden(page.text, "idempotency_key"),
        "account": ACCOUNT,
        "provider": "sandbox",
    }
    return page.text, form


def submit_pay(browser: Browser, town: Town, form: dict[str, str], bills: list[str]) -> str:
    """Post the pay form; returns where it redirects to."""
    response = browser.client.post(
        f"/pay/billers/{town.biller.id}/bills",
        data={**form, "bill_id": bills, "csrf_token": browser.csrf()},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return response.headers["location"]


def pay_all(browser: Browser, town: Town) -> str:
    """Pay every open bill of the account through the pages; returns the trade number."""
    page, form = start_paying(browser, town)
    checkout = path_of(submit_pay(browser, town, form, bill_ids(page)))
    trade_no = checkout.rsplit("/", 1)[1]
    paid = browser.submit(checkout, {"outcome": "succeeded"})
    assert paid.status_code == 303
    return trade_no


def sign_in(browser: Browser, username: str) -> None:
    """Sign in through the login form."""
    response = browser.sign_in(username, PASSWORD)
    assert response.status_code == 303, response.text


def ledger_balanced(services: Services) -> bool:
    """Whether ``civicloud pay ledger check`` would pass."""
    with services.db.unit_of_work(write=False) as session:
        result = ledger.check_ledger(session=session)
    assert result.ok, result.describe()
    return True


# --- the citizen's way -------------------------------------------------------------------------


def test_a_citizen_pays_a_bill_through_the_pages_and_gets_a_verifiable_receipt(
    browser: Browser, town: Town, core_services: Services
) -> None:
    client = browser.client
    # given the citizen finds the city, the biller and the account's bills
    home = client.get("/pay", params={"city": str(town.city.id), "lang": "zh"})
    assert home.status_code == 200
    assert f'href="/pay/billers/{town.biller.id}"' in home.text
    account_page = client.get(f"/pay/billers/{town.biller.id}")
    assert "格式：10 位数字" in text_of(account_page.text)  # noqa: RUF001 - Chinese punctuation
    page, form = start_paying(browser, town)
    text = text_of(page)
    assert "张*丰" in text
    assert "张三丰" not in page
    assert "¥123.45" in text
    assert "沙箱" in text
    chosen = bill_ids(page)
    assert len(chosen) == 2
    # when they check what they pay (the confirmation step), then pay both with the sandbox
    check = client.get(f"/pay/billers/{town.biller.id}/confirm", params={**form, "bill_id": chosen})
    assert check.status_code == 200, check.text
    assert "立即缴费 ¥246.90" in text_of(check.text)
    assert hidden(check.text, "idempotency_key") == form["idempotency_key"]
    checkout = submit_pay(browser, town, form, chosen)
    # (a path: the sandbox's checkout is this site's, however the browser reached it)
    assert checkout.startswith("/pay/sandbox/checkout/CC")
    trade_no = checkout.rsplit("/", 1)[1]
    cashier = client.get(path_of(checkout))
    assert cashier.status_code == 200
    assert "¥246.90" in text_of(cashier.text)
    assert "大连市供水有限公司" in cashier.text
    paid = browser.submit(path_of(checkout), {"outcome": "succeeded"})
    assert paid.status_code == 303
    assert paid.headers["location"] == f"/pay/return?out_trade_no={trade_no}"
    back = client.get(paid.headers["location"], follow_redirects=False)
    assert back.headers["location"] == f"/pay/payments/{trade_no}"
    # then the return page says it succeeded and shows the receipt
    result = client.get(back.headers["location"])
    assert result.status_code == 200
    assert "缴费成功" in text_of(result.text)
    number = re.search(r"/pay/receipts/(R\d{8}-[0-9A-Z]{8})\"", result.text)
    assert number, result.text
    receipt_no = number.group(1)
    # and the receipt is there as a page (under its own policy), a PDF and a signed document
    receipt = client.get(f"/pay/receipts/{receipt_no}")
    assert receipt.status_code == 200
    assert receipt.headers["content-security-policy"] == receipt_content_security_policy()
    assert "电子缴费收据" in receipt.text
    english = client.get(f"/pay/receipts/{receipt_no}", params={"lang": "en"})
    assert "Payment receipt" in english.text
    pdf = client.get(f"/pay/receipts/{receipt_no}.pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    document = client.get(f"/pay/receipts/{receipt_no}.json").json()
    assert document["number"] == receipt_no
    assert document["signature"]
    # and the verify page, reached through the QR code, says it is genuine
    with core_services.db.unit_of_work(write=False) as session:
        from civicloud.pay.receipts import get_receipt

        stored = get_receipt(session=session, number=receipt_no)
        assert stored is not None
        qr_url = receipt_verify_url(stored, public_base_url=BASE_URL)
    valid = client.get(path_of(qr_url))
    assert valid.status_code == 200
    assert "收据真实有效" in text_of(valid.text)
    assert "¥246.90" in text_of(valid.text)
    assert "张三丰" not in valid.text
    # and a copy whose signature was changed is called out as tampered with
    signature = parse_qs(urlsplit(qr_url).query)["sig"][0]
    forged = signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")
    tampered = client.get(f"/pay/receipts/{receipt_no}/verify", params={"sig": forged})
    assert "收据与其签名不符" in text_of(tampered.text)
    unknown = client.get("/pay/receipts/R20000101-00000000/verify", params={"lang": "en"})
    assert "No receipt has this number" in text_of(unknown.text)
    # and the bills are paid once, the ledger balanced
    with core_services.db.unit_of_work(write=False) as session:
        statuses = {
            b.status for b in session.scalars(select(Bill).where(Bill.biller_id == town.biller.id))
        }
    assert statuses == {"paid"}
    assert ledger_balanced(core_services)


def test_a_double_submitted_pay_form_pays_once(
    browser: Browser, town: Town, core_services: Services
) -> None:
    page, form = start_paying(browser, town)
    chosen = bill_ids(page)[:1]
    # when the citizen presses Pay twice
    first = submit_pay(browser, town, form, chosen)
    second = submit_pay(browser, town, form, chosen)
    # then both land on the same checkout: one payment
    assert first == second
    with core_services.db.unit_of_work(write=False) as session:
        made = session.scalar(
            select(func.count())
            .select_from(Payment)
            .where(Payment.idempotency_key == form["idempotency_key"])
        )
    assert made == 1
    # and the same form used for other bills is refused, nothing paid
    other = browser.client.post(
        f"/pay/billers/{town.biller.id}/bills",
        data={**form, "bill_id": bill_ids(page)[1:], "csrf_token": browser.csrf()},
        follow_redirects=False,
    )
    assert other.status_code == 409
    assert "此表单已用于另一笔缴费" in text_of(other.text)


def test_a_payment_that_fails_says_so_and_offers_to_try_again(browser: Browser, town: Town) -> None:
    page, form = start_paying(browser, town, lang="en")
    checkout = path_of(submit_pay(browser, town, form, bill_ids(page)))
    failed = browser.submit(checkout, {"outcome": "failed"})
    result = browser.client.get(failed.headers["location"])
    text = text_of(result.text)
    assert "The payment was not completed" in text
    assert "Try again" in text
    # and the bills are still open for another try
    again = browser.client.get(f"/pay/billers/{town.biller.id}/bills", params={"account": ACCOUNT})
    assert len(bill_ids(again.text)) == 2


def test_form_mistakes_are_answered_on_the_page(browser: Browser, town: Town) -> None:
    # a malformed account number
    wrong = browser.client.get(
        f"/pay/billers/{town.biller.id}/bills", params={"account": "12ab", "lang": "en"}
    )
    assert wrong.status_code == 422
    assert "This is not an account number of this biller" in text_of(wrong.text)
    assert 'aria-invalid="true"' in wrong.text
    # an account with nothing to pay
    empty = browser.client.get(
        f"/pay/billers/{town.biller.id}/bills", params={"account": "9999999999", "lang": "en"}
    )
    assert empty.status_code == 200
    assert "No unpaid bills" in text_of(empty.text)
    # a pay form with no bill ticked
    _page, form = start_paying(browser, town, lang="en")
    none = browser.client.post(
        f"/pay/billers/{town.biller.id}/bills",
        data={**form, "csrf_token": browser.csrf()},
        follow_redirects=False,
    )
    assert none.status_code == 422
    assert "Choose at least one bill to pay." in text_of(none.text)
    # a form without its CSRF token
    forged = browser.client.post(
        f"/pay/billers/{town.biller.id}/bills", data=form, follow_redirects=False
    )
    assert forged.status_code == 403


def test_unknown_things_are_friendly_pages_not_errors(browser: Browser) -> None:
    for path in (
        f"/pay/billers/{uuid.uuid4()}",
        "/pay/payments/CC0000",
        "/pay/sandbox/checkout/CC0000",
        "/pay/receipts/R20000101-00000000",
        "/pay/receipts/nonsense.pdf",
        "/pay/receipts/nonsense.json",
        "/pay/return?out_trade_no=../../etc",
    ):
        response = browser.client.get(path, params={"lang": "en"})
        assert response.status_code == 404, path
        assert "Page not found" in text_of(response.text), path


def test_bill_look_ups_are_rate_limited_per_client(core_services: Services, town: Town) -> None:
    limited = pages_app(core_services, lookups_per_minute=2)
    # Not entered: leaving the client would dispose of the shared engine's pool.
    client = TestClient(limited, base_url=BASE_URL, headers=HTML)
    url = f"/pay/billers/{town.biller.id}/bills"
    answers = [client.get(url, params={"account": ACCOUNT, "lang": "en"}) for _ in range(3)]
    client.close()
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert "Please wait a minute" in text_of(answers[2].text)
    assert int(answers[2].headers["retry-after"]) > 0


def test_every_page_renders_in_both_languages(
    browser: Browser, town: Town, core_services: Services
) -> None:
    trade_no = pay_all(browser, town)
    with core_services.db.unit_of_work(write=False) as session:
        payment = session.scalars(select(Payment).where(Payment.trade_no == trade_no)).one()
        from civicloud.pay.receipts import get_receipt_for_payment

        receipt = get_receipt_for_payment(session=session, payment_id=payment.id)
        assert receipt is not None
    public = [
        "/pay",
        f"/pay/billers/{town.biller.id}",
        f"/pay/billers/{town.biller.id}/bills?account=9999999999",
        f"/pay/payments/{trade_no}",
        f"/pay/sandbox/checkout/{trade_no}",
        f"/pay/receipts/{receipt.number}/verify",
    ]
    console = [
        "/console/pay",
        f"/console/pay/billers/{town.biller.id}",
        "/console/pay/payments",
        f"/console/pay/payments/{payment.id}",
        f"/console/pay/settlements?biller_id={town.biller.id}",
        "/console/pay/reconciliation",
        "/console/pay/ledger",
    ]
    words = {f"/pay/sandbox/checkout/{trade_no}": ("收银台", "Checkout")}
    sign_in(browser, town.platform)
    for path in public + console:
        zh, en = words.get(path, ("缴费", "Bill payment"))
        for lang, html_lang, word in (("zh", "zh-CN", zh), ("en", "en", en)):
            separator = "&" if "?" in path else "?"
            response = browser.client.get(f"{path}{separator}lang={lang}")
            assert response.status_code == 200, (path, response.text)
            assert f'<html lang="{html_lang}">' in response.text
            assert word in response.text, (path, lang)
            assert response.headers["cache-control"] == "no-store"


# --- the operators' way ------------------------------------------------------------------------


def test_console_pages_send_anonymous_callers_to_sign_in(browser: Browser, town: Town) -> None:
    pages = [
        "/console/pay",
        f"/console/pay/billers/{town.biller.id}",
        f"/console/pay/billers/{town.biller.id}/settlement.csv?date=2020-01-01",
        "/console/pay/payments",
        f"/console/pay/payments/{uuid.uuid4()}",
        "/console/pay/settlements",
        "/console/pay/reconciliation",
        "/console/pay/ledger",
    ]
    for path in pages:
        response = browser.client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=%2Fconsole%2Fpay"), path
    forms = [
        f"/console/pay/billers/{town.biller.id}/import",
        f"/console/pay/payments/{uuid.uuid4()}/refunds",
        "/console/pay/settlements",
        "/console/pay/reconciliation",
        "/console/pay/reconciliation/resolve",
    ]
    for path in forms:
        response = browser.submit(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login"), path


def test_a_csv_with_bad_lines_is_refused_line_by_line_and_imports_nothing(
    browser: Browser, town: Town, core_services: Services
) -> None:
    sign_in(browser, town.operator)
    due = (beijing_now().date() + timedelta(days=20)).isoformat()
    csv = (
        "bill_number,account_number,payer_name,amount,period,due_date\n"
        f"OK-1,{ACCOUNT},李四,88.00,2026-11,{due}\n"
        f"BAD-1,12ab,王五,10.00,2026-11,{due}\n"
        f"BAD-2,{ACCOUNT},赵六,-5,2026-11,{due}\n"
        f"BAD-3,{ACCOUNT},钱七,1.005,2026-11,not-a-date\n"
    ).encode()
    url = f"/console/pay/billers/{town.biller.id}/import?lang=en"

    def upload(partial: str = "") -> httpx2.Response:
        return browser.client.post(
            url,
            data={"csrf_token": browser.csrf(), "partial": partial},
            files={"file": ("bills.csv", csv, "text/csv")},
            follow_redirects=False,
        )

    def count() -> int:
        with core_services.db.unit_of_work(write=False) as session:
            found = session.scalar(
                select(func.count()).select_from(Bill).where(Bill.biller_id == town.biller.id)
            )
        return int(found or 0)

    before = count()
    # when the file is uploaded as it is
    refused = upload()
    # then each bad line is named with its reason, and nothing was imported
    assert refused.status_code == 422
    page = refused.text
    text = text_of(page)
    assert "Nothing was imported. Invalid lines: 3." in text
    rows = re.findall(r'<td class="pay-num">(\d+)</td><td><code>([^<]+)</code></td>', page)
    assert rows == [("3", "BAD-1"), ("4", "BAD-2"), ("5", "BAD-3")]
    assert "account_number has the wrong format" in text
    assert count() == before
    # when the valid lines are asked for, they alone are published
    partial = upload("yes")
    assert partial.status_code == 200
    assert "Bills published: 1. Lines left out: 3." in text_of(partial.text)
    assert count() == before + 1
    # and a file that cannot be read at all is explained too
    broken = browser.client.post(
        url,
        data={"csrf_token": browser.csrf()},
        files={"file": ("bills.csv", b"\xff\xfe nonsense", "text/csv")},
        follow_redirects=False,
    )
    assert broken.status_code == 422
    assert "not UTF-8" in text_of(broken.text)


def test_a_clean_csv_is_published_and_the_bills_are_searchable(
    browser: Browser, town: Town
) -> None:
    sign_in(browser, town.operator)
    due = (beijing_now().date() + timedelta(days=20)).isoformat()
    csv = (
        "bill_number,account_number,payer_name,amount,period,due_date\n"
        f"CLEAN-1,0411000077,孙八,42.50,2026-11,{due}\n"
    ).encode()
    done = browser.client.post(
        f"/console/pay/billers/{town.biller.id}/import",
        data={"csrf_token": browser.csrf()},
        files={"file": ("bills.csv", csv, "text/csv")},
        follow_redirects=False,
    )
    assert done.status_code == 303
    page = browser.client.get(done.headers["location"] + "&lang=en&q=0411000077")
    text = text_of(page.text)
    assert "The bills in the file were published." in text
    assert "CLEAN-1" in text
    assert "孙八" in text  # operators see the payer's full name
    assert "CNY 42.50" in text


def test_an_operator_refunds_part_of_a_payment(
    browser: Browser, town: Town, core_services: Services
) -> None:
    trade_no = pay_all(browser, town)
    with core_services.db.unit_of_work(write=False) as session:
        payment = session.scalars(select(Payment).where(Payment.trade_no == trade_no)).one()
    sign_in(browser, town.operator)
    # given the operator finds the payment
    found = browser.client.get("/console/pay/payments", params={"q": trade_no, "lang": "en"})
    assert f"/console/pay/payments/{payment.id}" in found.text
    detail = browser.client.get(f"/console/pay/payments/{payment.id}?lang=en")
    assert "At most CNY 246.90 can still be refunded." in text_of(detail.text)
    key = hidden(detail.text, "idempotency_key")
    url = f"/console/pay/payments/{payment.id}/refunds"
    # when more than was paid is asked for, it is refused and nothing changes
    too_much = browser.submit(url, {"amount": "300", "reason": "x", "idempotency_key": key})
    assert too_much.status_code == 409
    # and a reason that would make the confirmation show something else is refused before it
    disguised = {"amount": "10.00", "reason": "多收\u202e费", "idempotency_key": key}
    refused = browser.submit(f"{url}?lang=zh", disguised)
    assert refused.status_code == 422
    assert "请删除原因中的不可见字符" in refused.text
    assert 'name="confirm"' not in refused.text  # the form again, never its confirmation
    # when a part is asked for, the form answers with a confirmation that repeats it
    form = {"amount": "10.00", "reason": "charged twice", "idempotency_key": key}
    review = browser.submit(f"{url}?lang=en", form)
    assert review.status_code == 200
    assert "Refund CNY 10.00?" in text_of(review.text)
    assert hidden(review.text, "idempotency_key") == key
    # and when it is confirmed (and the confirmation sent twice)
    first = browser.submit(url, form | {"confirm": "yes"})
    second = browser.submit(url, form | {"confirm": "yes"})
    assert (first.status_code, second.status_code) == (303, 303)
    # then one refund succeeded, shown on the payment's page, and the ledger balances
    page = text_of(browser.client.get(first.headers["location"] + "&lang=en").text)
    assert "The refund was requested." in page
    assert "Refunded" in page
    assert "charged twice" in page
    with core_services.db.unit_of_work(write=False) as session:
        made = session.scalars(select(Refund).where(Refund.payment_id == payment.id)).all()
        again = session.get(Payment, payment.id)
    assert [(r.amount_fen, r.status) for r in made] == [(1000, "succeeded")]
    assert again is not None
    assert again.refunded_fen == 1000
    assert ledger_balanced(core_services)


def pay_yesterday(browser: Browser, town: Town, core_services: Services) -> None:
    """Pay the town's bills, and date the payment back to yesterday (Beijing time)."""
    trade_no = pay_all(browser, town)
    with core_services.db.unit_of_work() as session:
        payment = session.scalars(select(Payment).where(Payment.trade_no == trade_no)).one()
        assert payment.finished_at is not None
        payment.finished_at = payment.finished_at - timedelta(days=1)
    browser.client.cookies.clear()


def test_an_operator_settles_a_day_and_downloads_the_batch_file(
    browser: Browser, town: Town, core_services: Services
) -> None:
    yesterday = (beijing_now().date() - timedelta(days=1)).isoformat()
    form = {"biller_id": str(town.biller.id), "business_date": yesterday}
    # given a payment that ended yesterday
    pay_yesterday(browser, town, core_services)
    sign_in(browser, town.operator)
    # and the settlements page lists that day as still to settle
    listed = browser.client.get(f"/console/pay/settlements?biller_id={town.biller.id}&lang=en")
    assert "Days still to settle" in text_of(listed.text)
    assert yesterday in text_of(listed.text)
    # when the day is chosen, a preview shows the payee's account and settles nothing
    preview = browser.submit("/console/pay/settlements?lang=en", form)
    assert preview.status_code == 200
    assert town.biller.settlement_account in text_of(preview.text)
    # and a confirmation without the net its preview showed, or with a garbled one, only
    # shows the preview again: nothing is settled unseen, and nothing answers 500
    for garbled in ({}, {"expected_net": "²"}, {"expected_net": "--5"}, {"expected_net": "1e3"}):
        again = browser.submit(
            "/console/pay/settlements?lang=en", form | {"confirm": "yes", **garbled}
        )
        assert again.status_code == 200, (garbled, again.status_code)
        assert town.biller.settlement_account in text_of(again.text)
    with core_services.db.unit_of_work(write=False) as session:
        made = session.scalars(
            select(Settlement).where(Settlement.biller_id == town.biller.id)
        ).all()
    assert made == []
    # and when the preview is confirmed, the day is settled
    done = browser.submit(
        "/console/pay/settlements",
        form | {"confirm": "yes", "expected_net": hidden(preview.text, "expected_net")},
    )
    assert done.status_code == 303
    page = browser.client.get(done.headers["location"] + "&lang=en")
    assert "The day was settled." in text_of(page.text)
    batch = browser.client.get(
        f"/console/pay/billers/{town.biller.id}/settlement.csv", params={"date": yesterday}
    )
    assert batch.status_code == 200
    assert batch.headers["content-type"].startswith("text/csv")
    assert batch.text.splitlines()[-1].startswith("TRAILER,STL")
    # a day that has not ended is refused with the service's reason
    tomorrow = (beijing_now().date() + timedelta(days=1)).isoformat()
    early = browser.submit(
        "/console/pay/settlements?lang=en",
        {"biller_id": str(town.biller.id), "business_date": tomorrow},
    )
    assert early.status_code == 422
    assert "has not ended" in text_of(early.text)
