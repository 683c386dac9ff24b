"""Traffic's functional fixtures: the application over the shared database, a world of two
sibling provinces, and a generated network file."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.factories.core import SiblingWorld, make_sibling_world

from civicloud import cli
from civicloud.app import create_app
from civicloud.cli import common
from civicloud.core.services import Services
from civicloud.traffic import sumo


@pytest.fixture(scope="session")
def api_app(core_services: Services) -> FastAPI:
    return create_app(services=core_services)


@pytest.fixture
def client(api_app: FastAPI) -> TestClient:
    """Not entered as a context manager: the lifespan would dispose the shared engine's pool."""
    return TestClient(api_app)


@pytest.fixture
def world(core_services: Services) -> SiblingWorld:
    with core_services.db.unit_of_work() as session:
        return make_sibling_world(session, core_services.passwords)


@pytest.fixture(scope="session")
def junction_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("net") / "junction.net.xml"
    return sumo.generate("junction", path).read_bytes()


Run = Callable[..., tuple[int, str]]


@pytest.fixture
def civicloud_traffic(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """``civicloud_traffic("optimize", ...)``: the exit code and everything printed (stdout and stderr)."""
    monkeypatch.setattr(common.console, "width", 200)
    monkeypatch.setattr(common.err_console, "width", 200)
    monkeypatch.setenv("LANG", "en_US.UTF-8")

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            cli.main(["traffic", *args])
        captured = capsys.readouterr()
        code = stopped.value.code
        return (code if isinstance(code, int) else 1), captured.out + captured.err

    return run
