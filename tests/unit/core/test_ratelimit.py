"""The per-client sliding-window limit behind look-ups and sign-ins."""

from __future__ import annotations

import pytest

from civicloud.core import ratelimit
from civicloud.core.errors import Throttled
from civicloud.core.ratelimit import RateLimiter, client_key
from civicloud.pay.errors import LookupThrottled


class Clock:
    """``time.monotonic`` that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(ratelimit.time, "monotonic", clock)
    return clock


def test_events_past_the_limit_are_refused_per_client_until_the_window_passes(
    clock: Clock,
) -> None:
    # given a limit of 3 a minute, used up by one client
    limiter = RateLimiter(limit=3, window=60, error=LookupThrottled, message="too many look-ups")
    for _ in range(3):
        limiter.hit("10.0.0.1")
    # when it asks again 20 s later, then it is refused with the wait, in the error asked for
    clock.now += 20
    with pytest.raises(LookupThrottled, match="too many look-ups") as throttled:
        limiter.hit("10.0.0.1")
    assert throttled.value.extra["retry_after"] == 41
    assert throttled.value.status == 429
    # and another client is not
    limiter.hit("10.0.0.2")
    # and once the first events are a window old, the client may go on
    clock.now += 41
    limiter.hit("10.0.0.1")


def test_a_limit_on_failures_counts_attempts_up_front_and_takes_successes_back(
    clock: Clock,
) -> None:
    # given a limit of 2 failures in 10 minutes
    limiter = RateLimiter(limit=2, window=600)
    # when successes come and go (each counted, then taken back), then they never add up
    for _ in range(5):
        limiter.hit("10.0.0.9")
        limiter.release("10.0.0.9")
    # and two failures (counted, kept) leave the third attempt refused before it is made
    limiter.hit("10.0.0.9")
    limiter.hit("10.0.0.9")
    with pytest.raises(Throttled) as throttled:
        limiter.hit("10.0.0.9")
    assert throttled.value.extra["retry_after"] == 601
    clock.now += 601
    limiter.hit("10.0.0.9")


@pytest.mark.parametrize(
    ("address", "counted_as"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("testclient", "testclient"),
        (None, "unknown"),
    ],
)
def test_a_client_is_its_ipv4_address_or_its_ipv6_network(
    address: str | None, counted_as: str
) -> None:
    # one IPv6 subscriber holds a /64: a fresh address per attempt must not be a fresh client
    assert client_key(address) == counted_as


def test_idle_clients_are_forgotten_when_there_are_too_many(clock: Clock) -> None:
    # given a limiter remembering at most 10 clients, and 11 that came a window ago
    limiter = RateLimiter(limit=1, window=60, max_clients=10)
    for number in range(11):
        limiter.hit(f"10.0.1.{number}")
    clock.now += 61
    # when one more comes, then the idle ones are forgotten (memory stays bounded)
    limiter.hit("10.0.2.1")
    assert limiter.clients == 1
