"""The offline verifier: ``python -m civicloud.pay.receipts verify RECEIPT.json PUBLIC_KEY.pem``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.factories.pay_receipts import unsaved_receipt

from civicloud.pay.receipts import Ed25519Signer, main, receipt_document

SIGNER = Ed25519Signer.generate()


def _files(tmp_path: Path, document: object, key: bytes = b"") -> tuple[str, str]:
    receipt_file, key_file = tmp_path / "RECEIPT.json", tmp_path / "key.pem"
    receipt_file.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    key_file.write_bytes(key or SIGNER.public_key_pem())
    return str(receipt_file), str(key_file)


def test_a_genuine_receipt_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # given
    receipt = unsaved_receipt(SIGNER)
    # when
    code = main(["verify", *_files(tmp_path, receipt_document(receipt))])
    # then
    assert code == 0
    assert (
        capsys.readouterr().out
        == f"valid: receipt {receipt.number}, signed by key {SIGNER.key_id}\n"
    )


def test_a_body_given_as_an_object_is_canonicalised_first(tmp_path: Path) -> None:
    # given: the body pretty-printed as JSON rather than kept as the signed text
    document: dict[str, object] = dict(receipt_document(unsaved_receipt(SIGNER)))
    document["body"] = json.loads(str(document["body"]))
    # when / then
    assert main(["verify", *_files(tmp_path, document)]) == 0


def test_an_edited_receipt_is_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # given: the amount raised by one fen
    document = receipt_document(unsaved_receipt(SIGNER))
    document["body"] = document["body"].replace('"amount_fen":12345', '"amount_fen":12346')
    # when
    code = main(["verify", *_files(tmp_path, document)])
    # then
    assert code == 1
    assert capsys.readouterr().out.startswith("invalid: ")


def test_another_installations_key_does_not_verify(tmp_path: Path) -> None:
    # given
    document = receipt_document(unsaved_receipt(SIGNER))
    other = Ed25519Signer.generate().public_key_pem()
    # when / then
    assert main(["verify", *_files(tmp_path, document, other)]) == 1


@pytest.mark.parametrize("document", [{"number": "R1"}, ["not", "an", "object"]])
def test_an_unreadable_document_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: object
) -> None:
    # given / when
    code = main(["verify", *_files(tmp_path, document)])
    # then
    assert code == 2
    assert capsys.readouterr().err.startswith("error: cannot check the receipt")


def test_the_module_runs_as_a_program(tmp_path: Path) -> None:
    # given
    receipt_file, key_file = _files(tmp_path, receipt_document(unsaved_receipt(SIGNER)))
    # when
    completed = subprocess.run(
        [sys.executable, "-m", "civicloud.pay.receipts", "verify", receipt_file, key_file],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # then
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("valid: receipt R")
