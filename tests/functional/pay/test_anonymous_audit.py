"""Anonymous callers do not grow the audit log: a citizen's payment is a data event kept in the
payment's own row (and its bill links), not a management event."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.factories.pay import make_biller, make_bills

from civicloud.core.audit import AuditRecord
from civicloud.core.services import Services
from civicloud.pay.models import Payment, PaymentBill


def newest_seq(services: Services) -> int:
    with services.db.unit_of_work(write=False) as session:
        return session.scalar(select(func.max(AuditRecord.seq))) or 0


def test_anonymous_payment_creation_writes_no_audit_record_and_loses_nothing(
    client: TestClient, core_services: Services
) -> None:
    # given open bills of a biller
    with core_services.db.unit_of_work() as session:
        biller = make_biller(session)
        bills = make_bills(session, biller, account_number="0908070605", count=3)
    before = newest_seq(core_services)
    # when citizens start payments, anonymously, again and again
    trades: list[tuple[str, int]] = []
    for bill in bills:
        created = client.post(
            "/api/v1/pay/payments",
            json={
                "biller_id": str(biller.id),
                "bill_ids": [str(bill.id)],
                "provider": "sandbox",
                "return_url": "/pay/done",
            },
            headers={"Idempotency-Key": "anon-" + uuid.uuid4().hex},
        )
        assert created.status_code == 201, created.text
        trades.append((created.json()["trade_no"], created.json()["amount_fen"]))
    # then the audit log did not grow
    assert newest_seq(core_services) == before
    # and each payment's own row keeps what reconciliation needs: trade, amount, bills, time
    with core_services.db.unit_of_work(write=False) as session:
        for (trade_no, amount_fen), bill in zip(trades, bills, strict=True):
            payment = session.scalars(select(Payment).where(Payment.trade_no == trade_no)).one()
            assert payment.amount_fen == amount_fen >= bill.amount_fen
            assert payment.tenant_id == biller.tenant_id
            assert payment.created_at is not None
            linked = session.scalars(
                select(PaymentBill.bill_id).where(PaymentBill.payment_id == payment.id)
            ).all()
            assert list(linked) == [bill.id]
