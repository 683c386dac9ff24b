"""The ``civicloud`` command line: the root Typer app, assembled from this package's modules.

Each module in this package that defines ``register(root)`` adds its commands; the root finds
them by walking the package, so a new command group needs no edit here.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

# Typer vendors Click; its exceptions are only reachable through this module.
from typer._click import exceptions as click_errors

root = typer.Typer(
    name="civicloud",
    help="civicloud: a self-hostable government cloud.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(root)


_discover()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``civicloud`` script: bad arguments give one line and exit 2."""
    try:
        result = root(args=argv, standalone_mode=False)
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
