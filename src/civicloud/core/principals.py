"""The cache of resolved credentials (an API key or a session cookie → the ``Actor`` behind it).

Resolving a credential costs two or three queries (the key or session, the user, the grants with
their tenant paths); a busy API client would pay them on every request. The resolved principal is
therefore kept for a few seconds, keyed by a hash of the credential
(``civicloud.core.roles.authenticate_api_key`` and ``authenticate_session`` fill it).

Staleness is bounded both ways: any unit of work that changes who may do what (a role granted or
revoked, a key revoked, a user changed, a session ended, a tenant moved or deleted) calls
:func:`invalidate_principals`, and when that transaction commits, the cache is cleared (see
``core.caches``). Other processes see the change within ``cache_seconds``. Expiry of the
credential itself is checked on every hit.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from civicloud.core.actor import Actor
from civicloud.core.caches import TTLCache, invalidate_on_commit
from civicloud.core.db import Database, utcnow

Kind = Literal["api_key", "session"]
CACHE = "principals"
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
    """Resolved credentials of one database, keyed by a hash of the credential."""

    def __init__(self, cache: TTLCache[bytes, Principal]) -> None:
        self._cache = cache

    @staticmethod
    def _key(kind: Kind, token: str) -> bytes:
        return hashlib.sha256(f"{kind}\n{token}".encode()).digest()

    def get(self, kind: Kind, token: str) -> Principal | None:
        """The cached principal for ``token`` if fresh and its credential unexpired."""
        principal = self._cache.get(self._key(kind, token))
        if principal is not None and principal.expires_at <= utcnow():
            self._cache.discard(self._key(kind, token))
            return None
        return principal

    def put(self, kind: Kind, token: str, principal: Principal) -> None:
        """Remember ``principal`` for ``token``."""
        self._cache.put(self._key(kind, token), principal)

    def clear(self) -> None:
        """Forget every principal."""
        self._cache.clear()


def principal_cache(database: Database) -> PrincipalCache:
    """The principal cache of ``database``."""
    return PrincipalCache(database.caches.get(CACHE))


def invalidate_principals(session: Session) -> None:
    """Forget every resolved credential once ``session``'s transaction commits."""
    invalidate_on_commit(session, CACHE)


def note_touched(cache: PrincipalCache, token: str, principal: Principal) -> None:
    """Record in the cache that the key behind ``token`` was just marked as used."""
    cache.put("api_key", token, replace(principal, last_used_at=utcnow()))


__all__ = [
    "TOUCH_EVERY",
    "Principal",
    "PrincipalCache",
    "invalidate_principals",
    "note_touched",
    "principal_cache",
]
