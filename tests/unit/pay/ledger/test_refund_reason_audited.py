"""The refund form promises that its reason is shown in the audit log: the refund's record
keeps it, where the audit log's detail view reads a reason from."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM
from tests.factories.pay_money import FakeProvider, make_payment

from civicloud.core import audit
from civicloud.core.audit import AuditRecord
from civicloud.pay import refunds
from civicloud.pay.models import Biller


def test_a_refunds_reason_is_in_its_audit_record(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a succeeded payment
    payment = make_payment(db_session, biller, amount_fen=5_000, provider=provider.name)
    # when an operator refunds part of it, saying why
    refund = refunds.request_refund(
        session=db_session,
        actor=SYSTEM,
        payment_id=payment.id,
        amount_fen=1_000,
        reason="市民重复缴费 paid twice",
        idempotency_key=uuid.uuid4().hex,
        provider=provider,
    )
    # then the refund's audit record keeps the reason, as the detail view reads it
    entry = db_session.scalars(
        select(AuditRecord)
        .where(
            AuditRecord.action == "pay.refund.request", AuditRecord.tenant_id == payment.tenant_id
        )
        .order_by(AuditRecord.seq.desc())
        .limit(1)
    ).one()
    assert entry.detail["refund_no"] == refund.refund_no
    assert audit.reason_of(entry) == "市民重复缴费 paid twice"
