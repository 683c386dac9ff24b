"""Pay's console lists as an operator answering the hotline uses them: find a citizen's
payments by account and days, page through them, total them and take them away as a
spreadsheet; and what they say to someone who may not see them."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import openpyxl
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.factories.core import make_member, make_tenant
from tests.factories.pay import make_biller
from tests.factories.pay_money import make_payment
from tests.functional.pay.test_pages import BASE_URL, pages_app, sign_in
from tests.functional.web.helpers import HTML, Browser, text_of

from civicloud.core.actor import Actor
from civicloud.core.csvsafe import BOM, read_csv
from civicloud.core.db import utcnow
from civicloud.core.services import Services
from civicloud.core.tenants import TenantKind
from civicloud.pay import ledger, settlement
from civicloud.pay.models import Biller, Payment, Refund
from civicloud.pay.web.views import beijing_now

ACCOUNT = "0012345678"
OTHER_ACCOUNT = "0099999999"


@pytest.fixture(scope="module")
def app(core_services: Services) -> FastAPI:
    return pages_app(core_services)


@pytest.fixture
def browser(app: FastAPI) -> Iterator[Browser]:
    client = TestClient(app, base_url=BASE_URL, headers=HTML)
    yield Browser(client)
    client.close()


@dataclass(frozen=True)
class Desk:
    """A city's water company with a citizen's payments over ten days, another city's biller,
    an operator of the first city, and someone who may not see payments."""

    biller: Biller
    foreign: Biller
    operator: str
    stranger: str
    trade_nos: list[str]


def _payment(  # type: ignore[no-untyped-def]
    session, biller: Biller, account: str, payer: str, *, days_ago: int, status: str, amount: int
) -> Payment:
    """A payment of one bill of ``account``, made ``days_ago`` days ago, posted to the ledger
    when it succeeded (so that the books of the shared database stay balanced), through Alipay
    (the sandbox's statements of the day, which other tests reconcile, know nothing of it)."""
    now = utcnow()
    return make_payment(
        session,
        biller,
        amount_fen=amount,
        status=status,
        provider="alipay",
        account_number=account,
        payer_name=payer,
        # two days ago and before: the days other tests import statements of are left alone
        created_at=now - timedelta(days=days_ago + 2, minutes=1),
        finished_at=now - timedelta(days=days_ago + 2),
        trade_no=f"CC{now:%Y%m%d}{uuid.uuid4().int % 10**16:016d}",
    )


@pytest.fixture
def desk(core_services: Services) -> Desk:
    with core_services.db.unit_of_work() as session:
        country = make_tenant(session, kind=TenantKind.COUNTRY)
        city = make_tenant(session, parent=country, kind=TenantKind.CITY)
        agency = make_tenant(session, parent=city, kind=TenantKind.AGENCY)
        elsewhere = make_tenant(session, parent=country, kind=TenantKind.CITY)
        foreign_agency = make_tenant(session, parent=elsewhere, kind=TenantKind.AGENCY)
        biller = make_biller(session, tenant=agency)
        foreign = make_biller(session, tenant=foreign_agency)
        trade_nos = []
        for day in range(10):
            # one success and one failure of our citizen each day, another citizen's success,
            # and a success of the same account number at another city's biller
            payer = "=HYPERLINK(1)"
            paid = _payment(
                session, biller, ACCOUNT, payer, days_ago=day, status="succeeded", amount=1000 + day
            )
            _payment(
                session, biller, ACCOUNT, payer, days_ago=day, status="failed", amount=1000 + day
            )
            _payment(
                session, biller, OTHER_ACCOUNT, "李四", days_ago=day, status="succeeded", amount=777
            )
            _payment(
                session, foreign, ACCOUNT, "王五", days_ago=day, status="succeeded", amount=555
            )
            trade_nos.append(paid.trade_no)
        operator = make_member(session, core_services.passwords, home=city, role="pay_operator")
        stranger = make_member(session, core_services.passwords, home=city, role="auditor")
        return Desk(biller, foreign, operator.user.username, stranger.user.username, trade_nos)


def _rows(html: str) -> list[str]:
    """The transaction numbers the payments table lists, in order."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in html else ""
    return re.findall(r"<code>(CC\d+)</code>", body)


def _next(html: str, rel: str = "next") -> str | None:
    found = re.search(rf'href="([^"]+)" rel="{rel}"', html)
    return unescape(found.group(1)) if found else None


def test_an_operator_finds_a_citizens_payments_by_account_and_days_with_totals(
    browser: Browser, desk: Desk
) -> None:
    sign_in(browser, desk.operator)
    today = (utcnow() + timedelta(hours=8)).date()
    page = browser.client.get(
        "/console/pay/payments",
        params={
            "account": ACCOUNT,
            "created_from": str(today - timedelta(days=4)),
            "created_to": str(today - timedelta(days=2)),
            "lang": "en",
        },
    )
    assert page.status_code == 200, page.text
    text = text_of(page.text)
    # three days, a success and a failure each; not the other account, not the other city
    assert "6 match." in text
    found = _rows(page.text)
    assert len(found) == 6
    assert set(desk.trade_nos[:3]) <= set(found)
    # what was paid counts the successes only
    assert "CNY 30.03" in text  # 10.00 + 10.01 + 10.02, the first three days' successes
    assert "=HYPERLINK(1)" in text  # the payer's name, escaped, as billed
    # newest first
    assert found.index(desk.trade_nos[0]) < found.index(desk.trade_nos[2])


def test_the_pages_go_forward_and_back_over_every_row_once(browser: Browser, desk: Desk) -> None:
    sign_in(browser, desk.operator)
    url: str | None = f"/console/pay/payments?biller={desk.biller.id}&size=25&lang=en"
    seen: list[str] = []
    pages = []
    while url:
        page = browser.client.get(url)
        assert page.status_code == 200
        pages.append(page.text)
        seen += _rows(page.text)
        url = _next(page.text)
    assert len(seen) == 30 == len(set(seen))
    assert [len(_rows(p)) for p in pages] == [25, 5]
    back = _next(pages[-1], "prev")
    assert back is not None
    assert _rows(browser.client.get(back).text) == _rows(pages[0])


def test_sorting_by_amount_turns_round_when_asked_again(browser: Browser, desk: Desk) -> None:
    sign_in(browser, desk.operator)
    page = browser.client.get(
        f"/console/pay/payments?account={ACCOUNT}&status=succeeded&sort=amount&dir=asc&lang=en"
    )
    assert _rows(page.text) == desk.trade_nos  # 10.00 on the newest day, 10.09 ten days ago
    assert 'aria-sort="ascending"' in page.text


def test_the_csv_export_is_exactly_what_is_filtered_and_safe_in_excel(
    browser: Browser, desk: Desk
) -> None:
    sign_in(browser, desk.operator)
    response = browser.client.get(
        f"/console/pay/payments?account={ACCOUNT}&status=succeeded&format=csv&lang=zh"
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    assert response.content.startswith(BOM.encode())
    rows = read_csv(response.content)
    header, body = rows[0], rows[1:]
    assert "交易号" in header[0] or "交易" in header[0]
    assert any("元" in name for name in header)
    assert len(body) == 10
    assert {r[0] for r in body} == set(desk.trade_nos)
    # the payer's name is written so that a spreadsheet shows it, never runs it
    assert b"'=HYPERLINK(1)" in response.content
    assert b'"None"' not in response.content
    amounts = [r[header.index(next(h for h in header if "元" in h))] for r in body]
    assert amounts[0] == "10.00"


def test_the_excel_export_keeps_account_numbers_as_text(browser: Browser, desk: Desk) -> None:
    sign_in(browser, desk.operator)
    response = browser.client.get(
        f"/console/pay/payments?account={ACCOUNT}&status=succeeded&format=xlsx&lang=en"
    )
    assert response.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True)
    sheet = book.active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    header, body = values[0], values[1:]
    assert len(body) == 10
    account = header.index("Account number")
    assert {row[account] for row in body} == {ACCOUNT}
    amount = next(i for i, name in enumerate(header) if str(name).startswith("Amount"))
    assert sorted(float(row[amount]) for row in body)[0] == pytest.approx(10.00)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"created_from": "2026-13-01"}, "Enter a date as YYYY-MM-DD"),
        ({"created_from": "2026-12-05", "created_to": "2026-12-01"}, "The first day is after"),
        ({"amount": "12.345"}, "Enter an amount in yuan"),
        ({"status": "stolen"}, "Choose one of the values offered"),
        ({"account": "9" * 200}, "Enter at most 64 characters"),
    ],
)
def test_a_bad_filter_is_said_beside_its_field_and_nothing_is_listed(
    browser: Browser, desk: Desk, params: dict[str, str], message: str
) -> None:
    sign_in(browser, desk.operator)
    page = browser.client.get("/console/pay/payments", params={**params, "lang": "en"})
    assert page.status_code == 422
    assert message in text_of(page.text)
    assert _rows(page.text) == []
    export = browser.client.get(
        "/console/pay/payments", params={**params, "format": "csv", "lang": "en"}
    )
    assert export.status_code == 422
    assert "text/html" in export.headers["content-type"]


def test_a_biller_of_another_city_is_refused_plainly(browser: Browser, desk: Desk) -> None:
    sign_in(browser, desk.operator)
    for value in (str(desk.foreign.id), "not-a-biller"):
        page = browser.client.get(f"/console/pay/payments?biller={value}&lang=en")
        assert page.status_code == 200
        assert "You cannot see the payments of this biller." in text_of(page.text)
        assert "No payments match" not in text_of(page.text)
        export = browser.client.get(f"/console/pay/payments?biller={value}&format=csv")
        assert "text/html" in export.headers["content-type"]


def test_someone_who_may_not_see_payments_is_told_so(browser: Browser, desk: Desk) -> None:
    sign_in(browser, desk.stranger)
    for path in ("/console/pay/payments", "/console/pay/refunds", "/console/pay/bills"):
        page = browser.client.get(f"{path}?lang=en")
        assert page.status_code == 200
        text = text_of(page.text)
        assert "You cannot see" in text, path
        assert "match" not in text


def test_a_stale_page_address_starts_again_from_the_top(browser: Browser, desk: Desk) -> None:
    sign_in(browser, desk.operator)
    page = browser.client.get("/console/pay/payments?cursor=garbage!!&lang=en")
    assert page.status_code == 200
    assert "out of date" in text_of(page.text)
    assert len(_rows(page.text)) == 30


def test_bills_refunds_and_settlements_are_listed_and_totalled(
    browser: Browser, desk: Desk, core_services: Services
) -> None:
    with core_services.db.unit_of_work() as session:
        # a refund of one of the citizen's payments, posted as the refund service posts it
        payment = session.scalars(select(Payment).filter_by(trade_no=desk.trade_nos[0])).one()
        refund = Refund(
            refund_no=f"RF{uuid.uuid4().hex[:20].upper()}",
            payment_id=payment.id,
            amount_fen=300,
            idempotency_key=uuid.uuid4().hex,
            request_hash="0" * 64,
            reason="水表读数错误",
            status="succeeded",
            finished_at=utcnow(),
        )
        session.add(refund)
        payment.refunded_fen = 300
        session.flush()
        ledger.post_refund(session=session, refund=refund, posted_by="tests")
    with core_services.db.unit_of_work() as session:
        # and the day three days ago settled by the settlement service
        settled = settlement.settle_day(
            session=session,
            actor=Actor.system(),
            biller_id=desk.biller.id,
            business_date=beijing_now().date() - timedelta(days=3),
        )
        net = settled.net_fen
    sign_in(browser, desk.operator)
    bills = text_of(browser.client.get(f"/console/pay/bills?account={ACCOUNT}&lang=en").text)
    assert "20 match." in bills  # a bill of each of the citizen's payments, none elsewhere
    refunds = browser.client.get(f"/console/pay/refunds?biller={desk.biller.id}&lang=zh")
    assert "水表读数错误" in refunds.text
    assert "¥3.00" in text_of(refunds.text)
    settled_page = browser.client.get(
        f"/console/pay/settlements?biller_id={desk.biller.id}&biller={desk.biller.id}&lang=en"
    )
    assert settled_page.status_code == 200
    assert f"CNY {net // 100:,}.{net % 100:02d}" in text_of(settled_page.text)
    query = parse_qs(urlsplit(f"/x?biller={desk.biller.id}").query)
    assert query["biller"] == [str(desk.biller.id)]


def test_searches_of_one_shape_each_bind_their_own_values(browser: Browser, desk: Desk) -> None:
    # the statements are built once for a shape (filters given, sort, page): every search
    # still gets its own account's payments, and its own page after a cursor
    sign_in(browser, desk.operator)
    first = browser.client.get(f"/console/pay/payments?account={ACCOUNT}&size=25&lang=en")
    other = browser.client.get(f"/console/pay/payments?account={OTHER_ACCOUNT}&size=25&lang=en")
    again = browser.client.get(f"/console/pay/payments?account={ACCOUNT}&size=25&lang=en")
    assert "20 match." in text_of(first.text)
    assert "10 match." in text_of(other.text)
    assert not set(_rows(first.text)) & set(_rows(other.text))
    assert _rows(again.text) == _rows(first.text)
    assert _next(first.text) is None  # twenty fit on a page of 25
