"""Two workers, each with services of its own over one database, run an exclusive job: every
item is handled once, and never while the other worker handles one."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy.orm import Session
from tests.conftest import make_settings
from tests.fakes import jobs as fakes

from civicloud.app import build_services
from civicloud.core import jobs
from civicloud.core.jobs import JobEnv
from civicloud.core.services import Services

ITEMS = 60
#: How long the two may take to get through the items: rounds, not time, are what a busy machine
#: stretches, so the workers go on until the items are done or this has passed.
PATIENCE_SECONDS = 90.0


def test_an_exclusive_job_runs_on_one_worker_at_a_time(
    core_services: Services, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # given two workers with services (engines, pools) of their own over the shared database
    module = fakes.module()
    url = str(core_services.db.engine.url.render_as_string(hide_password=False))
    workers = [
        fakes.with_modules(build_services(make_settings(tmp_path_factory.mktemp("w"), url)), module)
        for _ in range(2)
    ]
    # and an exclusive job over a queue of items, whose handler notes any overlap
    due = set(range(ITEMS))
    handled: list[int] = []
    guard = threading.Lock()
    active = [0]
    overlaps: list[int] = []
    both_started = threading.Barrier(2)

    def list_due(_session: Session, _env: JobEnv) -> list[int]:
        with guard:
            return sorted(due)[:5]

    def handle(_session: Session, _env: JobEnv, item: int) -> str:
        with guard:
            active[0] += 1
            if active[0] > 1:
                overlaps.append(item)
        # widen the window in which another worker would come in if it could
        threading.Event().wait(0.002)
        with guard:
            active[0] -= 1
            due.discard(item)
            handled.append(item)
        return "handled"

    fakes.first.list_due = list_due
    fakes.first.handle_one = handle
    job = module.jobs[0]

    def work(index: int) -> None:
        both_started.wait()
        deadline = time.monotonic() + PATIENCE_SECONDS
        while time.monotonic() < deadline:
            jobs.run_job(workers[index], job)
            with guard:
                if not due:
                    return

    # when both run it, again and again, at the same time
    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for services in workers:
            services.db.dispose()
    # then every item was handled exactly once, never two at once
    assert not any(thread.is_alive() for thread in threads)
    assert overlaps == []
    assert sorted(handled) == list(range(ITEMS))
