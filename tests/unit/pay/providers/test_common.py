"""Money as yuan strings, key loading, and the gateway HTTP helper the adapters share."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st
from tests.fakes.pay_gateways import RsaPair, loopback_urlopen

from civicloud.pay.errors import ProviderMisconfigured
from civicloud.pay.providers import fen_to_yuan, yuan_to_fen
from civicloud.pay.providers._common import http_exchange, load_rsa_private_key
from civicloud.pay.providers.alipay import top_level_members


@given(st.integers(min_value=1, max_value=10**14))
def test_fen_survive_the_trip_through_yuan(amount_fen: int) -> None:
    assert yuan_to_fen(fen_to_yuan(amount_fen)) == amount_fen


@pytest.mark.parametrize(
    ("text", "fen"),
    [("0.01", 1), ("12", 1200), ("12.3", 1230), ("12.34", 1234), ("100000000.00", 10**10)],
)
def test_yuan_amounts_are_read_exactly(text: str, fen: int) -> None:
    assert yuan_to_fen(text) == fen


@given(st.floats(allow_nan=True, allow_infinity=True).map(repr) | st.text(max_size=12))
def test_whatever_is_accepted_is_read_exactly(text: str) -> None:
    try:
        fen = yuan_to_fen(text)
    except ValueError:
        return
    assert Decimal(text) * 100 == fen
    assert text.isascii()


@pytest.mark.parametrize(
    "text", ["1e3", "0x10", "12.345", "-1", " 1", "1 ", "01.00", "1_000", "", ".5", "5."]
)
def test_malformed_yuan_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="yuan"):
        yuan_to_fen(text)


def test_signed_amounts_only_where_asked() -> None:
    assert yuan_to_fen("-10.00", signed=True) == -1000
    with pytest.raises(ValueError, match="yuan"):
        yuan_to_fen("-10.00")


@pytest.mark.parametrize("amount", [0, -1, True])
def test_only_positive_fen_are_written(amount: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        fen_to_yuan(amount)


def test_short_rsa_keys_are_refused(tmp_path: Path) -> None:
    short = RsaPair(rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505  (the point)
    (tmp_path / "short.pem").write_text(short.pkcs8_pem)
    with pytest.raises(ProviderMisconfigured, match="2048"):
        load_rsa_private_key(tmp_path / "short.pem", "test key")


def test_only_http_gateways_are_opened() -> None:
    with pytest.raises(ProviderMisconfigured, match="http"):
        http_exchange(
            loopback_urlopen,
            provider="test",
            method="GET",
            url="file:///etc/passwd",
            headers={},
            body=None,
            timeout=1,
        )


def test_json_members_keep_their_exact_text() -> None:
    text = '{ "a_response" : {"url":"https:\\/\\/x"} , "sign":"S" }'
    members = top_level_members(text)
    assert members["a_response"] == ('{"url":"https:\\/\\/x"}', {"url": "https://x"})
    assert members["sign"][1] == "S"


@pytest.mark.parametrize("text", ['{"a":1,"a":2}', '{"a":1} x', "[1]", '{"a" 1}', '{"a":1,}', ""])
def test_ambiguous_or_broken_json_is_refused(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (json and our checks raise plain ValueError)
        top_level_members(text)
