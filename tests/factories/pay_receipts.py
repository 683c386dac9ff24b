"""Factories for Pay's receipts and webhooks: a biller, its bills and a succeeded payment.

Built directly with the models (the payment service is written alongside), under an agency
tenant made through core's factories, with unique codes and numbers.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session
from tests.factories.core import make_tenant, unique

from civicloud.core.db import utcnow
from civicloud.core.tenants import Tenant, TenantKind
from civicloud.pay.models import (
    Bill,
    Biller,
    BillPayment,
    BillStatus,
    Payment,
    PaymentBill,
    PaymentStatus,
    Receipt,
)
from civicloud.pay.receipts import ReceiptSigner, sign_receipt

WEBHOOK_SECRET = "whsec-test-0123456789abcdef"
WEBHOOK_URL = "https://biller.example/hooks/civicloud"
#: When the first payment of the test world was made; fixed so that receipts are predictable.
PAID_AT = datetime(2026, 11, 26, 3, 4, 5, tzinfo=UTC)


def make_agency(session: Session) -> Tenant:
    """A country → city → agency chain; the agency returned."""
    root = make_tenant(session)
    city = make_tenant(session, parent=root, kind=TenantKind.CITY)
    return make_tenant(session, parent=city, kind=TenantKind.AGENCY)


def new_biller(*, tenant_id: uuid.UUID, **overrides: Any) -> Biller:
    """An unsaved water biller with a webhook (``webhook_url=None`` for one without)."""
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "code": unique("water"),
        "name_zh": "大连市供水有限公司",
        "name_en": "Dalian Water Supply",
        "category": "water",
        "account_pattern": r"\d{10}",
        "settlement_bank": "中国工商银行大连分行",
        "settlement_account": "6222020200112233445",
        "settlement_account_name": "大连市供水有限公司",
        "webhook_url": WEBHOOK_URL,
        "webhook_secret": WEBHOOK_SECRET,
    }
    values.update(overrides)
    return Biller(**values)


def make_biller(session: Session, *, tenant: Tenant | None = None, **overrides: Any) -> Biller:
    """A saved biller under ``tenant`` (a new agency when none is given)."""
    biller = new_biller(tenant_id=(tenant or make_agency(session)).id, **overrides)
    session.add(biller)
    session.flush()  # the models have no relationships: parents are inserted first by hand
    return biller


def new_bill(biller: Biller, **overrides: Any) -> Bill:
    """An unsaved open bill of ``biller``."""
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "biller_id": biller.id,
        "bill_number": f"B{uuid.uuid4().hex[:12].upper()}",
        "account_number": "0411123456",
        "payer_name": "张三丰",
        "amount_fen": 12_345,
        "currency": "CNY",
        "period": "2026-10",
        "due_date": (PAID_AT + timedelta(days=20)).date(),
        "status": BillStatus.OPEN.value,
    }
    values.update(overrides)
    return Bill(**values)


def new_succeeded_payment(biller: Biller, bills: list[Bill], **overrides: Any) -> Payment:
    """An unsaved succeeded payment of ``bills``."""
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "trade_no": f"CC{uuid.uuid4().int % 10**20:020d}",
        "biller_id": biller.id,
        "tenant_id": biller.tenant_id,
        "provider": "sandbox",
        "status": PaymentStatus.SUCCEEDED.value,
        "amount_fen": sum(bill.amount_fen for bill in bills),
        "refunded_fen": 0,
        "currency": "CNY",
        "idempotency_key": unique("key"),
        "request_hash": "0" * 64,
        "return_url": "https://citizen.example/return",
        "provider_trade_no": f"SBX{uuid.uuid4().hex[:16].upper()}",
        "checkout": {},
        "created_at": PAID_AT - timedelta(minutes=2),
        "expires_at": PAID_AT + timedelta(minutes=13),
        "finished_at": PAID_AT,
    }
    values.update(overrides)
    return Payment(**values)


def make_succeeded_payment(
    session: Session,
    *,
    biller: Biller | None = None,
    amounts: tuple[int, ...] = (12_345, 6_789),
    **overrides: Any,
) -> Payment:
    """A saved succeeded payment of new bills (one per amount), the bills marked paid."""
    biller = biller or make_biller(session)
    bills = [
        new_bill(biller, amount_fen=amount, status=BillStatus.PAID.value) for amount in amounts
    ]
    payment = new_succeeded_payment(biller, bills, **overrides)
    session.add_all([*bills, payment])
    session.flush()  # bills and payment before the rows that point at them
    for bill in bills:
        session.add(PaymentBill(payment_id=payment.id, bill_id=bill.id, amount_fen=bill.amount_fen))
        session.add(BillPayment(bill_id=bill.id, payment_id=payment.id, paid_at=PAID_AT))
    session.flush()
    return payment


def unsaved_receipt(signer: ReceiptSigner, **biller_overrides: Any) -> Receipt:
    """A signed receipt built from unsaved rows, for tests that need no database."""
    biller = new_biller(tenant_id=uuid.uuid4(), **biller_overrides)
    bills = [new_bill(biller, amount_fen=12_345), new_bill(biller, amount_fen=100_000_07)]
    payment = new_succeeded_payment(biller, bills)
    return sign_receipt(
        number=f"R{PAID_AT:%Y%m%d}-{uuid.uuid4().hex[:8].upper()}",
        payment=payment,
        biller=biller,
        bills=[(bill, bill.amount_fen) for bill in bills],
        issued_at=utcnow().replace(microsecond=0),
        signer=signer,
    )
