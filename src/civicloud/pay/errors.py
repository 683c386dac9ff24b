"""Pay's errors, each a subclass of the core tree with a stable ``code``."""

from __future__ import annotations

from civicloud.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied


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
    """The bill is paid, cancelled, or being paid by another payment."""

    code = "pay.bill_not_payable"


class BillBeingPaid(Conflict):
    """The bill has a payment in flight: it cannot be cancelled or amended now."""

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


class InvalidNotification(PermissionDenied):
    """A provider notification failed verification (signature, replay, mismatch)."""

    code = "pay.invalid_notification"


class ImportRejected(InvalidInput):
    """A bill import had bad rows and partial import was not asked for."""

    code = "pay.import_rejected"


class LookupThrottled(Conflict):
    """Too many look-ups from one client: slow down (HTTP 429)."""

    code = "pay.lookup_throttled"
    title = "Too many requests"
    status = 429
