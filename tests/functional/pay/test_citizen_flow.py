"""The citizen's way through paying, without a script: check before paying, nobody else's payment
taken over, the public address explained, a payment found again, a failure explained.

Pages are driven through ``TestClient`` (no script runs): what they show without JavaScript is
what they must get right. The browser tests (``test_citizen_browser.py``) add the script's sum.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from tests.functional.pay.test_pages import (
    ACCOUNT,
    BASE_URL,
    Town,
    app,
    bill_ids,
    browser,
    hidden,
    pages_app,
    path_of,
    sandbox,
    start_paying,
    submit_pay,
    town,
)
from tests.functional.web.helpers import HTML, Browser, text_of

from civicloud.core.db import utcnow
from civicloud.core.services import Services
from civicloud.pay.models import Payment

__all__ = ["app", "browser", "sandbox", "town"]  # the fixtures shared with test_pages


def confirm(browser: Browser, town: Town, form: dict[str, str], bills: list[str], lang: str):  # type: ignore[no-untyped-def]
    """The confirmation step for ``bills``, as the bills form (GET) asks for it."""
    return browser.client.get(
        f"/pay/billers/{town.biller.id}/confirm",
        params={**form, "bill_id": bills, "lang": lang},
    )


@pytest.mark.parametrize(
    ("lang", "button", "total"),
    [("zh", "立即缴费 ¥123.45", "¥123.45"), ("en", "Pay CNY 123.45 now", "CNY 123.45")],
)
def test_the_confirmation_step_shows_the_sum_of_the_ticked_bills_only(
    browser: Browser, town: Town, lang: str, button: str, total: str
) -> None:
    # given an account with two open bills of 123.45 yuan each
    page, form = start_paying(browser, town, lang=lang)
    assert 'action="/pay/billers/' in page
    assert 'method="get"' in page
    chosen = bill_ids(page)[:1]
    # when one is ticked and the citizen goes on
    check = confirm(browser, town, form, chosen, lang)
    # then the page shows that bill and its sum, on the button too, and not the other bill
    assert check.status_code == 200, check.text
    text = text_of(check.text)
    assert button in text
    assert total in text
    assert "246.90" not in text
    assert bill_ids(check.text) == chosen
    assert hidden(check.text, "provider") == "sandbox"
    # and paying from it pays that bill only, at that amount
    location = submit_pay(browser, town, form, chosen)
    cashier = browser.client.get(path_of(location))
    assert total in text_of(cashier.text)


def test_the_confirmation_step_refuses_what_cannot_be_paid(browser: Browser, town: Town) -> None:
    page, form = start_paying(browser, town, lang="en")
    # nothing ticked
    none = confirm(browser, town, form, [], "en")
    assert none.status_code == 422
    assert "Choose at least one bill to pay." in text_of(none.text)
    # a bill that is not this account's (or no longer open)
    other = confirm(browser, town, form, ["00000000-0000-0000-0000-000000000000"], "en")
    assert other.status_code == 409
    assert "A bill you chose was paid or changed meanwhile" in text_of(other.text)
    # no way to pay
    no_provider = confirm(browser, town, {**form, "provider": ""}, bill_ids(page), "en")
    assert no_provider.status_code == 422
    assert "Choose how you want to pay." in text_of(no_provider.text)


def test_the_bills_page_runs_only_its_own_script(browser: Browser, town: Town) -> None:
    page = browser.client.get(f"/pay/billers/{town.biller.id}/bills", params={"account": ACCOUNT})
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'self'" in policy
    script = re.search(r'<script src="(/static/pay/pay-total\.js\?v=\w+)" defer>', page.text)
    assert script, page.text
    served = browser.client.get(script.group(1))
    assert served.status_code == 200
    assert "data-fen" in served.text
    # and every other citizen's page still runs none
    account = browser.client.get(f"/pay/billers/{town.biller.id}")
    assert "script-src 'none'" in account.headers["content-security-policy"]


def test_a_stranger_neither_blocks_nor_takes_over_a_payment_but_its_payer_may_start_again(
    app: FastAPI, browser: Browser, town: Town, core_services: Services
) -> None:
    # given a citizen started paying both bills
    page, form = start_paying(browser, town)
    first = path_of(submit_pay(browser, town, form, bill_ids(page))).rsplit("/", 1)[1]
    # when someone else, in another browser, pays one of them
    stranger = Browser(TestClient(app, base_url=BASE_URL, headers=HTML))
    other_page, other_form = start_paying(stranger, town)
    theirs = stranger.client.post(
        f"/pay/billers/{town.biller.id}/bills",
        data={**other_form, "bill_id": bill_ids(other_page)[:1], "csrf_token": stranger.csrf()},
        follow_redirects=False,
    )
    # then they are sent to the checkout, and the citizen's payment is untouched
    assert theirs.status_code == 303, text_of(theirs.text)
    stranger.client.close()
    with core_services.db.unit_of_work(write=False) as session:
        status = session.scalars(select(Payment.status).where(Payment.trade_no == first)).one()
    assert status == "pending"
    # and when the citizen, in their own browser, starts again (say, to pay another way)
    page, form = start_paying(browser, town)
    second = path_of(submit_pay(browser, town, form, bill_ids(page))).rsplit("/", 1)[1]
    # then that replaces their own payment, and only theirs
    assert second != first
    with core_services.db.unit_of_work(write=False) as session:
        statuses = dict(
            session.execute(
                select(Payment.trade_no, Payment.status).where(Payment.biller_id == town.biller.id)
            ).all()
        )
    assert statuses.pop(first) == "superseded"
    assert statuses.pop(second) == "pending"
    assert list(statuses.values()) == ["pending"]  # the stranger's
    # and the replaced payment's page says why it ended
    ended = browser.client.get(f"/pay/payments/{first}", params={"lang": "en"})
    assert "You started a new payment for the same bills in this browser" in text_of(ended.text)


@pytest.fixture
def limited(core_services: Services) -> Iterator[Browser]:
    """A browser on an application that lets a client start one payment a minute."""
    limited_app = pages_app(core_services, payments_per_minute=1)
    client = TestClient(limited_app, base_url=BASE_URL, headers=HTML)
    yield Browser(client)
    client.close()


def test_payments_started_from_the_pages_are_rate_limited(limited: Browser, town: Town) -> None:
    page, form = start_paying(limited, town, lang="en")
    submit_pay(limited, town, form, bill_ids(page)[:1])
    page, form = start_paying(limited, town, lang="en")
    again = limited.client.post(
        f"/pay/billers/{town.biller.id}/bills",
        data={**form, "bill_id": bill_ids(page)[1:], "csrf_token": limited.csrf()},
        follow_redirects=False,
    )
    assert again.status_code == 429
    assert int(again.headers["retry-after"]) > 0
    assert "You have started many payments in a short time" in text_of(again.text)


@pytest.fixture
def elsewhere(core_services: Services) -> Iterator[Browser]:
    """A browser reaching the site at another address than its configured public one."""
    other_app = pages_app(core_services, public_base_url="http://localhost:8000")
    client = TestClient(other_app, base_url=BASE_URL, headers=HTML)
    yield Browser(client)
    client.close()


@pytest.mark.parametrize(
    ("lang", "said"),
    [
        ("zh", "本站配置的访问地址是 http://localhost:8000，但您是通过 https://testserver 打开的"),  # noqa: RUF001
        (
            "en",
            "set up to be reached at http://localhost:8000, but you opened it at https://testserver",
        ),
    ],
)
def test_a_public_address_other_than_the_one_used_is_explained_and_paying_still_works(
    elsewhere: Browser, town: Town, lang: str, said: str
) -> None:
    # given the site is reached at another address than pay.public_base_url
    page, form = start_paying(elsewhere, town, lang=lang)
    # then the bills page and the confirmation step say so, and how to fix it
    assert said in text_of(page)
    check = confirm(elsewhere, town, form, bill_ids(page), lang)
    assert said in text_of(check.text)
    assert "CIVICLOUD_PAY__PUBLIC_BASE_URL" in check.text
    # and paying leads on to the sandbox's checkout on the address in use, not the configured one
    location = submit_pay(elsewhere, town, form, bill_ids(page))
    assert location.startswith("/pay/sandbox/checkout/CC")
    cashier = elsewhere.client.get(location)
    assert cashier.status_code == 200


def test_the_same_address_says_nothing(browser: Browser, town: Town) -> None:
    page, _form = start_paying(browser, town, lang="en")
    assert "set up to be reached at" not in text_of(page)


def test_a_payment_is_found_again_by_its_transaction_number(
    browser: Browser, town: Town, sandbox: object
) -> None:
    page, form = start_paying(browser, town, lang="en")
    trade_no = path_of(submit_pay(browser, town, form, bill_ids(page))).rsplit("/", 1)[1]
    # the payment page points to the look-up
    shown = browser.client.get(f"/pay/payments/{trade_no}", params={"lang": "zh"})
    assert "查询缴费记录" in text_of(shown.text)
    assert 'href="/pay/find"' in shown.text
    # the look-up's form
    empty = browser.client.get("/pay/find", params={"lang": "zh"})
    assert empty.status_code == 200
    assert "交易流水号" in text_of(empty.text)
    # typed with spaces and in lower case, it leads to the payment
    typed = " ".join([trade_no[:6].lower(), trade_no[6:]])
    found = browser.client.get("/pay/find", params={"trade_no": typed}, follow_redirects=False)
    assert found.status_code == 303
    assert found.headers["location"] == f"/pay/payments/{trade_no}"
    # an unknown number is said so, on the page, in both languages
    for lang, said in (("zh", "没有找到此交易流水号对应的缴费"), ("en", "No payment has this")):
        unknown = browser.client.get(
            "/pay/find", params={"trade_no": "CC20260101" + "0" * 16, "lang": lang}
        )
        assert unknown.status_code == 404
        assert said in text_of(unknown.text)
        assert 'aria-invalid="true"' in unknown.text
    junk = browser.client.get("/pay/find", params={"trade_no": "<script>", "lang": "en"})
    assert junk.status_code == 404
    assert "<script>" not in junk.text


@pytest.mark.parametrize(
    ("lang", "said"),
    [
        ("zh", "原因： 支付渠道告知此次支付未成功"),  # noqa: RUF001
        ("en", "Why: The payment provider reported that the payment did not go through"),
    ],
)
def test_a_failed_payment_says_why(browser: Browser, town: Town, lang: str, said: str) -> None:
    page, form = start_paying(browser, town, lang=lang)
    checkout = path_of(submit_pay(browser, town, form, bill_ids(page)))
    failed = browser.submit(checkout, {"outcome": "failed"})
    result = browser.client.get(f"{failed.headers['location']}&lang={lang}")
    assert said in text_of(result.text)


def test_an_expired_payment_says_how_long_it_had(
    browser: Browser, town: Town, core_services: Services
) -> None:
    page, form = start_paying(browser, town, lang="en")
    trade_no = path_of(submit_pay(browser, town, form, bill_ids(page))).rsplit("/", 1)[1]
    with core_services.db.unit_of_work() as session:
        session.execute(
            update(Payment)
            .where(Payment.trade_no == trade_no)
            .values(status="expired", finished_at=utcnow() + timedelta(seconds=1))
        )
    result = browser.client.get(f"/pay/payments/{trade_no}", params={"lang": "en"})
    assert "was not completed within 15 minutes of being started" in text_of(result.text)
