"""Store's context: its blob backend, master keys, data-key cache and access log, built once per
process from the core's services (``Module.context`` of Store's declaration)."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloud.core.caches import TTLCache
from civicloud.core.db import Database
from civicloud.core.services import Services
from civicloud.store import crypto
from civicloud.store.accesslog import AccessLog
from civicloud.store.backends import BlobBackend, LocalBackend
from civicloud.store.models import DataKey
from civicloud.store.settings import StoreSettings


@dataclass(frozen=True)
class OpenKey:
    """A tenant's data key, unwrapped."""

    id: uuid.UUID
    cipher: str
    key: bytes


@dataclass
class StoreContext:
    """Store's long-lived services."""

    settings: StoreSettings
    backend: BlobBackend
    master: crypto.MasterKeys
    db: Database
    data_dir: Path
    log: AccessLog
    #: Unwrapped data keys by id (they never change once made; a rotation rewraps only).
    _keys: dict[uuid.UUID, OpenKey] = field(default_factory=dict, repr=False)
    _active: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: Resolved S3 credentials (see ``civicloud.store.keys``), kept a few seconds.
    credentials: TTLCache[str, object] = field(default_factory=lambda: TTLCache(5.0), repr=False)

    def data_key(self, session: Session, key_id: uuid.UUID) -> OpenKey:
        """The data key ``key_id``, unwrapped (cached)."""
        found = self._keys.get(key_id)
        if found is not None:
            return found
        row = session.get(DataKey, key_id)
        if row is None:
            from civicloud.store.errors import Corrupted

            raise Corrupted("a data key is missing", params={"key": str(key_id)})
        opened = OpenKey(
            row.id, row.cipher, self.master.unwrap(row.wrapped, context=row.tenant_id.bytes)
        )
        with self._lock:
            self._keys[key_id] = opened
        return opened

    def active_key(self, session: Session, tenant_id: uuid.UUID) -> OpenKey | None:
        """The tenant's active data key, unwrapped; ``None`` before its first bucket. A
        tenant's data key is made once and never replaced (a master-key rotation rewraps it,
        keeping its id), so the answer is kept."""
        key_id = self._active.get(tenant_id)
        if key_id is None:
            key_id = session.scalar(
                select(DataKey.id).where(DataKey.tenant_id == tenant_id, DataKey.active.is_(True))
            )
            if key_id is None:
                return None
            self._active[tenant_id] = key_id
        return self.data_key(session, key_id)

    def cached_active_key(self, tenant_id: uuid.UUID) -> OpenKey | None:
        """The tenant's active data key when both it and its id are kept already (no session
        needed); ``None`` otherwise."""
        key_id = self._active.get(tenant_id)
        return None if key_id is None else self._keys.get(key_id)

    def forget_keys(self) -> None:
        """Forget the unwrapped data keys (after a rotation)."""
        with self._lock:
            self._keys.clear()


def store_settings(services: Services) -> StoreSettings:
    """The installation's ``CIVICLOUD_STORE__*`` section (its defaults when Store is not
    listed)."""
    section = services.section("store")
    return section if isinstance(section, StoreSettings) else StoreSettings()


def build_backend(settings: StoreSettings, root: Path) -> BlobBackend:
    """The blob backend the settings choose."""
    if settings.backend == "upstream":
        from civicloud.store.upstream import UpstreamBackend

        return UpstreamBackend.from_settings(settings.upstream, spool_dir=root / "tmp")
    return LocalBackend(root)


def build(services: Services, section: BaseModel | None) -> StoreContext:
    """Store's backend, master keys and access log."""
    settings = section if isinstance(section, StoreSettings) else StoreSettings()
    root = services.settings.data_dir / "store"
    configured = settings.master_key.get_secret_value() if settings.master_key else None
    return StoreContext(
        settings=settings,
        backend=build_backend(settings, root),
        master=crypto.MasterKeys.load(root / "keys", configured=configured),
        db=services.db,
        data_dir=services.settings.data_dir,
        log=AccessLog(
            services.db, every=settings.access_log_seconds, batch=settings.access_log_batch
        ),
    )
