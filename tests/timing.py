"""Time per module: each test's setup, call and teardown summed by module, printed at the end.

Every test belongs to the module whose directory follows ``tests/unit/`` or ``tests/functional/``;
the web shell's and the command line's tests are the core's (``MODULE_OF_DIRECTORY``), and a file
directly under those directories (the suite's own tests) counts as the core's too. The seconds
are summed worker time: with ``-n 2`` a module's share of the wall clock is about half of it.

Each module has a budget of summed worker time, ``module_budget_seconds`` in pytest's ini options
(pyproject's ``[tool.pytest.ini_options]``). A module over it gets a loud warning line, never a
failed run: the suite asserts nothing about time, this table is for whoever reads the log.

Under pytest-xdist the controller sums the reports the workers send it
(``pytest_runtest_logreport`` runs there for every test), so the table is printed once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

import pytest

#: Test directories that are not modules of their own, and the module they count for.
MODULE_OF_DIRECTORY = {"web": "core", "cli": "core"}
#: The module of tests that sit directly under tests/unit/ or tests/functional/.
DEFAULT_MODULE = "core"
#: The budget when the ini option is left out (summed worker seconds, on a 2-core machine).
DEFAULT_BUDGET_SECONDS = 180.0
BUDGET_OPTION = "module_budget_seconds"


@dataclass(frozen=True)
class ModuleTime:
    """One row of the table: a module's number of tests and their summed seconds."""

    module: str
    tests: int
    seconds: float
    budget: float

    @property
    def over_budget(self) -> bool:
        """Whether the module's tests took more worker time than its budget."""
        return self.seconds > self.budget


def module_of(nodeid: str) -> str:
    """The module a test belongs to, from its node id (``tests/functional/pay/test_x.py::t``)."""
    parts = PurePosixPath(nodeid.split("::", 1)[0]).parts
    for kind in ("unit", "functional"):
        if kind in parts:
            rest = parts[parts.index(kind) + 1 :]
            if len(rest) >= 2:  # a directory, then the file
                return MODULE_OF_DIRECTORY.get(rest[0], rest[0])
            return DEFAULT_MODULE
    return DEFAULT_MODULE


def module_times(
    durations: Iterable[tuple[str, float]], *, budget: float = DEFAULT_BUDGET_SECONDS
) -> list[ModuleTime]:
    """Sum ``(nodeid, seconds)`` pairs (one per phase of a test) by module, sorted by module.

    A test counts once however many phases it reported.
    """
    seconds: dict[str, float] = {}
    tests: dict[str, set[str]] = {}
    for nodeid, duration in durations:
        module = module_of(nodeid)
        seconds[module] = seconds.get(module, 0.0) + duration
        tests.setdefault(module, set()).add(nodeid)
    return [
        ModuleTime(module=module, tests=len(tests[module]), seconds=seconds[module], budget=budget)
        for module in sorted(seconds)
    ]


def format_table(rows: list[ModuleTime]) -> list[str]:
    """The table's lines, a total last, then one warning line per module over its budget."""
    lines = [f"{'module':<12} {'tests':>6} {'seconds':>9} {'budget':>8}"]
    for row in rows:
        flag = "  over budget" if row.over_budget else ""
        lines.append(
            f"{row.module:<12} {row.tests:>6} {row.seconds:>9.1f} {row.budget:>8.0f}{flag}"
        )
    total_tests = sum(row.tests for row in rows)
    total_seconds = sum(row.seconds for row in rows)
    lines.append(f"{'total':<12} {total_tests:>6} {total_seconds:>9.1f}")
    for row in rows:
        if row.over_budget:
            lines.append(
                f"WARNING: module {row.module} is OVER BUDGET: {row.seconds:.1f} s of summed worker "
                f"time > {row.budget:.0f} s ({BUDGET_OPTION}); mark its long scenarios slow or "
                "speed them up. This warns only: the run does not fail for it."
            )
    return lines


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        BUDGET_OPTION,
        "each module's budget of summed test seconds (setup+call+teardown, all workers)",
        default=str(DEFAULT_BUDGET_SECONDS),
    )


class ModuleTimer:
    """Collects each phase's duration as the reports arrive (on the controller under xdist)."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.durations: list[tuple[str, float]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.durations.append((report.nodeid, report.duration))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.durations:
            return
        rows = module_times(self.durations, budget=self.budget)
        terminalreporter.write_sep("=", "time per module (summed worker seconds)")
        for line in format_table(rows):
            over = line.startswith("WARNING")
            terminalreporter.write_line(line, red=over, bold=over)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller prints the table
        return
    budget = float(str(config.getini(BUDGET_OPTION)))
    config.pluginmanager.register(ModuleTimer(budget), "civicloud-module-timer")
