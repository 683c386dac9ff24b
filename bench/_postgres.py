"""A throwaway PostgreSQL cluster for the benchmarks: started in a temporary directory, always removed.

The same approach as ``tests/conftest.py`` (``postgres_server``): ``initdb`` and ``pg_ctl`` from
the installed server binaries, run as the ``postgres`` account when we are root (initdb refuses
root), trust authentication on 127.0.0.1 only, a free port, and the test suite's settings
(``fsync``, ``synchronous_commit`` and ``full_page_writes`` off: a benchmark of our code, not of
the disk).

    with _postgres.cluster() as pg:        # None when no PostgreSQL binaries are installed
        url = pg.create_database("bench")  # postgresql+psycopg://postgres@127.0.0.1:PORT/bench

The server is stopped (``pg_ctl stop -m fast``) and its directory deleted when the block ends,
also on an exception or Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def bindir() -> Path | None:
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


def _as_postgres_user(command: list[str]) -> list[str]:
    # initdb refuses to run as root; the cluster then belongs to the ``postgres`` account.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _version(directory: Path) -> str:
    done = subprocess.run(
        [str(directory / "postgres"), "--version"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "postgres (version unknown)"


@dataclass(frozen=True)
class Cluster:
    """A running throwaway cluster on the loopback interface, trusting every local connection."""

    port: int
    version: str
    data: Path
    settings: str

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the server's processes (Linux), or NaN.

        The postmaster and its children (one backend per connection, the background workers),
        plus the children that have exited (the postmaster's ``cutime`` and ``cstime``), so that
        connections opened and closed while measuring are counted too.
        """
        try:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return float("nan")
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process ended meanwhile
            if stat.parent.name == str(postmaster):
                ticks += sum(int(n) for n in fields[11:15])  # its own and its reaped children's
            elif fields[1] == str(postmaster):
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def dsn(self, database: str = "postgres") -> str:
        """A libpq connection string for ``database`` (psycopg.connect takes it)."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database``."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` and return its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def cluster(*, max_connections: int = 200) -> Iterator[Cluster | None]:
    """Start a cluster in a temporary directory (``None`` without binaries); stop and delete it."""
    directory = bindir()
    if directory is None:
        yield None
        return
    workdir = Path(tempfile.mkdtemp(prefix="civicloud-bench-pg-"))
    started = False
    data, port = workdir / "data", _free_port()
    pg_ctl = str(directory / "pg_ctl")
    try:
        if os.geteuid() == 0:
            shutil.chown(workdir, user="postgres", group="postgres")
        settings = (
            f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            f"-c max_connections={max_connections}"
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {workdir} {settings}"
        init = ["-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale"]
        subprocess.run(
            _as_postgres_user([str(directory / "initdb"), *init, "--no-sync"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
        started = True  # from here on, try to stop it whatever happens
        subprocess.run(
            _as_postgres_user(
                [pg_ctl, "-D", str(data), "-l", str(workdir / "log"), "-o", options, "-w", "start"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield Cluster(
            port=port,
            version=_version(directory),
            data=data,
            settings=settings.replace("-c ", ""),
        )
    finally:
        if started:
            subprocess.run(
                _as_postgres_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
                check=False,
                capture_output=True,
                timeout=120,
            )
        shutil.rmtree(workdir, ignore_errors=True)
