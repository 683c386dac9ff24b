"""Admission to the database: how many requests hold a unit of work at once, and who waits.

Without it, every request the server accepts takes a worker thread for its route and a pooled
connection for its session, and its commit needs a second trip through the thread pool. Under
a burst (two hundred clients paying one bill) the threads fill with requests waiting for a
connection while the requests holding the connections wait for a thread to commit on: nothing
moves until the pool's timeout turns most answers into errors. On SQLite, which writes one
transaction at a time, dozens of writers also queue inside the database's busy handler, each
holding a thread and a connection, until some give up with "database is locked".

So a request first waits for a *slot*, on the event loop, holding neither a thread nor a
connection; only then does it open its session. Writers and readers have slots of their own
(a read-only request may open a short write of its own, such as touching an API key, and must
not wait for itself). Slots are fewer than worker threads and connections, so a request that
holds one always finds a thread and a connection for its route and its commit. A request that
cannot get a slot within ``web.queue_seconds``, or arrives when ``web.max_queued`` requests are
waiting already, is answered 503 with ``Retry-After`` and has changed nothing.

Slots are counted per event loop: one per server process, as are the thread pool and the
connection pool they are sized against.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from civicloud.core.errors import ServiceBusy

__all__ = ["DEFAULT_POSTGRES_WRITERS", "THREADS", "Admission"]

#: Worker threads per process, set on the event loop's thread limiter by :meth:`Admission.slot`
#: (anyio's default is 40). Slots stay below it, so that slot holders never wait for a thread.
THREADS = 48
#: Writer slots on PostgreSQL unless ``web.db_writers`` says otherwise.
DEFAULT_POSTGRES_WRITERS = 24


@dataclass
class _Slots:
    writers: anyio.CapacityLimiter
    readers: anyio.CapacityLimiter
    waiting: int = 0


class Admission:
    """Slots for units of work: ``writers`` and ``readers`` at once, waiting at most
    ``wait_seconds`` with at most ``max_waiting`` requests in line."""

    def __init__(
        self, *, writers: int, readers: int, wait_seconds: float, max_waiting: int
    ) -> None:
        if writers + readers >= THREADS:
            raise ValueError(f"writers + readers must stay below the {THREADS} worker threads")
        self.writers = writers
        self.readers = readers
        self.wait_seconds = wait_seconds
        self.max_waiting = max_waiting
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Slots] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def retry_after(self) -> int:
        """The ``Retry-After`` a refused request is given, in whole seconds."""
        return max(1, math.ceil(self.wait_seconds / 10))

    def _slots(self) -> _Slots:
        loop = asyncio.get_running_loop()
        slots = self._per_loop.get(loop)
        if slots is None:
            slots = _Slots(anyio.CapacityLimiter(self.writers), anyio.CapacityLimiter(self.readers))
            self._per_loop[loop] = slots
            threads = anyio.to_thread.current_default_thread_limiter()
            threads.total_tokens = max(threads.total_tokens, THREADS)
        return slots

    def _busy(self) -> ServiceBusy:
        return ServiceBusy(
            "the service is busy; try again in %(seconds)s seconds",
            params={"seconds": self.retry_after},
            retry_after=self.retry_after,
        )

    @asynccontextmanager
    async def slot(self, *, write: bool, wait_seconds: float | None = None) -> AsyncIterator[None]:
        """Hold a writer's or a reader's slot for the block; raise ``ServiceBusy`` if none comes
        within ``wait_seconds`` (default: ``self.wait_seconds``; nothing has been done then)."""
        wait = self.wait_seconds if wait_seconds is None else wait_seconds
        slots = self._slots()
        limiter = slots.writers if write else slots.readers
        # On behalf of a token, not of the task: a dependency may end in another task.
        token = object()
        if limiter.available_tokens < 1 or slots.waiting:
            if slots.waiting >= self.max_waiting:
                raise self._busy()
            slots.waiting += 1
            try:
                with anyio.fail_after(wait):
                    await limiter.acquire_on_behalf_of(token)
            except TimeoutError:
                raise self._busy() from None
            finally:
                slots.waiting -= 1
        else:
            await limiter.acquire_on_behalf_of(token)
        try:
            yield
        finally:
            limiter.release_on_behalf_of(token)
