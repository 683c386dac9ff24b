"""Daily settlement: the day's succeeded payments minus its refunds, once, as a bank batch file."""

from __future__ import annotations

import csv
import io
import threading
import uuid
from datetime import date, datetime, time, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM, make_tenant
from tests.factories.pay_money import (
    FakeProvider,
    make_biller,
    make_payment,
    member,
    problems_about,
)

from civicloud.core.audit import AuditRecord
from civicloud.core.db import utcnow
from civicloud.core.errors import InvalidInput, NotFound, PermissionDenied
from civicloud.core.services import Services
from civicloud.core.tenants import Tenant
from civicloud.pay import ledger, refunds, settlement
from civicloud.pay.models import Biller, JournalEntry, Payment, Refund
from civicloud.pay.settlement import SHANGHAI

DAY = date(2025, 3, 14)


def at(day: date, hour: int, minute: int = 0, micro: int = 0) -> datetime:
    """A moment of ``day`` on the Shanghai clock."""
    return datetime.combine(day, time(hour, minute, 0, micro), tzinfo=SHANGHAI)


def _refund_on(
    session: Session, payment: Payment, provider: FakeProvider, amount: int, when: datetime
) -> Refund:
    refund = refunds.request_refund(
        session=session,
        actor=SYSTEM,
        payment_id=payment.id,
        amount_fen=amount,
        reason="test",
        idempotency_key=uuid.uuid4().hex,
        provider=provider,
    )
    refund.finished_at = when
    session.flush()
    return refund


def _rows(batch: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(batch, newline="")))


@pytest.mark.parametrize(
    ("fen", "text"),
    [(0, "0.00"), (1, "0.01"), (99, "0.99"), (100, "1.00"), (123_456, "1234.56"),
     (2**63 - 1, "92233720368547758.07"), (-4_000, "-40.00")],
)  # fmt: skip
def test_yuan_has_exactly_two_decimals(fen: int, text: str) -> None:
    # when fen are written as yuan, then exactly, with two decimals
    assert settlement.yuan(fen) == text


def test_the_day_runs_midnight_to_midnight_in_china_standard_time() -> None:
    # when the bounds of a business day are taken, then they are 16:00 UTC the day before to 16:00
    start, end = settlement.business_day_bounds(DAY)
    assert start.isoformat() == "2025-03-13T16:00:00+00:00"
    assert end.isoformat() == "2025-03-14T16:00:00+00:00"


def test_a_day_is_settled_as_payments_minus_refunds_in_a_bank_batch(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given payments at the first and the last moment of the day, and just outside it
    p = provider.name
    first = make_payment(db_session, biller, amount_fen=10_000, provider=p, finished_at=at(DAY, 0))
    make_payment(
        db_session, biller, amount_fen=2_345, provider=p, finished_at=at(DAY, 23, 59, 999_999)
    )
    after = make_payment(
        db_session, biller, amount_fen=99_999, provider=p, finished_at=at(DAY + timedelta(1), 0)
    )
    make_payment(
        db_session,
        biller,
        amount_fen=500,
        provider=p,
        finished_at=at(DAY, 0) - timedelta(microseconds=1),
    )
    # and payments of the day that did not succeed, one of them refunded automatically
    make_payment(db_session, biller, amount_fen=700, status="failed", finished_at=at(DAY, 9))
    late = make_payment(
        db_session, biller, amount_fen=800, status="expired", provider=p, finished_at=at(DAY, 10)
    )
    automatic = refunds.refund_automatically(
        session=db_session, payment=late, provider=provider, reason="late"
    )
    automatic.finished_at = at(DAY, 11)
    # and a refund that day, and one the next day
    _refund_on(db_session, first, provider, 1_000, at(DAY, 12))
    _refund_on(db_session, after, provider, 200, at(DAY + timedelta(1), 1))
    # when the day is settled
    made = settlement.settle_day(
        session=db_session, actor=SYSTEM, biller_id=biller.id, business_date=DAY
    )
    # then it holds the day's two payments less its one refund
    assert (made.paid_fen, made.payment_count) == (12_345, 2)
    assert (made.refunded_fen, made.refund_count) == (1_000, 1)
    assert made.net_fen == 11_345
    # and the batch file pays that to the biller's account, with a trailer that adds up
    header, transfer, trailer = _rows(made.batch_file)
    assert header == list(settlement.HEADER)
    row = dict(zip(header, transfer, strict=True))
    batch_id = settlement.batch_id_for(biller.id, DAY)
    assert row["batch_id"] == batch_id
    assert row["line_no"] == "1"
    assert (row["payee_bank"], row["payee_account"], row["payee_account_name"]) == (
        biller.settlement_bank,
        biller.settlement_account,
        biller.settlement_account_name,
    )
    assert row["payer_account"] == settlement.DEFAULT_PAYER.account
    assert (row["amount"], row["currency"]) == ("113.45", "CNY")
    assert "2025-03-14" in row["purpose"]
    assert trailer == ["TRAILER", batch_id, "1", "113.45"]
    assert made.batch_file.endswith("\r\n")
    # and the payout moved from the biller's payable to its settlement account, once
    entry = db_session.scalars(
        select(JournalEntry).where(JournalEntry.reference == str(made.id))
    ).one()
    assert entry.kind == "settlement"
    [view] = [
        e for e in ledger.journal(session=db_session, actor=SYSTEM, limit=50) if e.id == entry.id
    ]
    assert view.lines == (
        ledger.JournalLineView(f"payable:{biller.id}", f"settlement:{biller.id}", 11_345, "CNY"),
    )
    assert problems_about(ledger.check_ledger(session=db_session), [made.id]) == []


def test_settling_a_day_again_returns_the_first_settlement(
    db_session: Session, biller: Biller
) -> None:
    # given a settled day
    make_payment(db_session, biller, amount_fen=4_000, finished_at=at(DAY, 8))
    made = settlement.settle_day(
        session=db_session, actor=SYSTEM, biller_id=biller.id, business_date=DAY
    )
    # and a payment of that day that turned up after it was settled
    make_payment(db_session, biller, amount_fen=1, finished_at=at(DAY, 9))
    # when it is settled again
    again = settlement.settle_day(
        session=db_session, actor=SYSTEM, biller_id=biller.id, business_date=DAY
    )
    # then it is the same settlement, posted and audited once
    assert again.id == made.id
    assert again.net_fen == 4_000
    posted = db_session.scalar(
        select(func.count()).select_from(JournalEntry).where(JournalEntry.reference == str(made.id))
    )
    assert posted == 1
    audits = db_session.scalar(
        select(func.count())
        .select_from(AuditRecord)
        .where(
            AuditRecord.action == "pay.settlement.create", AuditRecord.tenant_id == biller.tenant_id
        )
    )
    assert audits == 1


def test_a_day_of_more_refunds_than_payments_transfers_nothing(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a payment of an earlier day, refunded in part on the settled day
    paid = make_payment(
        db_session,
        biller,
        amount_fen=5_000,
        provider=provider.name,
        finished_at=at(DAY - timedelta(3), 9),
    )
    _refund_on(db_session, paid, provider, 4_000, at(DAY, 9))
    # when the day is settled
    made = settlement.settle_day(
        session=db_session, actor=SYSTEM, biller_id=biller.id, business_date=DAY
    )
    # then its net is negative, the batch has no transfer, and nothing is posted
    assert (made.paid_fen, made.refunded_fen, made.net_fen) == (0, 4_000, -4_000)
    _header, trailer = _rows(made.batch_file)
    assert trailer[2:] == ["0", "0.00"]
    posted = db_session.scalar(
        select(func.count()).select_from(JournalEntry).where(JournalEntry.reference == str(made.id))
    )
    assert posted == 0
    assert problems_about(ledger.check_ledger(session=db_session), [made.id]) == []


def test_a_day_that_has_not_ended_is_not_settled(db_session: Session, biller: Biller) -> None:
    # given today on the Shanghai clock, when it is settled, then that is refused
    today = utcnow().astimezone(SHANGHAI).date()
    with pytest.raises(InvalidInput, match="not ended"):
        settlement.settle_day(
            session=db_session, actor=SYSTEM, biller_id=biller.id, business_date=today
        )
    with pytest.raises(InvalidInput):
        settlement.settle_day(
            session=db_session,
            actor=SYSTEM,
            biller_id=biller.id,
            business_date=at(DAY, 0),
        )


def test_settling_needs_pay_settlement_at_the_billers_tenant(db_session: Session) -> None:
    # given a biller of tenant A, and members of A and of a sibling B
    root = make_tenant(db_session)
    a, b = make_tenant(db_session, parent=root), make_tenant(db_session, parent=root)
    biller = make_biller(db_session, tenant=a)
    make_payment(db_session, biller, amount_fen=300, finished_at=at(DAY, 8))

    def settle_as(tenant: Tenant, permission: str) -> None:
        settlement.settle_day(
            session=db_session,
            actor=member(tenant, permission),
            biller_id=biller.id,
            business_date=DAY,
        )

    # when they settle, then B does not see the biller and A needs the permission
    with pytest.raises(NotFound):
        settle_as(b, "pay.settlement")
    with pytest.raises(PermissionDenied):
        settle_as(a, "pay.ledger.read")
    settle_as(a, "pay.settlement")
    found = settlement.get_settlement(
        session=db_session,
        actor=member(a, "pay.settlement"),
        biller_id=biller.id,
        business_date=DAY,
    )
    assert found is not None
    assert [
        s.id
        for s in settlement.list_settlements(session=db_session, actor=SYSTEM, biller_id=biller.id)
    ] == [found.id]


def test_concurrent_settlements_of_one_day_make_one(core_services: Services) -> None:
    # given a committed biller with a payment on the day
    db = core_services.db
    with db.unit_of_work() as session:
        biller = make_biller(session)
        make_payment(session, biller, amount_fen=600, finished_at=at(DAY, 8))
    made: list[uuid.UUID] = []
    barrier = threading.Barrier(4)

    def settle() -> None:
        barrier.wait()
        with db.unit_of_work() as session:
            made.append(
                settlement.settle_day(
                    session=session, actor=SYSTEM, biller_id=biller.id, business_date=DAY
                ).id
            )

    # when four transactions settle the day at once
    threads = [threading.Thread(target=settle) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then they all got the one settlement, posted once
    assert len(made) == 4
    assert len(set(made)) == 1
    with db.unit_of_work(write=False) as session:
        posted = session.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.reference == str(made[0]))
        )
        assert posted == 1


def test_the_configured_collection_account_is_the_payer() -> None:
    from civicloud.pay.settings import PaySettings
    from civicloud.pay.settlement import PayerAccount, payer_from

    settings = PaySettings(
        settlement_bank="中国工商银行大连分行",
        settlement_account="6222020200112233445",
        settlement_account_name="大连市财政局代收款专户",
    )
    assert payer_from(settings) == PayerAccount(
        bank="中国工商银行大连分行",
        account="6222020200112233445",
        name="大连市财政局代收款专户",
    )
