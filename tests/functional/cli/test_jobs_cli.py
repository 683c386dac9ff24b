"""``civicloud jobs``: run every installed job once, list them, and a worker that stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.functional.cli.conftest import Run

CLI = [sys.executable, "-c", "from civicloud.cli import main; main()"]
PAY_JOBS = (
    "pay.expire_payments",
    "pay.recover_payments",
    "pay.resume_refunds",
    "pay.deliver_webhooks",
)


def test_jobs_run_runs_every_installed_job_once_and_says_what_each_did(civicloud: Run) -> None:
    # when every job runs once on a new installation
    result = civicloud("jobs", "run")
    # then each says it found nothing to do, and the command succeeds
    assert result.code == 0, result.err
    for name in PAY_JOBS:
        assert f"{name}: 0 items" in result.out


def test_jobs_run_runs_only_the_jobs_named(civicloud: Run) -> None:
    result = civicloud("jobs", "run", "--job", "pay.expire_payments")
    assert result.code == 0, result.err
    assert "pay.expire_payments: 0 items" in result.out
    assert "pay.recover_payments" not in result.out


def test_jobs_run_refuses_a_job_nobody_declares_in_one_line(civicloud: Run) -> None:
    result = civicloud("jobs", "run", "--job", "pay.nothing")
    assert result.code == 2
    assert "no such job: pay.nothing" in result.err
    assert result.err.strip().count("\n") == 0


def test_jobs_list_shows_each_job_with_its_schedule_and_last_run(civicloud: Run) -> None:
    # given a run of the expiry job only
    civicloud("jobs", "run", "--job", "pay.expire_payments")
    # when the jobs are listed
    result = civicloud("jobs", "list")
    # then each is there, the one that ran with its time in the installation's zone
    assert result.code == 0, result.err
    lines = {line.split("│")[1].strip(): line for line in result.out.splitlines() if "pay." in line}
    assert set(lines) == set(PAY_JOBS)
    assert "UTC+8" in lines["pay.expire_payments"]
    assert "never" in lines["pay.recover_payments"]


def test_the_pay_aliases_say_they_are_deprecated_and_run_pays_jobs(civicloud: Run) -> None:
    result = civicloud("pay", "jobs")
    assert result.code == 0, result.err
    assert "civicloud jobs run" in result.err
    for name in PAY_JOBS:
        assert name in result.out


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_worker_stops_cleanly_on_a_signal(tmp_path: Path, stop: signal.Signals) -> None:
    # given a worker started on a new installation
    process = subprocess.Popen(
        [*CLI, "jobs", "worker", "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # it says it runs once it has started
        assert "jobs worker:" in first, process.stderr.read() if process.stderr else ""
        # when it is sent the signal
        process.send_signal(stop)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    # then it stops, says so, and exits 0 without a traceback
    assert process.returncode == 0, err
    assert "jobs worker stopped." in out
    assert "Traceback" not in err
