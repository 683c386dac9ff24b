"""S3's naming rules for buckets and keys, and the ids Store makes."""

from __future__ import annotations

import ipaddress
import re
import secrets

from civicloud.store.errors import InvalidArgument, InvalidBucketName, KeyTooLong

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: Longest key S3 takes, in UTF-8 bytes.
MAX_KEY_BYTES = 1024


def check_bucket_name(name: str) -> str:
    """``name`` if it follows S3's rules for general-purpose buckets, else ``InvalidBucketName``:
    3 to 63 characters of lower-case letters, digits, dots and hyphens, starting and ending
    with a letter or digit, no two dots side by side, not an IP address, none of the reserved
    prefixes and suffixes."""
    bad = (
        not _BUCKET.match(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or name.startswith(("xn--", "sthree-", "amzn-s3-demo-"))
        or name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"))
        or _is_ip(name)
    )
    if bad:
        raise InvalidBucketName("The specified bucket is not valid.", params={"bucket": name[:100]})
    return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def check_key(key: str) -> str:
    """``key`` if S3 takes it: 1 to 1024 UTF-8 bytes, no NUL (databases refuse it)."""
    if not key:
        raise InvalidArgument("The object key must not be empty.")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument("The object key is not valid UTF-8.") from None
    if size > MAX_KEY_BYTES:
        raise KeyTooLong("Your key is too long.", params={"size": size, "max_size": MAX_KEY_BYTES})
    if "\x00" in key:
        raise InvalidArgument("The object key must not contain NUL characters.")
    return key


def new_blob_id() -> str:
    """A blob's id: 32 random lower-case hex characters."""
    return secrets.token_hex(16)


def new_version_id() -> str:
    """A version id: 32 random lower-case hex characters, never ``null``. Letters and digits
    only, as S3's: an id starting with ``-`` would be read as an option by command-line
    clients (``aws s3api get-object --version-id -5IO…``)."""
    return secrets.token_hex(16)


def new_upload_id() -> str:
    """A multipart upload's id."""
    return secrets.token_hex(16)
