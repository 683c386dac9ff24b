"""Pay's tables: billers, bills, payments, provider notifications, the ledger, refunds,
settlements, reconciliation, receipts and the webhook outbox.

Money is an integer count of fen (``*_fen`` columns, ``BigInteger``) plus a currency, never a
float. The rules that keep money from being lost, created or taken twice are constraints here,
not only code:

- ``bill_payment.bill_id`` is a primary key: a bill has at most one succeeded payment.
- Payments for the same bill may be in flight together (``payment_bill`` is indexed on
  ``bill_id WHERE active``, not uniquely): the first success pays it, by the key above.
- ``payment.idempotency_key`` and ``refund.idempotency_key`` are unique.
- ``payment.refunded_fen <= COALESCE(taken_fen, amount_fen)`` is a check: refunds never exceed
  what was paid (the provider's own take, for a success refused for another amount).
- A ledger ``journal_line`` moves a positive amount from one account to another, so every line,
  and every entry made of lines, sums to zero by construction; ``journal_entry`` is unique per
  ``(kind, reference)``, so a payment is posted once. Balances are sums, never a stored row
  that every payment would update (no hot row).
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from civicloud.core.db import Base, new_id, utcnow


class BillerCategory(enum.StrEnum):
    """What a biller bills for."""

    WATER = "water"
    POWER = "power"
    GAS = "gas"
    FINE = "fine"
    FEE = "fee"


class BillStatus(enum.StrEnum):
    """Where a bill is in its life."""

    OPEN = "open"
    PAID = "paid"
    CANCELLED = "cancelled"


class PaymentStatus(enum.StrEnum):
    """created → pending → succeeded | failed | expired (superseded: replaced by a newer one)."""

    CREATED = "created"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"


class RefundStatus(enum.StrEnum):
    """A refund asked of the provider, then confirmed or failed."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Biller(Base):
    """An agency that publishes bills (Dalian Water Supply…), with its settlement account."""

    __tablename__ = "pay_biller"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code"),
        CheckConstraint(_in("category", BillerCategory), name="category"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="RESTRICT"), index=True
    )
    code: Mapped[str] = mapped_column(String(63))
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(10))
    #: A regular expression every account number of this biller matches in full.
    account_pattern: Mapped[str] = mapped_column(String(200))
    settlement_bank: Mapped[str] = mapped_column(String(200))
    settlement_account: Mapped[str] = mapped_column(String(64))
    settlement_account_name: Mapped[str] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))
    #: Where its payments may send citizens back besides this installation: origins
    #: (``https://host[:port]``, normalised by ``pay.origins``), matched exactly.
    return_origins: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}


class Bill(Base):
    """A bill a biller published; paid by at most one succeeded payment (``bill_payment``)."""

    __tablename__ = "pay_bill"
    __table_args__ = (
        UniqueConstraint("biller_id", "bill_number"),
        Index("ix_pay_bill_account", "biller_id", "account_number", "status"),
        # The console finds a citizen's bills and payments by account, bill number or name
        # across every biller the reader may see (``pay.listings``).
        Index("ix_pay_bill_account_number", "account_number"),
        Index("ix_pay_bill_number", "bill_number"),
        Index("ix_pay_bill_payer", "payer_name"),
        Index("ix_pay_bill_created", "created_at", "id"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("currency = 'CNY'", name="currency"),
        CheckConstraint(_in("status", BillStatus), name="status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    biller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pay_biller.id", ondelete="RESTRICT"))
    bill_number: Mapped[str] = mapped_column(String(64))
    account_number: Mapped[str] = mapped_column(String(64))
    payer_name: Mapped[str] = mapped_column(String(100))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    period: Mapped[str] = mapped_column(String(32))
    due_date: Mapped[date] = mapped_column(Date)
    #: ``{"per_day_basis_points": 5, "cap_fen": 10000}`` or ``None``.
    late_fee_rule: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: What a bill of its biller's kind says besides its amount, validated at import by the
    #: kind's schema (``schemas.BILL_DETAILS``): a traffic fine's decision number, time, place
    #: and offence (``FineDetails``). ``None`` for kinds with none (water, power, gas, fees).
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), default=BillStatus.OPEN.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}


class Payment(Base):
    """One attempt to pay one or more open bills of one biller through one provider."""

    __tablename__ = "pay_payment"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("taken_fen > 0", name="taken_positive"),
        # What may be refunded: the amount, or what the provider took for a payment that paid
        # no bill (a success refused for another amount).
        CheckConstraint(
            "refunded_fen >= 0 AND refunded_fen <= COALESCE(taken_fen, amount_fen)",
            name="refund_bound",
        ),
        CheckConstraint(_in("status", PaymentStatus), name="status"),
        Index("ix_pay_payment_status_expires", "status", "expires_at"),
        # The console's payments, newest first, a page at a time (keyset over created_at, id).
        Index("ix_pay_payment_created", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    #: What the provider sees as ``out_trade_no``: short, unique, ours.
    trade_no: Mapped[str] = mapped_column(String(32), unique=True)
    biller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pay_biller.id", ondelete="RESTRICT"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id", ondelete="RESTRICT"))
    provider: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12), default=PaymentStatus.CREATED.value)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    #: What the provider says it took, in ``currency``, when that was not ``amount_fen`` and
    #: the payment therefore paid no bill (``refunds.record_take``): all of it is owed back
    #: and posted. ``None``: the provider took ``amount_fen``, or none of our currency.
    taken_fen: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    #: SHA-256 of the canonical request, to refuse a reused key with a different body.
    request_hash: Mapped[str] = mapped_column(String(64))
    return_url: Mapped[str] = mapped_column(String(500))
    provider_trade_no: Mapped[str | None] = mapped_column(String(64), index=True)
    checkout: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}


class PaymentFacts(Protocol):
    """What posting a succeeded payment and signing its receipt read: a ``Payment``, or the
    hot path's plain copy of its row (``payments._Paying``)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def trade_no(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def biller_id(self) -> uuid.UUID: ...
    @property
    def amount_fen(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def provider_trade_no(self) -> str | None: ...


class PaymentBill(Base):
    """A bill covered by a payment; ``active`` while that payment may still succeed."""

    __tablename__ = "pay_payment_bill"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        # A bill's payments in flight (several may be): not unique.
        Index(
            "ix_pay_payment_bill_active",
            "bill_id",
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
        # Every payment of a bill, in flight or ended: the console's search by account.
        Index("ix_pay_payment_bill_bill", "bill_id"),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pay_payment.id", ondelete="RESTRICT"), primary_key=True
    )
    bill_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pay_bill.id", ondelete="RESTRICT"), primary_key=True
    )
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(default=True)


class BillPayment(Base):
    """The succeeded payment of a bill. The primary key makes a second one impossible."""

    __tablename__ = "pay_bill_payment"

    bill_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pay_bill.id", ondelete="RESTRICT"), primary_key=True
    )
    payment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pay_payment.id", ondelete="RESTRICT"), index=True
    )
    paid_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProviderNotification(Base):
    """A provider's asynchronous notification, kept once per (provider, notify id)."""

    __tablename__ = "pay_provider_notification"
    __table_args__ = (UniqueConstraint("provider", "notify_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    provider: Mapped[str] = mapped_column(String(20))
    notify_id: Mapped[str] = mapped_column(String(128))
    payment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pay_payment.id", ondelete="RESTRICT"), index=True
    )
    event: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerAccount(Base):
    """An account of the double-entry ledger (provider clearing, biller payable, refunds…)."""

    __tablename__ = "pay_ledger_account"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    #: ``clearing:sandbox``, ``payable:<biller id>``, ``refunds``, ``fees``, ``suspense``…
    code: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    biller_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pay_biller.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JournalEntry(Base):
    """A business event posted to the ledger; appended, never edited."""

    __tablename__ = "pay_journal_entry"
    __table_args__ = (UniqueConstraint("kind", "reference"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    #: ``payment``, ``refund``, ``late_payment_refund``, ``adjustment``, ``settlement``.
    kind: Mapped[str] = mapped_column(String(30))
    #: What was posted (a payment's or refund's id…): unique per kind, so it is posted once.
    reference: Mapped[str] = mapped_column(String(100))
    memo: Mapped[str] = mapped_column(String(300), default="")
    #: What ``memo`` says as a message pages translate (``pay.ledger.MEMO_CODES``) with its values;
    #: ``None`` for an operator's own words and for entries posted before codes were kept.
    memo_code: Mapped[str | None] = mapped_column(String(40))
    memo_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    posted_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    posted_by: Mapped[str] = mapped_column(String(160))


class JournalLine(Base):
    """``amount_fen`` moves from ``debit_account`` to ``credit_account``: it sums to zero."""

    __tablename__ = "pay_journal_line"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="two_accounts"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    entry_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pay_journal_entry.id", ondelete="RESTRICT"), index=True
    )
    debit_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pay_ledger_account.id", ondelete="RESTRICT"), index=True
    )
    credit_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pay_ledger_account.id", ondelete="RESTRICT"), index=True
    )
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")


class Refund(Base):
    """A full or partial refund of a succeeded payment."""

    __tablename__ = "pay_refund"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint(_in("status", RefundStatus), name="status"),
        Index("ix_pay_refund_created", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    refund_no: Mapped[str] = mapped_column(String(32), unique=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pay_payment.id", ondelete="RESTRICT"), index=True
    )
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(300))
    #: ``operator`` (asked for) or ``automatic`` (a late success of an expired payment).
    origin: Mapped[str] = mapped_column(String(20), default="operator")
    status: Mapped[str] = mapped_column(String(10), default=RefundStatus.PENDING.value)
    provider_refund_no: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Settlement(Base):
    """One biller's money for one business day: succeeded minus refunded, as a bank batch."""

    __tablename__ = "pay_settlement"
    __table_args__ = (UniqueConstraint("biller_id", "business_date"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    biller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pay_biller.id", ondelete="RESTRICT"))
    business_date: Mapped[date] = mapped_column(Date)
    paid_fen: Mapped[int] = mapped_column(BigInteger)
    refunded_fen: Mapped[int] = mapped_column(BigInteger)
    net_fen: Mapped[int] = mapped_column(BigInteger)
    payment_count: Mapped[int]
    refund_count: Mapped[int]
    batch_file: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StatementImport(Base):
    """A provider's daily statement, imported once (by content hash) for reconciliation."""

    __tablename__ = "pay_statement_import"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    provider: Mapped[str] = mapped_column(String(20))
    business_date: Mapped[date] = mapped_column(Date)
    content_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    imported_by: Mapped[str] = mapped_column(String(160))


class ReconciliationItemKind(enum.StrEnum):
    """What a reconciliation item is about: a payment or a refund."""

    PAYMENT = "payment"
    REFUND = "refund"


class ReconciliationItem(Base):
    """One statement line (or one of our payments or refunds missing from it), classified."""

    __tablename__ = "pay_reconciliation_item"
    __table_args__ = (CheckConstraint(_in("kind", ReconciliationItemKind), name="kind"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    import_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pay_statement_import.id", ondelete="RESTRICT"), index=True
    )
    #: ``payment`` or ``refund``.
    kind: Mapped[str] = mapped_column(
        String(10),
        default=ReconciliationItemKind.PAYMENT.value,
        server_default=ReconciliationItemKind.PAYMENT.value,
    )
    #: ``matched``, ``missing_ours``, ``missing_provider``, ``amount_mismatch``, ``duplicate``.
    classification: Mapped[str] = mapped_column(String(20), index=True)
    trade_no: Mapped[str | None] = mapped_column(String(32))
    provider_trade_no: Mapped[str | None] = mapped_column(String(64))
    provider_amount_fen: Mapped[int | None] = mapped_column(BigInteger)
    our_amount_fen: Mapped[int | None] = mapped_column(BigInteger)
    payment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pay_payment.id", ondelete="RESTRICT")
    )
    #: Our refund number, from the statement line or from our refund.
    refund_no: Mapped[str | None] = mapped_column(String(64))
    #: The refund of ours a refund item is about (``None`` for payments and unknown refunds).
    refund_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pay_refund.id", ondelete="RESTRICT"), index=True
    )
    resolution_entry_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pay_journal_entry.id", ondelete="RESTRICT")
    )
    resolved_by: Mapped[str | None] = mapped_column(String(160))
    resolved_at: Mapped[datetime | None]


class Receipt(Base):
    """The signed receipt of a succeeded payment."""

    __tablename__ = "pay_receipt"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pay_payment.id", ondelete="RESTRICT"), unique=True
    )
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The canonical JSON that was signed.
    body: Mapped[str] = mapped_column(Text)
    algorithm: Mapped[str] = mapped_column(String(20))
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text)


class WebhookDelivery(Base):
    """An event owed to a biller's system: delivered at least once from this outbox.

    Undelivered after its last attempt, a delivery is dead (``dead_at``): kept, listed and no
    longer tried until an operator requeues it.
    """

    __tablename__ = "pay_webhook_delivery"
    __table_args__ = (Index("ix_pay_webhook_due", "delivered_at", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    #: What the biller deduplicates by.
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    biller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pay_biller.id", ondelete="RESTRICT"))
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    dead_at: Mapped[datetime | None] = mapped_column(index=True)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
