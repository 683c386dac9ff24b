"""The webhook outbox in one rolled-back transaction: enqueueing, sending, retrying, giving up.

The rows are made due at ``T0``, far in the past, and every run asks what is due at ``T0`` plus
a little: rows other tests left in the shared database (made due at their creation) are not
due yet at that time, so each test sees its own rows only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM
from tests.factories.pay_money import member
from tests.factories.pay_receipts import WEBHOOK_SECRET, WEBHOOK_URL, make_agency, make_biller

from civicloud.core.audit import AuditRecord
from civicloud.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from civicloud.pay.errors import BillerNotFound, WebhookDeliveryNotDead, WebhookDeliveryNotFound
from civicloud.pay.models import Biller, BillStatus, WebhookDelivery
from civicloud.pay.webhooks import (
    deliver_due,
    enqueue_event,
    is_dead,
    list_dead_deliveries,
    redeliver,
    requeue_delivery,
    verify_signature,
)

T0 = datetime(2001, 1, 1, tzinfo=UTC)
PAYLOAD = {
    "bill_number": "B1",
    "amount_fen": 12_345,
    "payment_id": uuid.UUID(int=7),
    "paid_at": datetime(2026, 11, 26, 3, 4, 5, tzinfo=UTC),
    "status": BillStatus.PAID,
}


@dataclass
class FakeBiller:
    """A biller's endpoint: answers each request with the next status (or raises it)."""

    answers: list[int | Exception] = field(default_factory=list)
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def __call__(self, url: str, headers: Mapping[str, str], body: bytes) -> int:
        self.received.append((url, dict(headers), body))
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def event_ids(self) -> list[str]:
        """The ``X-Civicloud-Event-Id`` of every request, in order."""
        return [headers["X-Civicloud-Event-Id"] for _, headers, _ in self.received]


def _enqueue(session: Session, biller: Biller, event: str = "bill.paid") -> WebhookDelivery:
    delivery = enqueue_event(
        session=session,
        biller_id=biller.id,
        event=event,  # type: ignore[arg-type]
        payload=PAYLOAD,
    )
    assert delivery is not None
    delivery.next_attempt_at = T0
    session.flush()
    return delivery


def test_enqueue_writes_an_outbox_row_with_a_fresh_event_id(db_session: Session) -> None:
    # given
    biller = make_biller(db_session)
    # when
    first = _enqueue(db_session, biller)
    second = _enqueue(db_session, biller, "bill.refunded")
    # then
    assert first.event_id != second.event_id
    assert uuid.UUID(hex=first.event_id).version == 4
    assert first.payload == {
        "bill_number": "B1",
        "amount_fen": 12_345,
        "payment_id": str(uuid.UUID(int=7)),
        "paid_at": "2026-11-26T03:04:05+00:00",
        "status": "paid",
    }
    assert (first.attempts, first.delivered_at, first.event) == (0, None, "bill.paid")


def test_a_biller_without_a_webhook_gets_no_deliveries(db_session: Session) -> None:
    # given
    biller = make_biller(db_session, webhook_url=None)
    # when
    delivery = enqueue_event(
        session=db_session, biller_id=biller.id, event="bill.paid", payload=PAYLOAD
    )
    # then
    assert delivery is None
    rows = db_session.scalars(select(WebhookDelivery).where(WebhookDelivery.biller_id == biller.id))
    assert rows.all() == []


def test_enqueue_refuses_unknown_billers_events_and_payloads(db_session: Session) -> None:
    # given
    biller = make_biller(db_session)
    # when / then
    with pytest.raises(BillerNotFound):
        enqueue_event(session=db_session, biller_id=uuid.uuid4(), event="bill.paid", payload={})
    with pytest.raises(InvalidInput, match="unknown webhook event"):
        enqueue_event(session=db_session, biller_id=biller.id, event="bill.lost", payload={})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="not JSON"):
        enqueue_event(
            session=db_session, biller_id=biller.id, event="bill.paid", payload={"x": object()}
        )


def test_enqueue_rolls_back_with_its_transaction(db_session: Session) -> None:
    # given
    biller = make_biller(db_session)
    event_ids: list[str] = []

    def payment_transaction() -> None:
        with db_session.begin_nested():
            event_ids.append(_enqueue(db_session, biller).event_id)
            raise RuntimeError("the payment could not be recorded")

    # when: the payment's transaction fails after the event was enqueued
    with pytest.raises(RuntimeError, match="could not be recorded"):
        payment_transaction()
    # then: the event is not owed
    found = db_session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.event_id == event_ids[0])
    )
    assert found.one_or_none() is None


def test_event_ids_are_unique_in_the_database(db_session: Session) -> None:
    # given
    biller = make_biller(db_session)
    delivery = _enqueue(db_session, biller)
    # when / then
    with pytest.raises(IntegrityError), db_session.begin_nested():
        db_session.add(
            WebhookDelivery(
                event_id=delivery.event_id, biller_id=biller.id, event="bill.paid", payload={}
            )
        )


def test_a_delivery_is_signed_sent_once_and_marked_delivered(db_session: Session) -> None:
    # given
    delivery = _enqueue(db_session, make_biller(db_session))
    biller = FakeBiller()
    now = T0 + timedelta(seconds=1)
    # when
    report = deliver_due(session=db_session, now=now, send=biller)
    again = deliver_due(session=db_session, now=now + timedelta(days=1), send=biller)
    # then
    assert report.delivered == [delivery.event_id]
    assert again.attempted == 0
    assert len(biller.received) == 1
    url, headers, body = biller.received[0]
    assert url == WEBHOOK_URL
    assert headers["X-Civicloud-Event-Id"] == delivery.event_id
    assert headers["X-Civicloud-Event"] == "bill.paid"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert verify_signature(
        WEBHOOK_SECRET, headers["X-Civicloud-Signature"], body, now=now.timestamp()
    )
    sent = json.loads(body)
    assert (sent["id"], sent["type"], sent["data"]["amount_fen"]) == (
        delivery.event_id,
        "bill.paid",
        12_345,
    )
    assert (delivery.delivered_at, delivery.attempts) == (now, 1)


@pytest.mark.parametrize(
    ("answer", "error"),
    [(500, "HTTP 500"), (302, "HTTP 302"), (TimeoutError("timed out"), "TimeoutError: timed out")],
)
def test_a_failure_is_retried_with_backoff_and_the_same_event_id(
    db_session: Session, answer: int | Exception, error: str
) -> None:
    # given: a biller that fails once, then answers 200
    delivery = _enqueue(db_session, make_biller(db_session))
    biller = FakeBiller([answer])
    now = T0 + timedelta(seconds=1)
    # when
    first = deliver_due(session=db_session, now=now, send=biller)
    # then: scheduled 15-30 s later (30 s with jitter), with the reason kept
    assert first.retrying == [delivery.event_id]
    assert delivery.last_error == error
    assert delivery.attempts == 1
    assert now + timedelta(seconds=15) <= delivery.next_attempt_at <= now + timedelta(seconds=30)
    # when: too early, then once due
    early = deliver_due(session=db_session, now=now + timedelta(seconds=14), send=biller)
    due = deliver_due(session=db_session, now=now + timedelta(seconds=31), send=biller)
    # then: sent again under the same event id and with the same body
    assert early.attempted == 0
    assert due.delivered == [delivery.event_id]
    assert biller.event_ids == [delivery.event_id, delivery.event_id]
    assert biller.received[0][2] == biller.received[1][2]
    assert delivery.attempts == 2


def test_after_max_attempts_a_delivery_is_dead_but_kept_and_revivable(db_session: Session) -> None:
    # given: a biller that always fails
    delivery = _enqueue(db_session, make_biller(db_session))
    biller = FakeBiller([503] * 10)
    now = T0
    # when: run every 7 hours (past the longest backoff)
    reports = []
    for _ in range(4):
        now += timedelta(hours=7)
        reports.append(deliver_due(session=db_session, now=now, send=biller, max_attempts=3))
    # then: three attempts, the third gives up and marks it dead, the fourth run leaves it alone
    assert [len(r.retrying) for r in reports] == [1, 1, 0, 0]
    assert reports[2].dead == [delivery.event_id]
    assert reports[3].attempted == 0
    assert is_dead(delivery, max_attempts=3)
    assert (delivery.attempts, delivery.last_error) == (3, "HTTP 503")
    assert delivery.dead_at == T0 + timedelta(hours=21)
    # when: an operator revives it after the biller's system is fixed
    redeliver(session=db_session, event_id=delivery.event_id, now=now)
    assert delivery.dead_at is None
    revived = deliver_due(session=db_session, now=now, send=biller, max_attempts=3)
    # then
    assert revived.retrying == [delivery.event_id]  # (this biller still answers 503)
    assert len(biller.received) == 4


def test_redeliver_refuses_unknown_and_delivered_events(db_session: Session) -> None:
    # given
    delivery = _enqueue(db_session, make_biller(db_session))
    deliver_due(session=db_session, now=T0, send=FakeBiller())
    # when / then
    with pytest.raises(NotFound):
        redeliver(session=db_session, event_id="nope", now=T0)
    with pytest.raises(Conflict, match="delivered already"):
        redeliver(session=db_session, event_id=delivery.event_id, now=T0)


def test_a_biller_without_a_secret_is_never_sent_unsigned(db_session: Session) -> None:
    # given: a webhook URL but no secret
    delivery = _enqueue(db_session, make_biller(db_session, webhook_secret=None))
    biller = FakeBiller()
    # when
    report = deliver_due(session=db_session, now=T0, send=biller)
    # then
    assert report.retrying == [delivery.event_id]
    assert biller.received == []
    assert "webhook_secret" in (delivery.last_error or "")


def test_a_run_sends_at_most_limit_deliveries_oldest_first(db_session: Session) -> None:
    # given
    tenant = make_agency(db_session)
    deliveries = [_enqueue(db_session, make_biller(db_session, tenant=tenant)) for _ in range(5)]
    for offset, delivery in enumerate(deliveries):
        delivery.next_attempt_at = T0 - timedelta(seconds=offset)
    db_session.flush()
    biller = FakeBiller()
    # when
    report = deliver_due(session=db_session, now=T0, send=biller, limit=2)
    # then
    assert report.delivered == [deliveries[4].event_id, deliveries[3].event_id]


def test_a_run_for_one_delivery_sends_that_one_and_no_other(db_session: Session) -> None:
    # given three due deliveries, the one asked for not the oldest
    tenant = make_agency(db_session)
    deliveries = [_enqueue(db_session, make_biller(db_session, tenant=tenant)) for _ in range(3)]
    for offset, delivery in enumerate(deliveries):
        delivery.next_attempt_at = T0 - timedelta(seconds=offset)
    db_session.flush()
    biller = FakeBiller()
    # when the job's unit of work for the middle one runs
    report = deliver_due(session=db_session, now=T0, send=biller, limit=1, only=deliveries[1].id)
    # then that delivery was sent, and the others are still due
    assert report.delivered == [deliveries[1].event_id]
    assert [d.delivered_at is None for d in deliveries] == [True, False, True]
    # and once delivered it is no longer due: a second run for it sends nothing
    again = deliver_due(session=db_session, now=T0, send=biller, limit=1, only=deliveries[1].id)
    assert (again.delivered, again.retrying, again.dead) == ([], [], [])


def test_a_biller_whose_webhook_was_removed_is_retried_not_sent(db_session: Session) -> None:
    # given: the biller's URL was removed after the event was owed
    biller = make_biller(db_session)
    delivery = _enqueue(db_session, biller)
    biller.webhook_url = None
    db_session.flush()
    endpoint = FakeBiller()
    # when
    report = deliver_due(session=db_session, now=T0, send=endpoint)
    # then
    assert report.retrying == [delivery.event_id]
    assert endpoint.received == []
    assert delivery.last_error == "the biller has no webhook_url"


def test_a_delivery_whose_attempts_are_used_up_is_marked_dead_not_dropped(
    db_session: Session,
) -> None:
    # given: a delivery that used up its attempts before deliveries were marked dead
    delivery = _enqueue(db_session, make_biller(db_session))
    delivery.attempts = 3
    db_session.flush()
    biller = FakeBiller()
    # when: a run comes by
    report = deliver_due(session=db_session, now=T0, send=biller, max_attempts=3)
    # then: it is marked dead, unsent, and kept
    assert report.dead == [delivery.event_id]
    assert biller.received == []
    assert delivery.dead_at == T0
    assert delivery.delivered_at is None


def _dead(session: Session, biller: Biller) -> WebhookDelivery:
    delivery = _enqueue(session, biller)
    deliver_due(session=session, now=T0, send=FakeBiller([500]), max_attempts=1)
    assert delivery.dead_at == T0
    return delivery


def test_dead_deliveries_are_listed_for_those_who_may_see_their_biller(
    db_session: Session,
) -> None:
    # given: a dead delivery at each of two agencies, and one still being retried
    here, there = make_agency(db_session), make_agency(db_session)
    mine = _dead(db_session, make_biller(db_session, tenant=here))
    theirs = _dead(db_session, make_biller(db_session, tenant=there))
    retrying = _enqueue(db_session, make_biller(db_session, tenant=here))
    reader = member(here, "pay.biller.read")
    # when: a reader at one agency lists them
    listed = list_dead_deliveries(session=db_session, actor=reader)
    # then: it sees its own dead one only
    assert [d.id for d in listed] == [mine.id]
    assert retrying.dead_at is None
    assert theirs.id in {d.id for d in list_dead_deliveries(session=db_session, actor=SYSTEM)}
    # and another agency's biller does not exist for it
    with pytest.raises(NotFound):
        list_dead_deliveries(session=db_session, actor=reader, biller_id=theirs.biller_id)
    assert [
        d.id
        for d in list_dead_deliveries(session=db_session, actor=reader, biller_id=mine.biller_id)
    ] == [mine.id]
    with pytest.raises(InvalidInput):
        list_dead_deliveries(session=db_session, actor=reader, limit=0)


def test_an_operator_requeues_a_dead_delivery_once_and_it_is_audited(
    db_session: Session,
) -> None:
    # given: a dead delivery
    agency = make_agency(db_session)
    delivery = _dead(db_session, make_biller(db_session, tenant=agency))
    admin = member(agency, "pay.biller.read", "pay.biller.admin")
    later = T0 + timedelta(days=3)
    # when: an administrator of its biller requeues it
    requeued = requeue_delivery(session=db_session, actor=admin, delivery_id=delivery.id, now=later)
    # then: it is due now with a fresh budget, the same event, and the requeue is audited
    assert requeued.id == delivery.id
    assert (delivery.dead_at, delivery.attempts, delivery.next_attempt_at) == (None, 0, later)
    audited = db_session.scalars(
        select(AuditRecord.actor).where(
            AuditRecord.action == "pay.webhook.requeue",
            AuditRecord.target == f"webhook:{delivery.event_id}",
        )
    ).all()
    assert audited == [admin.name]
    biller = FakeBiller()
    assert deliver_due(session=db_session, now=later, send=biller).delivered == [delivery.event_id]
    assert biller.event_ids == [delivery.event_id]
    # and: a delivery that is not dead (any more) is not requeued
    with pytest.raises(WebhookDeliveryNotDead):
        requeue_delivery(session=db_session, actor=admin, delivery_id=delivery.id, now=later)


def test_requeueing_needs_the_biller_admin_permission(db_session: Session) -> None:
    # given: a dead delivery, a reader of its biller, and an administrator elsewhere
    agency = make_agency(db_session)
    delivery = _dead(db_session, make_biller(db_session, tenant=agency))
    reader = member(agency, "pay.biller.read")
    stranger = member(make_agency(db_session), "pay.biller.admin")
    # when / then: the reader is refused, the stranger does not see it, an unknown id is 404
    with pytest.raises(PermissionDenied):
        requeue_delivery(session=db_session, actor=reader, delivery_id=delivery.id, now=T0)
    with pytest.raises(NotFound):
        requeue_delivery(session=db_session, actor=stranger, delivery_id=delivery.id, now=T0)
    with pytest.raises(WebhookDeliveryNotFound):
        requeue_delivery(session=db_session, actor=SYSTEM, delivery_id=uuid.uuid4(), now=T0)
    # and nothing changed
    assert delivery.dead_at == T0
