"""Short-lived, per-database, in-process caches of data that is read far more than it changes.

Each cache is a thread-safe LRU whose entries live ``ttl`` seconds. A unit of work that changes
what a cache holds calls :func:`invalidate_on_commit`; when its transaction commits, that cache is
cleared for the whole process, so this process sees its own changes at once. Other processes
(more workers, more machines) see them within ``ttl`` seconds (``CIVICLOUD_CACHE_SECONDS``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: ``Session.info`` key under which a session finds its database's caches.
CACHES_KEY = "civicloud.caches"
_STALE_KEY = "civicloud.stale_caches"


class TTLCache(Generic[K, V]):
    """A thread-safe LRU whose entries expire ``ttl`` seconds after they were stored."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The fresh value stored under ``key``, or ``None``."""
        if self.ttl <= 0:
            return None
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if time.monotonic() - found[0] > self.ttl:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return found[1]

    def put(self, key: K, value: V) -> None:
        """Store ``value`` under ``key`` (a no-op when caching is off)."""
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (time.monotonic(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        """Forget ``key``."""
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()


class CacheSet:
    """The named caches of one database."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._caches: dict[str, TTLCache[Any, Any]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> TTLCache[Any, Any]:
        """The cache called ``name`` (made on first use)."""
        with self._lock:
            cache = self._caches.get(name)
            if cache is None:
                cache = self._caches[name] = TTLCache(self.ttl)
            return cache

    def clear(self, name: str) -> None:
        """Empty the cache called ``name``."""
        self.get(name).clear()


def caches_of(session: Session) -> CacheSet | None:
    """The caches of the database ``session`` belongs to (``None`` for a foreign session)."""
    found: CacheSet | None = session.info.get(CACHES_KEY)
    return found


def invalidate_on_commit(session: Session, name: str) -> None:
    """Empty the cache ``name`` once ``session``'s transaction commits."""
    session.info.setdefault(_STALE_KEY, set()).add(name)


@event.listens_for(Session, "after_commit")
def _clear_after_commit(session: Session) -> None:
    stale: set[str] = session.info.pop(_STALE_KEY, set())
    caches = caches_of(session)
    if caches is not None:
        for name in stale:
            caches.clear(name)


@event.listens_for(Session, "after_rollback")
def _keep_after_rollback(session: Session) -> None:
    # Nothing changed; an enclosing transaction that commits later re-marks what it changes.
    session.info.pop(_STALE_KEY, None)
