"""Pay's input edges over HTTP: account patterns run in linear time, dates in one range, names
that cannot spoof a page, and account numbers as people type them. Each bad value is a clear
422 problem document that changes nothing; none is a 500."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from tests.factories.core import make_member
from tests.factories.pay import bill_row, make_agency, make_biller, make_bills

from civicloud.core.dates import MAX_DATE, MIN_DATE
from civicloud.core.services import Services
from civicloud.pay.models import Bill, Biller

PATHOLOGICAL = "(a|a)*b"


@pytest.fixture
def desk(core_services: Services) -> dict[str, Any]:
    """An agency with a water biller and bills of account 0411000001, its pay administrator."""
    with core_services.db.unit_of_work() as session:
        agency = make_agency(session)
        biller = make_biller(session, tenant=agency)
        bills = make_bills(session, biller, count=2, account_number="0411000001")
        admin = make_member(session, core_services.passwords, home=agency, role="pay_admin")
        return {
            "agency": agency.id,
            "biller": biller.id,
            "bills": {b.id for b in bills},
            "headers": admin.headers,
        }


def biller_body(desk: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenant_id": str(desk["agency"]),
        "code": f"b-{uuid.uuid4().hex[:10]}",
        "name_zh": "大连市燃气集团",
        "name_en": "Dalian Gas",
        "category": "gas",
        "account_pattern": r"\d{8}",
        "settlement_bank": "中国银行大连分行",
        "settlement_account": "6222020200112233445",
        "settlement_account_name": "大连市燃气集团",
    }
    body.update(overrides)
    return body


def billers_of(services: Services, tenant_id: uuid.UUID) -> int:
    with services.db.unit_of_work(write=False) as session:
        return int(
            session.scalar(
                select(func.count()).select_from(Biller).where(Biller.tenant_id == tenant_id)
            )
            or 0
        )


def lookup(client: TestClient, biller_id: Any, account: str) -> Any:
    return client.get(f"/api/v1/pay/public/billers/{biller_id}/bills", params={"account": account})


def assert_problem(response: Any, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


# --- point: account patterns run in linear time -------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [r"(\d)\1{7}", r"(?=\d{8})\d+", r"(?<!0)\d{8}", r"\d{8}\Z", "x" * 201, r"\d{2000}"],
)
def test_a_pattern_only_a_backtracking_engine_runs_is_refused_when_set(
    client: TestClient, core_services: Services, desk: dict[str, Any], pattern: str
) -> None:
    # given a pay administrator
    before = billers_of(core_services, desk["agency"])
    # when they register a biller whose pattern needs backtracking (or is too long)
    response = client.post(
        "/api/v1/pay/billers",
        json=biller_body(desk, account_pattern=pattern),
        headers=desk["headers"],
    )
    # then it is a clear 422 naming the field, and no biller is made
    problem = assert_problem(response)
    assert any(e["loc"][-1] == "account_pattern" for e in problem["errors"]), problem
    assert billers_of(core_services, desk["agency"]) == before


@pytest.mark.timeout(30)
def test_a_pathological_pattern_cannot_hold_the_server(
    client: TestClient, core_services: Services, desk: dict[str, Any]
) -> None:
    # given a biller whose pattern is (a|a)*b: exponential for a backtracking engine, linear
    # for RE2, so it is accepted
    created = client.post(
        "/api/v1/pay/billers",
        json=biller_body(desk, account_pattern=PATHOLOGICAL),
        headers=desk["headers"],
    )
    assert created.status_code == 201, created.text
    biller_id = created.json()["id"]
    # when anyone looks up 63 a's (and a bill import names such an account), then each
    # answers, and rightly (a backtracking engine would not answer within the timeout)
    assert assert_problem(lookup(client, biller_id, "a" * 63))["code"] == "core.invalid_input"
    found = lookup(client, biller_id, "a" * 63 + "b")
    assert found.status_code == 200, found.text
    assert found.json() == []
    imported = client.post(
        f"/api/v1/pay/billers/{biller_id}/bills",
        json={
            "bills": [bill_row(account_number="a" * 64), bill_row(account_number="a" * 20 + "b")],
            "partial": True,
        },
        headers=desk["headers"],
    )
    assert imported.status_code == 200, imported.text
    assert (imported.json()["accepted"], imported.json()["refused"]) == (1, 1)
    # and the server still answers its health check
    assert client.get("/healthz").status_code == 200


# --- point: dates in one range -------------------------------------------------------------


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1999-12-31", "2101-01-01"])
def test_a_settlement_date_out_of_range_is_a_clear_422(
    client: TestClient, core_services: Services, day: str
) -> None:
    with core_services.db.unit_of_work() as session:
        agency = make_agency(session)
        biller = make_biller(session, tenant=agency)
        operator = make_member(session, core_services.passwords, home=agency, role="pay_operator")
    settled = client.post(
        f"/api/v1/pay/billers/{biller.id}/settlements",
        params={"date": day},
        headers=operator.headers,
    )
    problem = assert_problem(settled)
    assert "2000-01-01" in problem["detail"]
    assert "2100-12-31" in problem["detail"]


@pytest.fixture
def settler(core_services: Services) -> tuple[uuid.UUID, dict[str, str]]:
    """A biller with no payments, and the headers of an operator who may settle its days."""
    with core_services.db.unit_of_work() as session:
        agency = make_agency(session)
        biller = make_biller(session, tenant=agency)
        operator = make_member(session, core_services.passwords, home=agency, role="pay_operator")
    return biller.id, operator.headers


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    # one biller for every example: each settles a day of its own
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(day=st.dates())
def test_any_settlement_date_gets_the_answer_it_deserves(
    client: TestClient, settler: tuple[uuid.UUID, dict[str, str]], day: date
) -> None:
    # given an operator of a biller, and any date a calendar has
    biller_id, headers = settler
    # when the day is settled
    response = client.post(
        f"/api/v1/pay/billers/{biller_id}/settlements",
        params={"date": day.isoformat()},
        headers=headers,
    )
    # then a day out of range is a 422 naming the range; a day in range is settled, refused
    # as not ended yet (422) or as having nothing to settle (409): never a 500
    if not MIN_DATE <= day <= MAX_DATE:
        problem = assert_problem(response)
        assert problem["code"] == "core.invalid_input"
        assert "2000-01-01" in problem["detail"]
    else:
        assert response.status_code in (200, 409, 422), response.text


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_a_statement_date_out_of_range_is_a_clear_422(
    client: TestClient, core_services: Services, day: str
) -> None:
    with core_services.db.unit_of_work() as session:
        reconciler = make_member(
            session,
            core_services.passwords,
            home=make_agency(session),
            role="pay_admin",
            platform=True,
        )
    response = client.post(
        "/api/v1/pay/reconciliation/sandbox",
        params={"date": day},
        content=b"",
        headers={**reconciler.headers, "Content-Type": "text/csv"},
    )
    assert_problem(response)


@pytest.mark.parametrize("due", ["0001-01-01", "9999-12-31", "1970-01-01"])
def test_a_bill_due_out_of_range_is_refused_at_import_and_amendment(
    client: TestClient, core_services: Services, desk: dict[str, Any], due: str
) -> None:
    # given a JSON batch and a CSV file each with a bill due in year 1 (or 9999)
    batch = client.post(
        f"/api/v1/pay/billers/{desk['biller']}/bills",
        json={"bills": [bill_row(due_date=due, account_number="0411000002")]},
        headers=desk["headers"],
    )
    problem = assert_problem(batch)
    assert "2000-01-01" in problem["errors"][0]["reason"]
    csv = (
        "bill_number,account_number,payer_name,amount,period,due_date\n"
        f"C{uuid.uuid4().hex[:10]},0411000002,王芳,12.30,2026-11,{due}\n"
    )
    imported = client.post(
        f"/api/v1/pay/billers/{desk['biller']}/bills.csv",
        content=csv.encode(),
        headers={**desk["headers"], "Content-Type": "text/csv"},
    )
    assert "2000-01-01" in assert_problem(imported)["errors"][0]["reason"]
    # and an amendment to such a due date is refused
    bill_id = next(iter(desk["bills"]))
    amended = client.patch(
        f"/api/v1/pay/bills/{bill_id}", json={"due_date": due}, headers=desk["headers"]
    )
    assert_problem(amended)
    with core_services.db.unit_of_work(write=False) as session:
        assert session.get(Bill, bill_id).due_date.year not in (1, 9999, 1970)


# --- point: account numbers as people type them; names that cannot spoof -------------------


@pytest.mark.parametrize(
    "typed",
    [
        "0411000001",
        " 0411 000 001 ",
        "\uff10\uff14\uff11\uff11\uff10\uff10\uff10\uff10\uff10\uff11",  # full-width
        "\uff10\uff14\uff11\uff11\u3000\uff10\uff10\uff10\uff10\uff10\uff11",  # and a wide space
    ],
)
def test_an_account_number_is_found_as_people_type_it(
    client: TestClient, desk: dict[str, Any], typed: str
) -> None:
    found = lookup(client, desk["biller"], typed)
    assert found.status_code == 200, found.text
    assert {uuid.UUID(b["id"]) for b in found.json()} == desk["bills"]


def test_a_plate_number_is_found_in_lower_case_and_full_width(
    client: TestClient, core_services: Services
) -> None:
    # given fines published for 辽B12345, one written in lower case with a space by the biller
    with core_services.db.unit_of_work() as session:
        biller = make_biller(
            session,
            category="fine",
            code=f"fines-{uuid.uuid4().hex[:8]}",
            account_pattern=r"辽B[A-Z0-9]{5}",
        )
        bills = make_bills(session, biller, count=1, account_number="辽b 12345", **FINE)
        stored = session.get(Bill, bills[0].id)
        # then it is stored as the biller writes it
        assert stored is not None
        assert stored.account_number == "辽B12345"
    # and a citizen finds it typing lower case or full-width
    for typed in ("辽b12345", "辽\uff22\uff11\uff12\uff13\uff14\uff15", "辽B 12345"):
        found = lookup(client, biller.id, typed)
        assert found.status_code == 200, found.text
        assert [b["id"] for b in found.json()] == [str(bills[0].id)]


@pytest.mark.parametrize("account", ["", "   ", "\u3000"])
def test_an_empty_account_number_asks_for_one(
    client: TestClient, desk: dict[str, Any], account: str
) -> None:
    problem = assert_problem(lookup(client, desk["biller"], account))
    assert "account number" in problem["detail"]
    assert "format" not in problem["detail"]


SPOOF = "\u202e"
FINE: dict[str, Any] = {
    "details": {
        "decision_number": "210202100012345",
        "offence_time": "2026-11-03T08:42:00+08:00",
        "place": "大连市中山区人民路与解放路交叉口",
        "offence": "机动车不按交通信号灯规定通行",
        "offence_code": "1625",
        "points": 6,
    },
    "late_fee_rule": None,
}


@pytest.mark.parametrize(
    "field", ["name_zh", "name_en", "settlement_bank", "settlement_account_name"]
)
def test_a_biller_name_with_a_direction_override_is_refused(
    client: TestClient, core_services: Services, desk: dict[str, Any], field: str
) -> None:
    before = billers_of(core_services, desk["agency"])
    response = client.post(
        "/api/v1/pay/billers",
        json=biller_body(desk, **{field: f"大连{SPOOF}燃气"}),
        headers=desk["headers"],
    )
    assert_problem(response)
    assert billers_of(core_services, desk["agency"]) == before


@pytest.mark.parametrize(
    ("field", "value"),
    [("payer_name", f"王{SPOOF}芳"), ("period", "2026-11\u200b"), ("payer_name", "李\u2066娜")],
)
def test_a_bill_whose_payer_or_period_could_spoof_is_refused(
    client: TestClient, desk: dict[str, Any], field: str, value: str
) -> None:
    response = client.post(
        f"/api/v1/pay/billers/{desk['biller']}/bills",
        json={"bills": [bill_row(**{field: value})]},
        headers=desk["headers"],
    )
    problem = assert_problem(response)
    assert field in problem["errors"][0]["reason"]


def test_core_names_refuse_spoofing_characters(client: TestClient, core_services: Services) -> None:
    # given a platform administrator
    with core_services.db.unit_of_work() as session:
        admin = make_member(
            session,
            core_services.passwords,
            home=make_agency(session),
            role="platform_admin",
            platform=True,
        )
    # when a tenant, a user, a role or an API key is named with an override or a zero-width
    # space, then each is refused
    tenant = client.post(
        "/api/v1/tenants",
        json={
            "slug": f"t-{uuid.uuid4().hex[:8]}",
            "name_zh": f"大连{SPOOF}",
            "name_en": "Dalian",
            "kind": "country",
        },
        headers=admin.headers,
    )
    assert_problem(tenant)
    user = client.post(
        "/api/v1/users",
        json={
            "username": f"u{uuid.uuid4().hex[:8]}",
            "display_name": "王\u200b芳",
            "tenant_id": str(admin.user.tenant_id),
        },
        headers=admin.headers,
    )
    assert_problem(user)
    key = client.post("/api/v1/api-keys", json={"name": f"job{SPOOF}"}, headers=admin.headers)
    assert_problem(key)
