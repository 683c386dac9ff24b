"""Publishing bills and the citizens' look-up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM
from tests.factories.pay import bill_row, make_biller, make_bills, make_pending_payment

from civicloud.core.db import utcnow
from civicloud.core.errors import InvalidInput
from civicloud.pay import billing
from civicloud.pay.errors import BillAlreadyPaid, BillBeingPaid, ImportRejected
from civicloud.pay.models import Bill, PaymentBill
from civicloud.pay.schemas import BillAmend


def _count(session: Session, biller_id: object) -> int:
    return (
        session.scalar(select(func.count()).select_from(Bill).where(Bill.biller_id == biller_id))
        or 0
    )


def test_a_batch_with_a_bad_row_changes_nothing_and_names_each_bad_line(
    db_session: Session,
) -> None:
    # given a biller and a batch with two bad rows among good ones
    biller = make_biller(db_session)
    rows = [
        bill_row(),
        bill_row(account_number="12AB"),
        bill_row(),
        bill_row(amount_fen=-5),
    ]
    # when it is imported without partial
    with pytest.raises(ImportRejected) as refused:
        billing.import_bills(session=db_session, actor=SYSTEM, biller_id=biller.id, rows=rows)
    # then nothing went in and each bad line is named with its reason
    errors = refused.value.extra["errors"]
    assert [e["line"] for e in errors] == [2, 4]
    assert "wrong format" in errors[0]["reason"]
    assert "amount_fen" in errors[1]["reason"]
    assert _count(db_session, biller.id) == 0


def test_partial_import_takes_the_good_rows(db_session: Session) -> None:
    biller = make_biller(db_session)
    rows = [bill_row(), bill_row(payer_name=""), bill_row()]
    report = billing.import_bills(
        session=db_session, actor=SYSTEM, biller_id=biller.id, rows=rows, partial=True
    )
    assert (report.accepted, report.refused, report.applied) == (2, 1, True)
    db_session.flush()
    assert _count(db_session, biller.id) == 2


def test_a_bill_number_cannot_be_published_twice(db_session: Session) -> None:
    biller = make_biller(db_session)
    row = bill_row()
    billing.import_bills(session=db_session, actor=SYSTEM, biller_id=biller.id, rows=[row])
    db_session.flush()
    with pytest.raises(ImportRejected) as refused:
        billing.import_bills(
            session=db_session, actor=SYSTEM, biller_id=biller.id, rows=[bill_row(), dict(row)]
        )
    assert refused.value.extra["errors"][0]["reason"] == "bill_number is published already"
    repeated = [bill_row(bill_number="X1"), bill_row(bill_number="X1")]
    with pytest.raises(ImportRejected) as twice:
        billing.import_bills(session=db_session, actor=SYSTEM, biller_id=biller.id, rows=repeated)
    assert twice.value.extra["errors"][0] == {
        "line": 2,
        "bill_number": "X1",
        "code": "pay.import.repeated",
        "reason": "bill_number repeats line 1",
        "params": {"first_line": 1},
    }


def test_csv_amounts_are_exact_and_lines_count_the_header() -> None:
    content = (
        "bill_number,account_number,payer_name,amount,period,due_date\n"
        "A1,0102030405,张三,123.45,2026-10,2026-12-01\n"
        "A2,0102030405,李四,0.1,2026-10,2026-12-01\n"
        "A3,0102030405,王五,1.005,2026-10,2026-12-01\n"
    ).encode()
    rows = billing.parse_csv(content)
    assert [r["amount_fen"] for r in rows] == [12345, 10, "1.005"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"bill_number,amount\nA,1\n", "the header lacks"),
        ("bill_number,account_number\n".encode("utf-16"), "not UTF-8"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
    ],
)
def test_unreadable_files_are_refused_in_one_clear_line(content: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        billing.parse_csv(content)


def test_lookup_masks_the_payer_and_refuses_malformed_accounts(db_session: Session) -> None:
    # given an open bill and a paid one for the same account
    biller = make_biller(db_session)
    bills = make_bills(db_session, biller, count=2, account_number="1112223334")
    bills[1].status = "paid"
    db_session.flush()
    # when a citizen looks the account up
    found = billing.lookup_open_bills(
        session=db_session, biller_id=biller.id, account_number="1112223334", today=utcnow().date()
    )
    # then only the open bill shows, the payer's name masked
    assert [b.bill_number for b in found] == [bills[0].bill_number]
    assert found[0].payer_name_masked == "张*丰"
    with pytest.raises(InvalidInput):
        billing.lookup_open_bills(
            session=db_session,
            biller_id=biller.id,
            account_number="1' OR 1=1",
            today=utcnow().date(),
        )


@given(st.text(min_size=0, max_size=20))
def test_a_masked_name_keeps_at_most_its_first_and_last_character(name: str) -> None:
    masked = billing.mask_name(name)
    stripped = name.strip()
    assert "*" in masked
    if len(stripped) >= 3:
        assert masked[0] == stripped[0]
        assert masked[-1] == stripped[-1]
        assert set(masked[1:-1]) == {"*"}
        assert len(masked) == len(stripped)


def test_the_late_fee_grows_by_day_and_stops_at_its_cap(db_session: Session) -> None:
    biller = make_biller(db_session)
    due = utcnow().date()
    (bill,) = make_bills(
        db_session,
        biller,
        due_date=due.isoformat(),
        amount_fen=10_000,
        late_fee_rule={"per_day_basis_points": 5, "cap_fen": 30},
    )
    assert billing.late_fee_fen(bill, due) == 0
    assert billing.late_fee_fen(bill, due + timedelta(days=4)) == 20
    assert billing.late_fee_fen(bill, due + timedelta(days=400)) == 30


def test_a_bill_being_paid_cannot_be_cancelled_or_amended(db_session: Session) -> None:
    biller = make_biller(db_session)
    (bill,) = make_bills(db_session, biller)
    make_pending_payment(db_session, biller, [bill])
    with pytest.raises(BillBeingPaid):
        billing.cancel_bill(session=db_session, actor=SYSTEM, bill_id=bill.id)
    with pytest.raises(BillBeingPaid):
        billing.amend_bill(
            session=db_session, actor=SYSTEM, bill_id=bill.id, data=BillAmend(amount_fen=1)
        )
    # once the payment ends, the bill can change again
    db_session.execute(PaymentBill.__table__.update().values(active=False))
    assert (
        billing.cancel_bill(session=db_session, actor=SYSTEM, bill_id=bill.id).status == "cancelled"
    )
    with pytest.raises(BillAlreadyPaid):
        billing.cancel_bill(session=db_session, actor=SYSTEM, bill_id=bill.id)
