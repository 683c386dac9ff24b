"""Limits on failed sign-ins that stop the guesser, not the person whose account is guessed at.

Two limits, both sliding windows counted in this process (``core.ratelimit``):

- **per account and client address**: :data:`FAILURES_PER_ACCOUNT_AND_CLIENT` failures at one
  account from one address (an IPv6 client counts as its /64) within :data:`ACCOUNT_WINDOW`
  refuse further attempts at that account *from that address* until the oldest failure ages
  out. The right password from any other address still signs in at once: a guesser cannot lock
  the account's owner (or the administrator) out.
- **per client address over all accounts**: ``CIVICLOUD_AUTH__FAILED_SIGN_INS_PER_CLIENT``
  failures in :data:`CLIENT_WINDOW` refuse every attempt from that address (password spraying).

An account itself is never locked by failures: its ``failed_logins`` only counts them, over
every address, for the record (see :func:`civicloud.core.identity.authenticate_password`).
Every attempt is counted before its password is checked and taken back if it succeeds, so that
attempts sent at once cannot all slip under a limit while their passwords are being checked.
Usernames are counted as typed (lower case), known or not, so a refusal tells nothing about
whether an account exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from civicloud.core.errors import Throttled
from civicloud.core.ratelimit import RateLimiter

#: Failures at one account from one client address before that address must wait.
FAILURES_PER_ACCOUNT_AND_CLIENT = 5
#: The window those failures are counted over (and so the longest wait).
ACCOUNT_WINDOW = timedelta(minutes=15)
#: The window failures from one address over all accounts are counted over.
CLIENT_WINDOW = timedelta(minutes=10)


class SignInThrottled(Throttled):
    """Too many failed sign-ins from this address (``scope`` ``client``), or from this address
    at this account (``scope`` ``account``); ``retry_after`` says how many seconds to wait."""

    code = "core.sign_in_throttled"

    @property
    def scope(self) -> str:
        """``"client"`` or ``"account"``: which limit refused the attempt."""
        return str(self.extra.get("scope", "client"))

    @property
    def retry_after(self) -> int:
        """Seconds to wait before the next attempt can be admitted."""
        return int(self.extra.get("retry_after", 1))


@dataclass(frozen=True)
class SignInAttempt:
    """An admitted attempt: what to take back if its password turns out right."""

    client: str
    account: str


class SignInGuard:
    """Admits or refuses sign-in attempts by client address and by (account, address)."""

    def __init__(
        self,
        *,
        per_client: int,
        per_account_and_client: int = FAILURES_PER_ACCOUNT_AND_CLIENT,
        client_window: timedelta = CLIENT_WINDOW,
        account_window: timedelta = ACCOUNT_WINDOW,
    ) -> None:
        self.per_client = RateLimiter(
            per_client,
            window=client_window.total_seconds(),
            error=SignInThrottled,
            message="too many failed sign-ins from this address",
        )
        self.per_account = RateLimiter(
            per_account_and_client,
            window=account_window.total_seconds(),
            error=SignInThrottled,
            message="too many failed sign-ins at this account from this address",
        )

    def admit(self, *, username: str, client: str) -> SignInAttempt:
        """Count an attempt at ``username`` from ``client`` up front; raise
        :class:`SignInThrottled` (nothing counted) when either limit is reached."""
        account = f"{username.strip().lower()[:64]}\n{client}"
        try:
            self.per_client.hit(client)
        except SignInThrottled as exc:
            exc.extra["scope"] = "client"
            raise
        try:
            self.per_account.hit(account)
        except SignInThrottled as exc:
            self.per_client.release(client)  # nothing was tried: the address's count stays
            exc.extra["scope"] = "account"
            raise
        return SignInAttempt(client=client, account=account)

    def succeeded(self, attempt: SignInAttempt) -> None:
        """The attempt's password was right: it is no failure, take it back from both counts."""
        self.per_client.release(attempt.client)
        self.per_account.release(attempt.account)
