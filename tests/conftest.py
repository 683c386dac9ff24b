"""Fixtures every test directory may use: the two databases, migrated services, and sessions.

Names here are deliberately specific (``database_url``, ``postgres_server``, ``core_services``,
``db_session``, ``savepoint_session``) so that a directory's own ``conftest.py`` can define
``app``, ``client`` or ``services`` without clashing with them.

Isolation. Service tests run in a session bound to an outer transaction that is rolled back
(``db_session``, ``savepoint_session``). API and CLI tests cannot: the application opens and
commits its own unit of work per request. They share one migrated database per backend for the
whole run instead, and every test builds its own world under a fresh root tenant with unique
slugs and usernames (``tests.factories.core``), so no test sees another's rows through the
paths it looks at. That is faster than migrating a database per module (migrations run once per
backend, and still run on both) and as reliable, since nothing depends on test order. The few
tests that need a database to themselves (tampering with the audit chain) create one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from civicloud.app import build_services, load_settings, prepare_database
from civicloud.core.config import AuthSettings, Settings
from civicloud.core.services import Services

#: Time per module against a budget, printed at the end of the run (tests/timing.py).
pytest_plugins = ["tests.timing"]

# Every `civicloud serve` and `demo` a test starts (they inherit this environment) opens Store's
# S3 port on a free port, not on 9000: tests run side by side, and an installation on the
# machine may hold 9000.
os.environ.setdefault("CIVICLOUD_STORE__S3_PORT", "0")

#: argon2id at its cheapest: tests hash many passwords and measure nothing about their cost.
CHEAP_AUTH = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PG_DATABASE = "civicloud_test"


# --- PostgreSQL: a throwaway cluster, started once per run when its binaries are installed --


def _postgres_bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or ``None``."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).resolve().parent)
    for directory in candidates:
        if all((directory / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway cluster on the loopback interface, trusting every local connection."""

    port: int

    def url(self, database: str = PG_DATABASE) -> str:
        """The SQLAlchemy URL of ``database`` on this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` and return its URL."""
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_postgres_user(command: list[str]) -> list[str]:
    # initdb refuses to run as root; the cluster then belongs to the ``postgres`` account.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start a PostgreSQL cluster in a temporary directory; stop and delete it at the end."""
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries not found: install postgresql (initdb, pg_ctl) "
            "or put them on PATH"
        )
    workdir = Path(tempfile.mkdtemp(prefix="civicloud-pg-"))
    if os.geteuid() == 0:
        shutil.chown(workdir, user="postgres", group="postgres")
    data, port = workdir / "data", _free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {workdir} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    initdb, pg_ctl = str(bindir / "initdb"), str(bindir / "pg_ctl")
    cluster = ["-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale"]
    subprocess.run(
        _as_postgres_user([initdb, *cluster, "--no-sync"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        _as_postgres_user(
            [pg_ctl, "-D", str(data), "-l", str(workdir / "log"), "-o", options, "-w", "start"]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        server = PostgresServer(port=port)
        server.create_database(PG_DATABASE)
        yield server
    finally:
        subprocess.run(
            _as_postgres_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(workdir, ignore_errors=True)


# --- the two databases ------------------------------------------------------------------


@pytest.fixture(
    scope="session",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of the run's shared database: SQLite in a temporary file, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'civicloud.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.url()


#: One audit key for every test's services: several of them share the run's PostgreSQL
#: database, and civicloud refuses to extend a log sealed under another key.
TEST_AUDIT_KEY = SecretStr("civicloud-tests-audit-key-0001")


def make_settings(data_dir: Path, database_url: str = "") -> Settings:
    """Settings for a test: its own data directory, cheap password hashing, the tests' key."""
    return load_settings(
        data_dir=data_dir,
        database_url=database_url,
        auth=CHEAP_AUTH,
        log_json=True,
        audit_key=TEST_AUDIT_KEY,
    )


@pytest.fixture(scope="session")
def core_services(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    """Services over the shared database, migrated (Alembic) and seeded with reference data."""
    services = build_services(make_settings(tmp_path_factory.mktemp("data"), database_url))
    prepare_database(services)
    yield services
    services.db.dispose()


@pytest.fixture(scope="session")
def fresh_services(
    request: pytest.FixtureRequest, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], Services]]:
    """Build services over a new, empty, migrated database of the current backend."""
    opened: list[Services] = []

    def build() -> Services:
        url = ""
        if not database_url.startswith("sqlite"):
            server: PostgresServer = request.getfixturevalue("postgres_server")
            url = server.create_database(f"civicloud_{uuid.uuid4().hex[:12]}")
        services = build_services(make_settings(tmp_path_factory.mktemp("fresh"), url))
        prepare_database(services)
        opened.append(services)
        return services

    yield build
    for services in opened:
        services.db.dispose()


# --- sessions rolled back at the end ------------------------------------------------------


@contextlib.contextmanager
def rolled_back_session(engine: Engine) -> Iterator[Session]:
    """A session inside an outer transaction that is rolled back at the end, whatever happened.

    Services may ``flush`` and open savepoints (``begin_nested``); a ``commit`` only releases a
    savepoint, so nothing ever reaches the database.
    """
    connection = engine.connect()
    outer = connection.begin()
    session = Session(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def db_session(core_services: Services) -> Iterator[Session]:
    """A session on the shared database whose every change is rolled back after the test."""
    with rolled_back_session(core_services.db.engine) as session:
        yield session


@pytest.fixture(scope="session")
def savepoint_session(
    core_services: Services,
) -> Callable[[], contextlib.AbstractContextManager[Session]]:
    """``with savepoint_session() as session:`` a rolled-back session, one per Hypothesis example.

    Session-scoped, because Hypothesis runs many examples inside one test call.
    """
    return lambda: rolled_back_session(core_services.db.engine)
