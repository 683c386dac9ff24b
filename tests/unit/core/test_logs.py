"""JSON log lines: one object a line, with the request id and the record's extras."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from civicloud.core.context import set_request_id
from civicloud.core.logs import JsonFormatter


def make_record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("civicloud.test", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


@pytest.fixture(autouse=True)
def _no_request_id() -> None:
    set_request_id(None)


def test_a_record_becomes_one_line_of_json_with_its_basics() -> None:
    # given a record with arguments
    record = make_record("tenant %s moved", "dalian")
    # when it is formatted
    line = JsonFormatter().format(record)
    # then it is a single JSON object with time, level, logger and the interpolated message
    assert "\n" not in line
    payload = json.loads(line)
    assert payload["level"] == "warning"
    assert payload["logger"] == "civicloud.test"
    assert payload["message"] == "tenant dalian moved"
    assert payload["time"].endswith("+00:00")
    assert "request_id" not in payload


def test_extras_are_kept_and_logging_internals_are_not() -> None:
    record = make_record("request", method="GET", status=200, color_message="\x1b[1mGET")
    payload = json.loads(JsonFormatter().format(record))
    assert payload["method"] == "GET"
    assert payload["status"] == 200
    assert "color_message" not in payload
    assert "args" not in payload
    assert "levelno" not in payload


def test_the_current_request_id_is_included() -> None:
    set_request_id("req-123")
    payload = json.loads(JsonFormatter().format(make_record("hello")))
    assert payload["request_id"] == "req-123"


def test_non_ascii_text_stays_readable_and_odd_values_become_strings() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd-value"

    payload_line = JsonFormatter().format(make_record("大连 %s", "供水", thing=Odd()))
    assert "大连 供水" in payload_line
    assert json.loads(payload_line)["thing"] == "odd-value"


def test_an_exception_is_formatted_into_the_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord(
            "civicloud.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    payload = json.loads(JsonFormatter().format(record))
    assert "RuntimeError: boom" in payload["exc"]
