"""Compaction of kept counts: a day's small files merged into one, the profile unchanged, the
old files deleted only after the grace period; a crash before the commit changes nothing; the
job and the command do the same."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.conftest import TEST_AUDIT_KEY
from tests.functional.traffic.conftest import DAY, Run, Site, quarter_rows

from civicloud.core.actor import Actor
from civicloud.core.db import utcnow
from civicloud.core.jobs import run_job
from civicloud.core.services import Services
from civicloud.traffic import MODULE, compaction, countstore
from civicloud.traffic.context import TrafficContext
from civicloud.traffic.models import TrafficCountBatch, TrafficCountRetiredFile
from civicloud.traffic.network import Network

SYSTEM = Actor.system("test")


def _keep(
    services: Services, context: TrafficContext, site: Site, rows: list[dict[str, object]]
) -> None:
    with services.db.unit_of_work() as session:
        countstore.ingest(
            session=session,
            actor=SYSTEM,
            context=context,
            network_id=site.network_id,
            source="json",
            rows=rows,
        )


def _small_batches(
    services: Services, context: TrafficContext, site: Site, net: Network, hours: range
) -> None:
    """One batch per quarter hour, as the MQTT flush makes them (a file each)."""
    rows = quarter_rows(net, DAY, hours)
    per_quarter: dict[object, list[dict[str, object]]] = {}
    for row in rows:
        per_quarter.setdefault(row["interval_begin"], []).append(row)
    for batch in per_quarter.values():
        _keep(services, context, site, batch)


def _files(services: Services, context: TrafficContext, site: Site, day: date) -> list[Path]:
    with services.db.unit_of_work(write=False) as session:
        return countstore.batch_files(session, context, site.network_id, day, day)


def _profile(services: Services, context: TrafficContext, site: Site) -> countstore.Profile:
    with services.db.unit_of_work(write=False) as session:
        return countstore.stored_profile(
            session=session,
            actor=SYSTEM,
            context=context,
            network_id=site.network_id,
            first=DAY - timedelta(days=1),
            last=DAY + timedelta(days=1),
        )


def _compact(services: Services, context: TrafficContext, site: Site, **extra: object):  # type: ignore[no-untyped-def]
    with services.db.unit_of_work() as session:
        return compaction.compact_network(
            session=session,
            context=context,
            network_id=site.network_id,
            now=extra.pop("now", utcnow()),  # type: ignore[arg-type]
            **extra,  # type: ignore[arg-type]
        )


def test_a_days_small_files_become_one_and_the_profile_stays_the_same(
    core_services: Services,
    context: TrafficContext,
    site: Site,
    junction: tuple[bytes, Network],
) -> None:
    net = junction[1]
    _small_batches(core_services, context, site, net, range(7, 10))  # 12 batches
    # Another day, with too few files to be merged.
    _keep(core_services, context, site, quarter_rows(net, DAY + timedelta(days=1), range(8, 9)))
    before = _profile(core_services, context, site)
    old = _files(core_services, context, site, DAY)
    assert len(old) == 12
    untouched = _files(core_services, context, site, DAY + timedelta(days=1))

    merged = _compact(core_services, context, site)

    assert [(m.day, m.files) for m in merged] == [(DAY, 12)]
    assert merged[0].rows == len(quarter_rows(net, DAY, range(7, 10)))
    now = _files(core_services, context, site, DAY)
    assert len(now) == 1
    assert now[0].name.startswith("compacted-")
    assert _files(core_services, context, site, DAY + timedelta(days=1)) == untouched
    assert _profile(core_services, context, site) == before
    # The old files wait out the grace period for readers that listed them.
    assert all(p.is_file() for p in old)
    with core_services.db.unit_of_work(write=False) as session:
        retired = session.scalars(
            select(TrafficCountRetiredFile.path).where(
                TrafficCountRetiredFile.network_id == site.network_id
            )
        ).all()
    assert sorted(context.counts_dir / r for r in retired) == sorted(old)
    # Batches keep what they say of themselves; the counts they hold are still found.
    with core_services.db.unit_of_work(write=False) as session:
        batches = session.scalars(
            select(TrafficCountBatch).where(TrafficCountBatch.network_id == site.network_id)
        ).all()
    assert sum(b.rows for b in batches) == merged[0].rows + len(
        quarter_rows(net, DAY + timedelta(days=1), range(8, 9))
    )
    # A re-sent quarter is a duplicate of the compacted rows, not kept again.
    with core_services.db.unit_of_work() as session:
        again = countstore.ingest(
            session=session,
            actor=SYSTEM,
            context=context,
            network_id=site.network_id,
            source="json",
            rows=quarter_rows(net, DAY, range(8, 9))[:5],
        )
    assert (again.batch.rows, again.batch.duplicates) == (0, 5)
    # Too early: nothing deleted. After the grace period: the old files go, the new one stays.
    _compact(core_services, context, site, now=utcnow() + compaction.GRACE / 2)
    assert all(p.is_file() for p in old)
    _compact(core_services, context, site, now=utcnow() + compaction.GRACE * 2)
    assert not any(p.exists() for p in old)
    assert now[0].is_file()
    assert _profile(core_services, context, site) == before
    with core_services.db.unit_of_work(write=False) as session:
        assert not session.scalars(
            select(TrafficCountRetiredFile).where(
                TrafficCountRetiredFile.network_id == site.network_id
            )
        ).all()


def test_a_compacted_day_takes_later_batches_and_is_merged_again(
    core_services: Services,
    context: TrafficContext,
    site: Site,
    junction: tuple[bytes, Network],
) -> None:
    net = junction[1]
    _small_batches(core_services, context, site, net, range(7, 9))
    assert len(_compact(core_services, context, site)) == 1
    _small_batches(core_services, context, site, net, range(9, 11))
    before = _profile(core_services, context, site)
    assert len(_files(core_services, context, site, DAY)) == 9
    merged = _compact(core_services, context, site)
    assert [m.files for m in merged] == [9]
    assert len(_files(core_services, context, site, DAY)) == 1
    assert _profile(core_services, context, site) == before
    # Under the threshold, or too small a threshold.
    assert _compact(core_services, context, site) == []
    with pytest.raises(Exception, match="at least 2"):
        _compact(core_services, context, site, min_files=1)


def test_a_compaction_that_dies_before_its_commit_changes_nothing(
    core_services: Services,
    context: TrafficContext,
    site: Site,
    junction: tuple[bytes, Network],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed between the merged file's rename and the commit: the file is there, no batch
    names it, the day reads as before, and the next run merges the day."""
    _small_batches(core_services, context, site, junction[1], range(7, 9))
    before = _profile(core_services, context, site)
    old = _files(core_services, context, site, DAY)

    def crash(*_: object, **__: object) -> None:
        raise RuntimeError("the process died here")

    monkeypatch.setattr(compaction.log, "info", crash)
    with pytest.raises(RuntimeError):
        _compact(core_services, context, site)
    monkeypatch.undo()
    orphans = list(countstore.day_folder(context, site.tenant_id, DAY).glob("compacted-*"))
    assert len(orphans) == 1
    assert _files(core_services, context, site, DAY) == old
    assert _profile(core_services, context, site) == before
    merged = _compact(core_services, context, site)
    assert [m.files for m in merged] == [8]
    assert _profile(core_services, context, site) == before


def test_a_missing_file_leaves_its_day_alone(
    core_services: Services,
    context: TrafficContext,
    site: Site,
    junction: tuple[bytes, Network],
) -> None:
    _small_batches(core_services, context, site, junction[1], range(7, 9))
    old = _files(core_services, context, site, DAY)
    old[3].unlink()
    assert _compact(core_services, context, site) == []
    assert _files(core_services, context, site, DAY) == [p for p in old if p != old[3]]


def test_the_job_compacts_networks_with_recent_counts(
    core_services: Services,
    context: TrafficContext,
    site: Site,
    junction: tuple[bytes, Network],
) -> None:
    _small_batches(core_services, context, site, junction[1], range(7, 9))
    with core_services.db.unit_of_work(write=False) as session:
        assert site.network_id in compaction.due_networks(session, utcnow())
        # Networks whose last counts are older than RECENT are not looked at.
        later = utcnow() + compaction.RECENT + timedelta(hours=1)
        assert site.network_id not in compaction.due_networks(session, later)
    job = next(j for j in MODULE.jobs if j.name == "traffic.compact_counts")
    report = run_job(core_services, job)
    assert report.outcomes.get("8 files of 1 days merged", 0) >= 1
    assert len(_files(core_services, context, site, DAY)) == 1


def test_the_command_compacts_a_network_and_refuses_bad_input(
    core_services: Services,
    context: TrafficContext,
    site: Site,
    junction: tuple[bytes, Network],
    civicloud_traffic: Run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _small_batches(core_services, context, site, junction[1], range(7, 9))
    monkeypatch.setenv("CIVICLOUD_DATABASE_URL", core_services.settings.effective_database_url)
    monkeypatch.setenv("CIVICLOUD_AUDIT_KEY", TEST_AUDIT_KEY.get_secret_value())
    data_dir = str(core_services.settings.data_dir)
    code, output = civicloud_traffic(
        "counts", "compact", "--network-id", str(site.network_id), "--data-dir", data_dir
    )
    assert code == 0, output
    assert DAY.isoformat() in output
    assert len(_files(core_services, context, site, DAY)) == 1
    for bad in (
        ["--min-files", "1"],
        ["--network-id", "not-an-id"],
        ["--network-id", str(uuid.uuid4())],
    ):
        code, output = civicloud_traffic("counts", "compact", *bad, "--data-dir", data_dir)
        assert code != 0, bad
        assert "Traceback" not in output
