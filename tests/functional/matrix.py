"""The authorisation matrix's machinery, for any application and any modules' specs.

Each module describes what the matrix needs to call its routes in one :class:`MatrixSpec`
(``tests/functional/<module>/matrix_spec.py``, ``SPEC``): its public routes, the parameters that
carry ids of its resources, values for the others, example bodies and form values, and a builder
of each side's resources. :func:`collect_endpoints` walks an application's routes against the
specs given and reports whatever it cannot check, a route of a module with no spec included; the
checks themselves (``anonymous_problems``, ``isolation_problems``, ``list_problems``) take the
endpoints and return what went wrong, so that they run on any application.
"""

from __future__ import annotations

import importlib
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.routing import BaseRoute, Mount
from tests.factories.core import SiblingWorld, Side

from civicloud.core.modules import Module
from civicloud.core.services import Services
from civicloud.web.deps import HOST_PREFIX, SESSION_COOKIE, session_csrf_token

BASE_URL = "https://testserver"
CSRF = "matrix-csrf-token"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

#: A builder of one side's resources: ``{kind: id}`` for every kind the spec's ids name.
WorldBuilder = Callable[[Services, Side], Mapping[str, uuid.UUID]]


@dataclass(frozen=True)
class MatrixSpec:
    """What the matrix needs to know of one module (or of the core) to check its routes."""

    #: ``core`` or the module's name: the routes named ``<name>.…`` (and the mount
    #: ``static.<name>``) are this spec's.
    name: str
    #: ``(method, path)`` anyone may call. A new public route is added here on purpose.
    public: frozenset[tuple[str, str]] = frozenset()
    #: Parameter names that carry an id, and which kind of resource each names.
    id_parameters: Mapping[str, str] = field(default_factory=dict)
    #: Values for parameters that are not ids of a tenant's resources.
    values: Mapping[str, str] = field(default_factory=dict)
    #: Lists only platform-wide roles may read: a tenant's administrator is refused (403).
    platform_only_lists: frozenset[str] = frozenset()
    #: A valid body for each request model; the argument maps id-named fields to their values.
    bodies: Mapping[str, Callable[[dict[str, str]], dict[str, Any]]] = field(default_factory=dict)
    #: A valid value for each form field that is not an id.
    form_values: Mapping[str, Callable[[], str]] = field(default_factory=dict)
    #: Each side's resources of the kinds ``id_parameters`` names.
    build: WorldBuilder | None = None


def spec_module(module: Module) -> str:
    """Where a module's spec lives: ``tests.functional.<name>.matrix_spec``."""
    return f"tests.functional.{module.name}.matrix_spec"


def load_specs(
    modules: Iterable[Module], locate: Callable[[Module], str] = spec_module
) -> tuple[list[MatrixSpec], list[str]]:
    """The spec of each module (``SPEC`` in the module ``locate`` names), and the modules that
    have none."""
    specs: list[MatrixSpec] = []
    problems: list[str] = []
    for module in modules:
        where = locate(module)
        try:
            found = getattr(importlib.import_module(where), "SPEC", None)
        except ModuleNotFoundError as exc:
            if exc.name is None or not where.startswith(exc.name):
                raise
            found = None
        if not isinstance(found, MatrixSpec) or found.name != module.name:
            problems.append(f"module {module.name}: no MatrixSpec named {module.name!r} in {where}")
            continue
        specs.append(found)
    return specs, problems


@dataclass(frozen=True)
class Matrix:
    """The specs of an installation, merged."""

    specs: tuple[MatrixSpec, ...]
    public: frozenset[tuple[str, str]]
    public_mounts: frozenset[str]
    id_parameters: dict[str, str]
    values: dict[str, str]
    platform_only_lists: frozenset[str]
    bodies: dict[str, Callable[[dict[str, str]], dict[str, Any]]]
    form_values: dict[str, Callable[[], str]]

    @classmethod
    def of(cls, app: FastAPI, specs: Iterable[MatrixSpec]) -> Matrix:
        """The specs merged (a name two specs define differently is an error), and the mounts
        anyone may read: the shell's static files, Swagger UI's (public like /docs), and each
        installed module's static files."""
        listed = tuple(specs)
        services: Services = app.state.services
        mounts = {"/static", "/docs/assets"}
        mounts |= {f"/static/{m.name}" for m in services.modules if m.static is not None}
        return cls(
            specs=listed,
            public=frozenset(route for spec in listed for route in spec.public),
            public_mounts=frozenset(mounts),
            id_parameters=_merged(listed, "id_parameters"),
            values=_merged(listed, "values"),
            platform_only_lists=frozenset(p for s in listed for p in s.platform_only_lists),
            bodies=_merged(listed, "bodies"),
            form_values=_merged(listed, "form_values"),
        )

    def owners(self, app: FastAPI) -> tuple[str, ...]:
        """Whose routes an application may hold: the core's and its installed modules'."""
        services: Services = app.state.services
        return ("core", *services.modules.names())


def _merged(specs: tuple[MatrixSpec, ...], attribute: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for spec in specs:
        for name, value in getattr(spec, attribute).items():
            if name in merged and merged[name] != value:
                raise ValueError(f"{attribute}[{name!r}] defined twice, differently ({spec.name})")
            merged[name] = value
    return merged


def owner_of(route_name: str | None, modules: Iterable[str]) -> str:
    """The module a route's name says it belongs to (``pay.biller.list``, ``pay.page.console``,
    ``static.pay``); ``core`` for any other."""
    if not route_name:
        return "core"
    bare = re.sub(r"^static\.", "", route_name)
    for name in modules:
        if bare == name or bare.startswith(f"{name}."):
            return name
    return "core"


@dataclass
class Endpoint:
    """One method of one route, and what it takes."""

    method: str
    path: str
    is_page: bool
    path_params: list[str]
    #: The ``name`` of the route.
    name: str | None = None
    id_queries: list[str] = field(default_factory=list)
    value_queries: list[str] = field(default_factory=list)
    body_model: type[BaseModel] | None = None
    form_fields: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def id_slots(self, id_parameters: Mapping[str, str]) -> list[tuple[str, str]]:
        """Every place an id goes: (where, name)."""
        slots = [("path", p) for p in self.path_params if p in id_parameters]
        slots += [("query", q) for q in self.id_queries]
        if self.body_model is not None:
            slots += [("body", f) for f in self.body_model.model_fields if f in id_parameters]
        slots += [("form", f) for f in self.form_fields if f in id_parameters]
        return slots


def walk_routes(app: FastAPI) -> Iterator[tuple[BaseRoute, str, set[str]]]:
    """Every route of ``app`` with its full path and methods, included routers flattened."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI that copies included routes into app.routes: already flat
        for route in app.routes:
            yield route, getattr(route, "path", ""), set(getattr(route, "methods", None) or ())
        return
    for context in iter_route_contexts(app.routes):
        yield context.original_route, context.path or "", set(context.methods or ())


def collect_endpoints(app: FastAPI, matrix: Matrix) -> tuple[list[Endpoint], list[str]]:
    """Every non-public endpoint of ``app``, and the problems that stop it being checked: a
    route of a module no spec describes, a parameter or body no spec knows how to fill, a mount
    nobody decided about."""
    endpoints: list[Endpoint] = []
    problems: list[str] = []
    owners = matrix.owners(app)
    described = {spec.name for spec in matrix.specs}
    for route, path, methods in walk_routes(app):
        name = getattr(route, "name", None)
        owner = owner_of(name, owners)
        if owner not in described:
            problems.append(f"route {name} ({path}): module {owner} has no matrix spec")
            continue
        if isinstance(route, Mount):
            if path not in matrix.public_mounts:
                problems.append(f"mount {path}: not a public mount; decide who may read it")
            continue
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            if (method, path) in matrix.public:
                continue
            path_params = re.findall(r"{(\w+)(?::\w+)?}", path)
            endpoint = Endpoint(method, path, not path.startswith("/api/"), path_params, name)
            for param in path_params:
                if param not in matrix.id_parameters and param not in matrix.values:
                    problems.append(f"{endpoint.label}: no value for path parameter {param!r}")
            if isinstance(route, APIRoute):
                _describe(route, endpoint, matrix, problems)
            endpoints.append(endpoint)
    return endpoints, problems


def _describe(route: APIRoute, endpoint: Endpoint, matrix: Matrix, problems: list[str]) -> None:
    for query in route.dependant.query_params:
        if query.alias in matrix.id_parameters:
            endpoint.id_queries.append(query.alias)
        elif query.field_info.is_required() and query.alias in matrix.values:
            endpoint.value_queries.append(query.alias)
        elif query.field_info.is_required():
            problems.append(f"{endpoint.label}: no value for query parameter {query.alias!r}")
    for body in route.dependant.body_params:
        kind = type(body.field_info).__name__
        annotation = body.field_info.annotation
        if kind == "Form" or (endpoint.is_page and kind != "Body"):
            if body.alias not in matrix.id_parameters and body.alias not in matrix.form_values:
                problems.append(f"{endpoint.label}: no value for form field {body.alias!r}")
            endpoint.form_fields.append(body.alias)
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation.__name__ not in matrix.bodies:
                problems.append(f"{endpoint.label}: no example body for {annotation.__name__}")
            endpoint.body_model = annotation
        else:
            problems.append(f"{endpoint.label}: cannot fill body parameter {body.alias!r}")


def build_world(
    services: Services, world: SiblingWorld, specs: Iterable[MatrixSpec]
) -> dict[uuid.UUID, dict[str, uuid.UUID]]:
    """Each side's resources, by the side's tenant id: ``{kind: id}`` from every spec's builder."""
    kinds: dict[uuid.UUID, dict[str, uuid.UUID]] = {world.a.tenant.id: {}, world.b.tenant.id: {}}
    for spec in specs:
        if spec.build is None:
            continue
        for side in (world.a, world.b):
            kinds[side.tenant.id].update(spec.build(services, side))
    return kinds


def ids_of(matrix: Matrix, kinds: Mapping[str, uuid.UUID]) -> dict[str, str]:
    """The value of every id parameter, from one side's ``{kind: id}``."""
    return {name: str(kinds[kind]) for name, kind in matrix.id_parameters.items()}


def call(
    client: TestClient,
    matrix: Matrix,
    endpoint: Endpoint,
    ids: dict[str, str],
    headers: dict[str, str] | None = None,
) -> Any:
    """Call ``endpoint`` with every id parameter filled from ``ids``."""
    path = endpoint.path
    for name in endpoint.path_params:
        value = ids.get(name, matrix.values.get(name, "0"))
        path = path.replace(f"{{{name}}}", value)
        path = re.sub(rf"{{{name}:\w+}}", value, path)
    params = {name: ids[name] for name in endpoint.id_queries if name in ids}
    params.update({name: matrix.values[name] for name in endpoint.value_queries})
    kwargs: dict[str, Any] = {"params": params, "headers": headers or {}}
    if endpoint.body_model is not None:
        kwargs["json"] = matrix.bodies[endpoint.body_model.__name__](ids)
    if endpoint.is_page and endpoint.method in UNSAFE:
        session_token = client.cookies.get(HOST_PREFIX + SESSION_COOKIE)
        form = {"csrf_token": session_csrf_token(session_token) if session_token else CSRF}
        for name in endpoint.form_fields:
            form[name] = ids[name] if name in ids else matrix.form_values.get(name, str)()
        kwargs["data"] = form
    return client.request(endpoint.method, path, follow_redirects=False, **kwargs)


def anonymous_problems(
    anonymous: TestClient, matrix: Matrix, endpoints: Iterable[Endpoint], ids: dict[str, str]
) -> list[str]:
    """The endpoints that let an anonymous caller through: the API must answer 401, pages send
    it to sign in (or answer 401)."""
    wrong: list[str] = []
    for endpoint in endpoints:
        response = call(anonymous, matrix, endpoint, ids)
        location = response.headers.get("location", "")
        if endpoint.is_page:
            turned_away = response.status_code == 401 or (
                response.status_code == 303 and location.startswith("/login")
            )
        else:
            turned_away = response.status_code == 401
        if not turned_away:
            wrong.append(f"{endpoint.label}: {response.status_code} {location}")
    return wrong


def isolation_problems(
    api: TestClient,
    browser: TestClient,
    headers: dict[str, str],
    matrix: Matrix,
    endpoints: Iterable[Endpoint],
    own: dict[str, str],
    theirs: dict[str, str],
) -> tuple[int, list[str]]:
    """How many id slots were tried, and those where one of B's ids, with A's own everywhere
    else, did not answer 404 (``api`` sends ``headers``, ``browser`` is signed in as A)."""
    wrong: list[str] = []
    checked = 0
    for endpoint in endpoints:
        for where, name in endpoint.id_slots(matrix.id_parameters):
            ids = own | {name: theirs[name]}
            if endpoint.is_page:
                response = call(browser, matrix, endpoint, ids)
            else:
                response = call(api, matrix, endpoint, ids, headers=headers)
            checked += 1
            if response.status_code != 404:
                wrong.append(
                    f"{endpoint.label} with B's {name} in the {where}: {response.status_code}"
                )
    return checked, wrong


def list_problems(
    api: TestClient,
    browser: TestClient,
    headers: dict[str, str],
    matrix: Matrix,
    endpoints: Iterable[Endpoint],
    forbidden: set[str],
) -> tuple[int, list[str]]:
    """How many lists were read unfiltered, and those that did not answer as expected (200, or
    403 for platform-only lists) or mentioned any of ``forbidden``."""
    wrong: list[str] = []
    checked = 0
    for endpoint in endpoints:
        if endpoint.method != "GET" or endpoint.path_params:
            continue
        if endpoint.is_page:
            response = browser.get(endpoint.path, follow_redirects=False)
        else:
            response = api.get(endpoint.path, headers=headers)
        checked += 1
        expected = 403 if endpoint.path in matrix.platform_only_lists else 200
        if response.status_code != expected:
            wrong.append(f"{endpoint.label}: {response.status_code}")
        leaked = sorted(s for s in forbidden if s in response.text)
        if leaked:
            wrong.append(f"{endpoint.label} shows {leaked}")
    return checked, wrong
