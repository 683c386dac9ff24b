"""Pay's part of the demo world: Dalian's water, power and traffic-police billers and their open
bills (``Module.demo`` of Pay's declaration; the core's demo world is made first)."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from civicloud.core import identity, roles, tenants
from civicloud.core.actor import Actor
from civicloud.core.db import utcnow
from civicloud.core.services import Services
from civicloud.pay import billing
from civicloud.pay.models import Bill, Biller
from civicloud.pay.schemas import BillerCreate


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
#: Its payer, as the README shows it masked (王*国).
DEMO_WATER_PAYER = "王建国"
#: A licence plate with open traffic fines in the demo.
DEMO_FINE_PLATE = "辽B7K2M9"
#: Each account (or plate) has this many open bills: one per month for utilities.
_BILLS_PER_ACCOUNT = 3
#: Offences of the demo's fines: code, what the decision says, fine (fen), penalty points.
_OFFENCES: tuple[tuple[str, str, int, int], ...] = (
    ("1625", "驾驶机动车违反道路交通信号灯通行", 20_000, 6),
    ("1345", "机动车违反禁止标线指示", 10_000, 3),
    ("1039", "机动车违反规定停放、临时停车，妨碍其他车辆、行人通行", 20_000, 0),  # noqa: RUF001
    ("1352", "驾驶机动车超过规定时速百分之二十以上未达到百分之五十", 20_000, 6),
    ("6011", "驾驶人未按规定使用安全带", 5_000, 1),
)
_PLACES = (
    "大连市中山区人民路与港湾街交叉口",
    "大连市西岗区黄河路与长春路交叉口",
    "大连市沙河口区西安路与长江路交叉口",
    "大连市甘井子区华北路机场立交桥段",
    "大连市高新园区黄浦路与七贤岭路交叉口",
    "大连市中山区滨海路老虎滩段",
)
#: Beijing time, as traffic police record offences.
_BEIJING = timezone(timedelta(hours=8))


def _demo_account(biller: DemoBiller, number: int) -> str:
    """The ``number``-th account (or plate) of a biller: the same on every run."""
    if biller.category == "water":
        return f"0411{number + 1:06d}"
    if biller.category == "power":
        return f"2102{zlib.crc32(f'power-{number}'.encode()) % 10**8:08d}"
    if number == 0:
        return DEMO_FINE_PLATE
    # Demo data only: repeatable pseudo-random plates, not secrets.
    rng = random.Random(f"plate-{number}")  # noqa: S311
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    return "辽B" + "".join(rng.choice(letters) for _ in range(5))


def _demo_payer(account: str) -> str:
    """The one payer of an account: the same name on every bill of it."""
    if account == DEMO_WATER_ACCOUNT:
        return DEMO_WATER_PAYER
    rng = random.Random(account)  # noqa: S311 - demo data only
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))


def _month(today: date, months_ago: int) -> date:
    """The first day of the month ``months_ago`` before ``today``'s."""
    index = today.year * 12 + today.month - 1 - months_ago
    return date(index // 12, index % 12 + 1, 1)


def _demo_rows(spec: DemoBiller, today: date) -> list[dict[str, Any]]:
    """A biller's open bills: per account, one payer; each bill numbered after its period."""
    # Demo data only: repeatable pseudo-random amounts, not secrets.
    rng = random.Random(spec.code)  # noqa: S311
    rows: list[dict[str, Any]] = []
    for index in range(spec.bills):
        account = _demo_account(spec, index // _BILLS_PER_ACCOUNT)
        months_ago = index % _BILLS_PER_ACCOUNT
        if spec.category == "fine":
            rows.append(_demo_fine(spec, rng, index, account, today))
            continue
        period = _month(today, months_ago)
        rows.append(
            {
                "bill_number": f"{spec.code.upper()}-{period:%Y%m}-{index + 1:06d}",
                "account_number": account,
                "payer_name": _demo_payer(account),
                "amount_fen": rng.randrange(1_000, 60_000),
                "period": f"{period:%Y-%m}",
                # The newest bill is due in 25 days; older ones are overdue.
                "due_date": (today + timedelta(days=25 - 30 * months_ago)).isoformat(),
                "late_fee_rule": {"per_day_basis_points": 5, "cap_fen": 5_000},
            }
        )
    return rows


def _demo_fine(
    spec: DemoBiller, rng: random.Random, index: int, plate: str, today: date
) -> dict[str, Any]:
    """A traffic fine with its decision: recorded 3 to 40 days ago, due 15 days after."""
    code, offence, fine_fen, points = rng.choice(_OFFENCES)
    recorded = datetime.combine(
        today - timedelta(days=rng.randrange(3, 41)),
        time(rng.randrange(7, 22), rng.randrange(60)),
        tzinfo=_BEIJING,
    )
    decided = recorded.date() + timedelta(days=2)
    return {
        "bill_number": f"{spec.code.upper()}-{recorded:%Y%m}-{index + 1:06d}",
        "account_number": plate,
        "payer_name": _demo_payer(plate),
        "amount_fen": fine_fen,
        "period": f"{recorded:%Y-%m}",
        "due_date": (decided + timedelta(days=15)).isoformat(),
        # An unpaid fine grows by 3% a day, never beyond the fine itself.
        "late_fee_rule": {"per_day_basis_points": 300, "cap_fen": fine_fen},
        "details": {
            "decision_number": f"2102{decided:%y%m%d}{index + 1:06d}",
            "offence_time": recorded.isoformat(),
            "place": rng.choice(_PLACES),
            "offence": offence,
            "offence_code": code,
            "points": points,
        },
    }


def seed_pay_demo(*, session: Session) -> int:
    """Dalian's billers and their open bills (idempotent); returns how many bills exist."""
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
            rows = _demo_rows(spec, today)
            billing.import_bills(
                session=session, actor=actor, biller_id=biller.id, rows=rows, source="demo"
            )
            have = len(rows)
        total += have
    return total


#: The demo's users who work Pay's bills, with the role and the tenant (by slug).
DEMO_PAY_GRANTS: tuple[tuple[str, str, str], ...] = (
    ("water.operator", "pay_operator", "dalian-water"),
)


def grant_pay_roles(*, session: Session) -> list[str]:
    """Give the core demo's users their Pay roles (idempotent); what was granted, as lines."""
    actor = Actor.system("demo")
    said: list[str] = []
    for username, role_name, slug in DEMO_PAY_GRANTS:
        user = identity.get_user_by_username(session=session, username=username)
        tenant = tenants.get_tenant_by_slug(session=session, slug=slug)
        if user is None or tenant is None:
            continue
        held = {
            (b.role_name, b.tenant_id)
            for b in roles.list_bindings(session=session, actor=actor, user_id=user.id)
        }
        if (role_name, tenant.id) not in held:
            roles.grant_role(
                session=session,
                actor=actor,
                data=roles.RoleBindingCreate(
                    user_id=user.id, role_name=role_name, tenant_id=tenant.id
                ),
            )
        said.append(f"  {username:<16} {role_name}@{slug}")
    return said


def seed(*, session: Session, services: Services, context: object) -> list[str]:
    """Pay's demo billers and bills, and its roles for the demo's users (idempotent); what to
    tell the person trying it."""
    bills = seed_pay_demo(session=session)
    granted = grant_pay_roles(session=session)
    return [
        *(["Pay roles:", *granted] if granted else []),
        f"Pay: {bills} bills of Dalian's water, power and traffic-police billers; "
        f"try water account {DEMO_WATER_ACCOUNT}",
    ]
