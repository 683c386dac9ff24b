"""Pay: online government bill payment.

Billers (water, power, gas, fines, fees) publish bills; citizens look them up and pay through
Alipay, WeChat Pay or the built-in sandbox; every succeeded payment is posted to a double-entry,
append-only ledger, settled daily per biller, reconciled against the providers' statements,
refundable, and receipted with a verifiable signature.

See docs/modules/pay.md for the money rules and what enforces each.
"""

from civicloud.core.permissions import RoleSpec, register_permissions, register_roles

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

register_roles(
    RoleSpec(
        "pay_operator",
        "缴费业务员",
        "Pay operator",
        (
            "core.tenant.read",
            "pay.biller.read",
            "pay.bill.write",
            "pay.payment.read",
            "pay.refund",
            "pay.ledger.read",
            "pay.settlement",
        ),
    ),
    RoleSpec("pay_admin", "缴费管理员", "Pay administrator", ("core.tenant.read", "pay.*")),
)

__all__: list[str] = []
