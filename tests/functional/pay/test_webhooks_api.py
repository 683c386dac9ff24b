"""Billers' webhooks given up on over HTTP: listed for those who may read the biller, requeued by
its administrators (audited), and delivered again under the same event id."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.factories.core import make_member
from tests.factories.pay import make_agency, make_biller, make_dead_delivery

from civicloud.core.audit import AuditRecord
from civicloud.core.db import utcnow
from civicloud.core.services import Services
from civicloud.pay import webhooks
from civicloud.pay.models import WebhookDelivery


@pytest.fixture
def dead(core_services: Services) -> dict[str, Any]:
    """A biller with a dead delivery, a pay operator and a pay administrator at its agency."""
    with core_services.db.unit_of_work() as session:
        agency = make_agency(session)
        biller = make_biller(
            session,
            tenant=agency,
            webhook_url="https://biller.example/hooks",
            webhook_secret="whsec-0123456789abcdef",
        )
        delivery = make_dead_delivery(session, biller)
        operator = make_member(session, core_services.passwords, home=agency, role="pay_operator")
        admin = make_member(session, core_services.passwords, home=agency, role="pay_admin")
        return {
            "biller": str(biller.id),
            "delivery": str(delivery.id),
            "event_id": delivery.event_id,
            "operator": operator.headers,
            "admin": admin.headers,
        }


def test_a_dead_delivery_is_listed_and_requeued_by_an_administrator(
    client: TestClient, core_services: Services, dead: dict[str, Any]
) -> None:
    # given a delivery given up on, when an operator of the biller lists the dead ones
    listed = client.get(
        "/api/v1/pay/webhooks/dead", params={"biller_id": dead["biller"]}, headers=dead["operator"]
    )
    # then it is there, with why it died
    assert listed.status_code == 200, listed.text
    [row] = listed.json()
    assert (row["id"], row["event_id"], row["attempts"]) == (dead["delivery"], dead["event_id"], 15)
    assert row["dead_at"] is not None
    assert row["last_error"] == "HTTP 503"
    # when the operator tries to requeue it, then that needs the biller's administrator
    path = f"/api/v1/pay/webhooks/{dead['delivery']}/requeue"
    refused = client.post(path, headers=dead["operator"])
    assert refused.status_code == 403, refused.text
    # when the administrator requeues it
    requeued = client.post(path, headers=dead["admin"])
    # then it is due again with a fresh set of retries, audited, and no longer listed as dead
    assert requeued.status_code == 200, requeued.text
    assert (requeued.json()["dead_at"], requeued.json()["attempts"]) == (None, 0)
    assert requeued.json()["event_id"] == dead["event_id"]
    again = client.get(
        "/api/v1/pay/webhooks/dead", params={"biller_id": dead["biller"]}, headers=dead["admin"]
    )
    assert again.json() == []
    with core_services.db.unit_of_work(write=False) as session:
        actions = session.scalars(
            select(AuditRecord.action).where(AuditRecord.target == f"webhook:{dead['event_id']}")
        ).all()
    assert actions == ["pay.webhook.requeue"]
    # and a second requeue is a conflict, not a second budget
    twice = client.post(path, headers=dead["admin"])
    assert twice.status_code == 409
    assert twice.json()["code"] == "pay.webhook_delivery_not_dead"
    # and the job sends it again, under the same event id
    sent: list[str] = []
    with core_services.db.unit_of_work() as session:
        delivery = session.get(WebhookDelivery, uuid.UUID(dead["delivery"]))
        assert delivery is not None
        delivery.next_attempt_at = utcnow() - timedelta(days=3650)
        session.flush()
        report = webhooks.deliver_due(
            session=session,
            now=utcnow() - timedelta(days=3649),
            send=lambda _url, headers, _body: sent.append(headers["X-Civicloud-Event-Id"]) or 200,
        )
    assert dead["event_id"] in report.delivered
    assert sent.count(dead["event_id"]) == 1


def test_requeueing_something_that_is_not_a_dead_delivery_is_a_clear_error(
    client: TestClient, dead: dict[str, Any]
) -> None:
    unknown = client.post(f"/api/v1/pay/webhooks/{uuid.uuid4()}/requeue", headers=dead["admin"])
    malformed = client.post("/api/v1/pay/webhooks/not-an-id/requeue", headers=dead["admin"])
    too_many = client.get(
        "/api/v1/pay/webhooks/dead", params={"limit": 5000}, headers=dead["admin"]
    )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "pay.webhook_delivery_not_found"
    assert (malformed.status_code, too_many.status_code) == (422, 422)
