"""``civicloud serve`` and ``civicloud demo``: run the web application in the foreground."""

from __future__ import annotations

import socket
from types import FrameType

import typer
import uvicorn

from civicloud.app import create_app
from civicloud.cli.common import (
    DataDirOpt,
    HostOpt,
    PortOpt,
    console,
    fail,
    handle_errors,
    load_settings,
    open_services,
    unit_of_work,
)
from civicloud.core.services import Services
from civicloud.demo import DEMO_USERS, DEMO_WATER_ACCOUNT, seed_demo_world, seed_pay_demo


def _check_port(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise fail(f"cannot resolve --host {host!r}: {exc.strerror}", 2) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise fail(f"cannot listen on {host}:{port}: {exc.strerror}", 2) from None


class _Server(uvicorn.Server):
    """uvicorn's server, for which SIGINT and SIGTERM mean "stop cleanly, exit 0"."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises a captured signal once shut down, so the process would die of it
        # (exit 143/130) after a clean stop; a stop that was asked for is a success.
        self._captured_signals.clear()


def _run(services: Services, host: str, port: int) -> None:
    app = create_app(services=services)
    # SIGINT and SIGTERM: stop accepting, finish in-flight requests, run the application's
    # shutdown (which closes the database pool), then return.
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, proxy_headers=True, server_header=False
    )
    _Server(config).run()
    console.print("civicloud stopped.")


def register(root: typer.Typer) -> None:
    """Add ``serve`` and ``demo``."""

    @root.command()
    @handle_errors
    def serve(data_dir: DataDirOpt = None, host: HostOpt = None, port: PortOpt = None) -> None:
        """Apply migrations and serve civicloud until interrupted (SIGINT/SIGTERM)."""
        web = load_settings(data_dir).web
        host, port = host or web.host, port or web.port
        _check_port(host, port)
        services = open_services(data_dir)
        console.print(f"civicloud on http://{host}:{port}/ (data: {services.settings.data_dir})")
        _run(services, host, port)

    @root.command()
    @handle_errors
    def demo(
        data_dir: DataDirOpt = None,
        host: HostOpt = None,
        port: PortOpt = None,
        serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve after seeding."),
    ) -> None:
        """Create the demo world (idempotently), print the logins, and serve it."""
        web = load_settings(data_dir).web
        host, port = host or web.host, port or web.port
        if serve:
            _check_port(host, port)
        services = open_services(data_dir)
        with unit_of_work(services) as session:
            summary = seed_demo_world(session=session, services=services)
            bills = seed_pay_demo(session=session)
        url = f"http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}/"
        console.print(
            f"[bold]civicloud demo[/] — {summary.tenants} tenants, data in {services.settings.data_dir}"
        )
        console.print(f"Open {url}  (console: {url}console, API docs: {url}docs)")
        console.print(
            f"Pay: {bills} bills of Dalian's water, power and traffic-police billers; "
            f"try water account {DEMO_WATER_ACCOUNT}"
        )
        console.print(f"Demo logins, all with password [bold]{summary.password}[/]:")
        for user in DEMO_USERS:
            roles = ", ".join(f"{r}@{t or 'platform'}" for r, t in user.grants)
            console.print(f"  {user.username:<16} {roles}", highlight=False)
        if serve:
            _run(services, host, port)
