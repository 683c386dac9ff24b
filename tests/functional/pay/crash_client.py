"""A citizen's payment, run in its own process and killed at a chosen point (``CRASH_AT``).

Used by ``test_crash_recovery.py``: ``python crash_client.py BILLER_ID BILL_ID KEY``, with
``CIVICLOUD_DATA_DIR`` and ``CIVICLOUD_DATABASE_URL`` naming the test's installation.

- ``lost_notification``: the provider takes the money, its notification never arrives.
- ``before_ledger``: the process dies inside the notification's transaction, before the ledger.
- ``after_commit``: the notification's transaction commits, the process dies before answering.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Mapping

from civicloud.app import build_services, load_settings, prepare_database
from civicloud.pay import ledger, payments
from civicloud.pay.payments import PayContext
from civicloud.pay.providers import SandboxProvider
from civicloud.pay.schemas import PaymentCreate

KILLED = 9


def main() -> None:
    biller_id, bill_id, key = sys.argv[1:4]
    crash_at = os.environ["CRASH_AT"]
    services = build_services(load_settings())
    prepare_database(services)
    context = services.context("pay", PayContext)
    with services.db.unit_of_work() as session:
        payment, _ = payments.create_payment(
            session=session,
            data=PaymentCreate(
                biller_id=uuid.UUID(biller_id),
                bill_ids=[uuid.UUID(bill_id)],
                provider="sandbox",
                return_url="/",
            ),
            idempotency_key=key,
            context=context,
        )
        trade_no = payment.trade_no
    print(trade_no, flush=True)  # noqa: T201 - the test reads the trade number from stdout
    if crash_at == "before_ledger":

        def die(**_: object) -> None:
            os._exit(KILLED)

        ledger.post_payment = die  # type: ignore[assignment]

    def deliver(body: bytes, headers: Mapping[str, str]) -> None:
        if crash_at == "lost_notification":
            os._exit(KILLED)
        with services.db.unit_of_work() as session:
            payments.handle_notification(
                session=session,
                context=context,
                provider_name="sandbox",
                headers=headers,
                body=body,
            )
        if crash_at == "after_commit":
            os._exit(KILLED)

    sandbox = context.providers["sandbox"]
    assert isinstance(sandbox, SandboxProvider)
    sandbox.simulate(trade_no, "succeeded", deliver=deliver)
    os._exit(0)


if __name__ == "__main__":
    main()
