"""Every route, walked automatically: anonymous callers are turned away, and another tenant's
resources do not exist for you.

The routes come from the application itself (API and pages alike), so a route added later is
checked without anyone remembering to. Given two sibling tenants A and B, A's administrator asks
each route about B's tenants, users, keys and role bindings, one id at a time (in the path, in
a filter, in the body) with A's own ids everywhere else: every answer must be 404, never 403
(that would confirm B's thing exists) and never a success. Lists A's administrator may read in
full must not mention anything of B's. Anonymous callers get 401 from the API, and pages send
them to sign in, except for the routes listed in ``PUBLIC``.

When a route takes a parameter or a body this test does not know how to fill, it fails and
says so: extend ``ID_PARAMETERS`` or ``BODIES`` rather than skipping the route.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.routing import BaseRoute, Mount
from tests.factories.core import SiblingWorld, Side, make_tenant, unique
from tests.factories.pay import (
    bill_row,
    make_biller,
    make_bills,
    make_dead_delivery,
    make_pending_payment,
)

from civicloud.app import MODULES
from civicloud.core import identity
from civicloud.core.services import Services
from civicloud.core.tenants import TenantKind
from civicloud.web.deps import CSRF_COOKIE, HOST_PREFIX, SESSION_COOKIE, session_csrf_token

BASE_URL = "https://testserver"

#: Routes anyone may call. A new public route must be added here on purpose.
PUBLIC: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        # Not signed-in, but not open either: this machine only, or a scraper's bearer token
        # (tests/functional/core/test_http_api.py).
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/"),
        ("GET", "/login"),
        ("POST", "/login"),
        ("POST", "/logout"),
        # Pay's citizens' side: choosing a biller, looking bills up, paying, polling, and the
        # providers' notifications (authenticated by their signatures, not by us).
        ("GET", "/api/v1/pay/public/billers"),
        ("GET", "/api/v1/pay/public/billers/{biller_id}/bills"),
        ("POST", "/api/v1/pay/payments"),
        ("GET", "/api/v1/pay/public/payments/{trade_no}"),
        ("POST", "/api/v1/pay/notify/{provider}"),
        ("GET", "/api/v1/pay/public/receipts/{number}/verify"),
        # Pay's citizens' pages, the sandbox's own checkout page, and receipts for anyone
        # holding one.
        ("GET", "/pay"),
        ("GET", "/pay/billers/{biller_id}"),
        ("GET", "/pay/billers/{biller_id}/bills"),
        ("POST", "/pay/billers/{biller_id}/bills"),
        # The check-before-paying step, and finding a payment again by its transaction number.
        ("GET", "/pay/billers/{biller_id}/confirm"),
        ("GET", "/pay/find"),
        ("GET", "/pay/sandbox/checkout/{trade_no}"),
        ("POST", "/pay/sandbox/checkout/{trade_no}"),
        ("GET", "/pay/return"),
        ("GET", "/pay/payments/{trade_no}"),
        ("GET", "/pay/receipt-key.pem"),
        ("GET", "/pay/receipts/{number}"),
        ("GET", "/pay/receipts/{number}.pdf"),
        ("GET", "/pay/receipts/{number}.json"),
        ("GET", "/pay/receipts/{number}/verify"),
    }
)
#: Mounted applications anyone may read (static files).
#: (Swagger UI's own files, for the API reference at /docs, are public like it.)
#: Each module's static files (``/static/<module>``) are as public as the shell's.
PUBLIC_MOUNTS: frozenset[str] = frozenset(
    {"/static", "/docs/assets", *(f"/static/{m.name}" for m in MODULES if m.static is not None)}
)

#: Parameter names that carry an id, and which kind of resource each names.
ID_PARAMETERS: dict[str, str] = {
    "tenant_id": "tenant",
    "parent_id": "tenant",
    "root_id": "tenant",
    "user_id": "user",
    "key_id": "key",
    "binding_id": "binding",
    "biller_id": "biller",
    "bill_id": "bill",
    "payment_id": "payment",
    "delivery_id": "delivery",
}

#: Values for parameters that are not ids of a tenant's resources (dates, provider names, the
#: platform-wide reconciliation items), so that every route can be called.
VALUES: dict[str, str] = {
    "date": "2026-01-01",
    "provider": "sandbox",
    "item_id": "00000000-0000-4000-8000-000000000000",
    "number": "R20260101-00000000",
}

#: Lists that only platform-wide roles may read: a tenant's administrator is refused (403), which
#: tells nothing about any tenant.
PLATFORM_ONLY_LISTS: frozenset[str] = frozenset({"/api/v1/pay/reconciliation/items"})

#: A valid body for each request model; ``ids`` maps id-named fields to the values to send.
BODIES: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
    "TenantCreate": lambda ids: {
        "slug": unique("matrix"),
        "name_zh": "矩阵",
        "name_en": "Matrix",
        "kind": "agency",
        "parent_id": ids["parent_id"],
    },
    "TenantRename": lambda _ids: {"name_en": "Matrix"},
    "TenantMove": lambda ids: {"parent_id": ids["parent_id"]},
    "UserCreate": lambda ids: {
        "username": unique("matrix"),
        "display_name": "Matrix",
        "tenant_id": ids["tenant_id"],
    },
    "UserUpdate": lambda _ids: {"display_name": "Matrix"},
    "ApiKeyCreate": lambda _ids: {"name": "matrix"},
    "RoleBindingCreate": lambda ids: {
        "user_id": ids["user_id"],
        "role_name": "viewer",
        "tenant_id": ids["tenant_id"],
    },
    "RoleCreate": lambda _ids: {
        "name": unique("matrix").replace("-", "_"),
        "name_zh": "矩阵",
        "name_en": "Matrix",
        "permissions": ["core.tenant.read"],
    },
    "BillerCreate": lambda ids: {
        "tenant_id": ids["tenant_id"],
        "code": unique("matrix"),
        "name_zh": "矩阵",
        "name_en": "Matrix",
        "category": "fee",
        "account_pattern": r"\\d{10}",
        "settlement_bank": "Bank",
        "settlement_account": "62220202001",
        "settlement_account_name": "Matrix",
    },
    "BillBatch": lambda _ids: {"bills": [bill_row()]},
    "BillAmend": lambda _ids: {"amount_fen": 100},
    "BillerUpdate": lambda _ids: {"return_origins": ["https://pay.example.cn"]},
    "RefundCreate": lambda _ids: {"amount_fen": 100, "reason": "matrix"},
    "Resolution": lambda _ids: {
        "debit_code": "suspense",
        "credit_code": "fees",
        "amount_fen": 1,
        "memo": "matrix",
    },
    "RegionCreate": lambda _ids: {
        "code": f"cn-m{uuid.uuid4().hex[:10]}",
        "name_zh": "矩阵",
        "name_en": "Matrix",
        "country_code": "CN",
    },
}

#: A valid value for each field of the pages' forms that is not an id.
FORM_VALUES: dict[str, Callable[[], str]] = {
    "username": lambda: unique("matrix"),
    "display_name": lambda: "Matrix",
    "email": lambda: "",
    "password": lambda: "",
    "role_name": lambda: "viewer",
    "name": lambda: "matrix",
    "expires_in_days": lambda: "",
    "slug": lambda: unique("matrix"),
    "name_zh": lambda: "矩阵",
    "name_en": lambda: "Matrix",
    "kind": lambda: "agency",
    "region_code": lambda: "",
    "version": lambda: "",
    "next": lambda: "",
    "partial": lambda: "",
    "amount": lambda: "1.00",
    "reason": lambda: "matrix",
    "idempotency_key": lambda: unique("matrix"),
    "business_date": lambda: VALUES["date"],
    "provider": lambda: VALUES["provider"],
    "item_id": lambda: VALUES["item_id"],
    "debit_code": lambda: "suspense",
    "credit_code": lambda: "fees",
    "memo": lambda: "matrix",
    # The second step of a refund or a settlement: confirmed, with the net the preview showed
    # (a net that no longer matches is refused, which still proves the caller got that far).
    "confirm": lambda: "yes",
    "expected_net": lambda: "0",
}

CSRF = "matrix-csrf-token"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Endpoint:
    """One method of one route, and what it takes."""

    method: str
    path: str
    is_page: bool
    path_params: list[str]
    id_queries: list[str] = field(default_factory=list)
    value_queries: list[str] = field(default_factory=list)
    body_model: type[BaseModel] | None = None
    form_fields: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def id_slots(self) -> list[tuple[str, str]]:
        """Every place an id goes: (where, name)."""
        slots = [("path", p) for p in self.path_params if p in ID_PARAMETERS]
        slots += [("query", q) for q in self.id_queries]
        if self.body_model is not None:
            slots += [("body", f) for f in self.body_model.model_fields if f in ID_PARAMETERS]
        slots += [("form", f) for f in self.form_fields if f in ID_PARAMETERS]
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


def collect_endpoints(app: FastAPI) -> tuple[list[Endpoint], list[str]]:
    """Every non-public endpoint of ``app``, and the problems that stop it being checked."""
    endpoints: list[Endpoint] = []
    problems: list[str] = []
    for route, path, methods in walk_routes(app):
        if isinstance(route, Mount):
            if path not in PUBLIC_MOUNTS:
                problems.append(f"mount {path}: not in PUBLIC_MOUNTS; decide who may read it")
            continue
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            if (method, path) in PUBLIC:
                continue
            path_params = re.findall(r"{(\w+)(?::\w+)?}", path)
            endpoint = Endpoint(method, path, not path.startswith("/api/"), path_params)
            for name in path_params:
                if name not in ID_PARAMETERS and name not in VALUES:
                    problems.append(f"{endpoint.label}: no value for path parameter {name!r}")
            if isinstance(route, APIRoute):
                _describe(route, endpoint, problems)
            endpoints.append(endpoint)
    return endpoints, problems


def _describe(route: APIRoute, endpoint: Endpoint, problems: list[str]) -> None:
    for query in route.dependant.query_params:
        if query.alias in ID_PARAMETERS:
            endpoint.id_queries.append(query.alias)
        elif query.field_info.is_required() and query.alias in VALUES:
            endpoint.value_queries.append(query.alias)
        elif query.field_info.is_required():
            problems.append(f"{endpoint.label}: no value for query parameter {query.alias!r}")
    for body in route.dependant.body_params:
        kind = type(body.field_info).__name__
        annotation = body.field_info.annotation
        if kind == "Form" or (endpoint.is_page and kind != "Body"):
            if body.alias not in ID_PARAMETERS and body.alias not in FORM_VALUES:
                problems.append(f"{endpoint.label}: no value for form field {body.alias!r}")
            endpoint.form_fields.append(body.alias)
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation.__name__ not in BODIES:
                problems.append(f"{endpoint.label}: no example body for {annotation.__name__}")
            endpoint.body_model = annotation
        else:
            problems.append(f"{endpoint.label}: cannot fill body parameter {body.alias!r}")


def ids_of(side: Side) -> dict[str, str]:
    """The value of every id parameter, taken from one side of the world."""
    assert side.member.binding is not None
    kinds = {
        "tenant": side.child.id,
        "user": side.member.user.id,
        "key": side.member.key.key.id,
        "binding": side.member.binding.id,
        **PAY_IDS[side.tenant.id],
    }
    return {name: str(kinds[kind]) for name, kind in ID_PARAMETERS.items()}


#: Each side's biller, bill, payment and dead webhook delivery, made by ``pay_world``.
PAY_IDS: dict[uuid.UUID, dict[str, uuid.UUID]] = {}


@pytest.fixture(autouse=True)
def pay_world(core_services: Services, world: SiblingWorld) -> None:
    """A biller (at an agency below each side's city), an open bill, a payment in flight and a
    webhook delivery given up on."""
    with core_services.db.unit_of_work() as session:
        for side in (world.a, world.b):
            agency = make_tenant(session, parent=side.child, kind=TenantKind.AGENCY)
            biller = make_biller(session, tenant=agency)
            (bill,) = make_bills(session, biller)
            payment = make_pending_payment(session, biller, [bill])
            delivery = make_dead_delivery(session, biller)
            PAY_IDS[side.tenant.id] = {
                "biller": biller.id,
                "bill": bill.id,
                "payment": payment.id,
                "delivery": delivery.id,
            }


def call(
    client: TestClient,
    endpoint: Endpoint,
    ids: dict[str, str],
    headers: dict[str, str] | None = None,
) -> Any:
    """Call ``endpoint`` with every id parameter filled from ``ids``."""
    path = endpoint.path
    for name in endpoint.path_params:
        value = ids.get(name, VALUES.get(name, "0"))
        path = path.replace(f"{{{name}}}", value)
        path = re.sub(rf"{{{name}:\w+}}", value, path)
    params = {name: ids[name] for name in endpoint.id_queries if name in ids}
    params.update({name: VALUES[name] for name in endpoint.value_queries})
    kwargs: dict[str, Any] = {"params": params, "headers": headers or {}}
    if endpoint.body_model is not None:
        kwargs["json"] = BODIES[endpoint.body_model.__name__](ids)
    if endpoint.is_page and endpoint.method in UNSAFE:
        session_token = client.cookies.get(HOST_PREFIX + SESSION_COOKIE)
        form = {"csrf_token": session_csrf_token(session_token) if session_token else CSRF}
        for name in endpoint.form_fields:
            form[name] = ids[name] if name in ids else FORM_VALUES.get(name, str)()
        kwargs["data"] = form
    return client.request(endpoint.method, path, follow_redirects=False, **kwargs)


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


def test_every_route_is_known_to_this_test(api_app: FastAPI) -> None:
    endpoints, problems = collect_endpoints(api_app)
    assert not problems, "extend the authorisation matrix:\n" + "\n".join(problems)
    assert any(not e.is_page for e in endpoints)


def test_anonymous_callers_are_turned_away_everywhere_but_the_public_routes(
    api_app: FastAPI, world: SiblingWorld
) -> None:
    # given an anonymous caller (with a CSRF pair, so that forms reach the sign-in check)
    anonymous = TestClient(api_app, base_url=BASE_URL)
    anonymous.cookies.set(HOST_PREFIX + CSRF_COOKIE, CSRF)
    endpoints, _ = collect_endpoints(api_app)
    wrong: list[str] = []
    for endpoint in endpoints:
        # when it calls any route that is not public
        response = call(anonymous, endpoint, ids_of(world.a))
        # then the API answers 401, and pages send it to sign in (or answer 401)
        location = response.headers.get("location", "")
        if endpoint.is_page:
            turned_away = response.status_code == 401 or (
                response.status_code == 303 and location.startswith("/login")
            )
        else:
            turned_away = response.status_code == 401
        if not turned_away:
            wrong.append(f"{endpoint.label}: {response.status_code} {location}")
    assert not wrong, "anonymous callers got through:\n" + "\n".join(wrong)


def test_another_tenants_resources_do_not_exist_for_you(
    client: TestClient, signed_in: TestClient, api_app: FastAPI, world: SiblingWorld
) -> None:
    endpoints, _ = collect_endpoints(api_app)
    own, theirs = ids_of(world.a), ids_of(world.b)
    wrong: list[str] = []
    checked = 0
    for endpoint in endpoints:
        for where, name in endpoint.id_slots():
            # when A's admin names one of B's resources, with A's own everywhere else
            ids = own | {name: theirs[name]}
            if endpoint.is_page:
                response = call(signed_in, endpoint, ids)
            else:
                response = call(client, endpoint, ids, headers=world.a.admin.headers)
            checked += 1
            # then it does not exist
            if response.status_code != 404:
                wrong.append(
                    f"{endpoint.label} with B's {name} in the {where}: {response.status_code}"
                )
    assert checked
    assert not wrong, "B's resources leaked to A's administrator:\n" + "\n".join(wrong)


def test_lists_never_mention_another_tenants_resources(
    client: TestClient, signed_in: TestClient, api_app: FastAPI, world: SiblingWorld
) -> None:
    endpoints, _ = collect_endpoints(api_app)
    forbidden = b_strings(world.b) - {""}
    wrong: list[str] = []
    for endpoint in endpoints:
        if endpoint.method != "GET" or endpoint.path_params:
            continue
        # when A's admin reads a list unfiltered
        if endpoint.is_page:
            response = signed_in.get(endpoint.path, follow_redirects=False)
        else:
            response = client.get(endpoint.path, headers=world.a.admin.headers)
        # then it succeeds (or is refused, for platform-only lists) and nothing of B's is in it
        expected = 403 if endpoint.path in PLATFORM_ONLY_LISTS else 200
        if response.status_code != expected:
            wrong.append(f"{endpoint.label}: {response.status_code}")
        leaked = sorted(s for s in forbidden if s in response.text)
        if leaked:
            wrong.append(f"{endpoint.label} shows {leaked}")
    assert not wrong, "\n".join(wrong)
