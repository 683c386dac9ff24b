"""Traffic's functional fixtures: the application over the shared database, a world of two
sibling provinces, a generated network file, and a site (a junction stored for a city, with an
engineer and a viewer) whose counts the kept-counts tests send."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.factories.core import Member, SiblingWorld, make_member, make_sibling_world, unique

from civicloud import cli
from civicloud.app import create_app
from civicloud.cli import common
from civicloud.core.actor import Actor
from civicloud.core.services import Services
from civicloud.traffic import networks, sumo
from civicloud.traffic.context import TrafficContext
from civicloud.traffic.network import Network, read_network

ZONE = ZoneInfo("Asia/Shanghai")
#: The day the kept-counts tests count on.
DAY = date(2026, 11, 2)


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


class Junction(tuple[bytes, Network]):
    """The generated file and its network, with a short repr (hypothesis prints arguments)."""

    def __repr__(self) -> str:
        return "<junction network>"


@pytest.fixture(scope="module")
def junction(tmp_path_factory: pytest.TempPathFactory) -> Junction:
    path = sumo.generate("junction", tmp_path_factory.mktemp("net") / "junction.net.xml")
    return Junction((path.read_bytes(), read_network(Path(path))))


class Site:
    def __init__(self, services: Services, world: SiblingWorld, content: bytes) -> None:
        with services.db.unit_of_work() as session:
            city = session.merge(world.a.child)
            self.engineer: Member = make_member(
                session, services.passwords, home=city, role="traffic_engineer"
            )
            self.viewer: Member = make_member(
                session, services.passwords, home=city, role="traffic_viewer"
            )
            self.network_id = networks.import_network(
                session=session,
                actor=Actor.system("test"),
                tenant_id=city.id,
                name=unique("junction"),
                content=content,
            ).id
            self.tenant_id = city.id
        self.outsider = world.b.admin


@pytest.fixture
def site(core_services: Services, world: SiblingWorld, junction: tuple[bytes, Network]) -> Site:
    return Site(core_services, world, junction[0])


@pytest.fixture
def context(core_services: Services) -> TrafficContext:
    return core_services.context("traffic", TrafficContext)


def quarter_rows(
    net: Network, day: date, hours: range, per_slot: int = 20
) -> list[dict[str, object]]:
    """15-minute counts of every movement of the junction, ISO times in the installation's zone."""
    rows: list[dict[str, object]] = []
    signal = net.signals["A0"]
    for hour in hours:
        for quarter in range(4):
            begin = datetime(day.year, day.month, day.day, hour, quarter * 15, tzinfo=ZONE)
            end = begin + timedelta(minutes=15)
            for (f, t), links in sorted(signal.movements().items()):
                rows.append(
                    {
                        "interval_begin": begin.isoformat(),
                        "interval_end": end.isoformat(),
                        "tls_id": "A0",
                        "from_edge": f,
                        "to_edge": t,
                        "dir": links[0].dir,
                        "count": per_slot if links[0].dir == "s" else per_slot // 5,
                    }
                )
    return rows
