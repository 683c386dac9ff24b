"""The core's part of the authorisation matrix: its public routes, the ids of tenants, users,
keys and role bindings, and its request models and form fields."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from tests.factories.core import Side, unique
from tests.functional.matrix import MatrixSpec

from civicloud.core import identity, once
from civicloud.core.services import Services


def build(services: Services, side: Side) -> Mapping[str, uuid.UUID]:
    """The side's own tenant (its city), user, key and role binding, made with the world, and a
    browser sign-in of its user."""
    assert side.member.binding is not None
    with services.db.unit_of_work() as session:
        user = session.merge(side.member.user)
        web_session, _token = identity.start_web_session(session=session, user=user, hours=1)
    return {
        "tenant": side.child.id,
        "user": side.member.user.id,
        "key": side.member.key.key.id,
        "binding": side.member.binding.id,
        "session": web_session.id,
    }


SPEC = MatrixSpec(
    name="core",
    public=frozenset(
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
        }
    ),
    id_parameters={
        "tenant_id": "tenant",
        "parent_id": "tenant",
        "root_id": "tenant",
        "user_id": "user",
        "key_id": "key",
        "binding_id": "binding",
        "session_id": "session",
    },
    # An audit record's number: record 1 is the platform chain's first, which a tenant's
    # administrator may not read (that another tenant's records are not found is
    # tests/functional/core/test_audit_api.py's and test_audit_pages.py's).
    values={"seq": "1"},
    # The background jobs page is platform-wide (core.job.read): a tenant's administrator is
    # refused; so is verifying the audit log, which walks every chain.
    platform_only_lists=frozenset({"/console/jobs", "/console/audit/verify"}),
    bodies={
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
        "RegionCreate": lambda _ids: {
            "code": f"cn-m{uuid.uuid4().hex[:10]}",
            "name_zh": "矩阵",
            "name_en": "Matrix",
            "country_code": "CN",
        },
    },
    form_values={
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
        # ``confirm`` (a confirmation step's "yes") is filled by Pay's spec, which has it too:
        # the specs are merged, and a field two specs define must be one definition.
        "permissions": lambda: "core.tenant.read",
        "form_token": once.new_token,
    },
    build=build,
)
