"""The signal network, read from a SUMO network file (``.net.xml``, optionally gzipped).

SUMO's netconvert turns OpenStreetMap, OpenDRIVE, VISUM, Vissim and other formats into this one
format, so one importer serves every city. What Traffic keeps of it:

- each signal (``tlLogic``): the links it controls, by link index (from edge and lane, to edge
  and lane, direction), its programs (phase state strings and durations) and which of its links
  conflict (the junction's ``foes`` matrix), and the distance each link crosses;
- each edge: its length, lane count, speed and the nodes it joins, to draw the map and to time
  clearance intervals.

sumolib does the parsing. Everything it raises on a broken file (a truncated document, an edge a
connection names but the file never defines) becomes one :class:`NetworkUnreadable`; a file
without a single signal is :class:`NoSignals`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from civicloud.traffic.errors import NetworkUnreadable, NoSignals

#: A SUMO phase state letter that lets a link go: priority green and permissive green.
GREEN = frozenset("Gg")
#: Letters that mean the link is ending its green (yellow) — a transition phase.
YELLOW = frozenset("yY")


@dataclass(frozen=True)
class Link:
    """One controlled connection: vehicles from ``from_lane`` of ``from_edge`` to ``to_edge``."""

    index: int
    from_edge: str
    from_lane: int
    to_edge: str
    to_lane: int
    #: SUMO's direction: s(traight), l(eft), r(ight), t(urn), L/R (partly left/right).
    dir: str
    #: Metres driven inside the junction (the internal lane's length; 0 when unknown).
    crossing_length: float
    #: The speed limit of the approach lane, m/s.
    approach_speed: float
    #: The approach lane's width, metres.
    lane_width: float


@dataclass(frozen=True)
class Crossing:
    """A signalised pedestrian crossing: its link index in the signal's states and its length."""

    index: int
    edge: str
    length: float


@dataclass(frozen=True)
class Phase:
    duration: float
    state: str
    name: str = ""

    def serves(self, index: int) -> bool:
        return self.state[index] in GREEN

    @property
    def is_transition(self) -> bool:
        """A yellow or all-red phase: no link starts a green in it (it only clears)."""
        return any(c in YELLOW for c in self.state) or not any(c in GREEN for c in self.state)


@dataclass(frozen=True)
class Program:
    id: str
    type: str
    offset: float
    phases: tuple[Phase, ...]

    @property
    def cycle(self) -> float:
        return sum(p.duration for p in self.phases)


@dataclass(frozen=True)
class Signal:
    """A traffic light (SUMO's ``tlLogic``) and the junction(s) it controls."""

    id: str
    links: tuple[Link, ...]
    #: Every program in the file, by programID; ``program`` is the one SUMO runs by default.
    programs: Mapping[str, Program]
    program_id: str
    #: Unordered pairs of link indices whose movements conflict (``i < j``).
    foes: frozenset[tuple[int, int]]
    junctions: tuple[str, ...]
    x: float
    y: float
    #: The widest junction outline of the signal, metres: the distance a vehicle that enters at
    #: the end of its green has to clear (ITE's intersection width).
    width: float = 0.0
    #: Its signalised pedestrian crossings (netconvert's ``--crossings.guess``, or OSM's).
    crossings: tuple[Crossing, ...] = ()

    @property
    def program(self) -> Program:
        return self.programs[self.program_id]

    @property
    def size(self) -> int:
        """The length of the program's state strings."""
        return len(self.program.phases[0].state)

    def conflict(self, i: int, j: int) -> bool:
        return (min(i, j), max(i, j)) in self.foes

    def links_at(self, index: int) -> tuple[Link, ...]:
        return tuple(link for link in self.links if link.index == index)

    def movements(self) -> dict[tuple[str, str], tuple[Link, ...]]:
        """The links of each movement (from edge, to edge)."""
        found: dict[tuple[str, str], list[Link]] = {}
        for link in self.links:
            found.setdefault((link.from_edge, link.to_edge), []).append(link)
        return {key: tuple(links) for key, links in found.items()}


@dataclass(frozen=True)
class Edge:
    id: str
    from_node: str
    to_node: str
    length: float
    lanes: int
    speed: float
    shape: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Network:
    signals: Mapping[str, Signal]
    edges: Mapping[str, Edge]
    #: (xmin, ymin, xmax, ymax) in the network's metric coordinates.
    bounds: tuple[float, float, float, float]
    source: str = ""
    meta: Mapping[str, str] = field(default_factory=dict)


def read_network(path: Path | str) -> Network:
    """The signals and roads of a SUMO network file; bad files raise a Traffic error."""
    import sumolib  # SUMO's own reader; imported here so that importing Traffic stays light.

    name = Path(path).name
    try:
        net = sumolib.net.readNet(str(path), withPrograms=True, withFoes=True, withInternal=True)
    except Exception as exc:  # sumolib raises lxml's, sax's and its own errors alike
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # The file's name, never where the server keeps it.
        reason = reason.replace(str(Path(path).parent) + "/", "")
        raise NetworkUnreadable(
            "The network file %(file)s cannot be read: %(reason)s",
            params={"file": name, "reason": reason[:300]},
        ) from exc
    try:
        found = {str(tls.getID()): _signal(net, tls) for tls in net.getTrafficLights()}
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise NetworkUnreadable(
            "The network file %(file)s cannot be read: %(reason)s",
            params={"file": name, "reason": f"inconsistent signal data ({type(exc).__name__})"},
        ) from exc
    signals = {key: value for key, value in found.items() if value is not None}
    crossings = _crossings(Path(path), net)
    signals = {
        key: replace(value, crossings=crossings.get(key, ())) for key, value in signals.items()
    }
    if not signals:
        raise NoSignals(
            "The network file %(file)s has no traffic signals to time.", params={"file": name}
        )
    edges = {
        edge.getID(): Edge(
            id=edge.getID(),
            from_node=edge.getFromNode().getID(),
            to_node=edge.getToNode().getID(),
            length=float(edge.getLength()),
            lanes=int(edge.getLaneNumber()),
            speed=float(edge.getSpeed()),
            shape=tuple((float(x), float(y)) for x, y, *_ in edge.getShape()),
        )
        for edge in net.getEdges(withInternal=False)
    }
    xmin, ymin, xmax, ymax = (float(v) for v in _bounds(net))
    return Network(
        signals=dict(sorted(signals.items())),
        edges=edges,
        bounds=(xmin, ymin, xmax, ymax),
        source=name,
    )


def _crossings(path: Path, net: Any) -> dict[str, tuple[Crossing, ...]]:
    """Each signal's pedestrian crossings: the connections into crossing edges it controls
    (sumolib keeps vehicles' connections only, so the file's are read again)."""
    import gzip
    import xml.etree.ElementTree as ET

    found: dict[str, list[Crossing]] = {}
    with open(path, "rb") as probe:
        packed = probe.read(2) == b"\x1f\x8b"
    opener = gzip.open if packed else open
    with opener(path, "rb") as handle:
        for _, element in ET.iterparse(handle):  # noqa: S314
            if element.tag != "connection":
                if element.tag not in ("edge", "lane", "junction", "request"):
                    continue
                element.clear()
                continue
            target = element.get("to", "")
            tl = element.get("tl")
            index = element.get("linkIndex")
            if tl and index is not None and target.startswith(":"):
                edge = net.getEdge(target) if net.hasEdge(target) else None
                if edge is not None and edge.getFunction() == "crossing":
                    length = float(edge.getLanes()[0].getLength())
                    found.setdefault(tl, []).append(Crossing(int(index), target, length))
            element.clear()
    return {tl: tuple(sorted(items, key=lambda c: c.index)) for tl, items in found.items()}


def _bounds(net: Any) -> tuple[float, float, float, float]:
    (xmin, ymin), (xmax, ymax) = net.getBBoxXY()
    return xmin, ymin, xmax, ymax


def _signal(net: Any, tls: Any) -> Signal | None:
    programs: dict[str, Program] = {}
    for program_id, program in tls.getPrograms().items():
        phases = tuple(
            Phase(duration=float(p.duration), state=str(p.state), name=str(p.name or ""))
            for p in program.getPhases()
        )
        if phases:
            programs[str(program_id)] = Program(
                id=str(program_id),
                type=str(program.getType()),
                offset=float(program._offset),
                phases=phases,
            )
    if not programs:
        return None
    # sumolib keeps programs in file order; SUMO starts the last one loaded.
    program_id = list(programs)[-1]
    connections = list(_connections(net, tls.getID()))
    links = tuple(
        Link(
            index=int(c.getTLLinkIndex()),
            from_edge=c.getFrom().getID(),
            from_lane=int(c.getFromLane().getIndex()),
            to_edge=c.getTo().getID(),
            to_lane=int(c.getToLane().getIndex()),
            dir=str(c.getDirection()),
            crossing_length=_via_length(net, c),
            approach_speed=float(c.getFromLane().getSpeed()),
            lane_width=float(c.getFromLane().getWidth()),
        )
        for c in connections
    )
    links = tuple(sorted(links, key=lambda link: (link.index, link.from_edge, link.from_lane)))
    foes = _foes(connections)
    nodes = sorted({c.getJunction().getID() for c in connections})
    coords = [net.getNode(n).getCoord() for n in nodes] or [(0.0, 0.0)]
    x = sum(float(c[0]) for c in coords) / len(coords)
    y = sum(float(c[1]) for c in coords) / len(coords)
    return Signal(
        id=str(tls.getID()),
        links=links,
        programs=programs,
        program_id=program_id,
        foes=foes,
        junctions=tuple(nodes),
        x=x,
        y=y,
        width=max((_diameter(net.getNode(n).getShape()) for n in nodes), default=0.0),
    )


def _connections(net: Any, tls_id: str) -> Iterable[Any]:
    seen: set[int] = set()
    for edge in net.getEdges(withInternal=False):
        for targets in edge.getOutgoing().values():
            for c in targets:
                if c.getTLSID() == tls_id and c.getTLLinkIndex() >= 0 and id(c) not in seen:
                    seen.add(id(c))
                    yield c


def _via_length(net: Any, connection: Any) -> float:
    via = connection.getViaLaneID()
    if via:
        try:
            return float(net.getLane(via).getLength())
        except (KeyError, AttributeError):
            pass
    # Without internal lanes: the straight distance across the junction's outline.
    return _diameter(connection.getJunction().getShape())


def _diameter(shape: Any) -> float:
    points = [(float(p[0]), float(p[1])) for p in shape or ()]
    if len(points) < 2:
        return 0.0
    return max(math.dist(a, b) for a in points for b in points)


def _foes(connections: list[Any]) -> frozenset[tuple[int, int]]:
    """Pairs of link indices that conflict, from each junction's ``foes`` matrix."""
    by_node: dict[str, list[Any]] = {}
    for c in connections:
        by_node.setdefault(c.getJunction().getID(), []).append(c)
    pairs: set[tuple[int, int]] = set()
    for members in by_node.values():
        node = members[0].getJunction()
        junction_index = {id(c): node.getLinkIndex(c) for c in members}
        for a in members:
            ia = junction_index[id(a)]
            if ia < 0:
                continue
            for b in members:
                ib = junction_index[id(b)]
                if ib < 0 or a is b or a.getTLLinkIndex() == b.getTLLinkIndex():
                    continue
                if _are_foes(node, ia, ib) or _are_foes(node, ib, ia):
                    i, j = a.getTLLinkIndex(), b.getTLLinkIndex()
                    pairs.add((min(i, j), max(i, j)))
    return frozenset(pairs)


def _are_foes(node: Any, a: int, b: int) -> bool:
    try:
        return bool(node.areFoes(a, b))
    except (KeyError, IndexError):
        return False
