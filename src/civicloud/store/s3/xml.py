"""S3's XML: the answers Store writes and the request bodies it reads.

Request bodies are small (capped before they are parsed) and refused outright when they declare
a DOCTYPE or an entity, so no document can expand in memory or reach outside itself.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from urllib.parse import quote
from xml.sax.saxutils import escape

from civicloud.store.errors import MalformedXML

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'
#: Largest XML body Store reads (DeleteObjects of 1,000 keys of 1,024 bytes fits).
MAX_XML_BYTES = 2 * 1024 * 1024


def iso(moment: datetime) -> str:
    """S3's timestamp in XML: ``2026-12-02T05:06:41.000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def _clean(text: str) -> str:
    # XML 1.0 cannot carry most control characters even escaped: write them as S3's own
    # URL-encoding would, rather than produce a document clients cannot parse.
    if any(ord(c) < 0x20 and c not in "\t\n\r" for c in text):
        return "".join(quote(c) if ord(c) < 0x20 and c not in "\t\n\r" else c for c in text)
    return text


class Doc:
    """A small, fast XML writer (answers are flat and often long: ten thousand ``Contents``)."""

    def __init__(self, root: str, *, namespace: bool = True) -> None:
        self._parts: list[str] = [HEADER, f'<{root} xmlns="{NS}">' if namespace else f"<{root}>"]
        self._open = [root]

    def leaf(self, name: str, value: object) -> Doc:
        if value is None:
            return self
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, datetime):
            text = iso(value)
        else:
            text = escape(_clean(str(value)))
        self._parts.append(f"<{name}>{text}</{name}>")
        return self

    def open(self, name: str) -> Doc:
        self._parts.append(f"<{name}>")
        self._open.append(name)
        return self

    def close(self) -> Doc:
        self._parts.append(f"</{self._open.pop()}>")
        return self

    def raw(self, text: str) -> Doc:
        self._parts.append(text)
        return self

    def bytes(self) -> bytes:
        while self._open:
            self.close()
        return "".join(self._parts).encode("utf-8")


def error_document(
    code: str,
    message: str,
    *,
    resource: str,
    request_id: str,
    extra: Iterable[tuple[str, str]] = (),
) -> bytes:
    """S3's error body."""
    doc = Doc("Error", namespace=False).leaf("Code", code).leaf("Message", message)
    for name, value in extra:
        doc.leaf(name, value)
    return doc.leaf("Resource", resource).leaf("RequestId", request_id).bytes()


def parse(body: bytes, root: str) -> ET.Element:
    """A request body's root element, which must be ``root`` (any namespace)."""
    if len(body) > MAX_XML_BYTES:
        raise MalformedXML("The XML you provided was not well-formed or did not validate.")
    head = body[:4096].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in body.upper():
        raise MalformedXML("The XML you provided was not well-formed or did not validate.")
    try:
        element = ET.fromstring(body)  # noqa: S314 - bounded, and no DOCTYPE or entity (above)
    except ET.ParseError:
        raise MalformedXML(
            "The XML you provided was not well-formed or did not validate against our "
            "published schema."
        ) from None
    if local(element.tag) != root:
        raise MalformedXML("The XML you provided was not well-formed or did not validate.")
    return element


def local(tag: str) -> str:
    """A tag's name without its namespace."""
    return tag.rsplit("}", 1)[-1]


def children(element: ET.Element, name: str) -> Iterator[ET.Element]:
    """The children called ``name`` (any namespace)."""
    return (child for child in element if local(child.tag) == name)


def text_of(element: ET.Element, name: str) -> str | None:
    """The text of the first child called ``name``, ``None`` when there is none."""
    for child in children(element, name):
        return child.text or ""
    return None


def encoded(value: str, url: bool) -> str:
    """A key or prefix as a listing writes it: URL-encoded when the client asked for it."""
    return quote(value, safe="/") if url else value


def owner(doc: Doc, owner_id: str, name: str) -> None:
    """An ``Owner`` element."""
    doc.open("Owner").leaf("ID", owner_id).leaf("DisplayName", name).close()


def part_numbers(values: Sequence[int]) -> str:
    """For messages."""
    return ", ".join(str(v) for v in values[:10])
