"""Pay: online government bill payment.

Billers (water, power, gas, fines, fees) publish bills; citizens look them up and pay through
Alipay, WeChat Pay or the built-in sandbox; every succeeded payment is posted to a double-entry,
append-only ledger, settled daily per biller, reconciled against the providers' statements,
refundable, and receipted with a verifiable signature.

``MODULE`` is Pay's one declaration of everything it brings to an installation (the module
contract, ``civicloud.core.modules``). See docs/modules/pay.md for the money rules and what
enforces each.
"""

from pathlib import Path

from civicloud.core.i18n import N_
from civicloud.core.modules import HomeCard, Job, Module, NavEntry
from civicloud.core.permissions import RoleSpec
from civicloud.pay.settings import PaySettings

_HERE = Path(__file__).resolve().parent

MODULE = Module(
    name="pay",
    title=N_("Pay"),
    permissions={
        "pay.biller.read": N_("See billers and their bills"),
        "pay.biller.admin": N_("Create and change billers"),
        "pay.bill.write": N_("Publish, amend and cancel bills"),
        "pay.payment.read": N_("Search payments"),
        "pay.refund": N_("Refund payments"),
        "pay.ledger.read": N_("Read ledger balances and journals"),
        "pay.settlement": N_("Run and read settlements"),
        "pay.reconcile": N_("Import statements and resolve reconciliation exceptions"),
    },
    roles=(
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
    ),
    models=("civicloud.pay.models",),
    settings=PaySettings,
    context="civicloud.pay.context:build",
    listening="civicloud.pay.context:listening",
    api="civicloud.pay.api:router",
    pages="civicloud.pay.web:router",
    cli="civicloud.pay.cli:pay_app",
    templates=_HERE / "templates",
    locales=_HERE / "locales",
    static=_HERE / "static",
    stylesheets=("pay.css",),
    labels={
        "biller_id": N_("The biller"),
        "payment_id": N_("The payment"),
        "item_id": N_("The reconciliation item"),
        "trade_no": N_("The transaction number"),
        "number": N_("The receipt number"),
        "account": N_("The account number"),
        "provider": N_("The payment provider"),
        "return_origins": N_("The list of return origins"),
    },
    errors="civicloud.pay.errors",
    nav=(NavEntry("pay", "/console/pay", N_("Pay"), permission="pay.*"),),
    home=HomeCard(
        title=N_("Bill payment"),
        summary=N_(
            "Pay water, electricity and gas bills and non-tax fees online, with an e-receipt."
        ),
        items=(N_("Utility bills"), N_("Non-tax fees"), N_("Electronic receipts")),
        href="/pay",
        action=N_("Pay now"),
        hero="pay/_home_hero.html",
    ),
    jobs=(
        Job(
            "pay.expire_payments",
            N_("Expire unpaid payments"),
            "civicloud.pay.jobs:expire_payments",
        ),
        Job(
            "pay.recover_payments",
            N_("Recover payments in flight"),
            "civicloud.pay.jobs:recover_payments",
        ),
        Job(
            "pay.resume_refunds",
            N_("Ask again about pending refunds"),
            "civicloud.pay.jobs:resume_refunds",
        ),
        Job(
            "pay.deliver_webhooks",
            N_("Deliver billers' webhooks"),
            "civicloud.pay.jobs:deliver_webhooks",
        ),
    ),
    demo="civicloud.pay.demo:seed",
    migrations=_HERE / "migrations",
)

__all__ = ["MODULE"]
