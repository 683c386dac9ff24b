"""A per-client sliding-window limit, for what anonymous clients can repeat: look-ups, sign-ins.

In-process: each server process counts its own clients (behind a load balancer, the limit is
per process). Framework-free; the web layer decides what a client is (its address).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import defaultdict, deque

from civicloud.core.errors import Throttled


def client_key(address: str | None) -> str:
    """What a client is counted as: its IPv4 address, or its IPv6 address's /64 network (one
    subscriber or host usually holds a whole /64, and could otherwise take a fresh address for
    every attempt)."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds for each client key.

    ``hit`` counts an event and refuses one past the limit. A limit on failures counts each
    attempt up front with ``hit`` and takes it back with ``release`` when it succeeds, so that
    attempts made at once cannot pass the limit together. A refusal is ``error``
    (a :class:`Throttled`) saying ``message`` and how many seconds to wait (``retry_after``):
    its template is ``"%(limit_label)s; try again in %(seconds)s seconds"``, so ``message`` is
    itself a msgid of the catalogs, translated with it.
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
        now = time.monotonic()
        with self._lock:
            if len(self._events) > self.max_clients:
                self._forget_idle(now)
            events = self._events[client]
            while events and now - events[0] > self.window:
                events.popleft()
            if len(events) >= self.limit:
                wait = int(self.window - (now - events[0])) + 1
                raise self.error(
                    "%(limit_label)s; try again in %(seconds)s seconds",
                    params={"limit_label": self.message, "seconds": wait},
                    retry_after=wait,
                )
            events.append(now)

    def release(self, client: str) -> None:
        """Take back ``client``'s newest event (an attempt counted up front that succeeded)."""
        with self._lock:
            events = self._events.get(client)
            if events:
                events.pop()

    def _forget_idle(self, now: float) -> None:
        idle = [k for k, v in self._events.items() if not v or now - v[-1] > self.window]
        for key in idle:
            del self._events[key]
