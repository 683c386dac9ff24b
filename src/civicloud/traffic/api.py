"""Traffic's API (``/api/v1/traffic``): a tenant's road networks and their signals."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from civicloud.traffic import networks
from civicloud.traffic.models import TrafficNetwork
from civicloud.web.deps import ActorDep, SessionDep

router = APIRouter(prefix="/traffic", tags=["traffic"])


class NetworkOut(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    source_name: str
    signals: int
    edges: int
    sha256: str
    created_at: datetime


class PhaseOut(BaseModel):
    duration_s: float
    state: str


class SignalOut(BaseModel):
    tls_id: str
    x: float
    y: float
    links: int
    program_id: str
    cycle_s: float
    phases: list[PhaseOut]


class NetworkDetail(NetworkOut):
    bounds: tuple[float, float, float, float]
    signal_list: list[SignalOut]


def _out(row: TrafficNetwork) -> NetworkOut:
    return NetworkOut.model_validate(row, from_attributes=True)


@router.get("/tenants/{tenant_id}/networks", name="traffic.network.list")
def list_networks(session: SessionDep, actor: ActorDep, tenant_id: uuid.UUID) -> list[NetworkOut]:
    """A tenant's road networks."""
    rows = networks.list_networks(session=session, actor=actor, tenant_id=tenant_id)
    return [_out(row) for row in rows]


@router.get("/networks/{network_id}", name="traffic.network.get")
def get_network(session: SessionDep, actor: ActorDep, network_id: uuid.UUID) -> NetworkDetail:
    """A network with its signals and their current programs."""
    row = networks.get_network(session=session, actor=actor, network_id=network_id)
    network = networks.load(row)
    return NetworkDetail(
        **_out(row).model_dump(),
        bounds=network.bounds,
        signal_list=[
            SignalOut(
                tls_id=s.id,
                x=s.x,
                y=s.y,
                links=s.size,
                program_id=s.program_id,
                cycle_s=s.program.cycle,
                phases=[PhaseOut(duration_s=p.duration, state=p.state) for p in s.program.phases],
            )
            for s in network.signals.values()
        ],
    )
