"""Charts drawn on the server: well-formed SVG whatever the values, every label escaped, labels
that do not run into each other in Chinese or English, the figures as a table too, and a plain
sentence when there is nothing to draw."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2 import Environment

from civicloud.web import charts

SVG = "{http://www.w3.org/2000/svg}"
Draw = Callable[..., Any]
DRAWINGS: list[tuple[str, Draw]] = [
    ("series", charts.series),
    ("line", lambda data, **kw: charts.series(data, style="line", **kw)),
    ("bars", charts.bars),
    ("shares", charts.shares),
]

labels = st.text(
    alphabet=st.sampled_from(list("abcXYZ 0129<>&\"'大连市供水电费支付宝微信—…")),
    min_size=0,
    max_size=40,
)
values = st.one_of(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.sampled_from([0, -1, 1, 2**63 - 1, -(2**63)]),
)
data = st.lists(st.tuples(labels, values), min_size=0, max_size=40)


def parsed(markup: str) -> ET.Element:
    """The chart's markup as XML (it must be well-formed)."""
    return ET.fromstring(str(markup))  # noqa: S314 - our own markup, not untrusted input


def svg_of(figure: ET.Element) -> ET.Element:
    found = figure.find(f"{SVG}svg")
    assert found is not None
    return found


def table_rows(figure: ET.Element) -> list[tuple[str, str]]:
    rows = figure.findall(".//details/div/table/tbody/tr")
    return [("".join(r[0].itertext()), "".join(r[1].itertext())) for r in rows]


@pytest.mark.parametrize(("kind", "draw"), DRAWINGS, ids=[k for k, _ in DRAWINGS])
@given(points=data)
def test_any_values_give_well_formed_markup_or_the_no_data_sentence(
    kind: str, draw: Draw, points: list[tuple[str, int]]
) -> None:
    # when any labels and values are drawn
    markup = draw(points, title="标题 <b>", description="desc & more", value=charts.count_text)
    root = parsed(markup)
    drawable = any(v for _, v in points) and (kind != "shares" or any(v > 0 for _, v in points))
    if not drawable:
        # then with nothing to draw, a plain sentence and no frame
        assert root.tag == "p"
        assert root.text == charts.ChartWords().no_data
        return
    # then an image with a name and a description, and every figure in the table, in order
    svg = svg_of(root)
    assert svg.get("role") == "img"
    assert svg.get("width") == "100%"
    title = svg.find(f"{SVG}title")
    assert title is not None
    assert title.text == "标题 <b>"
    labelled = (svg.get("aria-labelledby") or "").split()
    assert labelled[0] == title.get("id")
    assert [label for label, _ in table_rows(root)] == [label for label, _ in points]
    # and nothing is drawn outside the frame's width
    width = float((svg.get("viewBox") or "").split()[2])
    for text in svg.iter(f"{SVG}text"):
        x = float(text.get("x") or 0)
        assert -0.01 <= x <= width + 0.01


@pytest.mark.parametrize(("kind", "draw"), DRAWINGS, ids=[k for k, _ in DRAWINGS])
def test_a_script_in_a_label_is_only_text(kind: str, draw: Draw) -> None:
    # given labels and a title that hold markup
    evil = '<script>alert("x")</script>'
    markup = str(
        draw(
            [(evil, 5), ("<img src=x onerror=alert(1)>", 3)],
            title=evil,
            description=evil,
            label_header=evil,
            value_header="&",
        )
    )
    # then none of it is markup: it is escaped, and reads back as the same text
    assert "<script" not in markup
    assert "<img" not in markup
    root = parsed(markup)
    assert evil in "".join(root.itertext())


@given(
    count=st.integers(min_value=1, max_value=96),
    label=st.sampled_from(["08:00", "11-26", "星期三", "2026年11月26日", "Wednesday 26 Nov"]),
)
def test_the_axis_labels_of_a_series_do_not_overlap(count: int, label: str) -> None:
    # given a series of many points whose labels are long, in Chinese or English
    points = [(f"{label}{i}", i + 1) for i in range(count)]
    svg = svg_of(parsed(charts.series(points, title="t")))
    # when its axis labels are laid out (the ones along the bottom)
    axis = [
        t
        for t in svg.iter(f"{SVG}text")
        if t.get("text-anchor") == "middle" and "chart-axis" in (t.get("class") or "")
    ]
    assert axis, "at least one label is shown"
    # then neighbours are at least half of each one's estimated width apart
    spans = sorted(
        (float(t.get("x") or 0), charts.text_width(t.text or "", charts.SMALL)) for t in axis
    )
    for (x1, w1), (x2, w2) in itertools.pairwise(spans):
        assert x2 - x1 >= (w1 + w2) / 2
    # and each lies whole inside the frame
    for x, w in spans:
        assert x - w / 2 >= -0.01
        assert x + w / 2 <= charts.WIDTH + 0.01


@given(
    names=st.lists(
        st.sampled_from(
            ["大连市公安局交通警察支队违法罚款缴纳", "Dalian Water Supply Company", "电"]
        ),
        min_size=1,
        max_size=10,
    ),
    amount=st.integers(min_value=1, max_value=10**15),
)
def test_a_bar_s_name_is_shortened_to_leave_room_for_its_value(
    names: list[str], amount: int
) -> None:
    # given categories with long names and large values in yuan
    items = [(name, amount * (i + 1)) for i, name in enumerate(names)]
    figure = parsed(charts.bars(items, title="t", value=lambda fen: f"¥{fen / 100:,.2f}"))
    svg = svg_of(figure)
    # then on each line the name and the value fit the width together
    for row in svg.iter(f"{SVG}g"):
        label, amount_text = row.findall(f"{SVG}text")
        used = charts.text_width(label.text or "", charts.FONT) + charts.text_width(
            amount_text.text or "", charts.FONT
        )
        assert used <= charts.WIDTH
    # and the table keeps every name whole
    assert [name for name, _ in table_rows(figure)] == names


def test_many_categories_draw_the_largest_and_one_for_the_others() -> None:
    # given 40 categories
    items = [(f"类别{i}", i + 1) for i in range(40)]
    figure = parsed(charts.bars(items, title="t", words=charts.ChartWords(others="其他")))
    rows = list(svg_of(figure).iter(f"{SVG}g"))
    # then the eleven largest are drawn, then the rest summed as "others"
    assert len(rows) == charts.MOST_CATEGORIES
    names = [row.findall(f"{SVG}text")[0].text for row in rows]
    assert names[-1] == "其他"
    assert names[:-1] == [f"类别{i}" for i in range(29, 40)]
    assert rows[-1].findall(f"{SVG}text")[1].text == charts.count_text(sum(range(1, 30)))
    # and the table lists all 40
    assert len(table_rows(figure)) == 40


def test_shares_give_each_part_its_percentage_and_leave_out_what_is_no_share() -> None:
    # given three providers' payments, one of which took none and one negative
    items = [("支付宝", 3), ("微信支付", 1), ("沙箱", 0), ("退款", -2)]
    figure = parsed(charts.shares(items, title="t"))
    svg = svg_of(figure)
    # then the bar and the legend show the two parts, as 75% and 25%
    legend = [row.findall(f"{SVG}text") for row in svg.iter(f"{SVG}g")]
    assert [(label.text, value.text) for label, value in legend] == [
        ("支付宝", "75.0% · 3"),
        ("微信支付", "25.0% · 1"),
    ]
    widths = [
        float(r.get("width") or 0)
        for r in svg.findall(f"{SVG}rect")
        if r.get("y") == "0"  # the stacked bar
    ]
    assert sum(widths) == pytest.approx(charts.WIDTH)
    # and the table still has all four
    assert [v for _, v in table_rows(figure)] == ["3 (75.0%)", "1 (25.0%)", "0 (0.0%)", "-2 (0.0%)"]


def test_negative_columns_hang_below_the_zero_line() -> None:
    # given a day whose second hour refunded more than it took
    svg = svg_of(parsed(charts.series([("00", 100), ("01", -50), ("02", 0)], title="t")))
    bars = svg.findall(f"{SVG}rect")
    # then two columns are drawn (nothing for zero), the negative one below the line
    assert len(bars) == 2
    zero = next(
        float(line.get("y1") or 0)
        for line in svg.findall(f"{SVG}line")
        if line.get("class") == "chart-axis-line"
    )
    up, down = bars
    assert float(up.get("y") or 0) + float(up.get("height") or 0) == pytest.approx(zero)
    assert float(down.get("y") or 0) == pytest.approx(zero)
    assert "chart-negative" in (down.get("class") or "")


def test_chinese_glyphs_are_counted_wider_than_latin_ones() -> None:
    assert charts.text_width("大连", 10) == 20
    assert charts.text_width("ab", 10) == pytest.approx(12)
    assert charts.fit("大连市供水有限公司", 45, 10) == "大连市…"
    assert charts.fit("short", 100, 10) == "short"


def test_the_template_globals_speak_the_page_s_language() -> None:
    # given the globals installed with a translation that knows Chinese
    chinese = {charts.NO_DATA: "该时段没有数据。", charts.FIGURES: "查看数据"}

    def translate(language: str, message: str) -> str:
        return chinese.get(message, message) if language == "zh" else message

    env = Environment(autoescape=True)
    env.globals.update(charts.jinja_globals(translate))
    template = env.from_string("{{ chart_series(points, title=title) }}")
    # when a page in Chinese draws an empty chart, then it says so in Chinese
    assert "该时段没有数据。" in template.render(lang="zh", points=[], title="t")
    # and a page in English draws its figures under an English summary
    english = template.render(lang="en", points=[("08:00", 5)], title="<t>")
    assert "<summary>The figures</summary>" in english
    assert "&lt;t&gt;" in english
    # and a series of the caller's formatter shows its text
    money = env.from_string("{{ chart_bars(points, title='t', value=fmt) }}").render(
        lang="zh", points=[("水费", 12_345)], fmt=lambda fen: f"¥{fen // 100}.{fen % 100:02d}"
    )
    assert "¥123.45" in money
