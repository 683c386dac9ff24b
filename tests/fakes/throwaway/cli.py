"""The throwaway module's command."""

from __future__ import annotations

import typer

from civicloud.cli.common import console

app = typer.Typer(help="The throwaway module.", no_args_is_help=True)


@app.command("hello")
def hello() -> None:
    """Say hello."""
    console.print("throwaway says hello")
