"""What tenants and people type, checked where it is taken: patterns run by RE2 (linear time),
dates in one range, names and free text without characters that spoof a page, and account
numbers read the way people type them."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError

from civicloud.core.dates import MAX_DATE, MIN_DATE, BoundedDate, DateOutOfRange, parse_date
from civicloud.core.patterns import InvalidPattern, PatternText, compile_pattern
from civicloud.core.text import DisplayText, invisible_character, typed_forms

# --- patterns ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "what"),
    [
        (r"(\d)\1{9}", "a backreference"),
        (r"(?=\d{10})\d+", "a look-ahead"),
        (r"(?<!0)\d{10}", "a look-behind"),
        (r"(?P<a>\d)(?P=a)", "a named backreference"),
        (r"\d{10}\Z", "Python's \\Z"),
        (r"\d{1001}", "a repetition over 1000"),
        (r"[0-9", "a pattern that does not parse"),
    ],
)
def test_a_pattern_re2_cannot_run_in_linear_time_is_refused_when_it_is_set(
    pattern: str, what: str
) -> None:
    # given a pattern using what only a backtracking engine can run
    # when it is set, then it is refused with the reason
    with pytest.raises(InvalidPattern) as refused:
        compile_pattern(pattern)
    assert refused.value.status == 422
    assert "cannot be used" in refused.value.detail, what
    assert refused.value.params["reason"]


def test_patterns_are_bounded_in_length() -> None:
    with pytest.raises(InvalidPattern, match="longer than 200"):
        compile_pattern("a" * 201)
    with pytest.raises(InvalidPattern, match="empty"):
        compile_pattern("")
    assert compile_pattern("a" * 200).fullmatch("a" * 200)


def test_a_schema_field_of_patterns_refuses_what_re2_refuses() -> None:
    class Shape(BaseModel):
        pattern: PatternText

    assert Shape(pattern=r"辽B[A-Z0-9]{5}").pattern == r"辽B[A-Z0-9]{5}"
    with pytest.raises(ValidationError, match="cannot be used"):
        Shape(pattern=r"(a)\1")


@pytest.mark.timeout(10)
def test_the_pathological_pattern_answers_right_on_long_input() -> None:
    # given (a|a)*b, which a backtracking engine runs in time doubling with each "a"
    pattern = compile_pattern("(a|a)*b")
    # when it is matched against long input, then the answers are right (a backtracking
    # engine would not answer within the test's timeout at all)
    assert not pattern.fullmatch("a" * 100_000)
    assert pattern.fullmatch("a" * 100_000 + "b")
    assert not pattern.fullmatch("a" * 99_999 + "c")


def test_matching_is_whole_and_ascii_digits_only() -> None:
    pattern = compile_pattern(r"\d{4}")
    assert pattern.fullmatch("0411")
    assert not pattern.fullmatch("04110")  # full match, not a prefix
    assert not pattern.fullmatch("x0411")
    assert not pattern.fullmatch("\uff10\uff14\uff11\uff11")  # full-width digits are folded first
    assert not pattern.fullmatch("\u0660\u0664\u0661\u0661")  # Arabic-Indic digits are not \d


# --- dates ---------------------------------------------------------------------------------


class Dated(BaseModel):
    day: BoundedDate


@given(st.dates())
def test_a_date_outside_the_range_is_refused_and_one_inside_is_kept(day: date) -> None:
    if MIN_DATE <= day <= MAX_DATE:
        assert Dated(day=day).day == day
        assert parse_date(day.isoformat()) == day
    else:
        with pytest.raises(ValidationError, match="between 2000-01-01 and 2100-12-31"):
            Dated(day=day)
        with pytest.raises(DateOutOfRange, match="between 2000-01-01 and 2100-12-31"):
            parse_date(day.isoformat())


@pytest.mark.parametrize("text", ["", "2026-13-01", "26-11-2026", "tomorrow", "2026-02-30"])
def test_a_typed_date_that_is_no_date_says_how_to_write_one(text: str) -> None:
    with pytest.raises(DateOutOfRange, match="YYYY-MM-DD") as refused:
        parse_date(text)
    assert refused.value.status == 422
    assert refused.value.exit_code == 2


def test_the_range_is_shown_in_the_schema() -> None:
    schema = Dated.model_json_schema()["properties"]["day"]
    assert schema["format"] == "date"
    assert "2000-01-01" in schema["description"]
    assert "2100-12-31" in schema["description"]


# --- names and free text -------------------------------------------------------------------


class Named(BaseModel):
    name: DisplayText = Field(min_length=1, max_length=20)


@pytest.mark.parametrize(
    "spoof",
    [
        "\u202e",  # right-to-left override
        "\u202a",  # left-to-right embedding
        "\u2066",  # left-to-right isolate
        "\u2069",  # pop directional isolate
        "\u200f",  # right-to-left mark
        "\u061c",  # Arabic letter mark
        "\u200b",  # zero-width space
        "\u200c",  # zero-width non-joiner
        "\u200d",  # zero-width joiner
        "\u2060",  # word joiner
        "\ufeff",  # zero-width no-break space (BOM)
        "\u00ad",  # soft hyphen
        "\u3164",  # Hangul filler
        "\u2028",  # line separator
        "\n",
        "\x00",
        "\x85",  # next line (C1)
        "\U000e0041",  # tag latin capital letter A
    ],
)
def test_names_refuse_characters_that_spoof_what_a_page_shows(spoof: str) -> None:
    # given a name with an invisible or direction-changing character inside
    # when it is validated, then it is refused, naming the character
    with pytest.raises(ValidationError, match=f"U\\+{ord(spoof):04X}"):
        Named(name=f"大连{spoof}供水")


def test_names_keep_what_people_write_and_drop_surrounding_blanks() -> None:
    for name in ("大连市供水有限公司", "Li Wei", "Zoë O'Brien-Łukasz", "张\u3000伟", "李·娜"):
        assert Named(name=name).name == name
    assert Named(name="  王芳 ").name == "王芳"
    with pytest.raises(ValidationError):
        Named(name="   ")


@given(st.text(max_size=20))
def test_accepted_text_never_holds_an_invisible_character(text: str) -> None:
    try:
        name = Named(name=text).name
    except ValidationError:
        return
    assert invisible_character(name) is None


# --- identifiers as people type them -------------------------------------------------------


def test_typed_forms_fold_width_spaces_and_case_most_literal_first() -> None:
    assert typed_forms("0411000001") == ["0411000001"]
    full_width = " \uff10\uff14\uff11\uff11 \uff10\uff10\uff10\u3000\uff10\uff10\uff11 "
    assert typed_forms(full_width) == ["0411 000 001", "0411000001"]
    assert typed_forms("辽\uff42\uff11\uff12\uff13\uff14\uff15") == ["辽b12345", "辽B12345"]
    assert typed_forms("辽b 12345") == ["辽b 12345", "辽B 12345", "辽b12345", "辽B12345"]
    assert typed_forms("   ") == []
    assert typed_forms("\u3000") == []
    assert typed_forms("1" * 201) == []
