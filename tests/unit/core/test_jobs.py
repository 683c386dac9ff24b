"""The job runner: one unit of work per item, failures left for the next run, exclusive jobs
under a lock, and a bounded record of the runs, on both databases."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from tests.fakes import jobs as fakes

from civicloud.core import jobs
from civicloud.core.actor import Actor
from civicloud.core.db import utcnow
from civicloud.core.errors import Conflict, PermissionDenied
from civicloud.core.jobs import JobEnv, JobRun, JobState
from civicloud.core.jobs import service as job_service
from civicloud.core.roles.models import Role
from civicloud.core.services import Services


@pytest.fixture
def services(core_services: Services) -> Services:
    """The shared database, running the fake module."""
    return fakes.with_modules(core_services, fakes.module())


def _runs(services: Services, job_name: str) -> list[JobRun]:
    with services.db.unit_of_work(write=False) as session:
        return list(
            session.scalars(
                select(JobRun).where(JobRun.job == job_name).order_by(JobRun.started_at)
            )
        )


def _first(services: Services) -> jobs.JobReport:
    job = services.modules.jobs()[0]
    return jobs.run_job(services, job)


def test_the_exported_members_are_the_runners_surface() -> None:
    assert set(jobs.__all__) == {
        "KEEP_RUNS",
        "READ",
        "JobEnv",
        "JobReport",
        "JobRun",
        "JobState",
        "JobStatus",
        "JobWork",
        "Work",
        "advisory_key",
        "count_runs",
        "job_statuses",
        "run_job",
        "run_jobs",
        "run_worker",
        "selected_jobs",
    }


def test_a_failed_item_is_left_due_and_the_others_commit(services: Services) -> None:
    # given three items due, whose handler writes a row each and fails on the second
    due = {"a", "b", "c"}
    tag = uuid.uuid4().hex[:8]
    failing = {"b"}

    def handle(session: Session, _env: JobEnv, item: str) -> str:
        session.add(Role(name=f"jt_{tag}_{item}", name_zh="测", name_en="t", permissions=[]))
        if item in failing:
            raise RuntimeError(f"{item} cannot be handled")
        due.discard(item)
        return "done"

    fakes.first.list_due = lambda _s, _e: sorted(due)
    fakes.first.handle_one = handle
    # when the job runs
    report = _first(services)
    # then the others were handled in units of their own, and the failed one changed nothing
    assert (report.items, report.failures, report.outcomes) == (3, 1, {"done": 2})
    assert report.error == "RuntimeError: b cannot be handled"
    with services.db.unit_of_work(write=False) as session:
        names = set(session.scalars(select(Role.name).where(Role.name.like(f"jt_{tag}_%"))))
    assert names == {f"jt_{tag}_a", f"jt_{tag}_c"}
    # and the next run tries it again
    failing.clear()
    again = _first(services)
    assert (again.items, again.failures, again.outcomes) == (1, 0, {"done": 1})
    assert due == set()


def test_a_worker_told_to_stop_begins_no_further_item(services: Services) -> None:
    # given three items due, and a stop asked for while the first is handled
    due = ["a", "b", "c"]
    handled: list[str] = []
    stop = threading.Event()

    def handle(_session: Session, _env: JobEnv, item: str) -> str:
        handled.append(item)
        stop.set()
        return "done"

    fakes.first.list_due = lambda _s, _e: list(due)
    fakes.first.handle_one = handle
    # when the job runs with that stop
    report = jobs.run_job(services, services.modules.jobs()[0], stop=stop)
    # then the item in hand was finished and no other begun: they wait for the next run
    assert handled == ["a"]
    assert (report.items, report.failures, report.outcomes) == (1, 0, {"done": 1})


def test_a_lost_race_is_a_failure_for_this_run_only(services: Services) -> None:
    # given an item whose handler keeps meeting a conflict the first time round
    attempts: list[int] = []

    def handle(_session: Session, _env: JobEnv, item: int) -> str:
        attempts.append(item)
        if len(attempts) == 1:
            raise Conflict("the record changed meanwhile; reload it and try again")
        return "ok"

    fakes.first.list_due = lambda _s, _e: [7]
    fakes.first.handle_one = handle
    # when the job runs twice
    first, second = _first(services), _first(services)
    # then the first run counts it failed and the second handles it
    assert (first.failures, first.outcomes) == (1, {})
    assert (second.failures, second.outcomes) == (0, {"ok": 1})


def test_each_run_is_recorded_with_its_first_failure(services: Services) -> None:
    # given a job with two failing items
    def handle(_session: Session, _env: JobEnv, item: int) -> str:
        raise ValueError(f"item {item} is bad")

    fakes.first.list_due = lambda _s, _e: [1, 2]
    fakes.first.handle_one = handle
    # when it runs
    report = _first(services)
    # then its run is stored, with the first failure's words
    (run,) = _runs(services, report.job)
    assert (run.items, run.failures, run.error) == (2, 2, "ValueError: item 1 is bad")
    assert run.outcomes == {}
    assert run.finished_at >= run.started_at
    assert run.duration_ms >= 0
    assert run.worker


def test_a_failed_listing_is_a_failed_run_and_the_next_job_still_runs(services: Services) -> None:
    # given a first job whose listing fails, and a second with one item
    def broken(_session: Session, _env: JobEnv) -> list[int]:
        raise OSError("the disk is away")

    fakes.first.list_due = broken
    fakes.second.list_due = lambda _s, _e: [1]
    fakes.second.handle_one = lambda _s, _e, _i: "ok"
    # when every job runs
    first, second = jobs.run_jobs(services)
    # then the first failed as a whole and the second did its work
    assert (first.items, first.failures, first.error) == (0, 1, "OSError: the disk is away")
    assert (second.items, second.outcomes) == (1, {"ok": 1})


def test_work_that_cannot_be_found_fails_its_job_only(core_services: Services) -> None:
    # given a module whose first job names work that does not exist
    module = fakes.module()
    broken = type(module.jobs[0])(
        f"{module.jobs[0].name}_x", "Broken", "tests.fakes.jobs:missing", 15.0, True
    )
    services = fakes.with_modules(
        core_services,
        type(module)(name="jobtest", title="Job test", jobs=(broken, module.jobs[1])),
    )
    fakes.second.list_due = lambda _s, _e: ["x"]
    fakes.second.handle_one = lambda _s, _e, _i: "ok"
    # when every job runs
    reports = jobs.run_jobs(services)
    # then that one failed and the other ran
    assert [r.failures for r in reports] == [1, 0]
    assert reports[0].error is not None
    assert "missing" in reports[0].error
    assert reports[1].outcomes == {"ok": 1}


def test_the_env_carries_the_module_its_context_and_the_time(core_services: Services) -> None:
    # given a module that declares a context
    module = fakes.module(context=True)
    services = fakes.with_modules(core_services, module)
    fakes.first.list_due = lambda _s, _e: [1]
    # when its job runs twice
    before = utcnow()
    _first(services)
    _first(services)
    # then each run saw the module, one context built once, and the run's time
    one, two = fakes.first.envs
    assert one.module is module
    assert isinstance(one.context, fakes.Context)
    assert one.context is two.context
    assert one.settings is None
    assert before <= one.now <= two.now


def test_an_exclusive_job_held_elsewhere_is_skipped_this_round(services: Services) -> None:
    # given an exclusive job with an item due, whose lock another worker holds
    handled: list[int] = []
    fakes.first.list_due = lambda _s, _e: [1]

    def handle(_session: Session, _env: JobEnv, item: int) -> str:
        handled.append(item)
        return "ok"

    fakes.first.handle_one = handle
    job = services.modules.jobs()[0]
    with job_service.exclusive(services, job.name) as lock:
        assert lock.held
        # when this worker runs it
        skipped = jobs.run_job(services, job)
    # then it skipped it, recording nothing, and runs it once the lock is free
    assert not skipped.ran
    assert handled == []
    assert _runs(services, job.name) == []
    assert jobs.run_job(services, job).ran
    assert handled == [1]


def test_a_job_that_is_not_exclusive_takes_no_lock(core_services: Services) -> None:
    # given a job that is not exclusive, its name's lock held elsewhere
    services = fakes.with_modules(core_services, fakes.module(exclusive=False))
    fakes.first.list_due = lambda _s, _e: [1]
    job = services.modules.jobs()[0]
    with job_service.exclusive(services, job.name):
        # when it runs, then it runs
        assert jobs.run_job(services, job).ran


def test_an_expired_lease_is_taken_over(services: Services) -> None:
    if not services.db.is_sqlite:
        pytest.skip("PostgreSQL holds an advisory lock, which ends with its connection")
    # given a lease left by a worker that died, past its end
    job = services.modules.jobs()[0]
    with services.db.unit_of_work() as session:
        session.add(
            JobState(job=job.name, holder="gone:1:x", lease_until=utcnow() - timedelta(seconds=1))
        )
    fakes.first.list_due = lambda _s, _e: [1]
    # when a worker runs the job, then it takes the lease, runs, and releases it
    assert jobs.run_job(services, job).ran
    with services.db.unit_of_work(write=False) as session:
        state = session.get_one(JobState, job.name)
    assert (state.holder, state.lease_until) == (None, None)


def test_a_live_lease_keeps_other_workers_out(services: Services) -> None:
    if not services.db.is_sqlite:
        pytest.skip("the lease is SQLite's lock")
    # given a lease another worker holds for a while yet
    job = services.modules.jobs()[0]
    with services.db.unit_of_work() as session:
        session.add(
            JobState(job=job.name, holder="other:1:x", lease_until=utcnow() + timedelta(minutes=1))
        )
    # when this worker runs the job, then it skips it
    assert not jobs.run_job(services, job).ran
    with services.db.unit_of_work() as session:
        session.execute(update(JobState).where(JobState.job == job.name).values(holder=None))


def test_only_the_newest_runs_are_kept(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a runner that keeps three runs per job
    monkeypatch.setattr(job_service, "KEEP_RUNS", 3)
    reports = [_first(services) for _ in range(5)]
    # then the three newest are kept
    kept = _runs(services, reports[0].job)
    assert [run.started_at for run in kept] == [r.started_at for r in reports[2:]]


def test_advisory_keys_are_stable_and_distinct() -> None:
    assert jobs.advisory_key("pay.expire_payments") == jobs.advisory_key("pay.expire_payments")
    assert jobs.advisory_key("pay.expire_payments") != jobs.advisory_key("pay.recover_payments")
    assert -(2**63) <= jobs.advisory_key("x") < 2**63


def test_the_worker_runs_on_schedule_and_outlives_a_failed_run(core_services: Services) -> None:
    # given two jobs due at once and often: one whose listing fails, one that counts its runs
    services = fakes.with_modules(core_services, fakes.module(every=0.01))
    stop = threading.Event()
    runs: list[int] = []

    def broken(_session: Session, _env: JobEnv) -> list[int]:
        raise RuntimeError("down")

    def counted(_session: Session, _env: JobEnv) -> list[int]:
        runs.append(1)
        if len(runs) == 3:
            stop.set()
        return []

    fakes.first.list_due = broken
    fakes.second.list_due = counted
    reports: list[jobs.JobReport] = []
    # when the worker runs until the third run of the second job stops it
    worker = threading.Thread(
        target=jobs.run_worker, args=(services, stop), kwargs={"on_report": reports.append}
    )
    worker.start()
    worker.join(timeout=60)
    # then it kept going past every failed run, and stopped when told
    assert not worker.is_alive()
    assert len(runs) == 3
    assert any(r.failures for r in reports if r.job.endswith(".first"))


def test_the_statuses_show_each_jobs_last_run_to_whom_may_read_them(services: Services) -> None:
    # given one run of the first job that failed and none of the second
    def fail(_session: Session, _env: JobEnv, _item: Any) -> str:
        raise RuntimeError("no")

    fakes.first.list_due = lambda _s, _e: [1]
    fakes.first.handle_one = fail
    _first(services)
    with services.db.unit_of_work(write=False) as session:
        # when the platform's operator asks
        first, second = jobs.job_statuses(session=session, actor=Actor.system(), services=services)
        # and someone without the permission asks
        with pytest.raises(PermissionDenied):
            jobs.job_statuses(
                session=session,
                actor=Actor(kind="user", name="nobody", via="test"),
                services=services,
            )
    # then the first has its last run and failure, the second none
    assert first.last is not None
    assert first.last_failure is not None
    assert first.last.failures == 1
    assert (second.last, second.last_failure) == (None, None)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    count=st.integers(min_value=0, max_value=12),
    failing=st.sets(st.integers(min_value=0, max_value=11)),
    errors=st.sampled_from([RuntimeError, ValueError, Conflict, KeyError]),
)
def test_whatever_fails_stays_due_and_the_rest_is_done(
    services: Services, count: int, failing: set[int], errors: type[Exception]
) -> None:
    # given items due, some of whose handling fails (however it fails)
    due = set(range(count))
    failing &= due

    def handle(_session: Session, _env: JobEnv, item: int) -> str:
        if item in failing:
            raise errors("the item cannot be handled")
        due.discard(item)
        return "done"

    fakes.first.list_due = lambda _s, _e: sorted(due)
    fakes.first.handle_one = handle
    # when the job runs
    report = _first(services)
    # then every item was tried, the failed ones are still due, and the report counts both
    assert report.items == count
    assert report.failures == len(failing)
    assert report.outcomes == ({"done": count - len(failing)} if count > len(failing) else {})
    assert due == failing
    assert (report.error is None) == (not failing)
