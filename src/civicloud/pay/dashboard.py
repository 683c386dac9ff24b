"""An operator's day at a glance: takings, success rate, providers and refunds of one day.

The day is a calendar day in the zone the caller passes (the installation's display zone):
``[D 00:00, D+1 00:00)`` there, which is 23 or 25 hours long on a day a clock changes. Its
hours are the hours elapsed since that midnight (each labelled with the local time it starts
at), so a zone whose offset is not whole hours is bucketed right too.

What is counted, over the billers of every tenant where the actor holds ``pay.payment.read``:

- a **payment** belongs to the day its ``finished_at`` falls in (when it succeeded, failed or
  expired), as in settlement; payments still in flight belong to no day yet;
- **paid** is the amount of the day's succeeded payments; **refunded** the amount of the
  refunds that succeeded that day (``finished_at``), whichever day their payment was, except
  automatic refunds of late payments, which never reached a biller (as in settlement);
- **takings** are paid minus refunded, in fen (negative on a day refunds exceed payments);
- the **success rate** is succeeded / (succeeded + failed + expired) of the payments that ended
  that day; a payment its own payer replaced by starting again (``superseded``) is no attempt
  that failed and is left out, and so are payments in flight. ``None`` when none ended.

Every figure is a SQL aggregate (``GROUP BY`` the provider, the status and the hour, or the
day); no payment is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from civicloud.core.actor import Actor
from civicloud.core.errors import PermissionDenied
from civicloud.core.tenants import Tenant, in_subtrees
from civicloud.pay.models import Payment, PaymentStatus, Refund, RefundStatus
from civicloud.pay.payments import PAYMENT_READ

__all__ = [
    "Dashboard",
    "DayTakings",
    "HourTakings",
    "ProviderFigures",
    "day_bounds",
    "day_dashboard",
    "today_in",
]

#: How many days the takings of the last days cover (the chosen one included).
LAST_DAYS = 7
#: The endings of a payment that count as an attempt (see the module's docstring).
_ATTEMPTS = (PaymentStatus.SUCCEEDED.value, PaymentStatus.FAILED.value, PaymentStatus.EXPIRED.value)


@dataclass(frozen=True)
class HourTakings:
    """One hour of the day: when it starts (local time), its payments and its takings."""

    starts: datetime
    payments: int
    takings_fen: int


@dataclass(frozen=True)
class ProviderFigures:
    """One provider's part of the day."""

    provider: str
    payments: int
    paid_fen: int
    refunded_fen: int

    @property
    def takings_fen(self) -> int:
        """Paid minus refunded."""
        return self.paid_fen - self.refunded_fen


@dataclass(frozen=True)
class DayTakings:
    """One of the last days: its date and its takings."""

    day: date
    takings_fen: int


@dataclass(frozen=True)
class Dashboard:
    """The figures of one day (see the module's docstring for what each counts)."""

    day: date
    payments: int
    paid_fen: int
    failed: int
    expired: int
    refunds: int
    refunded_fen: int
    hours: Sequence[HourTakings]
    providers: Sequence[ProviderFigures]
    last_days: Sequence[DayTakings]

    @property
    def takings_fen(self) -> int:
        """The day's takings: paid minus refunded."""
        return self.paid_fen - self.refunded_fen

    @property
    def attempts(self) -> int:
        """The payments that ended that day as an attempt: succeeded, failed or expired."""
        return self.payments + self.failed + self.expired

    @property
    def success_rate(self) -> float | None:
        """Succeeded / attempts, as a fraction; ``None`` when no attempt ended."""
        return self.payments / self.attempts if self.attempts else None


def today_in(zone: tzinfo, now: datetime | None = None) -> date:
    """Today's date in ``zone``."""
    return (now or datetime.now(UTC)).astimezone(zone).date()


def day_bounds(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC of ``day`` in ``zone``."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def day_dashboard(*, session: Session, actor: Actor, day: date, zone: tzinfo) -> Dashboard:
    """The takings, success rate, providers and refunds of ``day`` in ``zone``, over the
    payments the actor may read (``pay.payment.read``); refused when it may read none."""
    roots = actor.roots(PAYMENT_READ)
    if roots is not None and not roots:
        raise PermissionDenied("You may not see payments of any biller.")
    start, end = day_bounds(day, zone)
    hour_starts = [start + timedelta(hours=h) for h in range(_hours(start, end))]
    visible = in_subtrees(Tenant.path, roots)

    payment_hour = _bucket(Payment.finished_at, hour_starts[1:])
    ended = session.execute(
        select(
            Payment.provider,
            Payment.status,
            payment_hour,
            func.count(Payment.id),
            func.coalesce(func.sum(Payment.amount_fen), 0),
        )
        .join(Tenant, Tenant.id == Payment.tenant_id)
        .where(
            visible,
            Payment.status.in_(_ATTEMPTS),
            Payment.finished_at >= start,
            Payment.finished_at < end,
        )
        .group_by(Payment.provider, Payment.status, payment_hour)
    ).all()
    refund_hour = _bucket(Refund.finished_at, hour_starts[1:])
    refunded = session.execute(
        select(
            Payment.provider,
            refund_hour,
            func.count(Refund.id),
            func.coalesce(func.sum(Refund.amount_fen), 0),
        )
        .join(Payment, Payment.id == Refund.payment_id)
        .join(Tenant, Tenant.id == Payment.tenant_id)
        .where(visible, *_refunds_between(start, end))
        .group_by(Payment.provider, refund_hour)
    ).all()

    # What follows adds up the grouped rows (a few per provider and hour), not payments.
    hour_payments = [0] * len(hour_starts)
    hour_takings = [0] * len(hour_starts)
    counts: dict[str, int] = dict.fromkeys(_ATTEMPTS, 0)
    per_provider: dict[str, list[int]] = {}
    for provider, status, hour, count, amount in ended:
        counts[status] += int(count)
        figures = per_provider.setdefault(provider, [0, 0, 0])
        if status == PaymentStatus.SUCCEEDED.value:
            hour_payments[int(hour)] += int(count)
            hour_takings[int(hour)] += int(amount)
            figures[0] += int(count)
            figures[1] += int(amount)
    refund_count = refund_fen = 0
    for provider, hour, count, amount in refunded:
        refund_count += int(count)
        refund_fen += int(amount)
        hour_takings[int(hour)] -= int(amount)
        per_provider.setdefault(provider, [0, 0, 0])[2] += int(amount)

    return Dashboard(
        day=day,
        payments=counts[PaymentStatus.SUCCEEDED.value],
        paid_fen=sum(f[1] for f in per_provider.values()),
        failed=counts[PaymentStatus.FAILED.value],
        expired=counts[PaymentStatus.EXPIRED.value],
        refunds=refund_count,
        refunded_fen=refund_fen,
        hours=[
            HourTakings(starts=moment.astimezone(zone), payments=n, takings_fen=fen)
            for moment, n, fen in zip(hour_starts, hour_payments, hour_takings, strict=True)
        ],
        providers=sorted(
            # A provider with neither a success nor a refund that day took nothing: left out.
            (
                ProviderFigures(name, f[0], f[1], f[2])
                for name, f in per_provider.items()
                if f[0] or f[2]
            ),
            key=lambda p: (-p.paid_fen, p.provider),
        ),
        last_days=_last_days(session, visible, day, zone),
    )


def _last_days(
    session: Session, visible: ColumnElement[bool], day: date, zone: tzinfo
) -> list[DayTakings]:
    """The takings of each of the :data:`LAST_DAYS` days up to ``day``, oldest first."""
    days = [day - timedelta(days=back) for back in range(LAST_DAYS - 1, -1, -1)]
    starts = [day_bounds(d, zone)[0] for d in days]
    since, until = starts[0], day_bounds(day, zone)[1]
    payment_day = _bucket(Payment.finished_at, starts[1:])
    paid = session.execute(
        select(payment_day, func.coalesce(func.sum(Payment.amount_fen), 0))
        .join(Tenant, Tenant.id == Payment.tenant_id)
        .where(
            visible,
            Payment.status == PaymentStatus.SUCCEEDED.value,
            Payment.finished_at >= since,
            Payment.finished_at < until,
        )
        .group_by(payment_day)
    ).all()
    refund_day = _bucket(Refund.finished_at, starts[1:])
    refunded = session.execute(
        select(refund_day, func.coalesce(func.sum(Refund.amount_fen), 0))
        .join(Payment, Payment.id == Refund.payment_id)
        .join(Tenant, Tenant.id == Payment.tenant_id)
        .where(visible, *_refunds_between(since, until))
        .group_by(refund_day)
    ).all()
    takings = [0] * len(days)
    for index, amount in paid:
        takings[int(index)] += int(amount)
    for index, amount in refunded:
        takings[int(index)] -= int(amount)
    return [DayTakings(d, fen) for d, fen in zip(days, takings, strict=True)]


def _hours(start: datetime, end: datetime) -> int:
    """How many hours (the last one perhaps shorter) there are from ``start`` to ``end``."""
    return math.ceil((end - start) / timedelta(hours=1))


def _bucket(column: Any, boundaries: Sequence[datetime]) -> ColumnElement[int]:
    """SQL for the index of the interval ``column`` falls in: 0 before ``boundaries[0]``,
    ``i`` from ``boundaries[i-1]``, the last one from the last boundary on. Comparisons of
    stored UTC times only, so it means the same on SQLite and PostgreSQL, in any zone
    (``boundaries`` is never empty: a day has hours, the last days are several)."""
    whens = [(column < moment, index) for index, moment in enumerate(boundaries)]
    return case(*whens, else_=len(boundaries))


def _refunds_between(start: datetime, end: datetime) -> list[ColumnElement[bool]]:
    return [
        Refund.status == RefundStatus.SUCCEEDED.value,
        Refund.origin != "automatic",
        Refund.finished_at >= start,
        Refund.finished_at < end,
    ]
