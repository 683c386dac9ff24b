"""Schemathesis over the OpenAPI schema, in process: no generated request makes the API fail (5xx).

Runs as a platform administrator (so requests reach the services rather than stopping at 401),
with valid and with invalid data, and once anonymously. It has a database of its own: it
creates whatever the schema allows (roots, regions, roles) and must not crowd the shared one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from tests.factories.core import make_member, make_tenant

from civicloud.app import create_app
from civicloud.core.services import Services

#: Tens of seconds per run of generated requests: `make test-fast` leaves it out.
pytestmark = pytest.mark.slow

Headers = dict[str, str]


@pytest.fixture(scope="module")
def fuzzed(fresh_services: Callable[[], Services]) -> tuple[FastAPI, Headers]:
    """An application over a database of its own, and a platform administrator's headers."""
    services = fresh_services()
    with services.db.unit_of_work() as session:
        root = make_tenant(session)
        admin = make_member(
            session, services.passwords, home=root, role="platform_admin", platform=True
        )
    return create_app(services=services), admin.headers


def fuzz(app: FastAPI, headers: Headers, mode: GenerationMode, examples: int) -> list[str]:
    """Call every operation with generated requests; the labels of those that answered 5xx."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            case.validate_response(response, checks=[not_a_server_error])

        try:
            run()
        except Unsatisfiable:
            # Nothing to make invalid: the operation takes no parameters and no body.
            assert mode is GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # collect every failing operation, then report them together
            failures.append(f"{operation.label}: {type(exc).__name__}: {exc}"[:2000])
    return failures


@pytest.mark.parametrize(
    ("mode", "examples"), [(GenerationMode.POSITIVE, 25), (GenerationMode.NEGATIVE, 10)]
)
def test_no_generated_request_is_a_server_error(
    fuzzed: tuple[FastAPI, Headers], mode: GenerationMode, examples: int
) -> None:
    app, headers = fuzzed
    failures = fuzz(app, headers, mode, examples)
    assert not failures, "\n\n".join(failures)


def test_no_anonymous_request_is_a_server_error(fuzzed: tuple[FastAPI, Headers]) -> None:
    app, _ = fuzzed
    failures = fuzz(app, {}, GenerationMode.POSITIVE, 5)
    assert not failures, "\n\n".join(failures)
