"""Pay's jobs on the core's runner: declared by name, each item in a unit of work of its own,
webhooks delivered one per unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from tests.factories.pay import make_biller, make_bills

from civicloud.core import jobs
from civicloud.core.db import utcnow
from civicloud.core.modules import Job, resolve
from civicloud.core.services import Services
from civicloud.pay import payments, webhooks
from civicloud.pay.models import Payment, WebhookDelivery
from civicloud.pay.payments import PayContext
from civicloud.pay.schemas import PaymentCreate

PAY_JOBS = [
    "pay.expire_payments",
    "pay.recover_payments",
    "pay.resume_refunds",
    "pay.deliver_webhooks",
]


def _job(services: Services, name: str) -> Job:
    return next(job for job in services.modules.jobs() if job.name == name)


def test_pay_declares_its_four_jobs_and_each_is_work_for_the_runner(
    core_services: Services,
) -> None:
    pay = [job for job in core_services.modules.jobs() if job.name.startswith("pay.")]
    assert [job.name for job in pay] == PAY_JOBS
    assert all(isinstance(resolve(job.work), jobs.JobWork) for job in pay)


def test_the_runner_expires_payments_past_their_expiry(
    core_services: Services, context: PayContext
) -> None:
    # given a payment left at the checkout, past its expiry
    with core_services.db.unit_of_work() as session:
        biller = make_biller(session)
        (bill,) = make_bills(session, biller, 1)
        payment, _ = payments.create_payment(
            session=session,
            data=PaymentCreate(
                biller_id=biller.id, bill_ids=[bill.id], provider="sandbox", return_url="/"
            ),
            idempotency_key=uuid.uuid4().hex,
            context=context,
        )
        session.execute(
            update(Payment)
            .where(Payment.id == payment.id)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    # when the runner runs Pay's expiry job
    report = jobs.run_job(core_services, _job(core_services, "pay.expire_payments"))
    # then the payment is expired, and the run says so
    assert report.outcomes.get("expired", 0) >= 1
    assert report.failures == 0
    with core_services.db.unit_of_work(write=False) as session:
        assert session.get_one(Payment, payment.id).status == "expired"


def test_webhooks_are_delivered_one_per_unit_of_work(
    core_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given three deliveries owed to a biller whose endpoint refuses the second
    tag = uuid.uuid4().hex
    with core_services.db.unit_of_work() as session:
        biller = make_biller(
            session, webhook_url="https://biller.example/hooks", webhook_secret="s" * 32
        )
        ids = webhooks.enqueue_events(
            session=session,
            biller_id=biller.id,
            webhook_url=biller.webhook_url,
            event="bill.paid",
            payloads=[{"n": f"{tag}-{n}"} for n in (1, 2, 3)],
        )
    sent: list[bytes] = []

    def send(_url: str, _headers: Mapping[str, str], body: bytes) -> int:
        if tag.encode() in body:
            sent.append(body)
        return 500 if f"{tag}-2".encode() in body else 200

    monkeypatch.setattr(webhooks, "http_send", send)
    # when the runner runs the delivery job
    report = jobs.run_job(core_services, _job(core_services, "pay.deliver_webhooks"))
    # then each was sent once, two delivered and one left to retry with its error
    assert len(sent) == 3
    with core_services.db.unit_of_work(write=False) as session:
        rows = session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids))).all()
    delivered = [row for row in rows if row.delivered_at is not None]
    retrying = [row for row in rows if row.delivered_at is None]
    assert (len(delivered), len(retrying)) == (2, 1)
    assert retrying[0].last_error == "HTTP 500"
    assert report.outcomes.get("delivered", 0) >= 2
    assert report.outcomes.get("retrying", 0) >= 1
