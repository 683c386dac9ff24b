"""``civicloud pay jobs``: one unit of work per payment, and a lost race waits for the next run."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update
from tests.factories.pay import make_biller, make_bills

from civicloud.core.db import utcnow
from civicloud.core.errors import Conflict
from civicloud.core.services import Services
from civicloud.pay import payments
from civicloud.pay.cli import run_jobs
from civicloud.pay.models import Payment
from civicloud.pay.payments import PayContext
from civicloud.pay.schemas import PaymentCreate


def _pending_payments(services: Services, context: PayContext, count: int) -> list[uuid.UUID]:
    """``count`` payments the citizens left at the checkout, all past their expiry."""
    made = []
    with services.db.unit_of_work() as session:
        biller = make_biller(session)
        for bill in make_bills(session, biller, count):
            payment, _ = payments.create_payment(
                session=session,
                data=PaymentCreate(
                    biller_id=biller.id, bill_ids=[bill.id], provider="sandbox", return_url="/"
                ),
                idempotency_key=uuid.uuid4().hex,
                context=context,
            )
            made.append(payment.id)
        session.execute(
            update(Payment)
            .where(Payment.id.in_(made))
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    return made


def _statuses(services: Services, ids: list[uuid.UUID]) -> list[str]:
    with services.db.unit_of_work(write=False) as session:
        return [session.get_one(Payment, payment_id).status for payment_id in ids]


def test_a_payment_that_loses_a_race_is_left_for_the_next_run(
    core_services: Services, context: PayContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given two payments past their expiry
    first, second = _pending_payments(core_services, context, 2)
    # when the expiry job meets a deadlock on the first (another transaction held its rows)
    expire = payments.expire_payment

    def deadlocked_on_first(**kwargs: object) -> str | None:
        if kwargs["payment_id"] == first:
            raise Conflict("deadlock detected; try again")
        return expire(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(payments, "expire_payment", deadlocked_on_first)
    done = run_jobs(core_services)
    # then the second is expired in its own unit of work, and the first waits, unchanged
    assert done["retry_later"] == 1
    assert _statuses(core_services, [first, second]) == ["pending", "expired"]
    # and the next run expires it
    monkeypatch.setattr(payments, "expire_payment", expire)
    run_jobs(core_services)
    assert _statuses(core_services, [first, second]) == ["expired", "expired"]
