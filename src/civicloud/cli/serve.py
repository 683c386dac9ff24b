"""``civicloud serve`` and ``civicloud demo``: run the web application in the foreground, with
the modules' listeners beside it (``core.listeners``).

Each listener option a module declares (``ListenerOption``, such as ``--s3-port``) is an option
of both commands; the value given replaces that field of the module's settings section.
"""

from __future__ import annotations

import functools
import inspect
import socket
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Annotated, Any

import typer
import uvicorn
from pydantic import ValidationError
from sqlalchemy.orm import Session

from civicloud.app import MODULES, create_app, installed_modules
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
from civicloud.core.errors import InvalidInput, Misconfigured
from civicloud.core.listeners import Supervisor, core_hub
from civicloud.core.modules import ListenerOption, Module, resolve
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


def listening_at(settings: Settings, host: str, port: int) -> tuple[Settings, list[str]]:
    """``settings`` with each installed module's section adjusted to where the server listens
    (``Module.listening``: Pay's public address, unless the installation set it), and what each
    module has to say about it."""
    url = listening_url(host, port)
    update: dict[str, object] = {}
    notes: list[str] = []
    for module in installed_modules(settings):
        section = settings.section(module.name)
        if module.listening is None or section is None:
            continue
        derive = resolve(module.listening)
        if not callable(derive):
            raise TypeError(f"{module.listening} is not callable")
        derived, said = derive(section, url)
        update[module.name] = derived
        notes.extend(str(line) for line in said)
    return (settings.model_copy(update=update) if update else settings), notes


def with_public_address(settings: Settings, host: str, port: int) -> Settings:
    """``settings`` adjusted to where the server listens (see :func:`listening_at`)."""
    return listening_at(settings, host, port)[0]


def _say_public_address(settings: Settings, host: str, port: int) -> None:
    """Print what the modules say about where the server listens (``settings`` as loaded)."""
    for line in listening_at(settings, host, port)[1]:
        console.print(line, highlight=False)


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


#: What the listener options given say: ``{(module name, setting): value}``.
Listened = Mapping[tuple[str, str], object]


def listener_options(modules: tuple[Module, ...] = MODULES) -> list[tuple[Module, ListenerOption]]:
    """Every listener option the modules declare, with its module."""
    return [
        (module, option)
        for module in modules
        for listener in module.listeners
        for option in listener.options
    ]


def _parameter(option: ListenerOption) -> str:
    return option.flag.lstrip("-").replace("-", "_")


def with_listener_options(
    command: Callable[..., None], options: list[tuple[Module, ListenerOption]]
) -> Callable[..., None]:
    """``command`` with one more option per listener option (Typer reads the signature); the
    values given reach it as ``listened``."""
    signature = inspect.signature(command, eval_str=True)
    kept = [p for p in signature.parameters.values() if p.name != "listened"]
    taken = {p.name for p in kept}
    added = []
    for _module, option in options:
        name = _parameter(option)
        if name in taken:
            raise ValueError(f"listener option {option.flag} clashes with an option of its own")
        taken.add(name)
        kind: Any = option.kind | None
        added.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[kind, typer.Option(option.flag, help=option.help)],
            )
        )

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        listened: dict[tuple[str, str], object] = {}
        for module, option in options:
            value = kwargs.pop(_parameter(option), None)
            if value is not None:
                listened[(module.name, option.setting)] = value
        command(*args, listened=listened, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*kept, *added])  # type: ignore[attr-defined]
    return wrapper


def with_listened(settings: Settings, listened: Listened | None) -> Settings:
    """``settings`` with the listener options' values written into their modules' sections."""
    update: dict[str, Any] = {}
    for (name, setting), value in (listened or {}).items():
        section = update.get(name) or settings.section(name)
        if section is None:
            raise ValueError(f"module {name!r} has no settings section for {setting!r}")
        try:
            # Validated as the section is: an option's value meets the setting's own rules.
            update[name] = type(section).model_validate({**section.model_dump(), setting: value})
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise InvalidInput(
                "the option for %(setting)s of %(module)s is not valid: %(reason)s",
                params={"setting": setting, "module": name, "reason": reason},
            ) from None
    return settings.model_copy(update=update) if update else settings


def _run(services: Services, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM with the listeners beside; exit 1 if one failed for good."""
    supervisor = Supervisor(services, hub=core_hub(services))
    app = create_app(services=services)
    app.state.supervisor = supervisor  # /readyz reports each listener's health
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
    server = _Server(config)
    failures: list[str] = []

    def failed(name: str, why: str) -> None:
        # From the supervisor's thread: the server stops as on SIGTERM, then says why.
        failures.append(f"listener {name} failed for good: {why}")
        server.should_exit = True

    supervisor.on_failure = failed
    try:
        try:
            supervisor.start()
        except ValueError as exc:  # the hub's TLS files or options, refused by the client
            raise Misconfigured(
                "the listeners cannot be started: %(reason)s", params={"reason": str(exc)}
            ) from None
        for name, address in supervisor.addresses().items():
            console.print(f"{name} on {address}", highlight=False)
        server.run()
    finally:
        # After the web server, so that no request meets a listener already stopped.
        supervisor.stop(10.0)
    console.print("civicloud stopped.")
    if failures:
        raise fail("; ".join(failures))


def register(root: typer.Typer) -> None:
    """Add ``serve`` and ``demo``, each with the modules' listener options."""
    options = listener_options()

    @handle_errors
    def serve(
        data_dir: DataDirOpt = None,
        host: HostOpt = None,
        port: PortOpt = None,
        listened: Listened | None = None,
    ) -> None:
        """Apply migrations and serve civicloud and the modules' listeners until interrupted
        (SIGINT/SIGTERM); exit 1 if a listener fails for good."""
        settings = with_listened(load_settings(data_dir), listened)
        host, port = host or settings.web.host, port or settings.web.port
        _check_port(host, port)
        services = open_services(data_dir, settings=with_public_address(settings, host, port))
        console.print(f"civicloud on http://{host}:{port}/ (data: {services.settings.data_dir})")
        _say_public_address(settings, host, port)
        _run(services, host, port)

    @handle_errors
    def demo(
        data_dir: DataDirOpt = None,
        host: HostOpt = None,
        port: PortOpt = None,
        serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve after seeding."),
        listened: Listened | None = None,
    ) -> None:
        """Create the demo world (idempotently), print the logins, and serve it."""
        settings = with_listened(load_settings(data_dir), listened)
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

    root.command(name="serve")(with_listener_options(serve, options))
    root.command(name="demo")(with_listener_options(demo, options))
