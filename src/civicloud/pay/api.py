"""``/api/v1/pay``: billers, bills, the citizens' look-up and payments, provider notifications.

Thin adapters over ``billing`` and ``payments``; the request's unit of work commits before the
response (and so before a provider is told ``success``).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from civicloud.core.db import utcnow
from civicloud.pay import billing, payments
from civicloud.pay.billing import RateLimiter
from civicloud.pay.errors import PaymentNotFound
from civicloud.pay.payments import PayContext
from civicloud.pay.schemas import (
    BillAmend,
    BillBatch,
    BillerCreate,
    BillerRead,
    BillRead,
    ImportReport,
    PaymentCreate,
    PaymentRead,
    PublicBill,
)
from civicloud.web.deps import ActorDep, SessionDep

router = APIRouter(prefix="/pay", tags=["pay"])


def _context(request: Request) -> PayContext:
    context: PayContext = request.app.state.pay
    return context


def _limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.pay_lookup_limiter
    return limiter


PayContextDep = Annotated[PayContext, Depends(_context)]


class PublicBiller(BaseModel):
    """A biller as citizens see it."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name_zh: str
    name_en: str
    category: str
    account_pattern: str


class PaymentStatusRead(BaseModel):
    """What a citizen may know of a payment by its trade number."""

    trade_no: str
    status: str
    amount_fen: int
    currency: str
    return_url: str
    checkout: dict[str, Any]


# --- operators: billers and bills ------------------------------------------------------------


@router.post("/billers", status_code=status.HTTP_201_CREATED, name="pay.biller.create")
def create_biller(session: SessionDep, actor: ActorDep, data: BillerCreate) -> BillerRead:
    """Register a biller for an agency or enterprise."""
    return BillerRead.model_validate(billing.create_biller(session=session, actor=actor, data=data))


@router.get("/billers", name="pay.biller.list")
def list_billers(
    session: SessionDep, actor: ActorDep, tenant_id: uuid.UUID | None = None
) -> list[BillerRead]:
    """List the billers of your subtree."""
    found = billing.list_billers(session=session, actor=actor, tenant_id=tenant_id)
    return [BillerRead.model_validate(b) for b in found]


@router.get("/billers/{biller_id}", name="pay.biller.get")
def get_biller(session: SessionDep, actor: ActorDep, biller_id: uuid.UUID) -> BillerRead:
    """Show one biller."""
    return BillerRead.model_validate(
        billing.get_biller_or_raise(session=session, actor=actor, biller_id=biller_id)
    )


@router.post("/billers/{biller_id}/bills", name="pay.bill.import")
def import_bills(
    session: SessionDep, actor: ActorDep, biller_id: uuid.UUID, batch: BillBatch
) -> ImportReport:
    """Publish a batch of bills; a bad row refuses the batch unless ``partial`` is true."""
    return billing.import_bills(
        session=session, actor=actor, biller_id=biller_id, rows=batch.bills, partial=batch.partial
    )


@router.post(
    "/billers/{biller_id}/bills.csv",
    name="pay.bill.import_csv",
    openapi_extra={
        "requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}
    },
)
async def import_bills_csv(
    request: Request,
    session: SessionDep,
    actor: ActorDep,
    biller_id: uuid.UUID,
    partial: bool = False,
) -> ImportReport:
    """Publish bills from a CSV file (UTF-8; the error report names lines of the file)."""
    content = await request.body()
    return await run_in_threadpool(
        lambda: billing.import_bills_csv(
            session=session, actor=actor, biller_id=biller_id, content=content, partial=partial
        )
    )


@router.patch("/bills/{bill_id}", name="pay.bill.amend")
def amend_bill(
    session: SessionDep, actor: ActorDep, bill_id: uuid.UUID, data: BillAmend
) -> BillRead:
    """Change an open bill's amount or due date (refused while it is being paid)."""
    return BillRead.model_validate(
        billing.amend_bill(session=session, actor=actor, bill_id=bill_id, data=data)
    )


@router.post("/bills/{bill_id}/cancel", name="pay.bill.cancel")
def cancel_bill(session: SessionDep, actor: ActorDep, bill_id: uuid.UUID) -> BillRead:
    """Withdraw an open bill (refused while it is being paid)."""
    return BillRead.model_validate(
        billing.cancel_bill(session=session, actor=actor, bill_id=bill_id)
    )


@router.get("/payments/{payment_id}", name="pay.payment.get")
def get_payment(session: SessionDep, actor: ActorDep, payment_id: uuid.UUID) -> PaymentRead:
    """Show one payment."""
    return PaymentRead.model_validate(
        payments.get_payment_or_raise(session=session, actor=actor, payment_id=payment_id)
    )


# --- citizens (public) -----------------------------------------------------------------------


@router.get("/public/billers", name="pay.public.billers")
def public_billers(session: SessionDep, under: uuid.UUID | None = None) -> list[PublicBiller]:
    """Every biller citizens can pay (below a city, with ``under``)."""
    return [
        PublicBiller(
            id=b.id,
            tenant_id=b.tenant_id,
            name_zh=b.name_zh,
            name_en=b.name_en,
            category=b.category,
            account_pattern=b.account_pattern,
        )
        for b in billing.public_billers(session=session, under=under)
    ]


@router.get("/public/billers/{biller_id}/bills", name="pay.public.lookup")
def lookup_bills(
    request: Request,
    session: SessionDep,
    biller_id: uuid.UUID,
    account: Annotated[str, Query(min_length=1, max_length=64)],
) -> list[PublicBill]:
    """A citizen's open bills at a biller, the payer's name masked (rate-limited per client)."""
    _limiter(request).hit(request.client.host if request.client else "unknown")
    return billing.lookup_open_bills(
        session=session, biller_id=biller_id, account_number=account, today=utcnow().date()
    )


@router.post("/payments", name="pay.payment.create")
def create_payment(
    session: SessionDep,
    context: PayContextDep,
    response: Response,
    data: PaymentCreate,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> PaymentRead:
    """Start paying bills; the same ``Idempotency-Key`` and body return the same payment."""
    payment, created = payments.create_payment(
        session=session,
        data=data,
        idempotency_key=idempotency_key or "",
        context=context,
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return PaymentRead.model_validate(payment)


@router.get("/public/payments/{trade_no}", name="pay.public.payment")
def payment_status(session: SessionDep, trade_no: str) -> PaymentStatusRead:
    """A payment's status by its trade number (what the citizen's browser polls)."""
    payment = payments.get_payment_by_trade_no(session=session, trade_no=trade_no)
    if payment is None:
        raise PaymentNotFound("no such payment", resource="payment")
    return PaymentStatusRead.model_validate(payment, from_attributes=True)


@router.post(
    "/notify/{provider}",
    name="pay.notify",
    response_model=None,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/x-www-form-urlencoded": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
            "required": True,
        }
    },
)
async def notify(
    request: Request, session: SessionDep, context: PayContextDep, provider: str
) -> Response:
    """A provider's asynchronous notification; answered only after it is durably recorded."""
    raw = await request.body()
    result = await run_in_threadpool(
        lambda: payments.handle_notification(
            session=session,
            context=context,
            provider_name=provider,
            headers=dict(request.headers),
            body=raw,
        )
    )
    ack = result.acknowledgement
    return Response(content=ack.body, status_code=ack.status_code, media_type=ack.media_type)
