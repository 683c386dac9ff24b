"""The receipt's QR code, printable HTML and PDF: drawn from the signed body, in both languages."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
import segno
from tests.factories.pay_receipts import unsaved_receipt

from civicloud.core.errors import InvalidInput
from civicloud.pay.receipts import (
    CJK_FONTS,
    Ed25519Signer,
    receipt_content_security_policy,
    receipt_qr_svg,
    receipt_verify_url,
    render_receipt_html,
    render_receipt_pdf,
    verify_receipt,
)

SIGNER = Ed25519Signer.generate()
BASE = "https://pay.dalian.example/"
HAS_CJK_FONT = any(path.is_file() for path, _ in CJK_FONTS)


def _expected_url(number: str, signature: str) -> str:
    urlsafe = base64.urlsafe_b64encode(base64.b64decode(signature)).decode().rstrip("=")
    return f"https://pay.dalian.example/pay/receipts/{number}/verify?sig={urlsafe}"


def test_the_verify_url_carries_the_receipts_own_signature() -> None:
    # given
    receipt = unsaved_receipt(SIGNER)
    # when
    url = receipt_verify_url(receipt, public_base_url=BASE)
    # then
    assert url == _expected_url(receipt.number, receipt.signature)
    sig = url.split("?sig=")[1]
    assert verify_receipt(body=receipt.body, signature=sig, public_key_pem=SIGNER.public_key_pem())


def test_the_qr_code_encodes_the_verify_url() -> None:
    # given
    receipt = unsaved_receipt(SIGNER)
    expected = segno.make(_expected_url(receipt.number, receipt.signature), error="m", micro=False)
    elsewhere = segno.make(f"https://evil.example/pay/receipts/{receipt.number}/verify", error="m")
    # when
    svg = receipt_qr_svg(receipt, public_base_url=BASE)
    # then: the same modules as a code made independently from the URL, and not another URL's
    same = expected.svg_inline(scale=3, border=2, omitsize=True, title=receipt.number)
    other = elsewhere.svg_inline(scale=3, border=2, omitsize=True, title=receipt.number)
    assert svg == same
    assert svg != other
    assert svg.startswith("<svg")
    assert "viewBox" in svg


@pytest.mark.parametrize(
    ("language", "words"),
    [
        (
            "zh",
            [
                "电子缴费收据",
                "大连市供水有限公司",
                "¥123.45",
                "¥100,000.07",
                "合计",
                "沙箱（演示）",  # noqa: RUF001 - Chinese punctuation
            ],
        ),
        ("en", ["Payment receipt", "Dalian Water Supply", "CNY 123.45", "CNY 100,123.52", "Total"]),
    ],
)
def test_the_html_receipt_in_both_languages(language: str, words: list[str]) -> None:
    # given
    receipt = unsaved_receipt(SIGNER)
    # when
    html = render_receipt_html(receipt, language, public_base_url=BASE)
    # then
    assert f'<html lang="{"zh-CN" if language == "zh" else "en"}">' in html
    for word in [*words, receipt.number, receipt.signature, "@page", "<svg"]:
        assert word in html
    assert _expected_url(receipt.number, receipt.signature) in html
    assert "张三丰" not in html  # the payer's name is not printed
    assert "0411123456" not in html
    assert "******3456" in html
    assert "<script" not in html


def test_the_html_shows_the_signed_body_escaped() -> None:
    # given: a biller whose name carries markup
    receipt = unsaved_receipt(SIGNER, name_en="<b>Water</b> & Co")
    # when
    html = render_receipt_html(receipt, "en", public_base_url=BASE)
    # then
    assert "&lt;b&gt;Water&lt;/b&gt; &amp; Co" in html
    assert "<b>Water</b>" not in html


def test_the_content_security_policy_allows_exactly_the_receipts_style() -> None:
    # given
    html = render_receipt_html(unsaved_receipt(SIGNER), "zh", public_base_url=BASE)
    style = re.search(r"<style>(.*?)</style>", html, re.DOTALL)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    # when
    policy = receipt_content_security_policy()
    # then
    assert f"style-src 'sha256-{digest}'" in policy
    assert "default-src 'none'" in policy
    assert "script-src" not in policy  # default-src 'none' forbids scripts


def test_an_unknown_language_is_refused() -> None:
    # given / when / then
    with pytest.raises(InvalidInput, match="language"):
        render_receipt_html(unsaved_receipt(SIGNER), "fr", public_base_url=BASE)


def _attached_document(pdf: bytes) -> dict[str, str]:
    start = pdf.index(b'{\n "format": "civicloud.pay.receipt/1"')
    document: dict[str, str] = json.JSONDecoder().raw_decode(
        pdf[start:].decode("utf-8", "replace")
    )[0]
    return document


@pytest.mark.skipif(not HAS_CJK_FONT, reason="no CJK font installed (fonts-noto-cjk)")
def test_the_pdf_receipt_in_chinese_embeds_a_cjk_font_and_the_signed_document() -> None:
    # given
    receipt = unsaved_receipt(SIGNER)
    # when
    pdf = render_receipt_pdf(receipt, "zh", public_base_url=BASE)
    # then
    assert pdf.startswith(b"%PDF-")
    assert receipt.number.encode() in pdf
    assert b"NotoSansCJK" in pdf or b"CJK" in pdf
    document = _attached_document(pdf)
    assert document["number"] == receipt.number
    assert verify_receipt(
        body=document["body"],
        signature=document["signature"],
        public_key_pem=SIGNER.public_key_pem(),
    )


def test_without_a_cjk_font_the_pdf_falls_back_to_english(tmp_path: Path) -> None:
    # given: no font where the fonts are looked for
    receipt = unsaved_receipt(SIGNER)
    # when
    pdf = render_receipt_pdf(
        receipt, "zh", public_base_url=BASE, fonts=[(tmp_path / "missing.ttc", 0)]
    )
    # then: a PDF in a core font, still carrying the number and the signed document
    assert pdf.startswith(b"%PDF-")
    assert b"/BaseFont /Helvetica" in pdf
    assert b"CJK" not in pdf
    assert f"/Title ({receipt.number} Payment receipt)".encode() in pdf
    assert _attached_document(pdf)["signature"] == receipt.signature
