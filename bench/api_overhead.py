"""API overhead: an authenticated, authorised tenant read against a bare endpoint of the same app.

Both endpoints are served by one uvicorn process running one application object, so they share
the server, the middleware stack (request id, body limit, metrics, access log) and its settings.
The difference is what civicloud adds per request: Bearer API-key lookup, building the actor,
the database read, the subtree authorisation rule and the response model.

    .venv/bin/python bench/api_overhead.py            # about 1.5 minutes
    .venv/bin/python bench/api_overhead.py --quick    # under 30 seconds
    .venv/bin/python bench/api_overhead.py --database-url postgresql+psycopg://u:pw@host/db

The last line printed is ``api_overhead ratio=X goal=0.5``: X is full/bare requests per second,
the median over interleaved rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import _loadgen
from civicloud.app import load_settings

if TYPE_CHECKING:
    from civicloud.core.services import Services

GOAL = 0.5
BARE_PATH = "/bench/bare"


# --- the server (a child process) -------------------------------------------------------------


def seed(services: Services) -> tuple[str, uuid.UUID]:
    """A country > province > city, a user granted tenant_admin at the province, and its API key.

    Returns the key's token and the city's id: reading the city exercises the subtree rule.
    """
    from civicloud.core import identity, roles, tenants
    from civicloud.core.actor import Actor

    system = Actor.system("bench")
    # A fresh suffix, so that repeated runs against one PostgreSQL database do not collide.
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
        province = tenants.create_tenant(
            session=session,
            actor=system,
            data=tenants.TenantCreate(
                slug=f"bench-{tag}-province",
                name_zh="基准省",
                name_en="Bench Province",
                kind=tenants.TenantKind.PROVINCE,
                parent_id=country.id,
            ),
        )
        city = tenants.create_tenant(
            session=session,
            actor=system,
            data=tenants.TenantCreate(
                slug=f"bench-{tag}-city",
                name_zh="基准市",
                name_en="Bench City",
                kind=tenants.TenantKind.CITY,
                parent_id=province.id,
            ),
        )
        user = identity.create_user(
            session=session,
            actor=system,
            data=identity.UserCreate(
                username=f"bench-{tag}", display_name="Bench", tenant_id=province.id
            ),
            passwords=services.passwords,
        )
        # The grant is at the province; the city read below is allowed by the subtree rule.
        roles.grant_role(
            session=session,
            actor=system,
            data=roles.RoleBindingCreate(
                user_id=user.id, role_name="tenant_admin", tenant_id=province.id
            ),
        )
        issued = identity.issue_api_key(
            session=session,
            actor=system,
            data=identity.ApiKeyCreate(name="bench"),
            default_days=1,
            user_id=user.id,
        )
    return issued.token, city.id


def serve(database_url: str, data_dir: str, announce: bool) -> None:
    """Build, migrate and seed civicloud, add the bare route, then serve until SIGTERM."""
    import uvicorn

    from civicloud.app import build_services, create_app, prepare_database
    from civicloud.core.logs import configure_logging

    settings = load_settings(
        data_dir=Path(data_dir), database_url=database_url, log_level="WARNING"
    )
    configure_logging(settings.log_level, json_lines=settings.log_json)
    services = build_services(settings)
    prepare_database(services)
    token, tenant_id = seed(services)

    app = create_app(services=services)

    @app.get(BARE_PATH, include_in_schema=False)
    def bare() -> dict[str, str]:
        """The baseline: the same app and middleware, no authentication and no database."""
        return {"status": "ok"}

    # Routing tries routes in order: the bare route goes first, so that it does not pay for
    # scanning the whole app (its own cost stays the smallest, and the ratio is not flattered).
    app.router.routes.insert(0, app.router.routes.pop())

    # IPPROTO_TCP given explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
    # and without it every keep-alive response stalls ~40 ms (Nagle meets delayed ACK).
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    # Listening now: connections made before uvicorn takes the socket wait in the backlog.
    listener.listen(2048)
    port = listener.getsockname()[1]
    # The same server settings as `civicloud serve`, quieter: one worker, no access log.
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
        server_header=False,
        workers=1,
    )
    hello = {
        "port": port,
        "pid": os.getpid(),
        "token": token,
        "tenant_id": str(tenant_id),
        "database": services.db.engine.url.render_as_string(),
    }
    if announce:
        print(json.dumps(hello), flush=True)
    else:
        base = f"http://127.0.0.1:{port}"
        print(f"serving on {base} (pid {os.getpid()}); Ctrl-C stops it", flush=True)
        print(f"  curl -H 'Authorization: Bearer {token}' {base}/api/v1/tenants/{tenant_id}")
        print(f"  curl {base}{BARE_PATH}", flush=True)
    uvicorn.Server(config).run(sockets=[listener])


# --- the measurement ---------------------------------------------------------------------------


@dataclass
class Server:
    """The running server child."""

    process: subprocess.Popen[str]
    port: int
    pid: int
    token: str
    tenant_id: str
    database: str

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server so far (Linux), or NaN."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(database_url: str, data_dir: str) -> Server:
    """Start the server child and wait for it to announce its port and credentials."""
    command = [sys.executable, __file__, "--_child", f"--database-url={database_url}"]
    command.append(f"--data-dir={data_dir}")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 120)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        raise SystemExit("the server did not start (see its errors above)")
    hello = json.loads(line)
    return Server(process=process, **hello)


def fetch(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    """GET ``url`` once and return its status and JSON body."""
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (http on loopback)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


@dataclass
class Sample:
    """One measured run of one endpoint."""

    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu: float
    generator_cpu: float


def measure(
    server: Server, generator: str, url: str, headers: dict[str, str], *, seconds: float, conns: int
) -> Sample:
    """Load ``url`` and check that every answer was a 2xx."""
    cpu_before, started = server.cpu_seconds(), time.perf_counter()
    result = _loadgen.run(generator, url, duration=seconds, connections=conns, headers=headers)
    wall = time.perf_counter() - started
    if result.non_2xx or result.errors or not result.requests:
        raise SystemExit(
            f"{url}: {result.requests} requests, {result.non_2xx} non-2xx, "
            f"{result.errors} socket errors: the measurement would be meaningless"
        )
    return Sample(
        rps=result.rps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        server_cpu=(server.cpu_seconds() - cpu_before) / wall,
        generator_cpu=result.cpu,
    )


def summarise(name: str, path: str, samples: list[Sample]) -> str:
    """One line of medians for an endpoint."""

    def median(attr: str) -> float:
        return float(statistics.median(getattr(s, attr) for s in samples))

    return (
        f"{name:<5} GET {path:<30} {median('rps'):8.0f} req/s   p50 {median('p50_ms'):6.2f} ms"
        f"   p99 {median('p99_ms'):6.2f} ms   server CPU {median('server_cpu'):4.0%}"
        f"   generator CPU {median('generator_cpu'):4.0%}"
    )


def main() -> None:
    """Parse the options, start the server, measure both endpoints and print the ratio."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short run (under 30 s)")
    parser.add_argument(
        "--database-url",
        default="",
        help="PostgreSQL as postgresql+psycopg://USER:PW@HOST/DB (default: SQLite in a temp dir); "
        "the bench adds a few tenants, a user and a key there, so use a throwaway database",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, quick 3)")
    parser.add_argument("--seconds", type=float, help="seconds per endpoint per round (8, quick 3)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per endpoint (3, quick 1)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--serve-only", action="store_true", help="seed and serve, print a curl line, no load"
    )
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._child:
        serve(args.database_url, args.data_dir, announce=True)
        return
    with tempfile.TemporaryDirectory(prefix="civicloud-bench-") as data_dir:
        if args.serve_only:
            serve(args.database_url, data_dir, announce=False)
            return
        run_benchmark(args, data_dir)


def run_benchmark(args: argparse.Namespace, data_dir: str) -> None:
    """Warm up, then measure bare and full in alternating order, round after round."""
    rounds = args.rounds or (3 if args.quick else 5)
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
    generator = _loadgen.available(args.generator)
    cores = os.cpu_count() or 1
    server = start_server(args.database_url, data_dir)
    try:
        base = f"http://127.0.0.1:{server.port}"
        # Both endpoints get the same request headers, so header parsing costs the same.
        headers = {"Authorization": f"Bearer {server.token}"}
        full_path = f"/api/v1/tenants/{server.tenant_id}"
        status, body = fetch(base + full_path, headers)
        if status != 200 or body["id"] != server.tenant_id:
            raise SystemExit(f"the tenant read answered {status}: {body}")
        status, body = fetch(base + BARE_PATH, headers)
        if status != 200:
            raise SystemExit(f"the bare endpoint answered {status}: {body}")
        endpoints = {"bare": base + BARE_PATH, "full": base + full_path}

        print(f"database:   {server.database}")
        print(f"generator:  {_loadgen.describe(generator, args.connections)}")
        print(f"server:     uvicorn, 1 worker, pid {server.pid}; machine: {cores} cores")
        print(f"method:     {warmup:g} s warm-up each, then {rounds} rounds x {seconds:g} s per")
        print("            endpoint, order alternating (bare/full, full/bare, ...)")
        for url in endpoints.values():
            measure(server, generator, url, headers, seconds=warmup, conns=args.connections)

        samples: dict[str, list[Sample]] = {"bare": [], "full": []}
        ratios: list[float] = []
        for number in range(rounds):
            order = ("bare", "full") if number % 2 == 0 else ("full", "bare")
            for name in order:
                samples[name].append(
                    measure(
                        server,
                        generator,
                        endpoints[name],
                        headers,
                        seconds=seconds,
                        conns=args.connections,
                    )
                )
            bare, full = samples["bare"][-1], samples["full"][-1]
            ratios.append(full.rps / bare.rps)
            print(
                f"round {number + 1}/{rounds}: bare {bare.rps:7.0f} req/s (p99 {bare.p99_ms:.1f} ms)"
                f"  full {full.rps:7.0f} req/s (p99 {full.p99_ms:.1f} ms)  ratio {ratios[-1]:.2f}"
            )
    finally:
        server.stop()

    print()
    print(summarise("bare", BARE_PATH, samples["bare"]))
    print(summarise("full", "/api/v1/tenants/{id}", samples["full"]))
    ratio = statistics.median(ratios)
    spread = f"{min(ratios):.2f}..{max(ratios):.2f}"
    print(f"ratio full/bare: median {ratio:.2f} over {rounds} rounds (range {spread})")
    bare_gen = statistics.median(s.generator_cpu for s in samples["bare"])
    bare_srv = statistics.median(s.server_cpu for s in samples["bare"])
    if bare_gen > 0.7 or bare_srv < 0.8:
        print(
            f"note: on the bare endpoint the generator used {bare_gen:.0%} of a core and the "
            f"server {bare_srv:.0%}: the generator (or other load on this {cores}-core machine) "
            "may be limiting the bare figure, which would push the ratio up."
        )
    else:
        print(
            f"note: the server was CPU-bound on the bare endpoint ({bare_srv:.0%} of a core) while "
            f"the generator used {bare_gen:.0%}: the generator is not the bottleneck."
        )
    print(f"api_overhead ratio={ratio:.2f} goal={GOAL}")


if __name__ == "__main__":
    main()
