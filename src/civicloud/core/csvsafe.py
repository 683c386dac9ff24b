"""CSV files that people open in a spreadsheet: safe from formula injection, and read as UTF-8.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (and a tab
or a carriage return can hide one), so a payer's name such as ``=HYPERLINK("http://…","点此")``
in an export becomes a live link or worse (OWASP, "CSV Injection"). Every export meant for
people is written by :func:`write_csv`, which

* prefixes such a cell with a single quote (``'=HYPERLINK(…)``), so that it is shown as text;
  a cell that starts with a quote already gets one more, so that the prefix is never ambiguous
  and :func:`read_csv` gives back exactly what was written;
* leaves plain numbers (``-40.00``) alone: they are not formulas, and stay numbers;
* quotes every field and ends lines with CRLF (RFC 4180);
* starts the file with a UTF-8 byte order mark, without which Excel reads Chinese as mojibake.

Files in a format someone else fixed (a bank's batch file, a provider's statement) are not
altered this way: their writers refuse a dangerous value instead (:func:`is_dangerous`).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence

#: Characters that make a spreadsheet treat a cell as a formula, or hide one (OWASP's list, and
#: the full-width forms that some spreadsheets fold into them).
FORMULA_STARTS = frozenset("=+-@\t\r\n＝＋－＠")  # noqa: RUF001 - the full-width forms on purpose
#: The prefix that makes a spreadsheet show a cell as text.
TEXT_PREFIX = "'"
BOM = "\ufeff"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
#: Blanks (spaces of every width, but not the tab, CR and LF above) and format characters
#: (zero-width and direction marks) at the start of a cell.
_LEADING_INVISIBLE = re.compile(
    r"^[ \u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]+"
)


def is_dangerous(value: str) -> bool:
    """Whether a spreadsheet could run ``value`` as a formula (a plain number is harmless).

    Blanks and invisible format characters before the first visible one do not count: some
    spreadsheets skip them (``" =1+1"``, an ideographic space, a zero-width space) and run
    what follows.
    """
    visible = _LEADING_INVISIBLE.sub("", value)
    return bool(visible) and visible[0] in FORMULA_STARTS and not _NUMBER.fullmatch(visible)


def neutralise(value: object) -> str:
    """``value`` as the text of a cell a spreadsheet shows as it is, never runs."""
    text = "" if value is None else str(value)
    if is_dangerous(text) or text.startswith(TEXT_PREFIX):
        return TEXT_PREFIX + text
    return text


def restore(cell: str) -> str:
    """The value :func:`neutralise` wrote as ``cell``."""
    return cell.removeprefix(TEXT_PREFIX)


def write_csv(rows: Iterable[Sequence[object]], *, header: Sequence[str] | None = None) -> bytes:
    """A CSV file for people: a BOM, every field quoted and neutralised, CRLF line ends."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    if header is not None:
        writer.writerow([neutralise(name) for name in header])
    for row in rows:
        writer.writerow([neutralise(value) for value in row])
    return (BOM + out.getvalue()).encode("utf-8")


def read_csv(content: bytes) -> list[list[str]]:
    """The rows of a file :func:`write_csv` wrote, each cell as it was given."""
    text = content.decode("utf-8").removeprefix(BOM)
    return [[restore(cell) for cell in row] for row in csv.reader(io.StringIO(text, newline=""))]
