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
The file keeps the bank's format exactly, so a value in it that a spreadsheet would run as a
formula (``=…``, ``+…``, ``@…``, see ``core.csvsafe``) or that would break a line of it (a control
character) is refused with :class:`~civicloud.pay.errors.UnsafeBatchValue`, naming the line and
column, rather than altered: the biller's settlement account must be corrected first.

A day with no succeeded payment and no refund has nothing to settle and is refused
(:class:`~civicloud.pay.errors.NothingToSettle`). :func:`preview_day` shows what
:func:`settle_day` would make (counts, totals, the payee's account) without making it, and
:func:`unsettled_days` lists the ended days that still wait to be settled.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import Date, Select, cast, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from civicloud.core import audit, csvsafe
from civicloud.core.actor import Actor, authorize
from civicloud.core.db import new_id, utcnow
from civicloud.core.errors import InvalidInput, PermissionDenied
from civicloud.core.tenants import resolve_tenant
from civicloud.pay import ledger
from civicloud.pay.errors import (
    BillerNotFound,
    NothingToSettle,
    SettlementChanged,
    UnsafeBatchValue,
)
from civicloud.pay.models import (
    Biller,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    Settlement,
)
from civicloud.pay.settings import PaySettings

PERMISSION = "pay.settlement"
#: How far back the settlements page looks for days still to settle.
UNSETTLED_LOOKBACK_DAYS = 92
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


@dataclass(frozen=True)
class DayFigures:
    """What a biller's day would settle: its succeeded payments and refunds, and the net."""

    business_date: date
    paid_fen: int
    payment_count: int
    refunded_fen: int
    refund_count: int

    @property
    def net_fen(self) -> int:
        """Payments less refunds (negative when refunds exceed payments)."""
        return self.paid_fen - self.refunded_fen

    @property
    def empty(self) -> bool:
        """Whether the day has neither a payment nor a refund."""
        return not self.payment_count and not self.refund_count


@dataclass(frozen=True)
class SettlementPreview:
    """A settlement before it is made: the figures, who is paid, and the batch it would send."""

    biller: Biller
    figures: DayFigures
    payer: PayerAccount
    batch_id: str
    #: The settlement of this day, when it was made already (then it is shown, not made again).
    existing: Settlement | None

    @property
    def transfers(self) -> bool:
        """Whether the batch carries a transfer (only a positive net is paid out)."""
        return self.figures.net_fen > 0


def preview_day(
    *,
    session: Session,
    actor: Actor,
    biller_id: uuid.UUID,
    business_date: date,
    payer: PayerAccount = DEFAULT_PAYER,
) -> SettlementPreview:
    """What settling a biller's ended day would make, made nowhere (refused as ``settle_day``)."""
    biller = _authorized_biller(session, actor, biller_id)
    _check_ended(business_date)
    existing = _find(session, biller_id, business_date)
    if existing is not None:
        figures = DayFigures(
            business_date,
            existing.paid_fen,
            existing.payment_count,
            existing.refunded_fen,
            existing.refund_count,
        )
    else:
        figures = _figures(session, biller_id, business_date)
        _check_settleable(figures)
        check_batch(_batch_rows(biller, figures, payer))
    return SettlementPreview(
        biller=biller,
        figures=figures,
        payer=payer,
        batch_id=batch_id_for(biller.id, business_date),
        existing=existing,
    )


def settle_day(
    *,
    session: Session,
    actor: Actor,
    biller_id: uuid.UUID,
    business_date: date,
    payer: PayerAccount = DEFAULT_PAYER,
    expected_net_fen: int | None = None,
) -> Settlement:
    """Settle a biller's ended business day as a bank batch, once; again returns the first.

    ``expected_net_fen`` is the net a person confirmed on a preview: if the day's figures say
    otherwise now, nothing is made (``SettlementChanged``).
    """
    biller = _authorized_biller(session, actor, biller_id)
    _check_ended(business_date)
    existing = _find(session, biller_id, business_date)
    if existing is not None:
        return existing
    figures = _figures(session, biller_id, business_date)
    _check_settleable(figures)
    if expected_net_fen is not None and expected_net_fen != figures.net_fen:
        raise SettlementChanged(
            "the day's net changed from %(confirmed)s to %(now)s since it was previewed; "
            "review it again",
            params={"confirmed_fen": expected_net_fen, "now_fen": figures.net_fen},
        )
    paid_fen, payment_count = figures.paid_fen, figures.payment_count
    refunded_fen, refund_count = figures.refunded_fen, figures.refund_count
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
    return _record(session, actor, biller, settlement)


@dataclass(frozen=True)
class UnsettledDay:
    """An ended day of a biller with payments or refunds and no settlement yet."""

    biller_id: uuid.UUID
    business_date: date
    payment_count: int
    paid_fen: int
    refund_count: int
    refunded_fen: int

    @property
    def net_fen(self) -> int:
        """Payments less refunds."""
        return self.paid_fen - self.refunded_fen


def unsettled_days(
    *,
    session: Session,
    actor: Actor,
    biller_ids: Sequence[uuid.UUID],
    days: int = UNSETTLED_LOOKBACK_DAYS,
    limit: int = 100,
) -> list[UnsettledDay]:
    """The ended days of the last ``days`` with payments or refunds that no settlement covers,
    oldest first, of the billers among ``biller_ids`` the actor may settle."""
    allowed = []
    for biller_id in biller_ids:
        try:
            allowed.append(_authorized_biller(session, actor, biller_id).id)
        except (BillerNotFound, PermissionDenied):
            continue
    if not allowed:
        return []
    today = utcnow().astimezone(SHANGHAI).date()
    since, _ = business_day_bounds(today - timedelta(days=max(1, min(days, 3660))))
    until, _ = business_day_bounds(today)
    found: dict[tuple[uuid.UUID, date], list[int]] = {}
    payment_day = _local_day(session, Payment.finished_at)
    for biller_id, day, count, total in session.execute(
        select(Payment.biller_id, payment_day, func.count(Payment.id), func.sum(Payment.amount_fen))
        .where(
            Payment.biller_id.in_(allowed),
            Payment.status == PaymentStatus.SUCCEEDED.value,
            Payment.finished_at >= since,
            Payment.finished_at < until,
        )
        .group_by(Payment.biller_id, payment_day)
    ):
        found.setdefault((biller_id, _as_date(day)), [0, 0, 0, 0])[0:2] = [int(count), int(total)]
    refund_day = _local_day(session, Refund.finished_at)
    for biller_id, day, count, total in session.execute(
        select(Payment.biller_id, refund_day, func.count(Refund.id), func.sum(Refund.amount_fen))
        .join(Payment, Payment.id == Refund.payment_id)
        .where(
            Payment.biller_id.in_(allowed),
            Refund.status == RefundStatus.SUCCEEDED.value,
            Refund.origin != "automatic",
            Refund.finished_at >= since,
            Refund.finished_at < until,
        )
        .group_by(Payment.biller_id, refund_day)
    ):
        found.setdefault((biller_id, _as_date(day)), [0, 0, 0, 0])[2:4] = [int(count), int(total)]
    settled = {
        (biller_id, day)
        for biller_id, day in session.execute(
            select(Settlement.biller_id, Settlement.business_date).where(
                Settlement.biller_id.in_(allowed),
                Settlement.business_date >= today - timedelta(days=max(1, min(days, 3660))),
            )
        )
    }
    waiting = [
        UnsettledDay(biller_id, day, *figures)
        for (biller_id, day), figures in found.items()
        if (biller_id, day) not in settled
    ]
    waiting.sort(key=lambda d: (d.business_date, str(d.biller_id)))
    return waiting[: max(1, min(limit, 1000))]


def _local_day(session: Session, column: Any) -> Any:
    """SQL for the China Standard Time calendar day of a UTC timestamp ``column``."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("Asia/Shanghai", column), Date)
    # SQLite keeps UTC as text; its date() shifts it by the fixed offset (no DST since 1991).
    return func.date(column, "+8 hours")


def _as_date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _check_ended(business_date: date) -> None:
    if not isinstance(business_date, date) or isinstance(business_date, datetime):
        raise InvalidInput("business_date must be a date", field="business_date")
    _start, end = business_day_bounds(business_date)
    if end > utcnow():
        raise InvalidInput(
            "%(day)s has not ended in China Standard Time",
            params={"day": business_date.isoformat()},
            field="business_date",
        )


def _check_settleable(figures: DayFigures) -> None:
    if figures.empty:
        raise NothingToSettle(
            "%(day)s has no successful payment and no refund: there is nothing to settle",
            params={"day": figures.business_date.isoformat()},
        )


def _figures(session: Session, biller_id: uuid.UUID, business_date: date) -> DayFigures:
    start, end = business_day_bounds(business_date)
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
    return DayFigures(business_date, paid_fen, payment_count, refunded_fen, refund_count)


def _record(session: Session, actor: Actor, biller: Biller, settlement: Settlement) -> Settlement:
    """Insert ``settlement`` once (a racing twin returns the winner), post and audit it."""
    biller_id, business_date = biller.id, settlement.business_date
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
            "paid_fen": settlement.paid_fen,
            "refunded_fen": settlement.refunded_fen,
            "net_fen": settlement.net_fen,
            "payments": settlement.payment_count,
            "refunds": settlement.refund_count,
        },
    )
    return settlement


def batch_file(
    *, biller: Biller, settlement: Settlement, payer: PayerAccount, business_date: date
) -> str:
    """The bank batch file (CSV) paying ``settlement``'s net to the biller, with its trailer;
    ``UnsafeBatchValue`` when a value could not be carried in it safely."""
    figures = DayFigures(
        business_date,
        settlement.paid_fen,
        settlement.payment_count,
        settlement.refunded_fen,
        settlement.refund_count,
    )
    rows = _batch_rows(biller, figures, payer)
    check_batch(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return out.getvalue()


def _batch_rows(biller: Biller, figures: DayFigures, payer: PayerAccount) -> list[tuple[str, ...]]:
    batch_id = batch_id_for(biller.id, figures.business_date)
    rows: list[tuple[str, ...]] = [HEADER]
    count, total = 0, 0
    if figures.net_fen > 0:
        count, total = 1, figures.net_fen
        purpose = (
            f"代收款结算 settlement {figures.business_date.isoformat()}: "
            f"{figures.payment_count} payments, {figures.refund_count} refunds"
        )
        rows.append(
            (
                batch_id,
                "1",
                payer.bank,
                payer.account,
                payer.name,
                biller.settlement_bank,
                biller.settlement_account,
                biller.settlement_account_name,
                yuan(figures.net_fen),
                "CNY",
                purpose,
            )
        )
    rows.append(("TRAILER", batch_id, str(count), yuan(total)))
    return rows


def check_batch(rows: Sequence[Sequence[str]]) -> None:
    """Refuse a batch whose cell a spreadsheet would run as a formula or that breaks a line.

    The error names the file's line (the header is line 1) and the column, so that the account
    details can be corrected; nothing is changed to make the value fit.
    """
    for line, row in enumerate(rows, start=1):
        for position, value in enumerate(row):
            # A ";" splits the cell where a spreadsheet's list separator is ";", and what
            # follows it may then be a formula of its own.
            if (
                csvsafe.is_dangerous(value)
                or ";" in value
                or any(ord(c) < 32 or ord(c) == 127 for c in value)
            ):
                column = HEADER[position] if line > 1 and position < len(HEADER) else "?"
                raise UnsafeBatchValue(
                    "line %(line)s of the bank batch file, column %(column)s: %(value)s starts "
                    "with a character a spreadsheet runs as a formula, or holds a control "
                    "character or a semicolon; correct the account details rather than the file",
                    params={"line": line, "column": column, "value": value[:60]},
                    line=line,
                    column=column,
                )


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
