"""Detector counts: a bureau's counts per detector, turned into turning-movement counts.

Bureaus often count per detector (a loop, a camera zone), not per movement. A *mapping* CSV says
which movements each detector counts, with the columns
``detector_id,tls_id,from_edge,to_edge,share`` (``share`` optional, default 1):

- a row with ``to_edge`` gives ``share`` of the detector's count to the movement
  ``from_edge -> to_edge`` of the signal;
- a row with a ``lane`` instead (the lane's index on ``from_edge``, 0 the rightmost, or SUMO's
  lane id ``<from_edge>_<index>``) puts the detector on that approach lane: ``share`` of its
  count is split evenly over the movements the lane serves; with ``to_edge`` as well, ``share``
  goes to that one movement of the lane;
- a detector may have several rows (a loop on a shared lane serves several movements); its
  shares sum to 1 (within 1e-6).

The mapping is validated against the network whole: every finding (an unknown signal, road, lane
or movement, a share that cannot be read or is negative, shares that do not sum to 1, the same
row twice) is reported with its line, and any finding refuses the mapping
(:class:`MappingRejected`).

The detector counts CSV has the columns ``interval_begin,interval_end,detector_id,count`` (times
as in :mod:`civicloud.traffic.counts`). Each row's count is split over its detector's movements
by the largest remainder, so that counts stay whole and no vehicle is made or lost, and the parts
of every detector counting a movement in an interval are added up. The result is rows of a
movement counts file, validated by :func:`civicloud.traffic.counts.validate` (overlaps, gaps,
absurd counts) with the detector file's line numbers. What only the detector file can have
wrong (an unknown detector, a count that is negative, fractional or not a number, the same
detector and interval again) is found before the split, with its line too.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from civicloud.core.csvsafe import write_csv
from civicloud.core.i18n import N_
from civicloud.traffic.counts import (
    COLUMNS,
    MAX_FINDINGS_SHOWN,
    MAX_INTERVAL_S,
    MAX_ROWS,
    CountsReport,
    Finding,
    _time,
    read_counts,
    unquote_cell,
    validate,
)
from civicloud.traffic.errors import CountsUnreadable, MappingRejected
from civicloud.traffic.network import Network, Signal

MAPPING_REQUIRED = ("detector_id", "tls_id", "from_edge")
MAPPING_COLUMNS = (*MAPPING_REQUIRED, "to_edge", "lane", "share")
DETECTOR_COLUMNS = ("interval_begin", "interval_end", "detector_id", "count")
#: The most rows a mapping may carry (a city of 2,000 signals has some 100,000 detectors).
MAX_MAPPING_ROWS = 500_000
#: How far a detector's shares may sum from 1.
SHARE_TOLERANCE = 1e-6
#: Shares are kept as whole parts of this, so that splitting a count is exact integer arithmetic.
UNITS = 2**40

#: What each kind of mapping finding is called, for people.
MAPPING_KIND_LABELS = {
    "incomplete": N_("a row without a detector, or without a movement or lane"),
    "unknown_signal": N_("unknown signal"),
    "unknown_edge": N_("unknown road"),
    "unknown_lane": N_("unknown lane, or one that serves no movement of the signal"),
    "unknown_movement": N_("unknown movement"),
    "bad_share": N_("unreadable share"),
    "negative_share": N_("negative share"),
    "shares_not_one": N_("a detector's shares do not sum to 1"),
    "duplicate_row": N_("the same mapping row again"),
}


@dataclass(frozen=True)
class Movement:
    tls_id: str
    from_edge: str
    to_edge: str
    #: SUMO's direction of the movement's first link (written to the movement counts' ``dir``).
    dir: str


@dataclass(frozen=True)
class Detector:
    """One detector: the movements it counts and each one's part of its count."""

    id: str
    #: Its first line in the mapping.
    line: int
    movements: tuple[Movement, ...]
    #: Each movement's share, in whole parts of :data:`UNITS` (they sum to it exactly).
    parts: tuple[int, ...]

    def split(self, count: int) -> tuple[int, ...]:
        """``count`` over the movements by the largest remainder: whole, and summing to it.

        Ties of remainders go to the movement named first, so the split is always the same."""
        quotas = [count * part for part in self.parts]
        whole = [q // UNITS for q in quotas]
        left = count - sum(whole)  # exact: the parts sum to UNITS, so 0 <= left < len(parts)
        order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] % UNITS), i))
        for i in order[:left]:
            whole[i] += 1
        return tuple(whole)


@dataclass(frozen=True)
class DetectorMapping:
    detectors: Mapping[str, Detector]
    rows: int


@dataclass
class Conversion:
    """Detector counts turned into movement counts: the report and the rows (``COLUMNS``)."""

    report: CountsReport
    rows: list[dict[str, str]] = field(default_factory=list)


class _BadTable(Exception):
    """A CSV file that cannot be read as a table at all (each caller words it for its file)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def _table(
    content: bytes | str, required: Sequence[str], columns: Sequence[str], limit: int
) -> list[tuple[int, dict[str, str]]]:
    """The non-blank rows of a CSV file with their line numbers, cells by column name."""
    try:
        text = content.decode("utf-8-sig") if isinstance(content, bytes) else content
    except UnicodeDecodeError:
        raise _BadTable("encoding") from None
    reader = csv.reader(io.StringIO(text))
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise _BadTable("empty") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise _BadTable("columns", ", ".join(missing))
        position = {name: header.index(name) for name in columns if name in header}
        for number, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(rows) >= limit:
                raise _BadTable("rows", str(limit))
            rows.append(
                (
                    number,
                    {
                        k: unquote_cell(row[i]).strip() if i < len(row) else ""
                        for k, i in position.items()
                    },
                )
            )
    except csv.Error as exc:
        raise _BadTable("csv", str(exc)) from exc
    return rows


def _mapping_table(content: bytes | str) -> list[tuple[int, dict[str, str]]]:
    try:
        return _table(content, MAPPING_REQUIRED, MAPPING_COLUMNS, MAX_MAPPING_ROWS)
    except _BadTable as bad:
        if bad.reason == "encoding":
            raise MappingRejected("The detector mapping is not UTF-8 text.") from None
        if bad.reason == "empty":
            raise MappingRejected("The detector mapping is empty.") from None
        if bad.reason == "columns":
            raise MappingRejected(
                "The detector mapping lacks the columns %(columns)s.",
                params={"columns": bad.detail},
            ) from None
        if bad.reason == "rows":
            raise MappingRejected(
                "The detector mapping has more than %(limit)s rows.",
                params={"limit": MAX_MAPPING_ROWS},
            ) from None
        raise MappingRejected(
            "The detector mapping cannot be read: %(reason)s", params={"reason": bad.detail}
        ) from None


def _lane_index(text: str, from_edge: str) -> int | None:
    """A lane's index from its index (``1``) or SUMO's lane id (``<from_edge>_1``)."""
    value = text.removeprefix(f"{from_edge}_")
    if not value.isdigit() or not value.isascii() or len(value) > 3:
        return None
    return int(value)


def _share(text: str) -> float | None:
    if not text:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass
class _Row:
    line: int
    detector_id: str
    share: float
    #: (movement, weight): the row's share, over the movements it names.
    movements: list[tuple[Movement, float]]


def _mapping_row(
    network: Network, line: int, row: Mapping[str, str]
) -> tuple[_Row, tuple[str, ...]] | Finding:
    """One mapping row on its own: the row and its identity (to find it twice), or a finding."""
    detector_id, tls_id, from_edge = row["detector_id"], row["tls_id"], row["from_edge"]
    to_edge, lane = row.get("to_edge", ""), row.get("lane", "")
    if not detector_id or not (to_edge or lane):
        return Finding(line, "incomplete", detector_id or "no detector id")
    signal = network.signals.get(tls_id)
    if signal is None:
        return Finding(line, "unknown_signal", tls_id)
    if from_edge not in network.edges:
        return Finding(line, "unknown_edge", from_edge)
    if to_edge and to_edge not in network.edges:
        return Finding(line, "unknown_edge", to_edge)
    share = _share(row.get("share", ""))
    if share is None:
        return Finding(line, "bad_share", row.get("share", ""))
    if share < 0:
        return Finding(line, "negative_share", row.get("share", ""))
    if lane:
        return _lane_row(signal, line, detector_id, from_edge, to_edge, lane, share)
    links = signal.movements().get((from_edge, to_edge))
    if links is None:
        return Finding(line, "unknown_movement", f"{from_edge} -> {to_edge}")
    movement = Movement(tls_id, from_edge, to_edge, links[0].dir)
    identity = (detector_id, tls_id, from_edge, to_edge, "")
    return _Row(line, detector_id, share, [(movement, share)]), identity


def _lane_row(
    signal: Signal,
    line: int,
    detector_id: str,
    from_edge: str,
    to_edge: str,
    lane: str,
    share: float,
) -> tuple[_Row, tuple[str, ...]] | Finding:
    index = _lane_index(lane, from_edge)
    served: dict[str, str] = {}
    for link in signal.links:
        if link.from_edge == from_edge and link.from_lane == index:
            served.setdefault(link.to_edge, link.dir)
    if index is None or not served:
        return Finding(line, "unknown_lane", f"{from_edge} lane {lane} at {signal.id}")
    if to_edge and to_edge not in served:
        return Finding(line, "unknown_movement", f"{from_edge} lane {index} -> {to_edge}")
    targets = {to_edge: served[to_edge]} if to_edge else served
    movements = [
        (Movement(signal.id, from_edge, t, d), share / len(targets)) for t, d in targets.items()
    ]
    identity = (detector_id, signal.id, from_edge, to_edge, str(index))
    return _Row(line, detector_id, share, movements), identity


def _parts(weights: Sequence[float]) -> tuple[int, ...]:
    """Weights (summing to about 1) as whole parts of :data:`UNITS` that sum to it exactly.

    The weights are normalised exactly (as fractions) and rounded by the largest remainder, so
    that a detector's movements get all of its count, not 0.999999 of it."""
    exact = [Fraction(w) for w in weights]
    total = sum(exact, Fraction(0))
    quotas = [w * UNITS / total for w in exact]
    whole = [math.floor(q) for q in quotas]
    left = UNITS - sum(whole)  # 0 <= left < len(weights): each floor loses less than one
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - whole[i]), i))
    for i in order[:left]:
        whole[i] += 1
    return tuple(whole)


def read_mapping(content: bytes | str, network: Network) -> DetectorMapping:
    """A detector-to-movement mapping, validated whole against ``network``.

    Any finding refuses the mapping with :class:`MappingRejected`, which lists them (the first
    hundred) with their lines."""
    table = _mapping_table(content)
    if not table:
        raise MappingRejected("The detector mapping maps no detector.")
    findings: list[Finding] = []
    seen: dict[tuple[str, ...], int] = {}
    rows: dict[str, list[_Row]] = {}
    refused: set[str] = set()
    for line, cells in table:
        result = _mapping_row(network, line, cells)
        if isinstance(result, Finding):
            findings.append(result)
            refused.add(cells["detector_id"])
            continue
        row, identity = result
        if identity in seen:
            findings.append(Finding(line, "duplicate_row", f"line {seen[identity]}"))
            refused.add(row.detector_id)
            continue
        seen[identity] = line
        rows.setdefault(row.detector_id, []).append(row)
    detectors: dict[str, Detector] = {}
    for detector_id, mine in rows.items():
        if detector_id in refused:
            continue  # its other rows' finding says what is wrong; a sum would only repeat it
        total = math.fsum(r.share for r in mine)
        # The slack: 0.333333 three times is a millionth short, but its float a hair more.
        if abs(total - 1.0) > SHARE_TOLERANCE * (1 + 1e-9):
            lines = ", ".join(str(r.line) for r in mine)
            findings.append(
                Finding(mine[0].line, "shares_not_one", f"{detector_id}: {total:g} (lines {lines})")
            )
            continue
        weights: dict[Movement, float] = {}
        for r in mine:
            for movement, weight in r.movements:
                weights[movement] = weights.get(movement, 0.0) + weight
        detectors[detector_id] = Detector(
            id=detector_id,
            line=mine[0].line,
            movements=tuple(weights),
            parts=_parts(list(weights.values())),
        )
    if findings:
        findings.sort(key=lambda f: f.line)
        first = findings[0]
        raise MappingRejected(
            "%(rejected)s of %(rows)s detector mapping rows were refused (first: line %(line)s, "
            "%(kind_label)s).",
            params={
                "rejected": len(findings),
                "rows": len(table),
                "line": first.line,
                "kind_label": MAPPING_KIND_LABELS[first.kind],
            },
            findings=[
                {"line": f.line, "kind": f.kind, "detail": f.detail}
                for f in findings[:MAX_FINDINGS_SHOWN]
            ],
        )
    return DetectorMapping(detectors=detectors, rows=len(table))


def _counts_table(content: bytes | str) -> list[tuple[int, dict[str, str]]]:
    try:
        return _table(content, DETECTOR_COLUMNS, DETECTOR_COLUMNS, MAX_ROWS)
    except _BadTable as bad:
        if bad.reason == "encoding":
            raise CountsUnreadable("The counts file is not UTF-8 text.") from None
        if bad.reason == "empty":
            raise CountsUnreadable("The counts file is empty.") from None
        if bad.reason == "columns":
            raise CountsUnreadable(
                "The counts file lacks the columns %(columns)s.", params={"columns": bad.detail}
            ) from None
        if bad.reason == "rows":
            raise CountsUnreadable(
                "The counts file has more than %(limit)s rows.", params={"limit": MAX_ROWS}
            ) from None
        raise CountsUnreadable(
            "The counts file cannot be read: %(reason)s", params={"reason": bad.detail}
        ) from None


@dataclass
class _Cell:
    """One movement in one interval: the detectors' parts added up."""

    line: int
    begin: str
    end: str
    dir: str
    count: int = 0


def _detector_row(
    mapping: DetectorMapping, line: int, row: Mapping[str, str]
) -> tuple[Detector, float, float, int] | Finding:
    try:
        begin, _ = _time(row["interval_begin"])
        end, _ = _time(row["interval_end"])
        count = float(row["count"])
    except ValueError:
        return Finding(line, "unreadable", "a time or count is not readable")
    if not math.isfinite(count):
        return Finding(line, "unreadable", f"count {row['count']}")
    if count < 0:
        return Finding(line, "negative", row["count"])
    if count != int(count):
        return Finding(line, "fractional", row["count"])
    if not end > begin or end - begin > MAX_INTERVAL_S:
        return Finding(line, "bad_interval", f"{begin}..{end}")
    detector = mapping.detectors.get(row["detector_id"])
    if detector is None:
        return Finding(line, "unknown_detector", row["detector_id"])
    return detector, begin, end, int(count)


def convert(
    content: bytes | str,
    mapping: DetectorMapping,
    network: Network,
    *,
    every_detector: bool = False,
) -> Conversion:
    """Detector counts as movement counts, validated as a movement counts file would be.

    The report's findings carry the detector file's lines; ``rows`` are the movement counts
    (one per movement and interval, in time order) for writing out. With ``every_detector``
    (counts that are kept: each batch's movement counts are final), a movement that several
    detectors count needs all of them in each of its intervals (``missing_detector``)."""
    found: list[Finding] = []
    duplicates: list[Finding] = []
    seen: dict[tuple[str, float, float], tuple[int, int]] = {}
    cells: dict[tuple[str, str, str, float, float], _Cell] = {}
    present: dict[tuple[float, float], set[str]] = {}
    table = _counts_table(content)
    for line, row in table:
        result = _detector_row(mapping, line, row)
        if isinstance(result, Finding):
            found.append(result)
            continue
        detector, begin, end, count = result
        identity = (detector.id, begin, end)
        if identity in seen:
            first_line, first_count = seen[identity]
            if first_count == count:
                duplicates.append(Finding(line, "duplicate", f"line {first_line}"))
            else:
                found.append(
                    Finding(line, "conflicting_duplicate", f"line {first_line} says {first_count}")
                )
            continue
        seen[identity] = (line, count)
        present.setdefault((begin, end), set()).add(detector.id)
        for movement, part in zip(detector.movements, detector.split(count), strict=True):
            key = (movement.tls_id, movement.from_edge, movement.to_edge, begin, end)
            cell = cells.get(key)
            if cell is None:
                if len(cells) >= MAX_ROWS:
                    raise CountsUnreadable(
                        "The detector counts make more than %(limit)s movement rows.",
                        params={"limit": MAX_ROWS},
                    )
                cell = cells[key] = _Cell(
                    line, row["interval_begin"], row["interval_end"], movement.dir
                )
            cell.count += part
    if every_detector:
        found += _missing_detectors(mapping, cells, present)
    ordered = sorted(cells.items(), key=lambda item: (item[0][3], item[0][4], item[0][:3]))
    movement_rows = [
        {
            "interval_begin": cell.begin,
            "interval_end": cell.end,
            "tls_id": tls_id,
            "from_edge": from_edge,
            "to_edge": to_edge,
            "dir": cell.dir,
            "count": str(cell.count),
        }
        for (tls_id, from_edge, to_edge, _, _), cell in ordered
    ]
    report = validate(
        ((cell.line, values) for (_, cell), values in zip(ordered, movement_rows, strict=True)),
        network,
    )
    report.rows = len(table)
    report.rejected = sorted([*found, *report.rejected], key=lambda f: f.line)
    report.duplicates = sorted([*duplicates, *report.duplicates], key=lambda f: f.line)
    return Conversion(report=report, rows=movement_rows)


def _missing_detectors(
    mapping: DetectorMapping,
    cells: Mapping[tuple[str, str, str, float, float], _Cell],
    present: Mapping[tuple[float, float], set[str]],
) -> list[Finding]:
    """A movement counted by several detectors needs all of them in each interval it has: with
    one missing, its count would be kept short (and the rest, sent later, refused as another
    count of an interval kept)."""
    feeders: dict[tuple[str, str, str], set[str]] = {}
    for detector in mapping.detectors.values():
        for movement in detector.movements:
            key = (movement.tls_id, movement.from_edge, movement.to_edge)
            feeders.setdefault(key, set()).add(detector.id)
    found = []
    for (tls_id, from_edge, to_edge, begin, end), cell in cells.items():
        missing = feeders[(tls_id, from_edge, to_edge)] - present[(begin, end)]
        if missing:
            names = ", ".join(sorted(missing)[:3]) + (" ..." if len(missing) > 3 else "")
            found.append(
                Finding(cell.line, "missing_detector", f"{from_edge} -> {to_edge}: {names}")
            )
    return found


def read_detector_counts(
    content: bytes | str, mapping: DetectorMapping, network: Network
) -> CountsReport:
    """Detector counts, as the report of the movement counts they make."""
    return convert(content, mapping, network).report


def read_any_counts(
    content: bytes | str, network: Network, mapping: bytes | str | None = None
) -> CountsReport:
    """A counts file's report: movement counts, or detector counts with their ``mapping``."""
    if mapping is None:
        return read_counts(content, network)
    return read_detector_counts(content, read_mapping(mapping, network), network)


def movement_csv(conversion: Conversion) -> bytes:
    """The movement counts as a CSV file (``COLUMNS``), safe to open in a spreadsheet."""
    return write_csv(
        ([row[c] for c in COLUMNS] for row in conversion.rows),
        header=COLUMNS,
    )
