"""Charts drawn on the server as inline SVG: a time series, bars, and shares of a whole.

Pages run no script and load nothing from elsewhere, so a chart is markup: an ``<svg>`` whose
colours come from the stylesheet's ``chart-*`` classes and whose text takes the page's fonts,
followed by the same figures as a table in a ``<details>`` (for screen readers and for people
who would rather read numbers). Each function is pure: it takes labels already translated,
numbers, and a formatter of values (yuan, a percentage, a count), and returns
:class:`markupsafe.Markup`, with every label escaped. No data gives a plain sentence instead of
an empty frame.

The drawing is sized for a phone: the ``viewBox`` is about a phone's width, so that at 100 %
width the text is read at about its nominal size, and the stylesheet caps how wide a chart
grows on a wide screen. Text widths are estimated (a Chinese, Japanese or Korean glyph as a
full em, anything else as 0.6 em) to thin the axis labels of a series and to shorten long
category names with an ellipsis (their full text stays in the table and in a tooltip).

Templates reach the charts as globals (:func:`jinja_globals`, installed by the page renderer):
``chart_series(points, title=…, description=…, value=money, style="columns")``,
``chart_bars(items, …)`` and ``chart_shares(items, …)``, with the words a chart itself needs
("no data", the table's summary) in the page's language.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape

from civicloud.core.i18n import N_

__all__ = [
    "ChartWords",
    "Formatter",
    "bars",
    "count_text",
    "jinja_globals",
    "percent_text",
    "series",
    "shares",
    "text_width",
]

#: Turns a value into the text people read (``money``, :func:`percent_text`, :func:`count_text`).
Formatter = Callable[[Any], str]

#: The drawing's width in viewBox units: about a phone's, so text is read at its nominal size.
WIDTH = 360
FONT = 11
SMALL = 10
#: How many colours the stylesheet gives shares and bars (``chart-c0`` … ``chart-c5``).
COLOURS = 6
#: The most categories drawn; the rest are drawn as one "others" bar (the table lists all).
MOST_CATEGORIES = 12

NO_DATA = N_("No data for this period.")
FIGURES = N_("The figures")
OTHERS = N_("Others")
SHARE = N_("Share")


@dataclass(frozen=True)
class ChartWords:
    """The words a chart needs besides its own labels, in the reader's language."""

    no_data: str = "No data for this period."
    figures: str = "The figures"
    others: str = "Others"
    share: str = "Share"


def count_text(value: Any) -> str:
    """A count with thousands separators (``12,345``)."""
    return f"{_number(value):,.0f}"


def percent_text(value: Any) -> str:
    """A percentage with one decimal (``97.5%``)."""
    return f"{_number(value):.1f}%"


def text_width(text: str, size: float = FONT) -> float:
    """An estimate of ``text``'s width at font ``size``: wide glyphs (CJK) a full em, others 0.6."""
    return sum(
        size if unicodedata.east_asian_width(ch) in {"W", "F"} else 0.6 * size for ch in text
    )


def fit(text: str, width: float, size: float = FONT) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` at ``size`` (unchanged if it fits)."""
    if text_width(text, size) <= width:
        return text
    room = width - text_width("…", size)
    kept = ""
    for ch in text:
        if text_width(kept + ch, size) > room:
            break
        kept += ch
    return kept + "…" if kept else ""


def series(
    points: Sequence[tuple[str, Any]],
    *,
    title: str,
    description: str = "",
    value: Formatter = count_text,
    label_header: str = "",
    value_header: str = "",
    style: Literal["columns", "line"] = "columns",
    words: ChartWords | None = None,
    key: str = "",
) -> Markup:
    """A time series: one column (or a point of a line) per ``(label, value)``, in order, with
    a zero line, the highest (and lowest, if negative) value marked, and the labels thinned
    so that they do not overlap."""
    words = words or ChartWords()
    values = [_number(v) for _, v in points]
    if not points or not any(values):
        return _empty(words)
    ident = _ident(key) if key else _key("series", title, points)
    height, top, bottom = 180.0, 16.0, 22.0
    plot = height - top - bottom
    low, high = min(0.0, *values), max(0.0, *values)
    span = (high - low) or 1.0

    def y(v: float) -> float:
        return top + (high - v) / span * plot

    slot = WIDTH / len(points)
    parts: list[str] = []
    zero = y(0.0)
    # The marks of the scale: the highest value at the top, the lowest at the bottom if below 0
    # (formatted from the caller's own value, so that fen stay integers).
    raws = [raw for _, raw in points]
    for mark, raw_mark in (
        (high, raws[values.index(high)] if high else 0),
        (low, raws[values.index(low)] if low else 0),
    ):
        if mark == 0.0:
            continue
        at = y(mark)
        parts.append(_line(0, at, WIDTH, at, "chart-grid"))
        text_y = at - 3 if mark > 0 else at + SMALL + 1
        text = fit(value(raw_mark), WIDTH, SMALL)
        parts.append(_text(2, text_y, text, "chart-axis", SMALL))
    if style == "line":
        coordinates = [(slot * (i + 0.5), y(v)) for i, v in enumerate(values)]
        if len(coordinates) > 1:
            joined = " ".join(f"{_n(cx)},{_n(cy)}" for cx, cy in coordinates)
            parts.append(f'<polyline class="chart-line" points="{joined}"/>')
        for (cx, cy), (label, raw) in zip(coordinates, points, strict=True):
            parts.append(
                f'<circle class="chart-point" cx="{_n(cx)}" cy="{_n(cy)}" r="2.5">'
                f"<title>{escape(label)}: {escape(value(raw))}</title></circle>"
            )
    else:
        gap = min(2.0, slot * 0.2)
        for i, ((label, raw), v) in enumerate(zip(points, values, strict=True)):
            if v == 0.0:
                continue
            top_y, bottom_y = min(y(v), zero), max(y(v), zero)
            parts.append(
                f'<rect class="chart-bar{" chart-negative" if v < 0 else ""}" '
                f'x="{_n(slot * i + gap / 2)}" y="{_n(top_y)}" width="{_n(slot - gap)}" '
                f'height="{_n(max(bottom_y - top_y, 0.5))}">'
                f"<title>{escape(label)}: {escape(value(raw))}</title></rect>"
            )
    parts.append(_line(0, zero, WIDTH, zero, "chart-axis-line"))
    # Every step-th label, the step chosen so that the widest label fits with a gap; a label
    # kept inside the frame at either end is left out if it would then touch its neighbour.
    widest = max(text_width(label, SMALL) for label, _ in points)
    step = max(1, math.ceil((widest + 6) / slot))
    right_of_last = -math.inf
    for i in range(0, len(points), step):
        label = fit(points[i][0], WIDTH, SMALL)
        half = text_width(label, SMALL) / 2
        cx = min(max(slot * (i + 0.5), half), WIDTH - half)
        if cx - half < right_of_last + 4:
            continue
        right_of_last = cx + half
        parts.append(_text(cx, height - 6, label, "chart-axis", SMALL, anchor="middle"))
    table = _table(
        [(label, value(raw)) for label, raw in points], words, label_header, value_header
    )
    return _figure(ident, "series", height, title, description, parts, table)


def bars(
    items: Sequence[tuple[str, Any]],
    *,
    title: str,
    description: str = "",
    value: Formatter = count_text,
    label_header: str = "",
    value_header: str = "",
    words: ChartWords | None = None,
    key: str = "",
) -> Markup:
    """Bars for categories, one under another: each category's name (shortened to fit) and
    value on a line, its bar below, measured from a shared zero."""
    words = words or ChartWords()
    shown = _grouped(items, words)
    values = [v for _, _, v in shown]
    if not items or not any(values):
        return _empty(words)
    ident = _ident(key) if key else _key("bars", title, items)
    row = 34.0
    height = row * len(shown)
    low, high = min(0.0, *values), max(0.0, *values)
    span = (high - low) or 1.0
    zero_x = (-low) / span * WIDTH
    parts: list[str] = []
    for i, (label, raw, v) in enumerate(shown):
        base = row * i
        amount = fit(value(raw), WIDTH, FONT)
        room = WIDTH - text_width(amount, FONT) - 8
        parts.append(
            f'<g class="chart-row"><title>{escape(label)}: {escape(value(raw))}</title>'
            + _text(0, base + 12, fit(label, room, FONT), "chart-label", FONT)
            + _text(WIDTH, base + 12, amount, "chart-value", FONT, anchor="end")
        )
        end_x = zero_x + v / span * WIDTH
        left, right = min(zero_x, end_x), max(zero_x, end_x)
        if v != 0.0:
            parts.append(
                f'<rect class="chart-bar chart-c{i % COLOURS}{" chart-negative" if v < 0 else ""}"'
                f' x="{_n(left)}" y="{_n(base + 16)}" width="{_n(max(right - left, 1.0))}"'
                ' height="12" rx="2"/>'
            )
        parts.append("</g>")
    if low < 0:
        parts.append(_line(zero_x, 0, zero_x, height, "chart-axis-line"))
    table = _table([(label, value(raw)) for label, raw in items], words, label_header, value_header)
    return _figure(ident, "bars", height, title, description, parts, table)


def shares(
    items: Sequence[tuple[str, Any]],
    *,
    title: str,
    description: str = "",
    value: Formatter = count_text,
    label_header: str = "",
    value_header: str = "",
    words: ChartWords | None = None,
    key: str = "",
) -> Markup:
    """Shares of a whole: one stacked bar, then a legend naming each part with its percentage
    and value. Parts at or below zero are no share of anything: they are only in the table."""
    words = words or ChartWords()
    positive = [(label, raw, v) for label, raw, v in _grouped(items, words) if v > 0]
    total = sum(v for _, _, v in positive)
    if not positive or not math.isfinite(total) or total <= 0:
        return _empty(words)
    ident = _ident(key) if key else _key("shares", title, items)
    bar_height, row = 24.0, 20.0
    height = bar_height + 10 + row * len(positive)
    parts: list[str] = []
    x = 0.0
    for i, (label, _, v) in enumerate(positive):
        width = v / total * WIDTH
        parts.append(
            f'<rect class="chart-share chart-c{i % COLOURS}" x="{_n(x)}" y="0" '
            f'width="{_n(width)}" height="{_n(bar_height)}">'
            f"<title>{escape(label)}: {escape(percent_text(v / total * 100))}</title></rect>"
        )
        x += width
    for i, (label, raw, v) in enumerate(positive):
        base = bar_height + 10 + row * i
        figure = f"{percent_text(v / total * 100)} · {value(raw)}"
        figure = fit(figure, WIDTH - 20, FONT)
        room = WIDTH - 16 - text_width(figure, FONT) - 8
        parts.append(
            f'<g class="chart-row"><title>{escape(label)}: {escape(figure)}</title>'
            f'<rect class="chart-share chart-c{i % COLOURS}" x="0" y="{_n(base + 2)}" '
            'width="10" height="10" rx="2"/>'
            + _text(16, base + 11, fit(label, room, FONT), "chart-label", FONT)
            + _text(WIDTH, base + 11, figure, "chart-value", FONT, anchor="end")
            + "</g>"
        )
    whole = total
    rows = [
        (label, f"{value(raw)} ({percent_text(max(_number(raw), 0.0) / whole * 100)})")
        for label, raw in items
    ]
    header = f"{value_header} ({words.share})" if value_header else words.share
    table = _table(rows, words, label_header, header)
    return _figure(ident, "shares", height, title, description, parts, table)


def jinja_globals(translate: Callable[[str, str], str]) -> dict[str, Callable[..., Markup]]:
    """``chart_series``, ``chart_bars`` and ``chart_shares`` for templates, their own words
    (``translate(language, msgid)``) in the page's language (the context's ``lang``)."""

    def words_for(context: Context) -> ChartWords:
        language = str(context.get("lang", "en"))
        return ChartWords(
            no_data=translate(language, NO_DATA),
            figures=translate(language, FIGURES),
            others=translate(language, OTHERS),
            share=translate(language, SHARE),
        )

    def bind(draw: Callable[..., Markup]) -> Callable[..., Markup]:
        @pass_context
        def drawn(context: Context, data: Sequence[tuple[str, Any]], **options: Any) -> Markup:
            options.setdefault("words", words_for(context))
            return draw(data, **options)

        return drawn

    return {"chart_series": bind(series), "chart_bars": bind(bars), "chart_shares": bind(shares)}


# --- the pieces -------------------------------------------------------------------------------


def _number(value: Any) -> float:
    """A value as a finite float (what is not a finite number counts as nothing)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _n(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".") or "0"


def _ident(key: str) -> str:
    """A caller's key as an id: letters, digits, ``-`` and ``_`` only."""
    return "chart-" + "".join(ch for ch in key if ch.isascii() and (ch.isalnum() or ch in "-_"))


def _key(kind: str, title: str, data: Sequence[tuple[str, Any]]) -> str:
    digest = hashlib.sha256(repr((kind, title, list(data))).encode()).hexdigest()
    return f"chart-{digest[:10]}"


def _grouped(items: Sequence[tuple[str, Any]], words: ChartWords) -> list[tuple[str, Any, float]]:
    """Each item as ``(label, value, number)``; past :data:`MOST_CATEGORIES` the smallest are
    summed as one "others" item (their values added as the caller gave them: fen stay fen)."""
    numbers = [(label, raw, _number(raw)) for label, raw in items]
    if len(numbers) <= MOST_CATEGORIES:
        return numbers
    ranked = sorted(range(len(numbers)), key=lambda i: -abs(numbers[i][2]))
    kept = set(ranked[: MOST_CATEGORIES - 1])
    rest = [numbers[i] for i in range(len(numbers)) if i not in kept]
    try:
        rest_raw: Any = sum(raw for _, raw, _ in rest)
    except TypeError:
        rest_raw = sum(number for _, _, number in rest)
    return [numbers[i] for i in sorted(kept)] + [(words.others, rest_raw, _number(rest_raw))]


def _text(x: float, y: float, text: str, css: str, size: float, *, anchor: str = "start") -> str:
    return (
        f'<text class="{css}" x="{_n(x)}" y="{_n(y)}" font-size="{_n(size)}" '
        f'text-anchor="{anchor}">{escape(text)}</text>'
    )


def _line(x1: float, y1: float, x2: float, y2: float, css: str) -> str:
    return f'<line class="{css}" x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}"/>'


def _empty(words: ChartWords) -> Markup:
    return Markup('<p class="chart-empty">{}</p>').format(words.no_data)


def _table(
    rows: Sequence[tuple[str, str]], words: ChartWords, label_header: str, value_header: str
) -> str:
    head = (
        f'<thead><tr><th scope="col">{escape(label_header)}</th>'
        f'<th scope="col" class="chart-num">{escape(value_header)}</th></tr></thead>'
        if label_header or value_header
        else ""
    )
    body = "".join(
        f'<tr><th scope="row">{escape(label)}</th><td class="chart-num">{escape(text)}</td></tr>'
        for label, text in rows
    )
    return (
        f'<details class="chart-data"><summary>{escape(words.figures)}</summary>'
        f'<div class="table-wrap"><table>{head}<tbody>{body}</tbody></table></div></details>'
    )


def _figure(
    ident: str,
    kind: str,
    height: float,
    title: str,
    description: str,
    parts: Sequence[str],
    table: str,
) -> Markup:
    labelled = f"{ident}-title" + (f" {ident}-desc" if description else "")
    desc = f'<desc id="{ident}-desc">{escape(description)}</desc>' if description else ""
    # Every label above went through escape(); the rest is our own markup and numbers.
    return Markup(  # noqa: S704 - built of escaped labels and our own markup
        f'<figure class="chart chart-{kind}">'
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="{labelled}" '
        f'viewBox="0 0 {WIDTH} {_n(height)}" width="100%" preserveAspectRatio="xMidYMid meet">'
        f'<title id="{ident}-title">{escape(title)}</title>{desc}'
        + "".join(parts)
        + f"</svg>{table}</figure>"
    )
