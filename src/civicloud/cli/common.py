"""What every command shares: ``--data-dir``, opening the services, one unit of work, and
turning service errors into one line on stderr and an exit code."""

from __future__ import annotations

import functools
import getpass
import logging
import os
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from alembic.util import CommandError as AlembicCommandError
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session
from typer._click import globals as click_globals

from civicloud.app import build_services, error_message, prepare_database
from civicloud.app import load_settings as installation_settings
from civicloud.core.actor import Actor
from civicloud.core.config import Settings
from civicloud.core.errors import CivicloudError, Misconfigured
from civicloud.core.logs import configure_logging
from civicloud.core.services import Services

console = Console()
err_console = Console(stderr=True)

DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Data directory (default: CIVICLOUD_DATA_DIR or ./civicloud-data).",
        file_okay=False,
        dir_okay=True,
        resolve_path=True,
    ),
]
HostOpt = Annotated[
    str | None,
    typer.Option(
        "--host", help="Address to listen on [default: CIVICLOUD_WEB__HOST or 127.0.0.1]."
    ),
]
PortOpt = Annotated[
    int | None,
    typer.Option(
        "--port", min=1, max=65535, help="Port to listen on [default: CIVICLOUD_WEB__PORT or 8000]."
    ),
]

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one line on stderr and return the ``Exit`` to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def cli_language() -> str:
    """The language of the shell's messages: Chinese under a ``zh`` locale, else English."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name)
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


_DB_UNUSABLE = "the database cannot be used: %(reason)s"
_DB_ERROR = "database error: %(reason)s"
_FILE_ERROR = "a file cannot be used: %(reason)s"
_UNKNOWN_SCHEMA = "the database's schema is not one this civicloud knows: %(reason)s"
_BAD_SETTING = "bad configuration: %(name)s: %(reason)s"


def _said(error: CivicloudError) -> str:
    """What ``error`` says in the shell's language (through the pages' catalogs)."""
    return error_message(error, cli_language())


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn service and database errors into one clear line and a non-zero exit, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except CivicloudError as exc:
            raise fail(error_message(exc, cli_language()), exc.exit_code) from None
        # What the driver, the system or Alembic says stays as it says it (a parameter); the
        # sentence around it is translated like a service's error.
        except OperationalError as exc:
            reason = str(exc.orig or exc).splitlines()[0]
            raise fail(_said(Misconfigured(_DB_UNUSABLE, params={"reason": reason}))) from None
        except SQLAlchemyError as exc:
            raise fail(
                _said(Misconfigured(_DB_ERROR, params={"reason": type(exc).__name__}))
            ) from None
        except OSError as exc:
            reason = f"{exc.strerror or exc}: {exc.filename or ''}".strip(": ")
            raise fail(_said(Misconfigured(_FILE_ERROR, params={"reason": reason}))) from None
        except AlembicCommandError as exc:
            raise fail(_said(Misconfigured(_UNKNOWN_SCHEMA, params={"reason": str(exc)}))) from None

    return wrapper


def load_settings(data_dir: Path | None) -> Settings:
    """Settings from the environment, with ``--data-dir`` applied."""
    try:
        settings = installation_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "CIVICLOUD_" + "__".join(str(part) for part in first["loc"]).upper()
        raise fail(
            _said(Misconfigured(_BAD_SETTING, params={"name": name, "reason": str(first["msg"])}))
        ) from None
    return settings.with_data_dir(data_dir)


def open_services(
    data_dir: Path | None, *, migrate: bool = True, settings: Settings | None = None
) -> Services:
    """Build the services for ``data_dir`` (or ``settings``, from :func:`load_settings`); by
    default bring the database up to date first."""
    settings = settings or load_settings(data_dir)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    services = build_services(settings)
    context = click_globals.get_current_context(silent=True)
    if context is not None:
        # Close pooled connections when the command ends, not at interpreter exit.
        context.call_on_close(services.db.dispose)
    if migrate:
        prepare_database(services)
    return services


def cli_actor() -> Actor:
    """The operator at this machine's shell, named after the OS user for the audit log."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Actor.system(f"cli:{who}")


def unit_of_work(services: Services) -> AbstractContextManager[Session]:
    """One transaction for one command (``Database.unit_of_work``), named in the logs and the
    audit log by a request id of its own."""
    return services.db.unit_of_work(request_id=f"cli-{uuid.uuid4().hex}")


def print_rows(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print a table."""
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)
