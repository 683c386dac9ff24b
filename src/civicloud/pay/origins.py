"""A biller's return origins: where a payment of its bills may send the citizen back to.

A biller whose own site or app starts payments registers the origins it is served at
(``https://pay.water.example.cn``, ``https://app.example.cn:8443``), and a payment of its
bills may give a ``return_url`` at one of them (``payments.check_return_url``). An origin is a
scheme, a host and perhaps a port, nothing else: no path, query or fragment, no user name or
password (``https://pay.example.cn@evil.example`` reads as a host of ``evil.example``), no
wildcard. ``https`` is required, except for this machine's loopback names (``localhost``,
``127.0.0.1``, ``::1``), where a developer's ``http://localhost:3000`` is allowed. Origins are
stored normalised (lower case, without the scheme's default port) and matched exactly.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from civicloud.pay.errors import InvalidReturnOrigin

__all__ = ["MAX_RETURN_ORIGINS", "check_return_origins", "origin_of", "parse_return_origin"]

#: How many return origins one biller may register.
MAX_RETURN_ORIGINS = 10
_MAX_LENGTH = 200
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MALFORMED = (
    "%(origin)s is not a return origin: write it as https://host or https://host:port, with no "
    "path, user name or wildcard"
)
_NOT_HTTPS = (
    "%(origin)s must use https: plain http is accepted only for this machine (localhost, "
    "127.0.0.1, ::1)"
)
_TOO_MANY = "a biller has at most %(count)s return origins"


def _shown(text: str) -> str:
    # The refused value as the message quotes it: short, and without what could break a line.
    printable = "".join(c if c.isprintable() else "?" for c in text)
    return printable if len(printable) <= 80 else printable[:79] + "…"


def _host(raw: str) -> str | None:
    """The host of an origin, lower case (an IPv6 address in brackets); ``None`` if it is not
    a DNS name or an IP address."""
    if raw.startswith("[") and raw.endswith("]"):
        try:
            address = ipaddress.IPv6Address(raw[1:-1])
        except ValueError:
            return None
        return f"[{address.compressed}]"
    host = raw.lower()
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    if labels[-1].isdigit():  # 1.2.3 or 999.1.1.1: not a name, and not an address either
        return None
    return host


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_return_origin(text: str) -> str:
    """``text`` as a normalised origin (``https://host[:port]``); ``InvalidReturnOrigin`` when
    it is anything else, or plain http to another machine than this one."""
    refused = InvalidReturnOrigin(_MALFORMED, params={"origin": _shown(text)})
    if (
        len(text) > _MAX_LENGTH
        or not text.isascii()
        or any(c.isspace() or not c.isprintable() for c in text)
        or any(c in text for c in "\\*@%")
    ):
        raise refused
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # a bracketed host that is not an IPv6 address
        raise refused from exc
    scheme = parts.scheme.lower()
    if (
        scheme not in _DEFAULT_PORTS
        or not text.lower().startswith(f"{scheme}://")
        or parts.path
        or parts.query
        or parts.fragment
        or "?" in text
        or "#" in text
        or not parts.netloc
    ):
        raise refused
    netloc = parts.netloc
    found = re.fullmatch(r"(\[[^\]]*\]|[^:\[\]]+)(?::(\d{1,5}))?", netloc)
    if found is None:
        raise refused
    host = _host(found.group(1))
    port = int(found.group(2)) if found.group(2) else None
    if host is None or (port is not None and not 1 <= port <= 65535):
        raise refused
    if scheme == "http" and not _loopback(host):
        raise InvalidReturnOrigin(_NOT_HTTPS, params={"origin": _shown(text)})
    shown_port = f":{port}" if port is not None and port != _DEFAULT_PORTS[scheme] else ""
    return f"{scheme}://{host}{shown_port}"


def check_return_origins(values: Iterable[str]) -> list[str]:
    """``values`` normalised, in order, each once; ``InvalidReturnOrigin`` for the first that is
    not an origin, or when there are more than :data:`MAX_RETURN_ORIGINS`."""
    origins = list(dict.fromkeys(parse_return_origin(value) for value in values))
    if len(origins) > MAX_RETURN_ORIGINS:
        raise InvalidReturnOrigin(_TOO_MANY, params={"count": MAX_RETURN_ORIGINS})
    return origins


def origin_of(url: str) -> str | None:
    """The normalised origin of an absolute ``url`` (its path and query dropped); ``None`` when
    its scheme, user name, host or port would not make an origin one could register."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    try:
        return parse_return_origin(f"{parts.scheme}://{parts.netloc}")
    except InvalidReturnOrigin:
        return None
