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
from civicloud.core.config import Settings
from civicloud.core.services import Services
from civicloud.demo import (
    DEMO_USERS,
    DEMO_WATER_ACCOUNT,
    listening_url,
    seed_demo_world,
    seed_pay_demo,
)


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


def with_public_address(settings: Settings, host: str, port: int) -> Settings:
    """``settings`` with Pay's public address derived from where the server listens, unless it
    was set (``CIVICLOUD_PAY__PUBLIC_BASE_URL``): providers send citizens back there and
    receipts' QR codes open it, so it must be where the site is reached."""
    if "public_base_url" in settings.pay.model_fields_set:
        return settings
    pay = settings.pay.model_copy(update={"public_base_url": listening_url(host, port)})
    return settings.model_copy(update={"pay": pay})


def _say_public_address(settings: Settings, host: str, port: int) -> None:
    """Print Pay's public address (``settings`` as loaded, before it was derived)."""
    public = with_public_address(settings, host, port).pay.public_base_url.rstrip("/")
    if "public_base_url" not in settings.pay.model_fields_set:
        console.print(
            f"Public address: {public} (CIVICLOUD_PAY__PUBLIC_BASE_URL sets another, "
            "such as the address citizens use behind a proxy)",
            highlight=False,
        )
    elif public != listening_url(host, port):
        console.print(
            f"Public address: {public} (CIVICLOUD_PAY__PUBLIC_BASE_URL); pages opened at "
            "another address say so",
            highlight=False,
        )


def _run(services: Services, host: str, port: int) -> None:
    app = create_app(services=services)
    # SIGINT and SIGTERM: stop accepting, finish in-flight requests, run the application's
    # shutdown (which closes the database pool), then return.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=services.settings.web.trusted_proxies,
        server_header=False,
    )
    _Server(config).run()
    console.print("civicloud stopped.")


def register(root: typer.Typer) -> None:
    """Add ``serve`` and ``demo``."""

    @root.command()
    @handle_errors
    def serve(data_dir: DataDirOpt = None, host: HostOpt = None, port: PortOpt = None) -> None:
        """Apply migrations and serve civicloud until interrupted (SIGINT/SIGTERM)."""
        settings = load_settings(data_dir)
        host, port = host or settings.web.host, port or settings.web.port
        _check_port(host, port)
        services = open_services(data_dir, settings=with_public_address(settings, host, port))
        console.print(f"civicloud on http://{host}:{port}/ (data: {services.settings.data_dir})")
        _say_public_address(settings, host, port)
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
        settings = load_settings(data_dir)
        host, port = host or settings.web.host, port or settings.web.port
        if serve:
            _check_port(host, port)
        services = open_services(data_dir, settings=with_public_address(settings, host, port))
        with unit_of_work(services) as session:
            summary = seed_demo_world(session=session, services=services)
            bills = seed_pay_demo(session=session)
        url = listening_url(host, port) + "/"
        console.print(
            f"[bold]civicloud demo[/] — {summary.tenants} tenants, data in {services.settings.data_dir}"
        )
        console.print(f"Open {url}  (console: {url}console, API docs: {url}docs)")
        _say_public_address(settings, host, port)
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
