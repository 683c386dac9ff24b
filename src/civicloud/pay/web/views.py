"""What Pay's pages share: words for codes, money and times as people read them, and rendering.

Every label is a msgid marked with ``N_`` and translated when the page renders (``tr()``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import partial
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse

from civicloud.core.dates import DateOutOfRange, parse_date
from civicloud.core.i18n import N_
from civicloud.core.money import InvalidAmount
from civicloud.core.money import parse_yuan as money_parse_yuan
from civicloud.core.zones import local_time
from civicloud.pay.payments import PayContext
from civicloud.pay.schemas import MAX_AMOUNT_FEN
from civicloud.web.deps import services_of
from civicloud.web.pages.rendering import page_language, render

#: China Standard Time: the calendar of providers' statements, and so of settlement's business
#: days. A business rule, not a display: people read times in the installation's zone
#: (:func:`display_zone`).
BEIJING = timezone(timedelta(hours=8), "UTC+8")
#: The order providers are offered in; the sandbox only where it is the one configured.
PROVIDER_ORDER = ("alipay", "wechatpay", "sandbox")

LABELS: Mapping[str, Mapping[str, str]] = {
    "category": {
        "water": N_("Water"),
        "power": N_("Electricity"),
        "gas": N_("Gas"),
        "fine": N_("Traffic fines"),
        "fee": N_("Administrative fees"),
    },
    "account": {
        "water": N_("Customer account number"),
        "power": N_("Customer account number"),
        "gas": N_("Customer account number"),
        "fine": N_("Licence plate number"),
        "fee": N_("Payment reference number"),
    },
    "payment": {
        "created": N_("Created"),
        "pending": N_("Waiting for payment"),
        "succeeded": N_("Paid"),
        "failed": N_("Failed"),
        "expired": N_("Expired"),
        "superseded": N_("Replaced by a newer payment"),
    },
    "bill": {"open": N_("Unpaid"), "paid": N_("Paid"), "cancelled": N_("Cancelled")},
    "refund": {
        "pending": N_("Refund pending"),
        "succeeded": N_("Refunded"),
        "failed": N_("Refund failed"),
    },
    "provider": {
        "sandbox": N_("Sandbox (demo, no real money)"),
        "alipay": N_("Alipay"),
        "wechatpay": N_("WeChat Pay"),
    },
    "classification": {
        "matched": N_("Matched"),
        "missing_ours": N_("Missing on our side"),
        "missing_provider": N_("Missing at the provider"),
        "amount_mismatch": N_("Amount mismatch"),
        "duplicate": N_("Duplicate"),
    },
    "item_kind": {"payment": N_("Payment"), "refund": N_("Refund")},
    "account_kind": {
        "asset": N_("Asset"),
        "liability": N_("Liability"),
        "expense": N_("Expense"),
        "suspense": N_("Suspense"),
    },
    "entry": {
        "payment": N_("Payment"),
        "late_payment": N_("Late payment"),
        "refund": N_("Refund"),
        "late_payment_refund": N_("Refund of a late payment"),
        "settlement": N_("Settlement"),
        "adjustment": N_("Adjustment"),
    },
    "verification": {
        "valid": N_("The receipt is genuine"),
        "tampered": N_("The receipt does not match its signature"),
        "unknown": N_("No receipt has this number"),
    },
}

#: Which of the shell's badge colours a status wears.
_BADGES: Mapping[str, str] = {
    "succeeded": "success",
    "paid": "success",
    "matched": "success",
    "valid": "success",
    "pending": "soon",
    "created": "soon",
    "open": "soon",
    "failed": "denied",
    "cancelled": "denied",
    "tampered": "denied",
    "missing_ours": "denied",
    "missing_provider": "denied",
    "amount_mismatch": "failed",
    "duplicate": "failed",
    "expired": "failed",
    "superseded": "failed",
    "unknown": "failed",
}

#: Messages shown after a successful form post (the redirect carries the key as ``?done=``).
DONE_MESSAGES: Mapping[str, str] = {
    "bills_imported": N_("The bills in the file were published."),
    "refund_requested": N_("The refund was requested. Its status is shown below."),
    "settled": N_("The day was settled. Download its batch file for the bank below."),
    "statement_imported": N_("The statement was imported and every line classified."),
    "item_resolved": N_("The exception was resolved with a posted adjustment."),
}


def label(kind: str, code: str) -> str:
    """The msgid naming ``code`` of ``kind`` (the code itself when there is none)."""
    return LABELS.get(kind, {}).get(code, code)


def badge(code: str) -> str:
    """The badge class suffix for a status code."""
    return _BADGES.get(code, "neutral")


def money(amount_fen: int, language: str) -> str:
    """Integer fen as yuan for people: ``¥1,234.56`` in Chinese, ``CNY 1,234.56`` in English."""
    sign = "-" if amount_fen < 0 else ""
    whole, cents = divmod(abs(amount_fen), 100)
    symbol = "¥" if language == "zh" else "CNY "
    return f"{sign}{symbol}{whole:,}.{cents:02d}"


def yuan_text(amount_fen: int) -> str:
    """Integer fen as a plain yuan figure for a form field (``1234.56``)."""
    whole, cents = divmod(amount_fen, 100)
    return f"{whole}.{cents:02d}"


def parse_yuan(text: str) -> int | None:
    """A form's yuan amount as positive integer fen, exactly; ``None`` when it is not one (see
    ``core.money.parse_yuan``, which says why)."""
    try:
        return money_parse_yuan(text, max_fen=MAX_AMOUNT_FEN)
    except InvalidAmount:
        return None


def display_zone(request: Request) -> tzinfo:
    """The installation's zone (``web.time_zone``), which every time shown to people is in."""
    return ZoneInfo(services_of(request).settings.web.time_zone)


def beijing_now() -> datetime:
    """Now, in China Standard Time: for the business day settlement counts in, not for display."""
    return datetime.now(BEIJING)


def new_form_key() -> str:
    """A fresh idempotency key, put in a form when it is rendered."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class AccountFormat:
    """What an account number looks like, in words: a msgid and its values."""

    message: str
    values: Mapping[str, Any]
    numeric: bool


_DIGIT = r"(?:\\d|\[0-9\])"
_LITERAL = r"([^\\\[\](){}.*+?|^$]+)"
_FORMATS: tuple[tuple[re.Pattern[str], str, bool], ...] = (
    (re.compile(rf"{_DIGIT}\{{(?P<count>\d+)\}}"), N_("%(count)s digits"), True),
    (
        re.compile(rf"{_DIGIT}\{{(?P<low>\d+),(?P<high>\d+)\}}"),
        N_("%(low)s to %(high)s digits"),
        True,
    ),
    (
        re.compile(rf"{_LITERAL}{_DIGIT}\{{(?P<count>\d+)\}}"),
        N_("%(prefix)s followed by %(count)s digits"),
        False,
    ),
    (
        re.compile(rf"{_LITERAL}\[A-Z0-9\]\{{(?P<count>\d+)\}}"),
        N_("%(prefix)s followed by %(count)s capital letters or digits"),
        False,
    ),
)


def account_format(pattern: str) -> AccountFormat | None:
    """The biller's account-number pattern in words, for the common shapes; else ``None``."""
    for regex, message, numeric in _FORMATS:
        found = regex.fullmatch(pattern)
        if found:
            values: dict[str, Any] = found.groupdict()
            if found.re.groups > len(values):
                values["prefix"] = found.group(1)
            return AccountFormat(message, values, numeric)
    return None


def pay_context(request: Request) -> PayContext:
    """Pay's providers, signer and settings, as the application built them."""
    return services_of(request).context("pay", PayContext)


def offered_providers(context: PayContext) -> list[str]:
    """The providers a citizen may choose here, in the order they are offered."""
    return [name for name in PROVIDER_ORDER if name in context.providers]


def page(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render one of Pay's templates with the helpers every Pay page uses."""
    language = page_language(request)
    values: dict[str, Any] = {
        "money": partial(money, language=language),
        "label": label,
        "badge": badge,
        # A moment (or an ISO 8601 string, as a signed receipt holds times) in the
        # installation's zone with its offset: "2026-11-03 08:42 UTC+8".
        "local_time": partial(local_time, zone=display_zone(request)),
        "done": DONE_MESSAGES.get(request.query_params.get("done", "")),
    }
    values.update(context or {})
    return render(request, name, values, status_code=status_code)


# --- the installation's public address, as against how the browser reached it ----------------

#: Why a payment that did not go through ended, in words for the citizen.
ENDED_REASONS: Mapping[str, str] = {
    "failed": N_(
        "The payment provider reported that the payment did not go through: it was declined, "
        "cancelled at the checkout, or closed."
    ),
    "expired": N_(
        "The payment was not completed within %(minutes)s minutes of being started, so it was "
        "closed."
    ),
    "superseded": N_(
        "You started a new payment for the same bills in this browser, so this one was closed."
    ),
}


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower case, without the scheme's default port."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


def request_origin(request: Request) -> str:
    """The origin the browser reached this page at (behind a proxy: as it forwarded it)."""
    return origin_of(str(request.base_url))


@dataclass(frozen=True)
class AddressMismatch:
    """The installation's public address differs from the one this page was reached at."""

    public: str
    reached: str


def address_mismatch(request: Request) -> AddressMismatch | None:
    """Whether the browser reached the site at another address than ``pay.public_base_url``:
    providers then send citizens back, and receipts' QR codes lead, to the configured one."""
    public = origin_of(pay_context(request).settings.public_base_url)
    reached = request_origin(request)
    return None if public == reached else AddressMismatch(public=public, reached=reached)


def local_path(url: str, request: Request) -> str:
    """``url`` as a path when it leads to this installation (its public address or the one the
    browser used), so that a redirect stays on the browser's origin; else ``url`` unchanged."""
    origin = origin_of(url)
    own = {origin_of(pay_context(request).settings.public_base_url), request_origin(request)}
    if origin in own:
        parts = urlsplit(url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return url


def checkout_origins(context: PayContext) -> list[str]:
    """The origins a pay form may be sent on to: the providers' checkouts outside this site
    (Alipay's page checkout; WeChat Pay's is a QR code shown here, the sandbox's is here)."""
    if "alipay" in context.providers:
        return [origin_of(context.settings.alipay.gateway)]
    return []


# --- what the console's forms share -------------------------------------------------------------


def form_state(data: dict[str, str] | None = None) -> dict[str, Any]:
    """A console form as a template fills it: its values, no errors yet."""
    return {"data": data or {}, "errors": {}, "summary": None}


def form_date(text: str) -> date | None:
    """A form's day, or ``None`` when it is not one: one range for every date taken
    (``core.dates``), so that a year 1 or 9999 day is refused as malformed."""
    try:
        return parse_date(text)
    except DateOutOfRange:
        return None


def form_uuid(text: str) -> uuid.UUID | None:
    """A form's id, or ``None`` when it is not one."""
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None
