"""Refunds: never more than was paid, idempotent, converging after a lost commit, posted."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM, make_tenant
from tests.factories.pay_money import (
    FakeProvider,
    make_biller,
    make_payment,
    member,
    problems_about,
    provider_name,
)

from civicloud.core.audit import AuditRecord
from civicloud.core.db import utcnow
from civicloud.core.errors import CivicloudError, InvalidInput, NotFound, PermissionDenied
from civicloud.core.services import Services
from civicloud.core.tenants import Tenant
from civicloud.pay import ledger, refunds
from civicloud.pay.errors import IdempotencyKeyReused, PaymentNotRefundable, RefundExceedsPayment
from civicloud.pay.models import Biller, JournalEntry, Payment, Refund, WebhookDelivery


def _refund(
    session: Session,
    payment: Payment,
    provider: FakeProvider,
    amount: int,
    *,
    key: str | None = None,
    reason: str = "citizen asked",
) -> Refund:
    return refunds.request_refund(
        session=session,
        actor=SYSTEM,
        payment_id=payment.id,
        amount_fen=amount,
        reason=reason,
        idempotency_key=key or uuid.uuid4().hex,
        provider=provider,
    )


def _posted(session: Session, refund: Refund) -> list[str]:
    return list(
        session.scalars(select(JournalEntry.kind).where(JournalEntry.reference == str(refund.id)))
    )


def _refund_rows(session: Session, payment: Payment) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(Refund).where(Refund.payment_id == payment.id)
        )
        or 0
    )


def test_a_partial_then_the_rest_refunds_everything_and_no_more(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a succeeded payment of 100 yuan
    payment = make_payment(db_session, biller, amount_fen=10_000, provider=provider.name)
    # when 30 yuan, then the 70 left, are refunded
    first = _refund(db_session, payment, provider, 3_000)
    second = _refund(db_session, payment, provider, 7_000)
    # then both succeeded, are posted, and the payment is refunded in full
    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert _posted(db_session, first) == _posted(db_session, second) == ["refund"]
    assert payment.refunded_fen == 10_000
    assert provider.refunded[payment.trade_no] == 10_000
    # and one more fen is refused, with nothing changed
    with pytest.raises(RefundExceedsPayment):
        _refund(db_session, payment, provider, 1)
    assert _refund_rows(db_session, payment) == 2
    # and the biller's payable is back to zero, the ledger clean
    mine = [payment.id, first.id, second.id]
    assert problems_about(ledger.check_ledger(session=db_session), mine) == []
    payable = ledger.balances(session=db_session, actor=SYSTEM, biller_id=biller.id)
    assert [(b.code, b.balance_fen) for b in payable] == [(f"payable:{biller.id}", 0)]


def test_more_than_was_paid_in_one_refund_is_refused(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a succeeded payment of 100 yuan
    payment = make_payment(db_session, biller, amount_fen=10_000, provider=provider.name)
    # when 100.01 yuan is refunded, then that is refused and nothing changed
    with pytest.raises(RefundExceedsPayment):
        _refund(db_session, payment, provider, 10_001)
    db_session.refresh(payment)
    assert payment.refunded_fen == 0
    assert _refund_rows(db_session, payment) == 0
    assert provider.calls == []


def test_two_refunds_summing_over_the_payment_let_the_first_through_only(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a payment of 100 yuan, 60 refunded
    payment = make_payment(db_session, biller, amount_fen=10_000, provider=provider.name)
    _refund(db_session, payment, provider, 6_000)
    # when another 50 is asked for, then it is refused: only 40 is left
    with pytest.raises(RefundExceedsPayment, match=r"CNY 40\.00 that can still be") as refused:
        _refund(db_session, payment, provider, 5_000)
    assert refused.value.extra == {"refundable_fen": 4_000}
    assert refused.value.params == {"asked_fen": 5_000, "refundable_fen": 4_000}
    assert payment.refunded_fen == 6_000
    assert _refund_rows(db_session, payment) == 1


@pytest.mark.parametrize("amount", [0, -1, -10_000, 2**63, 2**64 + 5, 1.0, 99.5, True, "100"])
def test_a_bad_amount_is_invalid_input_and_changes_nothing(
    db_session: Session, biller: Biller, provider: FakeProvider, amount: object
) -> None:
    # given a succeeded payment
    payment = make_payment(db_session, biller, provider=provider.name)
    audits = db_session.scalar(select(func.max(AuditRecord.seq)))
    # when a refund of a bad amount is asked for
    with pytest.raises(InvalidInput):
        _refund(db_session, payment, provider, amount)  # type: ignore[arg-type]
    # then nothing changed anywhere
    db_session.refresh(payment)
    assert payment.refunded_fen == 0
    assert _refund_rows(db_session, payment) == 0
    assert db_session.scalar(select(func.max(AuditRecord.seq))) == audits
    assert provider.calls == []


def test_the_largest_bigint_is_refused_as_too_much_not_as_an_overflow(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a payment with something refunded already
    payment = make_payment(db_session, biller, provider=provider.name)
    _refund(db_session, payment, provider, 1)
    # when 2**63-1 fen is asked for, then it is more than was paid (no database overflow)
    with pytest.raises(RefundExceedsPayment):
        _refund(db_session, payment, provider, 2**63 - 1)


def test_the_same_key_and_request_return_the_same_refund(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a refund made with a key
    payment = make_payment(db_session, biller, provider=provider.name)
    first = _refund(db_session, payment, provider, 2_500, key="k-1")
    # when the same request comes again with that key
    again = _refund(db_session, payment, provider, 2_500, key="k-1")
    # then it is the same refund, the provider was asked once, and the money moved once
    assert again.id == first.id
    assert provider.calls == [first.refund_no]
    assert payment.refunded_fen == 2_500
    # and the same key with another amount or reason is refused
    with pytest.raises(IdempotencyKeyReused):
        _refund(db_session, payment, provider, 2_600, key="k-1")
    with pytest.raises(IdempotencyKeyReused):
        _refund(db_session, payment, provider, 2_500, key="k-1", reason="another reason")


def test_a_refused_refund_gives_its_reservation_back_and_is_not_posted(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a provider that refuses refunds
    payment = make_payment(db_session, biller, amount_fen=5_000, provider=provider.name)
    provider.mode = "failed"
    # when a refund is asked for
    refund = _refund(db_session, payment, provider, 5_000)
    # then it failed, nothing is reserved or posted, and the failure is audited
    assert refund.status == "failed"
    assert payment.refunded_fen == 0
    assert _posted(db_session, refund) == []
    outcome = db_session.scalars(
        select(AuditRecord.outcome)
        .where(AuditRecord.action == "pay.refund.request")
        .order_by(AuditRecord.seq.desc())
        .limit(1)
    ).one()
    assert outcome == "failed"
    # and the whole amount can still be refunded once the provider works
    provider.mode = "succeeded"
    assert _refund(db_session, payment, provider, 5_000).status == "succeeded"
    assert problems_about(ledger.check_ledger(session=db_session), [payment.id]) == []


def test_a_provider_that_does_not_answer_leaves_the_refund_pending_and_a_retry_completes_it(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a provider that fails to answer
    payment = make_payment(db_session, biller, amount_fen=5_000, provider=provider.name)
    provider.mode = "raise"
    # when a refund is asked for, then it stays pending with its amount held back
    refund = _refund(db_session, payment, provider, 2_000, key="retry-me")
    assert refund.status == "pending"
    assert payment.refunded_fen == 2_000
    assert _posted(db_session, refund) == []
    # and nothing more than the rest can be refunded meanwhile
    with pytest.raises(RefundExceedsPayment):
        _refund(db_session, payment, provider, 3_001)
    # when the provider answers again and the request is retried with the same key
    provider.mode = "succeeded"
    again = _refund(db_session, payment, provider, 2_000, key="retry-me")
    # then it is the same refund, now succeeded and posted once
    assert again.id == refund.id
    assert again.status == "succeeded"
    assert _posted(db_session, refund) == ["refund"]
    assert provider.refunded[payment.trade_no] == 2_000


def test_a_refund_whose_commit_was_lost_converges_on_retry(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a refund the provider made, but whose transaction then rolled back on our side
    payment = make_payment(db_session, biller, amount_fen=8_000, provider=provider.name)
    lost = db_session.begin_nested()
    refund_no = _refund(db_session, payment, provider, 8_000, key="lost-commit").refund_no
    lost.rollback()
    db_session.refresh(payment)
    assert payment.refunded_fen == 0
    assert provider.refunded[payment.trade_no] == 8_000
    # when the client retries with the same key
    refund = _refund(db_session, payment, provider, 8_000, key="lost-commit")
    # then the provider recognises the refund number and refunds nothing more
    assert refund.refund_no == refund_no
    assert refund.status == "succeeded"
    assert provider.refunded[payment.trade_no] == 8_000
    assert provider.calls == [refund_no, refund_no]
    assert payment.refunded_fen == 8_000
    assert problems_about(ledger.check_ledger(session=db_session), [payment.id, refund.id]) == []


@pytest.mark.parametrize("status", ["pending", "failed", "expired"])
def test_only_a_succeeded_payment_is_refunded(
    db_session: Session, biller: Biller, provider: FakeProvider, status: str
) -> None:
    # given a payment that did not succeed, when a refund is asked for, then it is refused
    payment = make_payment(db_session, biller, status=status, provider=provider.name)
    with pytest.raises(PaymentNotRefundable):
        _refund(db_session, payment, provider, 100)
    assert _refund_rows(db_session, payment) == 0


def test_a_refund_needs_pay_refund_at_the_payments_tenant(
    db_session: Session, provider: FakeProvider
) -> None:
    # given a payment of a biller in tenant A, and readers of A and of a sibling B
    root = make_tenant(db_session)
    a, b = make_tenant(db_session, parent=root), make_tenant(db_session, parent=root)
    payment = make_payment(db_session, make_biller(db_session, tenant=a), provider=provider.name)

    def refund_as(actor_tenant: Tenant, *permissions: str) -> None:
        refunds.request_refund(
            session=db_session,
            actor=member(actor_tenant, *permissions),
            payment_id=payment.id,
            amount_fen=100,
            reason="test",
            idempotency_key=uuid.uuid4().hex,
            provider=provider,
        )

    # when B's refunder or A's reader tries, then B sees nothing and A's reader may not
    with pytest.raises(NotFound):
        refund_as(b, "pay.refund")
    with pytest.raises(PermissionDenied):
        refund_as(a, "pay.payment.read")
    with pytest.raises(NotFound):
        refunds.request_refund(
            session=db_session,
            actor=SYSTEM,
            payment_id=uuid.uuid4(),
            amount_fen=100,
            reason="test",
            idempotency_key=uuid.uuid4().hex,
            provider=provider,
        )
    # and A's refunder may
    refund_as(a, "pay.refund")
    assert payment.refunded_fen == 100


def test_a_late_success_is_refunded_automatically_once(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given an expired payment whose money arrived anyway
    payment = make_payment(
        db_session, biller, amount_fen=4_200, status="expired", provider=provider.name
    )
    # when it is refunded automatically, twice (a duplicated notification)
    first = refunds.refund_automatically(
        session=db_session, payment=payment, provider=provider, reason="paid after expiry"
    )
    second = refunds.refund_automatically(
        session=db_session, payment=payment, provider=provider, reason="paid after expiry"
    )
    # then one refund of everything succeeded, and the money went in and out of refunds_payable
    assert second.id == first.id
    assert (first.status, first.origin, first.amount_fen) == ("succeeded", "automatic", 4_200)
    assert provider.refunded[payment.trade_no] == 4_200
    kinds = db_session.scalars(
        select(JournalEntry.kind).where(
            JournalEntry.reference.in_([str(payment.id), str(first.id)])
        )
    ).all()
    assert sorted(kinds) == ["late_payment", "late_payment_refund"]
    assert problems_about(ledger.check_ledger(session=db_session), [payment.id, first.id]) == []
    # and it was audited as the system
    actors = db_session.scalars(
        select(AuditRecord.actor).where(AuditRecord.action == "pay.refund.automatic")
    ).all()
    assert refunds.AUTOMATIC.name in actors


def test_a_failed_automatic_refund_is_tried_again_with_a_new_refund_number(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a superseded payment whose automatic refund the provider refused
    payment = make_payment(
        db_session, biller, amount_fen=900, status="superseded", provider=provider.name
    )
    provider.mode = "failed"
    failed = refunds.refund_automatically(
        session=db_session, payment=payment, provider=provider, reason="superseded"
    )
    assert failed.status == "failed"
    # then the money stays owed to the citizen in refunds_payable
    assert problems_about(ledger.check_ledger(session=db_session), [payment.id]) == []
    # when it is tried again and the provider refunds
    provider.mode = "succeeded"
    retried = refunds.refund_automatically(
        session=db_session, payment=payment, provider=provider, reason="superseded"
    )
    # then a new attempt succeeded, and the late payment was posted once
    assert retried.id != failed.id
    assert retried.refund_no != failed.refund_no
    assert retried.status == "succeeded"
    assert payment.refunded_fen == 900
    assert (
        problems_about(ledger.check_ledger(session=db_session), [payment.id, retried.id, failed.id])
        == []
    )


def test_a_succeeded_payment_is_not_refunded_automatically(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a succeeded payment, when it is refunded automatically, then that is refused
    payment = make_payment(db_session, biller, provider=provider.name)
    with pytest.raises(PaymentNotRefundable):
        refunds.refund_automatically(
            session=db_session, payment=payment, provider=provider, reason="x"
        )


# --- concurrency: each thread its own unit of work ------------------------------------------


def _committed_payment(services: Services, provider: FakeProvider, amount: int) -> uuid.UUID:
    with services.db.unit_of_work() as session:
        biller = make_biller(session)
        return make_payment(session, biller, amount_fen=amount, provider=provider.name).id


def _race(count: int, work: Callable[[int], object]) -> list[object]:
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except CivicloudError as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_twenty_concurrent_refunds_never_exceed_the_payment(core_services: Services) -> None:
    # given a committed payment of 100 yuan
    provider = FakeProvider(name=provider_name())
    payment_id = _committed_payment(core_services, provider, 10_000)

    def refund_7_yuan(index: int) -> str:
        with core_services.db.unit_of_work() as session:
            return refunds.request_refund(
                session=session,
                actor=SYSTEM,
                payment_id=payment_id,
                amount_fen=700,
                reason="race",
                idempotency_key=f"race-{payment_id}-{index}",
                provider=provider,
            ).status

    # when 20 transactions each refund 7 yuan at once
    results = _race(20, refund_7_yuan)
    # then exactly 14 succeeded, the other 6 were refused, and 98 yuan went back
    assert results.count("succeeded") == 14
    assert sum(isinstance(r, RefundExceedsPayment) for r in results) == 6
    with core_services.db.unit_of_work(write=False) as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        assert payment.refunded_fen == 9_800
        assert provider.refunded[payment.trade_no] == 9_800
        ids = session.scalars(select(Refund.id).where(Refund.payment_id == payment_id)).all()
        assert len(ids) == 14
        assert problems_about(ledger.check_ledger(session=session), [payment_id, *ids]) == []


def test_concurrent_requests_with_one_key_make_one_refund(core_services: Services) -> None:
    # given a committed payment
    provider = FakeProvider(name=provider_name())
    payment_id = _committed_payment(core_services, provider, 10_000)
    key = f"same-{payment_id}"

    def refund_with_the_same_key(_index: int) -> uuid.UUID:
        with core_services.db.unit_of_work() as session:
            return refunds.request_refund(
                session=session,
                actor=SYSTEM,
                payment_id=payment_id,
                amount_fen=1_000,
                reason="double click",
                idempotency_key=key,
                provider=provider,
            ).id

    # when 8 transactions send the same request with the same key at once
    results = _race(8, refund_with_the_same_key)
    # then they all got the one refund, and 10 yuan went back once
    assert len(set(results)) == 1
    assert isinstance(results[0], uuid.UUID)
    with core_services.db.unit_of_work(write=False) as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        assert payment.refunded_fen == 1_000
        assert provider.refunded[payment.trade_no] == 1_000


def test_finished_at_is_set_when_a_refund_ends(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a payment, when it is refunded, then the refund has ended now
    payment = make_payment(db_session, biller, provider=provider.name)
    refund = _refund(db_session, payment, provider, 100)
    assert refund.finished_at is not None
    assert abs(refund.finished_at - utcnow()) < timedelta(minutes=1)


def test_a_pending_refund_is_completed_by_the_recovery_job(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a refund the provider has not finished
    payment = make_payment(db_session, biller, provider=provider.name)
    provider.mode = "pending"
    refund = _refund(db_session, payment, provider, 1_500)
    assert refund.status == "pending"
    # when the job asks again after the provider finished it
    provider.mode = "succeeded"
    resumed = refunds.resume_refund(session=db_session, refund_id=refund.id, provider=provider)
    # then it succeeded and is posted, and it is listed with the payment
    assert resumed.status == "succeeded"
    assert _posted(db_session, refund) == ["refund"]
    listed = refunds.list_refunds(session=db_session, actor=SYSTEM, payment_id=payment.id)
    assert [r.id for r in listed] == [refund.id]
    assert refunds.refunded_total(session=db_session, payment_id=payment.id) == 1_500
    # and a finished refund is left as it is
    assert (
        refunds.resume_refund(session=db_session, refund_id=refund.id, provider=provider) is refund
    )
    with pytest.raises(NotFound):
        refunds.resume_refund(session=db_session, refund_id=uuid.uuid4(), provider=provider)


def test_a_pending_automatic_refund_is_asked_about_again(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given an automatic refund left pending
    payment = make_payment(db_session, biller, status="expired", provider=provider.name)
    provider.mode = "pending"
    first = refunds.refund_automatically(
        session=db_session, payment=payment, provider=provider, reason="late"
    )
    # when the late notification comes again and the provider has refunded meanwhile
    provider.mode = "succeeded"
    again = refunds.refund_automatically(
        session=db_session, payment=payment, provider=provider, reason="late"
    )
    # then the same refund completed
    assert again.id == first.id
    assert again.status == "succeeded"


def test_a_refund_through_another_provider_is_refused(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a payment made through one provider, when another is asked to refund it
    payment = make_payment(db_session, biller, provider=provider.name)
    other = FakeProvider(name=provider_name())
    # then that is refused and nothing is reserved
    with pytest.raises(InvalidInput, match="paid through"):
        _refund(db_session, payment, other, 100)
    with pytest.raises(InvalidInput, match="paid through"):
        refunds.refund_automatically(
            session=db_session,
            payment=make_payment(db_session, biller, status="expired", provider=provider.name),
            provider=other,
            reason="x",
        )
    assert payment.refunded_fen == 0
    assert other.calls == []


@pytest.mark.parametrize(
    ("reason", "key"),
    [
        ("", "k"),
        ("  ", "k"),
        ("x" * 301, "k"),
        ("ok", ""),
        ("ok", "k" * 201),
        ("a\nb", "k"),
        ("ok", "automatic:x"),
        ("多收\u202e费", "k"),
        ("\u3164", "k"),
        ("over\u200bcharged", "k"),
    ],
)
def test_an_empty_or_oversized_reason_or_key_is_refused(
    db_session: Session, biller: Biller, provider: FakeProvider, reason: str, key: str
) -> None:
    # when a refund comes with a bad reason or key, then it is refused before anything happens
    payment = make_payment(db_session, biller, provider=provider.name)
    with pytest.raises(InvalidInput):
        refunds.request_refund(
            session=db_session,
            actor=SYSTEM,
            payment_id=payment.id,
            amount_fen=100,
            reason=reason,
            idempotency_key=key,
            provider=provider,
        )
    assert provider.calls == []


def test_the_refund_job_finds_pending_refunds_a_minute_old(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given two refunds the provider has not finished, one asked for an hour ago
    provider.mode = "pending"
    old = _refund(
        db_session, make_payment(db_session, biller, provider=provider.name), provider, 300
    )
    young = _refund(
        db_session, make_payment(db_session, biller, provider=provider.name), provider, 400
    )
    old.created_at = utcnow() - timedelta(hours=1)
    db_session.flush()
    # when the provider finished them and the job looks for refunds a minute old
    provider.mode = "succeeded"
    due = refunds.refunds_to_resume(session=db_session, older_than=utcnow() - timedelta(minutes=1))
    # then only the old one is due, with its provider, and resuming it ends it
    assert list(due) == [(old.id, provider.name)]
    resumed = refunds.resume_refund(session=db_session, refund_id=old.id, provider=provider)
    assert (resumed.status, young.status) == ("succeeded", "pending")
    assert _posted(db_session, old) == ["refund"]
    # and the next look finds the young one only
    later = refunds.refunds_to_resume(
        session=db_session, older_than=utcnow() + timedelta(minutes=1)
    )
    assert list(later) == [(young.id, provider.name)]


def test_a_succeeded_refund_tells_the_biller_once_per_bill(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a biller with a webhook and a payment of two bills
    biller.webhook_url = "https://biller.example.cn/hook"
    biller.webhook_secret = "s3cret"
    payment = make_payment(db_session, biller, provider=provider.name, amount_fen=1_000, bills=2)
    # when part of it is refunded, and a refund the provider refuses is asked for
    refund = _refund(db_session, payment, provider, 250)
    provider.mode = "failed"
    _refund(db_session, payment, provider, 100)
    # then one bill.refunded event per bill is owed, for the refund that succeeded only
    events = db_session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.biller_id == biller.id, WebhookDelivery.event == "bill.refunded")
        .order_by(WebhookDelivery.created_at)
    ).all()
    assert len(events) == 2
    assert {e.payload["refund_no"] for e in events} == {refund.refund_no}
    assert {e.payload["refund_fen"] for e in events} == {250}
    assert sorted(e.payload["paid_fen"] for e in events) == [500, 500]
    assert {e.payload["trade_no"] for e in events} == {payment.trade_no}
    assert len({e.event_id for e in events}) == 2


def test_a_late_payments_automatic_refund_tells_the_biller_nothing(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a biller with a webhook, and money taken for a payment that had expired
    biller.webhook_url = "https://biller.example.cn/hook"
    payment = make_payment(db_session, biller, status="expired", provider=provider.name)
    # when it is refunded automatically
    refund = refunds.refund_automatically(
        session=db_session, payment=payment, provider=provider, reason="late"
    )
    # then no bill.refunded is owed: that payment paid no bill
    assert refund.status == "succeeded"
    owed = db_session.scalar(
        select(func.count())
        .select_from(WebhookDelivery)
        .where(WebhookDelivery.biller_id == biller.id)
    )
    assert owed == 0


def test_a_retry_holding_a_refund_the_job_ended_meanwhile_moves_no_money_again(
    core_services: Services,
) -> None:
    if core_services.db.is_sqlite:
        pytest.skip("SQLite runs one writer at a time: a retry cannot hold a refund meanwhile")
    # given a payment of 100 yuan, 50 refunded, and another 50 asked for and still pending
    provider = FakeProvider(name=provider_name())
    payment_id = _committed_payment(core_services, provider, 10_000)
    key = f"retry-{payment_id}"

    def refund(session: Session, amount: int, idempotency_key: str) -> Refund:
        return refunds.request_refund(
            session=session,
            actor=SYSTEM,
            payment_id=payment_id,
            amount_fen=amount,
            reason="retry",
            idempotency_key=idempotency_key,
            provider=provider,
        )

    with core_services.db.unit_of_work() as session:
        refund(session, 5_000, f"done-{payment_id}")
        provider.mode = "pending"
        refund_id = refund(session, 5_000, key).id
    provider.mode = "failed"
    with core_services.db.unit_of_work() as retry:
        # when an operator's retry has read the pending refund
        held = retry.get(Refund, refund_id)
        assert held is not None
        assert held.status == "pending"
        # and the job ends it as failed (the provider refused it) and commits meanwhile
        with core_services.db.unit_of_work() as job:
            ended = refunds.resume_refund(session=job, refund_id=refund_id, provider=provider)
            assert ended.status == "failed"
        # then the retry finds it failed and gives nothing back a second time
        assert refund(retry, 5_000, key).status == "failed"
    with core_services.db.unit_of_work(write=False) as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        assert payment.refunded_fen == 5_000
        assert problems_about(ledger.check_ledger(session=session), [payment_id]) == []
