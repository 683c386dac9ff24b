"""Traffic fines carry their decision (number, time, place, offence) from import to the
citizen's bills page and the signed receipt; an empty account field asks for the number."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.factories.pay import bill_row, make_biller, make_bills, unlimited_payments
from tests.functional.web.helpers import HTML, text_of

from civicloud.app import create_app
from civicloud.core.services import Services
from civicloud.pay import receipts
from civicloud.pay import web as pay_web
from civicloud.pay.models import Bill, Payment, Receipt
from civicloud.pay.payments import PayContext
from civicloud.pay.providers import SandboxProvider

BASE_URL = "https://testserver"
PLATE = "辽B7K2M9"
DECISION: dict[str, Any] = {
    "decision_number": "2102261105000001",
    "offence_time": "2026-11-03T08:42:00+08:00",
    "place": "大连市中山区人民路与港湾街交叉口",
    "offence": "驾驶机动车违反道路交通信号灯通行",
    "offence_code": "1625",
    "points": 6,
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
def web(app: FastAPI) -> Iterator[TestClient]:
    client = TestClient(app, base_url=BASE_URL, headers=HTML)
    yield client
    client.close()


@pytest.fixture
def fines(core_services: Services) -> tuple[uuid.UUID, uuid.UUID]:
    """A traffic police biller and one open fine of 辽B7K2M9: (biller id, bill id)."""
    with core_services.db.unit_of_work() as session:
        biller = make_biller(
            session,
            code=f"fines-{uuid.uuid4().hex[:8]}",
            name_zh="大连市公安局交通警察支队",
            name_en="Dalian Traffic Police",
            category="fine",
            account_pattern=r"辽B[A-Z0-9]{5}",
        )
        bill = make_bills(
            session,
            biller,
            account_number=PLATE,
            amount_fen=20_000,
            details=DECISION,
            late_fee_rule=None,
        )[0]
        return biller.id, bill.id


def test_a_fine_is_imported_with_its_decision_and_refused_without(
    core_services: Services, fines: tuple[uuid.UUID, uuid.UUID]
) -> None:
    biller_id, bill_id = fines
    with core_services.db.unit_of_work(write=False) as session:
        stored = session.get(Bill, bill_id)
        assert stored is not None
        assert stored.details == DECISION
    # a fine without its decision, with a bad one, and a water bill with one are refused
    from tests.factories.core import SYSTEM

    from civicloud.pay import billing

    with core_services.db.unit_of_work() as session:
        water = make_biller(session)
        report = billing.import_bills(
            session=session,
            actor=SYSTEM,
            biller_id=biller_id,
            rows=[
                bill_row(account_number=PLATE),
                bill_row(account_number=PLATE, details={**DECISION, "place": "人民路\u202e"}),
                bill_row(
                    account_number=PLATE, details={**DECISION, "offence_time": "2026-11-03T08:42"}
                ),
                bill_row(account_number=PLATE, details={**DECISION, "points": 13}),
            ],
            partial=True,
        )
        assert report.accepted == 0
        reasons = [e.reason for e in report.errors]
        assert "needs its details" in reasons[0]
        assert reasons[1].startswith("details.place")
        assert reasons[2].startswith("details.offence_time")
        assert reasons[3].startswith("details.points")
        refused = billing.import_bills(
            session=session,
            actor=SYSTEM,
            biller_id=water.id,
            rows=[bill_row(details=DECISION)],
            partial=True,
        )
        assert "carry no details" in refused.errors[0].reason


def test_a_fine_is_imported_from_a_csv_with_its_decision_columns(
    core_services: Services, fines: tuple[uuid.UUID, uuid.UUID]
) -> None:
    from tests.factories.core import SYSTEM

    from civicloud.pay import billing

    biller_id, _ = fines
    number = f"F{uuid.uuid4().hex[:10]}"
    csv = (
        "bill_number,account_number,payer_name,amount,period,due_date,"
        "decision_number,offence_time,place,offence,offence_code,points\n"
        f"{number},辽b 7k2m9,赵军,200.00,2026-11,2026-11-20,2102261105000002,"
        "2026-11-04T18:05:00+08:00,大连市西岗区黄河路与长春路交叉口,机动车违反禁止标线指示,1345,3\n"
    )
    with core_services.db.unit_of_work() as session:
        report = billing.import_bills_csv(
            session=session, actor=SYSTEM, biller_id=biller_id, content=csv.encode()
        )
        assert report.accepted == 1, report
        stored = session.scalars(select(Bill).where(Bill.bill_number == number)).one()
        assert stored.account_number == PLATE  # as the biller writes plates
        assert stored.details is not None
        assert stored.details["points"] == 3
        assert stored.details["offence"] == "机动车违反禁止标线指示"


@pytest.mark.parametrize(
    ("language", "shown", "not_shown"),
    [
        (
            "zh",
            [
                "驾驶机动车违反道路交通信号灯通行",
                "违法时间",
                "2026-11-03 08:42",
                "违法地点",
                "大连市中山区人民路与港湾街交叉口",
                "决定书编号",
                "2102261105000001",
                "记分",
                "罚款金额",
                "¥200.00",
            ],
            ["账期", "滞纳金"],
        ),
        (
            "en",
            ["Offence time", "Offence place", "Decision number", "Penalty points", "Fine amount"],
            ["Period", "Late fee"],
        ),
    ],
)
def test_the_bills_page_shows_a_fine_as_a_fine(
    web: TestClient,
    fines: tuple[uuid.UUID, uuid.UUID],
    language: str,
    shown: list[str],
    not_shown: list[str],
) -> None:
    biller_id, _ = fines
    # when a citizen looks up the plate as they type it (lower case, full width)
    page = web.get(
        f"/pay/billers/{biller_id}/bills",
        params={"account": "辽b\uff17\uff2b\uff12\uff2d\uff19", "lang": language},
    )
    assert page.status_code == 200, page.text
    listing = text_of(section(page.text, '<ul class="pay-bill-list">', "</ul>"))
    # then the fine shows its decision, and none of a utility bill's fields
    for words in shown:
        assert words in listing, words
    for words in not_shown:
        assert words not in listing, words


def section(html: str, start: str, end: str) -> str:
    """The part of ``html`` from ``start`` to the next ``end``."""
    begin = html.index(start)
    return html[begin : html.index(end, begin)]


@pytest.mark.parametrize(
    ("category", "language", "asked"),
    [
        ("water", "zh", "请输入户号"),
        ("water", "en", "Enter the account number"),
        ("fine", "zh", "请输入车牌号码"),
        ("fine", "en", "Enter the licence plate number"),
    ],
)
def test_an_empty_account_field_asks_for_the_number_not_its_format(
    web: TestClient, core_services: Services, category: str, language: str, asked: str
) -> None:
    with core_services.db.unit_of_work() as session:
        biller = make_biller(
            session,
            category=category,
            account_pattern=r"辽B[A-Z0-9]{5}" if category == "fine" else r"\d{10}",
        )
    for blank in ("", "   ", "\u3000"):
        page = web.get(
            f"/pay/billers/{biller.id}/bills", params={"account": blank, "lang": language}
        )
        assert page.status_code == 422
        error = text_of(section(page.text, '<p class="field-error"', "</p>"))
        assert asked in error
        assert "格式" not in error
        assert "not an account number" not in error


def test_a_paid_fine_s_receipt_signs_and_shows_its_decision(
    web: TestClient,
    core_services: Services,
    app: FastAPI,
    fines: tuple[uuid.UUID, uuid.UUID],
) -> None:
    biller_id, bill_id = fines
    sandbox = app.state.services.context("pay", PayContext).providers["sandbox"]
    assert isinstance(sandbox, SandboxProvider)
    # given a paid fine
    created = web.post(
        "/api/v1/pay/payments",
        json={
            "biller_id": str(biller_id),
            "bill_ids": [str(bill_id)],
            "provider": "sandbox",
            "return_url": "/",
        },
        headers={"Idempotency-Key": uuid.uuid4().hex, "Accept": "application/json"},
    )
    assert created.status_code == 201, created.text
    sandbox.simulate(created.json()["trade_no"], "succeeded")
    with core_services.db.unit_of_work(write=False) as session:
        receipt = session.scalars(
            select(Receipt)
            .join(Payment, Payment.id == Receipt.payment_id)
            .where(Payment.trade_no == created.json()["trade_no"])
        ).one()
        number = receipt.number
        # then its signed body carries the decision, and the signature covers it
        line = json.loads(receipt.body)["bills"][0]
        assert line["details"] == DECISION
    # and the receipt shows it, in Chinese and in English, and prints as a PDF
    zh = text_of(web.get(f"/pay/receipts/{number}", params={"lang": "zh"}).text)
    for words in (
        "违法时间",
        "2026-11-03 08:42",
        "违法行为",
        "驾驶机动车违反道路交通信号灯通行",
        "决定书编号",
        "2102261105000001",
    ):
        assert words in zh, words
    assert "账期" not in zh
    en = text_of(web.get(f"/pay/receipts/{number}", params={"lang": "en"}).text)
    for words in ("Offence time", "Offence", "Place", "Decision no."):
        assert words in en, words
    pdf = web.get(f"/pay/receipts/{number}.pdf")
    assert pdf.content.startswith(b"%PDF")
    verified = web.get(
        f"/api/v1/pay/public/receipts/{number}/verify", headers={"Accept": "application/json"}
    )
    assert verified.json()["status"] == "valid"
    assert receipts.RECEIPT_FORMAT
