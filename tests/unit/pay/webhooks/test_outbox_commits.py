"""The outbox across real commits: enqueue commits with its transaction, a crash redelivers, and
two workers never take the same row (PostgreSQL).

These tests commit to the shared database. Their rows are made due at ``T0``, long ago, and end
delivered, so no other test's run (asking what is due now) nor theirs sees another's rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from tests.factories.pay_receipts import make_biller

from civicloud.core.db import Database
from civicloud.core.services import Services
from civicloud.pay.models import WebhookDelivery
from civicloud.pay.webhooks import DeliveryReport, deliver_due, enqueue_event

T0 = datetime(2001, 1, 2, tzinfo=UTC)
NOW = T0 + timedelta(seconds=1)


class ProcessKilled(BaseException):
    """The worker process dies (not an error deliver_due may catch)."""


def _enqueue(session: Session) -> str:
    biller = make_biller(session)
    delivery = enqueue_event(
        session=session, biller_id=biller.id, event="bill.paid", payload={"bill_number": "B1"}
    )
    assert delivery is not None
    delivery.next_attempt_at = T0
    return delivery.event_id


def _row(db: Database, event_id: str) -> WebhookDelivery:
    with db.unit_of_work(write=False) as session:
        return session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.event_id == event_id)
        ).one()


def test_an_event_enqueued_in_a_failed_transaction_is_never_owed(core_services: Services) -> None:
    # given
    db = core_services.db
    event_ids: list[str] = []

    def failing_payment() -> None:
        with db.unit_of_work() as session:
            event_ids.append(_enqueue(session))
            raise RuntimeError("the ledger refused the entry")

    # when
    with pytest.raises(RuntimeError, match="ledger"):
        failing_payment()
    # then
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.event_id == event_ids[0])
        )
        assert rows.all() == []


@pytest.mark.parametrize("crash", ["inside send, after the biller got it", "after the run"])
def test_a_crash_between_send_and_commit_redelivers_the_same_event(
    core_services: Services, crash: str
) -> None:
    # given: an owed event, committed with its payment
    db = core_services.db
    with db.unit_of_work() as session:
        event_id = _enqueue(session)
    received: list[tuple[str, bytes]] = []

    def biller(_url: str, headers: Mapping[str, str], body: bytes) -> int:
        received.append((headers["X-Civicloud-Event-Id"], body))
        if crash.startswith("inside") and len(received) == 1:
            raise ProcessKilled
        return 200

    def job_that_dies() -> None:
        with db.unit_of_work() as session:
            deliver_due(session=session, now=NOW, send=biller)
            raise ProcessKilled

    # when: the biller took the event, and the job died before it committed
    with pytest.raises(ProcessKilled):
        job_that_dies()
    # then: the event is still owed, as if never sent
    row = _row(db, event_id)
    assert (row.delivered_at, row.attempts) == (None, 0)
    # when: the job runs again
    with db.unit_of_work() as session:
        report = deliver_due(session=session, now=NOW, send=biller)
    # then: delivered again, under the same id and body, for the biller to deduplicate
    assert report.delivered == [event_id]
    assert [event for event, _ in received] == [event_id, event_id]
    assert received[0][1] == received[1][1]
    assert _row(db, event_id).delivered_at == NOW


def test_a_second_worker_skips_the_rows_the_first_is_sending(core_services: Services) -> None:
    db = core_services.db
    if db.is_sqlite:
        pytest.skip("SQLite serialises writers: a second worker waits instead of skipping")
    # given: two owed events
    with db.unit_of_work() as session:
        event_ids = sorted([_enqueue(session), _enqueue(session)])
    other_runs: list[DeliveryReport] = []

    def slow_biller(_url: str, _headers: Mapping[str, str], _body: bytes) -> int:
        # when: while the first worker is still sending, a second worker runs
        if not other_runs:
            with db.unit_of_work() as other:
                # Fail fast instead of hanging should the rows be waited for, not skipped.
                other.execute(text("SET LOCAL lock_timeout = '2s'"))
                other_runs.append(deliver_due(session=other, now=NOW, send=lambda *_: 200))
        return 200

    with db.unit_of_work() as session:
        report = deliver_due(session=session, now=NOW, send=slow_biller)
    # then: the second worker found nothing to do; the first delivered both
    assert other_runs[0].attempted == 0
    assert sorted(report.delivered) == event_ids
