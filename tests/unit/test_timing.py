"""The time-per-module table: which module a test counts for, the sums, and the budget warning."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.timing import ModuleTime, format_table, module_of, module_times


@pytest.mark.parametrize(
    ("nodeid", "module"),
    [
        ("tests/unit/pay/test_amounts.py::test_round[1]", "pay"),
        ("tests/functional/pay/test_load.py::test_200_clients", "pay"),
        ("tests/unit/core/test_pool.py::test_x", "core"),
        ("tests/functional/web/test_browser.py::test_sign_in", "core"),
        ("tests/functional/cli/test_serve.py::test_serve", "core"),
        ("tests/functional/store/test_objects.py::test_put", "store"),
        ("tests/unit/test_timing.py::test_module_of", "core"),
        ("tests/functional/pay/test_x.py::TestClass::test_y[a/b::c]", "pay"),
    ],
)
def test_a_test_counts_for_the_directory_after_unit_or_functional(nodeid: str, module: str) -> None:
    # given a test's node id, when its module is looked up, then web and cli count as core
    assert module_of(nodeid) == module


def test_the_phases_of_a_test_are_summed_and_the_test_counted_once() -> None:
    # given setup, call and teardown reports of three tests in two modules
    durations = [
        ("tests/functional/pay/test_load.py::test_a", 0.5),
        ("tests/functional/pay/test_load.py::test_a", 100.0),
        ("tests/functional/pay/test_load.py::test_a", 0.25),
        ("tests/functional/web/test_browser.py::test_b", 2.0),
        ("tests/unit/core/test_pool.py::test_c", 1.0),
        ("tests/unit/core/test_pool.py::test_c", 3.0),
    ]
    # when they are summed
    rows = module_times(durations, budget=100.0)
    # then each module has its tests and seconds, and only Pay is over its budget
    assert rows == [
        ModuleTime(module="core", tests=2, seconds=6.0, budget=100.0),
        ModuleTime(module="pay", tests=1, seconds=100.75, budget=100.0),
    ]
    assert [row.over_budget for row in rows] == [False, True]


def test_a_module_over_budget_gets_a_warning_that_says_the_run_does_not_fail() -> None:
    # given one module within its budget and one over it
    rows = [
        ModuleTime(module="core", tests=10, seconds=179.9, budget=180.0),
        ModuleTime(module="pay", tests=4, seconds=180.1, budget=180.0),
    ]
    # when the table is formatted
    lines = format_table(rows)
    # then the rows, a total, and one warning for Pay alone
    assert lines[1].split() == ["core", "10", "179.9", "179.9", "180"]
    assert lines[2].split() == ["pay", "4", "180.1", "180.1", "180", "over", "budget"]
    assert lines[3].split() == ["total", "14", "360.0", "360.0"]
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 1
    assert "module pay is OVER BUDGET" in warnings[0]
    assert "does not fail" in warnings[0]


def test_the_budget_is_for_a_modules_share_of_the_run_over_its_workers() -> None:
    # given 300 worker seconds of Pay's tests over two workers, against a 180 s budget
    rows = module_times([("tests/functional/pay/test_a.py::t", 300.0)], budget=180.0, workers=2)
    # then its share of the run is 150 s: within the budget
    assert rows[0].share == 150.0
    assert not rows[0].over_budget
    assert format_table(rows)[1].split() == ["pay", "1", "300.0", "150.0", "180"]


def test_a_module_exactly_at_its_budget_is_within_it() -> None:
    # given a module that took exactly its budget, then it is not over it
    assert not ModuleTime(module="core", tests=1, seconds=180.0, budget=180.0).over_budget


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "tests/unit/core/test_a.py::t",
                    "tests/unit/pay/test_b.py::t",
                    "tests/functional/web/test_c.py::t",
                    "tests/functional/cli/test_d.py::t",
                    "tests/functional/pay/test_e.py::t",
                ]
            ),
            st.floats(min_value=0, max_value=1000, allow_nan=False),
        )
    )
)
def test_the_rows_add_up_to_every_duration_and_every_test(
    durations: list[tuple[str, float]],
) -> None:
    # given any reports, when they are summed by module
    rows = module_times(durations)
    # then no second and no test is lost or counted twice
    assert sum(row.seconds for row in rows) == pytest.approx(sum(d for _, d in durations))
    assert sum(row.tests for row in rows) == len({nodeid for nodeid, _ in durations})
    assert {row.module for row in rows} <= {"core", "pay"}
