"""Excel workbooks written as a stream: one sheet, a header row, and rows of any length.

An ``.xlsx`` file is a ZIP archive of XML parts (ECMA-376, "Office Open XML"). This writer
produces the smallest set of parts Excel, LibreOffice and WPS open without complaint, one row
at a time, and hands the archive's bytes out as they are made: an export of a million rows
never sits in memory, and the first bytes reach the browser at once. ``zipfile`` writes to a
stream it cannot seek by giving each member a data descriptor after its data.

Cells are typed, so that a spreadsheet neither guesses nor runs anything:

* text is an inline string (``t="inlineStr"``): never a formula, and a customer account number
  such as ``000123`` keeps its leading zeros (a CSV cannot promise that);
* ``int`` and ``float`` are numbers; :class:`~decimal.Decimal` is a number shown with two
  decimals (yuan);
* :class:`~datetime.datetime` and :class:`~datetime.date` are Excel serial dates with a date
  format; a datetime must already be in the zone the reader expects (naive or aware, its wall
  clock is written);
* ``None`` is an empty cell; ``bool`` is TRUE/FALSE.

Characters XML 1.0 cannot carry (most C0 controls) are dropped from text.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from xml.sax.saxutils import escape

#: Excel's day zero (it counts 1900 as a leap year, so serials from March 1900 use this epoch).
_EPOCH = datetime(1899, 12, 30)  # noqa: DTZ001 - a wall-clock epoch, as Excel counts
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
#: Excel's limit on a cell's text.
MAX_CELL_TEXT = 32_767
#: Excel's limit on rows in a sheet (the header included).
MAX_ROWS = 1_048_576

# Styles: 0 default, 1 bold header, 2 two decimals, 3 date and time, 4 date.
_STYLES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">
<numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm:ss"/>\
<numFmt numFmtId="165" formatCode="yyyy-mm-dd"/></numFmts>
<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>\
<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>
<fills count="2"><fill><patternFill patternType="none"/></fill>\
<fill><patternFill patternType="gray125"/></fill></fills>
<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>
<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>
<cellXfs count="5"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>\
<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>\
<xf numFmtId="2" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>\
<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>\
<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>
<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>
</styleSheet>"""

_CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml" \
ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>
<Override PartName="/xl/worksheets/sheet1.xml" \
ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
<Override PartName="/xl/styles.xml" \
ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>
</Types>"""

_ROOT_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" \
Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" \
Target="xl/workbook.xml"/>
</Relationships>"""

_WORKBOOK_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" \
Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" \
Target="worksheets/sheet1.xml"/>
<Relationship Id="rId2" \
Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" \
Target="styles.xml"/>
</Relationships>"""

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class _Sink:
    """A write-only stream whose bytes are collected and taken out between rows."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


def _sheet_name(title: str) -> str:
    # Excel refuses []:*?/\ in a sheet's name and more than 31 characters.
    cleaned = re.sub(r"[\[\]:*?/\\]", " ", _INVALID_XML.sub("", title)).strip()
    return (cleaned or "Sheet1")[:31]


def _text(value: str) -> str:
    # A carriage return as a character reference: XML readers turn a literal one into a newline.
    return escape(_INVALID_XML.sub("", value)[:MAX_CELL_TEXT], {"\r": "&#13;"})


def _serial(moment: datetime) -> str:
    delta = moment.replace(tzinfo=None) - _EPOCH
    return repr(delta.days + delta.seconds / 86_400 + delta.microseconds / 86_400_000_000)


def _cell(value: object, *, style: int = 0) -> str:
    if value is None:
        return "<c/>"
    if isinstance(value, bool):
        return f'<c t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int):
        return f"<c><v>{value}</v></c>"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "<c/>"
        return f"<c><v>{value!r}</v></c>"
    if isinstance(value, Decimal):
        return f'<c s="2"><v>{value}</v></c>'
    if isinstance(value, datetime):
        return f'<c s="3"><v>{_serial(value)}</v></c>'
    if isinstance(value, date):
        return f'<c s="4"><v>{(value - _EPOCH.date()).days}</v></c>'
    style_attr = f' s="{style}"' if style else ""
    return (
        f'<c t="inlineStr"{style_attr}><is><t xml:space="preserve">{_text(str(value))}</t></is></c>'
    )


def stream_workbook(
    rows: Iterable[Sequence[object]],
    *,
    header: Sequence[str],
    title: str = "Sheet1",
    batch: int = 500,
) -> Iterator[bytes]:
    """The bytes of a one-sheet workbook: ``header`` in bold, frozen at the top, then ``rows``.

    Rows past Excel's limit (:data:`MAX_ROWS`) are not written; the caller bounds its export
    or says so. Chunks are handed out every ``batch`` rows.
    """
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=5) as book:
        book.writestr("[Content_Types].xml", _CONTENT_TYPES)
        book.writestr("_rels/.rels", _ROOT_RELS)
        book.writestr(
            "xl/workbook.xml",
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
            f'<sheets><sheet name="{escape(_sheet_name(title), {chr(34): "&quot;"})}" '
            'sheetId="1" r:id="rId1"/></sheets></workbook>',
        )
        book.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        book.writestr("xl/styles.xml", _STYLES)
        yield sink.take()
        with book.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(
                b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                b'<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" '
                b'activePane="bottomLeft" state="frozen"/></sheetView></sheetViews><sheetData>'
            )
            head = "".join(_cell(name, style=1) for name in header)
            sheet.write(f"<row>{head}</row>".encode())
            written = 1
            pending: list[str] = []
            for row in rows:
                if written >= MAX_ROWS:
                    break
                pending.append("<row>" + "".join(_cell(value) for value in row) + "</row>")
                written += 1
                if len(pending) >= batch:
                    sheet.write("".join(pending).encode())
                    pending.clear()
                    yield sink.take()
            if pending:
                sheet.write("".join(pending).encode())
            sheet.write(b"</sheetData></worksheet>")
        yield sink.take()
    yield sink.take()
