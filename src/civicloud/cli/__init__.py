"""The ``civicloud`` command line: the root Typer app, assembled from this package's modules.

Each module in this package that defines ``register(root)`` adds its commands; the root finds
them by walking the package, so a new command group needs no edit here. Each listed module's
own Typer app (``Module.cli``) is added as ``civicloud <module>``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Iterable

import typer
from pydantic import ValidationError

# Typer vendors Click; its exceptions are only reachable through this module.
from typer._click import exceptions as click_errors

from civicloud.app import MODULES, installed_modules, load_settings
from civicloud.core.errors import CivicloudError
from civicloud.core.modules import Module, resolve

root = typer.Typer(
    name="civicloud",
    help="civicloud: a self-hostable government cloud.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


_ASSEMBLED: list[bool] = []


def assembled() -> typer.Typer:
    """The root app with every command group added (once, on first use: a module's commands
    import this package's helpers, so they cannot be added while it is being imported)."""
    if not _ASSEMBLED:
        _ASSEMBLED.append(True)
        _discover()
    return root


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(root)
    add_module_commands(root, _installed())


def _installed() -> Iterable[Module]:
    """The modules this installation runs (``CIVICLOUD_DISABLED_MODULES`` left out): a module
    switched off brings no commands. Unreadable settings leave every module's commands in
    place, and the command run says what is wrong with them."""
    try:
        return installed_modules(load_settings())
    except (ValidationError, CivicloudError):
        return MODULES


def add_module_commands(app: typer.Typer, modules: Iterable[Module]) -> None:
    """Add each module's own commands to ``app``, as ``civicloud <module> …`` (``Module.cli``)."""
    for declared in modules:
        if declared.cli is None:
            continue
        sub_app = resolve(declared.cli)
        if not isinstance(sub_app, typer.Typer):
            raise TypeError(f"{declared.cli} is not a Typer app")
        app.add_typer(sub_app, name=declared.name)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``civicloud`` script: bad arguments give one line and exit 2."""
    try:
        result = assembled()(args=argv, standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx else "", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    except click_errors.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        print(f"error: {exc.format_message()}{hint}", file=sys.stderr)  # noqa: T201
        sys.exit(exc.exit_code)
    except click_errors.ClickException as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)  # noqa: T201
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)  # noqa: T201
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)
