"""Pay: online government bill payment.

Billers (water, power, gas, fines, fees) publish bills; citizens look them up and pay through
Alipay, WeChat Pay or the built-in sandbox; every succeeded payment is posted to a double-entry,
append-only ledger, settled daily per biller, reconciled against the providers' statements,
refundable, and receipted with a verifiable signature.

Work in progress: the data model is in place; the services arrive in the following commits.
"""

from civicloud.core.permissions import register_permissions

register_permissions(
    {
        "pay.biller.read": "See billers and their bills",
        "pay.biller.admin": "Create and change billers",
        "pay.bill.write": "Publish, amend and cancel bills",
        "pay.payment.read": "Search payments",
        "pay.refund": "Refund payments",
        "pay.ledger.read": "Read ledger balances and journals",
        "pay.settlement": "Run and read settlements",
        "pay.reconcile": "Import statements and resolve reconciliation exceptions",
    }
)

__all__: list[str] = []
