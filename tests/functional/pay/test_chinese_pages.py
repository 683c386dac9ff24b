"""Chinese pages speak Chinese: every GET page of the application, its main error pages and its
forms sent wrong are walked in Chinese, and English sentences in what a person sees fail the test.

The pages come from the application itself (as the authorization matrix takes its routes), so a
page added later is walked without anyone remembering to. Money in messages is in yuan.
"""

# The fixtures of the pages' tests are imported, and named again as parameters.
# ruff: noqa: F811
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from tests.functional.core.test_authorization_matrix import walk_routes
from tests.functional.pay.test_pages import (  # noqa: F401 - fixtures used by name
    ACCOUNT,
    Town,
    app,
    browser,
    hidden,
    pay_all,
    sign_in,
    town,
)
from tests.functional.web.helpers import Browser

from civicloud.core.services import Services
from civicloud.pay.models import Payment
from civicloud.pay.receipts import get_receipt_for_payment

#: Words allowed on a Chinese page: product and standard names, units and formats.
ALLOWED_WORDS = frozenset(
    {"civicloud", "Apache", "ICP", "CSV", "PDF", "API", "UTC", "CNY", "QR", "English", "YYYY",
     "MM", "DD", "PEM", "Ed25519", "SM2", "SM3", "UTF", "JSON", "HTTP", "HTTPS", "ID", "Key"}
    # Data, not words of the pages: the factories' users are called "Test User".
    | {"Test", "User"}
)  # fmt: skip
#: Pages that are files, not pages people read.
NOT_PAGES = (".pdf", ".json", ".pem", ".csv")
#: Two or more English words in a row (codes, numbers and allowed names are dropped first).
SENTENCE = re.compile(r"\b[A-Za-z]{2,}(?:[ ,'\u2019]+[A-Za-z]{2,})+\b")
CODE = re.compile(r"\S*[\d_./:@=#%&?-]\S*")


class VisibleText(HTMLParser):
    """The text a person sees (and hears: labels, titles), without code, scripts and styles."""

    SKIP = frozenset({"script", "style", "code", "kbd", "samp", "pre"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        for name, value in attrs:
            if name in ("title", "alt", "placeholder", "aria-label") and value:
                self.parts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


#: English that is data a page shows on purpose (the records' English names), not its words.
DATA: list[str] = []
#: Words still in English on a page, each while its page is reworked (remove when it is):
#: the receipt's verification instructions name a command.
PENDING: frozenset[str] = frozenset({"python verify"})


def english_in(html: str) -> list[str]:
    """Runs of English words in the visible text of ``html``."""
    parser = VisibleText()
    parser.feed(html)
    found = []
    for part in parser.parts:
        shown = part
        for data in DATA:
            shown = shown.replace(data, " ")
        text = CODE.sub(" ", shown)
        text = " ".join(
            w for w in text.split() if w.strip(",.:;()\uff08\uff09") not in ALLOWED_WORDS
        )
        found += [run for run in SENTENCE.findall(text) if run not in PENDING]
    return found


def assert_chinese(html: str, where: str) -> None:
    assert '<html lang="zh-CN">' in html, where
    assert english_in(html) == [], where


@pytest.fixture
def paid(browser: Browser, town: Town, core_services: Services) -> dict[str, str]:
    """A paid payment of the town, and the values that fill the pages' paths."""
    trade_no = pay_all(browser, town)
    with core_services.db.unit_of_work(write=False) as session:
        payment = session.scalars(select(Payment).where(Payment.trade_no == trade_no)).one()
        receipt = get_receipt_for_payment(session=session, payment_id=payment.id)
        assert receipt is not None
    browser.client.cookies.clear()
    return {
        "biller_id": str(town.biller.id),
        "payment_id": str(payment.id),
        "trade_no": trade_no,
        "number": receipt.number,
        "tenant_id": str(town.city.id),
    }


def page_paths(app: FastAPI, values: dict[str, str]) -> list[str]:
    """Every GET page of ``app`` with its parameters filled in."""
    paths = set()
    for _route, path, methods in walk_routes(app):
        if "GET" not in methods or path.startswith(("/api/", "/docs", "/openapi", "/static")):
            continue
        if path in ("/healthz", "/readyz", "/metrics") or path.endswith(NOT_PAGES):
            continue
        filled = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        paths.add(filled)
    return sorted(paths)


def test_every_page_is_chinese_in_chinese(
    app: FastAPI, browser: Browser, town: Town, paid: dict[str, str]
) -> None:
    # given the platform administrator, who may see every page
    sign_in(browser, town.platform)
    DATA[:] = [town.biller.name_en, town.city.name_en]
    queries = {"/pay/billers/{biller_id}/bills": f"account={ACCOUNT}"}
    untranslated: dict[str, list[str]] = {}
    for path in page_paths(app, paid):
        template = next((k for k in queries if re.sub(r"\{\w+\}", "[^/]+", k) == path), None)
        query = "lang=zh" + ("&" + queries[template] if template else "")
        if path.endswith("/bills"):
            query += f"&account={ACCOUNT}"
        # when each page is opened in Chinese, then what it shows is Chinese
        response = browser.client.get(f"{path}?{query}", follow_redirects=True)
        assert response.status_code < 500, path
        found = english_in(response.text)
        if found:
            untranslated[path] = found
    assert untranslated == {}


def test_error_pages_and_refused_forms_speak_chinese_and_yuan(
    browser: Browser, town: Town, paid: dict[str, str]
) -> None:
    # given a citizen's page asked for with a malformed id, and a page that does not exist
    bad_id = browser.client.get("/pay/billers/not-a-uuid?lang=zh")
    assert bad_id.status_code == 422
    assert_chinese(bad_id.text, "bad id")
    assert "缴费单位" in bad_id.text
    missing = browser.client.get("/nowhere?lang=zh")
    assert missing.status_code == 404
    assert_chinese(missing.text, "404")
    # given an operator refunding a payment of ¥246.90
    sign_in(browser, town.operator)
    url = f"/console/pay/payments/{paid['payment_id']}/refunds?lang=zh"
    page = browser.client.get(f"/console/pay/payments/{paid['payment_id']}?lang=zh")
    assert_chinese(page.text, "payment")
    key = hidden(page.text, "idempotency_key")
    # when an ambiguous amount is typed, then it is refused in Chinese, nothing guessed
    ambiguous = browser.submit(
        url, {"amount": "52,31", "reason": "重复缴费", "idempotency_key": key}
    )
    assert ambiguous.status_code == 422
    assert "有歧义" in ambiguous.text
    assert_chinese(ambiguous.text, "ambiguous amount")
    # when part is refunded and then more than what is left is asked for
    form = {"amount": "10", "reason": "重复缴费", "idempotency_key": key}
    confirm = browser.submit(url, form)
    assert confirm.status_code == 200
    assert "¥10.00" in confirm.text
    assert_chinese(confirm.text, "refund confirmation")
    assert browser.submit(url, form | {"confirm": "yes"}).status_code == 303
    again = browser.client.get(f"/console/pay/payments/{paid['payment_id']}?lang=zh")
    too_much = browser.submit(
        url,
        {
            "amount": "1000",
            "reason": "重复缴费",
            "idempotency_key": hidden(again.text, "idempotency_key"),
        },
    )
    # then the limit is what remains refundable, in yuan and in Chinese
    assert too_much.status_code == 409
    assert "¥1,000.00 超过了仍可退款的 ¥236.90" in too_much.text
    assert_chinese(too_much.text, "refund too large")
    # when a day with nothing to settle is chosen, then it is refused in Chinese
    empty = browser.submit(
        "/console/pay/settlements?lang=zh",
        {"biller_id": paid["biller_id"], "business_date": "2020-01-01"},
    )
    assert empty.status_code == 409
    assert "没有可结算的款项" in empty.text
    assert_chinese(empty.text, "nothing to settle")


def test_api_problems_follow_accept_language_and_carry_fen(
    browser: Browser, paid: dict[str, str]
) -> None:
    # when the API is asked about a bad id in Chinese, then the detail is Chinese
    answer = browser.client.get(
        "/api/v1/pay/public/billers/not-a-uuid/bills",
        params={"account": ACCOUNT},
        headers={"Accept": "application/json", "Accept-Language": "zh-CN,zh;q=0.9"},
    )
    assert answer.status_code == 422
    assert answer.json()["code"] == "core.invalid_input"
    assert "缴费单位" in answer.json()["detail"]
    # and without Accept-Language it stays English
    plain = browser.client.get(
        "/api/v1/pay/public/billers/not-a-uuid/bills",
        params={"account": ACCOUNT},
        headers={"Accept": "application/json"},
    )
    assert "Input should be a valid UUID" in plain.json()["detail"]
