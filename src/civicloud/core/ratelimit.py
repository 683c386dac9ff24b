"""A per-client sliding-window limit, for what anonymous clients can repeat: look-ups, sign-ins.

In-process: each server process counts its own clients (behind a load balancer, the limit is
per process). Framework-free; the web layer decides what a client is (its address).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

from civicloud.core.errors import Throttled


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds for each client key.

    ``hit`` counts an event and refuses one past the limit; ``check`` only refuses (for limits
    on failures, counted with ``record`` once an attempt has failed). A refusal is ``error``
    (a :class:`Throttled`) saying ``message`` and how many seconds to wait (``retry_after``).
    """

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        *,
        error: type[Throttled] = Throttled,
        message: str = "too many requests",
        max_clients: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self.error = error
        self.message = message
        self.max_clients = max_clients
        self._events: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    @property
    def clients(self) -> int:
        """How many clients it remembers (bounded by ``max_clients``, idle ones forgotten)."""
        with self._lock:
            return len(self._events)

    def hit(self, client: str) -> None:
        """Count one event of ``client``; raise past the limit (the refused one is not counted)."""
        self._admit(client, count=True)

    def check(self, client: str) -> None:
        """Raise if ``client`` is at the limit now; count nothing."""
        self._admit(client, count=False)

    def record(self, client: str) -> None:
        """Count one event of ``client`` (a failure, say), whatever the limit."""
        with self._lock:
            self._events[client].append(time.monotonic())

    def _admit(self, client: str, *, count: bool) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._events) > self.max_clients:
                self._forget_idle(now)
            events = self._events[client]
            while events and now - events[0] > self.window:
                events.popleft()
            if len(events) >= self.limit:
                wait = int(self.window - (now - events[0])) + 1
                raise self.error(f"{self.message}; try again in {wait} seconds", retry_after=wait)
            if count:
                events.append(now)

    def _forget_idle(self, now: float) -> None:
        idle = [k for k, v in self._events.items() if not v or now - v[-1] > self.window]
        for key in idle:
            del self._events[key]
