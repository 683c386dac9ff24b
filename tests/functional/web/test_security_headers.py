"""Every route answers with the security headers, whoever asks and whatever the answer: the API's
JSON, /openapi.json and /docs, static files, redirects, errors. The routes come from the app
itself, so a route added later is checked without anyone remembering to."""

from __future__ import annotations

import re
import uuid

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount
from tests.functional.core.test_authorization_matrix import walk_routes
from tests.functional.web.helpers import HTML, Browser, World

from civicloud.app import MODULES

REQUIRED = ("content-security-policy", "x-frame-options", "x-content-type-options")
#: A file that each mounted application serves, to ask it for.
MOUNT_FILES = {
    "/static": "css/civicloud.css",
    "/docs/assets": "swagger-ui-bundle.js",
    **{f"/static/{m.name}": m.stylesheets[0] for m in MODULES if m.static and m.stylesheets},
}
VALUES = {"provider": "sandbox", "date": "2026-01-01", "number": "R20260101-00000000"}


def filled(path: str) -> str:
    """``path`` with each ``{parameter}`` given a value of the right shape."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        return VALUES.get(name, str(uuid.uuid4()) if name.endswith("_id") else "x")

    return re.sub(r"\{([^}]+)\}", value, path)


def assert_secure(response: httpx2.Response, what: str) -> None:
    missing = [h for h in REQUIRED if h not in response.headers]
    assert not missing, f"{what} ({response.status_code}) lacks {missing}"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"], what
    assert response.headers["x-frame-options"] == "DENY", what
    assert response.headers["x-content-type-options"] == "nosniff", what


def calls(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) of ``app``, included routers flattened; a file of each mount."""
    found: list[tuple[str, str]] = []
    for route, path, methods in walk_routes(app):
        if isinstance(route, Mount):
            found.append(("GET", f"{path}/{MOUNT_FILES[path]}"))
        else:
            found += [(method, path) for method in sorted(methods - {"HEAD"})]
    return found


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
def test_every_route_answers_with_the_security_headers(
    app: FastAPI, world: World, signed_in: bool
) -> None:
    with TestClient(
        app, base_url="https://testserver", headers=HTML, raise_server_exceptions=False
    ) as client:
        browser = Browser(client)
        if signed_in:
            assert browser.sign_in("admin").status_code == 303
        token = browser.csrf()
        routes = calls(app)
        assert len(routes) > 60
        for method, path in routes:
            url = filled(path)
            response = client.request(
                method,
                url,
                data={"csrf_token": token} if method == "POST" else None,
                headers={"X-CSRF-Token": token},
                follow_redirects=False,
            )
            assert_secure(response, f"{method} {path}")


def test_the_api_reference_and_the_schema_carry_them_too(client: TestClient) -> None:
    for url, kind in (("/docs", "text/html"), ("/openapi.json", "application/json")):
        response = client.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kind)
        assert_secure(response, url)
    # and the reference allows nothing from outside the installation
    policy = client.get("/docs").headers["content-security-policy"]
    sources = re.findall(r"(https?:[^\s;]*|\*)", policy)
    assert sources == []
    assert "'unsafe-inline'" not in policy
    assert "'unsafe-eval'" not in policy


def test_the_api_reference_loads_nothing_from_elsewhere(client: TestClient) -> None:
    page = client.get("/docs").text
    assert "cdn" not in page.lower()
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script>" not in page  # no inline script: the policy would refuse it
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', page):
        fetched = client.get(asset)
        assert fetched.status_code == 200, asset
        assert_secure(fetched, asset)


def test_unknown_addresses_and_methods_carry_them_too(client: TestClient) -> None:
    assert_secure(client.get("/no/such/page"), "404")
    assert_secure(client.put("/docs"), "405")
