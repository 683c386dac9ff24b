"""Traffic's console pages: the networks one may see, and a network's map drawn from the network
itself (an SVG of its roads and signals; no map tiles are fetched from anywhere)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from civicloud.traffic import networks
from civicloud.web.deps import SessionDep
from civicloud.web.pages.guards import ConsoleActorDep
from civicloud.web.pages.rendering import render

router = APIRouter(include_in_schema=False)

#: The map's drawing box (the SVG's viewBox is scaled to it, keeping the network's aspect).
MAP_SIZE = 1000.0


@router.get("/console/traffic", name="traffic.page.networks")
def networks_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> HTMLResponse:
    """The road networks of the tenants one may see."""
    rows = networks.visible_networks(session=session, actor=actor)
    return render(request, "traffic/networks.html", {"section": "traffic", "rows": rows})


@router.get("/console/traffic/networks/{network_id}", name="traffic.page.network")
def network_page(
    request: Request, session: SessionDep, actor: ConsoleActorDep, network_id: uuid.UUID
) -> HTMLResponse:
    """A network's map and its signals with their current programs."""
    row = networks.get_network(session=session, actor=actor, network_id=network_id)
    network = networks.load(row)
    xmin, ymin, xmax, ymax = network.bounds
    scale = MAP_SIZE / max(xmax - xmin, ymax - ymin, 1.0)

    def point(x: float, y: float) -> tuple[float, float]:
        # SVG's y grows downwards; the network's northwards.
        return round((x - xmin) * scale, 1), round((ymax - y) * scale, 1)

    lines = [
        " ".join(f"{px},{py}" for px, py in (point(x, y) for x, y in edge.shape))
        for edge in network.edges.values()
        if len(edge.shape) >= 2
    ]
    signals = [
        {
            "id": s.id,
            "xy": point(s.x, s.y),
            "cycle": s.program.cycle,
            "phases": len(s.program.phases),
            "program": s.program_id,
            "links": s.size,
        }
        for s in network.signals.values()
    ]
    width = round((xmax - xmin) * scale, 1) or MAP_SIZE
    height = round((ymax - ymin) * scale, 1) or MAP_SIZE
    return render(
        request,
        "traffic/network.html",
        {
            "section": "traffic",
            "row": row,
            "lines": lines,
            "signals": signals,
            "view_box": f"-20 -20 {width + 40} {height + 40}",
        },
    )
