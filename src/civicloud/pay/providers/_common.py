"""What the provider adapters share: money as yuan strings, Beijing time, RSA keys, HTTP.

Nothing here knows a provider's wire format; each adapter module owns its own.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from civicloud.core.dates import check_datetime
from civicloud.pay.errors import ProviderError, ProviderMisconfigured

#: China Standard Time, the providers' clock for bills, notifications and request timestamps.
#: A fixed offset: China has had no daylight saving time since 1991.
BEIJING = timezone(timedelta(hours=8), "CST")

#: Largest body read from a gateway answer; anything larger is not a gateway answer.
MAX_RESPONSE_BYTES = 1_048_576

#: The smallest RSA modulus accepted for a provider key.
MIN_RSA_BITS = 2048

Clock = Callable[[], datetime]


class UrlOpen(Protocol):
    """``urllib.request.urlopen`` or an ``OpenerDirector.open``: how adapters reach a gateway."""

    def __call__(self, request: urllib.request.Request, /, *, timeout: float) -> Any:
        """Send ``request``; return a response with ``status``, ``headers`` and ``read()``."""
        ...


def utc_now() -> datetime:
    """The current time, timezone-aware (the default clock of every adapter)."""
    return datetime.now(UTC)


# --- money ---------------------------------------------------------------------------------

_YUAN = re.compile(r"(-?)(0|[1-9][0-9]{0,13})(?:\.([0-9]{1,2}))?")


def yuan_to_fen(text: str, *, signed: bool = False) -> int:
    """Parse a yuan amount written like ``12.34`` exactly into fen; ``ValueError`` if malformed.

    No floats: the digits go through ``Decimal``. Exponents, spaces, ``+``, more than two
    decimals and (unless ``signed``) a minus sign are refused.
    """
    match = _YUAN.fullmatch(text)
    if match is None or (match.group(1) and not signed):
        raise ValueError(f"not a yuan amount: {text!r}")
    fen = Decimal(text).scaleb(2)
    assert fen == fen.to_integral_value()  # at most two decimals, checked by the pattern
    return int(fen)


def fen_to_yuan(amount_fen: int) -> str:
    """Write a positive amount of fen as yuan with two decimals (``1234`` → ``12.34``)."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
        raise ValueError(f"amount must be a positive number of fen, not {amount_fen!r}")
    return f"{amount_fen // 100}.{amount_fen % 100:02d}"


# --- time ----------------------------------------------------------------------------------


def beijing_time(text: str, fmt: str = "%Y-%m-%d %H:%M:%S") -> datetime:
    """Parse a provider's local timestamp (``2026-11-26 10:00:05``) as Beijing time.

    ``ValueError`` (as for text that is no time) for a date outside ``core.dates``' range: year
    1 would overflow when turned into UTC, and no provider's trade is that old or new.
    """
    return check_datetime(datetime.strptime(text, fmt).replace(tzinfo=BEIJING))


# --- keys ----------------------------------------------------------------------------------

_PEM_BEGIN = b"-----BEGIN"


# A key's ``what`` is a msgid ("alipay: application private key"), translated with the error.


def _read_key_file(path: Path | None, what: str) -> bytes:
    if path is None:
        raise ProviderMisconfigured(
            "%(what_label)s: no key file configured", params={"what_label": what}
        )
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ProviderMisconfigured(
            "%(what_label)s: cannot read %(path)s: %(reason)s",
            params={"what_label": what, "path": str(path), "reason": error.strerror or str(error)},
        ) from error
    return data.strip()


def _bare_base64_as_pem(data: bytes, label: bytes) -> bytes:
    # Alipay's key tool hands out keys as one bare base64 line; accept that as well as PEM.
    body = b"".join(data.split())
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        b"-----BEGIN "
        + label
        + b"-----\n"
        + b"\n".join(lines)
        + b"\n-----END "
        + label
        + b"-----\n"
    )


def _checked_rsa_private(key: object, what: str, path: Path | None) -> rsa.RSAPrivateKey:
    params = {"what_label": what, "path": str(path), "bits": MIN_RSA_BITS}
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ProviderMisconfigured(
            "%(what_label)s: %(path)s holds no RSA private key", params=params
        )
    if key.key_size < MIN_RSA_BITS:
        raise ProviderMisconfigured(
            "%(what_label)s: the RSA key in %(path)s is shorter than %(bits)s bits", params=params
        )
    return key


def _checked_rsa_public(key: object, what: str, path: Path | None) -> rsa.RSAPublicKey:
    params = {"what_label": what, "path": str(path), "bits": MIN_RSA_BITS}
    if not isinstance(key, rsa.RSAPublicKey):
        raise ProviderMisconfigured(
            "%(what_label)s: %(path)s holds no RSA public key", params=params
        )
    if key.key_size < MIN_RSA_BITS:
        raise ProviderMisconfigured(
            "%(what_label)s: the RSA key in %(path)s is shorter than %(bits)s bits", params=params
        )
    return key


def load_rsa_private_key(path: Path | None, what: str) -> rsa.RSAPrivateKey:
    """Load an RSA private key: PEM (PKCS#1 or PKCS#8) or Alipay's bare base64 PKCS#8/PKCS#1."""
    data = _read_key_file(path, what)
    candidates = (
        [data]
        if data.startswith(_PEM_BEGIN)
        else [
            _bare_base64_as_pem(data, b"PRIVATE KEY"),
            _bare_base64_as_pem(data, b"RSA PRIVATE KEY"),
        ]
    )
    for candidate in candidates:
        try:
            key = serialization.load_pem_private_key(candidate, password=None)
        except (ValueError, TypeError):
            continue
        return _checked_rsa_private(key, what, path)
    raise ProviderMisconfigured(
        "%(what_label)s: %(path)s holds no readable unencrypted private key",
        params={"what_label": what, "path": str(path)},
    )


def rsa_public_key_from_pem(data: bytes, what: str, path: Path | None = None) -> rsa.RSAPublicKey:
    """An RSA public key from PEM bytes (read from ``path``): a public key, a PKCS#1 RSA key or
    an X.509 certificate."""
    data = data.strip()
    if not data.startswith(_PEM_BEGIN):
        data = _bare_base64_as_pem(data, b"PUBLIC KEY")
    if b"CERTIFICATE" in data.split(b"\n", 1)[0]:
        try:
            certificate = x509.load_pem_x509_certificate(data)
        except ValueError as error:
            raise ProviderMisconfigured(
                "%(what_label)s: the certificate in %(path)s cannot be read: %(reason)s",
                params={"what_label": what, "path": str(path), "reason": str(error)},
            ) from error
        return _checked_rsa_public(certificate.public_key(), what, path)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as error:
        raise ProviderMisconfigured(
            "%(what_label)s: the public key in %(path)s cannot be read: %(reason)s",
            params={"what_label": what, "path": str(path), "reason": str(error)},
        ) from error
    return _checked_rsa_public(key, what, path)


def load_rsa_public_key(path: Path | None, what: str) -> rsa.RSAPublicKey:
    """Load an RSA public key file (PEM public key, certificate, or bare base64)."""
    return rsa_public_key_from_pem(_read_key_file(path, what), what, path)


def rsa_sha256_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """SHA256withRSA (PKCS#1 v1.5) over ``message``, base64-encoded."""
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def rsa_sha256_verify(key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64) is a SHA256withRSA signature of ``message`` by ``key``."""
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
        key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, UnicodeEncodeError, ValueError):
        return False
    return True


# --- HTTP ----------------------------------------------------------------------------------


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names are case-insensitive: one lower-cased dict, whatever mapping came in."""
    return {name.lower(): value for name, value in headers.items()}


@dataclass(frozen=True)
class HttpReply:
    """A gateway's answer: status, lower-cased headers and the raw body."""

    status: int
    headers: dict[str, str]
    body: bytes


def _read_limited(response: Any, provider: str) -> bytes:
    data: bytes = response.read(MAX_RESPONSE_BYTES + 1)
    if len(data) > MAX_RESPONSE_BYTES:
        raise ProviderError(
            "%(provider)s: the gateway's answer is larger than %(count)s bytes",
            params={"provider": provider, "count": MAX_RESPONSE_BYTES},
        )
    return data


def http_exchange(
    urlopen: UrlOpen,
    *,
    provider: str,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout: float,
) -> HttpReply:
    """Send one request to a gateway and read its answer, whatever its status.

    Network failures and timeouts become ``ProviderError``; an HTTP error status is returned
    for the adapter to interpret (some, like WeChat's 404 ``ORDER_NOT_EXIST``, are answers).
    """
    if not url.startswith(("https://", "http://")):
        raise ProviderMisconfigured(
            "%(provider)s: the gateway must be an http(s) URL, not %(url)s",
            params={"provider": provider, "url": repr(url)},
        )
    request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)  # noqa: S310  (scheme checked above)
    try:
        with urlopen(request, timeout=timeout) as response:
            return HttpReply(
                status=int(response.status),
                headers=lower_headers(dict(response.headers.items())),
                body=_read_limited(response, provider),
            )
    except urllib.error.HTTPError as error:
        with error:
            return HttpReply(
                status=error.code,
                headers=lower_headers(dict(error.headers.items())),
                body=_read_limited(error, provider),
            )
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise ProviderError(
            "%(provider)s: the gateway %(url)s is unreachable: %(reason)s",
            params={"provider": provider, "url": url, "reason": str(error)},
        ) from error
