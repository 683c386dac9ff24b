"""Verifying the whole log on request, without holding up the request that asked.

A walk of every chain reads every record: on a large log that is minutes, far longer than a
page may take. So :class:`Verifier` runs :func:`verify_chain` in a thread of its own, in a
read-only unit of work, one verification at a time per process, and tells how far it has got
(records read of those there were when it began). When it ends, its result is written to the
log itself (``core.audit.verify`` on the platform chain: who asked, which chains, how many
records, the first problem found), so whichever server a reader asks later, the last result is
there (:func:`last_verification`), and the log says who checked it and when.

This is not a job of the core's runner: those run on a schedule, every item of them in a unit
of work, and a verification is one long read a person asks for now and waits for.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from civicloud.core.audit.models import PLATFORM_CHAIN, AuditRecord
from civicloud.core.audit.service import VerifyResult, record, verify_chain
from civicloud.core.db import utcnow
from civicloud.core.errors import PermissionDenied

if TYPE_CHECKING:
    from civicloud.core.actor import Actor
    from civicloud.core.db import Database

log = logging.getLogger("civicloud.audit")

#: The action of the record a verification leaves in the log.
VERIFY_ACTION = "core.audit.verify"


@dataclass
class Verification:
    """One verification this process runs or ran."""

    id: str
    started_by: str
    started_at: datetime
    #: The records there were when it began (what ``read`` counts towards).
    total: int = 0
    read: int = 0
    result: VerifyResult | None = None
    #: Set when the walk itself failed (the database went away): it says nothing of the log.
    error: str | None = None
    finished_at: datetime | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def running(self) -> bool:
        """Whether it has not ended yet."""
        return not self.done.is_set()

    @property
    def percent(self) -> int:
        """How far it has got, 0 to 100."""
        if not self.running:
            return 100
        return min(99, self.read * 100 // self.total) if self.total else 0


def may_verify(actor: Actor) -> bool:
    """Whether ``actor`` may verify the log: platform-wide ``core.audit.read``, since the walk
    covers every chain, every tenant's and the platform's (at the machine's shell, ``civicloud
    audit verify`` is the operator's, who holds everything)."""
    return actor.roots("core.audit.read") is None


def require_verify(actor: Actor) -> None:
    """Raise ``PermissionDenied`` unless ``actor`` may verify the log."""
    if not may_verify(actor):
        raise PermissionDenied(
            "verifying the audit log needs %(permission)s platform-wide",
            params={"permission": "core.audit.read"},
        )


class Verifier:
    """Runs verifications of one database's log, one at a time, each in a thread of its own."""

    def __init__(self, db: Database, *, batch: int = 2000) -> None:
        self.db = db
        self.batch = batch
        self._lock = threading.Lock()
        self._current: Verification | None = None

    @property
    def current(self) -> Verification | None:
        """The verification running, or the last one this process ran."""
        return self._current

    def start(self, *, actor: Actor) -> Verification:
        """Begin a verification for ``actor``, or give the one already running (a second walk
        at once would only double the load)."""
        require_verify(actor)
        with self._lock:
            if self._current is not None and self._current.running:
                return self._current
            run = Verification(id=uuid.uuid4().hex, started_by=actor.name, started_at=utcnow())
            self._current = run
        threading.Thread(
            target=self._run, args=(run, actor), name=f"audit-verify-{run.id[:8]}", daemon=True
        ).start()
        return run

    def _run(self, run: Verification, actor: Actor) -> None:
        try:
            with self.db.unit_of_work(write=False) as session:
                run.total = session.execute(select(func.count(AuditRecord.seq))).scalar_one()
                result = verify_chain(
                    session=session, batch=self.batch, progress=lambda n: _advance(run, n)
                )
            run.read = run.total
            with self.db.unit_of_work() as session:
                record(
                    session=session,
                    actor=actor,
                    action=VERIFY_ACTION,
                    target="audit",
                    outcome="success" if result.ok else "failed",
                    detail=result_detail(result),
                )
            run.result = result
        except Exception as exc:  # the walk failed, not the log: say so, never hang the page
            log.exception("audit verification %s failed", run.id)
            run.error = type(exc).__name__
        finally:
            run.finished_at = utcnow()
            run.done.set()


def _advance(run: Verification, read: int) -> None:
    run.read = read


def result_detail(result: VerifyResult) -> dict[str, object]:
    """What a verification's record keeps of its result."""
    return {
        "ok": result.ok,
        "checked": result.checked,
        "chains": result.chains,
        "sealed": result.sealed,
        "seq": result.seq,
        "problem": result.problem,
        "head_hash": result.head_hash,
    }


def last_verification(*, session: Session, actor: Actor) -> AuditRecord | None:
    """The log's record of the latest verification (on the platform chain), or ``None``; for
    those who may verify."""
    require_verify(actor)
    return session.scalars(
        select(AuditRecord)
        .where(AuditRecord.action == VERIFY_ACTION, AuditRecord.chain == PLATFORM_CHAIN)
        .order_by(AuditRecord.seq.desc())
        .limit(1)
    ).first()
