"""AWS Signature Version 2, as S3 still accepts it: in the ``Authorization: AWS KEY:SIG``
header and in presigned URLs (``AWSAccessKeyId``, ``Signature``, ``Expires``).

Store signs nothing with it; it verifies what clients with their default settings still send:
boto3's ``generate_presigned_url`` makes Version 2 URLs unless told otherwise, and older tools
sign every request with it. The string to sign is the method, Content-MD5, Content-Type, the date
(or the expiry), the ``x-amz-*`` headers and the resource with its sub-resources.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from civicloud.store.errors import (
    AccessDenied,
    AuthorizationMalformed,
    RequestExpired,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)

#: The query parameters that are part of the signed resource (as S3 and botocore list them).
SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "encryption",
        "inventory", "lifecycle", "location", "logging", "metrics", "notification",
        "object-lock", "partNumber", "policy", "replication", "requestPayment", "restore",
        "select", "select-type", "storageClass", "tagging", "torrent", "uploadId", "uploads",
        "versionId", "versioning", "versions", "website", "response-content-type",
        "response-content-language", "response-expires", "response-cache-control",
        "response-content-disposition", "response-content-encoding",
    }
)  # fmt: skip
MAX_SKEW = timedelta(minutes=15)
#: Longest validity of a presigned Version 2 URL Store accepts (as for Version 4: 7 days).
MAX_EXPIRES = timedelta(days=7)


@dataclass(frozen=True)
class V2Auth:
    """A Version 2 signature found on a request."""

    access_key: str
    signature: str
    presigned: bool
    #: The date line of the string to sign: the Date header, or the URL's expiry (epoch).
    date_line: str
    moment: datetime


def _params(raw_query: str) -> list[tuple[str, str]]:
    pairs = []
    for item in raw_query.split("&") if raw_query else []:
        name, eq, value = item.partition("=")
        pairs.append((unquote(name), unquote(value.replace("+", "%20")) if eq else ""))
    return pairs


def parse_v2(*, raw_query: str, headers: Mapping[str, str], now: datetime) -> V2Auth | None:
    """The request's Version 2 signature, if it carries one (``None`` otherwise); its time is
    checked: a header date within 15 minutes, a presigned URL before its expiry."""
    header = headers.get("authorization", "")
    if header.startswith("AWS ") and not header.startswith("AWS4-"):
        key, colon, signature = header[4:].strip().rpartition(":")
        if not colon or not key or not signature or len(header) > 8192:
            raise AuthorizationMalformed("The authorization header is malformed.")
        date_text = headers.get("x-amz-date") or headers.get("date") or ""
        try:
            moment = parsedate_to_datetime(date_text)
        except (TypeError, ValueError):
            raise AccessDenied(
                "AWS authentication requires a valid Date or x-amz-date header"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if abs(now - moment) > MAX_SKEW:
            raise RequestTimeTooSkewed(
                "The difference between the request time and the current time is too large."
            )
        date_line = "" if "x-amz-date" in headers else headers.get("date", "")
        return V2Auth(key, signature, False, date_line, moment)
    params = dict(_params(raw_query))
    if "Signature" in params and "AWSAccessKeyId" in params:
        expires = params.get("Expires", "")
        if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
            raise AccessDenied("Query-string authentication requires the Expires parameter.")
        moment = datetime.fromtimestamp(int(expires), UTC)
        if moment < now:
            raise RequestExpired("Request has expired", params={"expires": expires})
        if moment - now > MAX_EXPIRES:
            raise AccessDenied("The presigned URL's expiry is too far in the future.")
        return V2Auth(params["AWSAccessKeyId"], params["Signature"], True, expires, moment)
    return None


def string_to_sign(
    auth: V2Auth,
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    bucket: str | None,
    virtual_host: bool,
) -> str:
    """What a Version 2 signature signs."""
    amz = sorted(
        (name, ",".join(v.strip() for v in value.split(",")))
        for name, value in headers.items()
        if name.startswith("x-amz-")
    )
    amz_lines = "".join(f"{name}:{value}\n" for name, value in amz)
    resource = raw_path
    if virtual_host and bucket:
        resource = f"/{bucket}{raw_path}"
    subresources = sorted(
        (name, value) for name, value in _params(raw_query) if name in SUBRESOURCES
    )
    if subresources:
        resource += "?" + "&".join(f"{n}={v}" if v else n for n, v in subresources)
    return "\n".join(
        [
            method,
            headers.get("content-md5", ""),
            headers.get("content-type", ""),
            auth.date_line,
            amz_lines + resource,
        ]
    )


def verify_v2(auth: V2Auth, *, secret: str, text: str) -> None:
    """Raise ``SignatureDoesNotMatch`` unless ``auth.signature`` signs ``text``."""
    expected = base64.b64encode(
        hmac.new(secret.encode(), text.encode("utf-8"), hashlib.sha1).digest()
    ).decode()
    if not hmac.compare_digest(expected.encode(), auth.signature.encode("utf-8", "replace")):
        raise SignatureDoesNotMatch(
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
            params={"access_key_id": auth.access_key[:20], "string_to_sign": text[:2000]},
        )
