"""Two transactions receipting the same payment at once end with one receipt (PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from tests.factories.pay_receipts import make_succeeded_payment

from civicloud.core.services import Services
from civicloud.pay.models import Payment, Receipt
from civicloud.pay.receipts import Ed25519Signer, issue_receipt

SIGNER = Ed25519Signer.generate()


def test_a_racing_second_issue_returns_the_first_receipt(
    fresh_services: Callable[[], Services], database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite runs one writer at a time: there is no race to lose")
    # A database of its own: the payment it commits is never posted to the ledger, which
    # tests that check the whole ledger must not see.
    db = fresh_services().db
    # given: a committed succeeded payment
    with db.unit_of_work() as session:
        payment_id = make_succeeded_payment(session).id
    results: dict[str, Receipt | BaseException] = {}

    def second() -> None:
        try:
            with db.unit_of_work() as session:
                payment = session.get(Payment, payment_id)
                assert payment is not None
                results["second"] = issue_receipt(session=session, payment=payment, signer=SIGNER)
        except BaseException as exc:
            results["second"] = exc

    # when: the second transaction inserts while the first has inserted but not committed
    with db.unit_of_work() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        first = issue_receipt(session=session, payment=payment, signer=SIGNER)
        racer = threading.Thread(target=second)
        racer.start()
        time.sleep(0.5)  # the racer is now waiting on the unique index
        assert racer.is_alive()
    racer.join(timeout=30)
    # then: the loser found the winner's receipt instead of failing
    second_result = results["second"]
    assert isinstance(second_result, Receipt), second_result
    assert (second_result.id, second_result.number) == (first.id, first.number)
