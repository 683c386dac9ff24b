"""Tenants' stored road networks: import (validated by reading it), list, read back.

A network is imported from a SUMO network file: it is read in full first (a file that is not a
network, or has no signal, is refused and nothing is stored), then kept compressed with the
counts of what it holds. Names are unique within a tenant; importing under a taken name is a
:class:`NetworkNameTaken`. Every import is audited.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tempfile
import threading
import uuid
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloud.core import audit, tenants
from civicloud.core.actor import Actor, authorize
from civicloud.core.tenants.models import Tenant
from civicloud.traffic.errors import (
    NetworkNameTaken,
    NetworkNotFound,
    NetworkUnreadable,
    TrafficInvalidInput,
)
from civicloud.traffic.models import TrafficNetwork
from civicloud.traffic.network import Network, read_network

#: The largest network file accepted (uncompressed): a city of thousands of signals is ~200 MB.
MAX_NETWORK_BYTES = 512 * 1024 * 1024
#: The most XML a (gzipped) network file may unpack to.
MAX_NETWORK_XML_BYTES = 1024 * 1024 * 1024
MAX_NAME = 120


@dataclass(frozen=True)
class MapData:
    """What the console draws: every edge as a polyline and every signal as a point."""

    bounds: tuple[float, float, float, float]
    edges: list[list[tuple[float, float]]]
    signals: list[tuple[str, float, float]]


def _uncompressed(content: bytes) -> bytes:
    """The file's XML: as sent, or gunzipped, up to :data:`MAX_NETWORK_XML_BYTES` (a small
    gzip file can unpack to any size)."""
    if content[:2] != b"\x1f\x8b":
        return content
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(content)) as packed:
            raw = packed.read(MAX_NETWORK_XML_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise NetworkUnreadable(
            "The network file %(file)s cannot be read: %(reason)s",
            params={"file": "gzip", "reason": str(exc)[:200] or type(exc).__name__},
        ) from exc
    if len(raw) > MAX_NETWORK_XML_BYTES:
        raise TrafficInvalidInput(
            "The network file unpacks to more than %(limit)s MiB.",
            params={"limit": MAX_NETWORK_XML_BYTES >> 20},
        )
    return raw


def _read_bytes(raw: bytes, source_name: str) -> Network:
    """The network of a file's XML, read under the file's own name (without its folder)."""
    name = Path(source_name).name or "network.net.xml"
    for suffix in (".gz", ".xml", ".net"):
        name = name.removesuffix(suffix)
    with tempfile.TemporaryDirectory(prefix="civicloud-net-") as folder:
        path = Path(folder) / f"{name or 'network'}.net.xml"
        path.write_bytes(raw)
        return read_network(path)


def require_importer(*, session: Session, actor: Actor, tenant_id: uuid.UUID) -> Tenant:
    """The tenant, if the actor may import networks into it (else NotFound or PermissionDenied)."""
    tenant = tenants.get_tenant_or_raise(session=session, actor=actor, tenant_id=tenant_id)
    authorize(actor, "traffic.network.admin", path=tenant.path, what="tenant")
    return tenant


def import_network(
    *,
    session: Session,
    actor: Actor,
    tenant_id: uuid.UUID,
    name: str,
    content: bytes,
    source_name: str = "network.net.xml",
) -> TrafficNetwork:
    tenant = require_importer(session=session, actor=actor, tenant_id=tenant_id)
    clean = name.strip()
    if not clean or len(clean) > MAX_NAME or not clean.isprintable():
        raise TrafficInvalidInput(
            "A network's name has 1 to %(limit)s printable characters.", params={"limit": MAX_NAME}
        )
    if len(content) > MAX_NETWORK_BYTES:
        raise TrafficInvalidInput(
            "The network file is larger than %(limit)s MiB.",
            params={"limit": MAX_NETWORK_BYTES >> 20},
        )
    raw = _uncompressed(content)
    network = _read_bytes(raw, source_name)
    row = TrafficNetwork(
        tenant_id=tenant.id,
        name=clean,
        source_name=Path(source_name).name[:255] or "network.net.xml",
        signals=len(network.signals),
        edges=len(network.edges),
        content=gzip.compress(raw, compresslevel=6, mtime=0),
        sha256=hashlib.sha256(raw).hexdigest(),
    )
    if session.scalar(
        select(TrafficNetwork.id).where(
            TrafficNetwork.tenant_id == tenant.id, TrafficNetwork.name == clean
        )
    ):
        raise NetworkNameTaken(
            "The tenant already has a network named %(name)s.", params={"name": clean}
        )
    # Two imports of one name at once: the unique constraint refuses the second, and the unit
    # of work turns that into one Conflict (core.db.as_conflict).
    session.add(row)
    session.flush()  # the row's id, for the audit record
    audit.record(
        session=session,
        actor=actor,
        action="traffic.network.import",
        target=f"traffic_network:{row.id}",
        tenant_id=tenant.id,
        detail={"name": clean, "signals": row.signals, "edges": row.edges, "sha256": row.sha256},
    )
    return row


def list_networks(*, session: Session, actor: Actor, tenant_id: uuid.UUID) -> list[TrafficNetwork]:
    tenant = tenants.get_tenant_or_raise(session=session, actor=actor, tenant_id=tenant_id)
    authorize(actor, "traffic.network.read", path=tenant.path, what="tenant")
    return list(
        session.scalars(
            select(TrafficNetwork)
            .where(TrafficNetwork.tenant_id == tenant.id)
            .order_by(TrafficNetwork.name)
        )
    )


def visible_networks(*, session: Session, actor: Actor) -> list[tuple[Tenant, TrafficNetwork]]:
    """(tenant, network) of every network the actor may read, by tenant and name."""
    rows = session.execute(
        select(Tenant, TrafficNetwork)
        .join(TrafficNetwork, TrafficNetwork.tenant_id == Tenant.id)
        .order_by(Tenant.path, TrafficNetwork.name)
    ).all()
    return [
        (tenant, network)
        for tenant, network in rows
        if actor.can("traffic.network.read", tenant.path)
    ]


def importing_tenants(*, session: Session, actor: Actor, limit: int = 500) -> list[Tenant]:
    """The tenants the actor may import networks into, in tree order (for a choice of tenant)."""
    roots = actor.roots("traffic.network.admin")
    query = select(Tenant).where(tenants.in_subtrees(Tenant.path, roots))
    return list(session.scalars(query.order_by(Tenant.path).limit(limit)))


def get_network(*, session: Session, actor: Actor, network_id: uuid.UUID) -> TrafficNetwork:
    row = session.get(TrafficNetwork, network_id)
    missing = NetworkNotFound("No such network.")
    if row is None:
        raise missing
    tenant = tenants.get_tenant_or_raise(session=session, actor=actor, tenant_id=row.tenant_id)
    if not actor.can("traffic.network.read", tenant.path):
        raise missing  # a network the actor may not read does not exist for them
    return row


#: Networks read, by their file's SHA-256 (a stored network never changes): the pages, the API
#: and every MQTT message read the same few networks again and again.
_PARSED: OrderedDict[str, Network] = OrderedDict()
_PARSED_LOCK = threading.Lock()
PARSED_KEPT = 8


def load(row: TrafficNetwork) -> Network:
    """The stored network, as read from its file (kept for the next call)."""
    with _PARSED_LOCK:
        found = _PARSED.get(row.sha256)
        if found is not None:
            _PARSED.move_to_end(row.sha256)
            return found
    network = _read_bytes(row.content, row.source_name)
    with _PARSED_LOCK:
        _PARSED[row.sha256] = network
        while len(_PARSED) > PARSED_KEPT:
            _PARSED.popitem(last=False)
    return network


def map_data(network: Network) -> MapData:
    return MapData(
        bounds=network.bounds,
        edges=[list(edge.shape) for edge in network.edges.values()],
        signals=[(s.id, s.x, s.y) for s in network.signals.values()],
    )


def signal_ids(row: TrafficNetwork) -> list[str]:
    """The ids of the network's signals, sorted."""
    return sorted(load(row).signals)
