"""Time per module: each test's setup, call and teardown summed by module, printed at the end.

Every test belongs to the module whose directory follows ``tests/unit/`` or ``tests/functional/``;
the web shell's and the command line's tests are the core's (``MODULE_OF_DIRECTORY``), and a file
directly under those directories (the suite's own tests) counts as the core's too. The seconds
are summed worker time; a module's **share** of the run's wall clock is that divided by the
workers that ran (with ``-n 2``, about half of it).

Each module has a budget for its share, ``module_budget_seconds`` in pytest's ini options
(pyproject's ``[tool.pytest.ini_options]``): about three minutes of ``make test`` on these
2-core machines, so that five modules stay under fifteen. A module over it gets a loud warning line, never a
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
#: The budget when the ini option is left out (a module's share of the wall clock, seconds).
DEFAULT_BUDGET_SECONDS = 180.0
BUDGET_OPTION = "module_budget_seconds"


@dataclass(frozen=True)
class ModuleTime:
    """One row of the table: a module's number of tests and their summed seconds."""

    module: str
    tests: int
    seconds: float
    budget: float
    #: The workers the run had (``-n``): the seconds were spread over them.
    workers: int = 1

    @property
    def share(self) -> float:
        """The module's share of the run's wall clock: its worker seconds over the workers."""
        return self.seconds / max(self.workers, 1)

    @property
    def over_budget(self) -> bool:
        """Whether the module's share of the run took longer than its budget."""
        return self.share > self.budget


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
    durations: Iterable[tuple[str, float]],
    *,
    budget: float = DEFAULT_BUDGET_SECONDS,
    workers: int = 1,
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
        ModuleTime(
            module=module,
            tests=len(tests[module]),
            seconds=seconds[module],
            budget=budget,
            workers=workers,
        )
        for module in sorted(seconds)
    ]


def format_table(rows: list[ModuleTime]) -> list[str]:
    """The table's lines, a total last, then one warning line per module over its budget."""
    lines = [f"{'module':<12} {'tests':>6} {'worker s':>9} {'share s':>8} {'budget':>7}"]
    for row in rows:
        flag = "  over budget" if row.over_budget else ""
        lines.append(
            f"{row.module:<12} {row.tests:>6} {row.seconds:>9.1f} {row.share:>8.1f}"
            f" {row.budget:>7.0f}{flag}"
        )
    total_tests = sum(row.tests for row in rows)
    total_seconds = sum(row.seconds for row in rows)
    total_share = sum(row.share for row in rows)
    lines.append(f"{'total':<12} {total_tests:>6} {total_seconds:>9.1f} {total_share:>8.1f}")
    for row in rows:
        if row.over_budget:
            lines.append(
                f"WARNING: module {row.module} is OVER BUDGET: its share of the run took "
                f"{row.share:.1f} s > {row.budget:.0f} s ({BUDGET_OPTION}); mark its long "
                "scenarios slow or speed them up. This warns only: the run does not fail for it."
            )
    return lines


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        BUDGET_OPTION,
        "each module's budget for its share of the run's wall clock, in seconds (its tests' "
        "setup+call+teardown summed over the workers, divided by the workers)",
        default=str(DEFAULT_BUDGET_SECONDS),
    )


class ModuleTimer:
    """Collects each phase's duration as the reports arrive (on the controller under xdist)."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.durations: list[tuple[str, float]] = []
        self.workers: set[str] = set()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.durations.append((report.nodeid, report.duration))
        # Under xdist the report names the worker it came from; one process is one worker.
        node = getattr(report, "node", None)
        worker = getattr(node, "workerinput", {}).get("workerid") if node is not None else None
        self.workers.add(str(worker))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.durations:
            return
        workers = len(self.workers)
        rows = module_times(self.durations, budget=self.budget, workers=workers)
        terminalreporter.write_sep(
            "=", f"time per module (worker seconds, and its share of the run over {workers})"
        )
        for line in format_table(rows):
            over = line.startswith("WARNING")
            terminalreporter.write_line(line, red=over, bold=over)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller prints the table
        return
    budget = float(str(config.getini(BUDGET_OPTION)))
    config.pluginmanager.register(ModuleTimer(budget), "civicloud-module-timer")
