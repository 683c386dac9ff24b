"""What Pay needs from the outside world, as Protocols; ``civicloud.app`` passes implementations in.

``PaymentProvider`` is the one adapter interface for Alipay, WeChat Pay and the sandbox. An
adapter builds and signs requests, verifies what the provider sends back, and speaks the
provider's wire formats; it holds no database session and decides nothing about money. The
service (``civicloud.pay.payments``) checks a verified notification against the payment it
names and records it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol

CheckoutKind = Literal["redirect", "qr"]
TradeStatus = Literal["succeeded", "pending", "failed", "closed", "not_found"]


@dataclass(frozen=True)
class CheckoutRequest:
    """What a provider needs to start taking a payment."""

    trade_no: str
    amount_fen: int
    currency: str
    subject: str
    return_url: str
    notify_url: str
    expires_at: datetime


@dataclass(frozen=True)
class Checkout:
    """Where the citizen goes to pay: a page to redirect to, or a QR code to scan."""

    kind: CheckoutKind
    url: str
    provider_trade_no: str | None = None


NotificationKind = Literal["payment", "refund"]


@dataclass(frozen=True)
class Notification:
    """A verified asynchronous notification: the provider says this trade is now ``status``.

    ``kind`` ``refund``: the refund ``refund_no`` (ours) of trade ``trade_no`` is now
    ``status`` (``succeeded`` or ``failed``), and ``amount_fen`` is the amount refunded.
    """

    notify_id: str
    trade_no: str
    status: TradeStatus
    amount_fen: int
    provider_trade_no: str | None
    occurred_at: datetime | None
    raw: Mapping[str, object] = field(default_factory=dict)
    kind: NotificationKind = "payment"
    #: Our refund number (``kind`` ``refund`` only).
    refund_no: str | None = None
    #: The provider's refund number (``kind`` ``refund`` only).
    provider_refund_no: str | None = None
    #: The currency of ``amount_fen`` as the provider states it (ISO 4217).
    currency: str = "CNY"
    #: Fields of this verified notification that are not this installation's, or that
    #: contradict each other (another app id, a payer amount or currency other than the
    #: trade's…): the service refuses to apply it, keeps it, and gives back what was taken.
    mismatches: tuple[str, ...] = ()
    #: The trade belongs to another merchant account: none of its money reached ours.
    foreign: bool = False
    #: The whole trade's amount as a refund notification states it (``None`` if it does not).
    trade_total_fen: int | None = None


@dataclass(frozen=True)
class Acknowledgement:
    """What to answer the provider's notification with (Alipay wants ``success``…)."""

    status_code: int
    media_type: str
    body: str


@dataclass(frozen=True)
class TradeQuery:
    """The provider's own record of a trade, asked for by the recovery job."""

    trade_no: str
    status: TradeStatus
    amount_fen: int | None = None
    provider_trade_no: str | None = None
    #: The currency of ``amount_fen`` as the provider states it (ISO 4217).
    currency: str = "CNY"
    #: As ``Notification.mismatches``: what in the answer is not ours or contradicts itself.
    mismatches: tuple[str, ...] = ()


@dataclass(frozen=True)
class RefundOutcome:
    """The provider's answer to a refund request."""

    status: Literal["succeeded", "pending", "failed"]
    provider_refund_no: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class StatementLine:
    """One line of a provider's daily statement."""

    trade_no: str
    provider_trade_no: str
    kind: Literal["payment", "refund"]
    amount_fen: int
    occurred_at: datetime | None = None
    #: Our refund number, for a refund line of a statement that carries it.
    refund_no: str | None = None


class PaymentProvider(Protocol):
    """One payment provider: Alipay, WeChat Pay or the sandbox."""

    #: ``alipay``, ``wechatpay`` or ``sandbox``.
    name: str

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """Register the trade with the provider; where the citizen goes to pay."""
        ...

    def parse_notification(self, *, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify a notification exactly as the provider specifies; raise
        ``InvalidNotification`` for anything that does not verify."""
        ...

    def acknowledge(self, *, accepted: bool) -> Acknowledgement:
        """The answer that tells the provider the notification was (or was not) taken."""
        ...

    def query(self, trade_no: str) -> TradeQuery:
        """Ask the provider for the trade's state (recovery after a crash, expiry)."""
        ...

    def refund(
        self, *, trade_no: str, refund_no: str, amount_fen: int, total_fen: int, reason: str
    ) -> RefundOutcome:
        """Ask the provider to refund ``amount_fen`` of the trade."""
        ...

    def parse_statement(self, content: bytes, *, business_date: date) -> list[StatementLine]:
        """Read the provider's daily statement file."""
        ...
