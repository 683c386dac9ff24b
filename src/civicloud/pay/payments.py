"""Payments: created → pending → succeeded | failed | expired (or superseded by a newer one).

The rules that keep money right:

- An ``Idempotency-Key`` names one payment. The same key with the same request returns that
  payment; with a different request it is refused (``IdempotencyKeyReused``).
- Bills are locked in primary-key order while a payment is made for them, and at most one
  payment per bill is in flight (``payment_bill``'s partial unique index). A new payment for a
  bill supersedes the one in flight (a citizen who opened the checkout twice).
- A bill is paid by at most one succeeded payment: ``bill_payment.bill_id`` is a primary key.
- Success is applied in one transaction: the payment, its bills, the ledger posting, the
  receipt and the billers' webhooks commit together or not at all, and the provider is told
  ``success`` only after that commit. A success that arrives for an expired or superseded
  payment (or a bill paid meanwhile) is refunded automatically, never lost.
- After a crash, :func:`recover_payments` asks the provider about every payment still in
  flight and applies what it says, exactly once (notification ids and the primary keys above
  make a second application a no-op).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from civicloud.core import audit
from civicloud.core.actor import Actor, authorize
from civicloud.core.config import PaySettings
from civicloud.core.db import utcnow
from civicloud.core.errors import InvalidInput
from civicloud.core.tenants import Tenant, in_subtrees, resolve_tenant
from civicloud.pay import ledger, receipts, refunds, webhooks
from civicloud.pay.backends import Acknowledgement, CheckoutRequest, Notification, PaymentProvider
from civicloud.pay.billing import bills_by_id, get_biller_or_raise, late_fee_fen
from civicloud.pay.errors import (
    BillerNotFound,
    BillNotFound,
    BillNotPayable,
    IdempotencyKeyReused,
    InvalidNotification,
    PaymentNotFound,
)
from civicloud.pay.models import (
    Bill,
    Biller,
    BillPayment,
    BillStatus,
    Payment,
    PaymentBill,
    PaymentStatus,
    ProviderNotification,
)
from civicloud.pay.schemas import PaymentCreate

PAYMENT_READ = "pay.payment.read"
IN_FLIGHT = (PaymentStatus.CREATED.value, PaymentStatus.PENDING.value)
ENDED_UNPAID = (
    PaymentStatus.FAILED.value,
    PaymentStatus.EXPIRED.value,
    PaymentStatus.SUPERSEDED.value,
)
#: The actor of citizens' calls (they are anonymous) and of provider notifications.
CITIZEN = Actor(kind="user", name="citizen", via="public")
SYSTEM = Actor.system("pay")


@dataclass(frozen=True)
class PayContext:
    """What payments need beyond the session: the providers, the receipt signer, settings."""

    providers: Mapping[str, PaymentProvider]
    signer: receipts.ReceiptSigner
    settings: PaySettings

    def provider(self, name: str) -> PaymentProvider:
        """The provider called ``name``; ``InvalidInput`` when it is not configured here."""
        found = self.providers.get(name)
        if found is None:
            raise InvalidInput(f"the payment provider {name!r} is not available here")
        return found


def new_trade_no(now: datetime) -> str:
    """A short, unique, unguessable trade number: ``CC`` + date + 16 random digits."""
    return f"CC{now:%Y%m%d}{secrets.randbelow(10**16):016d}"


def _request_hash(data: PaymentCreate) -> str:
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_idempotency_key(key: str | None) -> str:
    """The key, stripped; ``InvalidInput`` when it is missing or unusable."""
    if key is None or not key.strip():
        raise InvalidInput("the Idempotency-Key header is required")
    key = key.strip()
    if len(key) > 200 or not key.isprintable():
        raise InvalidInput("the Idempotency-Key must be 1 to 200 printable characters")
    return key


def create_payment(
    *,
    session: Session,
    data: PaymentCreate,
    idempotency_key: str,
    context: PayContext,
    actor: Actor = CITIZEN,
) -> tuple[Payment, bool]:
    """Start paying bills; returns the payment and whether it was created now (not replayed)."""
    key = check_idempotency_key(idempotency_key)
    digest = _request_hash(data)
    existing = session.scalars(select(Payment).where(Payment.idempotency_key == key)).first()
    if existing is not None:
        if existing.request_hash != digest:
            raise IdempotencyKeyReused("this Idempotency-Key was used for a different payment")
        return existing, False
    provider = context.provider(data.provider)
    biller = session.get(Biller, data.biller_id)
    if biller is None:
        raise BillerNotFound("no such biller", resource="biller")
    bills = bills_by_id(session, data.bill_ids)
    # Checked again now that the bills are locked: a racing request with the same key and bills
    # has committed by now, and must be replayed, not superseded.
    existing = session.scalars(select(Payment).where(Payment.idempotency_key == key)).first()
    if existing is not None:
        if existing.request_hash != digest:
            raise IdempotencyKeyReused("this Idempotency-Key was used for a different payment")
        return existing, False
    if len(bills) != len(data.bill_ids) or any(b.biller_id != biller.id for b in bills):
        raise BillNotFound("no such bill at this biller", resource="bill")
    if any(b.status != BillStatus.OPEN.value for b in bills):
        raise BillNotPayable("a bill is paid or cancelled already")
    now = utcnow()
    today = now.date()
    amounts = {b.id: b.amount_fen + late_fee_fen(b, today) for b in bills}
    _supersede_in_flight(session, [b.id for b in bills], now)
    # Written now, outside the savepoint below, so that only the new rows are inside it.
    session.flush()
    payment = Payment(
        id=uuid.uuid4(),
        trade_no=new_trade_no(now),
        biller_id=biller.id,
        tenant_id=biller.tenant_id,
        provider=provider.name,
        status=PaymentStatus.CREATED.value,
        amount_fen=sum(amounts.values()),
        refunded_fen=0,
        currency="CNY",
        idempotency_key=key,
        request_hash=digest,
        return_url=data.return_url,
        checkout={},
        created_at=now,
        expires_at=now + timedelta(minutes=context.settings.payment_minutes),
    )
    try:
        # Added and flushed inside a savepoint (begin_nested flushes what is pending first, so
        # the savepoint opens before the rows exist): two racing requests with the same key, or
        # for the same bills, meet the unique constraints here and are answered as a replay or
        # a conflict, and this transaction stays usable.
        with session.begin_nested():
            session.add(payment)
            for bill in bills:
                session.add(
                    PaymentBill(payment_id=payment.id, bill_id=bill.id, amount_fen=amounts[bill.id])
                )
            session.flush()
    except IntegrityError:
        replay = session.scalars(select(Payment).where(Payment.idempotency_key == key)).first()
        if replay is not None and replay.request_hash == digest:
            return replay, False
        if replay is not None:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a different payment"
            ) from None
        raise BillNotPayable("the bills are being paid by another request") from None
    checkout = provider.create_checkout(
        CheckoutRequest(
            trade_no=payment.trade_no,
            amount_fen=payment.amount_fen,
            currency=payment.currency,
            subject=f"{biller.name_zh} {len(bills)} bill(s)",
            return_url=data.return_url,
            notify_url=f"{context.settings.public_base_url}/api/v1/pay/notify/{provider.name}",
            expires_at=payment.expires_at,
        )
    )
    payment.status = PaymentStatus.PENDING.value
    payment.provider_trade_no = checkout.provider_trade_no
    payment.checkout = {"kind": checkout.kind, "url": checkout.url}
    audit.record(
        session=session,
        actor=actor,
        action="pay.payment.create",
        tenant_id=biller.tenant_id,
        target=f"payment:{payment.trade_no}",
        detail={"bills": [b.bill_number for b in bills], "amount_fen": payment.amount_fen},
    )
    return payment, True


def _supersede_in_flight(session: Session, bill_ids: Sequence[uuid.UUID], now: datetime) -> None:
    """End the payments in flight for these bills: the citizen started again."""
    payment_ids = set(
        session.scalars(
            select(PaymentBill.payment_id).where(
                PaymentBill.bill_id.in_(bill_ids), PaymentBill.active
            )
        )
    )
    for payment_id in sorted(payment_ids):
        old = session.get(Payment, payment_id, with_for_update=True)
        if old is not None and old.status in IN_FLIGHT:
            _end_unpaid(session, old, PaymentStatus.SUPERSEDED, now)


def _end_unpaid(session: Session, payment: Payment, status: PaymentStatus, now: datetime) -> None:
    payment.status = status.value
    payment.finished_at = now
    session.execute(
        update(PaymentBill)
        .where(PaymentBill.payment_id == payment.id)
        .values(active=False)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class LockedRows:
    """What :func:`lock_payment_rows` locked and read with a payment: its links, its bills
    (locked, in primary-key order) and their biller, so that applying the payment reads none of
    them again."""

    links: Sequence[PaymentBill]
    bills: Sequence[Bill]
    biller: Biller | None


def lock_payment_rows(session: Session, payment_id: uuid.UUID) -> tuple[Payment | None, LockedRows]:
    """:func:`lock_payment`, also returning the rows it locked and read on the way."""
    rows = session.execute(
        select(PaymentBill, Bill, Biller)
        .join(Bill, Bill.id == PaymentBill.bill_id)
        .join(Biller, Biller.id == Bill.biller_id)
        .where(PaymentBill.payment_id == payment_id)
        .order_by(Bill.id)
        .with_for_update(of=Bill)
    ).all()
    locked = LockedRows(
        links=[row[0] for row in rows],
        bills=[row[1] for row in rows],
        biller=rows[0][2] if rows else None,
    )
    payment = session.get(Payment, payment_id, with_for_update=True, populate_existing=True)
    return payment, locked


def lock_payment(session: Session, payment_id: uuid.UUID) -> Payment | None:
    """Lock a payment for a state change: its bills first (in primary-key order), then the
    payment itself, read afresh. Creating a payment locks bills before payments too, so the
    two never wait on each other in opposite orders."""
    return lock_payment_rows(session, payment_id)[0]


def get_payment_or_raise(*, session: Session, actor: Actor, payment_id: uuid.UUID) -> Payment:
    """The payment if ``actor`` holds ``pay.payment.read`` at its tenant (404 otherwise)."""
    payment = session.get(Payment, payment_id)
    tenant = resolve_tenant(session=session, tenant_id=payment.tenant_id) if payment else None
    if payment is None or tenant is None:
        raise PaymentNotFound("no such payment", resource="payment")
    authorize(actor, PAYMENT_READ, path=tenant.path, what="payment")
    return payment


def get_payment_by_trade_no(*, session: Session, trade_no: str) -> Payment | None:
    """The payment with ``trade_no``, no access check (the trade number is the citizen's proof)."""
    return session.scalars(select(Payment).where(Payment.trade_no == trade_no)).first()


# --- notifications and their effects -------------------------------------------------------


@dataclass(frozen=True)
class NotificationResult:
    """What a notification did, and what to answer the provider."""

    outcome: str
    payment_id: uuid.UUID | None
    acknowledgement: Acknowledgement


def handle_notification(
    *,
    session: Session,
    context: PayContext,
    provider_name: str,
    headers: Mapping[str, str],
    body: bytes,
) -> NotificationResult:
    """Verify and apply a provider's notification; the caller commits, then acknowledges.

    A notification that does not verify raises ``InvalidNotification`` and changes nothing.
    """
    provider = context.provider(provider_name)
    notification = provider.parse_notification(headers=headers, body=body)
    outcome, payment_id = apply_notification(
        session=session, context=context, provider=provider, notification=notification
    )
    return NotificationResult(outcome, payment_id, provider.acknowledge(accepted=True))


def apply_notification(
    *,
    session: Session,
    context: PayContext,
    provider: PaymentProvider,
    notification: Notification,
) -> tuple[str, uuid.UUID | None]:
    """Apply a verified notification once (by its id); returns the outcome and the payment."""
    seen = session.scalars(
        select(ProviderNotification).where(
            ProviderNotification.provider == provider.name,
            ProviderNotification.notify_id == notification.notify_id,
        )
    ).first()
    if seen is not None:
        return "duplicate", seen.payment_id
    found = session.scalars(
        select(Payment.id).where(Payment.trade_no == notification.trade_no)
    ).first()
    payment, locked = lock_payment_rows(session, found) if found is not None else (None, None)
    if payment is None or payment.provider != provider.name:
        raise InvalidNotification(f"no payment {notification.trade_no!r} at {provider.name}")
    if notification.amount_fen != payment.amount_fen:
        raise InvalidNotification(
            f"the notification says {notification.amount_fen} fen; the payment is "
            f"{payment.amount_fen}"
        )
    if notification.status == "succeeded":
        outcome = apply_success(
            session=session,
            context=context,
            payment=payment,
            provider_trade_no=notification.provider_trade_no,
            locked=locked,
        )
    elif notification.status in ("failed", "closed") and payment.status in IN_FLIGHT:
        _end_unpaid(session, payment, PaymentStatus.FAILED, utcnow())
        outcome = "failed"
    else:
        outcome = f"ignored:{notification.status}"
    session.add(
        ProviderNotification(
            id=uuid.uuid4(),
            provider=provider.name,
            notify_id=notification.notify_id,
            payment_id=payment.id,
            event=notification.status,
            outcome=outcome,
            payload=json.loads(json.dumps(dict(notification.raw), default=str)),
        )
    )
    audit.record(
        session=session,
        actor=Actor.system(f"provider:{provider.name}"),
        action="pay.payment.notify",
        tenant_id=payment.tenant_id,
        target=f"payment:{payment.trade_no}",
        detail={"status": notification.status, "outcome": outcome},
    )
    return outcome, payment.id


def apply_success(
    *,
    session: Session,
    context: PayContext,
    payment: Payment,
    provider_trade_no: str | None,
    locked: LockedRows | None = None,
) -> str:
    """The provider took the money: complete the payment, or refund a late one. Idempotent.

    ``locked``: the rows :func:`lock_payment_rows` locked and read with ``payment`` in this
    transaction (not read again here); without it they are read.
    """
    if payment.status == PaymentStatus.SUCCEEDED.value:
        return "already_succeeded"
    if provider_trade_no:
        payment.provider_trade_no = provider_trade_no
    provider = context.provider(payment.provider)
    if payment.status in ENDED_UNPAID or payment.refunded_fen:
        refunds.refund_automatically(
            session=session,
            payment=payment,
            provider=provider,
            reason=f"paid after the payment was {payment.status}",
        )
        return "late_refunded"
    if locked is None:
        links: Sequence[PaymentBill] = session.scalars(
            select(PaymentBill).where(PaymentBill.payment_id == payment.id)
        ).all()
    else:
        links = locked.links
    now = utcnow()
    try:
        # Flushed in a savepoint: a bill already paid by another payment meets the primary key
        # of bill_payment here, and this payment is then refunded instead of failing.
        with session.begin_nested():
            for link in links:
                session.add(BillPayment(bill_id=link.bill_id, payment_id=payment.id, paid_at=now))
            session.flush()
    except IntegrityError:
        _end_unpaid(session, payment, PaymentStatus.SUPERSEDED, now)
        refunds.refund_automatically(
            session=session, payment=payment, provider=provider, reason="a bill was paid already"
        )
        return "late_refunded"
    payment.status = PaymentStatus.SUCCEEDED.value
    payment.finished_at = now
    bill_ids = [link.bill_id for link in links]
    session.execute(
        update(PaymentBill)
        .where(PaymentBill.payment_id == payment.id)
        .values(active=False)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Bill)
        .where(Bill.id.in_(bill_ids))
        .values(status=BillStatus.PAID.value, version=Bill.version + 1)
        .execution_options(synchronize_session="fetch")
    )
    ledger.post_payment(session=session, payment=payment, posted_by=f"provider:{payment.provider}")
    # Held until the end: the biller stays in the session's identity map, so that the receipt
    # and the webhooks find it there instead of reading it again.
    biller = locked.biller if locked is not None else None
    receipts.issue_receipt(session=session, payment=payment, signer=context.signer)
    paid_bills: Sequence[Bill] = (
        locked.bills
        if locked is not None
        else session.scalars(select(Bill).where(Bill.id.in_(bill_ids))).all()
    )
    for bill in paid_bills:
        webhooks.enqueue_event(
            session=session,
            biller_id=payment.biller_id,
            event="bill.paid",
            payload={
                "bill_number": bill.bill_number,
                "account_number": bill.account_number,
                "amount_fen": next(x.amount_fen for x in links if x.bill_id == bill.id),
                "currency": payment.currency,
                "trade_no": payment.trade_no,
                "paid_at": now.isoformat(),
            },
        )
    del biller
    return "succeeded"


# --- jobs: expiry and crash recovery ---------------------------------------------------------


def expire_payments(
    *, session: Session, context: PayContext, now: datetime, limit: int = 500
) -> int:
    """End payments past their expiry, after asking the provider whether they were paid."""
    due = session.scalars(
        select(Payment.id)
        .where(Payment.status.in_(IN_FLIGHT), Payment.expires_at < now)
        .order_by(Payment.id)
        .limit(limit)
    ).all()
    ended = 0
    for payment_id in due:
        payment = lock_payment(session, payment_id)
        if payment is None or payment.status not in IN_FLIGHT:
            continue  # a notification settled it meanwhile
        answer = context.provider(payment.provider).query(payment.trade_no)
        if answer.status == "succeeded" and answer.amount_fen in (None, payment.amount_fen):
            apply_success(
                session=session,
                context=context,
                payment=payment,
                provider_trade_no=answer.provider_trade_no,
            )
        else:
            _end_unpaid(session, payment, PaymentStatus.EXPIRED, now)
        ended += 1
    return ended


def recover_payments(*, session: Session, context: PayContext, limit: int = 500) -> dict[str, int]:
    """Ask the provider about every payment in flight and apply what it says (after a crash)."""
    counts: dict[str, int] = {}
    in_flight = session.scalars(
        select(Payment.id).where(Payment.status.in_(IN_FLIGHT)).order_by(Payment.id).limit(limit)
    ).all()
    for payment_id in in_flight:
        payment = lock_payment(session, payment_id)
        if payment is None or payment.status not in IN_FLIGHT:
            continue  # a notification settled it meanwhile
        answer = context.provider(payment.provider).query(payment.trade_no)
        if answer.status == "succeeded":
            if answer.amount_fen is not None and answer.amount_fen != payment.amount_fen:
                outcome = "amount_mismatch"
            else:
                outcome = apply_success(
                    session=session,
                    context=context,
                    payment=payment,
                    provider_trade_no=answer.provider_trade_no,
                )
        elif answer.status in ("failed", "closed"):
            _end_unpaid(session, payment, PaymentStatus.FAILED, utcnow())
            outcome = "failed"
        else:
            outcome = "still_pending"
        counts[outcome] = counts.get(outcome, 0) + 1
    if in_flight:
        audit.record(
            session=session,
            actor=SYSTEM,
            action="pay.payment.recover",
            target="payments",
            detail=counts,
        )
    return counts


# --- listings for the pages ----------------------------------------------------------------


def search_payments(
    *,
    session: Session,
    actor: Actor,
    trade_no: str = "",
    status: str = "",
    biller_id: uuid.UUID | None = None,
    limit: int = 100,
) -> Sequence[Payment]:
    """Payments where the actor holds ``pay.payment.read``, newest first, filtered."""
    query = (
        select(Payment)
        .join(Tenant, Tenant.id == Payment.tenant_id)
        .where(in_subtrees(Tenant.path, actor.roots(PAYMENT_READ)))
    )
    if biller_id is not None:
        # Asked first, so that a biller the actor cannot see is a 404, as everywhere.
        get_biller_or_raise(session=session, actor=actor, biller_id=biller_id)
        query = query.where(Payment.biller_id == biller_id)
    if trade_no:
        query = query.where(Payment.trade_no.startswith(trade_no, autoescape=True))
    if status in {s.value for s in PaymentStatus}:
        query = query.where(Payment.status == status)
    return session.scalars(query.order_by(Payment.created_at.desc(), Payment.id).limit(limit)).all()


def payment_bills(*, session: Session, payment: Payment) -> list[tuple[Bill, int]]:
    """The bills a payment covers, each with the fen it pays (callers authorised the payment)."""
    return [
        (bill, int(amount))
        for bill, amount in session.execute(
            select(Bill, PaymentBill.amount_fen)
            .join(PaymentBill, PaymentBill.bill_id == Bill.id)
            .where(PaymentBill.payment_id == payment.id)
            .order_by(Bill.bill_number)
        )
    ]
