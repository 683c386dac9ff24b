"""Biller notifications: signed webhooks, delivered at least once from an outbox table.

``enqueue_event`` writes a ``WebhookDelivery`` row in the caller's transaction, so the event is
owed exactly when the payment or refund it reports commits (the outbox pattern). A job runs
``deliver_due`` in its own unit of work: it takes the due rows (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so workers never send the same row at once; SQLite serialises writers anyway),
signs and sends each one, and records the outcome. A failure is retried with exponential
backoff and jitter; after ``MAX_ATTEMPTS`` the row is dead (kept, visible, revivable).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloud.core.errors import Conflict, InvalidInput, NotFound
from civicloud.pay.errors import BillerNotFound
from civicloud.pay.models import Biller, WebhookDelivery

__all__ = [
    "MAX_ATTEMPTS",
    "DeliveryReport",
    "Event",
    "Send",
    "backoff_delay",
    "deliver_due",
    "enqueue_event",
    "http_send",
    "is_dead",
    "redeliver",
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
    if event not in EVENTS:
        raise InvalidInput(f"unknown webhook event {event!r}")
    biller = session.get(Biller, biller_id)
    if biller is None:
        raise BillerNotFound("no such biller")
    if not biller.webhook_url:
        return None
    try:
        # Stored as it will be sent: UUIDs, times and enums as strings, anything else refused.
        data = json.loads(json.dumps(payload, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"webhook payload is not JSON: {exc}") from exc
    delivery = WebhookDelivery(
        event_id=uuid.uuid4().hex, biller_id=biller.id, event=event, payload=data, attempts=0
    )
    session.add(delivery)
    return delivery


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
    """Whether ``delivery`` was given up on: undelivered after ``max_attempts`` attempts."""
    return delivery.delivered_at is None and delivery.attempts >= max_attempts


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
) -> DeliveryReport:
    """Send up to ``limit`` due deliveries and record each outcome (one job run; never commits).

    The rows stay locked until the caller commits, sends included: on SQLite that holds the
    write lock, so keep ``limit`` and the send timeout small there.
    """
    rows = session.scalars(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.delivered_at.is_(None),
            WebhookDelivery.next_attempt_at <= now,
            WebhookDelivery.attempts < max_attempts,
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        # Another worker's rows are skipped, not waited for (SQLite renders no FOR UPDATE).
        .with_for_update(skip_locked=True)
    ).all()
    report = DeliveryReport()
    billers: dict[uuid.UUID, Biller | None] = {}
    for delivery in rows:
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
    """Make a dead (or pending) delivery due now with a fresh attempt budget."""
    delivery = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.event_id == event_id)
    ).one_or_none()
    if delivery is None:
        raise NotFound(f"no webhook delivery {event_id!r}")
    if delivery.delivered_at is not None:
        raise Conflict(f"webhook {event_id} was delivered already")
    delivery.attempts = 0
    delivery.next_attempt_at = now
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
