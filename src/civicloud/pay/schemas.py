"""Pydantic shapes of Pay's API."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from civicloud.core import csvsafe
from civicloud.core.dates import BoundedDate, BoundedDateTime
from civicloud.core.patterns import MAX_PATTERN_LENGTH, PatternText
from civicloud.core.text import DisplayText
from civicloud.pay.models import BillerCategory

#: The largest amount a bill or payment may carry: 100 million yuan, far below 2**63 fen.
MAX_AMOUNT_FEN = 10_000_000_000


def _safe_in_bank_file(value: str) -> str:
    # The payee's bank and name are written as they are into the bank batch file, which the
    # settlement refuses to write with a cell a spreadsheet would run (pay.settlement
    # .check_batch): refused here, where they are given, the biller can always be settled.
    if csvsafe.is_dangerous(value) or ";" in value:
        raise ValueError(
            "the text would be run as a formula by a spreadsheet opening the bank batch file "
            "(it starts with =, +, -, @ or holds a semicolon)"
        )
    return value


#: Text that goes into the bank batch file as it is: display text a spreadsheet cannot run.
BankFileText = Annotated[DisplayText, AfterValidator(_safe_in_bank_file)]


class BillerCreate(BaseModel):
    """A new biller, owned by an agency tenant."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: uuid.UUID
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", examples=["water"])
    name_zh: DisplayText = Field(min_length=1, max_length=200)
    name_en: DisplayText = Field(min_length=1, max_length=200)
    category: BillerCategory
    #: The account numbers' format, as a regular expression run by RE2 (linear time: no
    #: backreferences, no look-around) that every account number matches in full.
    account_pattern: PatternText = Field(
        min_length=1, max_length=MAX_PATTERN_LENGTH, examples=[r"\d{10}"]
    )
    settlement_bank: BankFileText = Field(min_length=1, max_length=200)
    settlement_account: str = Field(pattern=r"^[0-9]{6,34}$")
    settlement_account_name: BankFileText = Field(min_length=1, max_length=200)
    webhook_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://\S+$")
    webhook_secret: str | None = Field(default=None, min_length=16, max_length=200)
    #: Origins (``https://host[:port]``) of the biller's own site or app, where its payments'
    #: ``return_url`` may lead besides this installation; at most 10 (``pay.origins``).
    return_origins: list[str] = Field(
        default_factory=list, max_length=100, examples=[["https://pay.water.example.cn"]]
    )


class BillerUpdate(BaseModel):
    """What may be changed of a biller: its return origins (the whole list, replaced) and the
    account it is settled to; a field left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    return_origins: list[str] | None = Field(
        default=None, max_length=100, examples=[["https://app.example.cn:8443"]]
    )
    settlement_bank: BankFileText | None = Field(default=None, min_length=1, max_length=200)
    settlement_account: str | None = Field(default=None, pattern=r"^[0-9]{6,34}$")
    settlement_account_name: BankFileText | None = Field(default=None, min_length=1, max_length=200)


class BillerRead(BaseModel):
    """A biller as the API shows it (never its webhook secret)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tenant_id: uuid.UUID
    code: str
    name_zh: str
    name_en: str
    category: BillerCategory
    account_pattern: str
    settlement_bank: str
    settlement_account: str
    settlement_account_name: str
    webhook_url: str | None
    return_origins: list[str]


class LateFeeRule(BaseModel):
    """A late fee: basis points of the amount per day overdue, up to a cap."""

    model_config = ConfigDict(extra="forbid")

    per_day_basis_points: int = Field(ge=1, le=1000)
    cap_fen: int = Field(ge=0, le=MAX_AMOUNT_FEN)


class FineDetails(BaseModel):
    """What a traffic fine's decision (处罚决定书) says besides the amount: its number, when
    and where the offence was recorded, what it was, and (when given) its code and points."""

    model_config = ConfigDict(extra="forbid")

    decision_number: str = Field(pattern=r"^[0-9A-Z][0-9A-Z-]{5,31}$", examples=["210202100012345"])
    offence_time: BoundedDateTime = Field(examples=["2026-11-03T08:42:00+08:00"])
    place: DisplayText = Field(
        min_length=1, max_length=200, examples=["大连市中山区人民路与解放路交叉口"]
    )
    offence: DisplayText = Field(
        min_length=1, max_length=200, examples=["机动车不按交通信号灯规定通行"]
    )
    offence_code: str | None = Field(default=None, pattern=r"^[0-9]{4,5}$", examples=["1625"])
    points: int | None = Field(default=None, ge=0, le=12, strict=True)


#: The details each kind of biller's bills carry; a kind not named here carries none.
BILL_DETAILS: Mapping[str, type[FineDetails]] = {BillerCategory.FINE.value: FineDetails}


class BillIn(BaseModel):
    """One bill to publish (``details``: what its biller's kind needs, see ``BILL_DETAILS``)."""

    model_config = ConfigDict(extra="forbid")

    bill_number: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
    account_number: str = Field(min_length=1, max_length=64)
    payer_name: DisplayText = Field(min_length=1, max_length=100)
    amount_fen: int = Field(gt=0, le=MAX_AMOUNT_FEN, strict=True)
    currency: Literal["CNY"] = "CNY"
    period: DisplayText = Field(min_length=1, max_length=32)
    due_date: BoundedDate
    late_fee_rule: LateFeeRule | None = None
    details: dict[str, Any] | None = None


class BillBatch(BaseModel):
    """Bills to publish in one go; with ``partial`` the good rows go in even if some are bad."""

    model_config = ConfigDict(extra="forbid")

    bills: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)
    partial: bool = False


class RowError(BaseModel):
    """Why one row of an import was refused (``line`` counts from 1, the CSV header is line 1).

    ``code`` names the reason for programs (``pay.import.repeated``, see
    ``billing.ROW_REASONS``), ``params`` its values (a column's name, a limit; amounts as
    ``*_fen``), and ``reason`` says it in English; pages show it in the reader's language.
    """

    line: int
    bill_number: str | None
    code: str
    reason: str
    params: dict[str, Any] = Field(default_factory=dict)


class ImportReport(BaseModel):
    """What an import did: rows accepted, rows refused and why."""

    accepted: int
    refused: int
    errors: list[RowError]
    applied: bool


class BillRead(BaseModel):
    """A bill as billers and operators see it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    biller_id: uuid.UUID
    bill_number: str
    account_number: str
    payer_name: str
    amount_fen: int
    currency: str
    period: str
    due_date: date
    details: dict[str, Any] | None
    status: str
    version: int


class BillAmend(BaseModel):
    """Changes to an open bill."""

    model_config = ConfigDict(extra="forbid")

    amount_fen: int | None = Field(default=None, gt=0, le=MAX_AMOUNT_FEN, strict=True)
    due_date: BoundedDate | None = None
    version: int | None = Field(default=None, ge=1)


class PublicBill(BaseModel):
    """An open bill as a citizen sees it: the payer's name masked."""

    id: uuid.UUID
    bill_number: str
    payer_name_masked: str
    amount_fen: int
    late_fee_fen: int
    total_fen: int
    currency: str
    period: str
    due_date: date
    #: A traffic fine's decision: its number, time, place and offence (``None`` for others).
    details: FineDetails | None = None


class PaymentCreate(BaseModel):
    """Pay one or more open bills of one biller."""

    model_config = ConfigDict(extra="forbid")

    biller_id: uuid.UUID
    bill_ids: list[uuid.UUID] = Field(min_length=1, max_length=50)
    provider: Literal["sandbox", "alipay", "wechatpay"]
    return_url: str = Field(max_length=500, pattern=r"^(https?://|/)\S*$")

    @field_validator("bill_ids")
    @classmethod
    def _distinct(cls, value: list[uuid.UUID]) -> list[uuid.UUID]:
        if len(set(value)) != len(value):
            raise ValueError("a bill may appear once")
        return value


class PaymentRead(BaseModel):
    """A payment and where to pay it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    trade_no: str
    biller_id: uuid.UUID
    provider: str
    status: str
    amount_fen: int
    refunded_fen: int
    currency: str
    return_url: str
    checkout: dict[str, Any]
    created_at: datetime
    expires_at: datetime
    finished_at: datetime | None


class RefundCreate(BaseModel):
    """A full or partial refund of a succeeded payment."""

    model_config = ConfigDict(extra="forbid")

    amount_fen: int = Field(gt=0, le=MAX_AMOUNT_FEN, strict=True)
    reason: DisplayText = Field(min_length=1, max_length=300)


class RefundRead(BaseModel):
    """A refund and where it stands."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    refund_no: str
    payment_id: uuid.UUID
    amount_fen: int
    currency: str
    reason: str
    origin: str
    status: str
    provider_refund_no: str | None
    created_at: datetime
    finished_at: datetime | None


class SettlementRead(BaseModel):
    """One biller's settled day."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    biller_id: uuid.UUID
    business_date: date
    paid_fen: int
    refunded_fen: int
    net_fen: int
    payment_count: int
    refund_count: int
    batch_file: str
    created_at: datetime


class StatementImportRead(BaseModel):
    """An imported provider statement and how its lines were classified."""

    id: uuid.UUID
    provider: str
    business_date: date
    imported_at: datetime
    summary: dict[str, int]


class ReconciliationItemRead(BaseModel):
    """One classified statement line (or a payment or refund of ours the statement lacks)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    import_id: uuid.UUID
    kind: Literal["payment", "refund"]
    classification: str
    trade_no: str | None
    provider_trade_no: str | None
    provider_amount_fen: int | None
    our_amount_fen: int | None
    payment_id: uuid.UUID | None
    refund_no: str | None
    refund_id: uuid.UUID | None
    resolution_entry_id: uuid.UUID | None
    resolved_by: str | None
    resolved_at: datetime | None


class Resolution(BaseModel):
    """An operator's adjustment that settles a reconciliation exception."""

    model_config = ConfigDict(extra="forbid")

    debit_code: str = Field(min_length=1, max_length=100)
    credit_code: str = Field(min_length=1, max_length=100)
    amount_fen: int = Field(gt=0, le=MAX_AMOUNT_FEN, strict=True)
    memo: DisplayText = Field(min_length=1, max_length=300)


class WebhookDeliveryRead(BaseModel):
    """An event owed to a biller's system, and how its delivery went."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    event_id: str
    biller_id: uuid.UUID
    event: str
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    dead_at: datetime | None
    last_error: str | None
    created_at: datetime


class ReceiptVerificationRead(BaseModel):
    """Whether a receipt is genuine."""

    number: str
    status: str
    reason: str | None = None
