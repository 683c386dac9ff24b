"""Daily settlement: what each biller is owed for one business day, as a bank batch file.

The business day is a calendar day in China Standard Time (UTC+8, the ``Asia/Shanghai`` zone,
which has kept no daylight saving time since 1991, so the fixed offset is exact and needs no
tz database): ``business_date`` D covers ``[D 00:00+08:00, D+1 00:00+08:00)``, that is
``[D-1 16:00Z, D 16:00Z)``. A payment belongs to the day its ``finished_at`` (when it succeeded)
falls in, a refund to the day its ``finished_at`` does. Only days that have ended are settled,
since a settlement is made once and never redone.

A settlement is the day's succeeded payments minus the day's succeeded refunds (automatic refunds
of late payments never reached the biller and are not counted). It is made once per biller and
day: ``pay_settlement`` is unique per ``(biller_id, business_date)``, and a second call (or a
racing one) returns the first. Its net payout is posted to the ledger (``payable`` →
``settlement``). A day whose refunds exceed its payments is recorded with its negative net and no
transfer: the biller's payable account then shows what the biller owes back.

The batch file is CSV (RFC 4180, CRLF line ends), one header, at most one transfer, one trailer::

    batch_id,line_no,payer_bank,payer_account,payer_account_name,payee_bank,payee_account,payee_account_name,amount,currency,purpose
    STL20261126<biller>,1,…,…,…,中国工商银行大连分行,6222020200112233445,大连市供水有限公司,1234.56,CNY,代收款结算 …
    TRAILER,STL20261126<biller>,1,1234.56

Amounts are yuan with exactly two decimals, formatted from integer fen (never a float). The
payer is our settlement account: :data:`DEFAULT_PAYER` until the installation passes its own.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from civicloud.core import audit
from civicloud.core.actor import Actor, authorize
from civicloud.core.config import PaySettings
from civicloud.core.db import new_id, utcnow
from civicloud.core.errors import InvalidInput
from civicloud.core.tenants import resolve_tenant
from civicloud.pay import ledger
from civicloud.pay.errors import BillerNotFound
from civicloud.pay.models import (
    Biller,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    Settlement,
)

PERMISSION = "pay.settlement"
#: China Standard Time, the business day's clock.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
HEADER = (
    "batch_id",
    "line_no",
    "payer_bank",
    "payer_account",
    "payer_account_name",
    "payee_bank",
    "payee_account",
    "payee_account_name",
    "amount",
    "currency",
    "purpose",
)


@dataclass(frozen=True)
class PayerAccount:
    """The bank account settlements are paid from: the platform's collection account."""

    bank: str
    account: str
    name: str


def payer_from(settings: PaySettings) -> PayerAccount:
    """The collection account configured for this installation (``CIVICLOUD_PAY__SETTLEMENT_*``)."""
    return PayerAccount(
        bank=settings.settlement_bank,
        account=settings.settlement_account,
        name=settings.settlement_account_name,
    )


#: The account of the default settings, until the installation configures its own.
DEFAULT_PAYER = PayerAccount(
    bank="civicloud settlement bank", account="0000000000000000", name="civicloud 代收款专户"
)


def business_day_bounds(business_date: date) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC of ``business_date`` in China Standard Time."""
    start = datetime.combine(business_date, time(0), tzinfo=SHANGHAI)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def yuan(fen: int) -> str:
    """``fen`` as yuan with exactly two decimals (``123456`` → ``1234.56``), exactly."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def batch_id_for(biller_id: uuid.UUID, business_date: date) -> str:
    """The bank batch id of a biller's day: the same day always gives the same id."""
    return f"STL{business_date:%Y%m%d}{biller_id.hex[:16].upper()}"


def get_settlement(
    *, session: Session, actor: Actor, biller_id: uuid.UUID, business_date: date
) -> Settlement | None:
    """The biller's settlement of ``business_date``, or ``None`` (``pay.settlement`` there)."""
    _authorized_biller(session, actor, biller_id)
    return _find(session, biller_id, business_date)


def list_settlements(
    *, session: Session, actor: Actor, biller_id: uuid.UUID, limit: int = 100
) -> Sequence[Settlement]:
    """The biller's settlements, newest day first."""
    _authorized_biller(session, actor, biller_id)
    return session.scalars(
        select(Settlement)
        .where(Settlement.biller_id == biller_id)
        .order_by(Settlement.business_date.desc())
        .limit(max(1, min(limit, 1000)))
    ).all()


def settle_day(
    *,
    session: Session,
    actor: Actor,
    biller_id: uuid.UUID,
    business_date: date,
    payer: PayerAccount = DEFAULT_PAYER,
) -> Settlement:
    """Settle a biller's ended business day as a bank batch, once; again returns the first."""
    if not isinstance(business_date, date) or isinstance(business_date, datetime):
        raise InvalidInput("business_date must be a date", field="business_date")
    biller = _authorized_biller(session, actor, biller_id)
    start, end = business_day_bounds(business_date)
    if end > utcnow():
        raise InvalidInput(
            f"{business_date.isoformat()} has not ended in China Standard Time",
            field="business_date",
        )
    existing = _find(session, biller_id, business_date)
    if existing is not None:
        return existing
    paid_fen, payment_count = _sum(
        session,
        select(func.coalesce(func.sum(Payment.amount_fen), 0), func.count(Payment.id)).where(
            Payment.biller_id == biller_id,
            Payment.status == PaymentStatus.SUCCEEDED.value,
            Payment.finished_at >= start,
            Payment.finished_at < end,
        ),
    )
    refunded_fen, refund_count = _sum(
        session,
        select(func.coalesce(func.sum(Refund.amount_fen), 0), func.count(Refund.id))
        .join(Payment, Payment.id == Refund.payment_id)
        .where(
            Payment.biller_id == biller_id,
            Refund.status == RefundStatus.SUCCEEDED.value,
            Refund.origin != "automatic",
            Refund.finished_at >= start,
            Refund.finished_at < end,
        ),
    )
    settlement = Settlement(
        id=new_id(),
        biller_id=biller_id,
        business_date=business_date,
        paid_fen=paid_fen,
        refunded_fen=refunded_fen,
        net_fen=paid_fen - refunded_fen,
        payment_count=payment_count,
        refund_count=refund_count,
        created_at=utcnow(),
    )
    settlement.batch_file = batch_file(
        biller=biller, settlement=settlement, payer=payer, business_date=business_date
    )
    try:
        with session.begin_nested():
            session.add(settlement)
            # Flushed inside the savepoint: a concurrent settlement of the same day fails here
            # on the unique (biller, day), and the one that won is returned instead.
            session.flush()
    except IntegrityError:
        winner = _find(session, biller_id, business_date)
        if winner is None:
            raise
        return winner
    if settlement.net_fen > 0:
        ledger.post_settlement(session=session, settlement=settlement, posted_by=actor.name)
    audit.record(
        session=session,
        actor=actor,
        action="pay.settlement.create",
        tenant_id=biller.tenant_id,
        target=f"biller:{biller.code}",
        detail={
            "business_date": business_date.isoformat(),
            "paid_fen": paid_fen,
            "refunded_fen": refunded_fen,
            "net_fen": settlement.net_fen,
            "payments": payment_count,
            "refunds": refund_count,
        },
    )
    return settlement


def batch_file(
    *, biller: Biller, settlement: Settlement, payer: PayerAccount, business_date: date
) -> str:
    """The bank batch file (CSV) paying ``settlement``'s net to the biller, with its trailer."""
    batch_id = batch_id_for(biller.id, business_date)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    count, total = 0, 0
    if settlement.net_fen > 0:
        count, total = 1, settlement.net_fen
        purpose = (
            f"代收款结算 settlement {business_date.isoformat()}: "
            f"{settlement.payment_count} payments, {settlement.refund_count} refunds"
        )
        writer.writerow(
            (
                batch_id,
                1,
                payer.bank,
                payer.account,
                payer.name,
                biller.settlement_bank,
                biller.settlement_account,
                biller.settlement_account_name,
                yuan(settlement.net_fen),
                "CNY",
                purpose,
            )
        )
    writer.writerow(("TRAILER", batch_id, count, yuan(total)))
    return out.getvalue()


def _authorized_biller(session: Session, actor: Actor, biller_id: uuid.UUID) -> Biller:
    biller = session.get(Biller, biller_id)
    tenant = resolve_tenant(session=session, tenant_id=biller.tenant_id) if biller else None
    if biller is None or tenant is None:
        raise BillerNotFound("no such biller")
    authorize(actor, PERMISSION, path=tenant.path, what="biller")
    return biller


def _find(session: Session, biller_id: uuid.UUID, business_date: date) -> Settlement | None:
    return session.scalars(
        select(Settlement).where(
            Settlement.biller_id == biller_id, Settlement.business_date == business_date
        )
    ).one_or_none()


def _sum(session: Session, query: Select[int, int]) -> tuple[int, int]:
    total, count = session.execute(query).one()
    # PostgreSQL sums BIGINT as NUMERIC (a Decimal): back to int, exactly.
    return int(total), int(count)
