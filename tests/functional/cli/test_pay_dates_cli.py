"""``civicloud pay settle --date``: a date out of range or malformed is one line and exit 2."""

from __future__ import annotations

import uuid

import pytest
from tests.functional.cli.conftest import Run


@pytest.mark.parametrize(
    ("day", "said"),
    [
        ("0001-01-01", "between 2000-01-01 and 2100-12-31, not 0001-01-01"),
        ("9999-12-31", "between 2000-01-01 and 2100-12-31, not 9999-12-31"),
        ("2026-13-01", "YYYY-MM-DD"),
        ("yesterday", "YYYY-MM-DD"),
    ],
)
def test_a_bad_settlement_date_is_one_line_and_exit_2(civicloud: Run, day: str, said: str) -> None:
    result = civicloud("pay", "settle", str(uuid.uuid4()), "--date", day)
    assert result.code == 2, result
    assert said in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert "Traceback" not in result.err + result.out
