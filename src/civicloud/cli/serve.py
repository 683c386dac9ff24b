"""``civicloud serve`` and ``civicloud demo``: run the web application in the foreground."""

from __future__ import annotations

import socket
from types import FrameType

import typer
import uvicorn
from sqlalchemy.orm import Session

from civicloud.app import MODULES, create_app
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
from civicloud.core.modules import resolve
from civicloud.core.services import Services
from civicloud.demo import DEMO_USERS, listening_url, seed_demo_world


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
    """``settings`` with each module's section adjusted to where the server listens
    (``Module.listening``: Pay's public address, unless ``CIVICLOUD_PAY__PUBLIC_BASE_URL`` set
    it, since providers send citizens back there and receipts' QR codes open it)."""
    url = listening_url(host, port)
    update: dict[str, object] = {}
    for module in MODULES:
        section = settings.section(module.name)
        if module.listening is None or section is None:
            continue
        derive = resolve(module.listening)
        if callable(derive):
            update[module.name] = derive(section, url)
    return settings.model_copy(update=update) if update else settings


def _public_base_url(settings: Settings) -> str | None:
    section = settings.section("pay")
    value = getattr(section, "public_base_url", None)
    return value if isinstance(value, str) else None


def _say_public_address(settings: Settings, host: str, port: int) -> None:
    """Print the public address (``settings`` as loaded, before it was derived)."""
    section = settings.section("pay")
    public = _public_base_url(with_public_address(settings, host, port))
    if section is None or public is None:
        return
    public = public.rstrip("/")
    if "public_base_url" not in section.model_fields_set:
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


def seed_modules(session: Session, services: Services) -> list[str]:
    """Each installed module's part of the demo world (``Module.demo``), in one unit of work
    with the core's; what each says to print."""
    said: list[str] = []
    for module in services.modules:
        if module.demo is None:
            continue
        seed = resolve(module.demo)
        if not callable(seed):
            raise TypeError(f"{module.demo} is not callable")
        context = services.context(module.name, object) if module.context else None
        lines = seed(session=session, services=services, context=context)
        said.extend(str(line) for line in lines)
    return said


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
            module_lines = seed_modules(session, services)
        url = listening_url(host, port) + "/"
        console.print(
            f"[bold]civicloud demo[/] — {summary.tenants} tenants, data in {services.settings.data_dir}"
        )
        console.print(f"Open {url}  (console: {url}console, API docs: {url}docs)")
        _say_public_address(settings, host, port)
        for line in module_lines:
            console.print(line, highlight=False)
        console.print(f"Demo logins, all with password [bold]{summary.password}[/]:")
        for user in DEMO_USERS:
            roles = ", ".join(f"{r}@{t or 'platform'}" for r, t in user.grants)
            console.print(f"  {user.username:<16} {roles}", highlight=False)
        if serve:
            _run(services, host, port)
