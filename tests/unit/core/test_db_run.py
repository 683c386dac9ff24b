"""``Database.run``: a unit of work that lost a race is run once more; one refused on purpose is
not."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select
from sqlalchemy.orm import Session

from civicloud.core.db import Database, lost_race
from civicloud.core.errors import Conflict

metadata = MetaData()
seen = Table("seen", metadata, Column("id", Integer, primary_key=True))


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database.from_url(f"sqlite:///{tmp_path / 'run.db'}")
    metadata.create_all(database.engine)
    return database


def test_a_unit_that_lost_a_race_is_run_again_and_sees_the_winner(db: Database) -> None:
    # given a unit of work that inserts a row another transaction stores first, the first time
    attempts: list[int] = []

    def record(session: Session) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            # the racing transaction commits the row between our check and our insert (here,
            # before our transaction begins: SQLite lets one writer in at a time)
            with db.unit_of_work() as other:
                other.execute(insert(seen).values(id=1))
            session.execute(insert(seen).values(id=1))
            return "recorded"
        if session.scalar(select(seen.c.id).where(seen.c.id == 1)) is not None:
            return "already recorded"
        session.execute(insert(seen).values(id=1))
        return "recorded"

    # when it is run, then its lost race is run once more, and the second run sees the winner
    assert db.run(record) == "already recorded"
    assert len(attempts) == 2


def test_a_conflict_raised_on_purpose_is_not_run_again(db: Database) -> None:
    attempts: list[int] = []

    def refuse(_session: Session) -> None:
        attempts.append(1)
        raise Conflict("the bill was paid already")

    with pytest.raises(Conflict) as refused:
        db.run(refuse)
    assert len(attempts) == 1
    assert not lost_race(refused.value)


def test_a_race_lost_every_time_is_answered_as_a_conflict(db: Database) -> None:
    with db.unit_of_work() as session:
        session.execute(insert(seen).values(id=7))

    def insert_again(session: Session) -> None:
        session.execute(insert(seen).values(id=7))

    with pytest.raises(Conflict) as lost:
        db.run(insert_again)
    assert lost_race(lost.value)
