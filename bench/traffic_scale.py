"""traffic_scale: a synthetic city's kept counts validated, crunched and planned by time of day,
against a bare DuckDB aggregation of the same Parquet in the same run.

The city: a netgenerate grid of 45 x 45 junctions (2,025 signals, ``--quick``: 8 x 8), every
movement counted every 15 minutes for 28 days (``--quick``: 3): about 65 million rows, written
straight to Parquet in Traffic's layout (``tenant=…/day=…``) as if ingested already. Timed:

- ``civicloud``: ``countstore.check`` (unknown movements, negative and absurd counts, duplicates,
  overlaps: one SQL pass), ``countstore.profile`` (the crunch), and ``timeofday.plan_kept``
  (the day cut into periods, every junction planned for each, neighbours coordinated; the
  junctions in as many worker processes as ``service.Planner`` takes, one per core for a
  city, printed);
- ``bare``: DuckDB's ``GROUP BY`` of the same Parquet by movement and slot (the profile's
  aggregation, with no validation and no optimisation).

The network is parsed once before the timing (an imported network is parsed once and kept by
the server); its parse time is printed apart. The headline ratio is bare / civicloud (higher is
better); the goal, civicloud within 5x of the bare aggregation, is a ratio of 0.2. Peak memory
(the process's maximum resident set) must stay under 4 GiB.

Ingest is reported apart, as rows per second: a day of counts for the city's first 50 signals
as CSV through ``countstore.ingest`` (validated against the network, checked against what is
kept, written durably), and the same rows over MQTT through a Mosquitto broker on loopback (the
listener's inbox, then the flush job), when Mosquitto is installed.

    .venv/bin/python bench/traffic_scale.py --quick
    .venv/bin/python bench/traffic_scale.py
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from civicloud.traffic import countstore, service, sumo, timeofday  # noqa: E402
from civicloud.traffic.network import Network, read_network  # noqa: E402
from civicloud.traffic.optimize import Limits  # noqa: E402

GOAL = 0.2
MEMORY_GOAL_GIB = 4.0
ZONE = ZoneInfo("Asia/Shanghai")
FIRST_DAY = date(2026, 11, 2)
SLOTS = 96


def demand_shape() -> np.ndarray:
    """Vehicles per 15 minutes on a through movement, by slot: two peaks and a quiet night."""
    hours = (np.arange(SLOTS) + 0.5) / 4.0
    shape = 4 + 40 * np.exp(-((hours - 8.0) ** 2) / 2.0) + 36 * np.exp(-((hours - 18.0) ** 2) / 2.5)
    return shape + 14 * ((hours > 9.5) & (hours < 16.5))


def write_counts(net: Network, network_id: str, folder: Path, days: int) -> tuple[list[Path], int]:
    """Every movement's counts for ``days`` days, one Parquet file per day."""
    rng = np.random.default_rng(1)
    keys = [
        (s.id, f, t, links[0].dir)
        for s in net.signals.values()
        for (f, t), links in sorted(s.movements().items())
    ]
    base = demand_shape()
    files: list[Path] = []
    rows = 0
    for d in range(days):
        day = FIRST_DAY + timedelta(days=d)
        midnight = int(datetime(day.year, day.month, day.day, tzinfo=ZONE).timestamp())
        n = len(keys) * SLOTS
        factor = np.array([1.0 if k[3] == "s" else 0.2 for k in keys])
        mean = np.outer(factor, base).ravel()
        vehicles = rng.poisson(mean).astype(np.int32)
        local = np.tile(np.arange(SLOTS, dtype=np.int32) * 900, len(keys))
        table = pa.table(
            {
                "network_id": pa.array([network_id] * n),
                "tls_id": pa.array(np.repeat([k[0] for k in keys], SLOTS)),
                "from_edge": pa.array(np.repeat([k[1] for k in keys], SLOTS)),
                "to_edge": pa.array(np.repeat([k[2] for k in keys], SLOTS)),
                "begin_s": pa.array(midnight + local.astype(np.int64)),
                "end_s": pa.array(midnight + local.astype(np.int64) + 900),
                "local_s": pa.array(local),
                "day": pa.array([day.isoformat()] * n),
                "vehicles": pa.array(vehicles),
            },
            schema=countstore.SCHEMA,
        )
        part = folder / "tenant=bench" / f"day={day.isoformat()}"
        part.mkdir(parents=True, exist_ok=True)
        path = part / f"{uuid.uuid4()}.parquet"
        pq.write_table(table, path, compression="zstd")
        files.append(path)
        rows += n
    return files, rows


BARE_SQL = """
SELECT tls_id, from_edge, to_edge, CAST(FLOOR(local_s / 900) * 900 AS BIGINT) AS slot_s,
       SUM(vehicles), COUNT(DISTINCT day)
FROM counts GROUP BY ALL
"""


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)


def ingest_rates(net_path: Path, net: Network, signals: int) -> tuple[float, float | None]:
    """Rows per second: a day of counts of the first ``signals`` signals as CSV, then over MQTT."""
    from civicloud.app import build_services, load_settings, prepare_database
    from civicloud.core import tenants
    from civicloud.core.actor import Actor
    from civicloud.traffic import inbox, networks
    from civicloud.traffic.context import TrafficContext

    data = Path(tempfile.mkdtemp(prefix="civicloud-bench-ingest-"))
    try:
        services = build_services(load_settings(data_dir=data))
        prepare_database(services)
        actor = Actor.system("bench")
        with services.db.unit_of_work() as session:
            tenant = tenants.create_tenant(
                session=session,
                actor=actor,
                data=tenants.TenantCreate(
                    slug=f"bench-{uuid.uuid4().hex[:8]}", name_zh="基准", name_en="Bench",
                    kind=tenants.TenantKind.CITY, parent_id=None, region_code="cn-beijing",
                ),
            )  # fmt: skip
            row = networks.import_network(
                session=session,
                actor=actor,
                tenant_id=tenant.id,
                name="city",
                content=net_path.read_bytes(),
            )
            network_id, slug = row.id, tenant.slug
        context = services.context("traffic", TrafficContext)
        # A running server has read the stored network once and keeps it (by its file's hash):
        # read it here, before the clock starts.
        with services.db.unit_of_work(write=False) as session:
            networks.load(networks.get_network(session=session, actor=actor, network_id=network_id))
        chosen = list(net.signals.values())[:signals]
        base = demand_shape()
        day = FIRST_DAY
        records = []
        for s in chosen:
            for (f, t), links in sorted(s.movements().items()):
                for slot in range(SLOTS):
                    begin = datetime(day.year, day.month, day.day, tzinfo=ZONE) + timedelta(
                        minutes=15 * slot
                    )
                    count = int(base[slot] * (1.0 if links[0].dir == "s" else 0.2))
                    records.append((begin, s.id, f, t, links[0].dir, count))
        lines = ["interval_begin,interval_end,tls_id,from_edge,to_edge,dir,count"]
        lines += [
            f"{b.isoformat()},{(b + timedelta(minutes=15)).isoformat()},{s},{f},{t},{d},{c}"
            for b, s, f, t, d, c in records
        ]
        content = ("\n".join(lines) + "\n").encode()
        started = time.perf_counter()
        with services.db.unit_of_work() as session:
            done = countstore.ingest(
                session=session,
                actor=actor,
                context=context,
                network_id=network_id,
                source="csv",
                content=content,
            )
        csv_rate = done.batch.rows / (time.perf_counter() - started)
        mqtt_rate = _mqtt_rate(services, context, slug, network_id, records, inbox)
        services.db.dispose()
        return csv_rate, mqtt_rate
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _mqtt_rate(services, context, slug, network_id, records, inbox) -> float | None:  # type: ignore[no-untyped-def]  # noqa: PLR0915
    """Rows per second over a real Mosquitto: published per signal and hour, received into the
    inbox by the listener's handler, then flushed to Parquet."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        return None
    from civicloud.core.config import MqttSettings
    from civicloud.core.mqtt import MqttHub

    folder = Path(tempfile.mkdtemp(prefix="civicloud-bench-mqtt-"))
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (folder / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
    )
    broker = subprocess.Popen(
        [binary, "-c", str(folder / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    hubs: list[MqttHub] = []
    try:
        time.sleep(0.5)
        url = f"mqtt://127.0.0.1:{port}"
        received = {"messages": 0}
        topic = f"civicloud/traffic/{slug}/counts"
        messages: dict[tuple[str, int], list[dict[str, object]]] = {}
        for b, s, f, t, d, c in records:
            later = b + timedelta(days=1)
            messages.setdefault((s, later.hour), []).append(
                {
                    "interval_begin": later.isoformat(),
                    "interval_end": (later + timedelta(minutes=15)).isoformat(),
                    "tls_id": s, "from_edge": f, "to_edge": t, "dir": d, "count": c,
                }
            )  # fmt: skip

        def handle(message) -> None:  # type: ignore[no-untyped-def]
            with services.db.unit_of_work() as session:
                inbox.receive(
                    session=session, context=context, topic=message.topic, payload=message.payload
                )
            received["messages"] += 1

        listener = MqttHub(MqttSettings(url=url, client_id=f"bench-{uuid.uuid4().hex[:8]}"))
        sender = MqttHub(MqttSettings(url=url, client_id=f"bench-{uuid.uuid4().hex[:8]}"))
        hubs += [listener, sender]
        listener.subscribe(inbox.TOPIC_FILTER, handle)
        listener.start()
        sender.start()
        deadline = time.monotonic() + 30
        while (listener.health() or sender.health()) and time.monotonic() < deadline:
            time.sleep(0.05)
        payloads = [
            json.dumps({"network": str(network_id), "rows": rows}).encode()
            for rows in messages.values()
        ]
        rows = sum(len(r) for r in messages.values())
        started = time.perf_counter()
        for payload in payloads:  # each taken by the broker before the next (QoS 1)
            if not sender.publish(topic, payload, timeout=30):
                return None
        deadline = time.monotonic() + 600
        while received["messages"] < len(payloads) and time.monotonic() < deadline:
            time.sleep(0.01)
        if received["messages"] < len(payloads):
            print(f"  MQTT: {received['messages']} of {len(payloads)} messages handled in time")
        with services.db.unit_of_work() as session:
            inbox.flush(session=session, context=context, network_id=network_id)
        return rows / (time.perf_counter() - started)
    finally:
        for hub in hubs:
            hub.stop(timeout=10)
        broker.terminate()
        broker.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    side, days = (8, 3) if args.quick else (45, 28)
    work = Path(tempfile.mkdtemp(prefix="civicloud-bench-city-"))
    try:
        started = time.perf_counter()
        net_path = sumo.generate("grid", work / "city.net.xml", size=(side, side))
        net = read_network(net_path)
        parse_s = time.perf_counter() - started
        print(f"network: {len(net.signals):,} signals, generated and parsed in {parse_s:.0f} s")
        network_id = str(uuid.uuid4())
        started = time.perf_counter()
        files, rows = write_counts(net, network_id, work / "counts", days)
        print(
            f"counts: {rows:,} rows over {days} days written in {time.perf_counter() - started:.0f} s"
        )
        first, last = FIRST_DAY, FIRST_DAY + timedelta(days=days - 1)
        engine = countstore.DuckDBEngine(memory_mib=2048)

        started = time.perf_counter()
        bare = engine.query(files, BARE_SQL)
        bare_s = time.perf_counter() - started
        print(f"bare aggregation: {len(bare):,} groups in {bare_s:.2f} s")

        uid = uuid.UUID(network_id)
        started = time.perf_counter()
        findings = countstore.check(engine, files, net, uid, first, last)
        check_s = time.perf_counter() - started
        profile = countstore.profile(engine, files, uid, first, last)
        crunch_s = time.perf_counter() - started - check_s
        workers = service.Planner(net).workers  # what plan_kept takes by default
        plans = timeofday.plan_kept(net, profile, Limits())
        ours_s = time.perf_counter() - started
        plan_s = ours_s - check_s - crunch_s
        bad = {k: v for k, v in findings.items() if k != "rows_checked" and v}
        print(
            f"civicloud: checked {findings['rows_checked']:,} rows in {check_s:.2f} s "
            f"(findings: {bad or 'none'}), profile of {len(profile):,} rows in {crunch_s:.2f} s, "
            f"{len(plans)} periods x {len(net.signals):,} junctions planned in {plan_s:.1f} s "
            f"({workers} planning process{'es' if workers > 1 else ''})"
        )
        for period in plans:
            cycles = sorted({p.cycle for p in period.plans})
            print(
                f"  {period.period.start}-{period.period.end}: cycles {cycles[0]:g}..{cycles[-1]:g} s"
            )
        csv_rate, mqtt_rate = ingest_rates(net_path, net, min(50, len(net.signals)))
        print(
            f"ingest: CSV {csv_rate:,.0f} rows/s; MQTT "
            + (f"{mqtt_rate:,.0f} rows/s" if mqtt_rate else "skipped (no mosquitto)")
        )
        memory = peak_gib()
        print(f"peak memory: {memory:.2f} GiB (goal: under {MEMORY_GOAL_GIB:g} GiB)")
        print(f"civicloud {ours_s:.1f} s against bare {bare_s:.2f} s: {ours_s / bare_s:.1f}x")
        print(f"traffic_scale ratio={bare_s / ours_s:.3f} goal={GOAL}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
