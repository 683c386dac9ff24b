"""Property: whatever refunds are asked for, and whatever the provider answers, a payment is never
refunded more than was paid, the money out equals the succeeded refunds, and the ledger balances."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM
from tests.factories.pay_money import (
    FakeProvider,
    RefundMode,
    make_biller,
    make_payment,
    problems_about,
    provider_name,
)

from civicloud.core.errors import InvalidInput
from civicloud.pay import ledger, refunds
from civicloud.pay.errors import IdempotencyKeyReused, RefundExceedsPayment
from civicloud.pay.models import Refund

PAID = 10_000
amounts = st.one_of(
    st.integers(min_value=-3, max_value=PAID + 1_000),
    st.sampled_from([1, PAID, 2**63 - 1, 2**63]),
)
modes: st.SearchStrategy[RefundMode] = st.sampled_from(["succeeded", "failed", "pending", "raise"])
steps = st.lists(st.tuples(amounts, modes, st.booleans()), min_size=1, max_size=7)


@settings(max_examples=30, deadline=None)
@given(steps=steps)
def test_any_sequence_of_refunds_stays_within_the_payment_and_balanced(
    savepoint_session: Callable[[], contextlib.AbstractContextManager[Session]],
    steps: list[tuple[int, RefundMode, bool]],
) -> None:
    with savepoint_session() as session:
        # given a succeeded payment of 100 yuan
        provider = FakeProvider(name=provider_name())
        biller = make_biller(session)
        payment = make_payment(session, biller, amount_fen=PAID, provider=provider.name)
        keys: list[str] = []
        for amount, mode, reuse in steps:
            # when a refund is asked for (sometimes repeating the last key), whatever the answer
            provider.mode = mode
            key = keys[-1] if reuse and keys else uuid.uuid4().hex
            keys.append(key)
            with contextlib.suppress(InvalidInput, RefundExceedsPayment, IdempotencyKeyReused):
                refunds.request_refund(
                    session=session,
                    actor=SYSTEM,
                    payment_id=payment.id,
                    amount_fen=amount,
                    reason="property",
                    idempotency_key=key,
                    provider=provider,
                )
            # then what is held back is what the pending and succeeded refunds hold, within the
            # payment, and the provider gave back exactly what succeeded
            session.refresh(payment)
            rows = session.scalars(select(Refund).where(Refund.payment_id == payment.id)).all()
            held = sum(r.amount_fen for r in rows if r.status in ("pending", "succeeded"))
            succeeded = sum(r.amount_fen for r in rows if r.status == "succeeded")
            assert 0 <= payment.refunded_fen == held <= payment.amount_fen
            assert provider.refunded.get(payment.trade_no, 0) == succeeded
        # and the ledger balances: every succeeded refund posted once, the payable what is left
        check = ledger.check_ledger(session=session)
        assert problems_about(check, [payment.id, *(r.id for r in rows)]) == []
        [payable] = ledger.balances(session=session, actor=SYSTEM, biller_id=biller.id)
        assert payable.balance_fen == -(PAID - succeeded)
