"""``civicloud serve`` for real, in a process of its own, over a data directory a test prepared:
for tests that kill the server (SIGKILL) mid-request and look at what survived the restart.

The world (a tenant, a Store administrator and their access key) is seeded in-process with the
service functions before the first start; the process only serves it. Restarts reuse the data
directory, the database and the ports, so a test can kill and restart many times.

Restarts are quick: importing civicloud takes seconds, so by default a small *fork server*
imports it once and forks a fresh process per start, which runs the command's own entry point
(``civicloud.cli.main(["serve", ...])``) exactly as the ``civicloud`` script would. Nothing of a
killed process survives in the next one (each is forked from the pristine, single-threaded fork
server, before any database connection or file is opened). ``Served(..., fork=False)`` starts
``.venv/bin/civicloud serve`` itself instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import TEST_AUDIT_KEY, make_settings
from tests.factories.core import make_tenant
from tests.factories.store import S3Member, make_s3_member
from tests.functional.live_server import free_port

from civicloud.app import build_services, prepare_database
from civicloud.core.services import Services
from civicloud.store.context import StoreContext

CIVICLOUD = Path(sys.executable).with_name("civicloud")
#: How long a start may take before the test gives up (migrations are already applied).
START_TIMEOUT = 60.0


#: The fork server: imports civicloud once, then for each ``start LOG`` line on stdin forks a
#: child that runs ``civicloud.cli.main(ARGV)`` with its output in LOG, and answers its pid.
#: Children are reaped at once (SIGCHLD ignored), so a killed one disappears; EOF on stdin ends
#: the fork server and every child it started.
FORK_SERVER = r"""
import json, os, signal, sys
argv = json.loads(sys.argv[1])
import civicloud.cli
civicloud.cli.assembled()
from civicloud.app import MODULES
from civicloud.core.modules import resolve
for module in MODULES:
    for listener in module.listeners:
        resolve(listener.start)
children = []
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
for line in sys.stdin:
    command, _, log = line.strip().partition(" ")
    if command != "start":
        continue
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        code = 0
        try:
            civicloud.cli.main(argv)
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    children.append(pid)
    print(pid, flush=True)
for pid in children:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
"""


@dataclass
class Served:
    """A ``civicloud serve`` process over ``data_dir`` (and ``database_url``, empty: SQLite in
    the data directory), with its S3 port at ``endpoint`` once started."""

    data_dir: Path
    database_url: str
    services: Services
    member: S3Member
    fork: bool = True
    #: More of the server's environment (``CIVICLOUD_STORE__MIN_PART_BYTES``, …).
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    s3_port: int = field(default_factory=free_port)
    pid: int | None = None
    starts: int = 0
    _process: subprocess.Popen[bytes] | None = None
    _forker: subprocess.Popen[str] | None = None

    @property
    def endpoint(self) -> str:
        """The S3 port's URL."""
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def context(self) -> StoreContext:
        """Store's context over the same data directory and database (for checks in-process)."""
        return self.services.context("store", StoreContext)

    def argv(self) -> list[str]:
        """The command's arguments (after ``civicloud``)."""
        return [
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--s3-port",
            str(self.s3_port),
        ]

    def environment(self) -> dict[str, str]:
        """The server's environment: this directory and database, the tests' audit key."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICLOUD_")}
        env.update(
            CIVICLOUD_DATA_DIR=str(self.data_dir),
            CIVICLOUD_AUDIT_KEY=TEST_AUDIT_KEY.get_secret_value(),
            CIVICLOUD_LOG_JSON="true",
        )
        if self.database_url:
            env["CIVICLOUD_DATABASE_URL"] = self.database_url
        env.update(self.env)
        return env

    def _spawn(self, log: Path) -> int:
        if not self.fork:
            with log.open("wb") as out:
                self._process = subprocess.Popen(
                    [str(CIVICLOUD), *self.argv()],
                    env=self.environment(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.data_dir,
                )
            return self._process.pid
        if self._forker is None or self._forker.poll() is not None:
            self._forker = subprocess.Popen(
                [sys.executable, "-c", FORK_SERVER, json.dumps(self.argv())],
                env=self.environment(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=self.data_dir,
                text=True,
            )
        assert self._forker.stdin is not None
        assert self._forker.stdout is not None
        self._forker.stdin.write(f"start {log}\n")
        self._forker.stdin.flush()
        answer = self._forker.stdout.readline()
        if not answer.strip().isdigit():
            raise RuntimeError(f"the fork server did not start civicloud serve: {answer!r}")
        return int(answer)

    def alive(self) -> bool:
        """Whether the last process started still runs."""
        if self.pid is None:
            return False
        if self._process is not None:
            return self._process.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def start(self) -> None:
        """Start the server and return once its S3 port accepts connections."""
        assert not self.alive(), "already running"
        log = self.data_dir / f"serve-{self.starts}.log"
        self.starts += 1
        self.pid = self._spawn(log)
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(self.s3_port):
            if not self.alive():
                raise RuntimeError(f"civicloud serve exited:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"civicloud serve did not open its S3 port:\n{self.log()}")
            time.sleep(0.02)  # polling: the server is still starting

    def kill(self) -> None:
        """SIGKILL the server (no cleanup of any kind runs) and wait until it is gone."""
        if self.pid is None:
            return
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGKILL)
                self._process.wait(timeout=30)
            self._process, self.pid = None, None
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.01)  # polling: the fork server reaps the process
        self.pid = None

    def restart(self) -> None:
        """Kill the server if it runs, and start it again over the same data."""
        self.kill()
        self.start()

    def close(self) -> None:
        """Kill the server and end the fork server."""
        self.kill()
        if self._forker is not None:
            assert self._forker.stdin is not None
            self._forker.stdin.close()
            try:
                self._forker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._forker.kill()
                self._forker.wait()
            if self._forker.stdout is not None:
                self._forker.stdout.close()
            self._forker = None

    def log(self) -> str:
        """What the last start printed."""
        path = self.data_dir / f"serve-{self.starts - 1}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def client(self, **config: Any) -> Any:
        """A boto3 client of the seeded member against the S3 port (no retries)."""
        from tests.functional.store.conftest import Port, client

        port = Port(self.endpoint, None, self.context, self.services)
        config.setdefault("connect_timeout", 5)
        config.setdefault("read_timeout", 30)
        return client(port, self.member, **config)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def prepare(data_dir: Path, database_url: str = "") -> tuple[Services, S3Member]:
    """Migrate the database and seed a city tenant with a Store administrator and a key."""
    data_dir.mkdir(parents=True, exist_ok=True)
    services = build_services(make_settings(data_dir, database_url))
    prepare_database(services)
    context = services.context("store", StoreContext)
    with services.db.unit_of_work() as session:
        root = make_tenant(session)
        city = make_tenant(session, parent=root)
        member = make_s3_member(session, services.passwords, context, tenant=city)
    return services, member


@contextmanager
def served(
    data_dir: Path,
    database_url: str = "",
    *,
    fork: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """A seeded world served by ``civicloud serve`` (with ``env`` added to its environment);
    killed at the end."""
    services, member = prepare(data_dir, database_url)
    server = Served(data_dir, database_url, services, member, fork=fork, env=dict(env or {}))
    try:
        server.start()
        yield server
    finally:
        server.close()
        services.db.dispose()
