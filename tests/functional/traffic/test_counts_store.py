"""Counts kept in Parquet per tenant and day: a batch is validated whole, kept whole or not at
all, a re-sent row is counted once (in any order), a re-sent batch is a replay; the profile and
the plans drafted from kept days read them; DuckDB and Spark give the same figures."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from tests.factories.core import SiblingWorld
from tests.functional.traffic.conftest import DAY, ZONE, Site, quarter_rows

from civicloud.core.actor import Actor
from civicloud.core.services import Services
from civicloud.traffic import countstore
from civicloud.traffic.context import TrafficContext
from civicloud.traffic.countstore import DuckDBEngine, SparkEngine
from civicloud.traffic.models import TrafficCountBatch
from civicloud.traffic.network import Network

API = "/api/v1/traffic"


def _in_seconds(rows: list[dict[str, object]]) -> None:
    """The rows' ISO times as seconds from the local midnight of ``DAY``, in place."""
    midnight = datetime(DAY.year, DAY.month, DAY.day, tzinfo=ZONE)
    for row in rows:
        for column in ("interval_begin", "interval_end"):
            at = datetime.fromisoformat(str(row[column]))
            row[column] = int((at - midnight).total_seconds())


def _csv(rows: list[dict[str, object]]) -> str:
    header = "interval_begin,interval_end,tls_id,from_edge,to_edge,dir,count"
    lines = [",".join(str(r[c]) for c in header.split(",")) for r in rows]
    return "\n".join([header, *lines]) + "\n"


def _post(client: TestClient, site: Site, rows: list[dict[str, object]], **extra: object):  # type: ignore[no-untyped-def]
    return client.post(
        f"{API}/networks/{site.network_id}/counts",
        json={"rows": rows, **extra},
        headers=site.engineer.headers,
    )


def _total(client: TestClient, site: Site, first: date, last: date) -> int:
    reply = client.get(
        f"{API}/networks/{site.network_id}/profile",
        params={"first_day": first.isoformat(), "last_day": last.isoformat()},
        headers=site.viewer.headers,
    )
    assert reply.status_code == 200, reply.text
    return sum(r["vehicles"] for r in reply.json())


def test_a_batch_is_kept_per_day_and_a_resent_one_counts_once(
    client: TestClient,
    core_services: Services,
    context: TrafficContext,
    site: Site,
    junction: tuple[bytes, Network],
) -> None:
    net = junction[1]
    rows = quarter_rows(net, DAY, range(7, 9)) + quarter_rows(
        net, DAY + timedelta(days=1), range(7, 9)
    )
    reply = _post(client, site, rows, key="detector-sweep-1")
    assert reply.status_code == 201, reply.text
    batch = reply.json()
    assert (batch["rows"], batch["duplicates"], batch["replay"]) == (len(rows), 0, False)
    assert batch["days"] == [DAY.isoformat(), (DAY + timedelta(days=1)).isoformat()]
    # Partitioned by tenant and day: one Parquet file per day.
    with core_services.db.unit_of_work(write=False) as session:
        stored = session.get_one(TrafficCountBatch, uuid.UUID(batch["id"]))
        assert [Path(f).parts[:2] for f in stored.files] == [
            (f"tenant={site.tenant_id}", f"day={DAY.isoformat()}"),
            (f"tenant={site.tenant_id}", f"day={(DAY + timedelta(days=1)).isoformat()}"),
        ]
        assert all((context.counts_dir / f).is_file() for f in stored.files)
    expected = sum(int(str(r["count"])) for r in rows)
    assert _total(client, site, DAY, DAY + timedelta(days=1)) == expected
    # The same batch again is a replay; the same key with other counts is refused.
    again = _post(client, site, rows, key="detector-sweep-1")
    assert again.json()["replay"] is True
    assert again.json()["id"] == batch["id"]
    other = _post(client, site, rows[:3], key="detector-sweep-1")
    assert (other.status_code, other.json()["code"]) == (409, "traffic.plan_state_conflict")
    # Half of it re-sent with a new hour: the old half is counted once, the new hour kept.
    resent = rows[: len(rows) // 4] + quarter_rows(net, DAY, range(9, 10))
    mixed = _post(client, site, resent)
    assert mixed.status_code == 201, mixed.text
    assert mixed.json()["duplicates"] == len(rows) // 4
    assert mixed.json()["rows"] == len(resent) - len(rows) // 4
    added = sum(int(str(r["count"])) for r in quarter_rows(net, DAY, range(9, 10)))
    assert _total(client, site, DAY, DAY + timedelta(days=1)) == expected + added
    # Only the first day.
    assert _total(client, site, DAY, DAY) == expected // 2 + added
    listed = client.get(f"{API}/networks/{site.network_id}/counts", headers=site.viewer.headers)
    assert len(listed.json()) == 2


def test_csv_counts_timed_in_seconds_need_their_day(
    client: TestClient, site: Site, junction: tuple[bytes, Network]
) -> None:
    rows = quarter_rows(junction[1], DAY, range(8, 9))
    _in_seconds(rows)
    url = f"{API}/networks/{site.network_id}/counts/csv"
    headers = {**site.engineer.headers, "Content-Type": "text/csv"}
    missing = client.post(url, content=_csv(rows), headers=headers)
    assert missing.status_code == 422
    assert missing.json()["code"] == "traffic.invalid_input"
    kept = client.post(url, params={"day": DAY.isoformat()}, content=_csv(rows), headers=headers)
    assert kept.status_code == 201, kept.text
    assert kept.json()["days"] == [DAY.isoformat()]
    assert _total(client, site, DAY, DAY) == sum(int(str(r["count"])) for r in rows)


def test_another_count_for_a_kept_interval_refuses_the_batch_and_keeps_nothing(
    client: TestClient, core_services: Services, site: Site, junction: tuple[bytes, Network]
) -> None:
    rows = quarter_rows(junction[1], DAY, range(8, 9))
    assert _post(client, site, rows).status_code == 201
    changed = [
        dict(rows[0], count=int(str(rows[0]["count"])) + 7),
        *quarter_rows(junction[1], DAY, range(9, 10)),
    ]
    reply = _post(client, site, changed)
    assert reply.status_code == 422
    assert reply.json()["code"] == "traffic.counts_rejected"
    assert reply.json()["findings"][0]["kind"] == "conflicting_duplicate"
    with core_services.db.unit_of_work(write=False) as session:
        batches = session.scalar(
            select(func.count())
            .select_from(TrafficCountBatch)
            .where(TrafficCountBatch.network_id == site.network_id)
        )
        assert batches == 1
    # Bad rows of any kind refuse the batch too.
    for bad in (
        dict(rows[0], count=-3),
        dict(rows[0], from_edge="nowhere"),
        dict(rows[0], interval_end=rows[0]["interval_begin"]),
    ):
        refused = _post(client, site, [bad])
        assert refused.status_code == 422, bad
    assert _total(client, site, DAY, DAY) == sum(int(str(r["count"])) for r in rows)


def test_readers_and_other_tenants_cannot_keep_counts(
    client: TestClient, site: Site, junction: tuple[bytes, Network]
) -> None:
    rows = quarter_rows(junction[1], DAY, range(8, 9))
    viewer = client.post(
        f"{API}/networks/{site.network_id}/counts",
        json={"rows": rows},
        headers=site.viewer.headers,
    )
    assert viewer.status_code == 403
    outsider = client.post(
        f"{API}/networks/{site.network_id}/counts",
        json={"rows": rows},
        headers=site.outsider.headers,
    )
    assert outsider.status_code == 404


def test_a_batch_whose_commit_fails_stays_invisible(
    core_services: Services,
    context: TrafficContext,
    site: Site,
    junction: tuple[bytes, Network],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed between the files' rename and the commit: the files are there, no batch names
    them, and nothing reads them."""
    rows = quarter_rows(junction[1], DAY, range(8, 9))

    def crash(**_: object) -> None:
        raise RuntimeError("the process died here")

    monkeypatch.setattr(countstore.audit, "record", crash)
    with pytest.raises(RuntimeError), core_services.db.unit_of_work() as session:
        countstore.ingest(
            session=session,
            actor=Actor.system("test"),
            context=context,
            network_id=site.network_id,
            source="json",
            rows=rows,
        )
    monkeypatch.undo()
    written = list((context.counts_dir / f"tenant={site.tenant_id}").rglob("*.parquet"))
    assert written  # the orphan file
    with core_services.db.unit_of_work(write=False) as session:
        assert countstore.batch_files(session, context, site.network_id, DAY, DAY) == []
        profile = countstore.stored_profile(
            session=session,
            actor=Actor.system("test"),
            context=context,
            network_id=site.network_id,
            first=DAY,
            last=DAY,
        )
        assert profile == []
    # Sent again, it is kept once.
    with core_services.db.unit_of_work() as session:
        result = countstore.ingest(
            session=session,
            actor=Actor.system("test"),
            context=context,
            network_id=site.network_id,
            source="json",
            rows=rows,
        )
        assert result.batch.rows == len(rows)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**31 - 1), pieces=st.integers(1, 5))
def test_resent_messages_in_any_order_are_counted_once(
    core_services: Services,
    context: TrafficContext,
    world: SiblingWorld,
    junction: tuple[bytes, Network],
    seed: int,
    pieces: int,
) -> None:
    """Messages cut from two hours of counts arrive shuffled, some twice: the kept total is the
    counts' own, whatever the order."""
    site = Site(core_services, world, junction[0])
    rows = quarter_rows(junction[1], DAY, range(7, 9))
    rng = random.Random(seed)
    messages = [rows[i::pieces] for i in range(pieces)]
    messages += rng.sample(messages, k=rng.randint(0, pieces))  # re-sent
    rng.shuffle(messages)
    for message in messages:
        with core_services.db.unit_of_work() as session:
            countstore.ingest(
                session=session,
                actor=Actor.system("test"),
                context=context,
                network_id=site.network_id,
                source="mqtt",
                rows=message,
                audited=False,
            )
    with core_services.db.unit_of_work(write=False) as session:
        profile = countstore.stored_profile(
            session=session,
            actor=Actor.system("test"),
            context=context,
            network_id=site.network_id,
            first=DAY,
            last=DAY,
        )
    assert sum(r.vehicles for r in profile) == sum(int(str(r["count"])) for r in rows)


def test_a_plan_is_drafted_from_kept_days(
    client: TestClient, site: Site, junction: tuple[bytes, Network]
) -> None:
    rows = quarter_rows(junction[1], DAY, range(6, 10), per_slot=60)
    assert _post(client, site, rows).status_code == 201
    reply = client.post(
        f"{API}/networks/{site.network_id}/plans",
        json={"name": "kept", "first_day": DAY.isoformat(), "last_day": DAY.isoformat()},
        headers=site.engineer.headers,
    )
    assert reply.status_code == 201, reply.text
    figures = reply.json()["figures"]["A0"]
    # 60 vehicles per 15 minutes on each through movement: 240 veh/h.
    assert figures["flow_vph"] == pytest.approx(4 * 240 * 1.4)
    empty = client.post(
        f"{API}/networks/{site.network_id}/plans",
        json={"name": "none", "first_day": "2020-01-01", "last_day": "2020-01-02"},
        headers=site.engineer.headers,
    )
    assert empty.status_code == 422
    both = client.post(
        f"{API}/networks/{site.network_id}/plans",
        json={"name": "both", "counts_csv": "x", "first_day": DAY.isoformat()},
        headers=site.engineer.headers,
    )
    assert both.status_code == 422


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkEngine]:
    engine = SparkEngine("local[1]")
    yield engine
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


def test_duckdb_and_spark_give_the_same_figures(
    core_services: Services,
    context: TrafficContext,
    site: Site,
    junction: tuple[bytes, Network],
    spark: SparkEngine,
) -> None:
    rng = random.Random(7)
    days = [DAY + timedelta(days=k) for k in range(3)]
    # Days counted over different hours: a slot's days differ from slot to slot.
    hours = [range(6, 20), range(6, 12), range(10, 20)]
    for day, counted in zip(days, hours, strict=True):
        rows = quarter_rows(junction[1], day, counted)
        for row in rows:
            row["count"] = rng.randint(0, 40)
        with core_services.db.unit_of_work() as session:
            countstore.ingest(
                session=session,
                actor=Actor.system("test"),
                context=context,
                network_id=site.network_id,
                source="json",
                rows=rows,
            )
    with core_services.db.unit_of_work(write=False) as session:
        files = countstore.batch_files(session, context, site.network_id, days[0], days[-1])
    assert len(files) == 3
    by_duckdb = countstore.profile(DuckDBEngine(), files, site.network_id, days[0], days[-1])
    by_spark = countstore.profile(spark, files, site.network_id, days[0], days[-1])
    assert len(by_duckdb) == 12 * 14 * 4
    assert by_spark == by_duckdb
    assert {r.days for r in by_duckdb} == {2, 3}
    # The days counted in two steps (for ranges too long for bits) give the same profile.
    long_sql = countstore.profile_sql(site.network_id, days[0], days[-1], bits_days=0)
    for engine in (DuckDBEngine(), spark):
        assert countstore.Profile.of_table(engine.table(files, long_sql)) == by_duckdb
    assert countstore.design_demand(by_spark) == countstore.design_demand(by_duckdb)
    checked = countstore.check(DuckDBEngine(), files, junction[1], site.network_id, *days[::2])
    assert checked == countstore.check(spark, files, junction[1], site.network_id, *days[::2])
    assert checked["rows_checked"] == (14 + 6 + 10) * 12 * 4


def test_a_resent_file_for_another_day_is_kept_and_bad_times_are_refused(
    client: TestClient, site: Site, junction: tuple[bytes, Network]
) -> None:
    rows = quarter_rows(junction[1], DAY, range(8, 9))
    _in_seconds(rows)
    url = f"{API}/networks/{site.network_id}/counts/csv"
    headers = {**site.engineer.headers, "Content-Type": "text/csv"}
    first = client.post(url, params={"day": DAY.isoformat()}, content=_csv(rows), headers=headers)
    nextday = (DAY + timedelta(days=1)).isoformat()
    second = client.post(url, params={"day": nextday}, content=_csv(rows), headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json()["replay"] is False
    assert second.json()["days"] == [nextday]
    # An interval inside one kept (5 minutes of a kept quarter hour) overlaps it; one over
    # more than a quarter hour is refused; times no clock takes are refused, not a 500.
    inside = dict(
        quarter_rows(junction[1], DAY, range(8, 9))[0],
        interval_end=datetime(DAY.year, DAY.month, DAY.day, 8, 5, tzinfo=ZONE).isoformat(),
    )
    hourly = dict(
        quarter_rows(junction[1], DAY, range(10, 11))[0],
        interval_end=datetime(DAY.year, DAY.month, DAY.day, 11, 0, tzinfo=ZONE).isoformat(),
    )
    far = dict(
        rows[0],
        interval_begin="9999-12-31T23:00:00+00:00",
        interval_end="9999-12-31T23:15:00+00:00",
    )
    for bad, kind in ((inside, "overlap"), (hourly, None), (far, "bad_interval")):
        reply = _post(client, site, [bad])
        assert reply.status_code == 422, reply.text
        if kind:
            assert reply.json()["findings"][0]["kind"] == kind
    huge = client.post(
        url,
        params={"day": DAY.isoformat()},
        content=_csv([dict(rows[0], interval_begin=1e15, interval_end=1e15 + 900)]),
        headers=headers,
    )
    assert huge.status_code == 422
    for first_day, last_day in (("2026-01-01", "9999-12-31"), ("2026-02-02", "2026-02-01")):
        profile = client.get(
            f"{API}/networks/{site.network_id}/profile",
            params={"first_day": first_day, "last_day": last_day},
            headers=site.viewer.headers,
        )
        assert profile.status_code == 422, profile.text
