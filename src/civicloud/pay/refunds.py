"""Refunds: full or partial, never more than was paid in total, idempotent, through the provider.

Never more than was paid. A refund first reserves its amount with one conditional statement,
``UPDATE pay_payment SET refunded_fen = refunded_fen + :x WHERE id = :id AND refunded_fen <=
COALESCE(taken_fen, amount_fen) - :x AND status = 'succeeded'`` (written so that it cannot
overflow a BIGINT), and the ``refund_bound`` CHECK stands behind it. What was paid is the
payment's amount, or, for a success refused for another amount, what the provider says it took
(``taken_fen``, which :func:`record_take` sets). PostgreSQL re-evaluates the condition on the row
as the previous writer committed it, SQLite runs one writer at a time: two concurrent refunds
cannot both pass. ``refunded_fen`` is what the payment's pending and succeeded refunds hold; a
refund the provider refuses gives its reservation back.

Idempotent. ``refund.idempotency_key`` is unique and ``request_hash`` records what was asked
(payment, amount, reason): the same key and request return the first refund, the same key with
another request raises ``IdempotencyKeyReused``. Two requests racing with one key meet the
unique constraint in a savepoint; the loser returns the winner's refund.

The provider is called inside the request's transaction, after the reservation. If the provider
refunds and our commit then fails, nothing of ours survives, but the money left: so the
``refund_no`` we send is derived from the idempotency key (``RF`` + 30 hex digits of its
SHA-256), and the provider deduplicates by it. A retry with the same key builds the same
``refund_no``, the provider answers with the refund it already made instead of making a second,
and the retry records it: retries converge. A provider that raises or answers ``pending`` leaves
the refund ``pending`` with its amount still reserved (the money may be gone); repeating the
request with the same key, or :func:`resume_refund` from a job, asks the provider again with the
same ``refund_no``. Should no retry come, the provider's statement still lists the refund and
reconciliation reports it (``missing_ours``).

Confirmed by notification, too. A provider that notifies refunds (WeChat Pay's ``REFUND.*``
callbacks) has :func:`apply_refund_notification` end the pending refund it names, through the
same code as the provider's answer: a success is posted to the ledger once (``journal_entry``
is unique per refund), a failure gives the reservation back. Whichever comes first, the answer
or the notification, the other finds the refund ended and leaves it; should both record a
success, the second posting meets the unique constraint and returns the first entry.

Automatic refunds (:func:`refund_automatically`) give back a success that arrived after its
payment expired or was superseded, or that was refused for not matching the payment: the money
taken (``taken_fen`` when the provider took another amount, else the payment's amount) is posted
as a ``late_payment`` (owed back to the citizen), and its refund, keyed by the payment and an
attempt number, refunds all of it; the provider is told the trade's total it stated.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from civicloud.core import audit
from civicloud.core.actor import Actor, authorize
from civicloud.core.db import new_id, utcnow
from civicloud.core.errors import Conflict, InvalidInput
from civicloud.core.tenants import resolve_tenant
from civicloud.core.text import SPOOFING_CHARACTER, invisible_character
from civicloud.pay import ledger, reconciliation, webhooks
from civicloud.pay.backends import Notification, PaymentProvider, RefundOutcome
from civicloud.pay.errors import (
    IdempotencyKeyReused,
    InvalidNotification,
    PaymentNotFound,
    PaymentNotRefundable,
    RefundExceedsPayment,
)
from civicloud.pay.models import (
    Bill,
    Biller,
    Payment,
    PaymentBill,
    PaymentStatus,
    ProviderNotification,
    Refund,
    RefundStatus,
)

PERMISSION = "pay.refund"
#: Who automatic refunds are audited as.
AUTOMATIC = Actor.system("pay-automatic-refund")
OPERATOR, AUTOMATIC_ORIGIN = "operator", "automatic"
#: The prefix of automatic refunds' keys, which no request may use.
AUTOMATIC_KEY = "automatic:"
#: The outcome kept for a provider's word refused because a field did not match the payment.
REFUSED = "refused"
#: Outcomes of a refund notification besides the refund's new status.
DUPLICATE, CONTRADICTED = "duplicate", "contradicted"
log = logging.getLogger(__name__)


def refund_no_for(idempotency_key: str) -> str:
    """Our refund number for ``idempotency_key``: the same key always gives the same number."""
    return "RF" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:30].upper()


def request_hash(*, payment_id: uuid.UUID, amount_fen: int, reason: str) -> str:
    """SHA-256 of the canonical request, to refuse a reused key with a different request."""
    body = {"payment_id": str(payment_id), "amount_fen": amount_fen, "reason": reason}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def get_refund_by_key(*, session: Session, idempotency_key: str) -> Refund | None:
    """The refund made under ``idempotency_key``, or ``None`` (no access check)."""
    return session.scalars(
        select(Refund).where(Refund.idempotency_key == idempotency_key)
    ).one_or_none()


def request_refund(
    *,
    session: Session,
    actor: Actor,
    payment_id: uuid.UUID,
    amount_fen: int,
    reason: str,
    idempotency_key: str,
    provider: PaymentProvider,
) -> Refund:
    """Refund part or all of a succeeded payment; repeating the key returns the first refund."""
    amount_fen = ledger.check_amount(amount_fen)
    reason = check_reason(reason)
    key = _text(idempotency_key, "idempotency_key", 200)
    if key.startswith(AUTOMATIC_KEY):
        raise InvalidInput(
            "idempotency keys starting %(prefix)s are reserved",
            params={"prefix": repr(AUTOMATIC_KEY)},
            field="idempotency_key",
        )
    payment = session.get(Payment, payment_id)
    tenant = resolve_tenant(session=session, tenant_id=payment.tenant_id) if payment else None
    if payment is None or tenant is None:
        raise PaymentNotFound("no such payment")
    authorize(actor, PERMISSION, path=tenant.path, what="payment")
    digest = request_hash(payment_id=payment.id, amount_fen=amount_fen, reason=reason)
    existing = get_refund_by_key(session=session, idempotency_key=key)
    if existing is not None:
        return _replay(session, existing, digest, payment, provider, actor)
    if provider.name != payment.provider:
        raise InvalidInput(
            "payment %(trade_no)s was paid through %(provider)s",
            params={"trade_no": payment.trade_no, "provider": payment.provider},
        )
    if payment.status != PaymentStatus.SUCCEEDED.value:
        raise PaymentNotRefundable(
            "payment %(trade_no)s is %(status_label)s",
            params={"trade_no": payment.trade_no, "status_label": payment.status},
        )
    refund, created = _reserve(
        session,
        payment=payment,
        amount_fen=amount_fen,
        reason=reason,
        key=key,
        digest=digest,
        origin=OPERATOR,
        statuses=(PaymentStatus.SUCCEEDED.value,),
    )
    if not created:
        return _replay(session, refund, digest, payment, provider, actor)
    _ask_provider(session, refund, payment, provider, actor, action="pay.refund.request")
    return refund


def record_take(*, session: Session, payment: Payment, taken_fen: int) -> bool:
    """Record that the provider took ``taken_fen`` (in the payment's currency) for ``payment``
    (locked, ended unpaid), whose success was refused: all of it is to be refunded and posted.

    The provider's first word stands: once the payment has a take, or an automatic refund (its
    late payment posted for the amount known then), nothing changes. Returns whether recorded.
    """
    if type(taken_fen) is not int or not 0 < taken_fen <= ledger.MAX_FEN:
        return False
    if payment.taken_fen is not None or payment.status not in ledger.ENDED_UNPAID:
        return False
    asked = session.scalar(
        select(func.count())
        .select_from(Refund)
        .where(Refund.payment_id == payment.id, Refund.origin == AUTOMATIC_ORIGIN)
    )
    if asked:
        return False
    if taken_fen != payment.amount_fen:
        payment.taken_fen = taken_fen
    return True


def refundable_fen(payment: Payment) -> int:
    """What may be refunded of ``payment`` in all: what the provider took."""
    return payment.amount_fen if payment.taken_fen is None else payment.taken_fen


def refund_automatically(
    *,
    session: Session,
    payment: Payment,
    provider: PaymentProvider,
    reason: str,
) -> Refund:
    """Refund all the provider took for a payment that paid no bill (a late success of an
    expired or superseded payment, or a success refused for not matching it: ``taken_fen``);
    idempotent per payment. The provider is told the trade's total it stated.
    """
    reason = check_reason(reason)
    attempts = session.scalars(
        select(Refund)
        .where(Refund.payment_id == payment.id, Refund.origin == AUTOMATIC_ORIGIN)
        .order_by(Refund.created_at.desc(), Refund.id)
    ).all()
    latest = attempts[0] if attempts else None
    if latest is not None and latest.status == RefundStatus.SUCCEEDED.value:
        return latest
    # The trade's total as the provider knows it (it took another amount than the payment's).
    total = payment.taken_fen
    if latest is not None and latest.status == RefundStatus.PENDING.value:
        _ask_provider(
            session, latest, payment, provider, AUTOMATIC, action="pay.refund.resume", total=total
        )
        return latest
    if payment.status not in ledger.ENDED_UNPAID:
        raise PaymentNotRefundable(
            "payment %(trade_no)s is %(status_label)s",
            params={"trade_no": payment.trade_no, "status_label": payment.status},
        )
    if provider.name != payment.provider:
        raise InvalidInput(
            "payment %(trade_no)s was paid through %(provider)s",
            params={"trade_no": payment.trade_no, "provider": payment.provider},
        )
    left = refundable_fen(payment) - payment.refunded_fen
    if left <= 0:
        raise PaymentNotRefundable(
            "payment %(trade_no)s is refunded already", params={"trade_no": payment.trade_no}
        )
    # The provider took the money: it is owed back to the citizen until the refund succeeds.
    ledger.post_late_payment(session=session, payment=payment, posted_by=AUTOMATIC.name)
    # A failed attempt gave its reservation back; the next one gets its own key and refund_no.
    key = f"{AUTOMATIC_KEY}{payment.id}:{len(attempts) + 1}"
    refund, created = _reserve(
        session,
        payment=payment,
        amount_fen=left,
        reason=reason,
        key=key,
        digest=request_hash(payment_id=payment.id, amount_fen=left, reason=key),
        origin=AUTOMATIC_ORIGIN,
        statuses=ledger.ENDED_UNPAID,
    )
    if refund.payment_id != payment.id:
        raise Conflict("the key %(key)s belongs to another payment's refund", params={"key": key})
    if created:
        _ask_provider(
            session,
            refund,
            payment,
            provider,
            AUTOMATIC,
            action="pay.refund.automatic",
            total=total,
        )
    return refund


def resume_refund(*, session: Session, refund_id: uuid.UUID, provider: PaymentProvider) -> Refund:
    """Ask the provider again about a pending refund (same refund_no) and record its answer."""
    found = session.get(Refund, refund_id)
    # Locked as a refund's notification locks them: the payment, then the refund, read afresh.
    payment = (
        session.get(Payment, found.payment_id, with_for_update=True, populate_existing=True)
        if found
        else None
    )
    refund = (
        session.get(Refund, refund_id, with_for_update=True, populate_existing=True)
        if payment
        else None
    )
    if refund is None or payment is None:
        raise PaymentNotFound("no such refund")
    if refund.status == RefundStatus.PENDING.value:
        _ask_provider(session, refund, payment, provider, AUTOMATIC, action="pay.refund.resume")
    return refund


def refunds_to_resume(
    *, session: Session, older_than: datetime, limit: int = 100
) -> Sequence[tuple[uuid.UUID, str]]:
    """The refunds still pending that were asked for before ``older_than``, oldest first, each
    with its payment's provider (for :func:`resume_refund`, one per unit of work)."""
    rows = session.execute(
        select(Refund.id, Payment.provider)
        .join(Payment, Payment.id == Refund.payment_id)
        .where(Refund.status == RefundStatus.PENDING.value, Refund.created_at < older_than)
        .order_by(Refund.created_at, Refund.id)
        .limit(limit)
    ).all()
    return [(row.id, row.provider) for row in rows]


# --- the provider's refund notifications ---------------------------------------------------


def apply_refund_notification(
    *, session: Session, provider: PaymentProvider, notification: Notification
) -> tuple[str, uuid.UUID | None]:
    """Apply a verified refund notification once (by its id); returns the outcome and payment.

    The refund is found by our ``refund_no`` and must be of the notification's trade, at this
    provider, for the same amount and currency, of a trade of the total the provider took, with
    nothing else in it that does not match (``Notification.mismatches``; the payer's own share
    of the refund, less when a coupon paid part, is not compared): otherwise ``InvalidNotification`` and nothing changes (the provider
    retries; a refund whose request has not committed yet is found then). A refund notification
    takes no money, so refusing one loses none: the refund stays pending, the job asks the
    provider about it again, and the provider's statement shows what it did. A pending
    refund then succeeds (posted to the ledger exactly as when the provider's answer says so)
    or fails (its reservation given back). A refund that ended already is not changed again,
    except a failed one the provider says succeeded after all (WeChat's ``ABNORMAL`` refunds
    can be retried to another account): the money left, so it is reserved and posted again if
    the payment still has room, and otherwise left to reconciliation. The notification is kept
    (``ProviderNotification``) and audited, whatever its outcome.
    """
    refund_no = notification.refund_no
    if notification.kind != "refund" or not refund_no:
        raise InvalidNotification(
            "%(provider)s: not a refund notification", params={"provider": provider.name}
        )
    seen = _seen_notification(session, provider.name, notification.notify_id)
    if seen is not None:
        return DUPLICATE, seen.payment_id
    found = session.execute(
        select(Refund.id, Refund.payment_id).where(Refund.refund_no == refund_no)
    ).first()
    if found is None:
        raise InvalidNotification(
            "no refund %(refund_no)s at %(provider)s",
            params={"refund_no": repr(refund_no), "provider": provider.name},
        )
    # The payment first, then its refund: the order every change of a refund takes.
    payment = session.get(Payment, found.payment_id, with_for_update=True, populate_existing=True)
    refund = session.get(Refund, found.id, with_for_update=True, populate_existing=True)
    # Asked again under the locks: a twin of this notification that got them first has
    # committed its row by now.
    seen = _seen_notification(session, provider.name, notification.notify_id)
    if seen is not None:
        return DUPLICATE, seen.payment_id
    if (
        payment is None
        or refund is None
        or payment.provider != provider.name
        or payment.trade_no != notification.trade_no
        or (
            notification.provider_trade_no
            and payment.provider_trade_no
            and notification.provider_trade_no != payment.provider_trade_no
        )
    ):
        raise InvalidNotification(
            "refund %(refund_no)s is not of trade %(trade_no)s at %(provider)s",
            params={
                "refund_no": repr(refund_no),
                "trade_no": repr(notification.trade_no),
                "provider": provider.name,
            },
        )
    if notification.amount_fen != refund.amount_fen:
        raise InvalidNotification(
            "the notification says %(notified)s; refund %(refund_no)s is %(amount)s",
            params={
                "notified_fen": notification.amount_fen,
                "refund_no": refund_no,
                "amount_fen": refund.amount_fen,
            },
        )
    refused = [
        *notification.mismatches,
        *(["currency"] if notification.currency != refund.currency else []),
        *(
            ["total"]
            if notification.trade_total_fen not in (None, _trade_total(session, refund, payment))
            else []
        ),
    ]
    if refused:
        raise InvalidNotification(
            "refund %(refund_no)s: the notification's %(fields)s does not match",
            params={"refund_no": refund_no, "fields": ", ".join(refused)},
        )
    actor = Actor.system(f"provider:{provider.name}")
    outcome = _apply_refund_status(session, refund, payment, notification, actor=actor)
    session.add(
        ProviderNotification(
            id=uuid.uuid4(),
            provider=provider.name,
            notify_id=notification.notify_id,
            payment_id=payment.id,
            event=f"refund:{notification.status}",
            outcome=outcome,
            payload=json.loads(json.dumps(dict(notification.raw), default=str)),
        )
    )
    audit.record(
        session=session,
        actor=actor,
        action="pay.refund.notify",
        tenant_id=payment.tenant_id,
        target=f"payment:{payment.trade_no}",
        outcome="failed" if outcome == CONTRADICTED else "success",
        detail={
            "refund_no": refund.refund_no,
            "amount_fen": refund.amount_fen,
            "notified": notification.status,
            "status": refund.status,
            "outcome": outcome,
        },
    )
    return outcome, payment.id


def _seen_notification(
    session: Session, provider_name: str, notify_id: str
) -> ProviderNotification | None:
    return session.scalars(
        select(ProviderNotification).where(
            ProviderNotification.provider == provider_name,
            ProviderNotification.notify_id == notify_id,
        )
    ).first()


def _apply_refund_status(
    session: Session,
    refund: Refund,
    payment: Payment,
    notification: Notification,
    *,
    actor: Actor,
) -> str:
    """What the notified status does to ``refund`` (locked, with its payment); the outcome."""
    if notification.status not in ("succeeded", "failed", "closed"):
        return f"ignored:{notification.status}"
    said = RefundOutcome(
        status="succeeded" if notification.status == "succeeded" else "failed",
        provider_refund_no=notification.provider_refund_no,
        detail=f"notification {notification.notify_id}"[:300],
    )
    if refund.status == RefundStatus.PENDING.value:
        _record_outcome(session, refund, payment, said, actor=actor)
        return refund.status
    if refund.status == said.status:
        return f"already_{refund.status}"
    if (
        said.status == "succeeded"
        # An operator's adjustment explained this money already: posting it too would count
        # it twice.
        and not reconciliation.adjusted_for_refund(session=session, refund_id=refund.id)
        and _reserve_again(session, refund, payment)
    ):
        refund.status = RefundStatus.PENDING.value
        _record_outcome(session, refund, payment, said, actor=actor)
        return "succeeded_after_failure"
    # The provider contradicts what we recorded and the money cannot follow it: reconciliation
    # shows the refund to an operator (audited as failed).
    log.warning(
        "refund %s is %s but %s notified %s",
        refund.refund_no,
        refund.status,
        payment.provider,
        notification.status,
    )
    return CONTRADICTED


def _reserve_again(session: Session, refund: Refund, payment: Payment) -> bool:
    """Reserve a failed refund's amount again, if the payment still has room for it."""
    statuses = (
        ledger.ENDED_UNPAID
        if refund.origin == AUTOMATIC_ORIGIN
        else (PaymentStatus.SUCCEEDED.value,)
    )
    reserved = session.execute(
        update(Payment)
        .where(
            Payment.id == payment.id,
            Payment.status.in_(statuses),
            Payment.refunded_fen <= _bound() - refund.amount_fen,
        )
        .values(refunded_fen=Payment.refunded_fen + refund.amount_fen)
        .returning(Payment.refunded_fen)
        .execution_options(synchronize_session="fetch")
    ).scalar_one_or_none()
    return reserved is not None


def list_refunds(*, session: Session, actor: Actor, payment_id: uuid.UUID) -> list[Refund]:
    """The refunds of one payment, oldest first (``pay.payment.read`` at its tenant)."""
    payment = session.get(Payment, payment_id)
    tenant = resolve_tenant(session=session, tenant_id=payment.tenant_id) if payment else None
    if payment is None or tenant is None:
        raise PaymentNotFound("no such payment")
    authorize(actor, "pay.payment.read", path=tenant.path, what="payment")
    return list(
        session.scalars(
            select(Refund)
            .where(Refund.payment_id == payment_id)
            .order_by(Refund.created_at, Refund.id)
        )
    )


def check_reason(reason: object) -> str:
    """A refund's reason as it is kept (trimmed), or ``InvalidInput`` saying why it cannot be
    one: empty, over 300 characters, or with a character that disguises what a page shows."""
    return _text(reason, "reason", 300)


def _text(value: object, what: str, longest: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(
            "%(what_label)s must not be empty", params={"what_label": what}, field=what
        )
    value = value.strip()
    # Shown on the refund's confirmation and in the console: nothing that makes a page show
    # something else (a direction override, a zero-width or filler character), said as such.
    hidden = invisible_character(value)
    if hidden is not None:
        raise InvalidInput(
            SPOOFING_CHARACTER, params={"what_label": what, "char": hidden}, field=what
        )
    if len(value) > longest or not value.isprintable():
        raise InvalidInput(
            "%(what_label)s must be at most %(count)s printable characters",
            params={"what_label": what, "count": longest},
            field=what,
        )
    return value


def _replay(
    session: Session,
    refund: Refund,
    digest: str,
    payment: Payment,
    provider: PaymentProvider,
    actor: Actor,
) -> Refund:
    """The refund an earlier request with the same key made, asked about again if still pending."""
    if refund.request_hash != digest or refund.payment_id != payment.id:
        raise IdempotencyKeyReused("this idempotency key was used for another refund request")
    if refund.status == RefundStatus.PENDING.value:
        # Locked and read afresh, the payment first, as every change of a refund does: the job
        # or the provider's notification may be ending it at this moment.
        locked = session.get(Payment, payment.id, with_for_update=True, populate_existing=True)
        session.refresh(refund, with_for_update=True)
        if locked is not None and refund.status == RefundStatus.PENDING.value:
            _ask_provider(session, refund, locked, provider, actor, action="pay.refund.resume")
    return refund


def _reserve(
    session: Session,
    *,
    payment: Payment,
    amount_fen: int,
    reason: str,
    key: str,
    digest: str,
    origin: str,
    statuses: tuple[str, ...],
) -> tuple[Refund, bool]:
    """Insert a pending refund and reserve its amount; ``created`` is False for a racing twin."""
    if amount_fen > refundable_fen(payment):
        # Checked first so that the arithmetic below stays far from BIGINT's limit.
        left = refundable_fen(payment) - payment.refunded_fen
        raise RefundExceedsPayment(
            "%(asked)s is more than the %(refundable)s that can still be refunded",
            params={"asked_fen": amount_fen, "refundable_fen": left},
            refundable_fen=left,
        )
    refund = Refund(
        id=new_id(),
        refund_no=refund_no_for(key),
        payment_id=payment.id,
        amount_fen=amount_fen,
        currency=payment.currency,
        idempotency_key=key,
        request_hash=digest,
        reason=reason,
        origin=origin,
        status=RefundStatus.PENDING.value,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(refund)
            # Flushed inside the savepoint: a concurrent request with the same key fails here
            # (before reserving anything), and the refund that won is returned instead.
            session.flush()
            reserved = session.execute(
                update(Payment)
                .where(
                    Payment.id == payment.id,
                    Payment.status.in_(statuses),
                    Payment.refunded_fen <= _bound() - amount_fen,
                )
                .values(refunded_fen=Payment.refunded_fen + amount_fen)
                .returning(Payment.refunded_fen)
                .execution_options(synchronize_session="fetch")
            ).scalar_one_or_none()
            if reserved is None:
                # Raised inside the savepoint, which takes the refund row back with it.
                session.refresh(payment)
                if payment.status not in statuses:
                    raise PaymentNotRefundable(
                        "payment %(trade_no)s is %(status_label)s",
                        params={"trade_no": payment.trade_no, "status_label": payment.status},
                    )
                left = refundable_fen(payment) - payment.refunded_fen
                raise RefundExceedsPayment(
                    "%(asked)s is more than the %(refundable)s that can still be refunded",
                    params={"asked_fen": amount_fen, "refundable_fen": left},
                    refundable_fen=left,
                )
    except IntegrityError:
        winner = get_refund_by_key(session=session, idempotency_key=key)
        if winner is None:
            raise
        return winner, False
    return refund, True


def _bound() -> ColumnElement[int]:
    """What may be refunded of a payment in all, in SQL (as ``refund_bound`` says)."""
    return func.coalesce(Payment.taken_fen, Payment.amount_fen)


def _ask_provider(
    session: Session,
    refund: Refund,
    payment: Payment,
    provider: PaymentProvider,
    actor: Actor,
    *,
    action: str,
    total: int | None = None,
) -> None:
    """Ask the provider for ``refund`` (deduplicated by its refund_no), record and post the answer.

    ``total``: the trade's total as the provider knows it, when known to differ from the
    payment's amount (else :func:`_trade_total` finds it)."""
    if provider.name != payment.provider:
        raise InvalidInput(
            "payment %(trade_no)s was paid through %(provider)s",
            params={"trade_no": payment.trade_no, "provider": payment.provider},
        )
    try:
        outcome = provider.refund(
            trade_no=payment.trade_no,
            refund_no=refund.refund_no,
            amount_fen=refund.amount_fen,
            total_fen=total or _trade_total(session, refund, payment),
            reason=refund.reason,
        )
    except Exception as exc:
        # The provider may or may not have refunded: keep the reservation, stay pending, and
        # let a retry with the same refund_no find out.
        log.warning("refund %s: provider %s failed: %r", refund.refund_no, provider.name, exc)
        outcome = RefundOutcome(status="pending", detail=f"provider error: {exc!r}"[:300])
    _record_outcome(session, refund, payment, outcome, actor=actor)
    audit.record(
        session=session,
        actor=actor,
        action=action,
        tenant_id=payment.tenant_id,
        target=f"payment:{payment.trade_no}",
        outcome="failed" if refund.status == RefundStatus.FAILED.value else "success",
        detail={
            "refund_no": refund.refund_no,
            "amount_fen": refund.amount_fen,
            "status": refund.status,
            "origin": refund.origin,
            # What the refund form promises: its reason is shown in the audit log.
            "reason": refund.reason,
            "provider_detail": outcome.detail[:300],
        },
    )


def _trade_total(session: Session, refund: Refund, payment: Payment) -> int:
    """The trade's total as the provider knows it: the payment's amount, unless this is the
    automatic refund of a success refused for another amount, whose kept notification (or
    query answer) says what the provider took."""
    if refund.origin != AUTOMATIC_ORIGIN:
        return payment.amount_fen
    if payment.taken_fen is not None:
        return payment.taken_fen
    # A take refused before taken_fen was recorded: its kept notification says what it was.
    payloads = session.scalars(
        select(ProviderNotification.payload).where(
            ProviderNotification.payment_id == payment.id,
            ProviderNotification.outcome == REFUSED,
        )
    ).all()
    for payload in payloads:
        stated = payload.get("_refused") if isinstance(payload, dict) else None
        if not isinstance(stated, dict) or "amount" not in stated.get("fields", ()):
            continue
        taken = stated.get("amount_fen")
        if type(taken) is int and taken > 0:
            return taken
    return payment.amount_fen


def _record_outcome(
    session: Session, refund: Refund, payment: Payment, outcome: RefundOutcome, *, actor: Actor
) -> None:
    """Record the provider's word on a pending refund: succeeded (posted to the ledger, and the
    reconciliation items that only waited for it resolved), failed (its reservation given back)
    or still pending. The one place a refund ends, whether the provider's answer, a later query
    or its notification says so."""
    now = utcnow()
    if outcome.provider_refund_no:
        refund.provider_refund_no = outcome.provider_refund_no[:64]
    if outcome.status not in ("succeeded", "failed"):
        return
    session.flush()
    # Ended only from pending, by one conditional UPDATE: a second answer about the same refund
    # (a retry and the job, say) finds it ended and moves no money again.
    ended = session.execute(
        update(Refund)
        .where(Refund.id == refund.id, Refund.status == RefundStatus.PENDING.value)
        .values(status=outcome.status, finished_at=now)
        .returning(Refund.id)
        .execution_options(synchronize_session=False)
    ).first()
    session.refresh(refund)
    if ended is None:
        return
    if outcome.status == "succeeded":
        entry = ledger.post_refund(session=session, refund=refund, posted_by=actor.name)
        reconciliation.resolve_by_refund(session=session, actor=actor, refund=refund, entry=entry)
        if refund.origin != AUTOMATIC_ORIGIN:
            # A late payment's automatic refund is left out: it paid no bill, and the biller
            # was never told of it.
            _owe_refund_webhooks(session, refund, payment, now)
    else:
        # Give the reservation back: the money never left.
        session.execute(
            update(Payment)
            .where(Payment.id == payment.id, Payment.refunded_fen >= refund.amount_fen)
            .values(refunded_fen=Payment.refunded_fen - refund.amount_fen)
            .execution_options(synchronize_session="fetch")
        )


def _owe_refund_webhooks(session: Session, refund: Refund, payment: Payment, now: datetime) -> None:
    """Tell the biller, once per bill of the payment, that money paid for it went back."""
    biller = session.get(Biller, payment.biller_id)
    if biller is None or not biller.webhook_url:
        return
    bills = session.execute(
        select(Bill.bill_number, Bill.account_number, PaymentBill.amount_fen)
        .join(PaymentBill, PaymentBill.bill_id == Bill.id)
        .where(PaymentBill.payment_id == payment.id)
        .order_by(Bill.bill_number)
    ).all()
    webhooks.enqueue_events(
        session=session,
        biller_id=biller.id,
        webhook_url=biller.webhook_url,
        event="bill.refunded",
        payloads=[
            {
                "bill_number": bill.bill_number,
                "account_number": bill.account_number,
                # What the bill was paid, and what this refund and all of the payment's
                # refunds gave back (a refund is of the payment, which may cover many bills).
                "paid_fen": int(bill.amount_fen),
                "refund_no": refund.refund_no,
                "refund_fen": refund.amount_fen,
                "payment_refunded_fen": payment.refunded_fen,
                "payment_amount_fen": payment.amount_fen,
                "currency": refund.currency,
                "trade_no": payment.trade_no,
                "refunded_at": now.isoformat(),
            }
            for bill in bills
        ],
    )


def refunded_total(*, session: Session, payment_id: uuid.UUID) -> int:
    """What the payment's succeeded refunds gave back, in fen."""
    total = session.scalar(
        select(func.coalesce(func.sum(Refund.amount_fen), 0)).where(
            Refund.payment_id == payment_id, Refund.status == RefundStatus.SUCCEEDED.value
        )
    )
    return int(total or 0)
