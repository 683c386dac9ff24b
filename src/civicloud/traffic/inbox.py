"""Counts that detectors publish over MQTT: received into the inbox, flushed to Parquet.

Detectors (or the bureau's collector) publish to ``civicloud/traffic/<tenant slug>/counts`` a
JSON message ``{"network": "<name or id>", "day": "YYYY-MM-DD"?, "rows": [...]}``, each row with
the CSV's fields (``interval_begin``, ``interval_end``, ``tls_id``, ``from_edge``, ``to_edge``,
``dir``, ``count``). The broker's access control decides who may publish to a tenant's topic.
Detectors that count per detector publish to ``civicloud/traffic/<tenant slug>/detectors`` rows
of ``interval_begin``, ``interval_end``, ``detector_id`` and ``count``: the network's current
detector mapping (``mappings``) turns them into movement counts first, and those are received as
above (a network without a mapping refuses them).

- **Receive** (one unit of work per message): the message is validated whole against the
  tenant's network, as a file is; any bad row refuses the message (logged, acknowledged, never
  retried: it would be refused again). The rows go to ``traffic_count_inbox``, whose primary key
  is the movement and interval: a row already there with the same count is a duplicate (a
  re-sent message, which MQTT's at-least-once delivery brings) and is dropped; with another
  count it refuses the message.
- **Flush** (the job ``traffic.flush_counts``, every minute): each network's inbox becomes one
  Parquet batch (source ``mqtt``), rows already kept dropped as duplicates, and the inbox rows
  are deleted in the same unit of work, after the files are durable. A crash between the two
  leaves files no batch names (ignored) and the inbox as it was (flushed again). A day of
  such batches is a file a minute: ``traffic.compaction`` merges them into one file a day.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloud.core.tenants.models import Tenant
from civicloud.traffic import countstore, mappings, networks
from civicloud.traffic.context import TrafficContext
from civicloud.traffic.counts import Count, CountsReport, require_clean, validate
from civicloud.traffic.detectors import DETECTOR_COLUMNS, convert
from civicloud.traffic.errors import (
    CountsRejected,
    MappingNotFound,
    NetworkNotFound,
    TrafficInvalidInput,
)
from civicloud.traffic.models import TrafficCountBatch, TrafficCountInbox, TrafficNetwork
from civicloud.traffic.network import Network

log = logging.getLogger(__name__)

TOPIC_FILTER = "civicloud/traffic/+/counts"
DETECTOR_TOPIC_FILTER = "civicloud/traffic/+/detectors"
#: What a topic's last level says its messages hold.
KINDS = ("counts", "detectors")
#: The largest message taken (a junction's day of 5-minute counts is ~100 KiB).
MAX_MESSAGE_BYTES = 1 << 20
#: Rows one flush keeps per network (the rest wait for the next run).
FLUSH_ROWS = 200_000


@dataclass(frozen=True)
class Received:
    network_id: uuid.UUID
    rows: int
    duplicates: int


def tenant_of_topic(topic: str) -> str | None:
    """The tenant's slug of a counts or detector counts topic (``None`` for any other)."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[:2] != ["civicloud", "traffic"] or parts[3] not in KINDS:
        return None
    return parts[2] or None


def _detector_rows(
    session: Session, row: TrafficNetwork, network: Network, items: Sequence[Mapping[str, Any]]
) -> CountsReport:
    """Detector counts as the movement counts the network's current mapping makes of them."""
    kept = mappings.latest_mapping(session, row.id)
    if kept is None:
        raise MappingNotFound("The network has no detector mapping yet.")
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(DETECTOR_COLUMNS)
    for item in items:
        cells = [item.get(column, "") for column in DETECTOR_COLUMNS]
        if not all(isinstance(c, str | int | float) and not isinstance(c, bool) for c in cells):
            raise TrafficInvalidInput("The message needs a network and its rows.")
        writer.writerow(cells)
    conversion = convert(
        text.getvalue(), mappings.parsed(kept, row, network), network, every_detector=True
    )
    return require_clean(conversion.report)


def _network(session: Session, tenant: Tenant, name: str) -> TrafficNetwork:
    found: TrafficNetwork | None = None
    try:
        found = session.get(TrafficNetwork, uuid.UUID(name))
    except ValueError:
        found = session.scalars(
            select(TrafficNetwork).where(
                TrafficNetwork.tenant_id == tenant.id, TrafficNetwork.name == name
            )
        ).first()
    if found is None or found.tenant_id != tenant.id:
        raise NetworkNotFound("No such network.")
    return found


def _message(payload: bytes) -> dict[str, Any]:
    """A message's JSON object, with its rows (refused otherwise)."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise TrafficInvalidInput(
            "The message is larger than %(limit)s KiB.", params={"limit": MAX_MESSAGE_BYTES >> 10}
        )
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrafficInvalidInput("The message is not JSON.") from exc
    if not isinstance(message, dict) or not isinstance(message.get("rows"), list):
        raise TrafficInvalidInput("The message needs a network and its rows.")
    return message


def receive(*, session: Session, context: TrafficContext, topic: str, payload: bytes) -> Received:
    """Validate one message and put its new rows in the inbox."""
    slug = tenant_of_topic(topic)
    if slug is None:
        raise TrafficInvalidInput("The topic is not a tenant's counts topic.")
    message = _message(payload)
    tenant = session.scalars(select(Tenant).where(Tenant.slug == slug)).first()
    if tenant is None:
        raise NetworkNotFound("No such network.")
    row = _network(session, tenant, str(message.get("network", ""))[:200])
    network = networks.load(row)
    items: list[Mapping[str, Any]] = [r for r in message["rows"] if isinstance(r, dict)]
    if len(items) != len(message["rows"]) or len(items) > countstore.MAX_JSON_ROWS:
        raise TrafficInvalidInput("The message needs a network and its rows.")
    if topic.endswith("/detectors"):
        report = _detector_rows(session, row, network, items)
    else:
        report = require_clean(validate(countstore.rows_of(items), network))
    day_text = message.get("day")
    try:
        day = date.fromisoformat(day_text) if isinstance(day_text, str) else None
    except ValueError as exc:
        raise TrafficInvalidInput("The message needs a network and its rows.") from exc
    timed = countstore.absolute(report, day, context.zone)
    countstore.check_quarters(timed)
    duplicates = 0
    fresh: list[TrafficCountInbox] = []
    conflicts = 0
    for count, begin, end in timed:
        key = (row.id, count.tls_id, count.from_edge, count.to_edge, begin)
        waiting = session.get(TrafficCountInbox, key)
        if waiting is None:
            fresh.append(
                TrafficCountInbox(
                    network_id=row.id,
                    tls_id=count.tls_id,
                    from_edge=count.from_edge,
                    to_edge=count.to_edge,
                    begin_s=begin,
                    end_s=end,
                    vehicles=round(count.count),
                )
            )
        elif waiting.vehicles == round(count.count):
            duplicates += 1
        else:
            conflicts += 1
    if conflicts:
        raise CountsRejected(
            "%(rejected)s count rows give another count for an interval already kept.",
            params={"rejected": conflicts},
            report=report,
        )
    session.add_all(fresh)
    session.flush()  # a row another server added meanwhile: one Conflict, and the hub retries
    return Received(row.id, len(fresh), duplicates + len(report.duplicates))


def waiting_networks(session: Session) -> Sequence[uuid.UUID]:
    return list(session.scalars(select(TrafficCountInbox.network_id).distinct()))


def flush(
    *, session: Session, context: TrafficContext, network_id: uuid.UUID
) -> TrafficCountBatch | None:
    """Keep a network's inbox as one Parquet batch and empty it."""
    row = session.get(TrafficNetwork, network_id)
    if row is None:
        return None
    waiting = session.scalars(
        select(TrafficCountInbox)
        .where(TrafficCountInbox.network_id == network_id)
        .order_by(TrafficCountInbox.begin_s)
        .limit(FLUSH_ROWS)
    ).all()
    if not waiting:
        return None
    countstore.lock_network(session, row.id)
    timed = [
        (
            Count(w.begin_s, w.end_s, w.tls_id, w.from_edge, w.to_edge, w.vehicles),
            w.begin_s,
            w.end_s,
        )
        for w in waiting
    ]
    kept = countstore.kept_counts(session, context, row, timed)
    fresh = []
    duplicates = 0
    for count, begin, end in timed:
        verdict, detail = countstore.classify(kept, count, begin, end)
        if verdict == "fresh":
            fresh.append((count, begin, end))
            continue
        duplicates += 1
        if verdict != "duplicate":
            # Received after the same interval was kept another way: the kept count stays.
            log.warning("traffic: an MQTT count is dropped (%s): %s", verdict, detail)
    batch_id = uuid.uuid4()
    files = countstore.write_files(context, row, batch_id, fresh)
    batch = TrafficCountBatch(
        id=batch_id,
        tenant_id=row.tenant_id,
        network_id=row.id,
        key=f"mqtt:{batch_id}",
        source="mqtt",
        sha256="0" * 64,
        rows=len(fresh),
        duplicates=duplicates,
        first_begin=countstore.utc_of(min((b for _, b, _ in fresh), default=None)),
        last_end=countstore.utc_of(max((e for _, _, e in fresh), default=None)),
        days=sorted({countstore.local_day(b, context.zone).isoformat() for _, b, _ in fresh}),
        files=files,
        created_by="mqtt",
    )
    session.add(batch)
    # By primary key, exactly the rows read: one received meanwhile waits for the next flush.
    for w in waiting:
        session.delete(w)
    session.flush()
    return batch
