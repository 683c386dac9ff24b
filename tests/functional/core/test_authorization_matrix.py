"""Every route, walked automatically: anonymous callers are turned away, and another tenant's
resources do not exist for you.

The routes come from the application itself (API and pages alike), so a route added later is
checked without anyone remembering to. Given two sibling tenants A and B, A's administrator asks
each route about B's tenants, users, keys and role bindings, one id at a time (in the path, in
a filter, in the body) with A's own ids everywhere else: every answer must be 404, never 403
(that would confirm B's thing exists) and never a success. Lists A's administrator may read in
full must not mention anything of B's. Anonymous callers get 401 from the API, and pages send
them to sign in, except for the routes listed in ``PUBLIC``.

What the matrix knows of each module (its public routes, id parameters, bodies, form values
and resources) is that module's ``MatrixSpec`` (``tests/functional/<module>/matrix_spec.py``;
the machinery is ``tests/functional/matrix.py``). When a module has no spec, a route belongs to
no spec, or a route takes a parameter or a body no spec knows how to fill, this test fails and
says so: extend the module's spec rather than skipping the route.
"""

from __future__ import annotations

import uuid

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.factories.core import SiblingWorld, Side
from tests.functional.core.matrix_spec import SPEC as CORE_SPEC
from tests.functional.matrix import (
    BASE_URL,
    CSRF,
    Endpoint,
    Matrix,
    MatrixSpec,
    anonymous_problems,
    build_world,
    collect_endpoints,
    ids_of,
    isolation_problems,
    list_problems,
    load_specs,
    walk_routes,
)

from civicloud.app import MODULES
from civicloud.core import identity
from civicloud.core.services import Services
from civicloud.web.deps import CSRF_COOKIE, HOST_PREFIX, SESSION_COOKIE

__all__ = ["walk_routes"]

#: The spec of every module of ``civicloud.app.MODULES`` (and the modules that have none).
MODULE_SPECS, MISSING_SPECS = load_specs(MODULES)
SPECS: tuple[MatrixSpec, ...] = (CORE_SPEC, *MODULE_SPECS)


@pytest.fixture
def matrix(api_app: FastAPI) -> Matrix:
    """Every spec, merged, for the application."""
    return Matrix.of(api_app, SPECS)


@pytest.fixture
def endpoints(api_app: FastAPI, matrix: Matrix) -> list[Endpoint]:
    """The application's endpoints that are not public."""
    found, _ = collect_endpoints(api_app, matrix)
    return found


#: Each side's resources, by kind, as the specs' builders made them.
KINDS: dict[uuid.UUID, dict[str, uuid.UUID]] = {}


@pytest.fixture(autouse=True)
def matrix_world(core_services: Services, world: SiblingWorld) -> None:
    """Each side's resources of every module (Pay: a biller, an open bill, a payment in flight
    and a webhook delivery given up on)."""
    KINDS.update(build_world(core_services, world, SPECS))


def side_ids(matrix: Matrix, side: Side) -> dict[str, str]:
    """The value of every id parameter, taken from one side of the world."""
    return ids_of(matrix, KINDS[side.tenant.id])


def b_strings(side: Side) -> set[str]:
    """Everything of B's that must never show up in A's lists."""
    return {
        str(side.tenant.id),
        str(side.child.id),
        side.tenant.slug,
        side.child.slug,
        str(side.admin.user.id),
        side.admin.user.username,
        str(side.member.user.id),
        side.member.user.username,
        side.member.key.key.prefix,
        side.admin.key.key.prefix,
        str(side.member.binding.id) if side.member.binding else "",
    }


@pytest.fixture
def signed_in(api_app: FastAPI, core_services: Services, world: SiblingWorld) -> TestClient:
    """A browser signed in as A's administrator, holding a CSRF cookie."""
    with core_services.db.unit_of_work() as session:
        user = session.merge(world.a.admin.user)
        _, token = identity.start_web_session(session=session, user=user, hours=1)
    browser = TestClient(api_app, base_url=BASE_URL)
    browser.cookies.set(HOST_PREFIX + SESSION_COOKIE, token)
    browser.cookies.set(HOST_PREFIX + CSRF_COOKIE, CSRF)
    return browser


def test_every_module_has_a_spec() -> None:
    assert not MISSING_SPECS, "give each module a matrix spec:\n" + "\n".join(MISSING_SPECS)


def test_every_route_is_known_to_this_test(api_app: FastAPI, matrix: Matrix) -> None:
    endpoints, problems = collect_endpoints(api_app, matrix)
    assert not problems, "extend the authorisation matrix:\n" + "\n".join(problems)
    assert any(not e.is_page for e in endpoints)


def test_anonymous_callers_are_turned_away_everywhere_but_the_public_routes(
    api_app: FastAPI, world: SiblingWorld, matrix: Matrix, endpoints: list[Endpoint]
) -> None:
    # given an anonymous caller (with a CSRF pair, so that forms reach the sign-in check)
    anonymous = TestClient(api_app, base_url=BASE_URL)
    anonymous.cookies.set(HOST_PREFIX + CSRF_COOKIE, CSRF)
    # when it calls any route that is not public
    # then the API answers 401, and pages send it to sign in (or answer 401)
    wrong = anonymous_problems(anonymous, matrix, endpoints, side_ids(matrix, world.a))
    assert endpoints
    assert not wrong, "anonymous callers got through:\n" + "\n".join(wrong)


def test_another_tenants_resources_do_not_exist_for_you(
    client: TestClient,
    signed_in: TestClient,
    world: SiblingWorld,
    matrix: Matrix,
    endpoints: list[Endpoint],
) -> None:
    # when A's admin names one of B's resources, with A's own everywhere else
    # then it does not exist
    checked, wrong = isolation_problems(
        client,
        signed_in,
        world.a.admin.headers,
        matrix,
        endpoints,
        side_ids(matrix, world.a),
        side_ids(matrix, world.b),
    )
    assert checked
    assert not wrong, "B's resources leaked to A's administrator:\n" + "\n".join(wrong)


def test_lists_never_mention_another_tenants_resources(
    client: TestClient,
    signed_in: TestClient,
    world: SiblingWorld,
    matrix: Matrix,
    endpoints: list[Endpoint],
) -> None:
    # when A's admin reads a list unfiltered
    # then it succeeds (or is refused, for platform-only lists) and nothing of B's is in it
    checked, wrong = list_problems(
        client, signed_in, world.a.admin.headers, matrix, endpoints, b_strings(world.b) - {""}
    )
    assert checked
    assert not wrong, "\n".join(wrong)
