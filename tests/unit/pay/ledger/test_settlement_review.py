"""Settling is reviewed before it is made: a preview, a refusal of empty days and of values a bank
file cannot carry safely, a guard against changed figures, and the days still to settle."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM
from tests.factories.pay_money import make_payment
from tests.unit.pay.ledger.test_settlement import DAY, at

from civicloud.core.db import utcnow
from civicloud.pay import settlement
from civicloud.pay.errors import NothingToSettle, SettlementChanged, UnsafeBatchValue
from civicloud.pay.models import Biller, Settlement


def count_settlements(session: Session, biller: Biller) -> int:
    found = session.scalar(
        select(func.count()).select_from(Settlement).where(Settlement.biller_id == biller.id)
    )
    return int(found or 0)


def test_a_day_with_nothing_to_settle_is_refused(db_session: Session, biller: Biller) -> None:
    # given a day with no payment and no refund, when it is previewed or settled, then refused
    with pytest.raises(NothingToSettle, match="nothing to settle") as refused:
        settlement.settle_day(
            session=db_session, actor=SYSTEM, biller_id=biller.id, business_date=DAY
        )
    assert refused.value.params == {"day": DAY.isoformat()}
    with pytest.raises(NothingToSettle):
        settlement.preview_day(
            session=db_session, actor=SYSTEM, biller_id=biller.id, business_date=DAY
        )
    assert count_settlements(db_session, biller) == 0


def test_a_preview_shows_the_figures_and_the_payee_and_makes_nothing(
    db_session: Session, biller: Biller
) -> None:
    # given two payments on the day
    make_payment(db_session, biller, amount_fen=4_000, finished_at=at(DAY, 8))
    make_payment(db_session, biller, amount_fen=1_050, finished_at=at(DAY, 9))
    # when the day is previewed
    preview = settlement.preview_day(
        session=db_session, actor=SYSTEM, biller_id=biller.id, business_date=DAY
    )
    # then it shows the count, the total and who is paid, and nothing is settled
    assert (preview.figures.payment_count, preview.figures.net_fen) == (2, 5_050)
    assert preview.biller.settlement_account == biller.settlement_account
    assert preview.transfers
    assert preview.existing is None
    assert count_settlements(db_session, biller) == 0
    # when the figures change before the confirmation, then the confirmation is refused
    make_payment(db_session, biller, amount_fen=1, finished_at=at(DAY, 10))
    with pytest.raises(SettlementChanged) as changed:
        settlement.settle_day(
            session=db_session,
            actor=SYSTEM,
            biller_id=biller.id,
            business_date=DAY,
            expected_net_fen=5_050,
        )
    assert "CNY 50.50" in changed.value.detail
    # and the confirmed figures settle it
    made = settlement.settle_day(
        session=db_session,
        actor=SYSTEM,
        biller_id=biller.id,
        business_date=DAY,
        expected_net_fen=5_051,
    )
    assert made.net_fen == 5_051


@pytest.mark.parametrize(
    "name",
    [
        '=HYPERLINK("http://evil.example","点此")',
        "@SUM(A1)",
        "+86 1",
        "-2+3",
        "\tA",
        "a\r\nb",
        " =1+1",
        "\u3000=1+1",
        "大连;=1+1",
    ],
)
def test_a_payee_that_would_be_dangerous_in_the_bank_file_is_refused_not_altered(
    db_session: Session, biller: Biller, name: str
) -> None:
    # given a biller whose settlement account name would run as a formula in a spreadsheet
    biller.settlement_account_name = name
    make_payment(db_session, biller, amount_fen=4_000, finished_at=at(DAY, 8))
    # when its day is settled, then it is refused, naming the line and column, and nothing made
    with pytest.raises(UnsafeBatchValue) as refused:
        settlement.settle_day(
            session=db_session, actor=SYSTEM, biller_id=biller.id, business_date=DAY
        )
    assert refused.value.params["line"] == 2
    assert refused.value.params["column"] == "payee_account_name"
    assert count_settlements(db_session, biller) == 0


def test_the_days_still_to_settle_are_listed_until_settled(
    db_session: Session, biller: Biller
) -> None:
    # given payments on two ended days and today
    today = utcnow().astimezone(settlement.SHANGHAI).date()
    first, second = today - timedelta(days=3), today - timedelta(days=1)
    make_payment(db_session, biller, amount_fen=100, finished_at=at(first, 0, 30))
    make_payment(db_session, biller, amount_fen=200, finished_at=at(first, 23, 50))
    make_payment(db_session, biller, amount_fen=300, finished_at=at(second, 12))
    make_payment(db_session, biller, amount_fen=400, finished_at=utcnow())
    # when the days to settle are listed, then the two ended days are, in Beijing time
    waiting = settlement.unsettled_days(session=db_session, actor=SYSTEM, biller_ids=[biller.id])
    assert [(d.business_date, d.payment_count, d.net_fen) for d in waiting] == [
        (first, 2, 300),
        (second, 1, 300),
    ]
    # when one is settled, then it is no longer listed
    settlement.settle_day(
        session=db_session, actor=SYSTEM, biller_id=biller.id, business_date=first
    )
    waiting = settlement.unsettled_days(session=db_session, actor=SYSTEM, biller_ids=[biller.id])
    assert [d.business_date for d in waiting] == [second]
