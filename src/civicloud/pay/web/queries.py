"""Read-only look-ups the pages need that the services do not offer yet.

Each one either asks a service first (which authorises, exactly as for the API) or filters by
the caller's grants the way ``billing.list_billers`` does; none changes anything. They belong
in ``billing.py`` and ``payments.py`` and can move there as they are.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from civicloud.core.actor import Actor
from civicloud.core.tenants import Tenant, in_subtrees
from civicloud.pay import billing
from civicloud.pay.models import Bill, Biller, Payment, PaymentBill, PaymentStatus

PAYMENT_READ = "pay.payment.read"
#: The most rows a console list shows at once.
LIST_LIMIT = 100
CATEGORY_ORDER = {"water": 0, "power": 1, "gas": 2, "fine": 3, "fee": 4}


@dataclass(frozen=True)
class City:
    """A city and the billers citizens can pay below it."""

    tenant: Tenant
    billers: list[Biller]


def cities_with_billers(*, session: Session) -> list[City]:
    """Every city with billers below it, each with those billers (public)."""
    billers = billing.public_billers(session=session)
    if not billers:
        return []
    homes = {
        t.id: t
        for t in session.scalars(
            select(Tenant).where(Tenant.id.in_({b.tenant_id for b in billers}))
        )
    }
    # A tenant's path names every ancestor: /<root>/<…>/<itself>/.
    ancestry = {
        home_id: [uuid.UUID(part) for part in home.path.strip("/").split("/")]
        for home_id, home in homes.items()
    }
    above = {i for ids in ancestry.values() for i in ids}
    cities = {
        t.id: City(t, [])
        for t in session.scalars(select(Tenant).where(Tenant.id.in_(above), Tenant.kind == "city"))
    }
    # Utilities first, as citizens look for them most, then fines and fees.
    for biller in sorted(billers, key=lambda b: (CATEGORY_ORDER.get(b.category, 9), b.name_zh)):
        for tenant_id in ancestry.get(biller.tenant_id, []):
            if tenant_id in cities:
                cities[tenant_id].billers.append(biller)
                break
    return sorted(cities.values(), key=lambda c: c.tenant.path)


def bill_counts(
    *, session: Session, biller_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """How many bills of each status each of these billers has (callers pass visible billers)."""
    counts: dict[uuid.UUID, dict[str, int]] = {b: {} for b in biller_ids}
    if biller_ids:
        rows = session.execute(
            select(Bill.biller_id, Bill.status, func.count())
            .where(Bill.biller_id.in_(list(biller_ids)))
            .group_by(Bill.biller_id, Bill.status)
        ).all()
        for biller_id, status, count in rows:
            counts[biller_id][status] = int(count)
    return counts


def list_bills(
    *,
    session: Session,
    actor: Actor,
    biller_id: uuid.UUID,
    search: str = "",
    status: str = "",
    limit: int = LIST_LIMIT,
) -> tuple[Biller, Sequence[Bill]]:
    """A biller (``pay.biller.read`` there) and its bills, by bill or account number prefix."""
    biller = billing.get_biller_or_raise(session=session, actor=actor, biller_id=biller_id)
    query = select(Bill).where(Bill.biller_id == biller.id)
    if search:
        query = query.where(
            or_(
                Bill.bill_number.startswith(search, autoescape=True),
                Bill.account_number.startswith(search, autoescape=True),
            )
        )
    if status:
        query = query.where(Bill.status == status)
    bills = session.scalars(
        query.order_by(Bill.due_date.desc(), Bill.bill_number).limit(limit)
    ).all()
    return biller, bills


def search_payments(
    *,
    session: Session,
    actor: Actor,
    trade_no: str = "",
    status: str = "",
    biller_id: uuid.UUID | None = None,
    limit: int = LIST_LIMIT,
) -> Sequence[Payment]:
    """Payments where the actor holds ``pay.payment.read``, newest first, filtered."""
    query = (
        select(Payment)
        .join(Tenant, Tenant.id == Payment.tenant_id)
        .where(in_subtrees(Tenant.path, actor.roots(PAYMENT_READ)))
    )
    if biller_id is not None:
        # Asked first, so that a biller the actor cannot see is a 404, as everywhere.
        billing.get_biller_or_raise(session=session, actor=actor, biller_id=biller_id)
        query = query.where(Payment.biller_id == biller_id)
    if trade_no:
        query = query.where(Payment.trade_no.startswith(trade_no, autoescape=True))
    if status in {s.value for s in PaymentStatus}:
        query = query.where(Payment.status == status)
    return session.scalars(query.order_by(Payment.created_at.desc(), Payment.id).limit(limit)).all()


def payment_bills(*, session: Session, payment: Payment) -> list[tuple[Bill, int]]:
    """The bills a payment covers, each with the fen it pays (callers authorised the payment)."""
    return [
        (bill, int(amount))
        for bill, amount in session.execute(
            select(Bill, PaymentBill.amount_fen)
            .join(PaymentBill, PaymentBill.bill_id == Bill.id)
            .where(PaymentBill.payment_id == payment.id)
            .order_by(Bill.bill_number)
        )
    ]
