"""argon2id password hashing."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from civicloud.core.config import AuthSettings
from civicloud.core.errors import InvalidInput


class Passwords:
    """Hashes and checks passwords with argon2id at the configured cost."""

    def __init__(self, settings: AuthSettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        self.min_length = settings.min_password_length
        # Checked against when the user does not exist, so that the answer takes as long.
        self._dummy = self._hasher.hash("civicloud-timing-equaliser")

    def hash(self, password: str) -> str:
        """An argon2id hash of ``password``; raises ``InvalidInput`` for a weak one."""
        if len(password) < self.min_length:
            raise InvalidInput(
                "a password needs at least %(count)s characters",
                params={"count": self.min_length},
            )
        if password.strip() == "" or len(set(password)) < 4:
            raise InvalidInput("that password is too easy to guess")
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored`` (``None``: no such user, same cost)."""
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with weaker parameters than the current ones."""
        return self._hasher.check_needs_rehash(stored)
