"""Payments: created → pending → succeeded | failed | expired (or superseded by its own payer).

The rules that keep money right:

- An ``Idempotency-Key`` names one payment. The same key with the same request returns that
  payment; with a different request it is refused (``IdempotencyKeyReused``).
- Bills are locked in primary-key order while a payment is made for them. No payment is
  exclusive and no payment ends another: payments for the same bills may be in flight together
  (a stranger who starts one for someone's bill neither blocks the real payer nor cancels their
  payment), and the first success pays the bills. Only the caller that started a payment (it
  holds its unguessable trade number, ``replaces``) may end it by starting again: it ends
  ``superseded``.
- ``return_url`` is a path of this installation, a URL at its public address, or one at a
  return origin its biller registered (``pay.origins``): never somewhere else (no open
  redirect through the checkout).
- A bill is paid by at most one succeeded payment: ``bill_payment.bill_id`` is a primary key;
  a later success for a bill paid meanwhile is refunded in full automatically.
- A payment in flight ends when it succeeds or fails, or when the expiry job has asked the
  provider about it past its expiry; until then its bills cannot be amended or cancelled.
- Success is applied in one transaction: the payment, its bills, the ledger posting, the
  receipt and the billers' webhooks commit together or not at all, and the provider is told
  ``success`` only after that commit. A success that arrives for an expired or superseded
  payment (or a bill paid meanwhile) is refunded automatically, never lost.
- After a crash, :func:`recover_payment` asks the provider about each payment still in
  flight (the jobs run it for every one) and applies what it says, exactly once (notification ids and the primary keys above
  make a second application a no-op).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import BindParameter, Executable, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.util import identity_key

from civicloud.core import audit
from civicloud.core.actor import Actor, authorize
from civicloud.core.db import utcnow
from civicloud.core.errors import InvalidInput
from civicloud.core.ratelimit import RateLimiter
from civicloud.core.tenants import Tenant, in_subtrees, resolve_tenant
from civicloud.pay import ledger, receipts, refunds, webhooks
from civicloud.pay.backends import (
    Acknowledgement,
    CheckoutRequest,
    Notification,
    PaymentProvider,
    TradeQuery,
)
from civicloud.pay.billing import get_biller_or_raise, late_fee
from civicloud.pay.errors import (
    BillerNotFound,
    BillNotFound,
    BillNotPayable,
    IdempotencyKeyReused,
    InvalidNotification,
    InvalidReturnUrl,
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
from civicloud.pay.origins import origin_of
from civicloud.pay.schemas import PaymentCreate
from civicloud.pay.settings import PaySettings

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
    """What payments need beyond the session: the providers, the receipt signer, settings, and
    the per-process limits on anonymous look-ups and payment starts (``civicloud.pay.context``
    builds it once per process)."""

    providers: Mapping[str, PaymentProvider]
    signer: receipts.ReceiptSigner
    settings: PaySettings
    lookups: RateLimiter
    payment_starts: RateLimiter

    def provider(self, name: str) -> PaymentProvider:
        """The provider called ``name``; ``InvalidInput`` when it is not configured here."""
        found = self.providers.get(name)
        if found is None:
            raise InvalidInput(
                "the payment provider %(provider)s is not available here",
                params={"provider": repr(name)},
            )
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
    replaces: Collection[str] = (),
) -> tuple[Payment, bool]:
    """Start paying bills; returns the payment and whether it was created now (not replayed).

    Other payments in flight for the same bills are left alone (the first to succeed pays the
    bills; a later success is refunded), except those whose trade number is in ``replaces``:
    the caller started them, and they end ``superseded``.
    """
    key = check_idempotency_key(idempotency_key)
    digest = _request_hash(data)
    try:
        check_return_url(data.return_url, context.settings.public_base_url)
    except InvalidReturnUrl:
        # Not this installation's: perhaps the biller's own site (looked up only then).
        biller = session.get(Biller, data.biller_id)
        origins = biller.return_origins if biller is not None else ()
        check_return_url(data.return_url, context.settings.public_base_url, origins)
    session.flush()
    connection = session.connection()
    sql = _statements(connection.dialect.name)
    bills = connection.execute(sql.lock_bills, {"bill_ids": list(data.bill_ids)}).all()
    payable = len(bills) == len(data.bill_ids) and all(
        b.biller_id == data.biller_id and b.status == BillStatus.OPEN.value for b in bills
    )
    replaced: Sequence[Any] = (
        connection.execute(
            sql.in_flight,
            {"bill_ids": [b.id for b in bills], "trade_nos": sorted(set(replaces))},
        ).all()
        if payable and replaces
        else ()
    )
    provider = context.providers.get(data.provider)
    if not payable or replaced or provider is None:
        # Before refusing or superseding anything: is this a replay? Looked up with the bills
        # locked, so a racing request with the same key and bills has committed by now. (With
        # nothing to refuse or supersede, the key's unique constraint tells, further down.)
        replay = _replay(session, key, digest)
        if replay is not None:
            return replay, False
    if provider is None:
        provider = context.provider(data.provider)  # raises: not available here
    if len(bills) != len(data.bill_ids) or any(b.biller_id != data.biller_id for b in bills):
        if connection.execute(sql.biller_exists, {"biller_id": data.biller_id}).first() is None:
            raise BillerNotFound("no such biller", resource="biller")
        raise BillNotFound("no such bill at this biller", resource="bill")
    if not payable:
        raise BillNotPayable("a bill is paid or cancelled already")
    now = utcnow()
    today = now.date()
    amounts = {
        b.id: b.amount_fen
        + late_fee(amount_fen=b.amount_fen, due_date=b.due_date, rule=b.late_fee_rule, today=today)
        for b in bills
    }
    if replaced:
        _supersede(session, replaced, now)
        session.flush()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "trade_no": new_trade_no(now),
        "biller_id": data.biller_id,
        "tenant_id": bills[0].tenant_id,
        "provider": provider.name,
        "status": PaymentStatus.CREATED.value,
        "amount_fen": sum(amounts.values()),
        "refunded_fen": 0,
        "currency": "CNY",
        "idempotency_key": key,
        "request_hash": digest,
        "return_url": data.return_url,
        "provider_trade_no": None,
        "checkout": {},
        "created_at": now,
        "expires_at": now + timedelta(minutes=context.settings.payment_minutes),
        "finished_at": None,
        "version": 1,
    }
    # ON CONFLICT DO NOTHING: a payment made earlier with this key (one that ended, or one for
    # other bills, perhaps committed meanwhile) meets the unique key here and is answered as a
    # replay, or refused if it was another request. Other payments for the same bills do not
    # conflict: they may be in flight together.
    if connection.execute(sql.insert_payment, values).first() is None:
        replay = _replay(session, key, digest)
        if replay is not None:
            return replay, False
        raise BillNotPayable("the bills are being paid by another request")
    connection.execute(
        sql.insert_links,
        [
            {
                "payment_id": values["id"],
                "bill_id": bill_id,
                "amount_fen": amount_fen,
                "active": True,
            }
            for bill_id, amount_fen in amounts.items()
        ],
    )
    checkout = provider.create_checkout(
        CheckoutRequest(
            trade_no=values["trade_no"],
            amount_fen=values["amount_fen"],
            currency=values["currency"],
            # The providers show the subject as it is, in Chinese as their cashiers do.
            subject=f"{bills[0].biller_name_zh} 账单缴费 {len(bills)} 笔",
            return_url=data.return_url,
            notify_url=f"{context.settings.public_base_url}/api/v1/pay/notify/{provider.name}",
            expires_at=values["expires_at"],
        )
    )
    values |= {
        "status": PaymentStatus.PENDING.value,
        "provider_trade_no": checkout.provider_trade_no,
        "checkout": {"kind": checkout.kind, "url": checkout.url},
        "version": 2,
    }
    connection.execute(
        sql.payment_pending,
        {
            "p_id": values["id"],
            "p_status": values["status"],
            "p_provider_trade_no": values["provider_trade_no"],
            "p_checkout": values["checkout"],
        },
    )
    # No audit record: a citizen's payment is a data event of the payment itself, kept whole in
    # its row and its bill links (trade number, amounts, bills, times, provider trade), which
    # is what reconciliation reads; the audit log holds management events, and anonymous
    # callers must not be able to grow it at will.
    # The row as written, handed to the session as if it had been read: no read back.
    payment = Payment(**values)
    make_transient_to_detached(payment)
    session.add(payment)
    return payment, True


def _replay(session: Session, key: str, digest: str) -> Payment | None:
    """The payment made with ``key`` for the same request, ``None`` when there is none;
    ``IdempotencyKeyReused`` when the key was used for another request."""
    found = session.connection().execute(_KEY_LOOKUP, {"key": key}).first()
    if found is None:
        return None
    if found.request_hash != digest:
        raise IdempotencyKeyReused("this Idempotency-Key was used for a different payment")
    return session.get(Payment, found.id, populate_existing=True)


def _supersede(session: Session, replaced: Sequence[Any], now: datetime) -> None:
    """End the caller's own earlier payments in flight (``superseded``): it starts again over
    them. A success that still arrives for one is refunded in full automatically."""
    for payment_id in sorted({row.payment_id for row in replaced}):
        old = session.get(Payment, payment_id, with_for_update=True, populate_existing=True)
        if old is not None and old.status in IN_FLIGHT:
            _end_unpaid(session, old, PaymentStatus.SUPERSEDED, now)


def check_return_url(return_url: str, public_base_url: str, origins: Collection[str] = ()) -> None:
    """``InvalidReturnUrl`` unless ``return_url`` is a path of this site, a URL at its public
    address, or one at an origin of ``origins`` (the biller's registered return origins, matched
    exactly): the checkout sends the citizen there, so it must never lead elsewhere."""
    refused = InvalidReturnUrl(
        "return_url must be a path of this site, or a URL at its address or at one of the "
        "biller's return origins"
        if origins
        else "return_url must be a path of this site or a URL at its address"
    )
    if any(ord(c) < 33 or ord(c) == 127 for c in return_url) or "\\" in return_url:
        raise refused
    try:
        parts = urlsplit(return_url)
    except ValueError as exc:  # a bracketed host that is no IPv6 address: https://[x]/
        raise refused from exc
    if return_url.startswith("/") and not return_url.startswith("//"):
        if not parts.scheme and not parts.netloc:
            return
    else:
        own = urlsplit(public_base_url)
        # Under the public address's own path too: a host shared with other applications
        # (https://gov.example.cn/civicloud) does not lend us their pages.
        base = own.path.rstrip("/")
        if (
            parts.scheme in ("http", "https")
            and (parts.scheme, parts.netloc.lower()) == (own.scheme, own.netloc.lower())
            and "@" not in parts.netloc
            and (not base or parts.path == base or parts.path.startswith(base + "/"))
        ):
            return
        if origins and origin_of(return_url) in origins:
            return
    raise refused


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
    A refund's notification goes to ``refunds``, which keeps and audits it as payments' are.
    """
    provider = context.provider(provider_name)
    notification = provider.parse_notification(headers=headers, body=body)
    if notification.kind == "refund":
        outcome, payment_id = refunds.apply_refund_notification(
            session=session, provider=provider, notification=notification
        )
    else:
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
    """Apply a verified notification once (by its id); returns the outcome and the payment.

    A notification whose fields do not match the payment (amount, currency) or this
    installation's account (``Notification.mismatches``, ``foreign``) pays no bill: it is kept
    and audited as ``refused``, and a success for a trade of ours ends the payment and has what
    the provider took refunded automatically (:func:`refuse_success`), never lost.
    """
    session.flush()
    connection = session.connection()
    sql = _statements(connection.dialect.name)
    seen = connection.execute(
        sql.seen, {"provider": provider.name, "notify_id": notification.notify_id}
    ).first()
    if seen is not None:
        return "duplicate", seen.payment_id
    if notification.foreign:
        return _keep_foreign(session, provider, notification), None
    # The bills first (in primary-key order), then the payment: the order creating a payment
    # and the jobs lock them in, so that none waits on another crosswise.
    bills = connection.execute(sql.lock_trade_bills, {"trade_no": notification.trade_no}).all()
    row = connection.execute(sql.lock_payment, {"trade_no": notification.trade_no}).first()
    if row is None or row.provider != provider.name:
        raise InvalidNotification(
            "no payment %(trade_no)s at %(provider)s",
            params={"trade_no": repr(notification.trade_no), "provider": provider.name},
        )
    refused = refused_fields(
        notification.mismatches,
        stated_fen=notification.amount_fen,
        stated_currency=notification.currency,
        payment_fen=row.amount_fen,
        payment_currency=row.currency,
    )
    if refused:
        payment, locked = lock_payment_rows(session, row.id)
        if payment is None:
            raise InvalidNotification(
                "no payment %(trade_no)s", params={"trade_no": repr(notification.trade_no)}
            )
        outcome = (
            refuse_success(
                session=session,
                context=context,
                payment=payment,
                taken_fen=notification.amount_fen,
                fields=refused,
            )
            if notification.status == "succeeded"
            else REFUSED
        )
        session.flush()
    elif (
        notification.status == "succeeded"
        and row.status in IN_FLIGHT
        and not row.refunded_fen
        and bills
        and all(bill.status == BillStatus.OPEN.value for bill in bills)
    ):
        # The common case, completed in SQL statements: no ORM object is loaded.
        _complete(
            session,
            context,
            _Paying(
                id=row.id,
                trade_no=row.trade_no,
                status=PaymentStatus.SUCCEEDED.value,
                provider=row.provider,
                biller_id=row.biller_id,
                tenant_id=row.tenant_id,
                amount_fen=row.amount_fen,
                currency=row.currency,
                finished_at=utcnow(),
                provider_trade_no=notification.provider_trade_no or row.provider_trade_no,
            ),
            bills=[
                _PaidBill(
                    b.bill_id, b.paid_fen, b.bill_number, b.account_number, b.period, b.details
                )
                for b in bills
            ],
            biller=_PaidBiller(
                bills[0].biller_id,
                bills[0].code,
                bills[0].name_zh,
                bills[0].name_en,
                bills[0].biller_tenant_id,
                bills[0].webhook_url,
            ),
        )
        outcome = "succeeded"
    else:
        # Anything else (a late, repeated or failed payment) goes through the objects.
        payment, locked = lock_payment_rows(session, row.id)
        if payment is None:
            raise InvalidNotification(
                "no payment %(trade_no)s", params={"trade_no": repr(notification.trade_no)}
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
        session.flush()
    connection.execute(
        sql.insert_notification,
        {
            "id": uuid.uuid4(),
            "provider": provider.name,
            "notify_id": notification.notify_id,
            "payment_id": row.id,
            "event": notification.status,
            "outcome": REFUSED if refused else outcome,
            "payload": _payload(notification.raw, refused, notification),
            "received_at": utcnow(),
        },
    )
    detail: dict[str, Any] = {"status": notification.status, "outcome": outcome}
    if refused:
        detail |= {
            "refused": list(refused),
            "amount_fen": notification.amount_fen,
            "currency": notification.currency[:32],
        }
    audit.record(
        session=session,
        actor=Actor.system(f"provider:{provider.name}"),
        action="pay.payment.notify",
        tenant_id=row.tenant_id,
        target=f"payment:{row.trade_no}",
        outcome="failed" if refused else "success",
        detail=detail,
    )
    return outcome, row.id


#: The outcome kept for a notification (or query answer) refused because a field did not match.
REFUSED = refunds.REFUSED
#: Its outcome when a success was refused and what the provider took is being refunded.
REFUSED_REFUNDED = "refused_refunded"
#: Its outcome when the provider took the money in another currency than the payment's: no
#: adapter refunds in another currency than ours, so an operator refunds it at the provider.
REFUSED_FOR_OPERATOR = "refused_for_operator"


def refused_fields(
    mismatches: Sequence[str],
    *,
    stated_fen: int | None,
    stated_currency: str,
    payment_fen: int,
    payment_currency: str,
) -> tuple[str, ...]:
    """What in a provider's verified word about a trade does not match our payment: the
    adapter's ``mismatches``, plus ``amount`` and ``currency`` when they differ from ours (an
    amount the provider did not state is not a mismatch)."""
    found = list(mismatches)
    if stated_fen is not None and stated_fen != payment_fen:
        found.append("amount")
    if stated_currency != payment_currency:
        found.append("currency")
    return tuple(found)


def refuse_success(
    *,
    session: Session,
    context: PayContext,
    payment: Payment,
    taken_fen: int | None,
    fields: Sequence[str],
) -> str:
    """The provider took money for ``payment`` (locked) on terms that are not the payment's
    (``fields``): pay no bill; end the payment if in flight, and refund all that was taken
    (``taken_fen``, recorded on the payment) automatically, as a late success is (posted as a
    late payment, owed back until refunded).

    Money taken in another currency than the payment's (``currency`` among ``fields``) is
    neither posted (the ledger holds CNY fen) nor refunded here (the adapters refund in CNY
    only, and a refund in our currency would be the wrong money): the kept notification and its
    audit record hold the provider's amount and currency, reconciliation shows the trade as an
    exception, and an operator refunds it at the provider (``REFUSED_FOR_OPERATOR``).

    A payment that succeeded already keeps its success (its bills were paid by a success that
    matched; nothing of it is refunded here). Returns the outcome.
    """
    if payment.status == PaymentStatus.SUCCEEDED.value:
        return REFUSED
    if payment.status in IN_FLIGHT:
        _end_unpaid(session, payment, PaymentStatus.FAILED, utcnow())
    if "currency" in fields:
        return REFUSED_FOR_OPERATOR
    if taken_fen is not None:
        refunds.record_take(session=session, payment=payment, taken_fen=taken_fen)
    refunds.refund_automatically(
        session=session,
        payment=payment,
        provider=context.provider(payment.provider),
        reason=f"the provider's {', '.join(fields)} did not match the payment"[:300],
    )
    return REFUSED_REFUNDED


def _payload(raw: Mapping[str, object], refused: Sequence[str], stated: Any) -> dict[str, Any]:
    """What is kept of a notification: the provider's fields, and (``_refused``) what did not
    match, with the amount and currency the provider stated."""
    payload: dict[str, Any] = json.loads(json.dumps(dict(raw), default=str))
    if refused:
        payload["_refused"] = {
            "fields": list(refused),
            "amount_fen": stated.amount_fen,
            "currency": str(stated.currency)[:32],
        }
    return payload


def _keep_foreign(session: Session, provider: PaymentProvider, notification: Notification) -> str:
    """Keep and audit a verified notification of another merchant's trade: none of its money
    is ours, so it changes no payment of ours and refunds nothing (a refund through our account
    would be of our own trade of that number). Acknowledged: a retry would change nothing."""
    tenant_id = session.scalar(
        select(Payment.tenant_id).where(
            Payment.trade_no == notification.trade_no, Payment.provider == provider.name
        )
    )
    session.add(
        ProviderNotification(
            id=uuid.uuid4(),
            provider=provider.name,
            notify_id=notification.notify_id,
            payment_id=None,
            event=notification.status,
            outcome=REFUSED,
            payload=_payload(
                notification.raw, ("merchant", *notification.mismatches), notification
            ),
        )
    )
    audit.record(
        session=session,
        actor=Actor.system(f"provider:{provider.name}"),
        action="pay.payment.notify",
        tenant_id=tenant_id,
        target=f"payment:{notification.trade_no[:64]}",
        outcome="failed",
        detail={"status": notification.status, "outcome": REFUSED, "refused": ["merchant"]},
    )
    return REFUSED


def apply_success(
    *,
    session: Session,
    context: PayContext,
    payment: Payment,
    provider_trade_no: str | None,
    locked: LockedRows | None = None,
) -> str:
    """The provider took the money: complete the payment, or refund a late one. Idempotent.

    The payment must be locked (:func:`lock_payment`). ``locked``: the rows
    :func:`lock_payment_rows` locked and read with ``payment`` in this transaction (not read
    again here); without it they are read.
    """
    if payment.status == PaymentStatus.SUCCEEDED.value:
        return "already_succeeded"
    if locked is None:
        locked = lock_payment_rows(session, payment.id)[1]
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
    now = utcnow()
    if not locked.bills or any(bill.status != BillStatus.OPEN.value for bill in locked.bills):
        # Another payment paid a bill meanwhile (or it was cancelled): refunded, not lost.
        _end_unpaid(session, payment, PaymentStatus.SUPERSEDED, now)
        refunds.refund_automatically(
            session=session, payment=payment, provider=provider, reason="a bill was paid already"
        )
        return "late_refunded"
    biller = locked.biller
    if biller is None:
        raise BillerNotFound("the payment's biller does not exist")
    session.flush()  # the provider's trade number, before the statements below
    fen = {link.bill_id: link.amount_fen for link in locked.links}
    _complete(
        session,
        context,
        _Paying(
            id=payment.id,
            trade_no=payment.trade_no,
            status=PaymentStatus.SUCCEEDED.value,
            provider=payment.provider,
            biller_id=payment.biller_id,
            tenant_id=payment.tenant_id,
            amount_fen=payment.amount_fen,
            currency=payment.currency,
            finished_at=now,
            provider_trade_no=payment.provider_trade_no,
        ),
        bills=[
            _PaidBill(b.id, fen[b.id], b.bill_number, b.account_number, b.period, b.details)
            for b in locked.bills
        ],
        biller=_PaidBiller(
            biller.id,
            biller.code,
            biller.name_zh,
            biller.name_en,
            biller.tenant_id,
            biller.webhook_url,
        ),
    )
    return "succeeded"


@dataclass(frozen=True)
class _Paying:
    """The payment being completed, as :func:`_complete` writes it (``models.PaymentFacts``)."""

    id: uuid.UUID
    trade_no: str
    status: str
    provider: str
    biller_id: uuid.UUID
    tenant_id: uuid.UUID
    amount_fen: int
    currency: str
    finished_at: datetime
    provider_trade_no: str | None


@dataclass(frozen=True)
class _PaidBill:
    """A bill it pays (``receipts.ReceiptBill``), with the fen paid for it."""

    bill_id: uuid.UUID
    amount_fen: int
    bill_number: str
    account_number: str
    period: str
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class _PaidBiller:
    """Its biller (``receipts.ReceiptBiller``), with where its webhooks go."""

    id: uuid.UUID
    code: str
    name_zh: str
    name_en: str
    tenant_id: uuid.UUID
    webhook_url: str | None


def _complete(
    session: Session,
    context: PayContext,
    payment: _Paying,
    *,
    bills: Sequence[_PaidBill],
    biller: _PaidBiller,
) -> None:
    """Complete a payment in flight whose bills are locked and open: the bills paid (the primary
    key of ``bill_payment`` refuses a second payment of one), the payment succeeded, the ledger
    posted, the receipt signed and the billers' webhooks owed, in SQL statements on the
    session's connection (this is every payment's path)."""
    connection = session.connection()
    sql = _statements(connection.dialect.name)
    now = payment.finished_at
    bill_ids = [bill.bill_id for bill in bills]
    connection.execute(
        sql.insert_bill_payments,
        [{"bill_id": bill_id, "payment_id": payment.id, "paid_at": now} for bill_id in bill_ids],
    )
    connection.execute(
        sql.payment_succeeded,
        {
            "p_id": payment.id,
            "p_status": payment.status,
            "p_finished_at": now,
            "p_provider_trade_no": payment.provider_trade_no,
        },
    )
    connection.execute(sql.links_ended, {"p_payment_id": payment.id})
    connection.execute(sql.bills_paid, {"bill_ids": bill_ids, "p_updated_at": now})
    ledger.post_payment(session=session, payment=payment, posted_by=f"provider:{payment.provider}")
    receipts.store_receipt(
        session=session,
        payment=payment,
        biller=biller,
        bills=[(bill, bill.amount_fen) for bill in sorted(bills, key=lambda b: b.bill_number)],
        signer=context.signer,
    )
    webhooks.enqueue_events(
        session=session,
        biller_id=biller.id,
        webhook_url=biller.webhook_url,
        event="bill.paid",
        payloads=[
            {
                "bill_number": bill.bill_number,
                "account_number": bill.account_number,
                "amount_fen": bill.amount_fen,
                "currency": payment.currency,
                "trade_no": payment.trade_no,
                "paid_at": now.isoformat(),
            }
            for bill in bills
        ],
    )
    # Objects of these rows the session holds are stale now: read afresh when next used.
    for key in (
        identity_key(Payment, payment.id),
        *(identity_key(Bill, bill_id) for bill_id in bill_ids),
        *(identity_key(PaymentBill, (payment.id, bill_id)) for bill_id in bill_ids),
    ):
        held = session.identity_map.get(key)
        if held is not None:
            session.expire(held)


# --- the statements of the hot path ----------------------------------------------------------
#
# Creating a payment and applying its success run for every payment. Through the ORM's unit of
# work they cost about five times the database's own work (bench/pay_throughput.py), so they run
# as SQL statements on the session's connection, built once; the rarer branches (a replay,
# superseding a payment in flight, a late or failed payment, the jobs) use the ORM's objects.

_KEY_LOOKUP = select(Payment.id, Payment.request_hash).where(
    Payment.idempotency_key == bindparam("key")
)


@dataclass(frozen=True)
class _Statements:
    lock_bills: Executable
    biller_exists: Executable
    in_flight: Executable
    insert_payment: Executable
    insert_links: Executable
    payment_pending: Executable
    seen: Executable
    lock_trade_bills: Executable
    lock_payment: Executable
    insert_bill_payments: Executable
    payment_succeeded: Executable
    links_ended: Executable
    bills_paid: Executable
    insert_notification: Executable


@cache
def _statements(dialect: str) -> _Statements:
    """The hot path's statements for ``dialect`` (``ON CONFLICT`` is spelled per dialect)."""
    insert_into = postgresql.insert if dialect == "postgresql" else sqlite.insert
    bill_ids: BindParameter[Any] = bindparam("bill_ids", expanding=True)
    return _Statements(
        lock_bills=select(
            Bill.id,
            Bill.biller_id,
            Bill.bill_number,
            Bill.status,
            Bill.amount_fen,
            Bill.due_date,
            Bill.late_fee_rule,
            Biller.tenant_id,
            Biller.name_zh.label("biller_name_zh"),
        )
        .join(Biller, Biller.id == Bill.biller_id)
        .where(Bill.id.in_(bill_ids))
        .order_by(Bill.id)
        .with_for_update(of=Bill),
        biller_exists=select(Biller.id).where(Biller.id == bindparam("biller_id")),
        in_flight=select(PaymentBill.payment_id)
        .join(Payment, Payment.id == PaymentBill.payment_id)
        .where(
            PaymentBill.bill_id.in_(bill_ids),
            PaymentBill.active,
            Payment.trade_no.in_(bindparam("trade_nos", expanding=True)),
        )
        .distinct(),
        insert_payment=insert_into(Payment).on_conflict_do_nothing().returning(Payment.id),
        insert_links=insert(PaymentBill),
        payment_pending=update(Payment)
        .where(Payment.id == bindparam("p_id"), Payment.version == 1)
        .values(
            status=bindparam("p_status"),
            provider_trade_no=bindparam("p_provider_trade_no"),
            checkout=bindparam("p_checkout"),
            version=2,
        ),
        seen=select(ProviderNotification.payment_id).where(
            ProviderNotification.provider == bindparam("provider"),
            ProviderNotification.notify_id == bindparam("notify_id"),
        ),
        lock_trade_bills=select(
            PaymentBill.bill_id,
            PaymentBill.amount_fen.label("paid_fen"),
            Bill.status,
            Bill.bill_number,
            Bill.account_number,
            Bill.period,
            Bill.details,
            Biller.id.label("biller_id"),
            Biller.code,
            Biller.name_zh,
            Biller.name_en,
            Biller.tenant_id.label("biller_tenant_id"),
            Biller.webhook_url,
        )
        .join(Payment, Payment.id == PaymentBill.payment_id)
        .join(Bill, Bill.id == PaymentBill.bill_id)
        .join(Biller, Biller.id == Bill.biller_id)
        .where(Payment.trade_no == bindparam("trade_no"))
        .order_by(Bill.id)
        .with_for_update(of=Bill),
        lock_payment=select(
            Payment.id,
            Payment.trade_no,
            Payment.status,
            Payment.provider,
            Payment.biller_id,
            Payment.tenant_id,
            Payment.amount_fen,
            Payment.refunded_fen,
            Payment.currency,
            Payment.provider_trade_no,
        )
        .where(Payment.trade_no == bindparam("trade_no"))
        .with_for_update(),
        insert_bill_payments=insert(BillPayment),
        payment_succeeded=update(Payment)
        .where(Payment.id == bindparam("p_id"))
        .values(
            status=bindparam("p_status"),
            finished_at=bindparam("p_finished_at"),
            provider_trade_no=bindparam("p_provider_trade_no"),
            version=Payment.version + 1,
        ),
        links_ended=update(PaymentBill)
        .where(PaymentBill.payment_id == bindparam("p_payment_id"))
        .values(active=False),
        bills_paid=update(Bill)
        .where(Bill.id.in_(bill_ids))
        .values(
            status=BillStatus.PAID.value,
            updated_at=bindparam("p_updated_at"),
            version=Bill.version + 1,
        ),
        insert_notification=insert(ProviderNotification),
    )


# --- jobs: expiry and crash recovery ---------------------------------------------------------


def payments_to_expire(*, session: Session, now: datetime, limit: int = 500) -> Sequence[uuid.UUID]:
    """The payments in flight past their expiry, oldest first (for :func:`expire_payment`)."""
    return session.scalars(
        select(Payment.id)
        .where(Payment.status.in_(IN_FLIGHT), Payment.expires_at < now)
        .order_by(Payment.expires_at, Payment.id)
        .limit(limit)
    ).all()


def expire_payment(
    *, session: Session, context: PayContext, payment_id: uuid.UUID, now: datetime
) -> str | None:
    """End a payment past its expiry, after asking the provider whether it was paid after all;
    what happened (``expired``, or the success's outcome), ``None`` if it was settled meanwhile.

    One payment per unit of work: its locks (and the audit chain's head) are held while the
    provider is asked about it, and only for it.
    """
    payment = lock_payment(session, payment_id)
    if payment is None or payment.status not in IN_FLIGHT or payment.expires_at >= now:
        return None  # a notification settled it meanwhile
    answer = context.provider(payment.provider).query(payment.trade_no)
    if answer.status == "succeeded":
        outcome = _apply_answered_success(session, context, payment, answer)
    else:
        _end_unpaid(session, payment, PaymentStatus.EXPIRED, now)
        outcome = "expired"
    _audit_job(session, "pay.payment.expire", payment, outcome)
    return outcome


def payments_in_flight(*, session: Session, limit: int = 500) -> Sequence[uuid.UUID]:
    """The payments still in flight, oldest first (for :func:`recover_payment`)."""
    return session.scalars(
        select(Payment.id)
        .where(Payment.status.in_(IN_FLIGHT))
        .order_by(Payment.created_at, Payment.id)
        .limit(limit)
    ).all()


def recover_payment(*, session: Session, context: PayContext, payment_id: uuid.UUID) -> str | None:
    """Ask the provider about a payment in flight and apply what it says (after a crash, a lost
    notification); what happened (``still_pending`` changes nothing), ``None`` if it was settled
    meanwhile. Applying a success is idempotent, so a payment is completed exactly once."""
    payment = lock_payment(session, payment_id)
    if payment is None or payment.status not in IN_FLIGHT:
        return None  # a notification settled it meanwhile
    answer = context.provider(payment.provider).query(payment.trade_no)
    if answer.status == "succeeded":
        outcome = _apply_answered_success(session, context, payment, answer)
    elif answer.status in ("failed", "closed"):
        _end_unpaid(session, payment, PaymentStatus.FAILED, utcnow())
        outcome = "failed"
    else:
        return "still_pending"
    _audit_job(session, "pay.payment.recover", payment, outcome)
    return outcome


def _apply_answered_success(
    session: Session, context: PayContext, payment: Payment, answer: TradeQuery
) -> str:
    """The provider's query answer says ``payment`` (locked) was paid: apply the success, or,
    when the answer does not match the payment, refuse it as a notification would be
    (:func:`refuse_success`), keeping the answer as ``query:<trade_no>`` and auditing it."""
    refused = refused_fields(
        answer.mismatches,
        stated_fen=answer.amount_fen,
        stated_currency=answer.currency,
        payment_fen=payment.amount_fen,
        payment_currency=payment.currency,
    )
    if not refused:
        return apply_success(
            session=session,
            context=context,
            payment=payment,
            provider_trade_no=answer.provider_trade_no,
        )
    if answer.provider_trade_no and not payment.provider_trade_no:
        payment.provider_trade_no = answer.provider_trade_no
    outcome = refuse_success(
        session=session,
        context=context,
        payment=payment,
        taken_fen=answer.amount_fen,
        fields=refused,
    )
    notify_id = f"query:{payment.trade_no}"
    kept = session.scalar(
        select(ProviderNotification.id).where(
            ProviderNotification.provider == payment.provider,
            ProviderNotification.notify_id == notify_id,
        )
    )
    if kept is None:
        session.add(
            ProviderNotification(
                id=uuid.uuid4(),
                provider=payment.provider,
                notify_id=notify_id,
                payment_id=payment.id,
                event=answer.status,
                outcome=REFUSED,
                payload=_payload({"query": answer.trade_no}, refused, answer),
            )
        )
    audit.record(
        session=session,
        actor=SYSTEM,
        action="pay.payment.refuse",
        tenant_id=payment.tenant_id,
        target=f"payment:{payment.trade_no}",
        outcome="failed",
        detail={
            "refused": list(refused),
            "amount_fen": answer.amount_fen,
            "currency": answer.currency[:32],
            "outcome": outcome,
        },
    )
    return outcome


def _audit_job(session: Session, action: str, payment: Payment, outcome: str) -> None:
    audit.record(
        session=session,
        actor=SYSTEM,
        action=action,
        tenant_id=payment.tenant_id,
        target=f"payment:{payment.trade_no}",
        detail={"outcome": outcome},
    )


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
