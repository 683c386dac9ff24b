"""Issuing receipts for succeeded payments and checking them on the public verify page."""

from __future__ import annotations

import base64
import json
import re

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.factories.pay_receipts import PAID_AT, make_biller, make_succeeded_payment

from civicloud.core.errors import Conflict
from civicloud.pay import receipts
from civicloud.pay.models import PaymentStatus, Receipt
from civicloud.pay.receipts import (
    Ed25519Signer,
    issue_receipt,
    receipt_verify_url,
    verify_receipt,
    verify_receipt_by_number,
)

SIGNER = Ed25519Signer.generate()
KEYS = {SIGNER.key_id: SIGNER.public_key_pem()}


def test_a_succeeded_payment_gets_a_signed_receipt(db_session: Session) -> None:
    # given
    payment = make_succeeded_payment(db_session, amounts=(12_345, 6_789))
    # when
    receipt = issue_receipt(session=db_session, payment=payment, signer=SIGNER)
    # then: numbered by date, signed over canonical JSON of what was paid
    assert re.fullmatch(r"R20\d{6}-[0-9A-Z]{8}", receipt.number)
    assert (receipt.algorithm, receipt.key_id) == ("ed25519", SIGNER.key_id)
    assert verify_receipt(
        body=receipt.body, signature=receipt.signature, public_key_pem=SIGNER.public_key_pem()
    )
    body = json.loads(receipt.body)
    assert receipt.body == json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert body["number"] == receipt.number
    assert body["trade_no"] == payment.trade_no
    assert body["amount_fen"] == 19_134
    assert sorted(line["amount_fen"] for line in body["bills"]) == [6_789, 12_345]
    assert {line["account"] for line in body["bills"]} == {"******3456"}
    assert body["biller"]["name_zh"] == "大连市供水有限公司"
    assert body["biller"]["tenant_id"] == str(payment.tenant_id)
    assert body["currency"] == "CNY"
    assert body["paid_at"] == PAID_AT.isoformat()
    assert (body["provider"], body["provider_trade_no"]) == ("sandbox", payment.provider_trade_no)
    assert "张三丰" not in receipt.body  # the payer's name is not on a public document
    assert "大连" in receipt.body  # UTF-8, not \\u escapes


def test_issuing_twice_returns_the_first_receipt(db_session: Session) -> None:
    # given
    payment = make_succeeded_payment(db_session)
    first = issue_receipt(session=db_session, payment=payment, signer=SIGNER)
    # when
    again = issue_receipt(session=db_session, payment=payment, signer=Ed25519Signer.generate())
    # then
    assert again.id == first.id
    count = db_session.scalar(
        select(func.count()).select_from(Receipt).where(Receipt.payment_id == payment.id)
    )
    assert count == 1


@pytest.mark.parametrize("status", [s for s in PaymentStatus if s != PaymentStatus.SUCCEEDED])
def test_only_succeeded_payments_get_receipts(db_session: Session, status: PaymentStatus) -> None:
    # given
    payment = make_succeeded_payment(db_session, status=status.value, finished_at=None)
    # when / then
    with pytest.raises(Conflict, match="has not succeeded"):
        issue_receipt(session=db_session, payment=payment, signer=SIGNER)


def test_a_taken_number_is_redrawn_and_the_payment_still_gets_one_receipt(
    db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a receipt whose number the next draw will repeat once
    biller = make_biller(db_session)
    taken = issue_receipt(
        session=db_session, payment=make_succeeded_payment(db_session, biller=biller), signer=SIGNER
    )
    draws = iter([taken.number, "R20261126-ZZZZ0001"])
    monkeypatch.setattr(receipts, "_new_number", lambda _at: next(draws))
    payment = make_succeeded_payment(db_session, biller=biller)
    # when
    receipt = issue_receipt(session=db_session, payment=payment, signer=SIGNER)
    # then: the unique constraint refused the repeat, and the work before it survived
    assert receipt.number == "R20261126-ZZZZ0001"
    assert json.loads(receipt.body)["number"] == receipt.number
    assert db_session.get(Receipt, taken.id) is not None
    assert db_session.get(type(payment), payment.id) is payment


def test_the_verify_page_accepts_a_genuine_receipt_and_its_qr_signature(
    db_session: Session,
) -> None:
    # given
    receipt = issue_receipt(
        session=db_session, payment=make_succeeded_payment(db_session), signer=SIGNER
    )
    sig = receipt_verify_url(receipt, public_base_url="https://x").split("sig=")[1]
    # when
    plain = verify_receipt_by_number(session=db_session, number=receipt.number, public_keys=KEYS)
    scanned = verify_receipt_by_number(
        session=db_session, number=receipt.number, public_keys=KEYS, signature_b64=sig
    )
    # then
    for result in (plain, scanned):
        assert result.status == "valid"
        assert result.body is not None
        assert result.body["trade_no"] == json.loads(receipt.body)["trade_no"]


def test_an_edited_stored_body_is_reported_tampered(db_session: Session) -> None:
    # given: someone raised the total in the database
    receipt = issue_receipt(
        session=db_session, payment=make_succeeded_payment(db_session), signer=SIGNER
    )
    receipt.body = receipt.body.replace('"amount_fen":19134', '"amount_fen":1913400')
    db_session.flush()
    # when
    result = verify_receipt_by_number(session=db_session, number=receipt.number, public_keys=KEYS)
    # then
    assert result.status == "tampered"
    assert result.body is None


def test_a_forged_qr_signature_or_an_unknown_key_is_reported_tampered(
    db_session: Session,
) -> None:
    # given
    receipt = issue_receipt(
        session=db_session, payment=make_succeeded_payment(db_session), signer=SIGNER
    )
    forged = base64.b64encode(Ed25519Signer.generate().sign(receipt.body.encode())).decode()
    # when
    wrong_sig = verify_receipt_by_number(
        session=db_session, number=receipt.number, public_keys=KEYS, signature_b64=forged
    )
    other_key = verify_receipt_by_number(
        session=db_session,
        number=receipt.number,
        public_keys={"0123456789abcdef": Ed25519Signer.generate().public_key_pem()},
    )
    # then
    assert (wrong_sig.status, other_key.status) == ("tampered", "tampered")
    assert "does not know" in other_key.reason


@pytest.mark.parametrize(
    "number", ["R20261126-00000000", "not-a-number", "R20261126-ABC\x00DEFG", "R" * 5000]
)
def test_unknown_numbers_are_unknown(db_session: Session, number: str) -> None:
    # given / when
    result = verify_receipt_by_number(session=db_session, number=number, public_keys=KEYS)
    # then
    assert (result.status, result.receipt) == ("unknown", None)


def test_receipts_of_different_payments_have_different_numbers(db_session: Session) -> None:
    # given
    biller = make_biller(db_session)
    payments = [make_succeeded_payment(db_session, biller=biller, amounts=(100,)) for _ in range(5)]
    # when
    numbers = {issue_receipt(session=db_session, payment=p, signer=SIGNER).number for p in payments}
    # then
    assert len(numbers) == 5


def test_another_receipts_signed_body_pasted_in_is_reported_tampered(db_session: Session) -> None:
    # given: receipt B's row carries receipt A's genuine body and signature
    biller = make_biller(db_session)
    a, b = (
        issue_receipt(
            session=db_session,
            payment=make_succeeded_payment(db_session, biller=biller),
            signer=SIGNER,
        )
        for _ in range(2)
    )
    b.body, b.signature = a.body, a.signature
    db_session.flush()
    # when
    result = verify_receipt_by_number(session=db_session, number=b.number, public_keys=KEYS)
    # then
    assert result.status == "tampered"
    assert "another receipt" in result.reason
