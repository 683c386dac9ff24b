"""The S3 port's group commit on SQLite: units waiting together commit in one transaction, a
unit that fails reports its error alone and leaves nothing, the others are committed once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from civicloud.core.db import Database
from civicloud.store.s3.batching import GroupCommit


class Refused(Exception):
    """A unit's own refusal (as a quota or a condition refuses a write)."""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.from_url(f"sqlite:///{tmp_path / 'group.db'}")
    with database.unit_of_work() as session:
        session.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)"))
    yield database
    database.dispose()


def rows(db: Database) -> list[tuple[int, str]]:
    with db.unit_of_work(write=False) as session:
        return [(r[0], r[1]) for r in session.execute(text("SELECT n, v FROM t ORDER BY n"))]


def insert(n: int, v: str) -> Callable[[Session], int]:
    def work(session: Session) -> int:
        session.execute(text("INSERT INTO t (n, v) VALUES (:n, :v)"), {"n": n, "v": v})
        return n

    return work


def refuse_after_insert(n: int) -> Callable[[Session], int]:
    def work(session: Session) -> int:
        insert(n, f"refused-{n}")(session)
        raise Refused(f"unit {n} refused")

    return work


def in_one_batch(group: GroupCommit, works: list[Callable[[Session], Any]]) -> list[Any]:
    """Run ``works`` so that they wait together: the writer is held by a first unit until
    every one of them is queued. Each result, or the error its caller got."""
    held, release = threading.Event(), threading.Event()

    def hold(session: Session) -> str:
        held.set()
        release.wait(10)
        return "held"

    first = threading.Thread(target=group.run, args=(hold,))
    first.start()
    assert held.wait(10)
    outcomes: list[Any] = [None] * len(works)

    def call(index: int) -> None:
        try:
            outcomes[index] = group.run(works[index])
        except BaseException as exc:
            outcomes[index] = exc

    callers = [threading.Thread(target=call, args=(i,)) for i in range(len(works))]
    for caller in callers:
        caller.start()
    # Every caller's unit waits behind the held one (bounded: a caller that never queued
    # shows as a wrong outcome below, not as a hung test).
    deadline = time.monotonic() + 10
    while group._queue.qsize() < len(works) and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    first.join(10)
    for caller in callers:
        caller.join(10)
    return outcomes


def test_units_waiting_together_are_all_committed(db: Database) -> None:
    group = GroupCommit(db)
    outcomes = in_one_batch(group, [insert(n, f"v{n}") for n in range(1, 9)])
    assert outcomes == list(range(1, 9))
    assert rows(db) == [(n, f"v{n}") for n in range(1, 9)]


def test_a_refused_unit_reports_its_error_alone_and_leaves_nothing(db: Database) -> None:
    group = GroupCommit(db)
    works = [insert(1, "a"), refuse_after_insert(2), insert(3, "c"), insert(4, "a")]
    outcomes = in_one_batch(group, works)
    assert outcomes[0] == 1
    assert outcomes[2] == 3
    assert isinstance(outcomes[1], Refused)
    # The fourth breaks the unique constraint the first one's row now holds: refused alone too.
    assert isinstance(outcomes[3], Exception)
    assert not isinstance(outcomes[3], Refused)
    # Each committed unit's row is there once (the batch ran again: nothing twice), the refused
    # unit's row is not there at all.
    assert rows(db) == [(1, "a"), (3, "c")]


def test_a_unit_alone_that_fails_reports_its_error_and_leaves_nothing(db: Database) -> None:
    group = GroupCommit(db)
    with pytest.raises(Refused):
        group.run(refuse_after_insert(7))
    assert group.run(insert(8, "h")) == 8
    assert rows(db) == [(8, "h")]


def test_a_commit_that_fails_fails_every_unit_in_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = GroupCommit(db)
    real = db.unit_of_work
    failing = {"on": False}

    def unit_of_work(**kwargs: Any) -> Any:
        if not failing["on"]:
            return real(**kwargs)
        return _failing_commit(real(**kwargs))

    monkeypatch.setattr(db, "unit_of_work", unit_of_work)
    failing["on"] = True
    with pytest.raises(OSError, match="disk I/O error"):
        group.run(insert(1, "a"))
    failing["on"] = False
    assert rows(db) == []
    assert group.run(insert(2, "b")) == 2


class _failing_commit:  # noqa: N801 - a context manager standing in for a unit of work
    """A unit of work whose commit fails after its work ran (the transaction is rolled back)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __enter__(self) -> Session:
        session: Session = self.inner.__enter__()
        return session

    def __exit__(self, kind: Any, value: Any, trace: Any) -> bool:
        if kind is not None:
            return bool(self.inner.__exit__(kind, value, trace))
        error = OSError("disk I/O error")
        self.inner.__exit__(OSError, error, None)
        raise error


class _Base(DeclarativeBase):
    pass


class _Item(_Base):
    __tablename__ = "item"

    n: Mapped[int] = mapped_column(primary_key=True)
    v: Mapped[str] = mapped_column(unique=True)


def test_what_a_unit_left_pending_is_seen_by_the_next_units_statements(tmp_path: Path) -> None:
    """A unit that adds an entity without flushing (as promoting a version does) and a later
    unit of the same batch that reads with a Core statement on the connection: the second sees
    the first's row, and a unit that breaks a constraint through the ORM fails alone."""
    db = Database.from_url(f"sqlite:///{tmp_path / 'orm.db'}")
    try:
        with db.unit_of_work() as session:
            _Base.metadata.create_all(session.connection())
        group = GroupCommit(db)

        def add(n: int, v: str) -> Callable[[Session], int]:
            def work(session: Session) -> int:
                session.add(_Item(n=n, v=v))
                return n

            return work

        def count_a(session: Session) -> int:
            found = session.connection().execute(text("SELECT count(*) FROM item WHERE v = 'a'"))
            return int(found.scalar_one())

        outcomes = in_one_batch(group, [add(1, "a"), count_a, add(2, "a"), add(3, "c")])
        assert outcomes[0] == 1
        assert outcomes[1] == 1
        assert isinstance(outcomes[2], Exception)
        assert outcomes[3] == 3
        with db.unit_of_work(write=False) as session:
            assert session.execute(text("SELECT n, v FROM item ORDER BY n")).all() == [
                (1, "a"),
                (3, "c"),
            ]
    finally:
        db.dispose()
