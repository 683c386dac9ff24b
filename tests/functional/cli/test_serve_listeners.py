"""``civicloud serve`` with the modules' listeners: their options, their addresses, and an exit
code that says when one failed for good."""

from __future__ import annotations

import pytest
import typer
from pydantic import BaseModel
from tests.fakes import jobs as job_fakes
from tests.fakes import listeners as fakes
from tests.functional.cli.conftest import Run
from tests.functional.live_server import free_port
from typer.testing import CliRunner

from civicloud.cli import common, serve
from civicloud.core.config import Settings, assemble_settings
from civicloud.core.modules import Listener, ListenerOption, Module
from civicloud.core.services import Services


class EchoSettings(BaseModel):
    """A listener's settings section."""

    port: int = 7
    host: str = "127.0.0.1"


ECHO = Module(
    name="listentest",
    title="Listener test",
    settings=EchoSettings,
    listeners=(
        Listener(
            "listentest.echo",
            "Echo",
            "tests.fakes.listeners:start_echo",
            options=(
                ListenerOption("--echo-port", "port", "The echo server's port."),
                ListenerOption("--echo-host", "host", "The echo server's address.", kind=str),
            ),
        ),
    ),
)


def test_listener_options_become_options_of_the_command() -> None:
    # given a command wrapped with a module's listener options
    seen: list[object] = []

    def command(port: int | None = None, listened: serve.Listened | None = None) -> None:
        seen.append((port, dict(listened or {})))

    app = typer.Typer()
    app.command()(serve.with_listener_options(command, serve.listener_options((ECHO,))))
    app.command("other")(lambda: None)
    # when it is called with one of them
    result = CliRunner().invoke(app, ["command", "--port", "8", "--echo-port", "9000"])
    # then the value reaches the command, by module and setting, and --help shows them
    assert result.exit_code == 0, result.output
    assert seen == [(8, {("listentest", "port"): 9000})]
    helped = CliRunner().invoke(app, ["command", "--help"]).output
    assert "--echo-port" in helped
    assert "--echo-host" in helped


def test_the_values_given_replace_the_modules_settings() -> None:
    # given an installation whose settings have the module's section
    settings: Settings = assemble_settings({"listentest": EchoSettings})()
    # when the listener options' values are applied
    applied = serve.with_listened(settings, {("listentest", "port"): 9000})
    # then that field of the section changed, and nothing else
    section = applied.section("listentest")
    assert isinstance(section, EchoSettings)
    assert (section.port, section.host) == (9000, "127.0.0.1")
    assert serve.with_listened(settings, {}) is settings


@pytest.mark.slow
def test_serve_stops_and_exits_non_zero_when_a_listener_fails_for_good(
    civicloud: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an installation with an echo listener and one that dies whenever it starts
    build = common.build_services

    def with_listeners(settings: Settings) -> Services:
        services = build(settings)
        return job_fakes.with_modules(services, *services.modules, fakes.module("echo", "dead"))

    monkeypatch.setattr(common, "build_services", with_listeners)
    fakes.STARTED.clear()
    # when it is served
    result = civicloud("serve", "--port", str(free_port()))
    # then it printed the echo listener's address, and once the other had failed for good it
    # stopped everything and said why, exiting 1
    assert result.code == 1
    assert f"listentest.echo on {fakes.STARTED[0].address}" in result.out
    assert "listener listentest.dead failed for good: it cannot bind its port" in result.err
    assert "civicloud stopped." in result.out
    assert not fakes.STARTED[0].alive()
