"""Group commit for the S3 port on SQLite.

SQLite writes one transaction at a time and syncs each commit to disk, so sixteen clients
writing small objects would wait for sixteen syncs in a row. Here the port's writing units go
to one writer thread, which runs those that are waiting together in one transaction and commits
them with one sync. A unit that fails reports its error to its caller alone: the batch is rolled
back and run again with each unit in a savepoint of its own (a unit's work touches only the
database, so running it again is safe). A commit that fails fails every unit in it, none of
which was then acknowledged. The bytes of every object in a batch were made durable
before its unit was queued, as for a unit committed alone.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from civicloud.core.db import Database

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Units committed together at most.
MAX_BATCH = 64


@dataclass
class _Unit(Generic[T]):
    work: Callable[[Session], T]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class GroupCommit:
    """Runs units of work in batches, in the order they came, from one thread."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: queue.SimpleQueue[_Unit[Any]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="store-commits", daemon=True)
        self._thread.start()

    def run(self, work: Callable[[Session], T]) -> T:
        """``work(session)`` committed (with whatever else was waiting); its result, or its
        error raised here."""
        unit: _Unit[T] = _Unit(work)
        self._queue.put(unit)
        unit.done.wait()
        if unit.error is not None:
            raise unit.error
        result: T = unit.result
        return result

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._commit(batch)
            finally:
                for unit in batch:
                    unit.done.set()

    def _commit(self, batch: list[_Unit[Any]]) -> None:
        if self._commit_whole(batch):
            return
        self._commit_each(batch)

    def _commit_whole(self, batch: list[_Unit[Any]]) -> bool:
        """Run the batch in one transaction without savepoints (a unit's work almost never
        fails, and a savepoint each cost a tenth of a small write). ``False`` when a unit's work
        failed: the transaction was rolled back, nothing was committed, and the batch is run
        again unit by unit; a failed commit fails every unit, as below."""
        failed: list[BaseException] = []
        try:
            with self._db.unit_of_work() as session:
                results = []
                for unit in batch:
                    try:
                        results.append(unit.work(session))
                        # What the unit left pending goes in now, as a savepoint's end would
                        # flush it: a later unit's Core statements see it, and an error of
                        # its flush is its own.
                        session.flush()
                    except Exception as exc:
                        failed.append(exc)
                        raise
        except Exception as exc:
            if failed:
                if len(batch) == 1:
                    batch[0].error = failed[0]
                    return True
                return False
            log.warning("store: a batch of %d writes failed to commit: %s", len(batch), exc)
            for unit in batch:
                unit.error = exc
            return True
        for unit, result in zip(batch, results, strict=True):
            unit.result = result
        return True

    def _commit_each(self, batch: list[_Unit[Any]]) -> None:
        """Run the batch with each unit in a savepoint of its own: a unit that fails is rolled
        back alone and reports its error."""
        try:
            with self._db.unit_of_work() as session:
                for unit in batch:
                    try:
                        with session.begin_nested():
                            unit.result = unit.work(session)
                    except Exception as exc:
                        unit.error = exc
        except Exception as exc:
            log.warning("store: a batch of %d writes failed to commit: %s", len(batch), exc)
            for unit in batch:
                if unit.error is None:
                    unit.error = exc
