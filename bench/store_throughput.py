"""Store throughput: boto3 against Store's S3 port, against a server that does only the I/O.

Two servers, each a child process on loopback, over plain HTTP, writing to the same disk:

- **store**: Store's S3 port (``civicloud.store.s3.listener.RunningS3``) on a fresh data
  directory (SQLite, or ``--database-url`` / ``--postgres``), with a tenant, a ``store_admin``
  user and an access key made through the service functions. Everything a real request pays:
  SigV4, the access key, the bucket's rules, checksums, encryption at rest, the blob's file
  (temporary file, fsync, rename, directory fsync), the version's row, the access log.
- **baseline**: a threaded ``http.server`` (HTTP/1.1 keep-alive, ``TCP_NODELAY``) that answers
  the same boto3 requests with the least S3 that boto3 accepts: a PUT's body is written to a
  temporary file, fsynced, renamed into place and the directory fsynced (the durability Store
  gives a write); a GET reads the file and sends it. It ignores the signature.

The same boto3 clients (same configuration, signed, default checksum settings) talk to both.
Measured, in rounds that alternate which server goes first:

- 64 MiB objects (``--quick``: 64 MiB too, fewer of them), PUT then GET, one client: MiB/s;
- 4 KiB objects, PUT then GET, at 1 client and at 16 (4 processes x 4 threads: one boto3 process
  tops out near 800 small operations per second): operations per second, p50 and p99 latency.

Ratios are store / baseline, the median over rounds (an even number, so each server goes
first in half of them); goals: large PUT and large GET at least
0.7, small PUT and small GET (16 clients) at least 0.5. Also printed: the disk's own write+fsync
and read rates, each server's CPU per operation and its peak memory (``VmHWM``).

    .venv/bin/python bench/store_throughput.py            # about 2 to 5 minutes
    .venv/bin/python bench/store_throughput.py --quick    # under a minute
    .venv/bin/python bench/store_throughput.py --profile  # also py-spy the store's phases
    .venv/bin/python bench/store_throughput.py --postgres # a throwaway PostgreSQL cluster
    .venv/bin/python bench/store_throughput.py --quick --huge 5  # and one 5 GiB object

The last line printed is ``store_throughput ratio=X goal=1.0``: X is the lowest of the four
gated ratios, each divided by its goal (1.0 or more: every goal met); the line before says
which one it is.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MIB = 1 << 20
LARGE = 64 * MIB
SMALL = 4 * 1024
CHUNK = MIB
BUCKET = "bench"
#: Gated figures and their goals (store / baseline).
GOALS = {"large PUT": 0.7, "large GET": 0.7, "small PUT x16": 0.5, "small GET x16": 0.5}


# --- the baseline server ----------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BaselineHandler(BaseHTTPRequestHandler):
    """Path-style S3, the least of it: create a bucket, PUT, GET, DELETE an object."""

    protocol_version = "HTTP/1.1"
    server_version = "baseline"
    sys_version = ""
    rbufsize = 64 * 1024
    server: BaselineServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _target(self) -> tuple[str, str]:
        path = urllib.parse.urlsplit(self.path).path
        bucket, _, key = path.lstrip("/").partition("/")
        return bucket, urllib.parse.unquote(key)

    def _answer(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        head = [f"HTTP/1.1 {status} {self.responses.get(status, ('Status',))[0]}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if "Content-Length" not in headers:
            head.append(f"Content-Length: {len(body)}")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def _missing(self, key: str) -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
            f"<Message>missing</Message><Key>{key}</Key></Error>"
        ).encode()
        self._answer(404, {"Content-Type": "application/xml"}, body)

    def do_PUT(self) -> None:
        bucket, key = self._target()
        folder = self.server.root / bucket
        length = int(self.headers.get("Content-Length", "0"))
        if not key:
            self.rfile.read(length)
            folder.mkdir(exist_ok=True)
            self._answer(200, {"Location": f"/{bucket}"})
            return
        if "chunked" in self.headers.get("Transfer-Encoding", "") or "aws-chunked" in (
            self.headers.get("Content-Encoding", "")
        ):
            self._answer(501, {})
            self.close_connection = True
            return
        final = folder / urllib.parse.quote(key, safe="")
        temp = folder / f".{final.name}.{threading.get_ident()}.tmp"
        buffer = memoryview(bytearray(min(length, CHUNK) or 1))
        with open(temp, "wb", buffering=0) as file:
            left = length
            while left:
                got = self.rfile.readinto(buffer[: min(left, len(buffer))])
                if not got:
                    raise ConnectionError("body cut short")
                file.write(buffer[:got])
                left -= got
            os.fsync(file.fileno())
        os.rename(temp, final)
        _fsync_dir(folder)
        checksums = {
            k: v
            for k, v in self.headers.items()
            if k.lower().startswith("x-amz-checksum-") and k.lower() != "x-amz-checksum-algorithm"
        }
        etag = f'"{next(self.server.etags):032x}"'
        self.server.meta[(bucket, key)] = (etag, checksums)
        self._answer(200, {"ETag": etag, **checksums})

    def do_GET(self) -> None:
        bucket, key = self._target()
        final = self.server.root / bucket / urllib.parse.quote(key, safe="")
        try:
            file = open(final, "rb", buffering=0)  # noqa: SIM115 (closed below)
        except FileNotFoundError:
            self._missing(key)
            return
        with file:
            size = os.fstat(file.fileno()).st_size
            etag, checksums = self.server.meta.get((bucket, key), ('"0"', {}))
            headers = {
                "Content-Type": "binary/octet-stream",
                "ETag": etag,
                "Last-Modified": self.date_time_string(),
                "Content-Length": str(size),
            }
            if self.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
                headers.update(checksums)
            self._answer(200, headers)
            buffer = memoryview(bytearray(min(size, CHUNK) or 1))
            while True:
                got = file.readinto(buffer)
                if not got:
                    break
                self.wfile.write(buffer[:got])

    def do_DELETE(self) -> None:
        bucket, key = self._target()
        with contextlib.suppress(FileNotFoundError):
            (self.server.root / bucket / urllib.parse.quote(key, safe="")).unlink()
        self._answer(204, {})


class BaselineServer(ThreadingHTTPServer):
    """The baseline's listening socket: one thread per connection."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
        self.etags = iter(range(1, 1 << 62))
        super().__init__(("127.0.0.1", 0), BaselineHandler)


def serve_baseline(data_dir: Path) -> None:
    """Serve the baseline until stdin closes."""
    root = data_dir / "baseline"
    root.mkdir(parents=True, exist_ok=True)
    server = BaselineServer(root)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    print(json.dumps({"endpoint": endpoint, "pid": os.getpid(), "key": "x", "secret": "x"}))
    sys.stdout.flush()
    sys.stdin.read()
    server.shutdown()


# --- Store's server ---------------------------------------------------------------------------


def serve_store(data_dir: Path, database_url: str) -> None:
    """Build civicloud on ``data_dir``, seed an S3 user with a key, serve the S3 port until
    stdin closes."""
    from civicloud.app import build_services, load_settings, prepare_database
    from civicloud.core import identity, roles, tenants
    from civicloud.core.actor import Actor
    from civicloud.core.logs import configure_logging
    from civicloud.store.context import StoreContext
    from civicloud.store.keys import issue_key
    from civicloud.store.s3.listener import RunningS3

    values: dict[str, Any] = {"data_dir": data_dir / "civicloud", "log_level": "WARNING"}
    if database_url:
        values["database_url"] = database_url
    settings = load_settings(**values)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    services = build_services(settings)
    prepare_database(services)
    context = services.context("store", StoreContext)
    system = Actor.system("bench")
    tag = os.urandom(3).hex()
    with services.db.unit_of_work() as session:
        country = tenants.create_tenant(
            session=session,
            actor=system,
            data=tenants.TenantCreate(
                slug=f"bench-{tag}",
                name_zh="基准国家",
                name_en="Bench Country",
                kind=tenants.TenantKind.COUNTRY,
                region_code="cn-beijing",
            ),
        )
        city = tenants.create_tenant(
            session=session,
            actor=system,
            data=tenants.TenantCreate(
                slug=f"bench-{tag}-city",
                name_zh="基准市",
                name_en="Bench City",
                kind=tenants.TenantKind.PROVINCE,
                parent_id=country.id,
            ),
        )
        user = identity.create_user(
            session=session,
            actor=system,
            data=identity.UserCreate(
                username=f"bench-{tag}", display_name="Bench", tenant_id=city.id
            ),
            passwords=services.passwords,
        )
        roles.grant_role(
            session=session,
            actor=system,
            data=roles.RoleBindingCreate(
                user_id=user.id, role_name="store_admin", tenant_id=city.id
            ),
        )
        issued = issue_key(session=session, actor=system, context=context, user_id=user.id)
    running = RunningS3(context, host="127.0.0.1", port=0, tls=None)
    hello = {
        "endpoint": running.address,
        "pid": os.getpid(),
        "key": issued.key.access_key_id,
        "secret": issued.secret,
        "database": services.db.engine.url.render_as_string(),
    }
    print(json.dumps(hello))
    sys.stdout.flush()
    sys.stdin.read()
    running.stop(5)


@dataclass
class Server:
    """A server child: its endpoint, credentials and process."""

    name: str
    process: subprocess.Popen[str]
    endpoint: str
    pid: int
    key: str
    secret: str
    database: str = ""

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory(self, field_name: str) -> int:
        """A ``/proc/PID/status`` memory figure (``VmHWM``, ``VmRSS``) in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        """Close its stdin (it stops), then kill it if it lingers."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(name: str, data_dir: Path, database_url: str) -> Server:
    """Start the ``store`` or ``baseline`` child and wait for its hello."""
    command = [sys.executable, __file__, f"--_child={name}", f"--data-dir={data_dir}"]
    if database_url:
        command.append(f"--database-url={database_url}")
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 180)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        raise SystemExit(f"the {name} server did not start (see its errors above)")
    return Server(name=name, process=process, **json.loads(line))


# --- the clients (worker processes) -----------------------------------------------------------


def make_client(endpoint: str, key: str, secret: str) -> Any:
    """A boto3 S3 client, default checksum settings, no retries (an error must show)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(
            retries={"max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
            max_pool_connections=4,
            connect_timeout=30,
            read_timeout=300,
        ),
    )


@dataclass
class Result:
    """What one client thread did."""

    latencies: list[float] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    bytes: int = 0
    error: str = ""


class WorkerState:
    """One client process: its boto3 clients per (server, thread) and its payloads."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.clients: dict[tuple[str, int], Any] = {}
        self.small = os.urandom(SMALL)
        self.large = b""
        self.sent: dict[str, dict[str, str]] = {}

    def client(self, server: dict[str, str], thread: int) -> Any:
        slot = (server["name"], thread)
        if slot not in self.clients:
            client = make_client(server["endpoint"], server["key"], server["secret"])
            client.meta.events.register("before-send.s3.PutObject", self._seen(server["name"]))
            self.clients[slot] = client
        return self.clients[slot]

    def _seen(self, name: str) -> Callable[..., None]:
        def record(request: Any, **_: Any) -> None:
            if name not in self.sent:
                self.sent[name] = {
                    k: (v.decode() if isinstance(v, bytes) else str(v))
                    for k, v in request.headers.items()
                }

        return record

    def run(self, command: dict[str, Any]) -> list[Result]:
        """Run one phase on ``threads`` threads, all starting at ``start_at``."""
        server, op, threads = command["server"], command["op"], command["threads"]
        if op.startswith("large") and not self.large:
            self.large = os.urandom(LARGE)
        clients = [self.client(server, t) for t in range(threads)]
        results = [Result() for _ in range(threads)]

        def work(t: int) -> None:
            client, result = clients[t], results[t]
            keys = [f"{command['prefix']}/{self.index}-{t}-{i}" for i in range(command["count"])]
            delay = command["start_at"] - time.time()
            if delay > 0:
                time.sleep(delay)
            result.started = time.perf_counter()
            try:
                for key in keys:
                    began = time.perf_counter()
                    if op.endswith("put"):
                        body = self.large if op == "large-put" else self.small
                        client.put_object(Bucket=BUCKET, Key=key, Body=body)
                        result.bytes += len(body)
                    elif op.endswith("get"):
                        answer = client.get_object(Bucket=BUCKET, Key=key)
                        for chunk in answer["Body"].iter_chunks(CHUNK):
                            result.bytes += len(chunk)
                    else:
                        client.delete_object(Bucket=BUCKET, Key=key)
                    result.latencies.append(time.perf_counter() - began)
            except Exception as exc:  # reported to the parent, which stops the run
                result.error = f"{type(exc).__name__}: {exc}"
            result.ended = time.perf_counter()

        pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        return results


def worker_main(index: int, connection: Any) -> None:
    """A client process: run each command it is sent, answer with the results."""
    state = WorkerState(index)
    while True:
        command = connection.recv()
        if command is None:
            return
        if command == "headers":
            connection.send(state.sent)
            continue
        connection.send(state.run(command))


class Clients:
    """The client processes."""

    def __init__(self, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes = []
        self.processes = []
        for index in range(processes):
            parent, child = context.Pipe()
            process = context.Process(target=worker_main, args=(index, child), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def run(
        self, server: Server, op: str, *, prefix: str, count: int, processes: int, threads: int
    ) -> list[Result]:
        """Every used process runs ``threads`` client threads of ``count`` operations each."""
        command = {
            "server": {
                "name": server.name,
                "endpoint": server.endpoint,
                "key": server.key,
                "secret": server.secret,
            },
            "op": op,
            "prefix": prefix,
            "count": count,
            "threads": threads,
            "start_at": time.time() + 0.3,
        }
        for pipe in self.pipes[:processes]:
            pipe.send(command)
        results = [r for pipe in self.pipes[:processes] for r in pipe.recv()]
        for result in results:
            if result.error:
                raise SystemExit(f"{server.name} {op}: {result.error}")
        return results

    def headers(self) -> dict[str, dict[str, str]]:
        """The headers of the first PutObject each server was sent (from process 0)."""
        self.pipes[0].send("headers")
        answer: dict[str, dict[str, str]] = self.pipes[0].recv()
        return answer

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for process in self.processes:
            process.join(5)


# --- the measurement --------------------------------------------------------------------------


@dataclass
class Phase:
    """One server's figures for one phase of one round."""

    rate: float  # MiB/s (large) or operations/s (small)
    p50: float  # seconds
    p99: float
    cpu: float  # the server's CPU seconds per operation


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def measure(
    clients: Clients,
    server: Server,
    op: str,
    *,
    prefix: str,
    count: int,
    processes: int,
    threads: int,
) -> Phase:
    """Run one phase against one server and summarise it."""
    cpu = server.cpu_seconds()
    results = clients.run(
        server, op, prefix=prefix, count=count, processes=processes, threads=threads
    )
    cpu = server.cpu_seconds() - cpu
    latencies = [x for r in results for x in r.latencies]
    span = max(r.ended for r in results) - min(r.started for r in results)
    if op.startswith("large"):
        rate = sum(r.bytes for r in results) / MIB / sum(latencies)
    else:
        rate = len(latencies) / span
    return Phase(
        rate, percentile(latencies, 0.5), percentile(latencies, 0.99), cpu / len(latencies)
    )


def disk_rates(directory: Path, size: int, files: int) -> dict[str, float]:
    """The disk's own figures: write+fsync MiB/s, read MiB/s (cold and cached), and 4 KiB
    file + fsync + rename + directory fsync per second."""
    directory.mkdir(parents=True, exist_ok=True)
    block = os.urandom(CHUNK)
    paths = [directory / f"disk-{i}" for i in range(files)]
    began = time.perf_counter()
    for path in paths:
        with open(path, "wb", buffering=0) as file:
            for _ in range(size // CHUNK):
                file.write(block)
            os.fsync(file.fileno())
    write = files * size / MIB / (time.perf_counter() - began)
    figures = {"write+fsync MiB/s": write}
    for label, evict in (("read (cold) MiB/s", True), ("read (cached) MiB/s", False)):
        buffer = memoryview(bytearray(CHUNK))
        began = time.perf_counter()
        for path in paths:
            with open(path, "rb", buffering=0) as file:
                if evict:
                    os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                while file.readinto(buffer):
                    pass
        figures[label] = files * size / MIB / (time.perf_counter() - began)
    small = os.urandom(SMALL)
    began, count = time.perf_counter(), 0
    while time.perf_counter() - began < 2.0:
        temp, final = directory / f".s{count}.tmp", directory / f"s{count}"
        with open(temp, "wb", buffering=0) as file:
            file.write(small)
            os.fsync(file.fileno())
        os.rename(temp, final)
        _fsync_dir(directory)
        count += 1
    figures["4 KiB write+fsync+rename+dir fsync /s"] = count / (time.perf_counter() - began)
    shutil.rmtree(directory)
    return figures


@contextlib.contextmanager
def profiled(server: Server, label: str, out: Path | None) -> Iterator[None]:
    """py-spy the server while the block runs, when ``out`` is set."""
    if out is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    target = out / f"{label}.txt"
    process = subprocess.Popen(
        [
            *(spy, "record", "--pid", str(server.pid), "--rate", "250", "--format", "raw"),
            *("--output", str(target), "--nonblocking"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
    print_profile(label, target)


def print_profile(label: str, path: Path) -> None:
    """The functions the server spent its samples in (self, and inclusive within civicloud)."""
    if not path.exists():
        print(f"  profile {label}: py-spy wrote nothing (is ptrace allowed?)")
        return
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if "civicloud/" in frame or "site-packages" not in frame:
                inclusive[frame] += count
    if not total:
        return
    print(f"  profile {label}: {total} samples (active threads), {path}")
    print("    most time spent in (self):")
    for frame, count in own.most_common(12):
        print(f"      {count / total:6.1%}  {frame}")
    print("    most time spent under (inclusive, civicloud and the standard library):")
    for frame, count in inclusive.most_common(18):
        print(f"      {count / total:6.1%}  {frame}")


class RepeatedBody(io.RawIOBase):
    """``size`` bytes made of one random MiB over and over, read as a file (seekable, so
    botocore can checksum it and rewind), never held in memory."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.block = os.urandom(CHUNK)
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.size}[whence]
        self.position = max(0, min(self.size, base + offset))
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self.size - self.position)
        done = 0
        while done < n:
            at = (self.position + done) % CHUNK
            piece = min(n - done, CHUNK - at)
            view[done : done + piece] = self.block[at : at + piece]
            done += piece
        self.position += n
        return n


def huge_transfer(server: Server, gib: float) -> None:
    """PUT one object of ``gib`` GiB in a single request, GET it back streamed, and print the
    rates with the store's memory while it ran (sampled, and its peak): flat, or it is a bug."""
    size = int(gib * (1 << 30))
    client = make_client(server.endpoint, server.key, server.secret)
    before_peak = server.memory("VmHWM")
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            samples.append(server.memory("VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        began = time.perf_counter()
        client.put_object(Bucket=BUCKET, Key="huge", Body=RepeatedBody(size))
        put_seconds = time.perf_counter() - began
        began = time.perf_counter()
        received = 0
        answer = client.get_object(Bucket=BUCKET, Key="huge")
        for chunk in answer["Body"].iter_chunks(CHUNK):
            received += len(chunk)
        get_seconds = time.perf_counter() - began
        client.delete_object(Bucket=BUCKET, Key="huge")
    finally:
        stop.set()
        sampler.join()
    if received != size:
        raise SystemExit(f"huge object: {received} bytes came back of {size}")
    print(
        f"huge object ({size / (1 << 30):.2f} GiB, one PUT, one streamed GET): "
        f"PUT {size / MIB / put_seconds:.0f} MiB/s, GET {size / MIB / get_seconds:.0f} MiB/s; "
        f"store memory while it ran: {min(samples, default=0) / MIB:.0f} to "
        f"{max(samples, default=0) / MIB:.0f} MiB (VmRSS), peak (VmHWM) "
        f"{before_peak / MIB:.0f} MiB before it, {server.memory('VmHWM') / MIB:.0f} MiB after",
        flush=True,
    )


def run_benchmark(args: argparse.Namespace, data_dir: Path, database_url: str) -> None:
    """Set up, measure round after round, print the figures and the headline."""
    rounds = args.rounds or (2 if args.quick else 6)
    large_count = args.large or (2 if args.quick else 4)
    small_one = args.small or (60 if args.quick else 200)
    small_each = max(1, small_one // 5)
    processes, threads = 4, 4
    print(
        f"store_throughput: {rounds} rounds; {large_count} x {LARGE // MIB} MiB per server per "
        f"round; 4 KiB: {small_one} ops at 1 client, {small_each} per client at "
        f"{processes}x{threads} clients; data on {data_dir}",
        flush=True,
    )

    disk = disk_rates(data_dir / "disk", LARGE, 2 if args.quick else 4)
    print("disk (this data directory's file system, Python, 1 MiB blocks):")
    for label, value in disk.items():
        print(f"  {label:<40} {value:10.1f}")

    servers = [
        start_server("store", data_dir, database_url),
        start_server("baseline", data_dir, ""),
    ]
    clients = Clients(processes)
    profile_dir = Path(tempfile.mkdtemp(prefix="store-profile-")) if args.profile else None
    try:
        started_rss = {s.name: s.memory("VmRSS") for s in servers}
        for server in servers:
            client = make_client(server.endpoint, server.key, server.secret)
            client.create_bucket(Bucket=BUCKET)
            # Warm-up: every client thread's connection, and the store's caches.
            for op in ("small-put", "small-get"):
                clients.run(
                    server, op, prefix="warm", count=5, processes=processes, threads=threads
                )
        phases = [
            ("large PUT", "large-put", large_count, 1, 1),
            ("large GET", "large-get", large_count, 1, 1),
            ("small PUT x1", "small-put", small_one, 1, 1),
            ("small GET x1", "small-get", small_one, 1, 1),
            ("small PUT x16", "small-put", small_each, processes, threads),
            ("small GET x16", "small-get", small_each, processes, threads),
        ]
        samples: dict[tuple[str, str], list[Phase]] = {}
        for round_index in range(rounds):
            order = servers if round_index % 2 == 0 else servers[::-1]
            for label, op, count, procs, per in phases:
                prefix = f"r{round_index}-{label.split()[0]}-{procs * per}"
                for server in order:
                    sample = measure(
                        clients,
                        server,
                        op,
                        prefix=prefix,
                        count=count,
                        processes=procs,
                        threads=per,
                    )
                    samples.setdefault((label, server.name), []).append(sample)
            # The large objects of the round go (not timed): the disk holds a few at a time.
            for server in servers:
                clients.run(
                    server,
                    "large-delete",
                    prefix=f"r{round_index}-large-1",
                    count=large_count,
                    processes=1,
                    threads=1,
                )
            ratios = {
                label: samples[(label, "store")][-1].rate / samples[(label, "baseline")][-1].rate
                for label, *_ in phases
            }
            print(
                f"round {round_index + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()),
                flush=True,
            )

        if profile_dir is not None:
            store = servers[0]
            for label, op, count, procs, per in phases:
                with profiled(store, label.replace(" ", "-"), profile_dir):
                    clients.run(
                        store,
                        op,
                        prefix=f"profile-{label.split()[0]}-{procs * per}",
                        count=count * 2,
                        processes=procs,
                        threads=per,
                    )

        if args.huge:
            huge_transfer(servers[0], args.huge)
        sent = clients.headers()
        memory = {s.name: (started_rss[s.name], s.memory("VmHWM")) for s in servers}
        report(phases, samples, rounds, sent, memory, servers[0].database, disk)
    finally:
        clients.close()
        for server in servers:
            server.stop()


def report(
    phases: list[tuple[str, str, int, int, int]],
    samples: dict[tuple[str, str], list[Phase]],
    rounds: int,
    sent: dict[str, dict[str, str]],
    memory: dict[str, tuple[int, int]],
    database: str,
    disk: dict[str, float],
) -> None:
    """Print the medians, ratios, checksums, memory and the headline."""

    def med(label: str, name: str, attr: str) -> float:
        return float(statistics.median(getattr(p, attr) for p in samples[(label, name)]))

    print(f"\nmedians over {rounds} rounds (store database: {database.rsplit('@', 1)[-1]})")
    print(
        f"{'phase':<15}{'store':>12}{'baseline':>12}{'ratio':>8}{'range':>12}{'goal':>6}"
        f"{'p50 ms s/b':>16}{'p99 ms s/b':>18}{'CPU ms/op s/b':>18}"
    )
    gated: dict[str, float] = {}
    for label, op, *_ in phases:
        unit = "MiB/s" if op.startswith("large") else "op/s"
        per_round = [
            s.rate / b.rate
            for s, b in zip(samples[(label, "store")], samples[(label, "baseline")], strict=True)
        ]
        ratio = float(statistics.median(per_round))
        goal = GOALS.get(label)
        if goal is not None:
            gated[label] = ratio
        print(
            f"{label:<15}{med(label, 'store', 'rate'):>7.0f} {unit:<4}"
            f"{med(label, 'baseline', 'rate'):>7.0f} {unit:<4}{ratio:>8.2f}"
            f"{f'{min(per_round):.2f}..{max(per_round):.2f}':>12}"
            f"{(f'{goal:.1f}' if goal else '-'):>6}"
            f"{med(label, 'store', 'p50') * 1e3:>9.1f}/{med(label, 'baseline', 'p50') * 1e3:<6.1f}"
            f"{med(label, 'store', 'p99') * 1e3:>11.1f}/{med(label, 'baseline', 'p99') * 1e3:<6.1f}"
            f"{med(label, 'store', 'cpu') * 1e3:>11.2f}/{med(label, 'baseline', 'cpu') * 1e3:<6.2f}"
        )
    print("(CPU: the server process's user+system time per operation)")
    # Which server goes first moves the large PUT: a burst of writes on an idle disk runs
    # faster than one right after the other server's. Shown per order, so it can be seen.
    for label, *_ in phases:
        if label not in GOALS or rounds < 2:
            continue
        by_order = {
            first: [
                s.rate / b.rate
                for i, (s, b) in enumerate(
                    zip(samples[(label, "store")], samples[(label, "baseline")], strict=True)
                )
                if (i % 2 == 0) == (first == "store")
            ]
            for first in ("store", "baseline")
        }
        print(
            f"  {label}: store first {statistics.median(by_order['store']):.2f}, "
            f"baseline first {statistics.median(by_order['baseline']):.2f}"
        )
    for name, headers in sent.items():
        shown = {
            k: (v if len(v) < 70 else v[:24] + "...")
            for k, v in headers.items()
            if k.lower().startswith(("x-amz-", "content-", "expect", "transfer-"))
        }
        print(f"boto3's PutObject headers to {name}: {json.dumps(shown, sort_keys=True)}")
    for name, (rss, hwm) in memory.items():
        print(
            f"{name} server memory: {rss / MIB:.0f} MiB after start, peak (VmHWM) {hwm / MIB:.0f} MiB"
        )
    print(
        f"disk: write+fsync {disk['write+fsync MiB/s']:.0f} MiB/s, read "
        f"{disk['read (cold) MiB/s']:.0f} MiB/s cold / {disk['read (cached) MiB/s']:.0f} cached, "
        f"{disk['4 KiB write+fsync+rename+dir fsync /s']:.0f} small durable files/s"
    )
    for label, ratio in gated.items():
        print(f"store_throughput {label}: ratio={ratio:.2f} goal={GOALS[label]}")
    worst = min(gated, key=lambda k: gated[k] / GOALS[k])
    headline = gated[worst] / GOALS[worst]
    print(f"headline: the lowest ratio/goal is {worst} ({gated[worst]:.2f} / {GOALS[worst]})")
    print(f"store_throughput ratio={headline:.2f} goal=1.0")


def main() -> None:
    """Parse the options; run a server child, or the benchmark."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    parser.add_argument(
        "--rounds",
        type=int,
        help="rounds (default 6, quick 2: even, so each server goes first as often)",
    )
    parser.add_argument("--large", type=int, help="64 MiB objects per server per round (4/2)")
    parser.add_argument(
        "--small",
        type=int,
        help="4 KiB ops at one client per round (200, quick 60); a fifth of it per client at 16",
    )
    parser.add_argument(
        "--database-url", default="", help="Store's database (default SQLite in the data dir)"
    )
    parser.add_argument(
        "--postgres", action="store_true", help="Store on a throwaway PostgreSQL cluster"
    )
    parser.add_argument("--data-dir", help="where both servers write (default: a temp dir)")
    parser.add_argument("--profile", action="store_true", help="py-spy each store phase")
    parser.add_argument(
        "--huge",
        type=float,
        metavar="GIB",
        help="also PUT and GET one object of GIB GiB (5: S3's largest single PUT) and print "
        "the store's memory while it passes",
    )
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._child:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us via stdin
        if args._child == "store":
            serve_store(Path(args.data_dir), args.database_url)
        else:
            serve_baseline(Path(args.data_dir))
        return

    base = Path(args.data_dir) if args.data_dir else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="civicloud-store-bench-", dir=base) as data_dir:
        if args.postgres and not args.database_url:
            import _postgres

            with _postgres.cluster() as pg:
                if pg is None:
                    raise SystemExit("--postgres: no PostgreSQL server binaries installed")
                run_benchmark(args, Path(data_dir), pg.create_database("store_bench"))
            return
        run_benchmark(args, Path(data_dir), args.database_url)


if __name__ == "__main__":
    main()
