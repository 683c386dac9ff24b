"""Biller notifications: signed webhooks, delivered at least once from an outbox table.

``enqueue_event`` writes a ``WebhookDelivery`` row in the caller's transaction, so the event is
owed exactly when the payment or refund it reports commits (the outbox pattern). A job runs
``deliver_due`` in its own unit of work: it takes the due rows (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so workers never send the same row at once; SQLite serialises writers anyway),
signs and sends each one, and records the outcome. A failure is retried with exponential
backoff and jitter; after ``MAX_ATTEMPTS`` the row is dead: ``dead_at`` is set, the job leaves
it alone, and it stays listed (:func:`list_dead_deliveries`) until an operator requeues it
(:func:`requeue_delivery`, audited) with a fresh attempt budget, same ``event_id`` and body.
A row is never deleted, so every event owed is delivered or visibly dead.

At least once, not exactly once: a crash after a biller answered 2xx but before the job's
commit sends the event again. The ``event_id`` (``X-Civicloud-Event-Id``, and ``id`` in the
body) is the same on every attempt; billers deduplicate by it.

Signature: ``X-Civicloud-Signature: t=<unix seconds>,v1=<hex>``, where ``v1`` is
HMAC-SHA256 with the biller's ``webhook_secret`` over ``"<t>.<raw body>"``. ``verify_signature``
is the reference check, standard library only, for billers to copy.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from civicloud.core import audit
from civicloud.core.actor import Actor, authorize
from civicloud.core.db import new_id, utcnow
from civicloud.core.errors import Conflict, InvalidInput, NotFound
from civicloud.core.tenants import Tenant, in_subtrees, resolve_tenant
from civicloud.pay.errors import BillerNotFound, WebhookDeliveryNotDead, WebhookDeliveryNotFound
from civicloud.pay.models import Biller, WebhookDelivery

__all__ = [
    "MAX_ATTEMPTS",
    "DeliveryReport",
    "Event",
    "Send",
    "backoff_delay",
    "deliver_due",
    "enqueue_event",
    "enqueue_events",
    "http_send",
    "is_dead",
    "list_dead_deliveries",
    "redeliver",
    "requeue_delivery",
    "sign_body",
    "verify_signature",
    "webhook_body",
]

Event = Literal["bill.paid", "bill.refunded"]
EVENTS: frozenset[str] = frozenset({"bill.paid", "bill.refunded"})
#: ``send(url, headers, body) -> HTTP status``; raising counts as a failed attempt.
Send = Callable[[str, Mapping[str, str], bytes], int]

#: Attempts before a delivery is dead: 30 s doubling up to 6 h spans about a day and a half.
MAX_ATTEMPTS = 15
#: Who may list dead deliveries (at the biller's tenant), and who may requeue one.
READ, REQUEUE = "pay.biller.read", "pay.biller.admin"
BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=6)
SIGNATURE_HEADER = "X-Civicloud-Signature"
EVENT_ID_HEADER = "X-Civicloud-Event-Id"
EVENT_HEADER = "X-Civicloud-Event"
# Jitter only spreads retries out; it protects nothing, so any generator will do.
_JITTER = random.SystemRandom()


def _json_default(value: object) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def enqueue_event(
    *, session: Session, biller_id: uuid.UUID, event: Event, payload: Mapping[str, Any]
) -> WebhookDelivery | None:
    """Owe ``event`` to the biller, in the caller's transaction; ``None`` if it has no webhook."""
    biller = session.get(Biller, biller_id)
    if biller is None:
        raise BillerNotFound("no such biller")
    ids = enqueue_events(
        session=session,
        biller_id=biller.id,
        webhook_url=biller.webhook_url,
        event=event,
        payloads=[payload],
    )
    return session.get(WebhookDelivery, ids[0]) if ids else None


def enqueue_events(
    *,
    session: Session,
    biller_id: uuid.UUID,
    webhook_url: str | None,
    event: Event,
    payloads: Sequence[Mapping[str, Any]],
) -> list[uuid.UUID]:
    """Owe ``event`` once per payload to a biller whose ``webhook_url`` the caller read (none
    is owed without one), in the caller's transaction; the deliveries' ids.

    Written as one SQL statement on the session's connection (this is on every payment's path).
    """
    if event not in EVENTS:
        raise InvalidInput("unknown webhook event %(event)s", params={"event": repr(event)})
    if not webhook_url or not payloads:
        return []
    try:
        # Stored as it will be sent: UUIDs, times and enums as strings, anything else refused.
        data = [json.loads(json.dumps(payload, default=_json_default)) for payload in payloads]
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            "a webhook payload is not JSON: %(reason)s", params={"reason": str(exc)}
        ) from exc
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "event_id": uuid.uuid4().hex,
            "biller_id": biller_id,
            "event": event,
            "payload": item,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for item in data
    ]
    session.connection().execute(_INSERT_DELIVERY, rows)
    return [row["id"] for row in rows]


_INSERT_DELIVERY = insert(WebhookDelivery)


def webhook_body(delivery: WebhookDelivery) -> bytes:
    """The JSON body sent for ``delivery``: the same bytes on every attempt."""
    envelope = {
        "id": delivery.event_id,
        "type": delivery.event,
        "created_at": delivery.created_at.isoformat(timespec="seconds"),
        "data": delivery.payload,
    }
    return json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_body(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Civicloud-Signature`` value of ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, tolerance: int = 300, now: float | None = None
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds of now.

    For billers: pass the raw request body, before any JSON parsing. Standard library only.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False  # too old (a replay) or from a clock far off
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    # Several v1 values may come while a secret is being rotated: any one may match.
    return any(hmac.compare_digest(expected.hexdigest(), value) for value in candidates)


def backoff_delay(attempts: int, *, rng: random.Random = _JITTER) -> timedelta:
    """How long to wait after the ``attempts``-th failure: 30 s · 2^(n-1), at most 6 h, jittered."""
    exponent = min(max(attempts - 1, 0), 20)  # 2^20 · 30 s is far past the cap already
    ceiling = min(BASE_DELAY * (1 << exponent), MAX_DELAY)
    # Half fixed, half random: retries of many failed rows spread out instead of stampeding.
    return ceiling * (0.5 + rng.random() / 2)


def is_dead(delivery: WebhookDelivery, *, max_attempts: int = MAX_ATTEMPTS) -> bool:
    """Whether ``delivery`` was given up on: marked dead, or undelivered after ``max_attempts``."""
    return delivery.delivered_at is None and (
        delivery.dead_at is not None or delivery.attempts >= max_attempts
    )


@dataclass
class DeliveryReport:
    """What one ``deliver_due`` run did, by event id."""

    delivered: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        """How many deliveries were tried."""
        return len(self.delivered) + len(self.retrying) + len(self.dead)


def deliver_due(
    *,
    session: Session,
    now: datetime,
    send: Send,
    limit: int = 100,
    max_attempts: int = MAX_ATTEMPTS,
    rng: random.Random = _JITTER,
    only: uuid.UUID | None = None,
) -> DeliveryReport:
    """Send up to ``limit`` due deliveries (``only``: that one, if it is still due) and record
    each outcome (one job run; never commits).

    A delivery whose last attempt fails is marked dead (``dead_at``) and not tried again; one
    found with its attempts already used up (``max_attempts`` lowered) is marked dead unsent.
    The rows stay locked until the caller commits, sends included: on SQLite that holds the
    write lock, so keep ``limit`` and the send timeout small there.
    """
    rows = session.scalars(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.delivered_at.is_(None),
            WebhookDelivery.dead_at.is_(None),
            WebhookDelivery.next_attempt_at <= now,
            *(() if only is None else (WebhookDelivery.id == only,)),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        # Another worker's rows are skipped, not waited for (SQLite renders no FOR UPDATE).
        .with_for_update(skip_locked=True)
    ).all()
    report = DeliveryReport()
    billers: dict[uuid.UUID, Biller | None] = {}
    for delivery in rows:
        if delivery.attempts >= max_attempts:
            delivery.dead_at = now
            report.dead.append(delivery.event_id)
            continue
        if delivery.biller_id not in billers:
            billers[delivery.biller_id] = session.get(Biller, delivery.biller_id)
        error = _attempt(delivery, billers[delivery.biller_id], now, send)
        delivery.attempts += 1
        if error is None:
            delivery.delivered_at = now
            report.delivered.append(delivery.event_id)
            continue
        delivery.last_error = error[:500]
        if delivery.attempts >= max_attempts:
            delivery.dead_at = now
            report.dead.append(delivery.event_id)
        else:
            delivery.next_attempt_at = now + backoff_delay(delivery.attempts, rng=rng)
            report.retrying.append(delivery.event_id)
    return report


def _attempt(
    delivery: WebhookDelivery, biller: Biller | None, now: datetime, send: Send
) -> str | None:
    """Send ``delivery`` once: ``None`` if the biller took it, else why not."""
    if biller is None or not biller.webhook_url:
        return "the biller has no webhook_url"
    if not biller.webhook_secret:
        return "the biller has no webhook_secret: deliveries are never sent unsigned"
    body = webhook_body(delivery)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "civicloud-webhooks/1",
        EVENT_ID_HEADER: delivery.event_id,
        EVENT_HEADER: delivery.event,
        SIGNATURE_HEADER: sign_body(biller.webhook_secret, body, int(now.timestamp())),
    }
    try:
        status = send(biller.webhook_url, headers, body)
    except Exception as exc:  # whatever went wrong, the attempt failed
        return f"{type(exc).__name__}: {exc}"
    if 200 <= status < 300:
        return None
    return f"HTTP {status}"


def redeliver(*, session: Session, event_id: str, now: datetime) -> WebhookDelivery:
    """Make a dead (or pending) delivery due now with a fresh attempt budget (no access check;
    operators use :func:`requeue_delivery`)."""
    delivery = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.event_id == event_id)
    ).one_or_none()
    if delivery is None:
        raise NotFound("no webhook delivery %(event_id)s", params={"event_id": repr(event_id)})
    if delivery.delivered_at is not None:
        raise Conflict("webhook %(event_id)s was delivered already", params={"event_id": event_id})
    delivery.attempts = 0
    delivery.next_attempt_at = now
    delivery.dead_at = None
    return delivery


def list_dead_deliveries(
    *,
    session: Session,
    actor: Actor,
    biller_id: uuid.UUID | None = None,
    limit: int = 100,
) -> Sequence[WebhookDelivery]:
    """Dead deliveries of the billers where the actor holds ``pay.biller.read``, newest first."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be 1 to 1000", field="limit")
    query = (
        select(WebhookDelivery)
        .join(Biller, Biller.id == WebhookDelivery.biller_id)
        .join(Tenant, Tenant.id == Biller.tenant_id)
        .where(
            WebhookDelivery.dead_at.is_not(None),
            WebhookDelivery.delivered_at.is_(None),
            in_subtrees(Tenant.path, actor.roots(READ)),
        )
    )
    if biller_id is not None:
        # Asked first, so that a biller the actor cannot see is a 404, as everywhere.
        biller = session.get(Biller, biller_id)
        tenant = resolve_tenant(session=session, tenant_id=biller.tenant_id) if biller else None
        if tenant is None:
            raise BillerNotFound("no such biller", resource="biller")
        authorize(actor, READ, path=tenant.path, what="biller")
        query = query.where(WebhookDelivery.biller_id == biller_id)
    return session.scalars(
        query.order_by(WebhookDelivery.dead_at.desc(), WebhookDelivery.id).limit(limit)
    ).all()


def requeue_delivery(
    *, session: Session, actor: Actor, delivery_id: uuid.UUID, now: datetime
) -> WebhookDelivery:
    """Send a dead delivery again: due now, a fresh attempt budget, the same event (audited)."""
    delivery = session.get(WebhookDelivery, delivery_id)
    biller = session.get(Biller, delivery.biller_id) if delivery else None
    tenant = resolve_tenant(session=session, tenant_id=biller.tenant_id) if biller else None
    if delivery is None or biller is None or tenant is None:
        raise WebhookDeliveryNotFound("no such webhook delivery", resource="webhook_delivery")
    authorize(actor, REQUEUE, path=tenant.path, what="webhook delivery")
    # Claimed with one conditional statement: of two operators requeueing it at once, the
    # second finds it no longer dead (PostgreSQL re-reads the row the first one committed).
    claimed = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.dead_at.is_not(None),
            WebhookDelivery.delivered_at.is_(None),
        )
        .values(attempts=0, next_attempt_at=now, dead_at=None)
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session="fetch")
    ).scalar_one_or_none()
    if claimed is None:
        raise WebhookDeliveryNotDead(
            "webhook %(event_id)s is not dead: delivered, or still being retried",
            params={"event_id": delivery.event_id},
        )
    audit.record(
        session=session,
        actor=actor,
        action="pay.webhook.requeue",
        tenant_id=biller.tenant_id,
        target=f"webhook:{delivery.event_id}",
        detail={
            "event": delivery.event,
            "biller": str(biller.id),
            "last_error": delivery.last_error,
        },
    )
    return delivery


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a new destination: the event goes only where configured."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def http_send(url: str, headers: Mapping[str, str], body: bytes, timeout: float = 5.0) -> int:
    """POST ``body`` to an http(s) ``url`` and return the status (the default ``send``)."""
    if urlsplit(url).scheme.lower() not in {"http", "https"} or not urlsplit(url).hostname:
        raise InvalidInput("webhook URLs must be http:// or https:// with a host")
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310 - scheme checked above
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(4096)  # the answer's content is not used; a little is read politely
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
