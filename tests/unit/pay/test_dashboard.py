"""The operator's day at a glance: takings, success rate, providers and refunds of one day in the
installation's zone, over the billers the actor may read."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session
from tests.factories.core import make_tenant, unique
from tests.factories.pay_money import make_biller, make_payment, member

from civicloud.core.errors import PermissionDenied
from civicloud.core.tenants import Tenant
from civicloud.pay import dashboard
from civicloud.pay.models import Biller, Payment, Refund

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: A day no other test uses, so that nothing else is counted even where scopes would overlap.
DAY = date(2031, 5, 17)
READ = "pay.payment.read"


def at(day: date, hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    """A moment of ``day`` on the Shanghai clock."""
    return datetime.combine(day, time(hour, minute, second, micro), tzinfo=SHANGHAI)


def refund_of(
    session: Session,
    payment: Payment,
    amount_fen: int,
    finished_at: datetime | None,
    *,
    status: str = "succeeded",
    origin: str = "operator",
) -> Refund:
    refund = Refund(
        id=uuid.uuid4(),
        refund_no=f"R{uuid.uuid4().hex[:20]}",
        payment_id=payment.id,
        amount_fen=amount_fen,
        currency="CNY",
        idempotency_key=unique("refund"),
        request_hash="0" * 64,
        reason="test",
        origin=origin,
        status=status,
        finished_at=finished_at,
    )
    session.add(refund)
    session.flush()
    return refund


def home_of(session: Session, biller: Biller) -> Tenant:
    tenant = session.get(Tenant, biller.tenant_id)
    assert tenant is not None
    return tenant


def test_payments_fall_in_the_hour_they_ended_and_the_day_runs_midnight_to_midnight(
    db_session: Session,
) -> None:
    # given payments ending on both sides of the day's midnights and of an hour's start
    biller = make_biller(db_session)
    for amount, moment in (
        (1, at(DAY, 0) - timedelta(microseconds=1)),  # the day before, 23:59:59.999999
        (10, at(DAY, 0)),  # 00:00: the day's first hour
        (100, at(DAY, 8, 59, 59, 999_999)),
        (1_000, at(DAY, 9)),
        (10_000, at(DAY, 23, 59, 59)),
        (100_000, at(DAY + timedelta(days=1), 0)),  # the next day
    ):
        make_payment(db_session, biller, amount_fen=amount, finished_at=moment, post=False)
    actor = member(home_of(db_session, biller), READ)
    # when the day's dashboard is read in Shanghai's zone
    day = dashboard.day_dashboard(session=db_session, actor=actor, day=DAY, zone=SHANGHAI)
    # then only the day's payments count, each in the hour it ended
    assert (day.payments, day.paid_fen, day.takings_fen) == (4, 11_110, 11_110)
    by_hour = {h.starts.hour: h.takings_fen for h in day.hours if h.takings_fen}
    assert by_hour == {0: 10, 8: 100, 9: 1_000, 23: 10_000}
    assert len(day.hours) == 24
    assert day.hours[0].starts == at(DAY, 0)
    # and the last 7 days show the day before and the day itself
    assert [d.day for d in day.last_days] == [DAY - timedelta(days=n) for n in range(6, -1, -1)]
    assert [d.takings_fen for d in day.last_days][-2:] == [1, 11_110]


def test_a_day_in_the_zone_starts_at_16_00_utc_the_day_before() -> None:
    # when Shanghai's day is bounded, then it is 16:00 UTC to 16:00 UTC
    start, end = dashboard.day_bounds(DAY, SHANGHAI)
    assert (start.isoformat(), end.isoformat()) == (
        "2031-05-16T16:00:00+00:00",
        "2031-05-17T16:00:00+00:00",
    )
    # and today is the zone's date: 17:00 UTC is already tomorrow there
    assert dashboard.today_in(SHANGHAI, datetime(2031, 5, 16, 17, tzinfo=UTC)) == DAY


def test_a_day_the_clock_springs_forward_has_23_hours_each_labelled_by_its_local_start(
    db_session: Session,
) -> None:
    # given a payment at 03:30 in Berlin on the day its clocks skip 02:00
    berlin = ZoneInfo("Europe/Berlin")
    spring = date(2031, 3, 30)
    biller = make_biller(db_session)
    make_payment(
        db_session,
        biller,
        amount_fen=700,
        finished_at=datetime.combine(spring, time(3, 30), tzinfo=berlin),
        post=False,
    )
    actor = member(home_of(db_session, biller), READ)
    # when that day's dashboard is read in Berlin's zone
    day = dashboard.day_dashboard(session=db_session, actor=actor, day=spring, zone=berlin)
    # then the day has 23 hours, 02:00 is not among them, and the payment is in 03:00's
    labels = [h.starts.strftime("%H:%M") for h in day.hours]
    assert len(labels) == 23
    assert "02:00" not in labels
    assert [h.starts.strftime("%H:%M") for h in day.hours if h.takings_fen] == ["03:00"]


def test_refunds_that_succeeded_on_the_day_are_taken_off_whichever_day_was_paid(
    db_session: Session,
) -> None:
    # given a payment of the day before and one of the day, both through Alipay
    biller = make_biller(db_session)
    before = make_payment(
        db_session,
        biller,
        amount_fen=5_000,
        provider="alipay",
        finished_at=at(DAY - timedelta(days=1), 12),
        post=False,
    )
    today = make_payment(
        db_session, biller, amount_fen=3_000, provider="alipay", finished_at=at(DAY, 10)
    )
    # and refunds: two that succeeded on the day, and others that do not count
    refund_of(db_session, before, 2_000, at(DAY, 10, 30))
    refund_of(db_session, today, 500, at(DAY, 11))
    refund_of(db_session, today, 100, at(DAY, 11), status="failed")
    refund_of(db_session, today, 100, None, status="pending")
    refund_of(db_session, today, 300, at(DAY, 11), origin="automatic")
    refund_of(db_session, today, 400, at(DAY + timedelta(days=1), 1))
    actor = member(home_of(db_session, biller), READ)
    # when the day's dashboard is read
    day = dashboard.day_dashboard(session=db_session, actor=actor, day=DAY, zone=SHANGHAI)
    # then the day's takings are its payments minus the refunds that succeeded on it
    assert (day.paid_fen, day.refunds, day.refunded_fen) == (3_000, 2, 2_500)
    assert day.takings_fen == 500
    # and the hour of 10:00 is negative: it refunded more than it took
    assert {h.starts.hour: h.takings_fen for h in day.hours if h.takings_fen} == {
        10: 1_000,
        11: -500,
    }
    # and Alipay's share shows it too
    (alipay,) = day.providers
    assert (alipay.provider, alipay.payments, alipay.paid_fen, alipay.refunded_fen) == (
        "alipay",
        1,
        3_000,
        2_500,
    )
    assert [d.takings_fen for d in day.last_days][-2:] == [5_000, 500]


def test_the_success_rate_counts_succeeded_failed_and_expired_payments_of_the_day(
    db_session: Session,
) -> None:
    # given the day's payments: three succeeded (two providers), one failed, one expired,
    # one replaced by its payer, one still in flight
    biller = make_biller(db_session)
    for provider in ("alipay", "alipay", "wechatpay"):
        make_payment(db_session, biller, provider=provider, finished_at=at(DAY, 9), post=False)
    for status in ("failed", "expired", "superseded"):
        make_payment(db_session, biller, status=status, finished_at=at(DAY, 9), post=False)
    make_payment(db_session, biller, status="pending", post=False)
    actor = member(home_of(db_session, biller), READ)
    # when the day's dashboard is read
    day = dashboard.day_dashboard(session=db_session, actor=actor, day=DAY, zone=SHANGHAI)
    # then three of five attempts succeeded, and each provider has its payments
    assert (day.payments, day.failed, day.expired, day.attempts) == (3, 1, 1, 5)
    assert day.success_rate == pytest.approx(0.6)
    assert [(p.provider, p.payments) for p in day.providers] == [("alipay", 2), ("wechatpay", 1)]


def test_only_the_billers_the_actor_may_read_are_counted(db_session: Session) -> None:
    # given two tenants' billers paid on the day, and an actor who reads one tenant's payments
    ours, theirs = make_biller(db_session), make_biller(db_session)
    make_payment(db_session, ours, amount_fen=1_200, finished_at=at(DAY, 9), post=False)
    make_payment(db_session, theirs, amount_fen=9_900, finished_at=at(DAY, 9), post=False)
    actor = member(home_of(db_session, ours), READ)
    # when the actor reads the day's dashboard
    day = dashboard.day_dashboard(session=db_session, actor=actor, day=DAY, zone=SHANGHAI)
    # then only its own tenant's payment is counted
    assert (day.payments, day.paid_fen) == (1, 1_200)
    # and a permission held elsewhere is not this one
    other = member(home_of(db_session, ours), "pay.biller.read")
    with pytest.raises(PermissionDenied):
        dashboard.day_dashboard(session=db_session, actor=other, day=DAY, zone=SHANGHAI)


def test_an_empty_day_is_zeros_with_no_success_rate(db_session: Session) -> None:
    # given an actor whose tenant has no payment at all
    actor = member(make_tenant(db_session), READ)
    # when it reads a day's dashboard
    day = dashboard.day_dashboard(session=db_session, actor=actor, day=DAY, zone=SHANGHAI)
    # then everything is zero, there is no rate, and the hours and days are still there
    assert (day.payments, day.takings_fen, day.refunds, day.attempts) == (0, 0, 0, 0)
    assert day.success_rate is None
    assert day.providers == []
    assert len(day.hours) == 24
    assert all(h.takings_fen == 0 for h in day.hours)
    assert [d.takings_fen for d in day.last_days] == [0] * 7


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    offsets=st.lists(
        st.integers(min_value=-36 * 3600, max_value=60 * 3600), min_size=1, max_size=8
    ),
)
def test_every_payment_of_the_day_is_in_the_hour_elapsed_since_midnight(
    savepoint_session: Callable[[], contextlib.AbstractContextManager[Session]],
    offsets: list[int],
) -> None:
    with savepoint_session() as session:
        # given payments at any second from a day and a half before to well after the day
        biller = make_biller(session)
        start = at(DAY, 0)
        for seconds in offsets:
            make_payment(
                session,
                biller,
                amount_fen=100,
                finished_at=start + timedelta(seconds=seconds),
                post=False,
            )
        actor = member(home_of(session, biller), READ)
        # when the day's dashboard is read
        day = dashboard.day_dashboard(session=session, actor=actor, day=DAY, zone=SHANGHAI)
        # then each payment of the day is in the hour elapsed since midnight, and no other
        expected = [0] * 24
        for seconds in offsets:
            if 0 <= seconds < 24 * 3600:
                expected[seconds // 3600] += 100
        assert [h.takings_fen for h in day.hours] == expected
        assert day.paid_fen == sum(expected)
