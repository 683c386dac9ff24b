"""Database plumbing: the declarative base, engines and the unit of work.

One transaction per request, command or job: the adapter opens it with :func:`unit_of_work`,
which commits when the block ends normally and rolls back on any exception. Services receive
the session and never commit.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import DateTime, Engine, MetaData, TypeDecorator, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from civicloud.core.caches import CACHES_KEY, CacheSet
from civicloud.core.context import peek_request_id, set_request_id
from civicloud.core.errors import Conflict, InvalidInput, ServiceBusy

# Stable constraint names, so that migrations can name what they alter on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every civicloud table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    """A fresh random identifier for a row."""
    return uuid.uuid4()


#: A pooled PostgreSQL connection idle this long is pinged before it is used again.
PING_IDLE_SECONDS = 10.0


def make_engine(
    url: str, *, echo: bool = False, ping_idle_seconds: float = PING_IDLE_SECONDS
) -> Engine:
    """Create the engine for ``url``: SQLite gets WAL, foreign keys and explicit BEGINs."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[1] if "///" in url else ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # The pool outgrows the web's slots (web.admission: 1 writer, a few readers) and the
        # short writes some of them open beside their own (touching an API key).
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=20,
            max_overflow=20,
        )
        _configure_sqlite(engine)
    else:
        # A pool as large as the app's thread pool (anyio runs 40 worker threads), so that busy
        # threads do not open and close overflow connections on every request; recycling
        # retires a connection before a server or firewall timeout does.
        engine = create_engine(url, echo=echo, pool_size=40, max_overflow=10, pool_recycle=1800)
        _ping_when_idle(engine, ping_idle_seconds)
    event.listen(engine, "before_cursor_execute", _refuse_nul_characters)
    return engine


def _ping_when_idle(engine: Engine, seconds: float) -> None:
    """Ping a pooled connection before use if it sat idle for more than ``seconds``.

    What ``pool_pre_ping`` does, minus a round trip on every checkout of a busy pool: a
    connection the server dropped (a restart, an idle timeout) is found when it comes back from
    idling and replaced, unnoticed by the request. One in constant use meets a restart in the
    middle of its work, where the request fails as any request in flight then would.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since <= seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # any failure: the pool replaces the connection and retries
            raise DisconnectionError(f"a pooled connection was dropped: {exc!r}") from exc


def _refuse_nul_characters(
    _conn: Any, _cursor: Any, _statement: str, parameters: Any, _context: Any, executemany: bool
) -> None:
    # PostgreSQL cannot store NUL in text and fails with a DataError (a 500); SQLite would store
    # it. Refusing it here, for every backend, turns any text that carries one, wherever it came
    # from (a name, a query filter, a token), into the same clear InvalidInput on both.
    # Many rows are a sequence of rows, except an "insertmanyvalues" batch (a multi-row INSERT
    # that RETURNING needs), which comes as one dict (psycopg) or one flat sequence of values
    # (sqlite3): either way, every value is looked at.
    many = executemany and not isinstance(parameters, dict)
    for row in parameters if many else (parameters,):
        values: Iterable[Any]
        if isinstance(row, dict):
            values = row.values()
        elif isinstance(row, list | tuple):
            values = row
        else:
            values = (row,)
        if any(isinstance(value, str) and "\x00" in value for value in values):
            raise InvalidInput("text must not contain NUL (\\x00) characters")


#: SQLite's page cache per connection, in MiB (see ``_configure_sqlite``).
SQLITE_CACHE_MIB = 32


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver, so that BEGIN is ours to emit below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed transaction survives power loss, not only a process crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        # A page cache of SQLITE_CACHE_MIB per connection (SQLite's default is 2 MiB), filled
        # only as pages are read: the inner pages of a big index stay in it, so a seek into a
        # bucket of ten million keys costs what one into a small bucket costs (bench/README.md,
        # store_listing: 0.65 with the default, 0.96 with this).
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_MIB * 1024}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A write transaction takes the lock up front (IMMEDIATE): a deferred one that upgrades
        # later fails at once with SQLITE_BUSY instead of waiting on busy_timeout. Read-only
        # units run each statement on its own (AUTOCOMMIT): every statement sees what was
        # committed before it, PostgreSQL's default READ COMMITTED, without a BEGIN and a
        # ROLLBACK around every request.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode != "AUTOCOMMIT":
            conn.exec_driver_sql(f"BEGIN {mode}")


#: The ``Retry-After`` of a request refused because the database was too busy, in seconds.
BUSY_RETRY_SECONDS = 5

#: SQLSTATEs of a transaction that lost a race: deadlock detected, serialization failure.
_RETRYABLE_STATES = {"40P01", "40001"}


def as_conflict(exc: BaseException) -> BaseException:
    """The error to raise for ``exc``: a lost race becomes a ``Conflict``, not a crash.

    Only PostgreSQL runs writers side by side, so only there do two transactions meet: a row's
    version moved on since it was read, both inserted the same unique value after each checked
    it was free, or the database broke a deadlock between them.
    """
    if isinstance(exc, StaleDataError):
        return Conflict("the record changed meanwhile; reload it and try again")
    if isinstance(exc, IntegrityError):
        return Conflict("another request stored the same thing meanwhile; reload and try again")
    if isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RETRYABLE_STATES:
        return Conflict("the request collided with another one; try it again")
    # Waiting too long for a pooled connection, or for SQLite's write lock (another process
    # held it past the busy timeout): the installation is overloaded, nothing was changed.
    if isinstance(exc, PoolTimeout) or (
        isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)
    ):
        return ServiceBusy(
            "the database is too busy; try again in %(seconds)s seconds",
            params={"seconds": BUSY_RETRY_SECONDS},
            retry_after=BUSY_RETRY_SECONDS,
        )
    return exc


T = TypeVar("T")

#: ``Session.info`` key of the installation's audit key (read by ``core.audit``).
AUDIT_KEY = "civicloud.audit_key"


class Database:
    """An engine and the session factories bound to it."""

    def __init__(
        self, engine: Engine, *, cache_seconds: float = 10.0, audit_key: bytes | None = None
    ) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        #: Per-process caches of this database's hot, rarely changing rows (see core.caches).
        self.caches = CacheSet(cache_seconds)
        #: The installation's audit key: records are sealed with it (``core.audit``).
        self.audit_key = audit_key
        info: dict[str, Any] = {CACHES_KEY: self.caches}
        if audit_key is not None:
            info[AUDIT_KEY] = audit_key
        writer = engine.execution_options(sqlite_begin="IMMEDIATE") if self.is_sqlite else engine
        # A read-only unit on PostgreSQL is a READ ONLY transaction, ended by COMMIT: a write
        # in it is refused by the server instead of silently dropped, and the driver keeps the
        # statements it prepared (psycopg forgets them on every ROLLBACK, so each read would
        # plan its queries afresh).
        reader = (
            engine.execution_options(sqlite_begin="AUTOCOMMIT")
            if self.is_sqlite
            else engine.execution_options(postgresql_readonly=True)
        )
        self._reader = sessionmaker(bind=reader, expire_on_commit=False, info=info)
        self._writer = sessionmaker(bind=writer, expire_on_commit=False, info=info)

    @classmethod
    def from_url(
        cls, url: str, *, cache_seconds: float = 10.0, audit_key: bytes | None = None
    ) -> Database:
        """Open the database at ``url``."""
        return cls(make_engine(url), cache_seconds=cache_seconds, audit_key=audit_key)

    def session(self, *, write: bool = True) -> Session:
        """A new session; ``write`` sessions take SQLite's write lock when they begin."""
        return (self._writer if write else self._reader)()

    def begin(self, *, write: bool = True) -> UnitOfWork:
        """A unit of work, opened (its steps for adapters that run them apart: ``web.deps``
        commits and rolls back off the event loop)."""
        return UnitOfWork(self.session(write=write), write=write, commit_reads=not self.is_sqlite)

    @contextmanager
    def unit_of_work(
        self, *, write: bool = True, request_id: str | None = None
    ) -> Iterator[Session]:
        """One transaction: committed when the block ends normally, rolled back on any exception.

        A read-only unit (``write=False``) changes nothing: on PostgreSQL it is a READ ONLY
        transaction (a write fails), on SQLite it runs outside a write transaction and is
        rolled back. Safe HTTP methods get read-only units. ``request_id`` names
        the unit in the logs and the audit log while it runs (a command's, a job's).
        """
        unit = self.begin(write=write)
        previous = peek_request_id()
        if request_id is not None:
            set_request_id(request_id)
        try:
            yield unit.session
            unit.commit()
        except BaseException as exc:
            converted = unit.failed(exc)
            if converted is exc:
                raise
            raise converted from exc
        finally:
            unit.close()
            if request_id is not None:
                set_request_id(previous)

    def run(self, work: Callable[[Session], T], *, attempts: int = 2) -> T:
        """``work(session)`` in a unit of work of its own; one that lost a race to another
        transaction (a unique value stored meanwhile, a deadlock, a version moved on) is run
        again, fresh, and then sees what the other stored: two deliveries of one provider
        notification both answer as the first did. Any other error is raised at once.
        """
        for attempt in range(1, attempts + 1):
            try:
                with self.unit_of_work() as session:
                    return work(session)
            except Conflict as exc:
                if attempt == attempts or not lost_race(exc):
                    raise
        raise AssertionError("attempts must be at least 1")  # pragma: no cover

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


class UnitOfWork:
    """The one implementation of a unit of work's steps: commit (a write unit only), roll back
    and convert a failure (``as_conflict``), close. ``Database.unit_of_work`` runs them around a
    block; the web layer runs the same steps around a request."""

    def __init__(self, session: Session, *, write: bool, commit_reads: bool = False) -> None:
        self.session = session
        self.write = write
        #: End a read-only unit with COMMIT too (PostgreSQL's READ ONLY transactions, which
        #: cannot have changed anything; see ``Database``).
        self.commit_reads = commit_reads

    def commit(self) -> None:
        """End a write unit by committing it; a read-only unit by committing its READ ONLY
        transaction where that keeps the driver's prepared statements, else not at all."""
        if self.write or self.commit_reads:
            self.session.commit()

    def rollback(self) -> None:
        """Discard what the unit did."""
        self.session.rollback()

    def failed(self, exc: BaseException, *, rolled_back: bool = False) -> BaseException:
        """Roll back (unless done already) after ``exc``; the error to raise instead of it: a
        lost race as a ``Conflict``, anything else as it is."""
        if not rolled_back:
            self.session.rollback()
        return as_conflict(exc)

    def close(self) -> None:
        """Give the connection back to the pool."""
        self.session.close()


def lost_race(exc: BaseException) -> bool:
    """Whether ``exc`` is a ``Conflict`` that :func:`as_conflict` made of a lost race (rather than
    one a service raised on purpose, which the same work would raise again)."""
    return isinstance(exc, Conflict) and isinstance(
        exc.__cause__, StaleDataError | IntegrityError | DBAPIError
    )
