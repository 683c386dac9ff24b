"""``civicloud audit``: verify, seal and read the hash-chained audit log."""

from __future__ import annotations

import typer

from civicloud.cli.common import (
    DataDirOpt,
    cli_actor,
    console,
    err_console,
    handle_errors,
    open_services,
    print_rows,
    unit_of_work,
)
from civicloud.core import audit
from civicloud.core.actor import Actor

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@audit_app.command("verify")
@handle_errors
def verify(
    data_dir: DataDirOpt = None,
    heads: bool = typer.Option(
        False,
        "--heads",
        help="Also print each chain's head (chain, last chain_seq, hash), to note elsewhere.",
    ),
) -> None:
    """Check every chain of the log; report the first edited, removed or reordered record, or a
    chain cut off or removed whole (exit 1)."""
    services = open_services(data_dir)
    with services.db.unit_of_work(write=False) as session:
        result = audit.verify_chain(session=session)
    if not result.ok:
        err_console.print(f"[bold red]FAIL[/] {result.describe()}", highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]OK[/] {result.describe()}", highlight=False)
    if heads:
        for chain, chain_seq, last_hash in result.heads:
            console.print(f"{chain} {chain_seq} {last_hash}", highlight=False, soft_wrap=True)


@audit_app.command("seal")
@handle_errors
def seal(data_dir: DataDirOpt = None) -> None:
    """Seal the records kept before this installation had its audit key, once the log verifies
    (a damaged log is refused, never sealed)."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        sealed = audit.seal_chain(session=session, actor=cli_actor())
    console.print(f"[green]OK[/] {sealed} records sealed", highlight=False)


@audit_app.command("list")
@handle_errors
def list_records(
    data_dir: DataDirOpt = None,
    action: str | None = typer.Option(None, help="Only actions starting with this."),
    limit: int = typer.Option(50, min=1, max=10_000),
) -> None:
    """Show the newest audit records."""
    services = open_services(data_dir)
    with services.db.unit_of_work(write=False) as session:
        rows = audit.list_records(
            session=session, actor=Actor.system("cli"), action=action, limit=limit
        )
        print_rows(
            "audit log",
            ["seq", "at", "actor", "action", "target", "outcome"],
            [
                [r.seq, r.at.isoformat(timespec="seconds"), r.actor, r.action, r.target, r.outcome]
                for r in rows
            ],
        )


def register(root: typer.Typer) -> None:
    """Add the ``audit`` group."""
    root.add_typer(audit_app, name="audit")
