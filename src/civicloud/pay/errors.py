"""Pay's errors, each a subclass of the core tree with a stable ``code``."""

from __future__ import annotations

from civicloud.core.errors import (
    CivicloudError,
    Conflict,
    InvalidInput,
    Misconfigured,
    NotFound,
    PermissionDenied,
    Throttled,
)


class BillNotFound(NotFound):
    """No such bill (or one the caller may not see)."""

    code = "pay.bill_not_found"


class BillerNotFound(NotFound):
    """No such biller (or one the caller may not see)."""

    code = "pay.biller_not_found"


class PaymentNotFound(NotFound):
    """No such payment."""

    code = "pay.payment_not_found"


class BillNotPayable(Conflict):
    """The bill is paid or cancelled already (being paid by another payment is no reason)."""

    code = "pay.bill_not_payable"


class BillBeingPaid(Conflict):
    """The bill has a payment in flight (or changed meanwhile): it cannot be cancelled or
    amended now. Paying it is never refused for this: payments may be in flight together."""

    code = "pay.bill_being_paid"


class BillAlreadyPaid(Conflict):
    """The bill has a succeeded payment already."""

    code = "pay.bill_already_paid"


class IdempotencyKeyReused(Conflict):
    """The idempotency key was used before with a different request."""

    code = "pay.idempotency_key_reused"


class RefundExceedsPayment(Conflict):
    """The refunds of a payment would exceed what was paid."""

    code = "pay.refund_exceeds_payment"


class PaymentNotRefundable(Conflict):
    """The payment cannot be refunded (it did not succeed, or another provider took it)."""

    code = "pay.payment_not_refundable"


class InvalidNotification(PermissionDenied):
    """A provider notification failed verification (signature, replay, mismatch).

    Its messages stay in English, untranslated: they answer the provider's server, which is
    the only reader (operators see the refused notification in the log and the audit).
    """

    code = "pay.invalid_notification"


class ProviderError(CivicloudError):
    """A payment provider could not be reached, refused a call, or answered unverifiably."""

    code = "pay.provider_error"
    title = "Payment provider error"
    status = 502


class ProviderMisconfigured(Misconfigured):
    """A provider adapter's settings or key files are missing or unusable."""

    code = "pay.provider_misconfigured"
    title = "Payment provider misconfigured"


class StatementAlreadyImported(Conflict):
    """This statement file was imported before."""

    code = "pay.statement_already_imported"


class ItemAlreadyResolved(Conflict):
    """The reconciliation item was resolved already (or needs no resolution)."""

    code = "pay.reconciliation_item_resolved"


class ReconciliationItemNotFound(NotFound):
    """No such reconciliation item."""

    code = "pay.reconciliation_item_not_found"


class ReconciliationRefundPending(Conflict):
    """The item is of a refund still pending: its confirmation posts it, not an adjustment."""

    code = "pay.reconciliation_refund_pending"


class WebhookDeliveryNotFound(NotFound):
    """No such webhook delivery (or one of a biller the caller may not see)."""

    code = "pay.webhook_delivery_not_found"


class WebhookDeliveryNotDead(Conflict):
    """Only a dead webhook delivery can be requeued; this one was delivered or is still retried."""

    code = "pay.webhook_delivery_not_dead"


class ImportRejected(InvalidInput):
    """A bill import had bad rows and partial import was not asked for."""

    code = "pay.import_rejected"


class LookupThrottled(Throttled):
    """Too many look-ups from one client: slow down (HTTP 429)."""

    code = "pay.lookup_throttled"


class PaymentsThrottled(Throttled):
    """Too many payments started by one client: slow down (HTTP 429)."""

    code = "pay.payments_throttled"


class InvalidReturnUrl(InvalidInput):
    """A payment's ``return_url`` leads outside this installation."""

    code = "pay.invalid_return_url"


class InvalidReturnOrigin(InvalidInput):
    """A biller's return origin is not ``https://host[:port]`` (or is plain http to another
    machine), or a biller names too many."""

    code = "pay.invalid_return_origin"


class NothingToSettle(Conflict):
    """The biller's day has no succeeded payment and no refund: there is nothing to settle."""

    code = "pay.nothing_to_settle"


class SettlementChanged(Conflict):
    """The day's figures changed between the preview and the confirmation: preview again."""

    code = "pay.settlement_changed"


class UnsafeBatchValue(InvalidInput):
    """A value the bank batch file would carry could run as a spreadsheet formula, or break a line
    of the file: it is refused, never altered (the bank's format is kept exactly)."""

    code = "pay.unsafe_batch_value"
