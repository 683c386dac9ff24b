"""A module plugs in through its declaration alone: a throwaway module (``tests.fakes.throwaway``)
listed beside Pay gets its migration applied, its route, page, navigation entry, stylesheet,
catalog, home card, job, listener, command and demo seeding picked up, with no edit elsewhere;
switched off by a setting, none of it is there.

Each test builds its own database: the throwaway branch's revision must not reach the run's
shared database, whose readiness check expects civicloud's own heads.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select
from tests.conftest import PostgresServer, make_settings
from tests.factories.core import PASSWORD, grant, make_tenant, make_user
from tests.fakes import throwaway
from tests.fakes.throwaway.models import ThrowawayItem
from tests.fakes.throwaway.service import add_item
from tests.functional.core.test_authorization_matrix import walk_routes
from tests.functional.web.helpers import Browser
from typer.testing import CliRunner

from civicloud.app import MODULES, build_services, create_app, prepare_database
from civicloud.cli import add_module_commands
from civicloud.cli.serve import seed_modules
from civicloud.core import permissions
from civicloud.core.jobs.service import run_jobs
from civicloud.core.listeners import Supervisor
from civicloud.core.migrate import heads, pending
from civicloud.core.modules import Installed
from civicloud.core.services import Services
from civicloud.core.tenants import TenantKind
from civicloud.demo import seed_demo_world
from civicloud.web import i18n
from civicloud.web.pages import labels

WITH_THROWAWAY = (*MODULES, throwaway.MODULE)
BASE_URL = "https://testserver"


@pytest.fixture(autouse=True)
def registries_restored() -> Iterator[None]:
    """Put the process's registries back as they were after each test.

    Building services for the throwaway module registers its permissions, roles, catalogs and
    labels in this process (as the composition root does for the listed modules); every later
    test in this worker must see civicloud's own, or a database it prepares would get the
    throwaway's role too.
    """
    saved = (
        dict(permissions._PERMISSIONS),
        dict(permissions._MODULE_ROLES),
        list(i18n._MODULE_CATALOGS),
        dict(labels.FIELD_LABELS),
    )
    yield
    permissions._PERMISSIONS.clear()
    permissions._PERMISSIONS.update(saved[0])
    permissions._MODULE_ROLES.clear()
    permissions._MODULE_ROLES.update(saved[1])
    i18n._MODULE_CATALOGS[:] = saved[2]
    labels.FIELD_LABELS.clear()
    labels.FIELD_LABELS.update(saved[3])


@pytest.fixture
def own_database(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Callable[..., Services]:
    """Services over a new database of the current backend, for the modules given."""

    def build(modules: tuple[object, ...] = WITH_THROWAWAY, **settings: object) -> Services:
        url = ""
        if not database_url.startswith("sqlite"):
            server: PostgresServer = request.getfixturevalue("postgres_server")
            url = server.create_database(f"civicloud_contract_{uuid.uuid4().hex[:12]}")
        base = make_settings(tmp_path / uuid.uuid4().hex[:8], url)
        configured = base.model_copy(update=settings) if settings else base
        return build_services(configured, modules=modules)  # type: ignore[arg-type]

    return build


@pytest.fixture
def services(own_database: Callable[..., Services]) -> Iterator[Services]:
    """Civicloud with the throwaway module installed, migrated."""
    built = own_database()
    prepare_database(built)
    yield built
    built.db.dispose()


def test_its_migration_branch_is_applied_beside_cores(services: Services) -> None:
    # then the throwaway table exists, the database is at every branch's head, and that
    # includes the throwaway branch's revision
    assert "throwaway_item" in inspect(services.db.engine).get_table_names()
    assert "7f0c2e4d9b11" in heads(services.branches)
    assert not pending(services.db.engine, services.branches)


def test_its_route_page_navigation_stylesheet_and_catalog_are_served(services: Services) -> None:
    # given a tenant with an item, and a reader of the module there
    with services.db.unit_of_work() as session:
        root = make_tenant(session, kind=TenantKind.COUNTRY)
        add_item(session=session, tenant_id=root.id, note="first")
        reader = make_user(session, services.passwords, tenant=root)
        grant(session, user=reader, role="throwaway_reader", tenant=root)
        grant(session, user=reader, role="viewer", tenant=root)
        outsider = make_user(session, services.passwords, tenant=root)
        grant(session, user=outsider, role="viewer", tenant=root)
        root_id, reader_name, outsider_name = root.id, reader.username, outsider.username
    app = create_app(services=services)
    routes = {getattr(route, "name", None): path for route, path, _methods in walk_routes(app)}
    # then its API route is mounted under /api/v1 and its page at its own path
    assert routes["throwaway.item.list"] == "/api/v1/throwaway/tenants/{tenant_id}/items"
    assert routes["throwaway.page"] == "/console/throwaway"
    with TestClient(app, base_url=BASE_URL) as client:
        assert Browser(client).sign_in(reader_name, PASSWORD).status_code == 303
        # the route answers through the core's authorisation
        assert client.get(f"/api/v1/throwaway/tenants/{root_id}/items").json() == ["first"]
        assert client.get(f"/api/v1/throwaway/tenants/{uuid.uuid4()}/items").status_code == 404
        # the page renders its own template in both languages, from its own catalog
        zh = client.get("/console/throwaway?lang=zh")
        assert zh.status_code == 200
        assert "临时条目" in zh.text
        en = client.get("/console/throwaway?lang=en")
        assert "Throwaway items" in en.text
        # its navigation entry is shown to its reader, its stylesheet linked and served
        assert 'href="/console/throwaway"' in en.text
        assert "/static/throwaway/throwaway.css?v=" in en.text
        css = client.get("/static/throwaway/throwaway.css")
        assert css.status_code == 200
        assert ".throwaway-title" in css.text
    with TestClient(app, base_url=BASE_URL) as client:
        assert Browser(client).sign_in(outsider_name, PASSWORD).status_code == 303
        # but not to someone holding none of its permissions
        overview = client.get("/console?lang=en")
        assert overview.status_code == 200
        assert 'href="/console/throwaway"' not in overview.text


def test_its_home_card_is_among_the_services_to_come(services: Services) -> None:
    app = create_app(services=services)
    with TestClient(app, base_url=BASE_URL) as client:
        home = client.get("/?lang=zh")
    assert home.status_code == 200
    assert "临时服务" in home.text
    assert "只为一个测试而存在的服务。" in home.text


def test_its_job_is_run_by_the_core_runner_one_item_at_a_time(services: Services) -> None:
    # given two unfinished items
    with services.db.unit_of_work() as session:
        root = make_tenant(session, kind=TenantKind.COUNTRY)
        for note in ("a", "b"):
            add_item(session=session, tenant_id=root.id, note=note)
    # when the core's runner runs every installed module's jobs
    assert "throwaway.finish_items" in {job.name for job in services.modules.jobs()}
    reports = run_jobs(services)
    # then the throwaway job handled both items, and they are finished
    report = next(r for r in reports if r.job == "throwaway.finish_items")
    assert report.outcomes == {"finished": 2}
    with services.db.unit_of_work(write=False) as session:
        assert all(session.scalars(select(ThrowawayItem.done)))


def test_its_listener_is_started_and_stopped_by_the_supervisor(services: Services) -> None:
    supervisor = Supervisor(services)
    supervisor.start()
    try:
        health = supervisor.health()
        assert health.get("throwaway.echo") is None
        address = next(a for name, a in supervisor.addresses().items() if name == "throwaway.echo")
        host, port = address.removeprefix("tcp://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as connection:
            connection.sendall(b"ping\n")
            assert connection.recv(16) == b"ping\n"
    finally:
        supervisor.stop()


def test_its_command_and_demo_seeding_are_picked_up(services: Services) -> None:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """The command line."""

    add_module_commands(app, Installed(WITH_THROWAWAY))
    result = CliRunner().invoke(app, ["throwaway", "hello"])
    assert result.exit_code == 0, result.output
    assert "throwaway says hello" in result.output
    with services.db.unit_of_work() as session:
        seed_demo_world(session=session, services=services)
        said = seed_modules(session, services)
    assert "Throwaway: hello" in said
    with services.db.unit_of_work(write=False) as session:
        assert "demo" in set(session.scalars(select(ThrowawayItem.note)))


def test_a_setting_switches_the_module_off(own_database: Callable[..., Services]) -> None:
    # given an installation that lists the module but switches it off
    services = own_database(disabled_modules="throwaway")
    prepare_database(services)
    try:
        assert "throwaway" not in services.modules.names()
        app = create_app(services=services)
        names = {getattr(route, "name", None) for route, _path, _methods in walk_routes(app)}
        # then none of what it brings is there; its table is still kept up to date
        assert "throwaway.item.list" not in names
        assert "throwaway.page" not in names
        assert "throwaway.finish_items" not in {job.name for job in services.modules.jobs()}
        assert not services.modules.listeners() or all(
            module.name != "throwaway" for module, _ in services.modules.listeners()
        )
        assert "throwaway_item" in inspect(services.db.engine).get_table_names()
        # nor its static files, stylesheet, navigation entry or home card
        assert "static.throwaway" not in names
        with TestClient(app, base_url=BASE_URL) as client:
            home = client.get("/?lang=en")
            assert "Throwaway service" not in home.text
            assert "throwaway.css" not in home.text
            assert client.get("/static/throwaway/throwaway.css").status_code == 404
    finally:
        services.db.dispose()


def test_an_unknown_module_switched_off_is_a_clear_error(
    own_database: Callable[..., Services],
) -> None:
    from civicloud.core.errors import Misconfigured

    with pytest.raises(Misconfigured, match="unknown modules switched off: nosuch"):
        own_database(disabled_modules="nosuch")


def test_the_authorization_matrix_covers_its_route_from_its_spec(services: Services) -> None:
    from tests.factories.core import make_sibling_world
    from tests.fakes.throwaway.matrix_spec import SPEC as THROWAWAY_SPEC
    from tests.functional.core.matrix_spec import SPEC as CORE_SPEC
    from tests.functional.matrix import (
        CSRF,
        Matrix,
        anonymous_problems,
        build_world,
        collect_endpoints,
        ids_of,
        isolation_problems,
        load_specs,
    )

    from civicloud.web.deps import CSRF_COOKIE, HOST_PREFIX

    app = create_app(services=services)
    # given the specs of civicloud's modules, and the throwaway module's own
    specs, missing = load_specs(MODULES)
    assert not missing
    every_spec = (CORE_SPEC, *specs, THROWAWAY_SPEC)
    matrix = Matrix.of(app, every_spec)
    # when the matrix collects the application's routes
    endpoints, problems = collect_endpoints(app, matrix)
    # then the throwaway route is among them, with its tenant id to check, and nothing is left
    assert not problems, problems
    listed = [e for e in endpoints if e.name == "throwaway.item.list"]
    assert [e.label for e in listed] == ["GET /api/v1/throwaway/tenants/{tenant_id}/items"]
    assert listed[0].id_slots(matrix.id_parameters) == [("path", "tenant_id")]
    # and the matrix's checks hold on it: anonymous callers are turned away, and another
    # tenant's items do not exist for a tenant's administrator
    with services.db.unit_of_work() as session:
        world = make_sibling_world(session, services.passwords)
    kinds = build_world(services, world, every_spec)
    own, theirs = ids_of(matrix, kinds[world.a.tenant.id]), ids_of(matrix, kinds[world.b.tenant.id])
    anonymous = TestClient(app, base_url=BASE_URL)
    anonymous.cookies.set(HOST_PREFIX + CSRF_COOKIE, CSRF)
    assert anonymous_problems(anonymous, matrix, listed, own) == []
    api = TestClient(app, base_url=BASE_URL)
    checked, wrong = isolation_problems(
        api, api, world.a.admin.headers, matrix, listed, own, theirs
    )
    assert (checked, wrong) == (1, [])
    # but without a spec of the module's, its route is reported, and so is the module
    _, unreported = collect_endpoints(app, Matrix.of(app, (CORE_SPEC, *specs)))
    assert [p for p in unreported if "throwaway.item.list" in p] == [
        "route throwaway.item.list (/api/v1/throwaway/tenants/{tenant_id}/items): "
        "module throwaway has no matrix spec"
    ]
    assert load_specs([throwaway.MODULE])[1] == [
        "module throwaway: no MatrixSpec named 'throwaway' in "
        "tests.functional.throwaway.matrix_spec"
    ]
