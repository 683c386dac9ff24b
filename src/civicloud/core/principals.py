"""The cache of resolved credentials (an API key or a session cookie → the ``Actor`` behind it).

Resolving a credential costs two or three queries (the key or session, the user, the grants with
their tenant paths); a busy API client would pay them on every request. The resolved principal is
therefore kept for a few seconds, keyed by a hash of the credential
(``civicloud.core.roles.authenticate_api_key`` and ``authenticate_session`` fill it).

Staleness is bounded both ways: any unit of work that changes who may do what (a role granted or
revoked, a key revoked, a user changed, a session ended, a tenant moved or deleted) calls
:func:`invalidate_principals`, and when that transaction commits, every cache in the process is
cleared. Other processes see the change within ``principal_cache_seconds``. Expiry of the
credential itself is checked on every hit.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import event
from sqlalchemy.orm import Session

from civicloud.core.actor import Actor
from civicloud.core.db import utcnow

Kind = Literal["api_key", "session"]
_CHANGED = "civicloud.principals_changed"
#: How stale ``api_key.last_used_at`` may get before a request refreshes it.
TOUCH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class Principal:
    """A resolved credential: the actor, when the credential expires, and (for keys) its use."""

    actor: Actor
    expires_at: datetime
    api_key_id: uuid.UUID | None = None
    last_used_at: datetime | None = None

    def needs_touch(self, now: datetime) -> bool:
        """Whether the key's ``last_used_at`` is stale enough to be written again."""
        return self.api_key_id is not None and (
            self.last_used_at is None or now - self.last_used_at > TOUCH_EVERY
        )


class PrincipalCache:
    """A small, thread-safe, time-bounded LRU of resolved credentials."""

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()
        _CACHES.add(self)

    @staticmethod
    def _key(kind: Kind, token: str) -> bytes:
        return hashlib.sha256(f"{kind}\n{token}".encode()).digest()

    def get(self, kind: Kind, token: str) -> Principal | None:
        """The cached principal for ``token`` if fresh and its credential unexpired."""
        if self.ttl <= 0:
            return None
        key = self._key(kind, token)
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            stored_at, principal = found
            if time.monotonic() - stored_at > self.ttl or principal.expires_at <= utcnow():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return principal

    def put(self, kind: Kind, token: str, principal: Principal) -> None:
        """Remember ``principal`` for ``token``."""
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[self._key(kind, token)] = (time.monotonic(), principal)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every principal."""
        with self._lock:
            self._entries.clear()


_CACHES: weakref.WeakSet[PrincipalCache] = weakref.WeakSet()


def invalidate_principals(session: Session) -> None:
    """Clear every principal cache of this process once ``session``'s transaction commits."""
    session.info[_CHANGED] = True


@event.listens_for(Session, "after_commit")
def _clear_after_commit(session: Session) -> None:
    if session.info.pop(_CHANGED, False):
        for cache in list(_CACHES):
            cache.clear()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_CHANGED, None)


def note_touched(cache: PrincipalCache, token: str, principal: Principal) -> None:
    """Record in the cache that the key behind ``token`` was just marked as used."""
    cache.put("api_key", token, replace(principal, last_used_at=utcnow()))


__all__ = ["TOUCH_EVERY", "Principal", "PrincipalCache", "invalidate_principals", "note_touched"]
