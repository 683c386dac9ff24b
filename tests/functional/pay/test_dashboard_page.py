"""The operator's daily dashboard page: the day's takings in yuan with its charts, another day by
the date form, the installation's zone, and a plain answer to someone who may not see payments."""

# The fixtures are imported from the Pay pages' tests and named again as parameters.
# ruff: noqa: F811
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from tests.factories.core import make_member
from tests.factories.pay_money import make_payment
from tests.functional.pay.test_pages import (  # noqa: F401 - the module's shared fixtures
    Town,
    app,
    browser,
    sign_in,
    town,
)
from tests.functional.web.helpers import Browser, text_of

from civicloud.core.services import Services
from civicloud.pay import dashboard, ledger
from civicloud.pay.models import Refund

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _pay_today(services: Services, town: Town) -> None:
    """Two payments today and one yesterday (Shanghai's days), and a refund today."""
    today = dashboard.today_in(SHANGHAI)
    noon = datetime.combine(today, time(0, 5), tzinfo=SHANGHAI)
    with services.db.unit_of_work() as session:
        first = make_payment(
            session, town.biller, amount_fen=12_345, provider="alipay", finished_at=noon
        )
        make_payment(session, town.biller, amount_fen=655, provider="wechatpay", finished_at=noon)
        make_payment(session, town.biller, amount_fen=50_000, finished_at=noon - timedelta(days=1))
        make_payment(session, town.biller, status="failed", finished_at=noon)
        # a refund of the first, posted as the refund service posts it (the shared database's
        # books must stay balanced for the tests that check them)
        refund = Refund(
            refund_no="R" + first.trade_no[1:21],
            payment_id=first.id,
            amount_fen=1_000,
            idempotency_key="dash-" + first.trade_no,
            request_hash="0" * 64,
            reason="test",
            status="succeeded",
            finished_at=noon,
        )
        session.add(refund)
        first.refunded_fen = 1_000
        session.flush()
        ledger.post_refund(session=session, refund=refund, posted_by="tests")


def test_the_operator_reads_today_s_takings_and_charts_in_chinese_and_english(
    browser: Browser, town: Town, app: object
) -> None:
    # given payments of today and yesterday at the operator's water company
    services: Services = app.state.services  # type: ignore[attr-defined]
    _pay_today(services, town)
    sign_in(browser, town.operator)
    # when the operator opens the dashboard in Chinese
    response = browser.client.get("/console/pay/dashboard?lang=zh")
    assert response.status_code == 200
    page = text_of(response.text)
    # then today's takings are paid minus refunded, in yuan, with the success rate of 2 in 3
    assert "¥120.00" in page  # 123.45 + 6.55 - 10.00
    assert "66.7%" in page
    assert "UTC+8" in page
    assert "每小时实收" in page
    # and each chart is an image with its name, next to its figures
    charts = re.findall(r'<figure class="chart.*?</figure>', response.text, flags=re.S)
    assert len(charts) == 4
    for chart in charts:
        figure = ET.fromstring(chart)  # noqa: S314 - the page's own markup
        svg = figure.find("{http://www.w3.org/2000/svg}svg")
        assert svg is not None
        assert svg.get("role") == "img"
        assert figure.find("details") is not None
    # and the tab is the current one
    assert 'href="/console/pay/dashboard" aria-current="page"' in response.text
    # when it is read in English, then the same figure is in English words
    english = text_of(browser.client.get("/console/pay/dashboard?lang=en").text)
    assert "CNY 120.00" in english
    assert "Takings by hour" in english


def test_another_day_is_chosen_with_the_date_form(
    browser: Browser, town: Town, app: object
) -> None:
    # given a payment of yesterday
    services: Services = app.state.services  # type: ignore[attr-defined]
    _pay_today(services, town)
    sign_in(browser, town.operator)
    yesterday = dashboard.today_in(SHANGHAI) - timedelta(days=1)
    # when yesterday is chosen
    response = browser.client.get(f"/console/pay/dashboard?day={yesterday}&lang=en")
    # then its takings are shown, and the form holds the day
    assert response.status_code == 200
    assert "CNY 500.00" in text_of(response.text)
    assert f'value="{yesterday.isoformat()}"' in response.text
    # when a day that is no date is asked for, then the form says so and today is shown
    wrong = browser.client.get("/console/pay/dashboard?day=2026-13-45&lang=en")
    assert wrong.status_code == 200
    assert "Enter a date between 2000-01-01 and 2100-12-31" in text_of(wrong.text)
    assert "CNY 120.00" in text_of(wrong.text)


def test_an_empty_day_says_there_is_no_data_rather_than_drawing_nothing(
    browser: Browser, town: Town
) -> None:
    # given a day long ago with no payment
    sign_in(browser, town.operator)
    # when it is chosen
    page = text_of(browser.client.get("/console/pay/dashboard?day=2001-01-01&lang=en").text)
    # then the charts say there is no data, and no rate is made up
    assert page.count("No data for this period.") == 4
    assert "Success rate (0 of 0 ended payments)" in page


def test_someone_who_may_not_see_payments_is_told_so_not_shown_zeros(
    browser: Browser, town: Town, app: object
) -> None:
    # given a viewer of the city, who reads tenants but no payment
    services: Services = app.state.services  # type: ignore[attr-defined]
    with services.db.unit_of_work() as session:
        viewer = make_member(session, services.passwords, home=town.city, role="viewer")
    sign_in(browser, viewer.user.username)
    # when they open the dashboard
    response = browser.client.get("/console/pay/dashboard?lang=en")
    # then they are told plainly, and no figure or chart is shown
    page = text_of(response.text)
    assert response.status_code == 200
    assert "You cannot see payments" in page
    assert "<svg" not in response.text
    assert "CNY 0.00" not in page
