"""Raw counts kept in Parquet, partitioned by tenant and day, and crunched with DuckDB or Spark.

**Ingest.** A batch (a CSV file, a JSON batch, a run of MQTT messages) is validated against the
network first; any rejected row refuses the whole batch. Rows already kept (the same movement
and interval, by this batch or an earlier one) are dropped and counted as duplicates, so a
re-sent message is counted once; the same interval again with another count refuses the batch.
The new rows are written per local day to ``tenant=<id>/day=<YYYY-MM-DD>/<batch>.parquet``:
each file to a temporary name, fsynced, renamed, its directory fsynced, before the batch's row
commits. Readers take the files of committed batches only, so a batch is visible whole or not at
all; a crash before the commit leaves files no batch names, which are ignored. A batch's key
(the client's, or the SHA-256 of its content) makes a re-sent batch a replay. Many small files
of a day (the MQTT flush writes one a minute) are merged into one by ``traffic.compaction``.

**Crunch.** The *profile* of a network is, per movement and time-of-day slot (15 minutes), the
vehicles counted and the number of days they were counted on: the mean flow of a slot over the
days. It is one SQL aggregation, the same text on both engines:

- DuckDB (the default), in this process, over the batch files;
- Apache Spark (``counts_engine = "spark"``; PySpark in its own dependency group), for a city
  that outgrows one machine.

The design demand of a signal is its busiest hour in the profile.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol, overload
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloud.core import audit
from civicloud.core.actor import Actor, authorize
from civicloud.core.dates import MAX_DATE, MIN_DATE
from civicloud.core.tenants.models import Tenant
from civicloud.traffic import networks
from civicloud.traffic.context import TrafficContext
from civicloud.traffic.counts import (
    ABSURD_PER_LANE_HOUR,
    COLUMNS,
    MAX_FINDINGS_SHOWN,
    Count,
    CountsReport,
    Finding,
    read_counts,
    require_clean,
    validate,
)
from civicloud.traffic.errors import CountsRejected, PlanStateConflict, TrafficInvalidInput
from civicloud.traffic.models import TrafficCountBatch, TrafficNetwork
from civicloud.traffic.network import Network

#: The profile's time-of-day slot, seconds.
SLOT_S = 900
#: The most rows one JSON batch carries.
MAX_JSON_ROWS = 100_000
MAX_KEY = 200

SCHEMA = pa.schema(
    [
        ("network_id", pa.string()),
        ("tls_id", pa.string()),
        ("from_edge", pa.string()),
        ("to_edge", pa.string()),
        ("begin_s", pa.int64()),
        ("end_s", pa.int64()),
        #: Seconds from the local midnight of the count's day to its beginning.
        ("local_s", pa.int32()),
        ("day", pa.string()),
        ("vehicles", pa.int32()),
    ]
)

#: The profile, per movement and slot: vehicles counted and on how many days (both engines).
#: The days are counted in two steps (per day, then per slot), not by ``COUNT(DISTINCT day)``,
#: whose state DuckDB cannot spill: a city's month of counts ran out of its memory limit.
PROFILE_SQL = """
SELECT tls_id, from_edge, to_edge, slot_s, SUM(vehicles) AS vehicles, COUNT(*) AS days
FROM (
    SELECT tls_id, from_edge, to_edge, slot_s, day, SUM(vehicles) AS vehicles
    FROM (
        SELECT tls_id, from_edge, to_edge, day, vehicles,
               CAST(FLOOR(local_s / {slot}) * {slot} AS BIGINT) AS slot_s
        FROM counts
        WHERE network_id = '{network}' AND day >= '{first}' AND day <= '{last}'
    ) AS slotted
    GROUP BY tls_id, from_edge, to_edge, slot_s, day
) AS daily
GROUP BY tls_id, from_edge, to_edge, slot_s
ORDER BY tls_id, from_edge, to_edge, slot_s
"""
#: The same over at most :data:`BITS_DAYS` days in one step: each group keeps the days it saw
#: as the bits of one integer (a fixed state per group, like a sum), and counts them at the end.
PROFILE_BITS_SQL = """
SELECT tls_id, from_edge, to_edge, slot_s, SUM(vehicles) AS vehicles,
       bit_count(bit_or(day_bit)) AS days
FROM (
    SELECT tls_id, from_edge, to_edge, vehicles,
           CAST(FLOOR(local_s / {slot}) * {slot} AS BIGINT) AS slot_s,
           CAST(CASE day {bits} END AS BIGINT) AS day_bit
    FROM counts
    WHERE network_id = '{network}' AND day >= '{first}' AND day <= '{last}'
) AS slotted
GROUP BY tls_id, from_edge, to_edge, slot_s
ORDER BY tls_id, from_edge, to_edge, slot_s
"""
#: The most days :data:`PROFILE_BITS_SQL` counts (the bits of a signed 64-bit integer).
BITS_DAYS = 62

#: The kept rows of some intervals: what a new batch is checked against.
KEPT_SQL = """
SELECT tls_id, from_edge, to_edge, begin_s, end_s, vehicles
FROM counts
WHERE network_id = '{network}' AND begin_s >= {first} AND begin_s <= {last}
"""


#: What the kept counts of a network hold that they should not, by kind (both engines): rows
#: of movements the network lacks, negative or absurd counts (more vehicles than the lanes
#: carry), the same movement and interval twice (counted once per interval, however many
#: times it is kept), and intervals that overlap the one before. One scan, one sort: a
#: movement's rows in order of their intervals show a repeated beginning as the row before
#: (and a third copy as the one before that), an overlap as the previous row's end.
CHECK_SQL = """
WITH mine AS (
    SELECT c.begin_s, c.end_s, c.vehicles, m.lanes AS lanes,
           LAG(c.end_s) OVER intervals AS previous_end,
           LAG(c.begin_s) OVER intervals AS previous_begin,
           LAG(c.begin_s, 2) OVER intervals AS second_begin
    FROM counts AS c
    LEFT JOIN movements AS m
      ON m.tls_id = c.tls_id AND m.from_edge = c.from_edge AND m.to_edge = c.to_edge
    WHERE c.network_id = '{network}' AND c.day >= '{first}' AND c.day <= '{last}'
    WINDOW intervals AS (
        PARTITION BY c.tls_id, c.from_edge, c.to_edge ORDER BY c.begin_s, c.end_s
    )
)
SELECT COUNT(*) AS rows_checked,
       SUM(CASE WHEN lanes IS NULL THEN 1 ELSE 0 END) AS unknown_movement,
       SUM(CASE WHEN vehicles < 0 THEN 1 ELSE 0 END) AS negative,
       SUM(CASE WHEN lanes IS NOT NULL AND vehicles * 3600.0 / (end_s - begin_s)
                > {absurd} * lanes THEN 1 ELSE 0 END) AS absurd,
       SUM(CASE WHEN previous_begin = begin_s
                 AND (second_begin IS NULL OR second_begin <> begin_s) THEN 1 ELSE 0 END)
           AS duplicate,
       SUM(CASE WHEN previous_end > begin_s THEN 1 ELSE 0 END) AS overlap
FROM mine
"""

CHECK_KINDS = ("unknown_movement", "negative", "absurd", "duplicate", "overlap")


@dataclass(frozen=True)
class ProfileRow:
    tls_id: str
    from_edge: str
    to_edge: str
    #: Seconds from local midnight to the slot's beginning.
    slot_s: int
    vehicles: int
    days: int

    @property
    def flow_vph(self) -> float:
        """The mean flow of the slot over the days it was counted, veh/h."""
        return self.vehicles / max(self.days, 1) * 3600.0 / SLOT_S


#: (signal, from edge, to edge).
Key = tuple[str, str, str]
Ints = NDArray[np.int64]


class Profile(Sequence[ProfileRow]):
    """A profile kept in columns: a city's month is millions of rows, which the planner reads
    as arrays (and people as ``ProfileRow``s, one at a time).

    Rows are in the order of their movement, then slot; ``keys`` are the movements in order,
    and ``movement`` each row's index into them."""

    __slots__ = ("days", "keys", "movement", "slot_s", "vehicles")

    def __init__(
        self, keys: Sequence[Key], movement: Ints, slot_s: Ints, vehicles: Ints, days: Ints
    ) -> None:
        self.keys = tuple(keys)
        self.movement = movement
        self.slot_s = slot_s
        self.vehicles = vehicles
        self.days = days

    @classmethod
    def of_table(cls, table: pa.Table) -> Profile:
        """The profile of a table with the columns of ``PROFILE_SQL``, in any order of rows."""
        if table.num_rows == 0:
            empty = np.zeros(0, dtype=np.int64)
            return cls((), empty, empty, empty, empty)
        names: list[list[str]] = []
        ranks: list[Ints] = []
        for column in ("tls_id", "from_edge", "to_edge"):
            encoded = pc.cast(table.column(column), pa.string()).combine_chunks()
            encoded = encoded.dictionary_encode()
            values = [str(v) for v in encoded.dictionary.to_pylist()]
            ordered = sorted(range(len(values)), key=values.__getitem__)
            rank = np.empty(len(values), dtype=np.int64)
            rank[ordered] = np.arange(len(values))
            names.append([values[k] for k in ordered])
            ranks.append(rank[encoded.indices.to_numpy(zero_copy_only=False)])
        slot_s, vehicles, days = (
            np.asarray(pc.cast(table.column(c), pa.int64()).to_numpy(), dtype=np.int64)
            for c in ("slot_s", "vehicles", "days")
        )
        order = np.lexsort((slot_s, ranks[2], ranks[1], ranks[0]))
        tls, source, target = (r[order] for r in ranks)
        starts = np.ones(len(order), dtype=bool)
        starts[1:] = (tls[1:] != tls[:-1]) | (source[1:] != source[:-1])
        starts[1:] |= target[1:] != target[:-1]
        first = np.flatnonzero(starts)
        keys = [
            (names[0][a], names[1][b], names[2][c])
            for a, b, c in zip(tls[first], source[first], target[first], strict=True)
        ]
        movement = np.cumsum(starts, dtype=np.int64) - 1
        return cls(keys, movement, slot_s[order], vehicles[order], days[order])

    @classmethod
    def of_rows(cls, rows: Iterable[ProfileRow]) -> Profile:
        if isinstance(rows, Profile):
            return rows
        items = list(rows)
        return cls.of_table(
            pa.table(
                {
                    "tls_id": pa.array([r.tls_id for r in items], pa.string()),
                    "from_edge": pa.array([r.from_edge for r in items], pa.string()),
                    "to_edge": pa.array([r.to_edge for r in items], pa.string()),
                    "slot_s": pa.array([r.slot_s for r in items], pa.int64()),
                    "vehicles": pa.array([r.vehicles for r in items], pa.int64()),
                    "days": pa.array([r.days for r in items], pa.int64()),
                }
            )
        )

    @property
    def flow_vph(self) -> NDArray[np.float64]:
        """Each row's ``ProfileRow.flow_vph``, computed the same way."""
        flows: NDArray[np.float64] = (
            self.vehicles.astype(np.float64)
            / np.maximum(self.days, 1).astype(np.float64)
            * 3600.0
            / float(SLOT_S)
        )
        return flows

    def where(self, chosen: NDArray[np.bool_]) -> Profile:
        """The rows ``chosen`` (a mask), with the movements they have."""
        movement = self.movement[chosen]
        used, index = np.unique(movement, return_inverse=True)
        return Profile(
            [self.keys[k] for k in used.tolist()],
            index.astype(np.int64).reshape(-1),
            self.slot_s[chosen],
            self.vehicles[chosen],
            self.days[chosen],
        )

    def __len__(self) -> int:
        return len(self.movement)

    @overload
    def __getitem__(self, index: int) -> ProfileRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[ProfileRow]: ...

    def __getitem__(self, index: int | slice) -> ProfileRow | list[ProfileRow]:
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self)))]
        k = range(len(self))[index]
        tls, source, target = self.keys[int(self.movement[k])]
        return ProfileRow(
            tls, source, target, int(self.slot_s[k]), int(self.vehicles[k]), int(self.days[k])
        )

    def __iter__(self) -> Iterator[ProfileRow]:
        keys = self.keys
        for m, slot, vehicles, days in zip(
            self.movement.tolist(),
            self.slot_s.tolist(),
            self.vehicles.tolist(),
            self.days.tolist(),
            strict=True,
        ):
            tls, source, target = keys[m]
            yield ProfileRow(tls, source, target, slot, vehicles, days)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Profile):
            return (
                self.keys == other.keys
                and np.array_equal(self.movement, other.movement)
                and np.array_equal(self.slot_s, other.slot_s)
                and np.array_equal(self.vehicles, other.vehicles)
                and np.array_equal(self.days, other.days)
            )
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable arrays, as a list is unhashable

    def __repr__(self) -> str:
        return f"Profile({len(self)} rows of {len(self.keys)} movements)"


class CountsEngine(Protocol):
    """Runs the crunching SQL over Parquet files (``counts`` is the files' table)."""

    name: str

    def query(
        self, files: Sequence[Path], sql: str, movements: Sequence[Movement] = ()
    ) -> list[tuple[Any, ...]]: ...

    def table(self, files: Sequence[Path], sql: str) -> pa.Table:
        """The query's result as an Arrow table (for results of millions of rows)."""
        ...


#: A row of the ``movements`` table the checks join: signal, from edge, to edge, lanes.
Movement = tuple[str, str, str, int]


class DuckDBEngine:
    name = "duckdb"

    def __init__(self, memory_mib: int = 2048) -> None:
        self.memory_mib = memory_mib

    def query(
        self, files: Sequence[Path], sql: str, movements: Sequence[Movement] = ()
    ) -> list[tuple[Any, ...]]:
        if not files:
            return []
        with self._connect(files, movements) as con:
            return [tuple(row) for row in con.execute(sql).fetchall()]

    def table(self, files: Sequence[Path], sql: str) -> pa.Table:
        if not files:
            return pa.table({})
        with self._connect(files, ()) as con:
            # Fetched as ``query`` fetches, as the profile always was: both Arrow fetches tried
            # ran out of the engine's 2 GiB on a city's month of counts, whose aggregation
            # alone is near that limit.
            result = con.execute(sql)
            names = [d[0] for d in result.description]
            rows = result.fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        return pa.table(
            {name: pa.array(values) for name, values in zip(names, columns, strict=True)}
        )

    def _connect(self, files: Sequence[Path], movements: Sequence[Movement]) -> Any:
        import duckdb

        listed = ", ".join(f"'{_quoted(str(f))}'" for f in files)
        # What a large aggregation spills goes to the system's temporary directory, not to
        # ``.tmp`` in whatever directory the server was started from (DuckDB's default).
        spill = Path(tempfile.gettempdir()) / "civicloud-duckdb"
        con = duckdb.connect(
            config={"memory_limit": f"{self.memory_mib}MB", "temp_directory": str(spill)}
        )
        # The paths are the counts directory's own files (quoted); DuckDB cannot take a
        # view's file list as a parameter.
        con.execute(
            f"CREATE VIEW counts AS SELECT * FROM read_parquet([{listed}], "  # noqa: S608
            "hive_partitioning = false)"
        )
        table = pa.table(
            {
                "tls_id": pa.array([m[0] for m in movements], pa.string()),
                "from_edge": pa.array([m[1] for m in movements], pa.string()),
                "to_edge": pa.array([m[2] for m in movements], pa.string()),
                "lanes": pa.array([m[3] for m in movements], pa.int32()),
            }
        )
        con.register("movements", table)
        return con


class SparkEngine:
    """Spark SQL over the same files; one session per process, made on first use."""

    name = "spark"

    def __init__(self, master: str = "local[2]") -> None:
        self.master = master

    def query(
        self, files: Sequence[Path], sql: str, movements: Sequence[Movement] = ()
    ) -> list[tuple[Any, ...]]:
        if not files:
            return []
        return [tuple(row) for row in self._frame(files, sql, movements).collect()]

    def table(self, files: Sequence[Path], sql: str) -> pa.Table:
        if not files:
            return pa.table({})
        result: pa.Table = self._frame(files, sql, ()).toArrow()
        return result

    def _frame(self, files: Sequence[Path], sql: str, movements: Sequence[Movement]) -> Any:
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise TrafficInvalidInput(
                "The counts engine is Spark, but PySpark is not installed here."
            ) from exc
        spark = (
            SparkSession.builder.master(self.master)
            .appName("civicloud-traffic")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "8")
            .getOrCreate()
        )
        frame = spark.read.schema(_spark_schema()).parquet(*[str(f) for f in files])
        frame.createOrReplaceTempView("counts")
        spark.createDataFrame(
            list(movements) or [("", "", "", 0)],
            "tls_id STRING, from_edge STRING, to_edge STRING, lanes INT",
        ).createOrReplaceTempView("movements")
        return spark.sql(sql)


def _spark_schema() -> str:
    return (
        "network_id STRING, tls_id STRING, from_edge STRING, to_edge STRING, begin_s BIGINT, "
        "end_s BIGINT, local_s INT, day STRING, vehicles INT"
    )


def engine_of(context: TrafficContext) -> CountsEngine:
    settings = context.settings
    if settings.counts_engine == "spark":
        return SparkEngine(settings.spark_master)
    return DuckDBEngine(settings.duckdb_memory_mib)


# --- ingest -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ingested:
    batch: TrafficCountBatch
    #: The batch's key was seen before with the same content: nothing was written.
    replay: bool
    report: CountsReport


def _quoted(text: str) -> str:
    """A value for the SQL above (ids are UUIDs and days ISO dates; quotes doubled anyway)."""
    return text.replace("'", "''")


def batch_files(
    session: Session, context: TrafficContext, network_id: uuid.UUID, first: date, last: date
) -> list[Path]:
    """The files of the network's committed batches that cover days from ``first`` to ``last``."""
    zone = context.zone
    start = datetime.combine(first, time(0), zone)
    end = datetime.combine(last + timedelta(days=1), time(0), zone)
    rows = session.scalars(
        select(TrafficCountBatch).where(
            TrafficCountBatch.network_id == network_id,
            TrafficCountBatch.first_begin < end,
            TrafficCountBatch.last_end > start,
        )
    ).all()
    found: list[Path] = []
    for row in rows:
        for name in row.files:
            path = context.counts_dir / name
            if path.exists():
                found.append(path)
    return sorted(found)


def rows_of(payload: Sequence[Mapping[str, Any]]) -> Iterable[tuple[int, Mapping[str, str]]]:
    for number, item in enumerate(payload, start=1):
        yield number, {c: "" if item.get(c) is None else str(item.get(c)) for c in COLUMNS}


def absolute(
    report: CountsReport, day: date | None, zone: ZoneInfo
) -> list[tuple[Count, int, int]]:
    """Each accepted count with its POSIX begin and end."""
    if report.absolute_times:
        return [(c, round(c.begin), round(c.end)) for c in report.accepted]
    if day is None:
        raise TrafficInvalidInput(
            "Counts timed in seconds need the day they were counted on (YYYY-MM-DD)."
        )
    check_days(day, day)
    base = datetime.combine(day, time(0), zone).timestamp()
    return [(c, round(base + c.begin), round(base + c.end)) for c in report.accepted]


def ingest(
    *,
    session: Session,
    actor: Actor,
    context: TrafficContext,
    network_id: uuid.UUID,
    source: str,
    content: bytes | None = None,
    rows: Sequence[Mapping[str, Any]] | None = None,
    key: str | None = None,
    day: date | None = None,
    audited: bool = True,
) -> Ingested:
    """Validate a batch of counts against the network and keep its new rows in Parquet."""
    row = networks.get_network(session=session, actor=actor, network_id=network_id)
    tenant = session.get_one(Tenant, row.tenant_id)
    authorize(actor, "traffic.network.admin", path=tenant.path, what="tenant")
    if key is not None and (not key.strip() or len(key) > MAX_KEY or not key.isprintable()):
        raise TrafficInvalidInput(
            "A batch key has 1 to %(limit)s printable characters.", params={"limit": MAX_KEY}
        )
    if rows is not None and len(rows) > MAX_JSON_ROWS:
        raise TrafficInvalidInput(
            "A batch has at most %(limit)s rows.", params={"limit": MAX_JSON_ROWS}
        )
    payload = list(rows or []) if content is None else []
    # The day seconds count from is part of what a batch says, and so of its default key.
    header = f"{source}\n{day.isoformat() if day else ''}\n".encode()
    digest = hashlib.sha256(
        header
        + (
            content
            if content is not None
            else json.dumps(payload, sort_keys=True, default=str).encode()
        )
    ).hexdigest()
    batch_key = key.strip() if key else digest
    # One ingest of a network at a time: what is kept is read, then added to (PostgreSQL locks
    # the row; SQLite writes one transaction at a time anyway).
    lock_network(session, row.id)
    seen = session.scalars(
        select(TrafficCountBatch).where(
            TrafficCountBatch.network_id == row.id, TrafficCountBatch.key == batch_key
        )
    ).first()
    if seen is not None:  # a replay: nothing is read again
        if seen.sha256 != digest:
            raise PlanStateConflict(
                "The batch key %(key)s was used before for other counts.",
                params={"key": batch_key[:MAX_KEY]},
            )
        return Ingested(seen, replay=True, report=CountsReport())
    network = networks.load(row)
    if content is not None:
        report = read_counts(content, network)
    else:
        report = validate(rows_of(payload), network)
    require_clean(report)
    timed = absolute(report, day, context.zone)
    check_quarters(timed)
    kept = kept_counts(session, context, row, timed)
    fresh: list[tuple[Count, int, int]] = []
    duplicates = 0
    conflicts: list[Finding] = []
    for count, begin, end in timed:
        verdict, detail = classify(kept, count, begin, end)
        if verdict == "fresh":
            fresh.append((count, begin, end))
        elif verdict == "duplicate":
            duplicates += 1
        else:
            conflicts.append(Finding(0, verdict, detail))
    if conflicts:
        raise CountsRejected(
            "%(rejected)s count rows give another count for an interval already kept.",
            params={"rejected": len(conflicts)},
            report=report,
            findings=[
                {"line": f.line, "kind": f.kind, "detail": f.detail}
                for f in conflicts[:MAX_FINDINGS_SHOWN]
            ],
        )
    batch_id = uuid.uuid4()
    files = write_files(context, row, batch_id, fresh)
    batch = TrafficCountBatch(
        id=batch_id,
        tenant_id=row.tenant_id,
        network_id=row.id,
        key=batch_key,
        source=source,
        sha256=digest,
        rows=len(fresh),
        duplicates=duplicates + len(report.duplicates),
        first_begin=utc_of(min((b for _, b, _ in fresh), default=None)),
        last_end=utc_of(max((e for _, _, e in fresh), default=None)),
        days=sorted({local_day(b, context.zone).isoformat() for _, b, _ in fresh}),
        files=files,
        created_by=actor.name,
    )
    session.add(batch)
    session.flush()
    if audited:
        audit.record(
            session=session,
            actor=actor,
            action="traffic.counts.ingest",
            target=f"traffic_network:{row.id}",
            tenant_id=row.tenant_id,
            detail={
                "batch": str(batch.id),
                "source": source,
                "rows": batch.rows,
                "duplicates": batch.duplicates,
            },
        )
    return Ingested(batch, replay=False, report=report)


def utc_of(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def local_day(seconds: int, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(seconds, zone).date()


#: A movement's quarter hour: (signal, from edge, to edge, the quarter's POSIX start).
Quarter = tuple[str, str, str, int]


def lock_network(session: Session, network_id: uuid.UUID) -> None:
    """One writer of a network's kept counts at a time: what is kept is read, then added to.
    PostgreSQL locks the row (``FOR NO KEY UPDATE``: the inserts that refer to it go on);
    SQLite writes one transaction at a time anyway."""
    session.execute(
        select(TrafficNetwork.id)
        .where(TrafficNetwork.id == network_id)
        .with_for_update(key_share=True)
    )


def check_quarters(timed: Sequence[tuple[Count, int, int]]) -> None:
    """Kept counts lie within one quarter hour each (the profile's slot), so that no interval
    is put in a slot it only begins in, and overlaps with what is kept are found by slot."""
    long = [c for c, b, e in timed if e - b > SLOT_S or b // SLOT_S != (e - 1) // SLOT_S]
    if long:
        raise CountsRejected(
            "%(rejected)s count rows cover more than one quarter hour: kept counts are at most "
            "15 minutes long, within a quarter hour (00, 15, 30 or 45).",
            params={"rejected": len(long)},
        )


def classify(
    kept: Mapping[Quarter, Sequence[tuple[int, int, int]]], count: Count, begin: int, end: int
) -> tuple[str, str]:
    """``fresh``, ``duplicate`` (the same interval and count kept), ``conflicting_duplicate``
    (the same interval with another count) or ``overlap`` (an interval overlapping a kept one
    of the movement), with a detail for people."""
    quarter = (count.tls_id, count.from_edge, count.to_edge, begin - begin % SLOT_S)
    vehicles = round(count.count)
    where = f"{count.tls_id} {count.from_edge}>{count.to_edge} at {begin}"
    for kept_begin, kept_end, kept_vehicles in kept.get(quarter, ()):
        if (kept_begin, kept_end) == (begin, end):
            if kept_vehicles == vehicles:
                return "duplicate", where
            return "conflicting_duplicate", f"{where}: {vehicles} (kept: {kept_vehicles})"
        if kept_begin < end and begin < kept_end:
            return "overlap", f"{where}..{end} over {kept_begin}..{kept_end}"
    return "fresh", where


def kept_counts(
    session: Session,
    context: TrafficContext,
    row: TrafficNetwork,
    timed: Sequence[tuple[Count, int, int]],
) -> dict[Quarter, list[tuple[int, int, int]]]:
    """What is kept of the network in the quarters ``timed`` begins in: (begin, end, vehicles)."""
    if not timed:
        return {}
    first = min(b for _, b, _ in timed)
    last = max(b for _, b, _ in timed)
    files = batch_files(
        session, context, row.id, local_day(first, context.zone), local_day(last, context.zone)
    )
    first -= first % SLOT_S
    sql = KEPT_SQL.format(network=_quoted(str(row.id)), first=first, last=last)
    found: dict[Quarter, list[tuple[int, int, int]]] = {}
    for tls, f, t, begin, end, vehicles in DuckDBEngine().query(files, sql):
        quarter = (str(tls), str(f), str(t), int(begin) - int(begin) % SLOT_S)
        found.setdefault(quarter, []).append((int(begin), int(end), int(vehicles)))
    return found


def write_files(
    context: TrafficContext,
    row: TrafficNetwork,
    batch_id: uuid.UUID,
    fresh: Sequence[tuple[Count, int, int]],
) -> list[str]:
    """One Parquet file per local day, each durable before the function returns."""
    by_day: dict[date, list[tuple[Count, int, int]]] = {}
    for item in fresh:
        by_day.setdefault(local_day(item[1], context.zone), []).append(item)
    names: list[str] = []
    for day, items in sorted(by_day.items()):
        folder = day_folder(context, row.tenant_id, day)
        midnight = datetime.combine(day, time(0), context.zone).timestamp()
        table = pa.table(
            {
                "network_id": [str(row.id)] * len(items),
                "tls_id": [c.tls_id for c, _, _ in items],
                "from_edge": [c.from_edge for c, _, _ in items],
                "to_edge": [c.to_edge for c, _, _ in items],
                "begin_s": [b for _, b, _ in items],
                "end_s": [e for _, _, e in items],
                "local_s": [int(b - midnight) for _, b, _ in items],
                "day": [day.isoformat()] * len(items),
                "vehicles": [round(c.count) for c, _, _ in items],
            },
            schema=SCHEMA,
        )
        final = write_durable(table, folder / f"{batch_id}.parquet")
        names.append(str(final.relative_to(context.counts_dir)))
    return names


def day_folder(context: TrafficContext, tenant_id: uuid.UUID, day: date) -> Path:
    """Where the counts of a tenant's local day are kept."""
    return context.counts_dir / f"tenant={tenant_id}" / f"day={day.isoformat()}"


def write_durable(table: pa.Table, final: Path) -> Path:
    """Write ``table`` to ``final`` as Parquet: to a temporary name, fsynced, renamed, the
    directory fsynced, so that ``final`` holds the whole file or does not exist."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.parent / f".{final.name}.tmp"
    pq.write_table(table, temporary, compression="zstd")
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, final)
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return final


# --- crunch -------------------------------------------------------------------------------------


def profile(
    engine: CountsEngine, files: Sequence[Path], network_id: uuid.UUID, first: date, last: date
) -> Profile:
    """The network's profile over the days from ``first`` to ``last``, by the engine."""
    return Profile.of_table(engine.table(files, profile_sql(network_id, first, last)))


def profile_sql(
    network_id: uuid.UUID, first: date, last: date, *, bits_days: int = BITS_DAYS
) -> str:
    """The profile's SQL: days as bits where the range has at most ``bits_days`` of them."""
    common = {
        "slot": SLOT_S,
        "network": _quoted(str(network_id)),
        "first": first.isoformat(),
        "last": last.isoformat(),
    }
    span = (last - first).days + 1
    if span > bits_days:
        return PROFILE_SQL.format(**common)
    bits = " ".join(
        f"WHEN '{(first + timedelta(days=k)).isoformat()}' THEN {1 << k}" for k in range(span)
    )
    return PROFILE_BITS_SQL.format(bits=bits, **common)


def check_days(first: date, last: date) -> None:
    """A range of days to read: in order, within the dates the installation takes."""
    if last < first:
        raise TrafficInvalidInput("The last day comes before the first.")
    if first < MIN_DATE or last > MAX_DATE:
        raise TrafficInvalidInput(
            "Days are between %(first)s and %(last)s.",
            params={"first": MIN_DATE.isoformat(), "last": MAX_DATE.isoformat()},
        )


def stored_profile(
    *,
    session: Session,
    actor: Actor,
    context: TrafficContext,
    network_id: uuid.UUID,
    first: date,
    last: date,
) -> Profile:
    """The profile of a stored network's kept counts, by the configured engine."""
    row = networks.get_network(session=session, actor=actor, network_id=network_id)
    check_days(first, last)
    files = batch_files(session, context, row.id, first, last)
    return profile(engine_of(context), files, row.id, first, last)


def check(
    engine: CountsEngine,
    files: Sequence[Path],
    network: Network,
    network_id: uuid.UUID,
    first: date,
    last: date,
) -> dict[str, int]:
    """The kept counts' findings by kind (see ``CHECK_SQL``), and ``rows_checked``."""
    lanes: dict[tuple[str, str, str], set[int]] = {}
    for signal in network.signals.values():
        for link in signal.links:
            lanes.setdefault((signal.id, link.from_edge, link.to_edge), set()).add(link.from_lane)
    movements = [(s, f, t, len(used)) for (s, f, t), used in sorted(lanes.items())]
    sql = CHECK_SQL.format(
        network=_quoted(str(network_id)),
        first=first.isoformat(),
        last=last.isoformat(),
        absurd=ABSURD_PER_LANE_HOUR,
    )
    rows = engine.query(files, sql, movements)
    if not rows:
        return {"rows_checked": 0, **dict.fromkeys(CHECK_KINDS, 0)}
    names = ("rows_checked", *CHECK_KINDS)
    return {name: int(value or 0) for name, value in zip(names, rows[0], strict=True)}


def design_demand(rows: Iterable[ProfileRow]) -> dict[str, dict[tuple[str, str], float]]:
    """Per signal, veh/h per movement in its busiest hour of the profile (four slots in a row
    with the most vehicles over all its movements; the first such hour on ties).

    In arrays, over a grid of every slot the profile has; each sum adds its terms in the order
    a loop over the rows would (movements in order, then the hour's slots), so that the figures
    do not depend on how the profile is held."""
    table = Profile.of_rows(rows)
    if not table.keys:
        return {}
    per_hour = 3600 // SLOT_S
    signals = [key[0] for key in table.keys]
    starts = [m for m in range(len(signals)) if m == 0 or signals[m] != signals[m - 1]]
    names = [signals[m] for m in starts]
    first = np.asarray(starts, dtype=np.int64)
    owner = np.cumsum(np.isin(np.arange(len(signals)), first), dtype=np.int64) - 1
    place = np.arange(len(signals), dtype=np.int64) - first[owner]  # within its signal
    grid, column = np.unique(table.slot_s, return_inverse=True)
    column = column.reshape(-1)
    flows = np.zeros((len(signals), len(grid)))
    flows[table.movement, column] = table.flow_vph
    present = np.zeros((len(names), len(grid)), dtype=bool)
    present[owner[table.movement], column] = True
    # Per signal and slot, the movements' flows added in order of the movements.
    stacked = np.zeros((len(names), int(place.max()) + 1, len(grid)))
    stacked[owner, place] = flows
    totals = stacked[:, 0].copy()
    for k in range(1, stacked.shape[1]):
        totals = totals + stacked[:, k]
    # The grid's column of each slot an hour from each start holds (the last: none).
    later = []
    for k in range(per_hour):
        wanted = grid + k * SLOT_S
        at = np.minimum(np.searchsorted(grid, wanted), len(grid) - 1)
        later.append(np.where(grid[at] == wanted, at, len(grid)))
    padded = np.concatenate([totals, np.zeros((len(names), 1))], axis=1)
    hour = padded[:, later[0]]
    for k in range(1, per_hour):
        hour = hour + padded[:, later[k]]
    candidates = np.where(present, hour, -np.inf)
    best = np.argmax(candidates, axis=1)
    busiest = candidates[np.arange(len(names)), best]
    best = np.where(busiest > -1.0, best, np.argmax(present, axis=1))
    own = np.concatenate([flows, np.zeros((len(signals), 1))], axis=1)
    start = best[owner]
    rows_of = np.arange(len(signals))
    value = own[rows_of, later[0][start]]
    for k in range(1, per_hour):
        value = value + own[rows_of, later[k][start]]
    value = value / per_hour
    demand: dict[str, dict[tuple[str, str], float]] = {name: {} for name in names}
    for (signal, source, target), flow in zip(table.keys, value.tolist(), strict=True):
        demand[signal][(source, target)] = flow
    return demand


def summary(*, session: Session, actor: Actor, network_id: uuid.UUID) -> list[TrafficCountBatch]:
    """The network's count batches, newest first."""
    row = networks.get_network(session=session, actor=actor, network_id=network_id)
    return list(
        session.scalars(
            select(TrafficCountBatch)
            .where(TrafficCountBatch.network_id == row.id)
            .order_by(TrafficCountBatch.created_at.desc())
            .limit(200)
        )
    )


def movements_of(network: Network) -> set[tuple[str, str, str]]:
    """Every (signal, from edge, to edge) of the network."""
    return {(s.id, f, t) for s in network.signals.values() for (f, t) in s.movements()}
