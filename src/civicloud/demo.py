"""The demo world: a realistic tenant tree, users and roles, created idempotently.

China → Liaoning → Dalian (water, power, traffic police), Guizhou → Guiyang (traffic management),
Sinopec with two facilities, two central agencies, and a partner homed in Singapore.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from civicloud.core import identity, roles, tenants
from civicloud.core.actor import Actor
from civicloud.core.services import Services
from civicloud.core.tenants import TenantCreate, TenantKind

#: Printed by `civicloud demo` for every demo login; demo data only, never a real account.
DEMO_PASSWORD = "civicloud-demo-2026"  # noqa: S105


@dataclass(frozen=True)
class DemoTenant:
    """A tenant of the demo world, under ``parent`` (a slug)."""

    slug: str
    name_zh: str
    name_en: str
    kind: TenantKind
    parent: str | None
    region: str | None = None


DEMO_TENANTS: tuple[DemoTenant, ...] = (
    DemoTenant("china", "中华人民共和国", "China", TenantKind.COUNTRY, None, "cn-beijing"),
    DemoTenant(
        "liaoning", "辽宁省", "Liaoning Province", TenantKind.PROVINCE, "china", "cn-dalian"
    ),
    DemoTenant("dalian", "大连市", "Dalian", TenantKind.CITY, "liaoning", "cn-dalian"),
    DemoTenant(
        "dalian-water", "大连市供水有限公司", "Dalian Water Supply", TenantKind.AGENCY, "dalian"
    ),
    DemoTenant(
        "dalian-power", "国网大连供电公司", "Dalian Power Supply", TenantKind.AGENCY, "dalian"
    ),
    DemoTenant(
        "dalian-traffic-police",
        "大连市公安局交通警察支队",
        "Dalian Traffic Police",
        TenantKind.AGENCY,
        "dalian",
    ),
    DemoTenant("guizhou", "贵州省", "Guizhou Province", TenantKind.PROVINCE, "china", "cn-guiyang"),
    DemoTenant("guiyang", "贵阳市", "Guiyang", TenantKind.CITY, "guizhou", "cn-guiyang"),
    DemoTenant(
        "guiyang-traffic",
        "贵阳市交通管理局",
        "Guiyang Traffic Management Bureau",
        TenantKind.AGENCY,
        "guiyang",
    ),
    DemoTenant(
        "sinopec", "中国石油化工集团有限公司", "Sinopec Group", TenantKind.ENTERPRISE, "china"
    ),
    DemoTenant(
        "sinopec-dalian",
        "中国石化大连石油化工有限公司",
        "Sinopec Dalian Petrochemical",
        TenantKind.FACILITY,
        "sinopec",
        "cn-dalian",
    ),
    DemoTenant(
        "sinopec-yanshan",
        "中国石化北京燕山分公司",
        "Sinopec Beijing Yanshan",
        TenantKind.FACILITY,
        "sinopec",
        "cn-beijing",
    ),
    DemoTenant(
        "cma", "中国气象局", "China Meteorological Administration", TenantKind.AGENCY, "china"
    ),
    DemoTenant(
        "ccgp",
        "中央政府采购中心",
        "Central Government Procurement Center",
        TenantKind.AGENCY,
        "china",
    ),
    DemoTenant(
        "sg-partner",
        "新加坡合作伙伴办公室",
        "Singapore Partner Office",
        TenantKind.PARTNER,
        None,
        "ap-singapore",
    ),
)


@dataclass(frozen=True)
class DemoUser:
    """A demo login: its home tenant and the roles it holds (role, tenant slug or ``None``)."""

    username: str
    display_name: str
    home: str
    grants: tuple[tuple[str, str | None], ...]


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("admin", "平台管理员 Platform Admin", "china", (("platform_admin", None),)),
    DemoUser("dalian.admin", "王芳 Wang Fang", "dalian", (("tenant_admin", "dalian"),)),
    DemoUser(
        "water.operator",
        "张伟 Zhang Wei",
        "dalian-water",
        (("operator", "dalian-water"),),
    ),
    DemoUser("guiyang.admin", "李娜 Li Na", "guiyang", (("tenant_admin", "guiyang"),)),
    DemoUser("sinopec.admin", "刘洋 Liu Yang", "sinopec", (("tenant_admin", "sinopec"),)),
    DemoUser("auditor", "陈静 Chen Jing", "china", (("auditor", "china"),)),
    DemoUser("sg.partner", "Tan Wei Ming", "sg-partner", (("tenant_admin", "sg-partner"),)),
)


@dataclass(frozen=True)
class DemoSummary:
    """What the demo world holds, for printing."""

    tenants: int
    users: tuple[str, ...]
    password: str


def seed_demo_world(*, session: Session, services: Services) -> DemoSummary:
    """Create whatever part of the demo world is missing; running it twice changes nothing."""
    actor = Actor.system("demo")
    ids: dict[str, uuid.UUID] = {}
    for spec in DEMO_TENANTS:
        found = tenants.get_tenant_by_slug(session=session, slug=spec.slug)
        if found is None:
            found = tenants.create_tenant(
                session=session,
                actor=actor,
                data=TenantCreate(
                    slug=spec.slug,
                    name_zh=spec.name_zh,
                    name_en=spec.name_en,
                    kind=spec.kind,
                    parent_id=ids[spec.parent] if spec.parent else None,
                    region_code=spec.region,
                ),
            )
        ids[spec.slug] = found.id
    held = {
        (b.user_id, b.role_name, b.tenant_id)
        for b in roles.list_bindings(session=session, actor=actor)
    }
    for user_spec in DEMO_USERS:
        user = identity.get_user_by_username(session=session, username=user_spec.username)
        if user is None:
            user = identity.create_user(
                session=session,
                actor=actor,
                data=identity.UserCreate(
                    username=user_spec.username,
                    display_name=user_spec.display_name,
                    password=DEMO_PASSWORD,
                    tenant_id=ids[user_spec.home],
                ),
                passwords=services.passwords,
            )
        for role_name, slug in user_spec.grants:
            tenant_id = ids[slug] if slug else None
            if (user.id, role_name, tenant_id) not in held:
                roles.grant_role(
                    session=session,
                    actor=actor,
                    data=roles.RoleBindingCreate(
                        user_id=user.id, role_name=role_name, tenant_id=tenant_id
                    ),
                )
    return DemoSummary(
        tenants=len(DEMO_TENANTS),
        users=tuple(u.username for u in DEMO_USERS),
        password=DEMO_PASSWORD,
    )


def listening_url(host: str, port: int) -> str:
    """The address a browser on this machine opens for a server listening on ``host:port``:
    ``localhost`` for loopback and for every interface, else the host itself."""
    if host in ("", "0.0.0.0", "::", "127.0.0.1", "::1", "localhost"):  # noqa: S104 - a name
        name = "localhost"
    else:
        name = f"[{host}]" if ":" in host else host
    return f"http://{name}:{port}"
