"""A biller's registered return origins: where its payments may send citizens back, besides
this installation, and nowhere else.

An origin is ``https://host[:port]`` (plain http for this machine's loopback only), with no
path, user name or wildcard, at most ten per biller, stored normalised; a payment's
``return_url`` must be at one of them exactly (scheme, host and port), or a path of this site,
or a URL at its public address. The sandbox's checkout then sends the citizen there.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from tests.factories.core import make_member
from tests.factories.pay import make_agency, make_biller, make_bills
from tests.functional.web.helpers import HTML, Browser

from civicloud.core.audit import AuditRecord
from civicloud.core.services import Services
from civicloud.pay.errors import InvalidReturnOrigin, InvalidReturnUrl
from civicloud.pay.models import Biller, Payment
from civicloud.pay.origins import MAX_RETURN_ORIGINS, check_return_origins, parse_return_origin
from civicloud.pay.payments import check_return_url

PUBLIC = "https://pay.example.gov.cn"
ORIGIN = "https://pay.water.example.cn"
APP = "https://app.water.example.cn:8443"


# --- what an origin is --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("https://pay.water.example.cn", "https://pay.water.example.cn"),
        ("HTTPS://Pay.Water.Example.CN", "https://pay.water.example.cn"),
        ("https://pay.water.example.cn:443", "https://pay.water.example.cn"),
        ("https://app.water.example.cn:8443", "https://app.water.example.cn:8443"),
        ("https://203.0.113.7", "https://203.0.113.7"),
        ("https://[2001:db8:0::1]:9443", "https://[2001:db8::1]:9443"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:5000", "http://[::1]:5000"),
        ("http://localhost:80", "http://localhost"),
    ],
)
def test_an_origin_is_stored_normalised(typed: str, stored: str) -> None:
    assert parse_return_origin(typed) == stored


@pytest.mark.parametrize(
    "typed",
    [
        "https://pay.water.example.cn/",  # a path, even the root
        "https://pay.water.example.cn/return",
        "https://pay.water.example.cn?from=app",
        "https://pay.water.example.cn#top",
        "https://*.water.example.cn",  # a wildcard
        "https://*",
        "https://user@pay.water.example.cn",  # a user name
        "https://pay.water.example.cn@evil.example",  # reads as a host of evil.example
        "https://user:secret@pay.water.example.cn",
        "https://pay.water.example.cn:0",
        "https://pay.water.example.cn:65536",
        "https://pay.water.example.cn:",
        "https://pay.water.example.cn:https",
        "ftp://pay.water.example.cn",
        "javascript://pay.water.example.cn",
        "//pay.water.example.cn",
        "pay.water.example.cn",
        "https://",
        "https:pay.water.example.cn",
        "https:///pay.water.example.cn",
        "https://pay..example.cn",
        "https://-pay.example.cn",
        "https://pay_water.example.cn",
        "https://1.2.3",
        "https://999.1.1.1",
        "https://[not-an-address]",
        "https://bücher.example",  # an international name goes in its xn-- form
        "https://pay.water.example.cn\\@evil.example",
        "https://pay.water.example.cn%2F@evil.example",
        " https://pay.water.example.cn",
        "https://pay.water.example.cn\n",
        "https://pay.wa ter.example.cn",
        "",
        "https://" + "a" * 250 + ".cn",
    ],
)
def test_anything_but_an_origin_is_refused(typed: str) -> None:
    with pytest.raises(InvalidReturnOrigin) as refused:
        parse_return_origin(typed)
    assert refused.value.code == "pay.invalid_return_origin"
    assert "is not a return origin" in refused.value.message


@pytest.mark.parametrize(
    "typed", ["http://pay.water.example.cn", "http://203.0.113.7:8080", "http://localhost.evil"]
)
def test_plain_http_is_refused_but_for_this_machine(typed: str) -> None:
    with pytest.raises(InvalidReturnOrigin) as refused:
        parse_return_origin(typed)
    assert "must use https" in refused.value.message


def test_at_most_ten_origins_each_kept_once() -> None:
    ten = [f"https://app{n}.water.example.cn" for n in range(MAX_RETURN_ORIGINS)]
    # the same origin written twice is one
    assert check_return_origins([*ten, ten[0].upper()]) == ten
    # an eleventh is refused
    with pytest.raises(InvalidReturnOrigin) as refused:
        check_return_origins([*ten, "https://eleven.water.example.cn"])
    assert refused.value.params == {"count": 10}


@given(st.text(max_size=60))
def test_any_text_is_an_origin_that_reads_back_as_itself_or_refused(text: str) -> None:
    try:
        origin = parse_return_origin(text)
    except InvalidReturnOrigin:
        return
    assert re.fullmatch(r"https?://[a-z0-9.\-\[\]:]+", origin), origin
    assert parse_return_origin(origin) == origin


# --- a payment's return_url at the biller's origins -----------------------------------------


@pytest.mark.parametrize(
    "return_url", [f"{ORIGIN}/done", f"{ORIGIN}/done?from=app#paid", ORIGIN, f"{APP}/cb"]
)
def test_a_url_at_a_registered_origin_is_accepted(return_url: str) -> None:
    check_return_url(return_url, PUBLIC, [ORIGIN, APP])  # then nothing is raised
    # and without the biller's origins it is not
    with pytest.raises(InvalidReturnUrl):
        check_return_url(return_url, PUBLIC)


@pytest.mark.parametrize(
    "return_url",
    [
        "https://pay.water.example.cn.evil.example/done",  # a look-alike host
        "https://evil-pay.water.example.cn/done",
        "https://pay.water.example.co/done",
        "https://pay-water.example.cn/done",
        "https://xpay.water.example.cn/done",
        "https://pay.water.example.cn:8443/done",  # a different port
        "https://pay.water.example.cn:444/done",
        "https://app.water.example.cn/cb",  # the registered host, without its port
        "http://pay.water.example.cn/done",  # the wrong scheme
        "https://pay.water.example.cn@evil.example/done",  # user names, either way round
        "https://evil.example@pay.water.example.cn/done",
        "https://pay.water.example.cn:443@evil.example/done",
        "https://pay.water.example.cn\\@evil.example/done",
        "//pay.water.example.cn/done",
        "https://pay.water.example.cn/done\r\nLocation: https://evil.example",
        "https://[pay.water.example.cn]/done",  # brackets that hold no IPv6 address
        "https://[::1/done",
    ],
)
def test_a_url_near_a_registered_origin_is_refused(return_url: str) -> None:
    with pytest.raises(InvalidReturnUrl):
        check_return_url(return_url, PUBLIC, [ORIGIN, APP])


# --- over HTTP ----------------------------------------------------------------------------


@pytest.fixture
def desk(core_services: Services) -> dict[str, Any]:
    """An agency, its pay administrator, and a water biller of it with an open bill."""
    with core_services.db.unit_of_work() as session:
        agency = make_agency(session)
        biller = make_biller(session, tenant=agency, return_origins=[ORIGIN])
        (bill,) = make_bills(session, biller)
        admin = make_member(session, core_services.passwords, home=agency, role="pay_admin")
        viewer = make_member(session, core_services.passwords, home=agency, role="viewer")
        return {
            "agency": agency.id,
            "biller": biller.id,
            "bill": bill.id,
            "code": biller.code,
            "headers": admin.headers,
            "viewer": viewer.headers,
        }


def biller_body(desk: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {
        "tenant_id": str(desk["agency"]),
        "code": f"b-{uuid.uuid4().hex[:10]}",
        "name_zh": "大连市燃气集团",
        "name_en": "Dalian Gas",
        "category": "gas",
        "account_pattern": r"\d{8}",
        "settlement_bank": "中国银行大连分行",
        "settlement_account": "6222020200112233445",
        "settlement_account_name": "大连市燃气集团",
        **overrides,
    }


def billers_of(services: Services, tenant_id: uuid.UUID) -> int:
    with services.db.unit_of_work(write=False) as session:
        return int(
            session.scalar(
                select(func.count()).select_from(Biller).where(Biller.tenant_id == tenant_id)
            )
            or 0
        )


def test_a_biller_registers_its_origins_normalised(
    client: TestClient, desk: dict[str, Any]
) -> None:
    # when a pay administrator registers a biller with its site and its app
    created = client.post(
        "/api/v1/pay/billers",
        json=biller_body(desk, return_origins=["HTTPS://Pay.Gas.Example.CN:443", APP]),
        headers=desk["headers"],
    )
    # then they are kept, normalised, and shown
    assert created.status_code == 201, created.text
    assert created.json()["return_origins"] == ["https://pay.gas.example.cn", APP]
    shown = client.get(f"/api/v1/pay/billers/{created.json()['id']}", headers=desk["headers"])
    assert shown.json()["return_origins"] == ["https://pay.gas.example.cn", APP]


@pytest.mark.parametrize(
    ("origins", "words"),
    [
        (["http://pay.gas.example.cn"], "必须使用 https"),
        (["https://pay.gas.example.cn/return"], "不是返回来源"),
        (["https://*.gas.example.cn"], "不是返回来源"),
        (["https://cashier@pay.gas.example.cn"], "不是返回来源"),
        ([f"https://app{n}.gas.example.cn" for n in range(11)], "最多登记 10 个返回来源"),
    ],
)
def test_a_bad_origin_is_refused_at_registration_in_the_reader_s_language(
    client: TestClient,
    core_services: Services,
    desk: dict[str, Any],
    origins: list[str],
    words: str,
) -> None:
    before = billers_of(core_services, desk["agency"])
    # when the biller is registered with it, by a reader of Chinese
    refused = client.post(
        "/api/v1/pay/billers",
        json=biller_body(desk, return_origins=origins),
        headers={**desk["headers"], "Accept-Language": "zh-CN"},
    )
    # then it is a 422 problem saying why, in Chinese, and no biller is made
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["code"] == "pay.invalid_return_origin"
    assert words in problem["detail"], problem
    assert billers_of(core_services, desk["agency"]) == before


def test_a_pay_administrator_changes_the_origins_and_it_is_audited(
    client: TestClient, core_services: Services, desk: dict[str, Any]
) -> None:
    url = f"/api/v1/pay/billers/{desk['biller']}"
    # given someone who may only read billers: refused, nothing changed
    denied = client.patch(url, json={"return_origins": [APP]}, headers=desk["viewer"])
    assert denied.status_code in (403, 404), denied.text
    # when the pay administrator replaces the list
    changed = client.patch(url, json={"return_origins": [APP]}, headers=desk["headers"])
    # then it is replaced, and the change is in the audit log with what it was before
    assert changed.status_code == 200, changed.text
    assert changed.json()["return_origins"] == [APP]
    with core_services.db.unit_of_work(write=False) as session:
        record = session.scalars(
            select(AuditRecord)
            .where(
                AuditRecord.action == "pay.biller.update",
                AuditRecord.target == f"biller:{desk['code']}",
                AuditRecord.outcome == "success",
            )
            .order_by(AuditRecord.seq.desc())
        ).first()
    assert record is not None
    assert record.detail["return_origins"] == {"before": [ORIGIN], "after": [APP]}
    # and a bad list, or a field that cannot be changed here, is refused
    bad = client.patch(
        url, json={"return_origins": ["http://evil.example"]}, headers=desk["headers"]
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "pay.invalid_return_origin")
    other = client.patch(url, json={"code": "other"}, headers=desk["headers"])
    assert other.status_code == 422


def start(client: TestClient, desk: dict[str, Any], return_url: str) -> Any:
    return client.post(
        "/api/v1/pay/payments",
        json={
            "biller_id": str(desk["biller"]),
            "bill_ids": [str(desk["bill"])],
            "provider": "sandbox",
            "return_url": return_url,
        },
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )


def test_the_checkout_sends_the_citizen_to_the_biller_s_registered_origin(
    client: TestClient, core_services: Services, desk: dict[str, Any]
) -> None:
    # given a payment started from the biller's own site, to come back there
    started = start(client, desk, f"{ORIGIN}/paid?order=42")
    assert started.status_code == 201, started.text
    trade_no = started.json()["trade_no"]
    checkout = started.json()["checkout"]["url"]
    path = re.sub(r"^https?://[^/]+", "", checkout)
    browser = Browser(TestClient(client.app, base_url="https://testserver", headers=HTML))
    # when the citizen opens the sandbox's checkout: its form may lead on to that origin only
    page = browser.client.get(path)
    assert page.status_code == 200, page.text
    policy = page.headers["content-security-policy"]
    assert f"form-action 'self' {ORIGIN};" in policy
    # and pays
    paid = browser.submit(path, {"outcome": "succeeded"})
    browser.client.close()
    # then they are sent to the biller's site, with the trade number
    assert paid.status_code == 303
    assert paid.headers["location"] == f"{ORIGIN}/paid?order=42&out_trade_no={trade_no}"


@pytest.mark.parametrize(
    "return_url",
    [
        "https://pay.water.example.cn.evil.example/paid",
        "https://pay.water.example.cn:8443/paid",
        "https://pay.water.example.cn@evil.example/paid",
        "https://app.water.example.cn:8443/paid",  # another biller's origin is not this one's
        "https://[pay.water.example.cn]/paid",  # not a 500
    ],
)
def test_a_payment_returning_elsewhere_is_refused_and_makes_nothing(
    client: TestClient, core_services: Services, desk: dict[str, Any], return_url: str
) -> None:
    with core_services.db.unit_of_work() as session:
        make_biller(session, return_origins=[APP])  # another biller registered the app
    refused = start(client, desk, return_url)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "pay.invalid_return_url"
    assert "return origins" in refused.json()["detail"]
    with core_services.db.unit_of_work(write=False) as session:
        made = session.scalar(
            select(func.count()).select_from(Payment).where(Payment.biller_id == desk["biller"])
        )
    assert made == 0


# --- the account a biller is settled to, as it goes into the bank batch file ----------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("settlement_account_name", '=HYPERLINK("http://evil.example","点此")'),
        ("settlement_account_name", "@SUM(A1)"),
        ("settlement_account_name", " =1+1"),
        ("settlement_bank", "\u3000+1+1"),
        ("settlement_bank", "中国银行;=1+1"),
    ],
)
def test_a_payee_a_spreadsheet_would_run_is_refused_when_the_biller_is_made(
    client: TestClient, core_services: Services, desk: dict[str, Any], field: str, value: str
) -> None:
    before = billers_of(core_services, desk["agency"])
    # when a biller is registered with a payee that the bank batch file could not carry
    refused = client.post(
        "/api/v1/pay/billers", json=biller_body(desk, **{field: value}), headers=desk["headers"]
    )
    # then it is refused at once (not at its first settlement), and no biller is made
    assert refused.status_code == 422, refused.text
    assert field in refused.json()["detail"]
    assert billers_of(core_services, desk["agency"]) == before


def test_a_pay_administrator_corrects_the_settlement_account_and_it_is_audited(
    client: TestClient, core_services: Services, desk: dict[str, Any]
) -> None:
    url = f"/api/v1/pay/billers/{desk['biller']}"
    # when the pay administrator changes where the biller is settled to
    changed = client.patch(
        url,
        json={"settlement_account": "6222020200998877665", "settlement_account_name": "大连水务"},
        headers=desk["headers"],
    )
    # then the biller is settled there, its origins are unchanged, and the change is audited
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["settlement_account"], body["settlement_account_name"]) == (
        "6222020200998877665",
        "大连水务",
    )
    assert body["return_origins"] == [ORIGIN]
    with core_services.db.unit_of_work(write=False) as session:
        record = session.scalars(
            select(AuditRecord)
            .where(
                AuditRecord.action == "pay.biller.update",
                AuditRecord.target == f"biller:{desk['code']}",
            )
            .order_by(AuditRecord.seq.desc())
        ).first()
    assert record is not None
    assert record.detail["settlement_account_name"]["after"] == "大连水务"
    assert "return_origins" not in record.detail
    # and a payee a spreadsheet would run is refused, leaving the account as it was
    bad = client.patch(url, json={"settlement_account_name": "=1+1"}, headers=desk["headers"])
    assert bad.status_code == 422, bad.text
    shown = client.get(url, headers=desk["headers"]).json()
    assert shown["settlement_account_name"] == "大连水务"


@pytest.mark.parametrize(
    ("return_url", "accepted"),
    [
        ("https://gov.example.cn/civicloud/pay/return", True),
        ("https://gov.example.cn/civicloud", True),
        ("https://gov.example.cn/other-app/redirect?to=evil", False),
        ("https://gov.example.cn/civicloud-evil/pay", False),
        ("https://gov.example.cn/", False),
    ],
)
def test_a_public_address_with_a_path_lends_only_its_own_pages(
    return_url: str, accepted: bool
) -> None:
    # given an installation served under a path of a host it shares with other applications
    public = "https://gov.example.cn/civicloud/"
    # then only URLs under that path are its own
    if accepted:
        check_return_url(return_url, public)
    else:
        with pytest.raises(InvalidReturnUrl):
            check_return_url(return_url, public)
