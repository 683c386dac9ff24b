"""Receipt signing keys and offline verification: no database involved."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from civicloud.core.errors import InvalidInput
from civicloud.pay.receipts import (
    Ed25519Signer,
    ReceiptSigner,
    Sm2Signer,
    canonical_json,
    mask_account,
    public_key_id,
    signer_from_settings,
    verify_receipt,
)
from civicloud.pay.settings import PaySettings

BODY = canonical_json({"number": "R20261126-ABCD1234", "amount_fen": 19134, "biller": "大连供水"})


def _sign(signer: ReceiptSigner, body: str = BODY) -> str:
    return base64.b64encode(signer.sign(body.encode())).decode()


def test_load_or_create_makes_a_private_key_file_and_reloads_it(tmp_path: Path) -> None:
    # given: no key file yet
    path = tmp_path / "keys" / "receipt.pem"
    # when: the signer is loaded twice
    first = Ed25519Signer.load_or_create(path)
    second = Ed25519Signer.load_or_create(path)
    # then: the file was made private, and both loads are the same key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert first.key_id == second.key_id
    assert first.public_key_pem() == second.public_key_pem()
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_key_id_is_the_first_16_hex_of_the_public_key_der_sha256() -> None:
    # given
    signer = Ed25519Signer.generate()
    # when
    public = serialization.load_pem_public_key(signer.public_key_pem())
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # then
    assert signer.key_id == hashlib.sha256(der).hexdigest()[:16]
    assert signer.algorithm == "ed25519"


def test_a_key_file_of_another_algorithm_is_refused(tmp_path: Path) -> None:
    # given: an EC key where the Ed25519 key should be
    path = tmp_path / "receipt.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    # when / then
    with pytest.raises(InvalidInput, match="not an Ed25519 private key"):
        Ed25519Signer.load_or_create(path)


def test_signer_from_settings_uses_the_data_dir_for_either_algorithm(tmp_path: Path) -> None:
    # given / when
    signer = signer_from_settings(PaySettings(), data_dir=tmp_path)
    sm2_signer = signer_from_settings(PaySettings(receipt_algorithm="sm2"), data_dir=tmp_path)
    # then
    assert (tmp_path / "keys" / "receipt-ed25519.pem").is_file()
    assert signer.algorithm == "ed25519"
    key_file = tmp_path / "keys" / "receipt-sm2.key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sm2_signer.algorithm == "sm2"
    # and the SM2 key is the same one when loaded again
    again = signer_from_settings(PaySettings(receipt_algorithm="sm2"), data_dir=tmp_path)
    assert again.key_id == sm2_signer.key_id


def test_sm2_signatures_verify_and_any_change_fails() -> None:
    # given an SM2 signer and a receipt body it signed
    signer = Sm2Signer.generate()
    signature = _sign(signer)
    public = signer.public_key_pem()
    # then the signature verifies with the public key alone, and the key id names that key
    assert verify_receipt(body=BODY, signature=signature, public_key_pem=public)
    assert public_key_id(public) == signer.key_id
    # and a changed body, a changed signature or another key does not
    assert not verify_receipt(
        body=BODY.replace("19134", "19135"), signature=signature, public_key_pem=public
    )
    flipped = base64.b64decode(signature)
    flipped = bytes([flipped[0] ^ 1]) + flipped[1:]
    assert not verify_receipt(
        body=BODY, signature=base64.b64encode(flipped).decode(), public_key_pem=public
    )
    other = Sm2Signer.generate().public_key_pem()
    assert not verify_receipt(body=BODY, signature=signature, public_key_pem=other)
    # and an Ed25519 signature is not an SM2 one
    assert not verify_receipt(
        body=BODY, signature=_sign(Ed25519Signer.generate()), public_key_pem=public
    )


def test_an_sm2_public_key_is_a_standard_subject_public_key_info() -> None:
    # the PEM names id-ecPublicKey and the SM2 curve and holds the uncompressed point, so
    # OpenSSL and other tools can read it
    der = base64.b64decode(
        "".join(Sm2Signer.generate().public_key_pem().decode().splitlines()[1:-1])
    )
    assert der[0] == 0x30
    assert bytes.fromhex("06072a8648ce3d0201") in der
    assert bytes.fromhex("06082a811ccf5501822d") in der
    assert der[-65] == 0x04


def test_sign_and_verify_round_trip_in_both_base64_alphabets() -> None:
    # given
    signer = Ed25519Signer.generate()
    signature = _sign(signer)
    urlsafe = base64.urlsafe_b64encode(base64.b64decode(signature)).decode().rstrip("=")
    # when / then
    assert verify_receipt(body=BODY, signature=signature, public_key_pem=signer.public_key_pem())
    assert verify_receipt(body=BODY, signature=urlsafe, public_key_pem=signer.public_key_pem())


def test_any_change_to_the_body_fails_verification() -> None:
    # given
    signer = Ed25519Signer.generate()
    signature, key = _sign(signer), signer.public_key_pem()
    # when: each character in turn is replaced
    changed = [
        BODY[:i] + ("X" if BODY[i] != "X" else "Y") + BODY[i + 1 :] for i in range(len(BODY))
    ]
    # then: none verifies, nor a body with a space added (no re-canonicalisation)
    assert not any(
        verify_receipt(body=body, signature=signature, public_key_pem=key) for body in changed
    )
    assert not verify_receipt(
        body=BODY.replace(",", ", ", 1), signature=signature, public_key_pem=key
    )


def test_any_change_to_the_signature_fails_verification() -> None:
    # given
    signer = Ed25519Signer.generate()
    raw, key = signer.sign(BODY.encode()), signer.public_key_pem()
    # when: each byte in turn is flipped, or the signature is cut short or garbled
    flipped = [raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :] for i in range(len(raw))]
    broken = [base64.b64encode(raw[:-1]).decode(), "not base64 at all!", ""]
    # then
    for signature in [base64.b64encode(s).decode() for s in flipped] + broken:
        assert not verify_receipt(body=BODY, signature=signature, public_key_pem=key)


def test_another_key_does_not_verify_and_an_unusable_key_is_an_error() -> None:
    # given
    signature = _sign(Ed25519Signer.generate())
    other = Ed25519Signer.generate().public_key_pem()
    ec_key = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    # when / then
    assert not verify_receipt(body=BODY, signature=signature, public_key_pem=other)
    with pytest.raises(InvalidInput, match="Ed25519"):
        verify_receipt(body=BODY, signature=signature, public_key_pem=ec_key)
    with pytest.raises(InvalidInput, match="PEM"):
        verify_receipt(body=BODY, signature=signature, public_key_pem=b"garbage")


@pytest.mark.parametrize(
    ("account", "masked"),
    [("0411123456", "******3456"), ("123456", "****56"), ("12", "*2"), ("1", "*"), ("", "")],
)
def test_account_numbers_are_masked(account: str, masked: str) -> None:
    # given / when / then
    assert mask_account(account) == masked


def test_an_sm2_key_whose_point_begins_with_04_signs_and_verifies() -> None:
    # given the SM2 key 11, whose public X begins with the digits 04 (one key in 256 does)
    signer = Sm2Signer(f"{11:064x}")
    assert signer.public_key_pem()
    # when it signs a receipt, then the signature verifies, and a changed body does not
    signature = base64.b64encode(signer.sign(BODY.encode())).decode()
    public = signer.public_key_pem()
    assert verify_receipt(body=BODY, signature=signature, public_key_pem=public)
    assert not verify_receipt(body=BODY + " ", signature=signature, public_key_pem=public)
