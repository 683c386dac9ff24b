"""A bills import's report in the reader's language: each refused line's reason on the console
page in Chinese or English, amounts in yuan, and a stable code per line for API callers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.factories.core import make_member, make_tenant
from tests.factories.pay import make_agency, make_biller
from tests.functional.pay.test_pages import ACCOUNT, BASE_URL, pages_app, sign_in
from tests.functional.web.helpers import HTML, Browser, text_of

from civicloud.core.services import Services
from civicloud.core.tenants import TenantKind
from civicloud.pay.web.views import beijing_now


def bad_file() -> bytes:
    """A bills file with one good line and three bad ones (lines 3 to 5)."""
    due = (beijing_now().date() + timedelta(days=20)).isoformat()
    return (
        "bill_number,account_number,payer_name,amount,period,due_date\n"
        f"OK-1,{ACCOUNT},李四,88.00,2026-11,{due}\n"
        f"BAD-1,12ab,王五,10.00,2026-11,{due}\n"
        f"BAD-2,{ACCOUNT},赵六,-5,2026-11,{due}\n"
        f"BAD-3,{ACCOUNT},钱七,1.005,2026-11,{due}\n"
    ).encode()


@pytest.fixture(scope="module")
def app(core_services: Services) -> FastAPI:
    return pages_app(core_services)


@pytest.fixture
def browser(app: FastAPI) -> Iterator[Browser]:
    client = TestClient(app, base_url=BASE_URL, headers=HTML)
    yield Browser(client)
    client.close()


@pytest.fixture
def operator(core_services: Services) -> tuple[str, Any]:
    """A water biller's operator (username) and the biller's id."""
    with core_services.db.unit_of_work() as session:
        city = make_tenant(session, kind=TenantKind.CITY)
        agency = make_tenant(session, parent=city, kind=TenantKind.AGENCY)
        biller = make_biller(session, tenant=agency)
        member = make_member(session, core_services.passwords, home=city, role="pay_operator")
        return member.user.username, biller.id


def reasons(html: str) -> list[str]:
    """The reason cell of each refused line of the report."""
    rows = re.findall(
        r'<td class="pay-num">\d+</td><td><code>[^<]+</code></td><td>(.*?)</td>', html
    )
    return [text_of(row).strip() for row in rows]


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        (
            "zh",
            [
                "account_number 不符合该收费单位的格式",
                "amount 必须大于 ¥0.00",
                "amount 须为以元为单位、最多两位小数的金额，例如 52.31",  # noqa: RUF001
            ],
        ),
        (
            "en",
            [
                "account_number has the wrong format for this biller",
                "amount must be more than CNY 0.00",
                "amount must be an amount in yuan with at most two decimals, such as 52.31",
            ],
        ),
    ],
)
def test_each_refused_line_is_explained_in_the_pages_language(
    browser: Browser, operator: tuple[str, Any], lang: str, expected: list[str]
) -> None:
    username, biller_id = operator
    sign_in(browser, username)
    # when a file with bad lines is uploaded, as it is and then with its valid lines only
    for partial, status in (("", 422), ("yes", 200)):
        response = browser.client.post(
            f"/console/pay/billers/{biller_id}/import?lang={lang}",
            data={"csrf_token": browser.csrf(), "partial": partial},
            files={"file": ("bills.csv", bad_file(), "text/csv")},
            follow_redirects=False,
        )
        # then each line's reason is in the page's language, and no reason speaks in fen
        assert response.status_code == status, response.text
        assert reasons(response.text) == expected
        assert 'lang="en"' not in response.text.split('id="import-report"')[1].split("</table>")[0]
        assert " fen" not in text_of(response.text)


def test_the_api_gives_each_refused_line_a_stable_code(
    client: TestClient, core_services: Services
) -> None:
    # given a pay administrator's API key
    with core_services.db.unit_of_work() as session:
        agency = make_agency(session)
        biller = make_biller(session, tenant=agency)
        admin = make_member(session, core_services.passwords, home=agency, role="pay_admin")
        headers = admin.headers
    # when the file is imported through the API, in Chinese
    response = client.post(
        f"/api/v1/pay/billers/{biller.id}/bills.csv",
        content=bad_file(),
        headers={**headers, "Content-Type": "text/csv", "Accept-Language": "zh-CN"},
    )
    # then the problem says how many lines in Chinese, and each line carries a code and params
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["detail"] == "4 行中有 3 行无效，未导入任何账单"  # noqa: RUF001
    assert [(e["line"], e["code"], e["params"]) for e in problem["errors"]] == [
        (3, "pay.import.wrong_account_format", {"field": "account_number"}),
        (4, "pay.import.not_more_than", {"field": "amount", "limit_fen": 0}),
        (5, "pay.import.not_an_amount", {"field": "amount"}),
    ]
    assert problem["errors"][0]["reason"] == "account_number has the wrong format for this biller"
