"""A provider's refund notifications: the refund they name ends once, posted as by the provider's
answer, and anything that does not fit the refund is refused with nothing changed."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM
from tests.factories.pay_money import FakeProvider, make_payment, problems_about, statement

from civicloud.core.audit import AuditRecord
from civicloud.pay import ledger, reconciliation, refunds
from civicloud.pay.backends import Notification
from civicloud.pay.errors import InvalidNotification, ReconciliationRefundPending
from civicloud.pay.models import (
    Biller,
    JournalEntry,
    Payment,
    ProviderNotification,
    ReconciliationItem,
    Refund,
)


def _pending_refund(
    session: Session, biller: Biller, provider: FakeProvider, amount: int = 3_000
) -> tuple[Payment, Refund]:
    """A paid payment of 100 yuan and a refund of it the provider has not confirmed yet."""
    payment = make_payment(session, biller, amount_fen=10_000, provider=provider.name)
    provider.mode = "pending"
    refund = refunds.request_refund(
        session=session,
        actor=SYSTEM,
        payment_id=payment.id,
        amount_fen=amount,
        reason="overcharged",
        idempotency_key=uuid.uuid4().hex,
        provider=provider,
    )
    provider.mode = "succeeded"
    assert refund.status == "pending"
    return payment, refund


def _notice(
    payment: Payment,
    refund: Refund,
    *,
    status: str = "succeeded",
    amount: int | None = None,
    notify_id: str | None = None,
    trade_no: str | None = None,
    refund_no: str | None = None,
) -> Notification:
    return Notification(
        notify_id=notify_id or f"EV-{uuid.uuid4().hex}",
        trade_no=trade_no or payment.trade_no,
        status=status,  # type: ignore[arg-type]
        amount_fen=refund.amount_fen if amount is None else amount,
        provider_trade_no=payment.provider_trade_no,
        occurred_at=None,
        raw={"event_type": "REFUND.SUCCESS"},
        kind="refund",
        refund_no=refund_no or refund.refund_no,
        provider_refund_no="PR-NOTIFIED",
    )


def _apply(session: Session, provider: FakeProvider, notice: Notification) -> str:
    outcome, _ = refunds.apply_refund_notification(
        session=session, provider=provider, notification=notice
    )
    return outcome


def _postings(session: Session, refund: Refund) -> list[str]:
    return list(
        session.scalars(select(JournalEntry.kind).where(JournalEntry.reference == str(refund.id)))
    )


def _kept(session: Session, payment: Payment) -> list[tuple[str, str]]:
    return [
        (row.event, row.outcome)
        for row in session.scalars(
            select(ProviderNotification)
            .where(ProviderNotification.payment_id == payment.id)
            .order_by(ProviderNotification.received_at, ProviderNotification.id)
        )
    ]


def test_a_success_ends_the_pending_refund_once_posted_and_audited(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a refund the provider has not confirmed yet
    payment, refund = _pending_refund(db_session, biller, provider)
    assert _postings(db_session, refund) == []
    notice = _notice(payment, refund)
    # when its success is notified, then again (the provider retries), then by another id
    first = _apply(db_session, provider, notice)
    again = _apply(db_session, provider, notice)
    other = _apply(db_session, provider, _notice(payment, refund))
    # then the refund succeeded once, posted once, and each notification is kept once
    assert (first, again, other) == ("succeeded", "duplicate", "already_succeeded")
    assert (refund.status, refund.provider_refund_no) == ("succeeded", "PR-NOTIFIED")
    assert refund.finished_at is not None
    assert _postings(db_session, refund) == ["refund"]
    assert _kept(db_session, payment) == [
        ("refund:succeeded", "succeeded"),
        ("refund:succeeded", "already_succeeded"),
    ]
    assert payment.refunded_fen == 3_000
    audited = db_session.scalars(
        select(AuditRecord.actor).where(
            AuditRecord.action == "pay.refund.notify",
            AuditRecord.target == f"payment:{payment.trade_no}",
        )
    ).all()
    assert audited == [f"system:provider:{provider.name}"] * 2
    assert problems_about(ledger.check_ledger(session=db_session), [payment.id, refund.id]) == []


def test_a_failure_gives_the_reservation_back(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a pending refund holding 30 yuan of the payment
    payment, refund = _pending_refund(db_session, biller, provider)
    # when the provider notifies that it did not go through
    outcome = _apply(db_session, provider, _notice(payment, refund, status="failed"))
    # then it failed, nothing is posted, and the 30 yuan may be refunded again
    assert (outcome, refund.status) == ("failed", "failed")
    assert _postings(db_session, refund) == []
    db_session.refresh(payment)
    assert payment.refunded_fen == 0
    assert problems_about(ledger.check_ledger(session=db_session), [payment.id, refund.id]) == []


@pytest.mark.parametrize(
    "change",
    [
        {"refund_no": "RF-NOT-OURS"},
        {"trade_no": "T-another-trade"},
        {"amount": 2_999},
        {"amount": 3_001},
    ],
    ids=["unknown refund", "another trade", "less", "more"],
)
def test_a_notification_that_does_not_fit_the_refund_is_refused_and_changes_nothing(
    db_session: Session, biller: Biller, provider: FakeProvider, change: dict[str, object]
) -> None:
    # given a pending refund
    payment, refund = _pending_refund(db_session, biller, provider)
    # when a notification names another refund or trade, or another amount
    with pytest.raises(InvalidNotification):
        _apply(db_session, provider, _notice(payment, refund, **change))  # type: ignore[arg-type]
    # then the refund is still pending and nothing was kept
    assert refund.status == "pending"
    assert _kept(db_session, payment) == []


def test_a_notification_from_another_provider_is_refused(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    payment, refund = _pending_refund(db_session, biller, provider)
    with pytest.raises(InvalidNotification):
        _apply(db_session, FakeProvider(name="intruder"), _notice(payment, refund))
    assert refund.status == "pending"


def test_a_payment_notification_is_not_a_refund_notification(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    payment, refund = _pending_refund(db_session, biller, provider)
    notice = _notice(payment, refund)
    as_payment = Notification(
        notify_id=notice.notify_id,
        trade_no=notice.trade_no,
        status="succeeded",
        amount_fen=notice.amount_fen,
        provider_trade_no=None,
        occurred_at=None,
    )
    with pytest.raises(InvalidNotification):
        _apply(db_session, provider, as_payment)


def test_a_failure_notified_after_a_success_changes_no_money(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a refund that succeeded and was posted
    payment, refund = _pending_refund(db_session, biller, provider)
    _apply(db_session, provider, _notice(payment, refund))
    # when the provider then says it failed
    outcome = _apply(db_session, provider, _notice(payment, refund, status="failed"))
    # then that is kept and audited as a contradiction, and the money stays as posted
    assert outcome == "contradicted"
    assert refund.status == "succeeded"
    assert _postings(db_session, refund) == ["refund"]
    assert payment.refunded_fen == 3_000
    failed = db_session.scalar(
        select(func.count())
        .select_from(AuditRecord)
        .where(
            AuditRecord.action == "pay.refund.notify",
            AuditRecord.target == f"payment:{payment.trade_no}",
            AuditRecord.outcome == "failed",
        )
    )
    assert failed == 1


def test_a_failed_refund_the_provider_completes_after_all_is_reserved_and_posted(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a refund that was notified as failed (its 30 yuan given back)
    payment, refund = _pending_refund(db_session, biller, provider)
    _apply(db_session, provider, _notice(payment, refund, status="failed"))
    db_session.refresh(payment)
    assert payment.refunded_fen == 0
    # when the provider notifies its success after all (WeChat retries ABNORMAL refunds)
    outcome = _apply(db_session, provider, _notice(payment, refund))
    # then the money that left is reserved again and posted, once
    assert (outcome, refund.status) == ("succeeded_after_failure", "succeeded")
    db_session.refresh(payment)
    assert payment.refunded_fen == 3_000
    assert _postings(db_session, refund) == ["refund"]
    assert problems_about(ledger.check_ledger(session=db_session), [payment.id, refund.id]) == []


def _refund_item(
    session: Session,
    provider: FakeProvider,
    payment: Payment,
    refund: Refund,
    day: date,
    *,
    with_payment: bool = True,
) -> ReconciliationItem:
    """The reconciliation item of ``refund``'s line (3,000 fen) on the statement of ``day``."""
    lines = [("refund", payment.trade_no, refund.refund_no, -3_000)]
    if with_payment:
        lines.insert(0, ("payment", payment.trade_no, payment.provider_trade_no or "", 10_000))
    record = reconciliation.import_statement(
        session=session,
        actor=SYSTEM,
        provider=provider,
        content=statement(*lines),
        business_date=day,
    )
    [item] = reconciliation.list_items(
        session=session, actor=SYSTEM, import_id=record.id, kind="refund"
    )
    return item


def _adjust(
    session: Session, provider: FakeProvider, item: ReconciliationItem, memo: str
) -> ReconciliationItem:
    """An operator explains the refund line's 3,000 fen: suspense → the provider's clearing."""
    return reconciliation.resolve_item(
        session=session,
        actor=SYSTEM,
        item_id=item.id,
        debit_code="suspense",
        credit_code=f"clearing:{provider.name}",
        amount_fen=3_000,
        memo=memo,
    )


def test_a_pending_refund_on_the_statement_waits_for_its_confirmation(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a refund pending on our side that the provider's statement lists as made
    payment, refund = _pending_refund(db_session, biller, provider)
    item = _refund_item(db_session, provider, payment, refund, date(2020, 1, 1))
    assert (item.kind, item.classification, item.refund_id) == ("refund", "missing_ours", refund.id)
    assert item.refund_no == refund.refund_no
    assert reconciliation.waiting_for_refund(session=db_session, items=[item]) == {item.id}
    # when an operator tries to adjust it, then that is refused: it would count the money twice
    with pytest.raises(ReconciliationRefundPending):
        _adjust(db_session, provider, item, "refund on the statement")
    assert item.resolved_at is None
    # when the refund's success is notified
    _apply(db_session, provider, _notice(payment, refund))
    # then the item is resolved by the refund's own posting, and nothing else is posted
    db_session.refresh(item)
    entry = db_session.get(JournalEntry, item.resolution_entry_id)
    assert entry is not None
    assert (entry.kind, entry.reference) == ("refund", str(refund.id))
    assert item.resolved_by == f"system:provider:{provider.name}"
    assert reconciliation.waiting_for_refund(session=db_session, items=[item]) == set()
    assert problems_about(ledger.check_ledger(session=db_session), [payment.id, refund.id]) == []


def test_an_adjusted_failed_refund_is_not_posted_again(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a refund we recorded as failed, which the statement shows as made, and an operator
    # who explained that money with an adjustment
    payment, refund = _pending_refund(db_session, biller, provider)
    _apply(db_session, provider, _notice(payment, refund, status="failed"))
    item = _refund_item(db_session, provider, payment, refund, date(2020, 1, 2), with_payment=False)
    assert (item.classification, item.refund_id) == ("missing_ours", refund.id)
    _adjust(db_session, provider, item, "refund made by the provider after all")
    # when the provider then notifies its success
    outcome = _apply(db_session, provider, _notice(payment, refund))
    # then it is not posted a second time
    assert outcome == "contradicted"
    assert refund.status == "failed"
    assert _postings(db_session, refund) == []
    db_session.refresh(payment)
    assert payment.refunded_fen == 0


def test_a_refund_line_tied_to_none_of_our_refunds_waits_while_one_of_its_payment_is_pending(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a refund pending on our side, and a statement's refund line of its payment that is
    # tied to no refund of ours (as items made before that link was kept are)
    payment, refund = _pending_refund(db_session, biller, provider)
    item = _refund_item(db_session, provider, payment, refund, date(2020, 1, 2))
    item.refund_id = None
    db_session.flush()
    # when an operator tries to adjust it, then that waits too: the line may be that refund
    assert reconciliation.waiting_for_refund(session=db_session, items=[item]) == {item.id}
    with pytest.raises(ReconciliationRefundPending):
        _adjust(db_session, provider, item, "refund on the statement")
    assert item.resolved_at is None
    # and once the refund has ended (the provider refused it), the line can be explained
    provider.mode = "failed"
    refunds.resume_refund(session=db_session, refund_id=refund.id, provider=provider)
    assert reconciliation.waiting_for_refund(session=db_session, items=[item]) == set()
    _adjust(db_session, provider, item, "refund on the statement")
    assert item.resolved_at is not None
