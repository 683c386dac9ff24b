"""What the console lists of payments, bills, refunds and settlements: authorised queries and
the filters an operator answering the 12345 hotline needs ("this citizen's account number,
last week").

Each ``*_query`` function returns an unexecuted ``Select`` over the rows the actor may see (by
the permission that reads them, in the subtrees their grants reach); each ``by_*`` function
narrows such a query by one filter value. The console's list component
(``civicloud.web.lists``) selects its columns over them, sorts, pages, counts and exports.

The filters are written for large tables:

* an account number, a bill number or a payer's name finds the bills first (indexed) and the
  payments covering them by ``IN``, never by scanning payments;
* a date range is a half-open interval ``[start, end)`` over an indexed time;
* a biller filter asks :func:`~civicloud.pay.billing.get_biller_or_raise` first, so that a
  biller the actor may not see is refused plainly, as everywhere (``BillerNotFound`` or
  ``PermissionDenied``).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, SQLColumnExpression, and_, func, or_, select, true
from sqlalchemy.orm import Session

from civicloud.core.actor import Actor
from civicloud.core.caches import caches_of
from civicloud.core.tenants.models import Tenant
from civicloud.core.tenants.service import in_subtrees
from civicloud.pay import settlement
from civicloud.pay.billing import BILLER_NAMES, BILLER_READ, get_biller_or_raise
from civicloud.pay.errors import BillerNotFound
from civicloud.pay.models import Bill, Biller, Payment, PaymentBill, Refund, Settlement
from civicloud.pay.payments import PAYMENT_READ

__all__ = [
    "bill_query",
    "biller_names",
    "by_account",
    "by_bill_number",
    "by_payer",
    "by_trade_no",
    "checked_biller",
    "days_between",
    "first_account",
    "first_payer",
    "may_list",
    "of_biller",
    "payment_query",
    "refund_query",
    "settlement_query",
    "within",
]


def _visible(actor: Actor, permission: str) -> ColumnElement[bool]:
    return in_subtrees(Tenant.path, actor.roots(permission))


def payment_query(*, actor: Actor) -> Select[Any]:
    """Payments of the billers whose tenants the actor may read payments of."""
    return (
        select(Payment)
        .join(Tenant, Tenant.id == Payment.tenant_id)
        .join(Biller, Biller.id == Payment.biller_id)
        .where(_visible(actor, PAYMENT_READ))
    )


def bill_query(*, actor: Actor) -> Select[Any]:
    """Bills of the billers the actor may read."""
    return (
        select(Bill)
        .join(Biller, Biller.id == Bill.biller_id)
        .join(Tenant, Tenant.id == Biller.tenant_id)
        .where(_visible(actor, BILLER_READ))
    )


def refund_query(*, actor: Actor) -> Select[Any]:
    """Refunds of payments the actor may read (refunding itself needs ``pay.refund``)."""
    return (
        select(Refund)
        .join(Payment, Payment.id == Refund.payment_id)
        .join(Tenant, Tenant.id == Payment.tenant_id)
        .join(Biller, Biller.id == Payment.biller_id)
        .where(_visible(actor, PAYMENT_READ))
    )


def settlement_query(*, actor: Actor) -> Select[Any]:
    """Settlements of the billers the actor may run and read settlements of."""
    return (
        select(Settlement)
        .join(Biller, Biller.id == Settlement.biller_id)
        .join(Tenant, Tenant.id == Biller.tenant_id)
        .where(_visible(actor, settlement.PERMISSION))
    )


def biller_names(
    *, session: Session, actor: Actor, permission: str = BILLER_READ
) -> list[tuple[uuid.UUID, str, str]]:
    """``(id, name_zh, name_en)`` of the billers where the actor holds ``permission``, by
    code: what a list's biller filter offers. Kept a few seconds per set of subtrees
    (``core.caches``; a biller created or renamed clears it on commit), since every search
    of every list renders the filter."""
    roots = actor.roots(permission)
    key = (permission, None if roots is None else tuple(roots))
    caches = caches_of(session)
    cache = caches.get(BILLER_NAMES) if caches is not None else None
    found = cache.get(key) if cache is not None else None
    if found is not None:
        return list(found)
    rows = session.execute(
        select(Biller.id, Biller.name_zh, Biller.name_en)
        .join(Tenant, Tenant.id == Biller.tenant_id)
        .where(in_subtrees(Tenant.path, roots))
        .order_by(Biller.code)
    )
    names = [(row[0], row[1], row[2]) for row in rows]
    if cache is not None:
        cache.put(key, tuple(names))
    return names


def may_list(actor: Actor, what: str) -> bool:
    """Whether ``actor`` may list ``what`` (payments, bills, refunds, settlements) anywhere: a
    page that may not says so instead of showing an empty list."""
    permission = {
        "payments": PAYMENT_READ,
        "bills": BILLER_READ,
        "refunds": PAYMENT_READ,
        "settlements": settlement.PERMISSION,
    }[what]
    return actor.roots(permission) != []


# --- columns that need the bills -------------------------------------------------------------


def first_account() -> ColumnElement[str]:
    """The (first) account number of the bills a payment covers: a payment covers one
    citizen's bills of one biller, usually one account."""
    return (
        select(func.min(Bill.account_number))
        .join(PaymentBill, PaymentBill.bill_id == Bill.id)
        .where(PaymentBill.payment_id == Payment.id)
        .correlate(Payment)
        .scalar_subquery()
    )


def first_payer() -> ColumnElement[str]:
    """The payer's name on the (first of the) bills a payment covers."""
    return (
        select(func.min(Bill.payer_name))
        .join(PaymentBill, PaymentBill.bill_id == Bill.id)
        .where(PaymentBill.payment_id == Payment.id)
        .correlate(Payment)
        .scalar_subquery()
    )


# --- filters ---------------------------------------------------------------------------------


def _payments_of_bills(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    covering = (
        select(PaymentBill.payment_id).join(Bill, Bill.id == PaymentBill.bill_id).where(condition)
    )
    return Payment.id.in_(covering)


def by_account(query: Select[Any], account: str) -> Select[Any]:
    """Payments covering a bill of this account number (exactly as billed)."""
    return query.where(_payments_of_bills(Bill.account_number == account))


def by_bill_number(query: Select[Any], number: str) -> Select[Any]:
    """Payments covering the bill with this number."""
    return query.where(_payments_of_bills(Bill.bill_number == number))


def by_payer(query: Select[Any], name: str) -> Select[Any]:
    """Payments covering a bill made out to this payer (the whole name, as billed)."""
    return query.where(_payments_of_bills(Bill.payer_name == name))


def by_trade_no(query: Select[Any], text: str) -> Select[Any]:
    """Payments whose transaction number starts with ``text``, or whose provider's number is
    ``text`` (what a citizen reads off their Alipay or WeChat receipt)."""
    return query.where(
        or_(
            Payment.trade_no.startswith(text.upper(), autoescape=True),
            Payment.provider_trade_no == text,
        )
    )


def checked_biller(*, session: Session, actor: Actor, biller: str, permission: str) -> uuid.UUID:
    """The id of a biller the actor holds ``permission`` at, from a filter's text (refused
    plainly otherwise: ``BillerNotFound`` for one it cannot see or that does not exist)."""
    try:
        biller_id = uuid.UUID(biller)
    except ValueError:
        raise BillerNotFound("no such biller", resource="biller") from None
    get_biller_or_raise(session=session, actor=actor, biller_id=biller_id, permission=permission)
    return biller_id


def of_biller(
    query: Select[Any],
    *,
    session: Session,
    actor: Actor,
    biller: str,
    column: SQLColumnExpression[uuid.UUID],
    permission: str,
) -> Select[Any]:
    """Rows of one biller, which the actor must hold ``permission`` at (see
    :func:`checked_biller`)."""
    biller_id = checked_biller(session=session, actor=actor, biller=biller, permission=permission)
    return query.where(column == biller_id)


def within(
    column: SQLColumnExpression[datetime], start: datetime | None, end: datetime | None
) -> ColumnElement[bool]:
    """``column`` in the half-open interval ``[start, end)`` (open where ``None``)."""
    conditions: list[ColumnElement[bool]] = [true()]
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return and_(*conditions)


def days_between(
    column: SQLColumnExpression[date], first: date | None, last: date | None
) -> ColumnElement[bool]:
    """``column`` (a day) from ``first`` to ``last``, both included (open where ``None``)."""
    conditions: list[ColumnElement[bool]] = [true()]
    if first is not None:
        conditions.append(column >= first)
    if last is not None:
        conditions.append(column <= last)
    return and_(*conditions)
