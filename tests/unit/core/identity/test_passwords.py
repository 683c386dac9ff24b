"""Password policy and argon2id hashing."""

from __future__ import annotations

import pytest

from civicloud.core.config import AuthSettings
from civicloud.core.errors import InvalidInput
from civicloud.core.identity import Passwords

CHEAP = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords(CHEAP)


def test_a_hashed_password_verifies_and_a_wrong_one_does_not(passwords: Passwords) -> None:
    # given a stored hash
    stored = passwords.hash("correct horse battery")
    # then it is argon2id and only the right password matches it
    assert stored.startswith("$argon2id$")
    assert "correct horse battery" not in stored
    assert passwords.verify(stored, "correct horse battery")
    assert not passwords.verify(stored, "correct horse batterY")


def test_the_same_password_hashes_differently_each_time(passwords: Passwords) -> None:
    assert passwords.hash("correct horse battery") != passwords.hash("correct horse battery")


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short1!", "at least 10 characters"),
        ("aaaaaaaaaaaa", "too easy"),
        ("abababababab", "too easy"),
        ("            ", "too easy"),
    ],
)
def test_weak_passwords_are_refused(passwords: Passwords, password: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        passwords.hash(password)


def test_the_minimum_length_follows_the_settings() -> None:
    strict = Passwords(CHEAP.model_copy(update={"min_password_length": 16}))
    with pytest.raises(InvalidInput, match="at least 16"):
        strict.hash("fifteen chars!!")
    assert strict.verify(strict.hash("sixteen chars!!!"), "sixteen chars!!!")


def test_an_unknown_user_or_a_garbage_hash_never_verifies(passwords: Passwords) -> None:
    assert not passwords.verify(None, "civicloud-timing-equaliser")
    assert not passwords.verify("not-a-hash", "anything at all")


def test_hashes_made_with_weaker_parameters_need_rehashing(passwords: Passwords) -> None:
    weak = Passwords(CHEAP).hash("correct horse battery")
    stronger = Passwords(CHEAP.model_copy(update={"argon2_time_cost": 2}))
    assert stronger.needs_rehash(weak)
    assert not passwords.needs_rehash(weak)
