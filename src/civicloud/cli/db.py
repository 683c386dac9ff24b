"""``civicloud db``: database migrations."""

from __future__ import annotations

import typer

from civicloud.cli.common import DataDirOpt, console, handle_errors, open_services
from civicloud.core.migrate import pending

db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)


@db_app.command("upgrade")
@handle_errors
def upgrade(data_dir: DataDirOpt = None) -> None:
    """Apply every pending migration and refresh the built-in regions and roles."""
    services = open_services(data_dir)
    console.print(f"database is up to date: {services.db.engine.url.render_as_string()}")


@db_app.command("status")
@handle_errors
def status(data_dir: DataDirOpt = None) -> None:
    """Say whether migrations are pending (exit 1 if so)."""
    services = open_services(data_dir, migrate=False)
    if pending(services.db.engine):
        console.print("migrations are pending: run `civicloud db upgrade`")
        raise typer.Exit(1)
    console.print("database is up to date")


def register(root: typer.Typer) -> None:
    """Add the ``db`` group."""
    root.add_typer(db_app, name="db")
