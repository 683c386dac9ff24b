"""The sign-in guard: failures stop the guessing address, per account and over all accounts."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicloud.core.identity.signin import (
    FAILURES_PER_ACCOUNT_AND_CLIENT,
    SignInGuard,
    SignInThrottled,
)


def test_failures_at_one_account_from_one_address_stop_that_address_only() -> None:
    # given an address that failed five times at the administrator's account
    guard = SignInGuard(per_client=30)
    for _ in range(FAILURES_PER_ACCOUNT_AND_CLIENT):
        guard.admit(username="admin", client="203.0.113.7")
    # when it tries once more, then it is refused, with a wait of at most the window
    with pytest.raises(SignInThrottled) as refused:
        guard.admit(username="Admin ", client="203.0.113.7")
    assert refused.value.scope == "account"
    assert refused.value.status == 429
    assert 0 < refused.value.retry_after <= 15 * 60
    # and the same account from another address, or another account from it, is admitted
    guard.admit(username="admin", client="198.51.100.9")
    guard.admit(username="li.wei", client="203.0.113.7")


def test_failures_over_many_accounts_stop_the_address() -> None:
    guard = SignInGuard(per_client=3)
    for username in ("a.one", "a.two", "a.three"):
        guard.admit(username=username, client="192.0.2.1")
    with pytest.raises(SignInThrottled) as refused:
        guard.admit(username="a.four", client="192.0.2.1")
    assert refused.value.scope == "client"
    guard.admit(username="a.four", client="192.0.2.2")


def test_an_attempt_that_succeeds_is_taken_back() -> None:
    # given four failures and then a success at one account from one address
    guard = SignInGuard(per_client=30)
    for _ in range(FAILURES_PER_ACCOUNT_AND_CLIENT - 1):
        guard.admit(username="li.wei", client="192.0.2.1")
    guard.succeeded(guard.admit(username="li.wei", client="192.0.2.1"))
    # then one more failure is still admitted: the success was no failure
    guard.admit(username="li.wei", client="192.0.2.1")
    with pytest.raises(SignInThrottled):
        guard.admit(username="li.wei", client="192.0.2.1")


def test_an_attempt_refused_per_account_does_not_count_against_the_address() -> None:
    guard = SignInGuard(per_client=FAILURES_PER_ACCOUNT_AND_CLIENT + 1)
    for _ in range(FAILURES_PER_ACCOUNT_AND_CLIENT):
        guard.admit(username="admin", client="192.0.2.1")
    for _ in range(10):
        with pytest.raises(SignInThrottled):
            guard.admit(username="admin", client="192.0.2.1")
    # the address has room for exactly one more failure, at another account
    guard.admit(username="li.wei", client="192.0.2.1")
    with pytest.raises(SignInThrottled) as refused:
        guard.admit(username="wang.fang", client="192.0.2.1")
    assert refused.value.scope == "client"


@given(
    st.lists(
        st.tuples(st.sampled_from(["admin", "li.wei", "ADMIN"]), st.sampled_from("abc")),
        max_size=80,
    )
)
def test_no_sequence_of_failures_passes_either_limit(attempts: list[tuple[str, str]]) -> None:
    guard = SignInGuard(per_client=12)
    admitted: Counter[tuple[str, str]] = Counter()
    per_client: Counter[str] = Counter()
    for username, client in attempts:
        try:
            guard.admit(username=username, client=client)
        except SignInThrottled:
            continue
        admitted[username.lower(), client] += 1
        per_client[client] += 1
    assert all(n <= FAILURES_PER_ACCOUNT_AND_CLIENT for n in admitted.values())
    assert all(n <= 12 for n in per_client.values())
