"""Store's access log: data events (object reads and writes), written in batches to the
append-only ``store_access_log``, kept apart from the core's management audit chain.

The S3 port records one event per request; a thread writes what gathered every ``every``
seconds, or sooner once ``batch`` events wait, in one transaction. Events of a process killed
before its next write are lost (at most ``every`` seconds of them): the access log is a record
of use, not of the data, whose own writes are durable before they are acknowledged.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import insert

from civicloud.core.db import Database
from civicloud.store.models import AccessRecord

log = logging.getLogger(__name__)
#: Events kept waiting at most; past it the oldest are dropped (and counted in the log), so a
#: database that is down cannot exhaust memory.
MAX_WAITING = 200_000


@dataclass(frozen=True)
class AccessEvent:
    """One S3 request, as the access log keeps it."""

    at: datetime
    tenant_id: uuid.UUID | None
    bucket: str
    key: str
    operation: str
    status: int
    error_code: str
    bytes_in: int
    bytes_out: int
    principal: str
    access_key_id: str
    remote: str
    request_id: str
    millis: int


_FIELDS = tuple(f.name for f in fields(AccessEvent))
_INSERT = insert(AccessRecord)


class AccessLog:
    """Gathers events and writes them in batches from a thread of its own."""

    def __init__(self, db: Database, *, every: float = 1.0, batch: int = 500) -> None:
        self._db = db
        self._every = every
        self._batch = batch
        self._waiting: list[AccessEvent] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def record(self, event: AccessEvent) -> None:
        """Queue ``event`` for the next batch."""
        with self._lock:
            if len(self._waiting) >= MAX_WAITING:
                self._waiting.pop(0)
                self.dropped += 1
            self._waiting.append(event)
            full = len(self._waiting) >= self._batch
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="store-access-log", daemon=True
                )
                self._thread.start()
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write every waiting event now; how many were written."""
        with self._lock:
            taken, self._waiting = self._waiting, []
        if taken:
            try:
                write_events(self._db, taken)
            except Exception:
                log.exception("store access log: %d events could not be written", len(taken))
                with self._lock:  # kept for the next try, ahead of newer ones
                    self._waiting[:0] = taken[-MAX_WAITING:]
                return 0
        return len(taken)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._every)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Write what is waiting and stop the thread."""
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
        self.flush()


def write_events(db: Database, events: Sequence[AccessEvent]) -> None:
    """Append ``events`` in one transaction."""
    # A Core insert of plain rows (not the ORM's bulk path, nor dataclasses.asdict's deep copy):
    # at sixteen clients this thread writes hundreds of events a second beside the requests.
    rows = [{name: getattr(event, name) for name in _FIELDS} for event in events]
    with db.unit_of_work() as session:
        session.connection().execute(_INSERT, rows)
