"""The job runner: every installed module's jobs, one unit of work per item.

A job (``core.modules.Job``) names a :class:`JobWork`: ``items`` lists what is due, in a unit of
work of its own, and ``handle`` deals with one item, each in a unit of work of its own
(``Database.run``, which runs an item that lost a race once more). An item that fails, however
it fails, is logged and left as it was: it is still due, so the next run tries it again. The
runner never lets one item, or one job, stop the others.

An ``exclusive`` job runs on one worker at a time across every server of the installation:
PostgreSQL holds a session-level advisory lock (``pg_try_advisory_lock``) on a connection of
its own while the job runs; SQLite, which only one machine reaches, takes a lease in the job's
``job_state`` row with a conditional UPDATE and renews it after each item. A worker that cannot
take the lock skips the job this round.

Every run is recorded (``job_run``), and only the newest :data:`KEEP_RUNS` of each job are kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel
from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from civicloud.core.actor import Actor
from civicloud.core.context import set_request_id
from civicloud.core.db import utcnow
from civicloud.core.errors import Conflict
from civicloud.core.jobs.models import JobRun, JobState
from civicloud.core.modules import Job, Module, resolve
from civicloud.core.services import Services

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The permission to see the jobs and their runs.
READ = "core.job.read"
#: Runs of each job kept in ``job_run``; older ones are deleted as new ones are recorded.
KEEP_RUNS = 200
#: How long an exclusive job's lease on SQLite lasts; it is renewed after every item.
LEASE_SECONDS = 120.0
#: The longest error text recorded for a run.
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class JobEnv:
    """What a job's work is given: the services, its module, the module's context and settings
    section, and the run's time (UTC)."""

    services: Services
    module: Module
    #: The module's context (``services.context(name, …)``), ``None`` when it declares none.
    context: object | None
    settings: BaseModel | None
    now: datetime


@runtime_checkable
class JobWork(Protocol):
    """How a job lists what is due and handles one item of it."""

    def items(self, session: Session, env: JobEnv) -> Sequence[Any]:
        """What is due now (read in a unit of work of its own)."""
        ...

    def handle(self, session: Session, env: JobEnv, item: Any) -> str | None:
        """Handle ``item`` in its own unit of work; the outcome word is counted (``None``: not)."""
        ...


@dataclass(frozen=True)
class Work(Generic[T]):
    """A :class:`JobWork` made of two functions."""

    list_due: Callable[[Session, JobEnv], Sequence[T]]
    handle_one: Callable[[Session, JobEnv, T], str | None]

    def items(self, session: Session, env: JobEnv) -> Sequence[T]:
        """What is due now."""
        return self.list_due(session, env)

    def handle(self, session: Session, env: JobEnv, item: T) -> str | None:
        """Handle one item."""
        return self.handle_one(session, env, item)


@dataclass
class JobReport:
    """What one run of one job did."""

    job: str
    started_at: datetime
    #: ``False`` when another worker held the exclusive job's lock: nothing was done here.
    ran: bool = True
    items: int = 0
    failures: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    duration_ms: int = 0
    #: What the first failure said.
    error: str | None = None

    def describe(self) -> str:
        """One line: the job and what it did."""
        if not self.ran:
            return f"{self.job}: skipped (running on another worker)"
        done = ", ".join(f"{word} {count}" for word, count in sorted(self.outcomes.items()))
        line = f"{self.job}: {self.items} items"
        if done:
            line += f" ({done})"
        if self.failures:
            line += f", {self.failures} failed: {self.error}"
        return f"{line}, {self.duration_ms / 1000:.3f} s"


def worker_name() -> str:
    """``host:pid``: which worker ran a job."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


# --- locks --------------------------------------------------------------------------------


def advisory_key(job_name: str) -> int:
    """The PostgreSQL advisory lock key of ``job_name``: stable across processes and releases
    (a signed 64-bit integer from its SHA-256)."""
    digest = hashlib.sha256(f"civicloud.job:{job_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _Lock:
    """An exclusive job's hold: ``held`` says whether it was taken; ``renew`` keeps it."""

    def __init__(self, held: bool, renew: Callable[[], bool] = lambda: True) -> None:
        self.held = held
        self._renew = renew

    def renew(self) -> bool:
        """Keep holding it; ``False`` when it was lost (its lease expired and was taken)."""
        return self._renew()


@contextmanager
def exclusive(services: Services, job_name: str) -> Iterator[_Lock]:
    """Hold the lock of ``job_name`` for the block if no other worker holds it."""
    if services.db.is_sqlite:
        with _sqlite_lease(services, job_name) as lock:
            yield lock
        return
    key = advisory_key(job_name)
    # A connection of its own, outside any unit of work, in autocommit: the lock is the
    # session's, held until unlocked or the connection ends (a worker that dies releases it).
    with services.db.engine.connect() as opened:
        connection = opened.execution_options(isolation_level="AUTOCOMMIT")
        held = bool(connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}))
        try:
            yield _Lock(held)
        finally:
            if held:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


@contextmanager
def _sqlite_lease(services: Services, job_name: str) -> Iterator[_Lock]:
    holder = f"{worker_name()}:{uuid.uuid4().hex[:12]}"

    def take() -> bool:
        now = utcnow()
        with services.db.unit_of_work() as session:
            session.execute(sqlite_insert(JobState).values(job=job_name).on_conflict_do_nothing())
            taken = session.execute(
                update(JobState)
                .where(
                    JobState.job == job_name,
                    or_(
                        JobState.holder.is_(None),
                        JobState.holder == holder,
                        JobState.lease_until.is_(None),
                        JobState.lease_until < now,
                    ),
                )
                .values(holder=holder, lease_until=now + timedelta(seconds=LEASE_SECONDS))
            )
            return bool(getattr(taken, "rowcount", 0) == 1)

    def renew() -> bool:
        with services.db.unit_of_work() as session:
            kept = session.execute(
                update(JobState)
                .where(JobState.job == job_name, JobState.holder == holder)
                .values(lease_until=utcnow() + timedelta(seconds=LEASE_SECONDS))
            )
            return bool(getattr(kept, "rowcount", 0) == 1)

    held = take()
    try:
        yield _Lock(held, renew)
    finally:
        if held:
            with services.db.unit_of_work() as session:
                session.execute(
                    update(JobState)
                    .where(JobState.job == job_name, JobState.holder == holder)
                    .values(holder=None, lease_until=None)
                )


# --- running ------------------------------------------------------------------------------


def _module_of(services: Services, job: Job) -> Module:
    for module in services.modules:
        if job in module.jobs:
            found: Module = module
            return found
    raise LookupError(f"job {job.name!r} belongs to no installed module")


def _work_of(job: Job) -> JobWork:
    work = resolve(job.work)
    if not isinstance(work, JobWork):
        raise TypeError(f"{job.work} is not a JobWork (items and handle)")
    return work


def _env(services: Services, module: Module) -> JobEnv:
    context = services.context(module.name, object) if module.context is not None else None
    return JobEnv(
        services=services,
        module=module,
        context=context,
        settings=services.section(module.name),
        now=utcnow(),
    )


def run_job(services: Services, job: Job, *, stop: threading.Event | None = None) -> JobReport:
    """Run ``job`` once (under its lock when exclusive) and record the run; once ``stop`` is set,
    no further item is begun (the one in hand is finished), so a worker told to stop lets go of
    its lock promptly."""
    started, clock = utcnow(), time.monotonic()
    report = JobReport(job=job.name, started_at=started)
    if job.exclusive:
        with exclusive(services, job.name) as lock:
            if not lock.held:
                report.ran = False
                return report
            _run_items(services, job, report, lock, stop)
    else:
        _run_items(services, job, report, _Lock(True), stop)
    report.duration_ms = round((time.monotonic() - clock) * 1000)
    _record(services, report)
    return report


def _run_items(
    services: Services,
    job: Job,
    report: JobReport,
    lock: _Lock,
    stop: threading.Event | None = None,
) -> None:
    outcomes: Counter[str] = Counter()
    try:
        work = _work_of(job)
        env = _env(services, _module_of(services, job))
        with services.db.unit_of_work(write=False) as session:
            due = list(work.items(session, env))
    except Exception as exc:  # the listing failed (the database is away, say): none ran
        log.exception("job %s: listing what is due failed", job.name)
        report.failures, report.error = 1, _error_text(exc)
        return
    for item in due:
        if stop is not None and stop.is_set():
            log.info("job %s: stopping; what is left waits for the next run", job.name)
            break
        report.items += 1
        set_request_id(f"job-{uuid.uuid4().hex}")
        try:
            outcome = services.db.run(_one(work, env, item))
        except Exception as exc:  # any failure: the item stays due, the next run tries again
            report.failures += 1
            report.error = report.error or _error_text(exc)
            if isinstance(exc, Conflict):
                log.warning(
                    "job %s: item %r left for the next run: %s", job.name, item, _error_text(exc)
                )
            else:
                log.exception("job %s: item %r failed; the next run tries it again", job.name, item)
        else:
            if outcome is not None:
                outcomes[outcome] += 1
        finally:
            set_request_id(None)
        if not lock.renew():
            log.warning("job %s: its lease was lost; the rest waits for the next run", job.name)
            break
    report.outcomes = dict(outcomes)


def _one(work: JobWork, env: JobEnv, item: object) -> Callable[[Session], str | None]:
    return lambda session: work.handle(session, env, item)


def _record(services: Services, report: JobReport) -> None:
    """Store the run and drop the job's runs beyond :data:`KEEP_RUNS` (never fails the run)."""
    try:
        with services.db.unit_of_work() as session:
            session.add(
                JobRun(
                    job=report.job,
                    started_at=report.started_at,
                    finished_at=utcnow(),
                    duration_ms=report.duration_ms,
                    items=report.items,
                    failures=report.failures,
                    outcomes=report.outcomes,
                    error=report.error,
                    worker=worker_name(),
                )
            )
            session.flush()  # the new run counts among those kept
            oldest_kept = session.scalar(
                select(JobRun.started_at)
                .where(JobRun.job == report.job)
                .order_by(JobRun.started_at.desc())
                .offset(KEEP_RUNS - 1)
                .limit(1)
            )
            if oldest_kept is not None:
                session.execute(
                    delete(JobRun).where(JobRun.job == report.job, JobRun.started_at < oldest_kept)
                )
    except Exception:  # the run happened; its record is lost, which the log says
        log.exception("job %s: its run could not be recorded", report.job)


def selected_jobs(services: Services, names: Iterable[str] | None = None) -> tuple[Job, ...]:
    """The installed jobs, or those named (``LookupError`` for a name no module declares)."""
    installed = services.modules.jobs()
    if names is None:
        return installed
    by_name = {job.name: job for job in installed}
    wanted = list(names)
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise LookupError(f"no such job: {', '.join(unknown)}")
    return tuple(by_name[name] for name in wanted)


def run_jobs(services: Services, jobs: Iterable[Job] | None = None) -> list[JobReport]:
    """Run each of ``jobs`` (every installed module's by default) once, in order."""
    chosen = services.modules.jobs() if jobs is None else tuple(jobs)
    return [run_job(services, job) for job in chosen]


def run_worker(
    services: Services,
    stop: threading.Event,
    *,
    jobs: Iterable[Job] | None = None,
    every: float | None = None,
    on_report: Callable[[JobReport], None] = lambda _report: None,
) -> None:
    """Run each job every ``every_seconds`` (or every ``every`` seconds) until ``stop`` is set.

    A run that fails as a whole (the database restarting) is logged and the worker goes on.
    """
    chosen = services.modules.jobs() if jobs is None else tuple(jobs)
    due_at = dict.fromkeys((job.name for job in chosen), 0.0)
    while not stop.is_set():
        for job in chosen:
            if stop.is_set() or time.monotonic() < due_at[job.name]:
                continue
            due_at[job.name] = time.monotonic() + (every or job.every_seconds)
            try:
                on_report(run_job(services, job, stop=stop))
            except Exception:  # a worker outlives a failed run
                log.exception("job %s: this run failed; the next one is due on schedule", job.name)
        if not chosen:
            stop.wait(every or 60.0)
            continue
        stop.wait(max(0.05, min(due_at.values()) - time.monotonic()))


# --- history ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobStatus:
    """A job as the console and ``civicloud jobs list`` show it."""

    job: Job
    module: str
    last: JobRun | None
    #: The newest kept run that had failures.
    last_failure: JobRun | None


def job_statuses(*, session: Session, actor: Actor, services: Services) -> list[JobStatus]:
    """Each installed job with its last run and its last failed run (``core.job.read``,
    platform-wide: jobs serve every tenant)."""
    actor.require_platform(READ)
    found: list[JobStatus] = []
    for module in services.modules:
        for job in module.jobs:
            found.append(
                JobStatus(
                    job=job,
                    module=module.name,
                    last=_newest(session, job.name),
                    last_failure=_newest(session, job.name, failed=True),
                )
            )
    return found


def _newest(session: Session, job_name: str, *, failed: bool = False) -> JobRun | None:
    query = select(JobRun).where(JobRun.job == job_name)
    if failed:
        query = query.where(JobRun.failures > 0)
    return session.scalars(query.order_by(JobRun.started_at.desc()).limit(1)).first()


def count_runs(*, session: Session, job_name: str) -> int:
    """How many runs of ``job_name`` are kept."""
    return int(session.scalar(select(func.count()).where(JobRun.job == job_name)) or 0)
