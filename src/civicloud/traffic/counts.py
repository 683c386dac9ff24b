"""Turning-movement counts: read, validated against the network, turned into design demand.

The CSV columns are ``interval_begin,interval_end,tls_id,from_edge,to_edge,dir,count``
(``dir`` optional); times are seconds (of the day or of a simulation) or ISO 8601 timestamps.
Validation reports every finding with its line, and what it did with the row:

- *rejected* rows (unreadable values, unknown signals or movements, negative or absurd counts,
  an interval that ends before it begins, one that overlaps another of the same movement) are
  counted nowhere; :func:`validate` with ``strict`` refuses the whole file when there are any,
  so that nothing is half-loaded;
- *duplicates* (the same movement and interval again, as a re-sent message gives) are counted
  once;
- *gaps* (time missing between two intervals of a movement) and zero-count days are reported and
  loaded.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import weakref
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from civicloud.core import csvsafe
from civicloud.core.i18n import N_
from civicloud.traffic.errors import CountsRejected, CountsUnreadable
from civicloud.traffic.network import Network

COLUMNS = ("interval_begin", "interval_end", "tls_id", "from_edge", "to_edge", "dir", "count")
REQUIRED = tuple(c for c in COLUMNS if c != "dir")
#: More vehicles per lane and hour than any lane discharges (HCM's ideal is 1,900 pc/h/ln):
#: a detector fault, not traffic.
ABSURD_PER_LANE_HOUR = 3000.0
#: The longest interval a count may cover.
MAX_INTERVAL_S = 86400.0
#: No count begins at or after this (2100-12-31, as POSIX seconds; seconds of a day or of a
#: simulation are far below it): a later time is a typing error, and no clock handles it.
LATEST_TIME_S = 4_133_894_400.0
#: The most rows one file may carry.
MAX_ROWS = 5_000_000


#: What each kind of finding is called, for people.
KIND_LABELS = {
    "unreadable": N_("unreadable time or count"),
    "unknown_signal": N_("unknown signal"),
    "unknown_movement": N_("unknown movement"),
    "negative": N_("negative count"),
    "fractional": N_("fractional count"),
    "bad_interval": N_("interval ends before it begins or exceeds a day"),
    "absurd": N_("more vehicles than the lanes can carry"),
    "conflicting_duplicate": N_("the same interval again with another count"),
    "mixed_times": N_("seconds and ISO timestamps mixed"),
    "overlap": N_("overlapping intervals"),
    "duplicate": N_("duplicate, counted once"),
    "gap": N_("gap between intervals"),
    "unknown_detector": N_("unknown detector"),
    "missing_detector": N_("a movement's other detectors missing in the interval"),
}


@dataclass(frozen=True)
class Count:
    begin: float
    end: float
    tls_id: str
    from_edge: str
    to_edge: str
    count: float


@dataclass(frozen=True)
class Finding:
    line: int
    kind: str
    detail: str


#: How many rejected rows a refusal lists (the report itself keeps them all).
MAX_FINDINGS_SHOWN = 100


@dataclass
class CountsReport:
    rows: int = 0
    accepted: list[Count] = field(default_factory=list)
    rejected: list[Finding] = field(default_factory=list)
    duplicates: list[Finding] = field(default_factory=list)
    gaps: list[Finding] = field(default_factory=list)
    #: Whether times were ISO timestamps (then ``begin`` and ``end`` are POSIX seconds).
    absolute_times: bool = False

    @property
    def ok(self) -> bool:
        return not self.rejected

    def summary(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "accepted": len(self.accepted),
            "rejected": len(self.rejected),
            "duplicates": len(self.duplicates),
            "gaps": len(self.gaps),
        }


def _time(text: str) -> tuple[float, bool]:
    value = text.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ValueError(value)
        return number, False
    stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        raise ValueError(value)  # a time without a zone means a different instant elsewhere
    return stamp.timestamp(), True


def unquote_cell(cell: str) -> str:
    """A cell as it was before :func:`civicloud.core.csvsafe.neutralise` made it safe for a
    spreadsheet (``'-E0`` back to ``-E0``), so that a file written for people reads back.

    Only the prefix ``neutralise`` adds is taken off; SUMO's ids never start with a quote."""
    rest = cell.removeprefix(csvsafe.TEXT_PREFIX)
    if rest != cell and (csvsafe.is_dangerous(rest) or rest.startswith(csvsafe.TEXT_PREFIX)):
        return rest
    return cell


def read_counts(content: bytes | str, network: Network) -> CountsReport:
    """Every row of a counts CSV, validated against ``network``."""
    try:
        text = content.decode("utf-8-sig") if isinstance(content, bytes) else content
    except UnicodeDecodeError:
        raise CountsUnreadable("The counts file is not UTF-8 text.") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise CountsUnreadable("The counts file is empty.") from None
    except csv.Error as exc:
        raise CountsUnreadable(
            "The counts file cannot be read: %(reason)s", params={"reason": str(exc)}
        ) from exc
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise CountsUnreadable(
            "The counts file lacks the columns %(columns)s.",
            params={"columns": ", ".join(missing)},
        )
    position = {name: header.index(name) for name in COLUMNS if name in header}
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for number, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(rows) >= MAX_ROWS:
                raise CountsUnreadable(
                    "The counts file has more than %(limit)s rows.", params={"limit": MAX_ROWS}
                )
            rows.append(
                (
                    number,
                    {
                        k: (unquote_cell(row[i]) if i < len(row) else "")
                        for k, i in position.items()
                    },
                )
            )
    except csv.Error as exc:
        raise CountsUnreadable(
            "The counts file cannot be read: %(reason)s", params={"reason": str(exc)}
        ) from exc
    return validate(rows, network)


#: Each network's movements and their lane counts, by the network object (a stored network is
#: read once and kept; an MQTT message of a city's 2,000 signals then costs its own rows only).
_LANES: dict[int, tuple[weakref.ref[Network], dict[tuple[str, str, str], int]]] = {}
_LANES_KEPT = 8


def movement_lanes(network: Network) -> dict[tuple[str, str, str], int]:
    """(signal, from edge, to edge) -> the number of approach lanes the movement uses."""
    found = _LANES.get(id(network))
    if found is not None and found[0]() is network:
        return found[1]
    lanes: dict[tuple[str, str, str], int] = {}
    for signal in network.signals.values():
        for (f, t), links in signal.movements().items():
            lanes[(signal.id, f, t)] = len({link.from_lane for link in links})
    if len(_LANES) >= _LANES_KEPT:
        _LANES.pop(next(iter(_LANES)))
    _LANES[id(network)] = (weakref.ref(network), lanes)
    return lanes


def validate(rows: Iterable[tuple[int, Mapping[str, str]]], network: Network) -> CountsReport:
    report = CountsReport()
    lanes = movement_lanes(network)
    seen: dict[tuple[str, str, str, float, float], tuple[int, float]] = {}
    kinds: set[bool] = set()
    for line, row in rows:
        report.rows += 1
        try:
            begin, absolute_b = _time(row.get("interval_begin", ""))
            end, absolute_e = _time(row.get("interval_end", ""))
            count = float(row.get("count", "").strip())
        except ValueError:
            report.rejected.append(Finding(line, "unreadable", "a time or count is not readable"))
            continue
        kinds.update((absolute_b, absolute_e))
        tls_id = row.get("tls_id", "").strip()
        key = (tls_id, row.get("from_edge", "").strip(), row.get("to_edge", "").strip())
        finding = _row_finding(network, lanes, key, begin, end, count)
        if finding is not None:
            report.rejected.append(Finding(line, *finding))
            continue
        identity = (*key, begin, end)
        if identity in seen:
            first_line, first_count = seen[identity]
            if first_count == count:
                report.duplicates.append(Finding(line, "duplicate", f"line {first_line}"))
            else:
                report.rejected.append(
                    Finding(
                        line, "conflicting_duplicate", f"line {first_line} says {first_count:g}"
                    )
                )
            continue
        seen[identity] = (line, count)
        report.accepted.append(Count(begin, end, *key, count))
    if len(kinds) > 1:
        report.rejected.append(Finding(0, "mixed_times", "seconds and ISO timestamps mixed"))
    report.absolute_times = kinds == {True}
    _check_sequences(report, {identity: line for identity, (line, _) in seen.items()})
    return report


def _row_finding(
    network: Network,
    lanes: Mapping[tuple[str, str, str], int],
    key: tuple[str, str, str],
    begin: float,
    end: float,
    count: float,
) -> tuple[str, str] | None:
    """(kind, detail) of what is wrong with one row on its own, or ``None``."""
    tls_id, from_edge, to_edge = key
    if tls_id not in network.signals:
        return "unknown_signal", tls_id
    if key not in lanes:
        return "unknown_movement", f"{from_edge} -> {to_edge}"
    if not math.isfinite(count) or count < 0:
        return "negative", str(count)
    if count != int(count):
        return "fractional", str(count)
    if not end > begin or end - begin > MAX_INTERVAL_S or not 0 <= begin < LATEST_TIME_S:
        return "bad_interval", f"{begin}..{end}"
    if count / ((end - begin) / 3600.0) > ABSURD_PER_LANE_HOUR * lanes[key]:
        return "absurd", f"{int(count)} in {end - begin:g} s"
    return None


def _check_sequences(
    report: CountsReport, line_of: Mapping[tuple[str, str, str, float, float], int]
) -> None:
    """Overlaps (rejected: the count would be taken twice) and gaps (reported) per movement."""
    by_movement: dict[tuple[str, str, str], list[Count]] = {}
    for c in report.accepted:
        by_movement.setdefault((c.tls_id, c.from_edge, c.to_edge), []).append(c)
    overlapping: set[int] = set()
    for key, counts in by_movement.items():
        counts.sort(key=lambda c: (c.begin, c.end))
        for prev, cur in itertools.pairwise(counts):
            where = line_of.get((*key, cur.begin, cur.end), 0)
            if cur.begin < prev.end:
                overlapping.add(id(cur))
                report.rejected.append(
                    Finding(where, "overlap", f"{cur.begin:g}..{cur.end:g} over {prev.end:g}")
                )
            elif cur.begin > prev.end:
                report.gaps.append(Finding(where, "gap", f"{prev.end:g}..{cur.begin:g}"))
    if overlapping:
        report.accepted = [c for c in report.accepted if id(c) not in overlapping]


def require_clean(report: CountsReport) -> CountsReport:
    """The report, or :class:`CountsRejected` naming the first finding if any row was rejected."""
    if report.rejected:
        first = report.rejected[0]
        raise CountsRejected(
            "%(rejected)s of %(rows)s count rows were rejected (first: line %(line)s, "
            "%(kind_label)s).",
            params={
                "rejected": len(report.rejected),
                "rows": report.rows,
                "line": first.line,
                "kind_label": KIND_LABELS[first.kind],
            },
            report=report,
            # Over HTTP, the problem document lists the findings (the first hundred).
            findings=[
                {"line": f.line, "kind": f.kind, "detail": f.detail}
                for f in report.rejected[:MAX_FINDINGS_SHOWN]
            ],
        )
    return report


def design_demand(counts: Iterable[Count]) -> dict[str, dict[tuple[str, str], float]]:
    """Per signal, veh/h per movement in its busiest hour (the design hour).

    The busiest hour is the 60-minute window, starting at an interval's beginning, with the most
    vehicles counted over all the signal's movements; a day counted in less than an hour is
    scaled to an hour.
    """
    by_signal: dict[str, list[Count]] = {}
    for c in counts:
        by_signal.setdefault(c.tls_id, []).append(c)
    demand: dict[str, dict[tuple[str, str], float]] = {}
    for tls_id, items in by_signal.items():
        items.sort(key=lambda c: c.begin)
        starts = sorted({c.begin for c in items})
        best_total, best_start = -1.0, starts[0]
        # Two pointers over the sorted intervals: bounded by the number of rows.
        j = 0
        total = 0.0
        window: deque[Count] = deque()
        for start in starts:
            while j < len(items) and items[j].begin < start + 3600.0:
                window.append(items[j])
                total += items[j].count
                j += 1
            while window and window[0].begin < start:
                total -= window.popleft().count
            if total > best_total:
                best_total, best_start = total, start
        chosen = [c for c in items if best_start <= c.begin < best_start + 3600.0]
        span = max(c.end for c in chosen) - best_start
        scale = 3600.0 / min(max(span, 1.0), 3600.0)
        flows: dict[tuple[str, str], float] = {}
        for c in chosen:
            flows[(c.from_edge, c.to_edge)] = flows.get((c.from_edge, c.to_edge), 0.0) + c.count
        demand[tls_id] = {k: v * scale for k, v in flows.items()}
    return demand


def zone_offset_s(content: bytes | str) -> float:
    """The UTC offset, in seconds, of the first ISO timestamp in a counts CSV (0 without one).

    Validation turns timestamps into POSIX seconds; a time of day needs the zone they were
    written in, and a bureau's file is written in its own. Only the first data row is read."""
    text = content.decode("utf-8-sig", errors="replace") if isinstance(content, bytes) else content
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
        column = header.index("interval_begin")
        for row in reader:
            if column < len(row) and row[column].strip():
                value = row[column].strip().replace("Z", "+00:00")
                offset = datetime.fromisoformat(value).utcoffset()
                return offset.total_seconds() if offset is not None else 0.0
    except (StopIteration, ValueError, csv.Error):
        pass
    return 0.0
