"""CSV exports for people are formula-safe and read back exactly; yuan typed by people is parsed
strictly; errors carry their template and parameters and speak in yuan."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicloud.core import csvsafe
from civicloud.core.errors import Conflict, format_message
from civicloud.core.money import InvalidAmount, format_yuan, parse_yuan

cells = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
#: What some spreadsheets skip before a formula: blanks of every width, zero-width characters.
invisible = st.text(st.sampled_from([" ", "\u00a0", "\u3000", "\u200b", "\u200e", "\ufeff"]))
dangerous = st.sampled_from(sorted(csvsafe.FORMULA_STARTS | {"'"})).flatmap(
    lambda start: st.tuples(invisible, cells).map(lambda parts: parts[0] + start + parts[1])
)
tables = st.lists(st.lists(cells | dangerous, min_size=1, max_size=6), max_size=8)


def raw_cells(content: bytes) -> list[list[str]]:
    """The cells as a spreadsheet sees them (no prefix removed)."""
    text = content.decode("utf-8")
    assert text.startswith(csvsafe.BOM)
    return list(csv.reader(io.StringIO(text.removeprefix(csvsafe.BOM), newline="")))


@given(tables)
def test_no_exported_cell_starts_like_a_formula(rows: list[list[str]]) -> None:
    # when any text is exported, then no cell a spreadsheet reads starts with a formula character
    for row in raw_cells(csvsafe.write_csv(rows)):
        for cell in row:
            assert not csvsafe.is_dangerous(cell), cell


@given(tables)
def test_reading_an_export_back_gives_the_original_text(rows: list[list[str]]) -> None:
    # when any text is exported and read back, then it is exactly what was written
    assert csvsafe.read_csv(csvsafe.write_csv(rows)) == [r for r in rows if r != []]


def test_an_export_is_quoted_has_a_bom_and_keeps_numbers_and_chinese() -> None:
    # given a payer's name that is a formula, a negative amount and Chinese
    content = csvsafe.write_csv(
        [
            ['=HYPERLINK("http://evil.example","点此")', "-40.00", "张三"],
            ["@SUM(A1)", "+1", "\t=1"],
        ],
        header=["name", "amount", "payer"],
    )
    # then the file opens in Excel as UTF-8, quoted, with the formulas shown as text
    assert content.startswith("\ufeff".encode())
    lines = content.decode("utf-8").removeprefix("\ufeff").split("\r\n")
    assert lines[0] == '"name","amount","payer"'
    assert lines[1] == '"\'=HYPERLINK(""http://evil.example"",""点此"")","-40.00","张三"'
    assert lines[2] == '"\'@SUM(A1)","\'+1","\'\t=1"'


@pytest.mark.parametrize(
    ("text", "fen"),
    [("1000", 100_000), ("1,000", 100_000), ("1000.5", 100_050), ("¥1,000.50", 100_050),
     ("\uff11\uff10\uff10\uff10\uff0e\uff15\uff10", 100_050),
     ("\uffe5\uff11\uff0c\uff12\uff13\uff14", 123_400), (" 12.5元 ", 1_250), ("CNY 0.01", 1),
     ("1,234,567.89", 123_456_789)],
)  # fmt: skip
def test_amounts_people_type_are_read_exactly(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize(
    ("text", "reason"),
    [("52,31", "more than one way"), ("1.000,50", "more than one way"), ("1,00", "more than one way"),
     ("12,3456", "more than one way"), ("1.005", "two decimals"), ("0", "more than zero"),
     ("-5", "more than zero"), ("", "enter an amount"), ("abc", "enter an amount"),
     ("1e3", "enter an amount"), ("99999999999", "larger")],
)  # fmt: skip
def test_ambiguous_or_bad_amounts_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidAmount, match=reason):
        parse_yuan(text)


def test_an_errors_amounts_are_parameters_in_fen_and_its_text_speaks_yuan() -> None:
    # given an error raised with amounts in fen
    error = Conflict(
        "%(asked)s is more than the %(refundable)s that can still be refunded",
        params={"asked_fen": 100_000, "refundable_fen": 48_599},
    )
    # then its English detail is in yuan, and the parameters stay fen for programs
    assert error.detail == "CNY 1,000.00 is more than the CNY 485.99 that can still be refunded"
    assert error.params == {"asked_fen": 100_000, "refundable_fen": 48_599}
    assert format_yuan(48_599, "zh") == "¥485.99"
    # and a template that lost a placeholder in translation is shown rather than failing
    assert format_message("%(nope)s", {"asked_fen": 1}) == "%(nope)s"


@pytest.mark.parametrize(
    "cell",
    [" =1+1", "\u3000=1+1", "\u200b=1+1", "\u00a0@SUM(1)", " \u200e+1+1", "\ufeff-1+1"],
)
def test_a_formula_behind_blanks_or_invisible_characters_is_still_a_formula(cell: str) -> None:
    # given a cell whose formula hides behind what a spreadsheet skips
    # then it is dangerous, and an export shows it as text
    assert csvsafe.is_dangerous(cell)
    (exported,) = raw_cells(csvsafe.write_csv([[cell]]))
    assert exported == [csvsafe.TEXT_PREFIX + cell]
    assert csvsafe.read_csv(csvsafe.write_csv([[cell]])) == [[cell]]


@pytest.mark.parametrize("cell", [" -40.00", "大连市供水有限公司", "  ", "", "a=b"])
def test_numbers_and_plain_text_stay_as_they_are(cell: str) -> None:
    assert not csvsafe.is_dangerous(cell)
