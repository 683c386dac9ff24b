"""Helpers of the web shell's tests: the seeded world and a browser-like client."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx2
from fastapi.testclient import TestClient

from civicloud.app import load_settings
from civicloud.core import identity, roles, tenants
from civicloud.core.config import AuthSettings, Settings
from civicloud.core.roles import Actor
from civicloud.core.services import Services
from civicloud.core.tenants import TenantCreate, TenantKind
from civicloud.web.deps import CSRF_COOKIE, HOST_PREFIX, SESSION_COOKIE, session_csrf_token

PASSWORD = "correct-horse-battery-staple"
HTML = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}


@dataclass(frozen=True)
class World:
    """Ids of the seeded tenants (by slug) and users (by username)."""

    tenants: dict[str, uuid.UUID]
    users: dict[str, uuid.UUID]
    password: str = PASSWORD


_TENANTS = (
    ("china", "中华人民共和国", "China", TenantKind.COUNTRY, None, "cn-beijing"),
    ("liaoning", "辽宁省", "Liaoning Province", TenantKind.PROVINCE, "china", "cn-dalian"),
    ("dalian", "大连市", "Dalian", TenantKind.CITY, "liaoning", None),
    (
        "dalian-water",
        "大连市供水有限公司",
        "Dalian Water Supply",
        TenantKind.AGENCY,
        "dalian",
        None,
    ),
    ("guizhou", "贵州省", "Guizhou Province", TenantKind.PROVINCE, "china", "cn-guiyang"),
    ("guiyang", "贵阳市", "Guiyang", TenantKind.CITY, "guizhou", None),
)
_USERS = (
    ("admin", "平台管理员", "china", "platform_admin", None),
    ("dalian.admin", "王芳", "dalian", "tenant_admin", "dalian"),
    ("lock.test", "锁定测试", "dalian", "operator", "dalian"),
    ("water.viewer", "张伟", "dalian-water", "viewer", "dalian-water"),
    ("guiyang.admin", "李娜", "guiyang", "tenant_admin", "guiyang"),
)


def seed_world(services: Services) -> World:
    """Create the tenant tree and users above through the core services."""
    system = Actor.system("tests")
    tenant_ids: dict[str, uuid.UUID] = {}
    user_ids: dict[str, uuid.UUID] = {}
    with services.db.unit_of_work() as session:
        for slug, name_zh, name_en, kind, parent, region in _TENANTS:
            tenant = tenants.create_tenant(
                session=session,
                actor=system,
                data=TenantCreate(
                    slug=slug,
                    name_zh=name_zh,
                    name_en=name_en,
                    kind=kind,
                    parent_id=tenant_ids[parent] if parent else None,
                    region_code=region,
                ),
            )
            tenant_ids[slug] = tenant.id
        for username, display_name, home, role, scope in _USERS:
            user = identity.create_user(
                session=session,
                actor=system,
                data=identity.UserCreate(
                    username=username,
                    display_name=display_name,
                    password=PASSWORD,
                    tenant_id=tenant_ids[home],
                ),
                passwords=services.passwords,
            )
            roles.grant_role(
                session=session,
                actor=system,
                data=roles.RoleBindingCreate(
                    user_id=user.id,
                    role_name=role,
                    tenant_id=tenant_ids[scope] if scope else None,
                ),
            )
            user_ids[username] = user.id
    return World(tenants=tenant_ids, users=user_ids)


def cheap_settings(data_dir: Path, **web: object) -> Settings:
    """Settings with argon2 costs low enough for tests."""
    return load_settings(
        data_dir=data_dir,
        auth=AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1),
        web=web,
    )


class Browser:
    """A TestClient used as a browser: it keeps cookies and submits forms with their CSRF token."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def cookie(self, name: str) -> str | None:
        """Cookie ``name`` as the site set it: ``__Host-`` prefixed over HTTPS."""
        secure = str(self.client.base_url).startswith("https:")
        return self.client.cookies.get(HOST_PREFIX + name if secure else name)

    def csrf(self) -> str:
        """The token the page's forms carry: the session's when signed in, else the CSRF
        cookie's (loading a form first if there is none)."""
        session_token = self.cookie(SESSION_COOKIE)
        if session_token:
            return session_csrf_token(session_token)
        token = self.cookie(CSRF_COOKIE)
        if token is None:
            self.client.get("/login")
            token = self.cookie(CSRF_COOKIE)
        assert token is not None
        return token

    def submit(self, url: str, data: dict[str, str] | None = None) -> httpx2.Response:
        """Post a form with the page's CSRF token; the redirect is not followed."""
        return self.client.post(
            url, data={**(data or {}), "csrf_token": self.csrf()}, follow_redirects=False
        )

    def sign_in(self, username: str, password: str = PASSWORD) -> httpx2.Response:
        """Sign in through the login form."""
        return self.submit("/login", {"username": username, "password": password})


def text_of(html: str) -> str:
    """The visible text of a page, tags removed and blanks collapsed (for assertions)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
