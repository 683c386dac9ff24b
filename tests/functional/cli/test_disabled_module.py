"""A module switched off for an installation (``CIVICLOUD_DISABLED_MODULES``) brings no commands,
as it brings no routes, pages, jobs or listeners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each case starts civicloud in a process of its own

CLI = [sys.executable, "-c", "from civicloud.cli import main; main()"]
ROOT = Path(__file__).resolve().parents[3]


def civicloud(*args: str, disabled: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CIVICLOUD_DISABLED_MODULES": disabled}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False
    )


def test_a_module_switched_off_brings_no_commands() -> None:
    # given Pay switched off, then `civicloud pay` is no command, and the list does not name it
    refused = civicloud("pay", "--help", disabled="pay")
    assert refused.returncode == 2
    assert "No such command 'pay'" in refused.stderr
    assert " pay " not in civicloud("--help", disabled="pay").stdout
    # and with it on, it is there
    assert civicloud("pay", "--help").returncode == 0


@pytest.mark.parametrize("disabled", ["nosuch", "Pay!"])
def test_a_bad_list_of_modules_is_one_line_when_a_command_runs(
    disabled: str, tmp_path: Path
) -> None:
    # given a switched-off list civicloud cannot use, when a command runs
    result = civicloud("db", "status", "--data-dir", str(tmp_path), disabled=disabled)
    # then it says so on one line, with no traceback
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "DISABLED_MODULES" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
