"""A network's detector-to-movement mapping, kept in versions, and detector counts kept with it.

A bureau uploads its mapping (``civicloud.traffic.detectors`` describes the CSV) once per
network and again when detectors change; each upload is validated whole against the network
and kept as a new version (the same file again is no new version), audited
(``traffic.detectors.map``). Detector counts sent later are turned into movement counts with
the latest version and kept as any counts batch is (``countstore.ingest``): validated whole,
re-sent rows counted once, a re-sent batch a replay.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import OrderedDict
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloud.core import audit
from civicloud.core.actor import Actor, authorize
from civicloud.core.tenants.models import Tenant
from civicloud.traffic import countstore, detectors, networks
from civicloud.traffic.context import TrafficContext
from civicloud.traffic.counts import require_clean
from civicloud.traffic.errors import MappingNotFound, TrafficInvalidInput
from civicloud.traffic.models import TrafficDetectorMapping, TrafficNetwork
from civicloud.traffic.network import Network

#: The largest mapping file taken (some 500,000 rows).
MAX_MAPPING_BYTES = 64 * 1024 * 1024


def latest_mapping(session: Session, network_id: uuid.UUID) -> TrafficDetectorMapping | None:
    """The network's current mapping (for a caller that checked the network itself)."""
    return session.scalars(
        select(TrafficDetectorMapping)
        .where(TrafficDetectorMapping.network_id == network_id)
        .order_by(TrafficDetectorMapping.version.desc())
        .limit(1)
    ).first()


def put_mapping(
    *, session: Session, actor: Actor, network_id: uuid.UUID, content: bytes
) -> TrafficDetectorMapping:
    """Keep a new version of the network's detector mapping (validated whole against it)."""
    row = networks.get_network(session=session, actor=actor, network_id=network_id)
    tenant = session.get_one(Tenant, row.tenant_id)
    authorize(actor, "traffic.network.admin", path=tenant.path, what="tenant")
    if len(content) > MAX_MAPPING_BYTES:
        raise TrafficInvalidInput(
            "The detector mapping is larger than %(limit)s MiB.",
            params={"limit": MAX_MAPPING_BYTES >> 20},
        )
    mapping = detectors.read_mapping(content, networks.load(row))
    digest = hashlib.sha256(content).hexdigest()
    latest = latest_mapping(session, row.id)
    if latest is not None and latest.sha256 == digest:
        return latest  # the same file again: the version it made is still the latest
    # Two uploads at once: both take the same next version, and the unique key refuses the
    # second (the unit of work makes it one Conflict).
    kept = TrafficDetectorMapping(
        tenant_id=row.tenant_id,
        network_id=row.id,
        version=(latest.version if latest is not None else 0) + 1,
        content=content,
        sha256=digest,
        detectors=len(mapping.detectors),
        rows=mapping.rows,
        created_by=actor.name,
    )
    session.add(kept)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="traffic.detectors.map",
        target=f"traffic_network:{row.id}",
        tenant_id=row.tenant_id,
        detail={
            "version": kept.version,
            "detectors": kept.detectors,
            "rows": kept.rows,
            "sha256": digest,
        },
    )
    return kept


#: Parsed mappings by (mapping sha256, network sha256): a city's mapping is read once, not
#: for every message its detectors send.
_PARSED: OrderedDict[tuple[str, str], detectors.DetectorMapping] = OrderedDict()
_PARSED_KEPT = 8
_parsed_lock = threading.Lock()


def parsed(
    kept: TrafficDetectorMapping, row: TrafficNetwork, network: Network
) -> detectors.DetectorMapping:
    """The kept mapping read against the network (``row``'s, parsed: validated when kept)."""
    key = (kept.sha256, row.sha256)
    with _parsed_lock:
        found = _PARSED.get(key)
        if found is not None:
            _PARSED.move_to_end(key)
            return found
    found = detectors.read_mapping(kept.content, network)
    with _parsed_lock:
        _PARSED[key] = found
        while len(_PARSED) > _PARSED_KEPT:
            _PARSED.popitem(last=False)
    return found


def find_mapping(
    *, session: Session, actor: Actor, network_id: uuid.UUID
) -> TrafficDetectorMapping | None:
    """The network's latest detector mapping, or ``None`` when it has none."""
    row = networks.get_network(session=session, actor=actor, network_id=network_id)
    return latest_mapping(session, row.id)


def current_mapping(
    *, session: Session, actor: Actor, network_id: uuid.UUID
) -> TrafficDetectorMapping:
    """The network's latest detector mapping (MappingNotFound when it has none)."""
    row = networks.get_network(session=session, actor=actor, network_id=network_id)
    latest = latest_mapping(session, row.id)
    if latest is None:
        raise MappingNotFound("The network has no detector mapping yet.")
    return latest


def ingest_detector_counts(
    *,
    session: Session,
    actor: Actor,
    context: TrafficContext,
    network_id: uuid.UUID,
    content: bytes,
    key: str | None = None,
    day: date | None = None,
) -> countstore.Ingested:
    """Keep detector counts (``interval_begin,interval_end,detector_id,count``) as the
    movement counts the network's latest mapping makes of them."""
    row = networks.get_network(session=session, actor=actor, network_id=network_id)
    tenant = session.get_one(Tenant, row.tenant_id)
    authorize(actor, "traffic.network.admin", path=tenant.path, what="tenant")
    kept = current_mapping(session=session, actor=actor, network_id=network_id)
    network = networks.load(row)
    conversion = detectors.convert(
        content, parsed(kept, row, network), network, every_detector=True
    )
    require_clean(conversion.report)
    return countstore.ingest(
        session=session,
        actor=actor,
        context=context,
        network_id=network_id,
        source="csv",
        content=detectors.movement_csv(conversion),
        key=key,
        day=day,
    )
