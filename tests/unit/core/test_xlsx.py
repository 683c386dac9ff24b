"""Streamed Excel workbooks read back, cell for cell, by a spreadsheet library."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime
from decimal import Decimal

import openpyxl
from hypothesis import given, settings
from hypothesis import strategies as st

from civicloud.core.xlsx import _INVALID_XML, stream_workbook

CELLS = st.one_of(
    st.none(),
    st.text(max_size=60),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.decimals(min_value=-(10**12), max_value=10**12, places=2, allow_nan=False),
    st.datetimes(min_value=datetime(1901, 1, 1), max_value=datetime(2100, 12, 31)),  # noqa: DTZ001 - wall clocks
    st.dates(min_value=date(1901, 1, 1), max_value=date(2100, 12, 31)),
)


def read(content: bytes) -> list[tuple[object, ...]]:
    book = openpyxl.load_workbook(io.BytesIO(content))
    sheet = book.active
    assert sheet is not None
    return list(sheet.iter_rows(values_only=True))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(CELLS, min_size=3, max_size=3), max_size=30))
def test_every_cell_reads_back_as_written(rows: list[list[object]]) -> None:
    content = b"".join(stream_workbook(rows, header=["甲", "b", "c"], title="缴费 / 2026", batch=7))
    found = read(content)
    assert found[0] == ("甲", "b", "c")
    assert len(found) == len(rows) + 1
    for written, got in zip(rows, found[1:], strict=True):
        for value, cell in zip(written, got, strict=True):
            if isinstance(value, str):
                expected = _INVALID_XML.sub("", value)
                assert cell == expected or (not expected and cell is None)
            elif isinstance(value, Decimal):
                assert cell is not None
                assert abs(Decimal(str(cell)) - value) < Decimal("0.01")
            elif isinstance(value, datetime):
                assert isinstance(cell, datetime)
                assert abs((cell - value).total_seconds()) < 0.002
            elif isinstance(value, date):
                assert isinstance(cell, datetime)
                assert cell.date() == value
            else:
                assert cell == value


def test_text_that_looks_like_a_formula_or_a_number_stays_text() -> None:
    rows = [['=HYPERLINK("http://x","点此")', "000123", "+86 138"]]
    found = read(b"".join(stream_workbook(rows, header=["a", "b", "c"])))
    assert found[1] == ('=HYPERLINK("http://x","点此")', "000123", "+86 138")
    book = openpyxl.load_workbook(
        io.BytesIO(b"".join(stream_workbook(rows, header=["a", "b", "c"])))
    )
    sheet = book.active
    assert sheet is not None
    assert sheet["A2"].data_type != "f"


def test_the_workbook_is_handed_out_in_pieces_as_rows_come() -> None:
    rows = ([f"row {n}", n] for n in range(5000))
    chunks = list(stream_workbook(rows, header=["name", "n"], batch=500))
    assert len(chunks) > 5
    content = b"".join(chunks)
    assert zipfile.ZipFile(io.BytesIO(content)).testzip() is None
    assert read(content)[-1] == ("row 4999", 4999)
