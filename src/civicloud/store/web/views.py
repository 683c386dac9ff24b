"""What Store's pages share: rendering with Store's helpers, sizes and times as people read
them, the words for settings, and the messages after a form."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse

from civicloud.core.i18n import N_
from civicloud.core.text import format_bytes
from civicloud.core.zones import local_time
from civicloud.store.context import StoreContext
from civicloud.web.deps import services_of
from civicloud.web.pages.rendering import render

PREFIX = "/console/store"
#: Unit steps of sizes as people read them (binary, as S3 consoles count).
GIB = 1 << 30

LABELS: Mapping[str, Mapping[str, str]] = {
    "versioning": {
        "off": N_("Off"),
        "enabled": N_("Enabled"),
        "suspended": N_("Suspended"),
    },
    "acl": {
        "private": N_("Private"),
        "public-read": N_("Anyone may read"),
        "public-read-write": N_("Anyone may read and write"),
        "authenticated-read": N_("Signed-in users may read"),
    },
}

DONE_MESSAGES: Mapping[str, str] = {
    "bucket_created": N_("The bucket was created."),
    "bucket_deleted": N_("The bucket was deleted."),
    "versioning_set": N_("The bucket's versioning was changed."),
    "acl_set": N_("The bucket's access was changed."),
    "quota_set": N_("The quota was saved."),
    "uploaded": N_("The files were uploaded."),
    "object_deleted": N_("The object was deleted."),
    "version_deleted": N_("The version was deleted for good."),
    "key_revoked": N_("The access key was revoked. It stops working at once."),
}


def size_text(value: int | None) -> str:
    """A size in bytes as people read it: ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    return format_bytes(value)


def label(kind: str, code: str) -> str:
    """The msgid naming ``code`` of ``kind`` (the code itself when there is none)."""
    return LABELS.get(kind, {}).get(code, code)


def store_context(request: Request) -> StoreContext:
    """Store's context, as the application built it."""
    return services_of(request).context("store", StoreContext)


def page(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render one of Store's templates with the helpers every Store page uses."""
    zone = ZoneInfo(services_of(request).settings.web.time_zone)
    values: dict[str, Any] = {
        "section": "store",
        "size_text": size_text,
        "label": label,
        "local_time": partial(local_time, zone=zone),
        "done": DONE_MESSAGES.get(request.query_params.get("done", "")),
        "store_prefix": PREFIX,
    }
    values.update(context or {})
    return render(request, name, values, status_code=status_code)


def form_state(data: dict[str, str] | None = None) -> dict[str, Any]:
    """A form as a template fills it: its values, no errors yet."""
    return {"data": data or {}, "errors": {}, "summary": None}


def parse_quota_gib(text: str) -> tuple[int | None, bool]:
    """A quota typed in GiB (decimals allowed; empty: none) as bytes, and whether it was valid."""
    text = text.strip()
    if not text:
        return None, True
    try:
        value = float(text)
    except ValueError:
        return None, False
    if not 0 <= value <= 1_000_000:  # NaN fails the comparison too
        return None, False
    return int(value * GIB), True


def parse_count(text: str) -> tuple[int | None, bool]:
    """A count typed as a whole number (empty: none), and whether it was valid."""
    text = text.strip()
    if not text:
        return None, True
    if not (text.isascii() and text.isdigit()) or len(text) > 15:
        return None, False
    return int(text), True
