"""The console's lists of payments, bills, refunds and settlements, on the core's list
component (``civicloud.web.lists``): which columns, filters and totals each has.

The queries and filters are Pay's services (``civicloud.pay.listings``); this module only says
how each list looks. Each spec is built per request: its queries carry the reader's grants and
its biller filter asks the request's session whether the reader may see the biller chosen.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from sqlalchemy import case
from sqlalchemy.orm import Session

from civicloud.core.actor import Actor
from civicloud.core.i18n import N_
from civicloud.pay import billing, listings, settlement
from civicloud.pay.models import (
    Bill,
    Biller,
    BillStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    Settlement,
)
from civicloud.pay.payments import PAYMENT_READ
from civicloud.pay.web.views import LABELS, PROVIDER_ORDER, badge
from civicloud.web.lists import Column, Filter, ListSpec, Total

_NOT_THIS_BILLER = {
    "payments": N_("You cannot see the payments of this biller."),
    "bills": N_("You cannot see the bills of this biller."),
    "refunds": N_("You cannot see the refunds of this biller."),
    "settlements": N_("You cannot see the settlements of this biller."),
}
#: What a reader without the permission a list needs is told, instead of an empty list.
NOT_ALLOWED = {
    "payments": N_(
        "You cannot see payments: none of your roles includes searching payments "
        "(pay.payment.read). Ask your administrator if you need it."
    ),
    "bills": N_(
        "You cannot see bills: none of your roles includes reading billers and their bills "
        "(pay.biller.read). Ask your administrator if you need it."
    ),
    "refunds": N_(
        "You cannot see refunds: none of your roles includes searching payments "
        "(pay.payment.read). Ask your administrator if you need it."
    ),
    "settlements": N_(
        "You cannot see settlements: none of your roles includes running and reading "
        "settlements (pay.settlement). Ask your administrator if you need it."
    ),
}


def _biller_name(language: str) -> Any:
    return Biller.name_zh if language == "zh" else Biller.name_en


def _biller_filter(
    what: str, session: Session, actor: Actor, language: str, column: Any, permission: str
) -> Filter:
    choices = [
        (str(biller_id), name_zh if language == "zh" else name_en)
        for biller_id, name_zh, name_en in listings.biller_names(
            session=session, actor=actor, permission=permission
        )
    ]
    return Filter(
        "biller",
        N_("Biller"),
        "choice",
        lambda query, biller_id: query.where(column == biller_id),
        choices=choices,
        translate=False,
        open=True,
        refused=_NOT_THIS_BILLER[what],
        check=lambda value: listings.checked_biller(
            session=session, actor=actor, biller=value, permission=permission
        ),
        bind=True,
    )


def _choices(labels: Mapping[str, str], codes: Any) -> list[tuple[str, str]]:
    return [(code, labels[code]) for code in codes]


def _created(column: Any, *, bind: bool = False) -> Filter:
    return Filter(
        "created",
        N_("Created"),
        "date_range",
        lambda query, days: query.where(listings.within(column, days.start, days.end)),
        bind=bind,
    )


@cache
def _payments_parts(
    language: str,
) -> tuple[tuple[Column, ...], tuple[Filter, ...], tuple[Total, ...]]:
    """What the payments list is made of, but for its query and biller filter (which carry
    the reader): the same objects for every request in a language, built once."""
    columns = (
        Column(
            "trade_no",
            N_("Transaction no."),
            Payment.trade_no,
            "code",
            sortable=True,
            href=lambda row: f"/console/pay/payments/{row['_key']}",
        ),
        Column("biller", N_("Biller"), _biller_name(language)),
        Column("account", N_("Account number"), listings.first_account(), "code"),
        Column("payer", N_("Payer"), listings.first_payer()),
        Column("amount", N_("Amount"), Payment.amount_fen, "money", sortable=True),
        Column("refunded", N_("Refunded"), Payment.refunded_fen, "money"),
        Column(
            "status",
            N_("Status"),
            Payment.status,
            "label",
            labels=LABELS["payment"],
            badge=badge,
        ),
        Column("provider", N_("Provider"), Payment.provider, "label", labels=LABELS["provider"]),
        Column(
            "provider_trade_no",
            N_("Provider's transaction no."),
            Payment.provider_trade_no,
            "code",
            show=False,
        ),
        Column("created_at", N_("Created"), Payment.created_at, "datetime", sortable=True),
        Column("finished_at", N_("Finished"), Payment.finished_at, "datetime", show=False),
    )
    filters = (
        Filter(
            "q",
            N_("Transaction no."),
            "text",
            listings.by_trade_no,
            hint=N_("Ours (its start is enough) or the provider's."),
            max_length=64,
        ),
        Filter("account", N_("Account number"), "text", listings.by_account, bind=True),
        Filter("bill", N_("Bill number"), "text", listings.by_bill_number, bind=True),
        Filter(
            "payer",
            N_("Payer"),
            "text",
            listings.by_payer,
            bind=True,
            hint=N_("The whole name, as on the bill."),
            max_length=100,
        ),
        Filter(
            "amount",
            N_("Amount (yuan)"),
            "amount",
            lambda query, fen: query.where(Payment.amount_fen == fen),
            bind=True,
        ),
        _created(Payment.created_at, bind=True),
        Filter(
            "status",
            N_("Status"),
            "choice",
            lambda query, value: query.where(Payment.status == value),
            bind=True,
            choices=_choices(LABELS["payment"], (s.value for s in PaymentStatus)),
        ),
        Filter(
            "provider",
            N_("Provider"),
            "choice",
            lambda query, value: query.where(Payment.provider == value),
            bind=True,
            choices=_choices(LABELS["provider"], PROVIDER_ORDER),
        ),
    )
    totals = (
        Total(
            "paid",
            N_("Paid"),
            case(
                (Payment.status == PaymentStatus.SUCCEEDED.value, Payment.amount_fen),
                else_=0,
            ),
        ),
        Total("refunded", N_("Refunded"), Payment.refunded_fen),
        Total(
            "succeeded",
            N_("Payments that succeeded"),
            case((Payment.status == PaymentStatus.SUCCEEDED.value, 1), else_=0),
            kind="count",
        ),
    )
    return columns, filters, totals


def payments_spec(session: Session, actor: Actor, language: str) -> ListSpec:
    """Payments: by transaction number, account, bill, payer, amount, days, status, provider
    and biller; totals of what was paid and refunded."""
    columns, filters, totals = _payments_parts(language)
    roots = actor.roots(PAYMENT_READ)
    return ListSpec(
        name="payments",
        title=N_("Payments"),
        query=lambda: listings.payment_query(actor=actor),
        key=Payment.id,
        default_sort="created_at",
        columns=columns,
        filters=(
            *filters,
            _biller_filter("payments", session, actor, language, Payment.biller_id, PAYMENT_READ),
        ),
        totals=totals,
        empty=N_("No payments match."),
        # The statements are the same for every reader whose grants reach the same subtrees.
        shape=("pay.payments", language, None if roots is None else tuple(roots)),
    )


def bills_spec(session: Session, actor: Actor, language: str) -> ListSpec:
    """Bills: by account, bill number, payer, biller, status and due day; the amount billed."""
    return ListSpec(
        name="bills",
        title=N_("Bills"),
        query=listings.bill_query(actor=actor),
        key=Bill.id,
        default_sort="created_at",
        columns=(
            Column("bill_number", N_("Bill number"), Bill.bill_number, "code", sortable=True),
            Column("biller", N_("Biller"), _biller_name(language)),
            Column("account", N_("Account number"), Bill.account_number, "code"),
            Column("payer", N_("Payer"), Bill.payer_name),
            Column("period", N_("Period"), Bill.period),
            Column("amount", N_("Amount"), Bill.amount_fen, "money", sortable=True),
            Column("due_date", N_("Due"), Bill.due_date, "date", sortable=True),
            Column(
                "status", N_("Status"), Bill.status, "label", labels=LABELS["bill"], badge=badge
            ),
            Column("created_at", N_("Published"), Bill.created_at, "datetime", sortable=True),
        ),
        filters=(
            Filter(
                "account",
                N_("Account number"),
                "text",
                lambda query, value: query.where(Bill.account_number == value),
            ),
            Filter(
                "bill",
                N_("Bill number"),
                "text",
                lambda query, value: query.where(Bill.bill_number == value),
            ),
            Filter(
                "payer",
                N_("Payer"),
                "text",
                lambda query, value: query.where(Bill.payer_name == value),
                hint=N_("The whole name, as on the bill."),
                max_length=100,
            ),
            Filter(
                "due",
                N_("Due"),
                "date_range",
                lambda query, days: query.where(
                    listings.days_between(Bill.due_date, days.first, days.last)
                ),
            ),
            Filter(
                "status",
                N_("Status"),
                "choice",
                lambda query, value: query.where(Bill.status == value),
                choices=_choices(LABELS["bill"], (s.value for s in BillStatus)),
            ),
            _biller_filter("bills", session, actor, language, Bill.biller_id, billing.BILLER_READ),
        ),
        totals=(
            Total("billed", N_("Billed"), Bill.amount_fen),
            Total(
                "unpaid",
                N_("Unpaid"),
                case((Bill.status == BillStatus.OPEN.value, Bill.amount_fen), else_=0),
            ),
        ),
        empty=N_("No bills match."),
    )


def refunds_spec(session: Session, actor: Actor, language: str) -> ListSpec:
    """Refunds: by refund or transaction number, biller, status and day; the amount."""
    return ListSpec(
        name="refunds",
        title=N_("Refunds"),
        query=listings.refund_query(actor=actor),
        key=Refund.id,
        default_sort="created_at",
        columns=(
            Column("refund_no", N_("Refund no."), Refund.refund_no, "code", sortable=True),
            Column(
                "trade_no",
                N_("Transaction no."),
                Payment.trade_no,
                "code",
                href=lambda row: f"/console/pay/payments/{row['payment_id']}",
            ),
            Column("payment_id", N_("Payment"), Refund.payment_id, show=False, export=False),
            Column("biller", N_("Biller"), _biller_name(language)),
            Column("amount", N_("Amount"), Refund.amount_fen, "money", sortable=True),
            Column("reason", N_("Reason"), Refund.reason),
            Column(
                "status",
                N_("Status"),
                Refund.status,
                "label",
                labels=LABELS["refund"],
                badge=badge,
            ),
            Column("created_at", N_("Asked for"), Refund.created_at, "datetime", sortable=True),
            Column("finished_at", N_("Finished"), Refund.finished_at, "datetime", show=False),
        ),
        filters=(
            Filter(
                "q",
                N_("Refund or transaction no."),
                "text",
                lambda query, value: query.where(
                    (Refund.refund_no == value.upper()) | (Payment.trade_no == value.upper())
                ),
            ),
            _created(Refund.created_at),
            Filter(
                "status",
                N_("Status"),
                "choice",
                lambda query, value: query.where(Refund.status == value),
                choices=_choices(LABELS["refund"], (s.value for s in RefundStatus)),
            ),
            _biller_filter("refunds", session, actor, language, Payment.biller_id, PAYMENT_READ),
        ),
        totals=(
            Total("amount", N_("Refunds asked for"), Refund.amount_fen),
            Total(
                "refunded",
                N_("Refunded"),
                case((Refund.status == RefundStatus.SUCCEEDED.value, Refund.amount_fen), else_=0),
            ),
        ),
        empty=N_("No refunds match."),
    )


def settlements_spec(session: Session, actor: Actor, language: str) -> ListSpec:
    """Settlements: by biller and business day; the money paid, refunded and settled."""
    return ListSpec(
        name="settlements",
        title=N_("Settlements"),
        query=listings.settlement_query(actor=actor),
        key=Settlement.id,
        default_sort="business_date",
        columns=(
            Column(
                "business_date", N_("Business day"), Settlement.business_date, "date", sortable=True
            ),
            Column("biller", N_("Biller"), _biller_name(language)),
            Column("biller_id", N_("Biller"), Settlement.biller_id, show=False, export=False),
            Column("payment_count", N_("Payments"), Settlement.payment_count, "count"),
            Column("paid", N_("Paid"), Settlement.paid_fen, "money"),
            Column("refund_count", N_("Refunds"), Settlement.refund_count, "count"),
            Column("refunded", N_("Refunded"), Settlement.refunded_fen, "money"),
            Column("net", N_("Net settled"), Settlement.net_fen, "money", sortable=True),
            Column("created_at", N_("Settled at"), Settlement.created_at, "datetime"),
            Column(
                "batch",
                N_("Batch file"),
                Settlement.business_date,
                text=N_("Download CSV"),
                export=False,
                href=lambda row: (
                    f"/console/pay/billers/{row['biller_id']}/settlement.csv"
                    f"?date={row['business_date'].isoformat()}"
                ),
            ),
        ),
        filters=(
            Filter(
                "day",
                N_("Business day"),
                "date_range",
                lambda query, days: query.where(
                    listings.days_between(Settlement.business_date, days.first, days.last)
                ),
            ),
            _biller_filter(
                "settlements", session, actor, language, Settlement.biller_id, settlement.PERMISSION
            ),
        ),
        totals=(
            Total("paid", N_("Paid"), Settlement.paid_fen),
            Total("refunded", N_("Refunded"), Settlement.refunded_fen),
            Total("net", N_("Net settled"), Settlement.net_fen),
        ),
        empty=N_("No settlements match."),
    )
