"""Operators' side of Pay over HTTP: refunds, bad input, ledger, settlement, reconciliation,
receipts. Bad input gets a clear problem document and changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.factories.core import make_member
from tests.factories.pay import make_agency, make_biller, make_bills

from civicloud.core.services import Services
from civicloud.pay.models import Bill, Refund
from civicloud.pay.providers import SandboxProvider


@pytest.fixture
def desk(core_services: Services) -> dict[str, Any]:
    """A biller with bills, and an operator holding ``pay_operator`` at its agency."""
    with core_services.db.unit_of_work() as session:
        agency = make_agency(session)
        biller = make_biller(session, tenant=agency)
        bills = make_bills(session, biller, count=3, account_number="0102030405")
        operator = make_member(session, core_services.passwords, home=agency, role="pay_operator")
        return {
            "biller": biller.id,
            "bills": [b.id for b in bills],
            "headers": operator.headers,
        }


def paid_payment(
    client: TestClient, sandbox: SandboxProvider, desk: dict[str, Any]
) -> dict[str, Any]:
    created = client.post(
        "/api/v1/pay/payments",
        json={
            "biller_id": str(desk["biller"]),
            "bill_ids": [str(desk["bills"][0])],
            "provider": "sandbox",
            "return_url": "/",
        },
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert created.status_code == 201, created.text
    payment: dict[str, Any] = created.json()
    sandbox.simulate(payment["trade_no"], "succeeded")
    return payment


def refund(client: TestClient, desk: dict[str, Any], payment_id: str, amount: Any, key: str) -> Any:
    return client.post(
        f"/api/v1/pay/payments/{payment_id}/refunds",
        json={"amount_fen": amount, "reason": "overcharged"},
        headers={**desk["headers"], "Idempotency-Key": key},
    )


def refunded_fen(services: Services, payment_id: str) -> int:
    with services.db.unit_of_work(write=False) as session:
        total = session.scalar(
            select(func.coalesce(func.sum(Refund.amount_fen), 0)).where(
                Refund.payment_id == uuid.UUID(payment_id), Refund.status == "succeeded"
            )
        )
    return int(total or 0)


def test_refunds_never_exceed_what_was_paid_and_repeat_by_key(
    client: TestClient, core_services: Services, sandbox: SandboxProvider, desk: dict[str, Any]
) -> None:
    payment = paid_payment(client, sandbox, desk)
    total = payment["amount_fen"]
    # a partial refund, then the same request again (same key): one refund
    first = refund(client, desk, payment["id"], total - 45, "r1")
    again = refund(client, desk, payment["id"], total - 45, "r1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    # more than what is left is refused and changes nothing
    over = refund(client, desk, payment["id"], 46, "r2")
    assert over.status_code == 409, over.text
    assert refunded_fen(core_services, payment["id"]) == total - 45
    # the rest is fine
    assert refund(client, desk, payment["id"], 45, "r3").status_code == 201
    assert refunded_fen(core_services, payment["id"]) == total


@pytest.mark.parametrize(
    "amount", [0, -100, 2**63, 2**70, 1.5, "100", None], ids=lambda a: f"amount={a!r}"
)
def test_bad_refund_amounts_are_clear_errors_and_change_nothing(
    client: TestClient,
    core_services: Services,
    sandbox: SandboxProvider,
    desk: dict[str, Any],
    amount: Any,
) -> None:
    payment = paid_payment(client, sandbox, desk)
    response = refund(client, desk, payment["id"], amount, uuid.uuid4().hex)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert refunded_fen(core_services, payment["id"]) == 0


@pytest.mark.parametrize(
    ("account", "status"),
    [
        ("12345", 422),
        ("0102030405' OR '1'='1", 422),
        ("x" * 65, 422),
        # Arabic-Indic digits are not "\d" (full-width ones are folded to ASCII first: see
        # test_input_edges_api.py)
        ("\u0660\u0661\u0660\u0662\u0660\u0663\u0660\u0664\u0660\u0665", 422),
    ],
)
def test_malformed_account_numbers_are_refused(
    client: TestClient, desk: dict[str, Any], account: str, status: int
) -> None:
    response = client.get(
        f"/api/v1/pay/public/billers/{desk['biller']}/bills", params={"account": account}
    )
    assert response.status_code == status, response.text
    assert response.json()["code"] in ("core.invalid_input",)


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ("bill_number,account_number\n".encode("gbk") + "张三".encode("gbk"), "core.invalid_input"),
        (b"\xff\xfe\x00\x00", "core.invalid_input"),
        (
            b"bill_number,account_number,payer_name,amount,period,due_date\n" + b"x" * 2_000_000,
            "core.payload_too_large",
        ),
    ],
    ids=["gbk", "binary", "oversized"],
)
def test_unreadable_or_oversized_bill_files_change_nothing(
    client: TestClient, core_services: Services, desk: dict[str, Any], content: bytes, code: str
) -> None:
    response = client.post(
        f"/api/v1/pay/billers/{desk['biller']}/bills.csv",
        content=content,
        headers={**desk["headers"], "Content-Type": "text/csv"},
    )
    assert response.json()["code"] == code, response.text
    with core_services.db.unit_of_work(write=False) as session:
        count = session.scalar(
            select(func.count()).select_from(Bill).where(Bill.biller_id == desk["biller"])
        )
    assert count == 3


def test_a_csv_with_bad_rows_names_each_line_and_imports_nothing(
    client: TestClient, desk: dict[str, Any]
) -> None:
    content = (
        "bill_number,account_number,payer_name,amount,period,due_date\n"
        f"G{uuid.uuid4().hex[:8]},0102030405,张三,10.00,2026-11,2026-12-31\n"
        f"H{uuid.uuid4().hex[:8]},12,李四,10.00,2026-11,2026-12-31\n"
        f"I{uuid.uuid4().hex[:8]},0102030405,王五,-3,2026-11,2026-12-31\n"
    ).encode()
    response = client.post(
        f"/api/v1/pay/billers/{desk['biller']}/bills.csv",
        content=content,
        headers={**desk["headers"], "Content-Type": "text/csv"},
    )
    assert response.status_code == 422
    assert [e["line"] for e in response.json()["errors"]] == [3, 4]
    partial = client.post(
        f"/api/v1/pay/billers/{desk['biller']}/bills.csv?partial=true",
        content=content,
        headers={**desk["headers"], "Content-Type": "text/csv"},
    )
    assert partial.status_code == 200
    assert (partial.json()["accepted"], partial.json()["refused"]) == (1, 2)


def test_ledger_receipt_and_settlement_after_a_payment(
    client: TestClient, sandbox: SandboxProvider, desk: dict[str, Any]
) -> None:
    payment = paid_payment(client, sandbox, desk)
    balances = client.get(
        "/api/v1/pay/ledger/balances",
        params={"biller_id": str(desk["biller"])},
        headers=desk["headers"],
    )
    assert balances.status_code == 200, balances.text
    payable = [b for b in balances.json() if b["code"] == f"payable:{desk['biller']}"]
    assert payable
    assert payable[0]["balance_fen"] == -payment["amount_fen"]
    journal = client.get("/api/v1/pay/ledger/journal", headers=desk["headers"])
    assert journal.status_code == 200
    # settling a day that has not ended yet is refused, and so is an ended day with nothing in
    # it (the payment is today's): nothing is settled by a click on an empty day
    today = client.post(
        f"/api/v1/pay/billers/{desk['biller']}/settlements",
        params={"date": "2999-01-01"},
        headers=desk["headers"],
    )
    assert today.status_code == 422, today.text
    past = client.post(
        f"/api/v1/pay/billers/{desk['biller']}/settlements",
        params={"date": "2026-01-01"},
        headers=desk["headers"],
    )
    assert past.status_code == 409, past.text
    assert past.json()["code"] == "pay.nothing_to_settle"
    listed = client.get(
        f"/api/v1/pay/billers/{desk['biller']}/settlements", headers=desk["headers"]
    )
    assert listed.status_code == 200, listed.text
    assert listed.json() == []


def test_a_receipt_verifies_and_a_forged_signature_does_not(
    client: TestClient, core_services: Services, sandbox: SandboxProvider, desk: dict[str, Any]
) -> None:
    from civicloud.pay.models import Payment, Receipt

    payment = paid_payment(client, sandbox, desk)
    with core_services.db.unit_of_work(write=False) as session:
        receipt = session.scalars(
            select(Receipt)
            .join(Payment, Payment.id == Receipt.payment_id)
            .where(Payment.trade_no == payment["trade_no"])
        ).one()
        number, signature = receipt.number, receipt.signature
    good = client.get(f"/api/v1/pay/public/receipts/{number}/verify")
    assert good.json()["status"] == "valid", good.text
    forged = client.get(
        f"/api/v1/pay/public/receipts/{number}/verify",
        params={"sig": signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")},
    )
    assert forged.json()["status"] == "tampered"
    unknown = client.get("/api/v1/pay/public/receipts/R19990101-NOTHING0/verify")
    assert unknown.json()["status"] == "unknown"


def test_refunds_are_reconciled_by_their_refund_number(
    client: TestClient, core_services: Services, sandbox: SandboxProvider, desk: dict[str, Any]
) -> None:
    from civicloud.pay.web.views import beijing_now

    # given a paid payment, refunded in part through the sandbox
    payment = paid_payment(client, sandbox, desk)
    made = refund(client, desk, payment["id"], 100, uuid.uuid4().hex)
    assert made.json()["status"] == "succeeded", made.text
    with core_services.db.unit_of_work() as session:
        reconciler = make_member(
            session,
            core_services.passwords,
            home=make_agency(session),
            role="pay_admin",
            platform=True,
        )
    # and the sandbox's statement of the day, plus a refund of the trade we never made
    day = beijing_now().date()
    stranger = f"RF{uuid.uuid4().hex[:30].upper()}"
    content = (
        sandbox.statement(day)
        + (
            f"{payment['trade_no']},SBXR,refund,45,{day.isoformat()}T12:00:00+08:00,{stranger}\n"
        ).encode()
    )
    # when it is imported
    imported = client.post(
        "/api/v1/pay/reconciliation/sandbox",
        params={"date": day.isoformat()},
        content=content,
        headers={**reconciler.headers, "Content-Type": "text/csv"},
    )
    assert imported.status_code == 200, imported.text
    # then our refund is matched by its number, and the stranger is a refund exception that
    # names its refund number
    items = client.get(
        "/api/v1/pay/reconciliation/items",
        params={"import_id": imported.json()["id"], "kind": "refund"},
        headers=reconciler.headers,
    )
    assert items.status_code == 200, items.text
    ours = [i for i in items.json() if i["trade_no"] == payment["trade_no"]]
    assert [
        (i["kind"], i["classification"], i["refund_no"], i["provider_amount_fen"], i["refund_id"])
        for i in ours
    ] == [("refund", "missing_ours", stranger, -45, None)]
    # and a kind that does not exist is a clear error
    odd = client.get(
        "/api/v1/pay/reconciliation/items", params={"kind": "fee"}, headers=reconciler.headers
    )
    assert odd.status_code == 422
