"""The HTTP edge: problem documents, request ids, body limits, health, readiness and metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from tests.conftest import make_settings
from tests.factories.core import SiblingWorld
from tests.functional.core.conftest import BASE_URL

from civicloud.app import build_services, create_app
from civicloud.core.services import Services

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "request_id"}
LIMIT = 1_048_576


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) >= PROBLEM_KEYS
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://civicloud.dev/problems/{code}"
    assert body["title"]
    assert body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_anonymous_calls_get_a_401_problem(client: TestClient) -> None:
    response = client.get("/api/v1/tenants")
    body = assert_problem(response, 401, "core.not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"
    assert body["instance"] == "/api/v1/tenants"


def test_forbidden_missing_conflicting_and_invalid_calls_get_problems(
    client: TestClient, world: SiblingWorld
) -> None:
    forbidden = client.patch(
        f"/api/v1/tenants/{world.a.child.id}", json={"name_en": "x"}, headers=world.a.member.headers
    )
    assert_problem(forbidden, 403, "core.permission_denied")
    missing = client.get(f"/api/v1/tenants/{world.b.tenant.id}", headers=world.a.admin.headers)
    assert_problem(missing, 404, "core.not_found")
    conflict = client.delete(f"/api/v1/tenants/{world.a.tenant.id}", headers=world.a.admin.headers)
    assert_problem(conflict, 409, "core.conflict")
    invalid = client.get("/api/v1/tenants", params={"limit": 0}, headers=world.a.admin.headers)
    body = assert_problem(invalid, 422, "core.invalid_input")
    assert body["errors"][0]["loc"] == ["query", "limit"]
    bad_id = client.get("/api/v1/tenants/not-a-uuid", headers=world.a.admin.headers)
    assert_problem(bad_id, 422, "core.invalid_input")


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v2/tenants", "/nothing-here"])
def test_unknown_routes_get_a_404_problem(client: TestClient, path: str) -> None:
    assert_problem(client.get(path, headers={"Accept": "application/json"}), 404, "core.not_found")


def test_a_wrong_method_gets_a_405_problem(client: TestClient) -> None:
    response = client.put("/api/v1/tenants", json={})
    assert_problem(response, 405, "core.method_not_allowed")


def test_malformed_json_is_invalid_input_not_a_crash(
    client: TestClient, world: SiblingWorld
) -> None:
    for content in (b"{bad", b"", b"[1, 2]", b'"just a string"', b"\xff\xfe"):
        response = client.post(
            "/api/v1/tenants",
            content=content,
            headers=world.a.admin.headers | {"Content-Type": "application/json"},
        )
        assert_problem(response, 422, "core.invalid_input")


def test_a_body_over_the_limit_is_refused_by_its_declared_length(
    client: TestClient, world: SiblingWorld
) -> None:
    response = client.post(
        "/api/v1/tenants",
        content=b"x" * (LIMIT + 1),
        headers=world.a.admin.headers | {"Content-Type": "application/json"},
    )
    body = assert_problem(response, 413, "core.payload_too_large")
    assert str(LIMIT) in body["detail"]


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(
    client: TestClient, world: SiblingWorld
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(LIMIT // 65_536 + 2):
            yield b"x" * 65_536

    response = client.post(
        "/api/v1/tenants",
        content=chunks(),
        headers=world.a.admin.headers | {"Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "core.payload_too_large")


def test_a_body_just_under_the_limit_is_read(client: TestClient, world: SiblingWorld) -> None:
    padding = " " * (LIMIT - 200)
    content = ('{"name_en": "Padded"' + padding + "}").encode()
    response = client.patch(
        f"/api/v1/tenants/{world.a.child.id}",
        content=content,
        headers=world.a.admin.headers | {"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


def test_the_request_id_is_echoed_or_made_up(client: TestClient) -> None:
    echoed = client.get("/healthz", headers={"X-Request-ID": "abc-123.DEF_4"})
    assert echoed.headers["x-request-id"] == "abc-123.DEF_4"
    made_up = client.get("/healthz")
    assert len(made_up.headers["x-request-id"]) == 32
    for unsafe in ("has space", "x" * 65, "semi;colon", "ünïcode"):
        replaced = client.get("/healthz", headers={"X-Request-ID": unsafe.encode()})
        assert replaced.headers["x-request-id"] != unsafe
        assert len(replaced.headers["x-request-id"]) == 32


def test_problems_carry_the_callers_request_id(client: TestClient) -> None:
    response = client.get("/api/v1/me", headers={"X-Request-ID": "trace-me"})
    assert assert_problem(response, 401, "core.not_authenticated")["request_id"] == "trace-me"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


@pytest.mark.parametrize("path", ["/healthz", "/", "/login", "/api/v1/tenants"])
def test_head_is_answered_like_get_without_a_body(client: TestClient, path: str) -> None:
    # Given what a GET of the path answers
    got = client.get(path, follow_redirects=False)
    # When the same path is asked for with HEAD
    head = client.head(path, follow_redirects=False)
    # Then the status and headers match and no body is sent
    assert head.status_code == got.status_code
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.content == b""


def test_readiness_fails_while_migrations_are_pending(tmp_path: Path) -> None:
    # given an application over a database that was never migrated
    services = build_services(make_settings(tmp_path))
    app = create_app(services=services)
    # then it is alive but not ready
    with TestClient(app) as unready:
        assert unready.get("/healthz").status_code == 200
        response = unready.get("/readyz")
    assert_problem(response, 503, "core.not_ready")


def test_metrics_count_requests_by_route_template(
    api_app: FastAPI, client: TestClient, world: SiblingWorld
) -> None:
    # given a request to a route with a path parameter
    client.get(f"/api/v1/tenants/{world.a.child.id}", headers=world.a.admin.headers)
    # when the metrics are scraped on this machine (no token is configured)
    local = TestClient(api_app, base_url=BASE_URL, client=("127.0.0.1", 41000))
    response = local.get("/metrics")
    # then they are Prometheus text, labelled by the full template, never by the raw path
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "civicloud_http_requests_total" in text
    assert 'route="/api/v1/tenants/{tenant_id}"' in text
    assert str(world.a.child.id) not in text
    # and a client elsewhere is refused: who calls what how often is nobody else's business
    assert_problem(client.get("/metrics"), 403, "core.permission_denied")
    ipv6 = TestClient(api_app, base_url=BASE_URL, client=("::1", 41001))
    assert ipv6.get("/metrics").status_code == 200


def test_metrics_need_the_bearer_token_when_one_is_set(core_services: Services) -> None:
    # given an installation that set a metrics token
    settings = core_services.settings.model_copy(
        update={
            "web": core_services.settings.web.model_copy(
                update={"metrics_token": SecretStr("scrape-me-4f1c")}
            )
        }
    )
    app = create_app(services=dataclasses.replace(core_services, settings=settings))
    # when the metrics are scraped from elsewhere (or from this machine) with and without it
    remote = TestClient(app, base_url=BASE_URL)
    local = TestClient(app, base_url=BASE_URL, client=("127.0.0.1", 41002))
    right = remote.get("/metrics", headers={"Authorization": "Bearer scrape-me-4f1c"})
    # then only the token opens them, wherever the scraper is
    assert right.status_code == 200
    assert "civicloud_http_requests_total" in right.text
    for refused in (
        remote.get("/metrics"),
        remote.get("/metrics", headers={"Authorization": "Bearer scrape-me"}),
        local.get("/metrics"),
    ):
        assert_problem(refused, 401, "core.not_authenticated")
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_unexpected_error_is_a_500_problem_that_names_the_request(
    core_services: Services,
) -> None:
    # given an application with a route that fails unexpectedly
    app = create_app(services=core_services)

    @app.post("/api/v1/explode", name="test.explode")
    def explode() -> None:
        raise RuntimeError("boom")

    crashing = TestClient(app, base_url="https://testserver", raise_server_exceptions=False)
    # when it is called
    response = crashing.post("/api/v1/explode", headers={"X-Request-ID": "trace-500"})
    # then the answer is a problem that names the caller's request, without internals
    body = assert_problem(response, 500, "core.internal")
    assert body["request_id"] == "trace-500"
    assert "boom" not in response.text
