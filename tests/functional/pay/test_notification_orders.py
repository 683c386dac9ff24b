"""Whatever order notifications, repeats and jobs come in, no money is lost or taken twice.

Hypothesis draws a history for one bill: payments started by several payers, in flight together
(none ends another; a payer who starts again may end their own earlier one, superseded), trades
settled at the sandbox as paid (some for more or less than the payment's amount, as a
misbehaving provider might) or failed, their notifications delivered at once, twice, out of
order (an older "pending" one after the final one) or again much later, and the expiry and
recovery jobs run in between. Whatever the history, at the end:

- the bill is paid at most once, and it is paid exactly when one payment succeeded;
- every trade the provider took money for is either that succeeded payment (of its amount) or
  refunded in full, all the provider took;
- each succeeded payment has one receipt and one journal entry, and the ledger balances.

This covers both ways a success is applied: the common one (a payment in flight, its bills
open), written in SQL statements, and the rest (late, repeated), through the ORM.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from tests.factories.pay import make_biller, make_bills

from civicloud.core.db import utcnow
from civicloud.core.services import Services
from civicloud.pay import ledger, payments
from civicloud.pay.errors import BillNotPayable
from civicloud.pay.models import (
    Bill,
    Biller,
    BillPayment,
    JournalEntry,
    JournalLine,
    Payment,
    PaymentStatus,
    Receipt,
)
from civicloud.pay.payments import PayContext
from civicloud.pay.providers import SandboxProvider
from civicloud.pay.providers.sandbox import SandboxNotice
from civicloud.pay.schemas import PaymentCreate

#: One step of a history: ("pay", replaces), ("settle", which, outcome, duplicate,
#: out_of_order) (``more``, ``less``: paid, the provider taking that much more or less), ("redeliver", which notice), ("expire",) or ("recover",). ``replaces``: the
#: payer starts again over their latest payment (else another payer starts one). Paying is
#: drawn more often, so that most histories have several payments in flight, some paid late.
STEPS = st.one_of(
    st.tuples(st.just("pay"), st.booleans()),
    st.tuples(st.just("pay"), st.booleans()),
    st.tuples(
        st.just("settle"),
        st.integers(0, 3),
        st.sampled_from(["succeeded", "succeeded", "failed", "more", "less"]),
        st.booleans(),
        st.booleans(),
    ),
    st.tuples(st.just("redeliver"), st.integers(0, 7)),
    st.just(("expire",)),
    st.just(("recover",)),
)


class History:
    """Plays a history against the services, as the web layer and the jobs would."""

    def __init__(
        self, services: Services, context: PayContext, biller_id: uuid.UUID, bill_id: uuid.UUID
    ) -> None:
        self.services, self.context = services, context
        self.biller_id, self.bill_id = biller_id, bill_id
        self.trades: list[str] = []
        self.settled: dict[str, str] = {}
        #: What the provider took for each trade it settled as paid.
        self.taken: dict[str, int] = {}
        self.notices: list[SandboxNotice] = []

    @property
    def sandbox(self) -> SandboxProvider:
        provider = self.context.providers["sandbox"]
        assert isinstance(provider, SandboxProvider)
        return provider

    def play(self, step: tuple[object, ...]) -> None:
        kind = step[0]
        if kind == "pay":
            self.pay(replaces=bool(step[1]))
        elif kind == "settle":
            _, which, outcome, duplicate, out_of_order = step
            self.settle(int(str(which)), str(outcome), bool(duplicate), bool(out_of_order))
        elif kind == "redeliver" and self.notices:
            self.deliver(self.notices[int(str(step[1])) % len(self.notices)])
        elif kind == "expire":
            self.run_job("expire")
        elif kind == "recover":
            self.run_job("recover")

    def run_job(self, job: str) -> None:
        """The job as ``civicloud pay jobs`` runs it: one unit of work per payment."""
        later = utcnow() + timedelta(days=1)
        with self.services.db.unit_of_work() as session:
            due = (
                payments.payments_to_expire(session=session, now=later)
                if job == "expire"
                else payments.payments_in_flight(session=session)
            )
        for payment_id in due:
            with self.services.db.unit_of_work() as session:
                if job == "expire":
                    payments.expire_payment(
                        session=session, context=self.context, payment_id=payment_id, now=later
                    )
                else:
                    payments.recover_payment(
                        session=session, context=self.context, payment_id=payment_id
                    )

    def statuses(self) -> dict[str, str]:
        with self.services.db.unit_of_work(write=False) as session:
            return dict(
                session.execute(
                    select(Payment.trade_no, Payment.status).where(
                        Payment.trade_no.in_(self.trades)
                    )
                ).all()
            )

    def pay(self, *, replaces: bool) -> None:
        data = PaymentCreate(
            biller_id=self.biller_id,
            bill_ids=[self.bill_id],
            provider="sandbox",
            return_url="/pay/done",
        )
        replaced = self.trades[-1:] if replaces else []
        before = self.statuses()
        try:
            with self.services.db.unit_of_work() as session:
                payment, created = payments.create_payment(
                    session=session,
                    data=data,
                    idempotency_key=uuid.uuid4().hex,
                    context=self.context,
                    replaces=replaced,
                )
                assert created
                trade_no = payment.trade_no
        except BillNotPayable:
            # the bill is paid already: refused, as it should be, and nothing ended
            with self.services.db.unit_of_work(write=False) as session:
                assert session.get_one(Bill, self.bill_id).status == "paid"
            assert self.statuses() == before
            return
        # a payment in flight never ends another, except the payer's own that it replaces
        after = self.statuses()
        for trade, status in before.items():
            if trade in replaced and status in payments.IN_FLIGHT:
                assert after[trade] == PaymentStatus.SUPERSEDED.value
            else:
                assert after[trade] == status
        self.trades.append(trade_no)

    def settle(self, which: int, outcome: str, duplicate: bool, out_of_order: bool) -> None:
        if not self.trades:
            return
        trade_no = self.trades[which % len(self.trades)]
        if trade_no in self.settled:
            return  # a provider settles a trade once
        self.settled[trade_no] = outcome
        with self.services.db.unit_of_work(write=False) as session:
            amount = session.scalars(
                select(Payment.amount_fen).where(Payment.trade_no == trade_no)
            ).one()
        taken = {"succeeded": amount, "more": amount * 3 + 7, "less": amount - 1}.get(outcome)
        if taken is not None:
            self.taken[trade_no] = taken
        sent = self.sandbox.simulate(
            trade_no,
            "failed" if taken is None else "succeeded",
            amount_fen=None if taken == amount else taken,
            duplicate=duplicate,
            out_of_order=out_of_order,
            deliver=lambda _body, _headers: None,
        )
        self.notices.extend(sent)
        for notice in sent:
            self.deliver(notice)

    def deliver(self, notice: SandboxNotice) -> None:
        with self.services.db.unit_of_work() as session:
            payments.handle_notification(
                session=session,
                context=self.context,
                provider_name="sandbox",
                headers=notice.headers,
                body=notice.body,
            )

    def finish(self, outcomes: list[str]) -> None:
        """The trades still open are settled (or left unpaid), everything is delivered once more,
        and the recovery job runs: now the provider and civicloud must agree."""
        for trade_no, outcome in zip(list(self.trades), outcomes, strict=False):
            if trade_no not in self.settled and outcome != "unpaid":
                self.settle(self.trades.index(trade_no), outcome, False, False)
        for notice in list(self.notices):
            self.deliver(notice)
        self.run_job("recover")


@pytest.fixture(scope="module")
def biller_id(core_services: Services) -> uuid.UUID:
    with core_services.db.unit_of_work() as session:
        return make_biller(session).id


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    history=st.lists(STEPS, min_size=1, max_size=10),
    outcomes=st.lists(st.sampled_from(["succeeded", "failed", "unpaid"]), min_size=6, max_size=6),
)
def test_no_history_loses_money_or_takes_it_twice(
    core_services: Services,
    context: PayContext,
    biller_id: uuid.UUID,
    history: list[tuple[object, ...]],
    outcomes: list[str],
) -> None:
    # given an open bill
    with core_services.db.unit_of_work() as session:
        (bill,) = make_bills(session, session.get_one(Biller, biller_id))
        bill_id = bill.id
    played = History(core_services, context, biller_id, bill_id)
    # when the history is played, then everything is delivered again and the job runs
    for step in history:
        played.play(step)
    played.finish(outcomes)
    # then
    with core_services.db.unit_of_work(write=False) as session:
        rows = session.scalars(select(Payment).where(Payment.trade_no.in_(played.trades))).all()
        succeeded = [p for p in rows if p.status == PaymentStatus.SUCCEEDED.value]
        paid_by = session.scalars(
            select(BillPayment.payment_id).where(BillPayment.bill_id == bill_id)
        ).all()
        bill_status = session.get_one(Bill, bill_id).status
        # the bill is paid at most once, exactly when one payment succeeded
        assert len(succeeded) <= 1
        assert list(paid_by) == [p.id for p in succeeded]
        assert bill_status == ("paid" if succeeded else "open")
        for payment in rows:
            taken = played.taken.get(payment.trade_no)
            if payment in succeeded:
                # only a take of the payment's amount pays its bill
                assert taken == payment.amount_fen
                assert payment.refunded_fen == 0
            elif taken is not None:
                # never lost: all the money taken for a payment that paid nothing went back,
                # and the ledger posted what was taken
                assert payment.refunded_fen == taken, payment.status
                posted = session.scalar(
                    select(JournalLine.amount_fen)
                    .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
                    .where(
                        JournalEntry.kind == ledger.LATE_PAYMENT,
                        JournalEntry.reference == str(payment.id),
                    )
                )
                assert posted == taken
            else:
                assert payment.refunded_fen == 0
                assert payment.status != PaymentStatus.SUCCEEDED.value
        for payment in succeeded:
            receipts = session.scalar(
                select(func.count()).select_from(Receipt).where(Receipt.payment_id == payment.id)
            )
            entries = session.scalar(
                select(func.count())
                .select_from(JournalEntry)
                .where(JournalEntry.kind == "payment", JournalEntry.reference == str(payment.id))
            )
            assert (receipts, entries) == (1, 1)
        result = ledger.check_ledger(session=session)
        assert result.ok, result


def test_objects_held_by_the_session_see_the_payment_complete(
    core_services: Services, context: PayContext, biller_id: uuid.UUID
) -> None:
    # given a payment created in a session that also holds its bill as an object
    sandbox = context.providers["sandbox"]
    assert isinstance(sandbox, SandboxProvider)
    with core_services.db.unit_of_work() as session:
        (bill,) = make_bills(session, session.get_one(Biller, biller_id))
        payment, _ = payments.create_payment(
            session=session,
            data=PaymentCreate(
                biller_id=biller_id, bill_ids=[bill.id], provider="sandbox", return_url="/done"
            ),
            idempotency_key=uuid.uuid4().hex,
            context=context,
        )
        # then the payment handed back is the row as stored
        assert session.get(Payment, payment.id) is payment
        assert (payment.status, payment.version) == ("pending", 2)
        # when its success is applied in the same session
        (notice,) = sandbox.simulate(
            payment.trade_no, "succeeded", deliver=lambda _body, _headers: None
        )
        result = payments.handle_notification(
            session=session,
            context=context,
            provider_name="sandbox",
            headers=notice.headers,
            body=notice.body,
        )
        # then the objects the session held read the new state, and it commits cleanly
        assert result.outcome == "succeeded"
        assert (payment.status, bill.status) == ("succeeded", "paid")
        assert payment.finished_at is not None
