"""The demo world: a realistic tenant tree, users and roles, created idempotently.

China → Liaoning → Dalian (water, power, traffic police), Guizhou → Guiyang (traffic management),
Sinopec with two facilities, two central agencies, and a partner homed in Singapore.
"""

from __future__ import annotations

import random
import uuid
import zlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from civicloud.core import identity, roles, tenants
from civicloud.core.actor import Actor
from civicloud.core.db import utcnow
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
        (("operator", "dalian-water"), ("pay_operator", "dalian-water")),
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


# --- Pay: Dalian's billers and a few thousand open bills ------------------------------------


@dataclass(frozen=True)
class DemoBiller:
    """A demo biller: its agency, what it bills, and how its account numbers look."""

    tenant: str
    code: str
    name_zh: str
    name_en: str
    category: str
    account_pattern: str
    bills: int


DEMO_BILLERS: tuple[DemoBiller, ...] = (
    DemoBiller(
        "dalian-water",
        "water",
        "大连市供水有限公司",
        "Dalian Water Supply",
        "water",
        r"\d{10}",
        1500,
    ),
    DemoBiller(
        "dalian-power", "power", "国网大连供电公司", "Dalian Power Supply", "power", r"\d{12}", 1200
    ),
    DemoBiller(
        "dalian-traffic-police",
        "fines",
        "大连市公安局交通警察支队",
        "Dalian Traffic Police",
        "fine",
        r"辽B[A-Z0-9]{5}",
        300,
    ),
)
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰"
#: An account of Dalian Water Supply with open bills in the demo, printed for trying it out.
DEMO_WATER_ACCOUNT = "0411000001"


def _demo_account(biller: DemoBiller, rng: random.Random, index: int) -> str:
    if biller.category == "water":
        return f"0411{index % 600 + 1:06d}"
    if biller.category == "power":
        return f"2102{rng.randrange(10**8):08d}"
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    return "辽B" + "".join(rng.choice(letters) for _ in range(5))


def seed_pay_demo(*, session: Session) -> int:
    """Dalian's billers and their open bills (idempotent); returns how many bills exist."""
    from sqlalchemy import func, select

    from civicloud.pay import billing
    from civicloud.pay.models import Bill, Biller
    from civicloud.pay.schemas import BillerCreate

    actor = Actor.system("demo")
    today = utcnow().date()
    total = 0
    for spec in DEMO_BILLERS:
        tenant = tenants.get_tenant_by_slug(session=session, slug=spec.tenant)
        if tenant is None:
            continue
        biller = session.scalars(
            select(Biller).where(Biller.tenant_id == tenant.id, Biller.code == spec.code)
        ).first()
        if biller is None:
            biller = billing.create_biller(
                session=session,
                actor=actor,
                data=BillerCreate(
                    tenant_id=tenant.id,
                    code=spec.code,
                    name_zh=spec.name_zh,
                    name_en=spec.name_en,
                    category=spec.category,
                    account_pattern=spec.account_pattern,
                    settlement_bank="中国工商银行大连分行 ICBC Dalian",
                    settlement_account=f"62220202001{zlib.crc32(spec.code.encode()) % 10**8:08d}",
                    settlement_account_name=spec.name_zh,
                ),
            )
        have = (
            session.scalar(
                select(func.count()).select_from(Bill).where(Bill.biller_id == biller.id)
            )
            or 0
        )
        if have == 0:
            # Demo data only: repeatable pseudo-random names and amounts, not secrets.
            rng = random.Random(spec.code)  # noqa: S311
            rows = []
            for index in range(spec.bills):
                months_ago = index % 3
                rows.append(
                    {
                        "bill_number": f"{spec.code.upper()}-{today:%Y%m}-{index + 1:06d}",
                        "account_number": _demo_account(spec, rng, index),
                        "payer_name": rng.choice(_SURNAMES)
                        + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2)))),
                        "amount_fen": rng.randrange(1_000, 60_000)
                        if spec.category != "fine"
                        else rng.choice((5_000, 10_000, 20_000)),
                        "period": f"{today.year}-{max(today.month - months_ago, 1):02d}",
                        "due_date": (today + timedelta(days=25 - 20 * months_ago)).isoformat(),
                        "late_fee_rule": {"per_day_basis_points": 5, "cap_fen": 5_000}
                        if spec.category != "fine"
                        else None,
                    }
                )
            billing.import_bills(
                session=session, actor=actor, biller_id=biller.id, rows=rows, source="demo"
            )
            have = len(rows)
        total += have
    return total
