"""Webhook signatures and retry timing: pure functions, no database."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from civicloud.pay.webhooks import MAX_DELAY, backoff_delay, sign_body, verify_signature

SECRET = "whsec-0123456789"
BODY = b'{"data":{"bill_number":"B1","amount_fen":12345},"id":"e1","type":"bill.paid"}'
NOW = 1_800_000_000


def test_our_signature_verifies() -> None:
    # given
    header = sign_body(SECRET, BODY, NOW)
    # when / then
    assert header.startswith(f"t={NOW},v1=")
    assert verify_signature(SECRET, header, BODY, now=NOW + 10)


@pytest.mark.parametrize(
    ("secret", "body"),
    [("another-secret", BODY), (SECRET, BODY.replace(b"12345", b"12346")), (SECRET, BODY + b" ")],
)
def test_a_changed_body_or_another_secret_is_refused(secret: str, body: bytes) -> None:
    # given
    header = sign_body(SECRET, BODY, NOW)
    # when / then
    assert not verify_signature(secret, header, body, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, 86_400])
def test_old_or_far_future_signatures_are_refused(skew: int) -> None:
    # given: a genuine signature, replayed (or sent by a clock far off)
    header = sign_body(SECRET, BODY, NOW)
    # when / then
    assert not verify_signature(SECRET, header, BODY, now=NOW + skew)
    assert verify_signature(SECRET, header, BODY, now=NOW + skew, tolerance=abs(skew))


def test_a_signature_moved_to_another_time_is_refused() -> None:
    # given: the t= of a genuine header changed to look fresh
    signature = sign_body(SECRET, BODY, NOW - 3600).split(",")[1]
    # when / then
    assert not verify_signature(SECRET, f"t={NOW},{signature}", BODY, now=NOW)


@pytest.mark.parametrize(
    "header", ["", "garbage", f"t={NOW}", "v1=abc", f"t=soon,v1={'0' * 64}", f"t={NOW},v1="]
)
def test_malformed_headers_are_refused(header: str) -> None:
    # given / when / then
    assert not verify_signature(SECRET, header, BODY, now=NOW)


def test_any_of_several_v1_values_may_match_during_a_secret_rotation() -> None:
    # given
    old = sign_body("old-secret", BODY, NOW).split(",")[1]
    new = sign_body(SECRET, BODY, NOW).split(",")[1]
    # when / then
    assert verify_signature(SECRET, f"t={NOW},{old},{new}", BODY, now=NOW)


class _Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("attempts", "ceiling"),
    [
        (1, timedelta(seconds=30)),
        (2, timedelta(seconds=60)),
        (5, timedelta(minutes=8)),
        (10, timedelta(minutes=256)),
        (11, MAX_DELAY),
        (200, MAX_DELAY),
    ],
)
def test_backoff_doubles_from_30_seconds_up_to_6_hours_with_jitter(
    attempts: int, ceiling: timedelta
) -> None:
    # given / when
    low = backoff_delay(attempts, rng=_Fixed(0.0))
    high = backoff_delay(attempts, rng=_Fixed(0.999_999))
    jittered = {backoff_delay(attempts) for _ in range(20)}
    # then: between half the ceiling and the ceiling, and spread out
    assert low == ceiling / 2
    assert ceiling / 2 < high <= ceiling
    assert all(ceiling / 2 <= delay <= ceiling for delay in jittered)
    assert len(jittered) > 1
