"""``/api/v1/pay``: billers, bills, the citizens' look-up and payments, provider notifications.

Thin adapters over ``billing`` and ``payments``; the request's unit of work commits before the
response (and so before a provider is told ``success``).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from civicloud.core.dates import BoundedDate
from civicloud.core.db import utcnow
from civicloud.core.ratelimit import RateLimiter
from civicloud.pay import (
    billing,
    ledger,
    payments,
    receipts,
    reconciliation,
    refunds,
    settlement,
    webhooks,
)
from civicloud.pay.errors import PaymentNotFound
from civicloud.pay.payments import PayContext
from civicloud.pay.schemas import (
    BillAmend,
    BillBatch,
    BillerCreate,
    BillerRead,
    BillerUpdate,
    BillRead,
    ImportReport,
    PaymentCreate,
    PaymentRead,
    PublicBill,
    ReceiptVerificationRead,
    ReconciliationItemRead,
    RefundCreate,
    RefundRead,
    Resolution,
    SettlementRead,
    StatementImportRead,
    WebhookDeliveryRead,
)
from civicloud.web.deps import (
    ActorDep,
    ServicesDep,
    SessionDep,
    admission_of,
    client_of,
    services_of,
)

router = APIRouter(prefix="/pay", tags=["pay"])


def _context(request: Request) -> PayContext:
    return services_of(request).context("pay", PayContext)


def _limiter(request: Request) -> RateLimiter:
    return _context(request).lookups


def payment_limiter(request: Request) -> RateLimiter:
    """The per-client limit on starting payments (anonymous, and each holds its bills)."""
    return _context(request).payment_starts


PayContextDep = Annotated[PayContext, Depends(_context)]


async def _raw_body(request: Request) -> bytes:
    # A dependency ahead of the unit of work: the body is read before the request waits for
    # its database slot, so a slow sender holds no slot while it trickles its bytes in.
    return await request.body()


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


@router.patch("/billers/{biller_id}", name="pay.biller.update")
def update_biller(
    session: SessionDep, actor: ActorDep, biller_id: uuid.UUID, data: BillerUpdate
) -> BillerRead:
    """Change a biller's return origins, where its payments may send citizens back."""
    return BillerRead.model_validate(
        billing.update_biller(session=session, actor=actor, biller_id=biller_id, data=data)
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
    content: Annotated[bytes, Depends(_raw_body)],
    session: SessionDep,
    actor: ActorDep,
    biller_id: uuid.UUID,
    partial: bool = False,
) -> ImportReport:
    """Publish bills from a CSV file (UTF-8; the error report names lines of the file)."""
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
    # As typed (spaces, full-width digits, either case): the service reads it as the biller
    # writes it, and says so when it is empty.
    account: Annotated[str, Query(max_length=200)] = "",
) -> list[PublicBill]:
    """A citizen's open bills at a biller, the payer's name masked (rate-limited per client)."""
    _limiter(request).hit(client_of(request))
    return billing.lookup_open_bills(
        session=session, biller_id=biller_id, account_number=account, today=utcnow().date()
    )


@router.post("/payments", name="pay.payment.create")
def create_payment(
    request: Request,
    session: SessionDep,
    context: PayContextDep,
    response: Response,
    data: PaymentCreate,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> PaymentRead:
    """Start paying bills; the same ``Idempotency-Key`` and body return the same payment.

    Other payments in flight for the same bills are left alone: the first to succeed pays the
    bills, and a later success is refunded in full. Payments started per client are
    rate-limited (429 ``pay.payments_throttled``).
    """
    payment_limiter(request).hit(client_of(request))
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
    request: Request,
    raw: Annotated[bytes, Depends(_raw_body)],
    services: ServicesDep,
    context: PayContextDep,
    provider: str,
) -> Response:
    """A provider's asynchronous notification; answered only after it is durably recorded."""
    headers = dict(request.headers)

    def apply(session: Session) -> payments.NotificationResult:
        return payments.handle_notification(
            session=session, context=context, provider_name=provider, headers=headers, body=raw
        )

    # Its own unit of work, run once more if it lost a race to a duplicate delivery of the same
    # notification (which then reads as recorded): providers deliver at least once, often at
    # the same moment, and each delivery deserves the acknowledgement.
    async with admission_of(request).slot(write=True):
        result = await run_in_threadpool(services.db.run, apply)
    ack = result.acknowledgement
    return Response(content=ack.body, status_code=ack.status_code, media_type=ack.media_type)


# --- operators: refunds, ledger, settlement, reconciliation ----------------------------------


@router.post("/payments/{payment_id}/refunds", name="pay.refund.create")
def create_refund(
    session: SessionDep,
    actor: ActorDep,
    context: PayContextDep,
    response: Response,
    payment_id: uuid.UUID,
    data: RefundCreate,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> RefundRead:
    """Refund all or part of a payment; never more than was paid, the same key once."""
    payment = payments.get_payment_or_raise(session=session, actor=actor, payment_id=payment_id)
    refund = refunds.request_refund(
        session=session,
        actor=actor,
        payment_id=payment.id,
        amount_fen=data.amount_fen,
        reason=data.reason,
        idempotency_key=payments.check_idempotency_key(idempotency_key),
        provider=context.provider(payment.provider),
    )
    response.status_code = status.HTTP_201_CREATED
    return RefundRead.model_validate(refund)


@router.get("/payments/{payment_id}/refunds", name="pay.refund.list")
def list_refunds(session: SessionDep, actor: ActorDep, payment_id: uuid.UUID) -> list[RefundRead]:
    """The refunds of a payment."""
    found = refunds.list_refunds(session=session, actor=actor, payment_id=payment_id)
    return [RefundRead.model_validate(r) for r in found]


@router.get("/ledger/balances", name="pay.ledger.balances")
def ledger_balances(
    session: SessionDep, actor: ActorDep, biller_id: uuid.UUID | None = None
) -> list[ledger.AccountBalance]:
    """Account balances, derived from the journal (a biller's, or all you may read)."""
    return ledger.balances(session=session, actor=actor, biller_id=biller_id)


@router.get("/ledger/journal", name="pay.ledger.journal")
def ledger_journal(
    session: SessionDep,
    actor: ActorDep,
    account_code: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ledger.JournalEntryView]:
    """The newest journal entries (of one account, with ``account_code``)."""
    return ledger.journal(session=session, actor=actor, account_code=account_code, limit=limit)


@router.post("/billers/{biller_id}/settlements", name="pay.settlement.create")
def settle_day(
    session: SessionDep,
    actor: ActorDep,
    context: PayContextDep,
    biller_id: uuid.UUID,
    business_date: Annotated[BoundedDate, Query(alias="date")],
) -> SettlementRead:
    """Settle a biller's ended business day (idempotent: the same day gives the same batch)."""
    done = settlement.settle_day(
        session=session,
        actor=actor,
        biller_id=biller_id,
        business_date=business_date,
        payer=settlement.payer_from(context.settings),
    )
    return SettlementRead.model_validate(done)


@router.get("/billers/{biller_id}/settlements", name="pay.settlement.list")
def list_settlements(
    session: SessionDep, actor: ActorDep, biller_id: uuid.UUID
) -> list[SettlementRead]:
    """A biller's settlements, newest first."""
    found = settlement.list_settlements(session=session, actor=actor, biller_id=biller_id)
    return [SettlementRead.model_validate(s) for s in found]


@router.post(
    "/reconciliation/{provider}",
    name="pay.reconcile.import",
    openapi_extra={
        "requestBody": {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "required": True,
        }
    },
)
async def import_statement(
    content: Annotated[bytes, Depends(_raw_body)],
    session: SessionDep,
    actor: ActorDep,
    context: PayContextDep,
    provider: str,
    business_date: Annotated[BoundedDate, Query(alias="date")],
) -> StatementImportRead:
    """Import a provider's daily statement and classify every line (changes no money)."""

    def work() -> StatementImportRead:
        done = reconciliation.import_statement(
            session=session,
            actor=actor,
            provider=context.provider(provider),
            content=content,
            business_date=business_date,
        )
        summary = reconciliation.import_summary(session=session, actor=actor, import_id=done.id)
        return StatementImportRead(
            id=done.id,
            provider=done.provider,
            business_date=done.business_date,
            imported_at=done.imported_at,
            summary=summary,
        )

    return await run_in_threadpool(work)


@router.get("/reconciliation/items", name="pay.reconcile.items")
def reconciliation_items(
    session: SessionDep,
    actor: ActorDep,
    import_id: uuid.UUID | None = None,
    kind: Literal["payment", "refund"] | None = None,
    unresolved_only: bool = True,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ReconciliationItemRead]:
    """Reconciliation exceptions (matched lines left out), of payments or refunds with ``kind``."""
    found = reconciliation.list_items(
        session=session,
        actor=actor,
        import_id=import_id,
        kind=kind,
        unresolved_only=unresolved_only,
        limit=limit,
    )
    return [ReconciliationItemRead.model_validate(i) for i in found]


@router.post("/reconciliation/items/{item_id}/resolve", name="pay.reconcile.resolve")
def resolve_item(
    session: SessionDep, actor: ActorDep, item_id: uuid.UUID, data: Resolution
) -> ReconciliationItemRead:
    """Settle an exception with an adjustment, posted to the ledger and audited."""
    item = reconciliation.resolve_item(
        session=session,
        actor=actor,
        item_id=item_id,
        debit_code=data.debit_code,
        credit_code=data.credit_code,
        amount_fen=data.amount_fen,
        memo=data.memo,
    )
    return ReconciliationItemRead.model_validate(item)


# --- operators: billers' webhooks -------------------------------------------------------------


@router.get("/webhooks/dead", name="pay.webhook.dead")
def dead_webhooks(
    session: SessionDep,
    actor: ActorDep,
    biller_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[WebhookDeliveryRead]:
    """Webhook deliveries given up on after their last retry, newest first (yours to see)."""
    found = webhooks.list_dead_deliveries(
        session=session, actor=actor, biller_id=biller_id, limit=limit
    )
    return [WebhookDeliveryRead.model_validate(d) for d in found]


@router.post("/webhooks/{delivery_id}/requeue", name="pay.webhook.requeue")
def requeue_webhook(
    session: SessionDep, actor: ActorDep, delivery_id: uuid.UUID
) -> WebhookDeliveryRead:
    """Send a dead webhook delivery again (same event id and body, a fresh set of retries)."""
    delivery = webhooks.requeue_delivery(
        session=session, actor=actor, delivery_id=delivery_id, now=utcnow()
    )
    return WebhookDeliveryRead.model_validate(delivery)


# --- receipts (public: anyone holding a receipt may check it) --------------------------------


@router.get("/public/receipts/{number}/verify", name="pay.public.receipt_verify")
def verify_receipt(
    session: SessionDep,
    context: PayContextDep,
    number: Annotated[str, Path(max_length=40)],
    sig: Annotated[str | None, Query(max_length=200)] = None,
) -> ReceiptVerificationRead:
    """Whether receipt ``number`` (and the signature from its QR code) is genuine."""
    result = receipts.verify_receipt_by_number(
        session=session,
        number=number,
        public_keys={context.signer.key_id: context.signer.public_key_pem()},
        signature_b64=sig,
    )
    return ReceiptVerificationRead(number=number, status=result.status, reason=result.reason_text)
