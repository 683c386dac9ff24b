"""A date outside 2000-01-01..2100-12-31, or no date at all, typed into a console form.

The settle form (its preview and its confirmation), the bank batch file's download and the
statement import each answer such a date with the page again (or an error page), its error
in the page's language, a 4xx status and never a 500; and nothing is made: no settlement, no
journal entry, no imported statement, no audit record.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from tests.factories.core import PASSWORD, make_member
from tests.factories.pay import make_agency, make_biller, make_bills, unlimited_payments
from tests.functional.web.helpers import HTML, Browser, text_of

from civicloud.app import create_app
from civicloud.core.audit.models import AuditRecord
from civicloud.core.dates import MAX_DATE, MIN_DATE
from civicloud.core.services import Services
from civicloud.pay import web as pay_web
from civicloud.pay.models import (
    JournalEntry,
    Payment,
    ReconciliationItem,
    Settlement,
    StatementImport,
)
from civicloud.pay.payments import PayContext
from civicloud.pay.providers import SandboxProvider
from civicloud.pay.web.views import beijing_now
from civicloud.web.deps import SESSION_COOKIE

BASE_URL = "https://testserver"
ACCOUNT = "0411000001"
#: Out of range (either end, and just past it) and not a date at all.
BAD_DATES = [
    "0001-01-01",
    "9999-12-31",
    "2101-01-01",
    "1999-12-31",
    "garbage",
    "2026-02-30",
    "26/11/2026",
    "",
]
#: The date field's error, as each language says it.
DATE_ERROR = {
    "zh": "请按 YYYY-MM-DD 格式填写 2000-01-01 至 2100-12-31 之间的日期。",
    "en": "Enter a date between 2000-01-01 and 2100-12-31 as YYYY-MM-DD.",
}
#: What a download of a day with no settlement says.
NO_SETTLEMENT = {
    "zh": "该缴费单位在那一天没有结算",
    "en": "no settlement of this biller on that day",
}


@pytest.fixture(scope="module")
def app(core_services: Services) -> FastAPI:
    """The application with Pay's pages mounted, its public address the test client's."""
    settings = core_services.settings.model_copy(
        update={
            "pay": core_services.settings.pay.model_copy(
                update={"public_base_url": BASE_URL, "lookups_per_minute": 10_000}
            )
        }
    )
    built = create_app(services=core_services.with_settings(settings))
    built.include_router(pay_web.router)
    unlimited_payments(built)
    return built


@pytest.fixture
def browser(app: FastAPI) -> Iterator[Browser]:
    """A browser-like client with fresh cookies (not entered: the shared pool stays open)."""
    client = TestClient(app, base_url=BASE_URL, headers=HTML)
    yield Browser(client)
    client.close()


@dataclass(frozen=True)
class Desk:
    """A water biller with a payment that ended yesterday (a day waiting to be settled), its
    Pay operator, and a platform administrator (who reconciles)."""

    biller_id: uuid.UUID
    operator: str
    platform: str


@pytest.fixture
def desk(core_services: Services, app: FastAPI) -> Desk:
    with core_services.db.unit_of_work() as session:
        agency = make_agency(session)
        biller = make_biller(session, tenant=agency)
        bill = make_bills(session, biller, account_number=ACCOUNT)[0]
        operator = make_member(session, core_services.passwords, home=agency, role="pay_operator")
        platform = make_member(
            session, core_services.passwords, home=agency, role="platform_admin", platform=True
        )
    # the bill paid with the sandbox, the payment dated back to yesterday
    client = TestClient(app, base_url=BASE_URL)
    created = client.post(
        "/api/v1/pay/payments",
        json={
            "biller_id": str(biller.id),
            "bill_ids": [str(bill.id)],
            "provider": "sandbox",
            "return_url": "/",
        },
        headers={"Idempotency-Key": uuid.uuid4().hex, "Accept": "application/json"},
    )
    client.close()
    assert created.status_code == 201, created.text
    sandbox(app).simulate(created.json()["trade_no"], "succeeded")
    with core_services.db.unit_of_work() as session:
        payment = session.scalars(
            select(Payment).where(Payment.trade_no == created.json()["trade_no"])
        ).one()
        assert payment.finished_at is not None
        payment.finished_at -= timedelta(days=1)
    return Desk(biller.id, operator.user.username, platform.user.username)


def sandbox(app: FastAPI) -> SandboxProvider:
    context: PayContext = app.state.services.context("pay", PayContext)
    provider = context.providers["sandbox"]
    assert isinstance(provider, SandboxProvider)
    return provider


def sign_in(browser: Browser, username: str) -> None:
    response = browser.sign_in(username, PASSWORD)
    assert response.status_code == 303, response.text


def counts(services: Services) -> dict[str, int]:
    """How many rows each table a console form could write holds, and the last audit record's
    number (a refused change by a signed-in user is audited: that record is the only write)."""
    tables = (Settlement, JournalEntry, StatementImport, ReconciliationItem)
    with services.db.unit_of_work(write=False) as session:
        found = {
            table.__tablename__: session.scalar(select(func.count()).select_from(table)) or 0
            for table in tables
        }
        found["audit_seq"] = session.scalar(select(func.max(AuditRecord.seq))) or 0
        return found


def changed_nothing(services: Services, before: dict[str, int], action: str | None) -> None:
    """Nothing was made since ``before``; the audit log only says that ``action`` (a form's
    route) failed, once per refused post, and what it was (no other record)."""
    after = counts(services)
    assert {k: v for k, v in after.items() if k != "audit_seq"} == {
        k: v for k, v in before.items() if k != "audit_seq"
    }
    with services.db.unit_of_work(write=False) as session:
        records = session.scalars(
            select(AuditRecord).where(AuditRecord.seq > before["audit_seq"])
        ).all()
    for record in records:
        assert (record.action, record.outcome) == (action, "failed"), record.action
        assert record.detail["code"] == "core.form_rejected"
        assert 400 <= record.detail["status"] < 500


def field_error(html: str, field_id: str) -> str:
    """The text of the error shown next to the field ``field_id``."""
    start = html.index(f'id="{field_id}-error"')
    begin = html.index(">", start) + 1
    return text_of(html[begin : html.index("</p>", begin)]).strip()


def assert_date_refused(response: httpx2.Response, field_id: str, language: str) -> None:
    """The form's page again (422), its date field marked with the range in ``language``."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert f'lang="{"zh-CN" if language == "zh" else "en"}"' in html
    # (the error opens with a word for screen readers, "Error:" in English)
    assert field_error(html, field_id).endswith(DATE_ERROR[language])
    assert 'aria-invalid="true"' in html
    # the page's notice is in the page's language too, and names no exception
    text = text_of(html)
    notice = {"zh": "请检查下方标出的填写项。", "en": "Check the fields marked below."}
    assert notice[language] in text
    for leaked in ("OverflowError", "Traceback", "Internal Server Error", "ValueError"):
        assert leaked not in text


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("day", BAD_DATES)
def test_the_settle_form_refuses_a_date_out_of_range_and_settles_nothing(
    browser: Browser, desk: Desk, core_services: Services, day: str, language: str
) -> None:
    # given the operator of a biller with a day waiting to be settled
    sign_in(browser, desk.operator)
    before = counts(core_services)
    form = {"biller_id": str(desk.biller_id), "business_date": day}
    # when a bad date is previewed, or sent as if confirmed
    for step in ({}, {"confirm": "yes", "expected_net": "8650"}):
        response = browser.submit(f"/console/pay/settlements?lang={language}", form | step)
        # then the form comes back with the date marked, in the page's language
        assert_date_refused(response, "settle-business_date", language)
    # and nothing was settled or posted (the refusals are audited); yesterday still waits
    changed_nothing(core_services, before, "pay.page.console_settle")
    yesterday = (beijing_now().date() - timedelta(days=1)).isoformat()
    listed = browser.client.get(f"/console/pay/settlements?biller_id={desk.biller_id}&lang=en")
    assert listed.status_code == 200
    assert "Days still to settle" in text_of(listed.text)
    assert yesterday in text_of(listed.text)
    assert "No settlements match." in text_of(listed.text)


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("day", BAD_DATES)
def test_the_batch_file_of_a_date_out_of_range_is_a_translated_not_found(
    browser: Browser, desk: Desk, core_services: Services, day: str, language: str
) -> None:
    sign_in(browser, desk.operator)
    before = counts(core_services)
    # when the batch file of a bad date is asked for
    response = browser.client.get(
        f"/console/pay/billers/{desk.biller_id}/settlement.csv",
        params={"date": day, "lang": language},
    )
    # then an error page in the page's language says there is none, and nothing changed
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert NO_SETTLEMENT[language] in text_of(response.text)
    assert "OverflowError" not in response.text
    changed_nothing(core_services, before, None)


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("day", BAD_DATES)
def test_the_statement_form_refuses_a_date_out_of_range_and_imports_nothing(
    browser: Browser,
    desk: Desk,
    app: FastAPI,
    core_services: Services,
    day: str,
    language: str,
) -> None:
    # given the platform administrator and a well-formed statement of the sandbox
    sign_in(browser, desk.platform)
    statement = sandbox(app).statement(beijing_now().date())
    before = counts(core_services)
    # when it is imported under a bad date
    response = browser.client.post(
        f"/console/pay/reconciliation?lang={language}",
        data={"csrf_token": browser.csrf(), "provider": "sandbox", "business_date": day},
        files={"file": ("statement.csv", statement, "text/csv")},
        follow_redirects=False,
    )
    # then the form comes back with the date marked, and nothing was imported
    assert_date_refused(response, "statement-business_date", language)
    changed_nothing(core_services, before, "pay.page.console_statement")


def test_a_valid_date_still_goes_through_the_same_forms(
    browser: Browser, desk: Desk, app: FastAPI, core_services: Services
) -> None:
    """The refusals above are the date's: the same forms with yesterday work."""
    yesterday = (beijing_now().date() - timedelta(days=1)).isoformat()
    sign_in(browser, desk.operator)
    form = {"biller_id": str(desk.biller_id), "business_date": yesterday}
    preview = browser.submit("/console/pay/settlements?lang=en", form)
    assert preview.status_code == 200, preview.text
    with core_services.db.unit_of_work(write=False) as session:
        settled = session.scalar(
            select(func.count())
            .select_from(Settlement)
            .where(Settlement.biller_id == desk.biller_id)
        )
    assert settled == 0  # a preview makes nothing
    batch = browser.client.get(
        f"/console/pay/billers/{desk.biller_id}/settlement.csv", params={"date": yesterday}
    )
    assert batch.status_code == 404  # not settled yet


@pytest.fixture
def idle_biller(core_services: Services) -> tuple[uuid.UUID, str]:
    """A biller with no payments at all, and its operator's username."""
    with core_services.db.unit_of_work() as session:
        agency = make_agency(session)
        biller = make_biller(session, tenant=agency)
        operator = make_member(session, core_services.passwords, home=agency, role="pay_operator")
    return biller.id, operator.user.username


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    # one signed-in client and one idle biller for every example
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    typed=st.one_of(
        st.dates().map(lambda d: d.isoformat()),
        st.text(max_size=20),
        st.from_regex(r"[0-9]{1,5}-[0-9]{1,3}-[0-9]{1,3}", fullmatch=True),
    )
)
def test_whatever_is_typed_as_the_day_to_settle_is_never_a_500(
    browser: Browser,
    idle_biller: tuple[uuid.UUID, str],
    core_services: Services,
    typed: str,
) -> None:
    biller_id, operator = idle_biller
    if browser.cookie(SESSION_COOKIE) is None:
        sign_in(browser, operator)
    before = counts(core_services)
    response = browser.submit(
        "/console/pay/settlements?lang=zh",
        {"biller_id": str(biller_id), "business_date": typed, "confirm": "yes"},
    )
    # then the answer is a refusal with a page (a day of a biller with no payments has nothing
    # to settle, or has not ended), never a 500, and nothing is made
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("text/html")
    changed_nothing(core_services, before, "pay.page.console_settle")
    # and a day that is no date of the range is refused as such, next to the field
    if not in_range(typed):
        assert field_error(response.text, "settle-business_date").endswith(DATE_ERROR["zh"])


def in_range(typed: str) -> bool:
    """Whether ``typed`` is a ``YYYY-MM-DD`` day of the accepted range."""
    try:
        return MIN_DATE <= date.fromisoformat(typed.strip()) <= MAX_DATE
    except ValueError:
        return False
