"""Receipts: every succeeded payment gets a numbered, signed receipt anyone can verify offline.

The signed body is canonical JSON (sorted keys, no spaces, UTF-8) of what the receipt says: its
number, the trade, the biller, the bills (account numbers masked), the total, when and through
which provider it was paid, and which key signed it. The stored ``body`` text is exactly the
signed bytes, so verification never re-serialises anything: ``verify_receipt`` needs only the
body, the signature and the installation's public key, no database. The printed receipt (HTML
or PDF) is drawn from the signed body, not from live rows, so it shows what was signed.

The QR code points at the public verify page, ``/pay/receipts/<number>/verify?sig=<signature>``.
Offline: ``python -m civicloud.pay.receipts verify RECEIPT.json PUBLIC_KEY.pem``, or with no
civicloud at all, the body's UTF-8 bytes and the decoded signature in two files:
``openssl pkeyutl -verify -pubin -inkey PUBLIC_KEY.pem -rawin -in body.txt -sigfile sig.bin``.

Signing is behind the ``ReceiptSigner`` Protocol; Ed25519 is implemented. SM2 is not: the
``cryptography`` package has no SM2, and adding another dependency is a separate decision.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import io
import json
import re
import secrets
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import segno
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fpdf import FPDF
from gmssl import sm2
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from sqlalchemy import Executable, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from civicloud.core.db import new_id, utcnow
from civicloud.core.errors import Conflict, InvalidInput, format_message
from civicloud.core.keyfiles import write_private_once
from civicloud.core.zones import local_time
from civicloud.pay.errors import BillerNotFound
from civicloud.pay.models import (
    Bill,
    Biller,
    Payment,
    PaymentBill,
    PaymentFacts,
    PaymentStatus,
    Receipt,
)
from civicloud.pay.settings import PaySettings

__all__ = [
    "RECEIPT_FORMAT",
    "Ed25519Signer",
    "ReceiptBill",
    "ReceiptBiller",
    "ReceiptSigner",
    "ReceiptVerification",
    "VerificationStatus",
    "canonical_json",
    "get_receipt",
    "get_receipt_for_payment",
    "issue_receipt",
    "main",
    "mask_account",
    "receipt_body",
    "receipt_content_security_policy",
    "receipt_document",
    "receipt_qr_svg",
    "receipt_verify_url",
    "render_receipt_html",
    "render_receipt_pdf",
    "sign_receipt",
    "signer_from_settings",
    "store_receipt",
    "verify_receipt",
    "verify_receipt_by_number",
]

#: Names the layout of the signed body; a new layout gets a new name.
RECEIPT_FORMAT = "civicloud.pay.receipt/1"
#: The date in a receipt's number is a day of China Standard Time (no daylight saving), as the
#: days of providers' statements and of settlement are: a business rule, the same whatever the
#: installation's zone. The times a receipt shows are in the installation's zone (``tzinfo``).
NUMBER_TZ = timezone(timedelta(hours=8), "UTC+8")
#: The zone receipts show times in when the caller names none: the default installation's.
DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")
LANGUAGES = ("zh", "en")
TEMPLATES_DIR = Path(__file__).parent / "templates"
# Crockford's base32 alphabet: no I, L, O or U, so a number read aloud or typed is unambiguous.
_NUMBER_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_NUMBER_RE = re.compile(r"R\d{8}-[0-9A-HJKMNP-TV-Z]{8}")
_NUMBER_ATTEMPTS = 5

# --- signers -------------------------------------------------------------------------------


class ReceiptSigner(Protocol):
    """A receipt signing key: Ed25519 (the default) or SM2."""

    @property
    def algorithm(self) -> str:
        """``ed25519`` (or ``sm2``), stored with each receipt."""
        ...

    @property
    def key_id(self) -> str:
        """Names the key a receipt was signed with (for rotation)."""
        ...

    def sign(self, data: bytes) -> bytes:
        """The raw signature of ``data``."""
        ...

    def public_key_pem(self) -> bytes:
        """The public key, PEM (SubjectPublicKeyInfo), for anyone who verifies."""
        ...


def _key_id(public_key: Ed25519PublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


class Ed25519Signer:
    """Signs receipts with an Ed25519 private key."""

    algorithm = "ed25519"

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.key_id = _key_id(private_key.public_key())

    @classmethod
    def generate(cls) -> Ed25519Signer:
        """A signer with a fresh key held only in memory (tests, demos)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> Ed25519Signer:
        """Load the PEM private key at ``path``; create it (0600, fsync'd) when absent."""
        if not path.exists():
            _create_key_file(path)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                "%(path)s: not an unencrypted PEM private key", params={"path": str(path)}
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidInput("%(path)s: not an Ed25519 private key", params={"path": str(path)})
        return cls(key)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._private_key.sign(data)

    def public_key_pem(self) -> bytes:
        """The public key, PEM (SubjectPublicKeyInfo)."""
        return self._private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


#: DER of the OIDs in an SM2 public key: id-ecPublicKey, then the SM2 curve (1.2.156.10197.1.301).
_EC_PUBLIC_KEY_OID = bytes.fromhex("06072a8648ce3d0201")
_SM2_CURVE_OID = bytes.fromhex("06082a811ccf5501822d")
_SM2_KEY_LABEL = "CIVICLOUD SM2 PRIVATE KEY"


def _sm2_public_der(point_hex: str) -> bytes:
    """SubjectPublicKeyInfo (DER) of an SM2 public key given as the 128 hex digits of X || Y."""
    point = b"\x04" + bytes.fromhex(point_hex)
    algorithm = _EC_PUBLIC_KEY_OID + _SM2_CURVE_OID
    body = (
        b"\x30"
        + bytes([len(algorithm)])
        + algorithm
        + b"\x03"
        + bytes([len(point) + 1])
        + b"\x00"
        + point
    )
    return b"\x30" + bytes([len(body)]) + body


def _pem_der(pem: bytes) -> bytes:
    """The DER inside a PEM block; ``InvalidInput`` when it is not one."""
    lines = [line.strip() for line in pem.decode("ascii", "replace").splitlines()]
    inner = [line for line in lines if line and not line.startswith("-----")]
    try:
        return base64.b64decode("".join(inner), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise InvalidInput("not a PEM public key") from exc


def _sm2_point(public_key_pem: bytes) -> str | None:
    """The SM2 public point (hex X || Y) of a PEM key, or ``None`` when it is not an SM2 key."""
    der = _pem_der(public_key_pem)
    if _SM2_CURVE_OID not in der or len(der) < 65:
        return None
    return der[-64:].hex()


def public_key_id(public_key_pem: bytes) -> str:
    """The key id of a PEM public key: the first 16 hex digits of SHA-256 over its DER."""
    return hashlib.sha256(_pem_der(public_key_pem)).hexdigest()[:16]


class Sm2Signer:
    """Signs receipts with SM2 and SM3 (GB/T 32918, GB/T 32905), for installations that must."""

    algorithm = "sm2"

    def __init__(self, private_hex: str) -> None:
        if len(private_hex) != 64 or not all(c in "0123456789abcdefABCDEF" for c in private_hex):
            raise InvalidInput("an SM2 private key is 64 hexadecimal digits")
        self._private_hex = private_hex.lower()
        probe = sm2.CryptSM2(public_key="", private_key=self._private_hex)
        self._public_hex: str = probe._kg(int(self._private_hex, 16), sm2.default_ecc_table["g"])
        self._crypt = _sm2_with_point(self._public_hex, private_hex=self._private_hex)
        self.key_id = hashlib.sha256(_sm2_public_der(self._public_hex)).hexdigest()[:16]

    @classmethod
    def generate(cls) -> Sm2Signer:
        """A signer with a fresh key held only in memory (tests, demos)."""
        order = int(sm2.default_ecc_table["n"], 16)
        return cls(f"{secrets.randbelow(order - 1) + 1:064x}")

    @classmethod
    def load_or_create(cls, path: Path) -> Sm2Signer:
        """Load the key at ``path``; create it (0600, fsync'd) when absent."""
        if not path.exists():
            fresh = cls.generate()
            _create_key_file(path, fresh.private_pem())
        text = path.read_text(encoding="ascii", errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) != 3 or _SM2_KEY_LABEL not in lines[0]:
            raise InvalidInput(
                "%(path)s: not a civicloud SM2 private key", params={"path": str(path)}
            )
        return cls(lines[1])

    def private_pem(self) -> bytes:
        """The private key in civicloud's SM2 key file format."""
        return (
            f"-----BEGIN {_SM2_KEY_LABEL}-----\n{self._private_hex}\n"
            f"-----END {_SM2_KEY_LABEL}-----\n"
        ).encode("ascii")

    def sign(self, data: bytes) -> bytes:
        """The 64-byte SM2 signature (r || s) of ``data`` with SM3 and the default user id."""
        return bytes.fromhex(self._crypt.sign_with_sm3(data))

    def public_key_pem(self) -> bytes:
        """The public key, PEM (SubjectPublicKeyInfo with the SM2 curve)."""
        der = base64.b64encode(_sm2_public_der(self._public_hex)).decode("ascii")
        wrapped = "\n".join(der[i : i + 64] for i in range(0, len(der), 64))
        return f"-----BEGIN PUBLIC KEY-----\n{wrapped}\n-----END PUBLIC KEY-----\n".encode()


def _sm2_with_point(point_hex: str, *, private_hex: str | None = None) -> sm2.CryptSM2:
    """gmssl's SM2 over the public point ``point_hex`` (X || Y), set after construction: its
    constructor ``lstrip``s "04" from a key that starts with it, which also strips every ``0``
    and ``4`` digit that follows, so that one key in 256 (X beginning ``04``) signed and verified
    with a wrong point."""
    crypt = sm2.CryptSM2(public_key="", private_key=private_hex)
    crypt.public_key = point_hex
    return crypt


def _verify_sm2(point_hex: str, signature: bytes, data: bytes) -> bool:
    if len(signature) != 64:
        return False
    try:
        verifier = _sm2_with_point(point_hex)
        return bool(verifier.verify_with_sm3(signature.hex(), data))
    except (ValueError, TypeError, ZeroDivisionError):
        return False


def _create_key_file(path: Path, pem: bytes | None = None) -> None:
    """Write a new key (``pem``, by default a fresh Ed25519 one) to ``path`` unless another
    process got there first (then both use that one)."""
    if pem is None:
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    write_private_once(path, pem)


def signer_from_settings(settings: PaySettings, *, data_dir: Path) -> ReceiptSigner:
    """The configured receipt signer; the key is made in ``data_dir`` when no file is set."""
    if settings.receipt_algorithm == "sm2":
        return Sm2Signer.load_or_create(
            settings.receipt_key_file or data_dir / "keys" / "receipt-sm2.key"
        )
    path = settings.receipt_key_file or data_dir / "keys" / "receipt-ed25519.pem"
    return Ed25519Signer.load_or_create(path)


# --- issuing -------------------------------------------------------------------------------


def canonical_json(value: Mapping[str, Any]) -> str:
    """``value`` as canonical JSON: sorted keys, no spaces, non-ASCII kept (UTF-8 when encoded)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def mask_account(account: str) -> str:
    """An account number with all but its last four characters (two if short) hidden."""
    keep = 4 if len(account) > 6 else min(2, max(len(account) - 1, 0))
    return "*" * (len(account) - keep) + account[len(account) - keep :]


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds")


def _new_number(issued_at: datetime) -> str:
    suffix = "".join(secrets.choice(_NUMBER_ALPHABET) for _ in range(8))
    return f"R{issued_at.astimezone(NUMBER_TZ):%Y%m%d}-{suffix}"


def get_receipt(*, session: Session, number: str) -> Receipt | None:
    """The receipt numbered ``number``, or ``None``."""
    if not _NUMBER_RE.fullmatch(number):
        return None
    return session.scalars(select(Receipt).where(Receipt.number == number)).one_or_none()


def get_receipt_for_payment(*, session: Session, payment_id: uuid.UUID) -> Receipt | None:
    """The receipt of the payment ``payment_id``, or ``None``."""
    return session.scalars(select(Receipt).where(Receipt.payment_id == payment_id)).one_or_none()


class ReceiptBiller(Protocol):
    """What a receipt says of the biller."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def code(self) -> str: ...
    @property
    def name_zh(self) -> str: ...
    @property
    def name_en(self) -> str: ...
    @property
    def tenant_id(self) -> uuid.UUID: ...


class ReceiptBill(Protocol):
    """What a receipt says of each bill paid."""

    @property
    def bill_number(self) -> str: ...
    @property
    def account_number(self) -> str: ...
    @property
    def period(self) -> str: ...
    @property
    def details(self) -> dict[str, Any] | None: ...


def sign_receipt(
    *,
    number: str,
    payment: PaymentFacts,
    biller: ReceiptBiller,
    bills: Sequence[tuple[ReceiptBill, int]],
    issued_at: datetime,
    signer: ReceiptSigner,
) -> Receipt:
    """A signed, unsaved receipt of ``payment`` covering ``bills`` (each with the fen it paid)."""
    body = canonical_json(
        {
            "format": RECEIPT_FORMAT,
            "number": number,
            "trade_no": payment.trade_no,
            "biller": {
                "id": str(biller.id),
                "code": biller.code,
                "name_zh": biller.name_zh,
                "name_en": biller.name_en,
                "tenant_id": str(biller.tenant_id),
            },
            "bills": [
                {
                    "bill_number": bill.bill_number,
                    "account": mask_account(bill.account_number),
                    "period": bill.period,
                    "amount_fen": amount_fen,
                    # A traffic fine's decision (number, time, place, offence) is signed too.
                    **({"details": bill.details} if bill.details else {}),
                }
                for bill, amount_fen in bills
            ],
            "amount_fen": payment.amount_fen,
            "currency": payment.currency,
            # A succeeded payment has finished_at; the fallback only keeps a receipt possible.
            "paid_at": _timestamp(payment.finished_at or issued_at),
            "provider": payment.provider,
            "provider_trade_no": payment.provider_trade_no,
            "issued_at": _timestamp(issued_at),
            # Signed in, so a signature cannot be passed off under another key or algorithm.
            "algorithm": signer.algorithm,
            "key_id": signer.key_id,
        }
    )
    return Receipt(
        number=number,
        payment_id=payment.id,
        issued_at=issued_at,
        body=body,
        algorithm=signer.algorithm,
        key_id=signer.key_id,
        signature=base64.b64encode(signer.sign(body.encode())).decode("ascii"),
    )


def issue_receipt(*, session: Session, payment: Payment, signer: ReceiptSigner) -> Receipt:
    """Sign and store the receipt of a succeeded payment; a second call returns the first."""
    if payment.status != PaymentStatus.SUCCEEDED:
        raise Conflict(
            "payment %(trade_no)s has not succeeded: no receipt",
            params={"trade_no": payment.trade_no},
        )
    existing = get_receipt_for_payment(session=session, payment_id=payment.id)
    if existing is not None:
        return existing
    biller = session.get(Biller, payment.biller_id)
    if biller is None:
        raise BillerNotFound("the payment's biller does not exist")
    bills = [
        (bill, amount_fen)
        for bill, amount_fen in session.execute(
            select(Bill, PaymentBill.amount_fen)
            .join(PaymentBill, PaymentBill.bill_id == Bill.id)
            .where(PaymentBill.payment_id == payment.id)
            .order_by(Bill.bill_number)
        )
    ]
    number = store_receipt(
        session=session, payment=payment, biller=biller, bills=bills, signer=signer
    )
    receipt = get_receipt_for_payment(session=session, payment_id=payment.id)
    if receipt is None:
        raise Conflict(
            "the receipt %(number)s of %(trade_no)s is gone",
            params={"number": number, "trade_no": payment.trade_no},
        )
    return receipt


def store_receipt(
    *,
    session: Session,
    payment: PaymentFacts,
    biller: ReceiptBiller,
    bills: Sequence[tuple[ReceiptBill, int]],
    signer: ReceiptSigner,
) -> str:
    """Sign and store the receipt of a succeeded payment (its bills in receipt order, each with
    the fen it paid); returns its number, or the number of the receipt it has already.

    Written as SQL statements on the session's connection (this is on every payment's path).
    The unique constraints decide whether the drawn number is free and whether another
    transaction receipted the payment first: ``ON CONFLICT DO NOTHING`` writes nothing then,
    and nothing else in the transaction is undone.
    """
    if payment.status != PaymentStatus.SUCCEEDED:
        raise Conflict(
            "payment %(trade_no)s has not succeeded: no receipt",
            params={"trade_no": payment.trade_no},
        )
    connection = session.connection()
    insert_receipt, find_receipt = _receipt_statements(connection.dialect.name)
    issued_at = utcnow().replace(microsecond=0)
    for _ in range(_NUMBER_ATTEMPTS):
        receipt = sign_receipt(
            number=_new_number(issued_at),
            payment=payment,
            biller=biller,
            bills=bills,
            issued_at=issued_at,
            signer=signer,
        )
        stored = connection.execute(
            insert_receipt,
            {
                "id": new_id(),
                "number": receipt.number,
                "payment_id": receipt.payment_id,
                "issued_at": receipt.issued_at,
                "body": receipt.body,
                "algorithm": receipt.algorithm,
                "key_id": receipt.key_id,
                "signature": receipt.signature,
            },
        ).scalar_one_or_none()
        if stored is not None:
            return str(stored)
        existing = connection.execute(
            find_receipt, {"p_payment_id": payment.id}
        ).scalar_one_or_none()
        if existing is not None:
            return str(existing)
        # the random number was taken: draw another
    raise Conflict("could not allocate a free receipt number; try again")


@cache
def _receipt_statements(dialect: str) -> tuple[Executable, Executable]:
    """Storing's statements, built once per dialect (``ON CONFLICT`` is spelled per dialect)."""
    insert_into = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert_into(Receipt).on_conflict_do_nothing().returning(Receipt.number),
        select(Receipt.number).where(Receipt.payment_id == bindparam("p_payment_id")),
    )


# --- verifying -----------------------------------------------------------------------------


def _decode_signature(signature: str) -> bytes | None:
    # Standard base64 (stored, in RECEIPT.json) or URL-safe without padding (in the QR code).
    text = signature.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _urlsafe(signature: str) -> str:
    raw = _decode_signature(signature) or b""
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _load_public_key(public_key_pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(public_key_pem)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput("not an Ed25519 or SM2 public key")
    return key


def verify_receipt(*, body: str, signature: str, public_key_pem: bytes) -> bool:
    """Whether ``signature`` (base64) signs ``body`` under the key; no database needed.

    Raises ``InvalidInput`` if the key is unusable: a bad key is not a bad receipt.
    """
    point = _sm2_point(public_key_pem)
    raw = _decode_signature(signature)
    if point is not None:
        return raw is not None and _verify_sm2(point, raw, body.encode("utf-8", "surrogatepass"))
    key = _load_public_key(public_key_pem)
    if raw is None:
        return False
    try:
        key.verify(raw, body.encode("utf-8"))
    except (InvalidSignature, UnicodeEncodeError):
        return False
    return True


VerificationStatus = Literal["valid", "tampered", "unknown"]


#: Why a receipt verifies or not: English templates, each a msgid of the pages' catalogs (the
#: pages show them translated, with ``reason_params``).
REASON_UNKNOWN = "no receipt has this number"
REASON_UNKNOWN_KEY = "signed with key %(key_id)s, which this installation does not know"
REASON_STORED_MISMATCH = "the stored receipt does not match its signature"
REASON_OTHER_RECEIPT = "the signed body belongs to another receipt"
REASON_COPY_MISMATCH = "the signature on this copy is not the receipt's signature"
REASON_VALID = "the signature is valid"


@dataclass(frozen=True)
class ReceiptVerification:
    """What the public verify page shows: the verdict, why (a template and its parameters), and
    the receipt's signed body."""

    status: VerificationStatus
    reason: str
    number: str
    receipt: Receipt | None = None
    body: Mapping[str, Any] | None = None
    reason_params: Mapping[str, str] = field(default_factory=dict)

    @property
    def reason_text(self) -> str:
        """The reason in English, its parameters filled in."""
        return format_message(self.reason, self.reason_params)


def verify_receipt_by_number(
    *,
    session: Session,
    number: str,
    public_keys: Mapping[str, bytes],
    signature_b64: str | None = None,
) -> ReceiptVerification:
    """Check the stored receipt ``number`` (and the signature from its QR code, if given).

    ``public_keys`` maps key ids to PEM public keys: the current signer's and retired ones.
    """
    receipt = get_receipt(session=session, number=number)
    if receipt is None:
        return ReceiptVerification("unknown", REASON_UNKNOWN, number)
    public_key = public_keys.get(receipt.key_id)
    if public_key is None:
        return ReceiptVerification(
            "tampered",
            REASON_UNKNOWN_KEY,
            number,
            receipt,
            reason_params={"key_id": receipt.key_id},
        )
    if not verify_receipt(
        body=receipt.body, signature=receipt.signature, public_key_pem=public_key
    ):
        return ReceiptVerification("tampered", REASON_STORED_MISMATCH, number, receipt)
    body = json.loads(receipt.body)
    if body.get("number") != receipt.number:
        return ReceiptVerification("tampered", REASON_OTHER_RECEIPT, number, receipt)
    if signature_b64 is not None and not verify_receipt(
        body=receipt.body, signature=signature_b64, public_key_pem=public_key
    ):
        return ReceiptVerification("tampered", REASON_COPY_MISMATCH, number, receipt)
    return ReceiptVerification("valid", REASON_VALID, number, receipt, body)


def receipt_document(receipt: Receipt) -> dict[str, str]:
    """The receipt as a self-contained JSON document (``RECEIPT.json``) for offline checks."""
    return {
        "format": RECEIPT_FORMAT,
        "number": receipt.number,
        "algorithm": receipt.algorithm,
        "key_id": receipt.key_id,
        "body": receipt.body,
        "signature": receipt.signature,
    }


def receipt_body(receipt: Receipt) -> dict[str, Any]:
    """The signed body, parsed."""
    body: dict[str, Any] = json.loads(receipt.body)
    return body


# --- QR code, HTML and PDF -----------------------------------------------------------------


def receipt_verify_url(receipt: Receipt, *, public_base_url: str) -> str:
    """The public verify page of ``receipt``, carrying its signature (URL-safe base64)."""
    base = public_base_url.rstrip("/")
    return f"{base}/pay/receipts/{receipt.number}/verify?sig={_urlsafe(receipt.signature)}"


def _qr(url: str) -> segno.QRCode:
    return segno.make(url, error="m", micro=False)


def receipt_qr_svg(receipt: Receipt, *, public_base_url: str, scale: int = 3) -> str:
    """An inline SVG QR code of the receipt's verify URL."""
    url = receipt_verify_url(receipt, public_base_url=public_base_url)
    # omitsize: a viewBox instead of a pixel size, so the page's CSS decides how big it prints.
    svg: str = _qr(url).svg_inline(scale=scale, border=2, omitsize=True, title=receipt.number)
    return svg


_LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "title": "电子缴费收据",
        "number": "收据编号",
        "biller": "收款单位",
        "trade_no": "交易流水号",
        "provider": "支付渠道",
        "provider_trade_no": "渠道交易号",
        "paid_at": "支付时间",
        "issued_at": "开具时间",
        "bill_number": "账单号",
        "account": "户号",
        "period": "账期",
        "offence_time": "违法时间",
        "place": "违法地点",
        "offence": "违法行为",
        "decision_number": "决定书编号",
        "amount": "金额",
        "total": "合计",
        "signature": "数字签名",
        "key": "签名密钥",
        "scan": "扫码或访问以下地址验证本收据：",  # noqa: RUF001 - Chinese punctuation
        "offline": "离线验证：",  # noqa: RUF001 - Chinese punctuation
        "offline_command": "python -m civicloud.pay.receipts verify 收据.json 公钥.pem",
        "colon": "：",  # noqa: RUF001 - Chinese punctuation
        "currency_symbol": "¥",
        "back": "返回缴费结果",
        "pdf": "下载 PDF",
        "payer": "缴费人",
        "issuer": "出具方",
        "issuer_name": "城市政务云 · 缴费服务（代收，电子签名）",  # noqa: RUF001
        "verify_title": "验证真伪",
        "verify_scan": "用手机扫描二维码，即可查看本收据是否真实有效。",  # noqa: RUF001
        "verify_online": "在线验证本收据",
        "verify_at": "也可在浏览器中打开以下地址：",  # noqa: RUF001
        "advanced": "供核验人员：电子签名与离线验证",  # noqa: RUF001
        "json": "签名收据文件（JSON）",  # noqa: RUF001
        "public_key": "签名公钥（PEM）",  # noqa: RUF001
        "attached": "本 PDF 内附签名收据文件 RECEIPT.json，可离线验证。",  # noqa: RUF001
        "not_fiscal": "本收据为缴费凭证，不是财政票据或税务发票。",  # noqa: RUF001
    },
    "en": {
        "title": "Payment receipt",
        "number": "Receipt no.",
        "biller": "Paid to",
        "trade_no": "Transaction no.",
        "provider": "Paid with",
        "provider_trade_no": "Provider's transaction no.",
        "paid_at": "Paid at",
        "issued_at": "Issued at",
        "bill_number": "Bill no.",
        "account": "Account",
        "period": "Period",
        "offence_time": "Offence time",
        "place": "Place",
        "offence": "Offence",
        "decision_number": "Decision no.",
        "amount": "Amount",
        "total": "Total",
        "signature": "Digital signature",
        "key": "Signing key",
        "scan": "Scan the code or visit this address to verify this receipt:",
        "offline": "Offline: ",
        "offline_command": "python -m civicloud.pay.receipts verify RECEIPT.json PUBLIC_KEY.pem",
        "colon": ": ",
        "currency_symbol": "CNY ",
        "back": "Back to the payment",
        "pdf": "Download PDF",
        "payer": "Payer",
        "issuer": "Issued by",
        "issuer_name": "City Government Cloud · Bill payment (collecting agent, signed electronically)",
        "verify_title": "Check it is genuine",
        "verify_scan": "Scan the QR code with a phone to see whether this receipt is genuine.",
        "verify_online": "Verify this receipt online",
        "verify_at": "Or open this address in a browser:",
        "advanced": "For verifiers: the electronic signature and checking offline",
        "json": "Signed receipt file (JSON)",
        "public_key": "Signing public key (PEM)",
        "attached": "The signed receipt file RECEIPT.json is attached to this PDF, to check offline.",
        "not_fiscal": "This receipt confirms a payment; it is not a fiscal bill or a tax invoice.",
    },
}
_PROVIDERS: Mapping[str, Mapping[str, str]] = {
    "zh": {"alipay": "支付宝", "wechatpay": "微信支付", "sandbox": "沙箱（演示）"},  # noqa: RUF001
    "en": {"alipay": "Alipay", "wechatpay": "WeChat Pay", "sandbox": "Sandbox (demo)"},
}


def _language(language: str) -> str:
    if language not in LANGUAGES:
        raise InvalidInput(
            "language must be one of %(languages)s", params={"languages": ", ".join(LANGUAGES)}
        )
    return language


def _money(amount_fen: int, symbol: str) -> str:
    return f"{symbol}{amount_fen // 100:,}.{amount_fen % 100:02d}"


def _view(
    receipt: Receipt,
    language: str,
    public_base_url: str,
    payer: str | None = None,
    zone: tzinfo = DEFAULT_ZONE,
) -> dict[str, Any]:
    """What the HTML and PDF show, drawn from the signed body (and the payer's masked name,
    which the page looks up from the bills); times in ``zone``, with its offset."""
    t = _LABELS[language]
    body = receipt_body(receipt)
    biller = body["biller"]
    symbol = t["currency_symbol"] if body["currency"] == "CNY" else f"{body['currency']} "
    return {
        "lang": language,
        "html_lang": "zh-CN" if language == "zh" else "en",
        "t": t,
        "number": receipt.number,
        "biller_name": biller["name_zh"] if language == "zh" else biller["name_en"],
        "trade_no": body["trade_no"],
        "provider": _PROVIDERS[language].get(body["provider"], body["provider"]),
        "provider_trade_no": body["provider_trade_no"] or "—",
        "paid_at": local_time(body["paid_at"], zone, seconds=True),
        "issued_at": local_time(body["issued_at"], zone, seconds=True),
        "bills": [
            {
                "bill_number": line["bill_number"],
                "account": line["account"],
                # A fine is known by when it was recorded, not by a billing period.
                "period": local_time(line["details"]["offence_time"], zone)
                if line.get("details")
                else line["period"],
                "fine": line.get("details"),
                "amount": _money(line["amount_fen"], symbol),
            }
            for line in body["bills"]
        ],
        "fines": any(line.get("details") for line in body["bills"]),
        "total": _money(body["amount_fen"], symbol),
        "algorithm": receipt.algorithm,
        "key_id": receipt.key_id,
        "signature": receipt.signature,
        "verify_url": receipt_verify_url(receipt, public_base_url=public_base_url),
        "verify_page": f"{public_base_url.rstrip('/')}/pay/receipts/{receipt.number}/verify",
        "payer": payer or "—",
    }


@cache
def _templates() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_receipt_html(
    receipt: Receipt,
    language: str,
    *,
    public_base_url: str,
    payer: str | None = None,
    tzinfo: tzinfo = DEFAULT_ZONE,
) -> str:
    """The printable receipt page (A5) in ``zh`` or ``en``, with its QR code; ``payer``: the
    payer's masked name; times in ``tzinfo`` (the installation's zone).

    Serve it with ``receipt_content_security_policy()``: the site-wide policy forbids its
    inline style.
    """
    view = _view(receipt, _language(language), public_base_url, payer, tzinfo)
    # segno's SVG is generated markup, not user text: it goes in as is.
    qr_svg = Markup(receipt_qr_svg(receipt, public_base_url=public_base_url))  # noqa: S704
    return _templates().get_template("pay/receipt.html").render(**view, qr_svg=qr_svg)


@cache
def receipt_content_security_policy() -> str:
    """The CSP of the receipt page: no script, nothing fetched, only its own inline style."""
    template = (TEMPLATES_DIR / "pay" / "receipt.html").read_text(encoding="utf-8")
    style = re.search(r"^<style>(.*?)</style>", template, re.DOTALL | re.MULTILINE)
    assert style is not None, "pay/receipt.html has a <style> block"
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


#: CJK fonts looked for, in order: (file, face index in a collection). Index 2 of Noto's
#: collections is Simplified Chinese.
CJK_FONTS: tuple[tuple[Path, int], ...] = (
    (Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"), 2),
    (Path("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc"), 2),
    (Path("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc"), 2),
    (Path("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"), 2),
    (Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"), 0),
    (Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"), 0),
    (Path("/usr/share/fonts/wqy-microhei/wqy-microhei.ttc"), 0),
    (Path("/usr/share/fonts/truetype/arphic/uming.ttc"), 0),
)
_PDF_NO_CJK_NOTE = (
    "No Chinese font is installed on this server (e.g. Debian's fonts-noto-cjk), "
    "so this PDF is in English only."
)


class _Pdf:
    """An A5 page being drawn, in a CJK font or (without one) in Latin-1 Helvetica."""

    def __init__(self, font: tuple[Path, int] | None) -> None:
        # Dimensions rather than "A5": fpdf2 warns about the named format since 2.8.5.
        self.pdf = FPDF(orientation="portrait", unit="mm", format=(148, 210))
        self.pdf.set_margins(12, 12, 12)
        self.pdf.set_auto_page_break(auto=True, margin=12)
        self.pdf.set_creator("civicloud")
        self.cjk = font is not None
        self.family = "Helvetica"
        if font is not None:
            self.pdf.add_font("cjk", "", str(font[0]), collection_font_number=font[1])
            self.family = "cjk"
        self.pdf.add_page()
        self.width = self.pdf.epw

    def text(self, value: str) -> str:
        """``value`` as the font can draw it (the core fonts cover Latin-1 only: else ``?``)."""
        return value if self.cjk else value.encode("latin-1", "replace").decode("latin-1")

    def font(self, size: float, *, mono: bool = False) -> None:
        """Switch to ``size`` points, of the text font or (signatures, URLs) Courier."""
        self.pdf.set_font("Courier" if mono else self.family, size=size)

    def line(self, height: float, value: str, *, width: float | None = None) -> None:
        """A wrapped paragraph starting at the current position."""
        self.pdf.multi_cell(
            width or self.width, height, self.text(value), new_x="LMARGIN", new_y="NEXT"
        )

    def facts(self, view: Mapping[str, Any]) -> None:
        """The receipt's label: value lines."""
        t = view["t"]
        self.font(9)
        for label, key in (
            ("number", "number"),
            ("biller", "biller_name"),
            ("payer", "payer"),
            ("issuer", "issuer_name"),
            ("trade_no", "trade_no"),
            ("provider", "provider"),
            ("provider_trade_no", "provider_trade_no"),
            ("paid_at", "paid_at"),
            ("issued_at", "issued_at"),
        ):
            self.pdf.cell(34, 6, self.text(t[label]))
            self.line(6, view[key] if key != "issuer_name" else t[key], width=self.width - 34)

    def bills(self, view: Mapping[str, Any]) -> None:
        """The table of bills and the total."""
        t = view["t"]
        keys = ("bill_number", "account", "period", "amount")
        widths = self._column_widths(view, keys)
        self.pdf.set_fill_color(235, 235, 235)
        for key, width in zip(keys, widths, strict=True):
            heading = "offence_time" if key == "period" and view["fines"] else key
            align = "R" if key == "amount" else "L"  # headings align with their column
            self.pdf.cell(width, 6, self.text(t[heading]), border="B", fill=True, align=align)
        self.pdf.ln()
        for bill in view["bills"]:
            for key, width in zip(keys, widths, strict=True):
                align = "R" if key == "amount" else "L"
                self.pdf.cell(width, 6, self.text(bill[key]), align=align)
            self.pdf.ln()
            if bill["fine"]:  # a fine's decision, under its row
                fine = bill["fine"]
                self.font(8)
                for label in ("offence", "place", "decision_number"):
                    self.line(4.5, f"{t[label]}{t['colon']}{fine[label]}")
                self.font(9)
        self.font(11)
        self.pdf.cell(sum(widths[:-1]), 8, self.text(t["total"]), border="T")
        self.pdf.cell(widths[-1], 8, self.text(view["total"]), border="T", align="R")
        self.pdf.ln(11)

    def _column_widths(self, view: Mapping[str, Any], keys: Sequence[str]) -> list[float]:
        """Widths that fit each column's widest cell (heading included) with a gap, the bill
        number taking what is left: columns never run into each other."""
        t = view["t"]
        gap = 3.0
        needed = []
        for key in keys:
            heading = "offence_time" if key == "period" and view["fines"] else key
            cells = [t[heading], *(bill[key] for bill in view["bills"])]
            widest = max(self.pdf.get_string_width(self.text(c)) for c in cells)
            if key == "amount":  # the total is set in 11 points under this column
                total = self.pdf.get_string_width(self.text(view["total"]))
                widest = max(widest, total * 11 / self.pdf.font_size_pt)
            needed.append(widest + gap)
        rest = self.width - sum(needed[1:])
        if rest < needed[0] and self.pdf.font_size_pt > 7.5:
            self.font(7.5)  # too wide for the page: a smaller font for the table
            return self._column_widths(view, keys)
        return [rest, *needed[1:]]

    def verification(self, view: Mapping[str, Any]) -> None:
        """The QR code, how to verify, and the attached signed file: no raw signature."""
        t = view["t"]
        qr_png = io.BytesIO()
        _qr(view["verify_url"]).save(qr_png, kind="png", scale=6, border=2)
        qr_png.seek(0)
        left, top = self.pdf.l_margin, self.pdf.get_y()
        self.pdf.image(qr_png, x=left, y=top, w=34, h=34)
        self.pdf.set_xy(left + 38, top)
        self.font(8)
        self.font(10)
        self.line(5, t["verify_title"], width=self.width - 38)
        self.pdf.set_x(left + 38)
        self.font(8)
        self.line(4, t["verify_scan"], width=self.width - 38)
        self.pdf.set_x(left + 38)
        self.line(4, t["verify_at"], width=self.width - 38)
        self.pdf.set_x(left + 38)
        self.font(7, mono=True)
        self.line(3.5, view["verify_page"], width=self.width - 38)
        self.pdf.set_y(max(self.pdf.get_y(), top + 36))
        self.font(7)
        self.pdf.set_text_color(90, 90, 90)
        self.line(4, f"{t['attached']} {t['key']}{t['colon']}{view['algorithm']} {view['key_id']}")
        self.line(4, t["not_fiscal"])
        self.pdf.set_text_color(0, 0, 0)


def render_receipt_pdf(
    receipt: Receipt,
    language: str,
    *,
    public_base_url: str,
    fonts: Sequence[tuple[Path, int]] = CJK_FONTS,
    payer: str | None = None,
    tzinfo: tzinfo = DEFAULT_ZONE,
) -> bytes:
    """The receipt as an A5 PDF with its QR code and its ``RECEIPT.json`` attached; times in
    ``tzinfo`` (the installation's zone).

    Chinese needs a CJK font from ``fonts``; without one the PDF is English, and says so.
    """
    language = _language(language)
    font = next(((path, index) for path, index in fonts if path.is_file()), None)
    view = _view(receipt, language if font else "en", public_base_url, payer, tzinfo)
    page = _Pdf(font)
    page.pdf.set_title(f"{receipt.number} {view['t']['title']}")
    page.pdf.set_subject(receipt.number)
    page.font(16)
    page.pdf.cell(page.width, 9, page.text(view["t"]["title"]), align="C")
    page.pdf.ln(11)
    if font is None:
        page.font(9)
        page.pdf.set_text_color(160, 0, 0)
        page.line(4.5, _PDF_NO_CJK_NOTE)
        page.pdf.set_text_color(0, 0, 0)
        page.pdf.ln(2)
    page.facts(view)
    page.pdf.ln(2)
    page.bills(view)
    page.verification(view)
    # The signed document travels inside the PDF: whoever holds the file can verify it offline.
    page.pdf.embed_file(
        basename="RECEIPT.json",
        bytes=json.dumps(receipt_document(receipt), ensure_ascii=False, indent=1).encode(),
        mime_type="application/json",
        desc="Signed receipt: python -m civicloud.pay.receipts verify RECEIPT.json KEY.pem",
        compress=False,
    )
    return bytes(page.pdf.output())


# --- offline verifier ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m civicloud.pay.receipts verify RECEIPT.json PUBLIC_KEY.pem``: 0 valid, 1 not."""
    parser = argparse.ArgumentParser(
        prog="python -m civicloud.pay.receipts",
        description="Verify a civicloud receipt offline against the installation's public key.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="check a RECEIPT.json against a PEM public key")
    verify.add_argument("receipt", type=Path, help="the receipt document (RECEIPT.json)")
    verify.add_argument("public_key", type=Path, help="the installation's public key (PEM)")
    arguments = parser.parse_args(argv)
    try:
        document = json.loads(arguments.receipt.read_text(encoding="utf-8"))
        public_key_pem = arguments.public_key.read_bytes()
        body, signature = document["body"], document["signature"]
        if not isinstance(body, str):
            body = canonical_json(body)  # a body given as an object is canonicalised first
        valid = verify_receipt(body=body, signature=str(signature), public_key_pem=public_key_pem)
    except (OSError, ValueError, KeyError, TypeError, InvalidInput) as exc:
        sys.stderr.write(f"error: cannot check the receipt: {exc}\n")
        return 2
    number = document.get("number", "?")
    if not valid:
        sys.stdout.write(f"invalid: receipt {number} does not match its signature\n")
        return 1
    key_id = public_key_id(public_key_pem)
    sys.stdout.write(f"valid: receipt {number}, signed by key {key_id}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
