"""The S3 port's header block reader: what clients send is read as ``http.client`` reads it,
and a block that is no header block is refused with the status that says why."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicloud.store.s3.server import MAX_HEADER_LINE, MAX_HEADERS, BadHeaders, read_headers


def read(block: bytes) -> list[tuple[str, str]]:
    return read_headers(io.BytesIO(block)).items()


def test_headers_are_read_in_order_up_to_the_empty_line() -> None:
    stream = io.BytesIO(
        b"Host: bucket.s3.example\r\nX-Amz-Date: 20261202T000000Z\r\n"
        b"x-amz-meta-a: 1\r\nX-Amz-Meta-A: 2\r\n\r\nBODY"
    )
    headers = read_headers(stream)
    assert headers.items() == [
        ("Host", "bucket.s3.example"),
        ("X-Amz-Date", "20261202T000000Z"),
        ("x-amz-meta-a", "1"),
        ("X-Amz-Meta-A", "2"),
    ]
    assert headers.get("HOST") == "bucket.s3.example"
    assert headers.get("x-amz-meta-a") == "1"
    assert headers.get("missing", "none") == "none"
    # The body is left where it starts.
    assert stream.read() == b"BODY"


def test_values_lose_surrounding_blanks_and_keep_inner_ones() -> None:
    assert read(b"Content-Type:  text/plain; charset=utf-8 \t\r\n\r\n") == [
        ("Content-Type", "text/plain; charset=utf-8")
    ]
    assert read(b"Empty:\r\n\r\n") == [("Empty", "")]
    assert read(b"Colons: a:b:c\r\n\r\n") == [("Colons", "a:b:c")]
    assert read(b"Tabbed: a\tb\r\n\r\n") == [("Tabbed", "a\tb")]


def test_bare_line_feeds_and_an_ended_stream_end_the_block() -> None:
    assert read(b"A: 1\nB: 2\n\n") == [("A", "1"), ("B", "2")]
    assert read(b"A: 1\r\n") == [("A", "1")]


@pytest.mark.parametrize(
    "block",
    [
        b"no colon here\r\n\r\n",
        b": no name\r\n\r\n",
        b"Space In: name\r\n\r\n",
        b"Host : spaced\r\n\r\n",
        b" folded first: line\r\n\r\n",
        # An obsolete folded line is refused (RFC 9112 allows it; joining smuggles headers).
        b"X-Long: part one\r\n   part two\r\n\r\n",
        b"X-Long: part one\r\n\tTransfer-Encoding: chunked\r\n\r\n",
        # Names are tokens; values hold no control character (a tab is fine).
        b"x-amz-meta-a\rset-cookie: 1\r\n\r\n",
        b"Na\x00me: 1\r\n\r\n",
        b"Bad(Name): 1\r\n\r\n",
        b"X-Value: a\x00b\r\n\r\n",
        b"X-Value: a\rb\r\n\r\n",
        b"X-Value: a\x7f\r\n\r\n",
    ],
)
def test_a_line_that_is_no_header_is_a_bad_request(block: bytes) -> None:
    with pytest.raises(BadHeaders) as raised:
        read(block)
    assert raised.value.status == 400


def test_too_many_headers_or_too_long_a_line_is_431() -> None:
    many = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n"
    with pytest.raises(BadHeaders) as raised:
        read(many)
    assert raised.value.status == 431
    assert len(read(b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS)) + b"\r\n")) == 100
    long = b"X-Long: " + b"a" * MAX_HEADER_LINE + b"\r\n\r\n"
    with pytest.raises(BadHeaders) as raised:
        read(long)
    assert raised.value.status == 431


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,40}", fullmatch=True),
            st.from_regex(r"[\x21-\x7e]([\x20-\x7e]{0,60}[\x21-\x7e])?", fullmatch=True),
        ),
        max_size=20,
    )
)
def test_any_well_formed_block_reads_back_as_written(pairs: list[tuple[str, str]]) -> None:
    block = b"".join(f"{n}: {v}\r\n".encode("latin-1") for n, v in pairs) + b"\r\n"
    assert read(block) == pairs
