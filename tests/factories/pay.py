"""Factories for Pay: billers and bills, made through the service layer with unique names."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM, make_tenant, unique

from civicloud.core.db import utcnow
from civicloud.core.ratelimit import RateLimiter
from civicloud.core.tenants import Tenant, TenantKind
from civicloud.pay import billing
from civicloud.pay.models import Bill, Biller, Payment, WebhookDelivery
from civicloud.pay.payments import PayContext
from civicloud.pay.schemas import BillerCreate

ACCOUNT_PATTERN = r"\d{10}"


def make_agency(session: Session) -> Tenant:
    """A country → city → agency chain, the agency returned."""
    root = make_tenant(session)
    city = make_tenant(session, parent=root, kind=TenantKind.CITY)
    return make_tenant(session, parent=city, kind=TenantKind.AGENCY)


def make_biller(session: Session, *, tenant: Tenant | None = None, **overrides: Any) -> Biller:
    """A water biller whose account numbers are ten digits."""
    values: dict[str, Any] = {
        "tenant_id": (tenant or make_agency(session)).id,
        "code": unique("water"),
        "name_zh": "大连市供水有限公司",
        "name_en": "Dalian Water Supply",
        "category": "water",
        "account_pattern": ACCOUNT_PATTERN,
        "settlement_bank": "中国工商银行大连分行",
        "settlement_account": "6222020200112233445",
        "settlement_account_name": "大连市供水有限公司",
    }
    values.update(overrides)
    return billing.create_biller(session=session, actor=SYSTEM, data=BillerCreate(**values))


def bill_row(**overrides: Any) -> dict[str, Any]:
    """One valid bill row for an import."""
    row: dict[str, Any] = {
        "bill_number": f"B{uuid.uuid4().hex[:12]}",
        "account_number": "0102030405",
        "payer_name": "张三丰",
        "amount_fen": 12_345,
        "period": "2026-10",
        "due_date": (utcnow().date() + timedelta(days=20)).isoformat(),
    }
    row.update(overrides)
    return row


def make_bills(session: Session, biller: Biller, count: int = 1, **overrides: Any) -> list[Bill]:
    """``count`` open bills of ``biller``."""
    rows = [bill_row(**overrides) for _ in range(count)]
    billing.import_bills(session=session, actor=SYSTEM, biller_id=biller.id, rows=rows)
    session.flush()
    from sqlalchemy import select

    numbers = [r["bill_number"] for r in rows]
    return list(
        session.scalars(
            select(Bill).where(Bill.biller_id == biller.id, Bill.bill_number.in_(numbers))
        )
    )


def make_pending_payment(session: Session, biller: Biller, bills: list[Bill]) -> Payment:
    """A payment in flight for ``bills``, made directly (no provider involved)."""
    from civicloud.pay.models import PaymentBill

    now = utcnow()
    payment = Payment(
        id=uuid.uuid4(),
        trade_no=f"CC{now:%Y%m%d}{uuid.uuid4().int % 10**16:016d}",
        biller_id=biller.id,
        tenant_id=biller.tenant_id,
        provider="sandbox",
        status="pending",
        amount_fen=sum(b.amount_fen for b in bills),
        refunded_fen=0,
        currency="CNY",
        idempotency_key=unique("key"),
        request_hash="0" * 64,
        return_url="/",
        checkout={},
        created_at=now,
        expires_at=now + timedelta(minutes=15),
    )
    session.add(payment)
    for bill in bills:
        session.add(PaymentBill(payment_id=payment.id, bill_id=bill.id, amount_fen=bill.amount_fen))
    session.flush()
    return payment


def make_dead_delivery(session: Session, biller: Biller) -> WebhookDelivery:
    """A ``bill.paid`` webhook delivery of ``biller`` given up on after its retries."""
    now = utcnow()
    delivery = WebhookDelivery(
        id=uuid.uuid4(),
        event_id=uuid.uuid4().hex,
        biller_id=biller.id,
        event="bill.paid",
        payload={"bill_number": "B1", "amount_fen": 100},
        attempts=15,
        next_attempt_at=now - timedelta(hours=6),
        last_error="HTTP 503",
        dead_at=now - timedelta(hours=6),
        created_at=now - timedelta(days=2),
    )
    session.add(delivery)
    session.flush()
    return delivery


def unlimited_payments(app: FastAPI) -> None:
    """Lift the per-client limit on starting payments in ``app``: every test client is one
    address ("testclient"); the limit is the subject of tests with an application of their own."""
    services = app.state.services
    context = services.context("pay", PayContext)
    services.provide("pay", replace(context, payment_starts=RateLimiter(1_000_000)))
