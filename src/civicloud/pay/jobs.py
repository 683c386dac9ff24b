"""Pay's background jobs, run by the core's job runner (``civicloud jobs``), each payment,
refund or webhook delivery in a unit of work of its own.

- ``pay.expire_payments``: end the payments past their expiry, after asking the provider;
- ``pay.recover_payments``: ask the provider about every payment in flight (after a crash or a
  lost notification) and apply its answer;
- ``pay.resume_refunds``: ask again about refunds still pending after a minute's grace;
- ``pay.deliver_webhooks``: send the billers' due webhooks, one delivery per unit of work.

An item that fails (a provider away, a lost race) stays due and the next run tries it again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloud.core.jobs import JobEnv, Work
from civicloud.pay import payments, refunds, webhooks
from civicloud.pay.models import WebhookDelivery
from civicloud.pay.payments import PayContext

__all__ = ["deliver_webhooks", "expire_payments", "recover_payments", "resume_refunds"]

#: A refund the provider answered "processing" is not asked about again sooner than this.
REFUND_GRACE = timedelta(minutes=1)
#: Webhook deliveries sent per run (each its own unit of work; the rest wait for the next run).
WEBHOOKS_PER_RUN = 100


def _pay(env: JobEnv) -> PayContext:
    if not isinstance(env.context, PayContext):
        raise TypeError(f"Pay's jobs need a PayContext, not {type(env.context).__name__}")
    return env.context


def _payments_to_expire(session: Session, env: JobEnv) -> Sequence[uuid.UUID]:
    return payments.payments_to_expire(session=session, now=env.now)


def _expire(session: Session, env: JobEnv, payment_id: uuid.UUID) -> str | None:
    return payments.expire_payment(
        session=session, context=_pay(env), payment_id=payment_id, now=env.now
    )


def _payments_in_flight(session: Session, env: JobEnv) -> Sequence[uuid.UUID]:
    return payments.payments_in_flight(session=session)


def _recover(session: Session, env: JobEnv, payment_id: uuid.UUID) -> str | None:
    return payments.recover_payment(session=session, context=_pay(env), payment_id=payment_id)


def _refunds_to_resume(session: Session, env: JobEnv) -> Sequence[tuple[uuid.UUID, str]]:
    return refunds.refunds_to_resume(session=session, older_than=env.now - REFUND_GRACE)


def _resume(session: Session, env: JobEnv, item: tuple[uuid.UUID, str]) -> str:
    refund_id, provider_name = item
    provider = _pay(env).providers.get(provider_name)
    if provider is None:
        return "provider_unavailable"
    return refunds.resume_refund(session=session, refund_id=refund_id, provider=provider).status


def _due_deliveries(session: Session, env: JobEnv) -> Sequence[uuid.UUID]:
    return session.scalars(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.delivered_at.is_(None),
            WebhookDelivery.dead_at.is_(None),
            WebhookDelivery.next_attempt_at <= env.now,
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(WEBHOOKS_PER_RUN)
    ).all()


def _deliver(session: Session, env: JobEnv, delivery_id: uuid.UUID) -> str | None:
    # The listed delivery, locked (FOR UPDATE SKIP LOCKED: another worker's is skipped, not
    # waited for), sent and recorded in a unit of work of its own; ``None`` when it is no longer
    # due (another worker sent it meanwhile).
    report = webhooks.deliver_due(
        session=session, now=env.now, send=webhooks.http_send, limit=1, only=delivery_id
    )
    if report.delivered:
        return "delivered"
    if report.dead:
        return "dead"
    if report.retrying:
        return "retrying"
    return None


expire_payments = Work(_payments_to_expire, _expire)
recover_payments = Work(_payments_in_flight, _recover)
resume_refunds = Work(_refunds_to_resume, _resume)
deliver_webhooks = Work(_due_deliveries, _deliver)
