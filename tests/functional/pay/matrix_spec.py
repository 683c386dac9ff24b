"""Pay's part of the authorisation matrix: the citizens' routes anyone may call, the ids of
billers, bills, payments and webhook deliveries, and Pay's request models and form fields."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from tests.factories.core import Side, make_tenant, unique
from tests.factories.pay import (
    bill_row,
    make_biller,
    make_bills,
    make_dead_delivery,
    make_pending_payment,
)
from tests.functional.matrix import MatrixSpec

from civicloud.core.services import Services
from civicloud.core.tenants import TenantKind

VALUES: dict[str, str] = {
    "date": "2026-01-01",
    "provider": "sandbox",
    "item_id": "00000000-0000-4000-8000-000000000000",
    "number": "R20260101-00000000",
}


def build(services: Services, side: Side) -> Mapping[str, uuid.UUID]:
    """A biller (at an agency below the side's city), an open bill, a payment in flight and a
    webhook delivery given up on."""
    with services.db.unit_of_work() as session:
        agency = make_tenant(session, parent=side.child, kind=TenantKind.AGENCY)
        biller = make_biller(session, tenant=agency)
        (bill,) = make_bills(session, biller)
        payment = make_pending_payment(session, biller, [bill])
        delivery = make_dead_delivery(session, biller)
        return {
            "biller": biller.id,
            "bill": bill.id,
            "payment": payment.id,
            "delivery": delivery.id,
        }


SPEC = MatrixSpec(
    name="pay",
    public=frozenset(
        {
            # The citizens' side: choosing a biller, looking bills up, paying, polling, and the
            # providers' notifications (authenticated by their signatures, not by us).
            ("GET", "/api/v1/pay/public/billers"),
            ("GET", "/api/v1/pay/public/billers/{biller_id}/bills"),
            ("POST", "/api/v1/pay/payments"),
            ("GET", "/api/v1/pay/public/payments/{trade_no}"),
            ("POST", "/api/v1/pay/notify/{provider}"),
            ("GET", "/api/v1/pay/public/receipts/{number}/verify"),
            # The citizens' pages, the sandbox's own checkout page, and receipts for anyone
            # holding one.
            ("GET", "/pay"),
            ("GET", "/pay/billers/{biller_id}"),
            ("GET", "/pay/billers/{biller_id}/bills"),
            ("POST", "/pay/billers/{biller_id}/bills"),
            # The check-before-paying step, and finding a payment again by its transaction
            # number.
            ("GET", "/pay/billers/{biller_id}/confirm"),
            ("GET", "/pay/find"),
            ("GET", "/pay/sandbox/checkout/{trade_no}"),
            ("POST", "/pay/sandbox/checkout/{trade_no}"),
            ("GET", "/pay/return"),
            ("GET", "/pay/payments/{trade_no}"),
            ("GET", "/pay/receipt-key.pem"),
            ("GET", "/pay/receipts/{number}"),
            ("GET", "/pay/receipts/{number}.pdf"),
            ("GET", "/pay/receipts/{number}.json"),
            ("GET", "/pay/receipts/{number}/verify"),
        }
    ),
    id_parameters={
        "biller_id": "biller",
        "bill_id": "bill",
        "payment_id": "payment",
        "delivery_id": "delivery",
    },
    # Dates, provider names, receipt numbers and the platform-wide reconciliation items.
    values=VALUES,
    # Below platform level, reconciliation items are read by a biller's payment readers, whom a
    # tenant's administrator is not; the sandbox's statement is for platform reconcilers only.
    platform_only_lists=frozenset(
        {"/api/v1/pay/reconciliation/items", "/console/pay/reconciliation/sandbox-statement.csv"}
    ),
    bodies={
        "BillerCreate": lambda ids: {
            "tenant_id": ids["tenant_id"],
            "code": unique("matrix"),
            "name_zh": "矩阵",
            "name_en": "Matrix",
            "category": "fee",
            "account_pattern": r"\\d{10}",
            "settlement_bank": "Bank",
            "settlement_account": "62220202001",
            "settlement_account_name": "Matrix",
        },
        "BillBatch": lambda _ids: {"bills": [bill_row()]},
        "BillAmend": lambda _ids: {"amount_fen": 100},
        "BillerUpdate": lambda _ids: {"return_origins": ["https://pay.example.cn"]},
        "RefundCreate": lambda _ids: {"amount_fen": 100, "reason": "matrix"},
        "Resolution": lambda _ids: {
            "debit_code": "suspense",
            "credit_code": "fees",
            "amount_fen": 1,
            "memo": "matrix",
        },
    },
    form_values={
        "amount": lambda: "1.00",
        "reason": lambda: "matrix",
        "idempotency_key": lambda: unique("matrix"),
        "business_date": lambda: VALUES["date"],
        "provider": lambda: VALUES["provider"],
        "item_id": lambda: VALUES["item_id"],
        "debit_code": lambda: "suspense",
        "credit_code": lambda: "fees",
        "memo": lambda: "matrix",
        # The second step of a refund or a settlement: confirmed, with the net the preview
        # showed (a net that no longer matches is refused, which still proves the caller got
        # that far).
        "confirm": lambda: "yes",
        "expected_net": lambda: "0",
    },
    build=build,
)
