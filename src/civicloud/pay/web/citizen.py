"""Citizens' pages (public, no sign-in): choose a biller, find the bills, pay, get the receipt.

The flow: ``/pay`` → ``/pay/billers/{id}`` (account number) → ``/pay/billers/{id}/bills``
(choose, then POST: the payment is created with the form's idempotency key) → the provider's
checkout (the sandbox's is ``/pay/sandbox/checkout/{trade_no}``) → ``/pay/return`` →
``/pay/payments/{trade_no}`` → the receipt and its public verify page. Payers' names are shown
masked only, and the bills look-up is rate-limited per client like the API's.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Annotated

import segno
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from civicloud.core.db import utcnow
from civicloud.core.errors import InvalidInput
from civicloud.core.i18n import N_
from civicloud.core.patterns import compile_pattern
from civicloud.core.zones import local_time
from civicloud.pay import billing, payments, receipts
from civicloud.pay.errors import (
    BillerNotFound,
    BillNotFound,
    BillNotPayable,
    IdempotencyKeyReused,
    LookupThrottled,
    PaymentNotFound,
    PaymentsThrottled,
)
from civicloud.pay.models import Biller, Payment, PaymentStatus, Receipt
from civicloud.pay.payments import PayContext
from civicloud.pay.providers import SandboxProvider
from civicloud.pay.providers.sandbox import Outcome
from civicloud.pay.schemas import PaymentCreate, PublicBill
from civicloud.pay.web.views import (
    ENDED_REASONS,
    account_format,
    address_mismatch,
    checkout_origins,
    display_zone,
    local_path,
    new_form_key,
    offered_providers,
    origin_of,
    page,
    pay_context,
)
from civicloud.web.deps import SessionDep, admission_of, client_of, read_cookie
from civicloud.web.pages.guards import CsrfChecked, FormRejected, PageActorDep, see_other
from civicloud.web.pages.rendering import SECURITY_HEADERS, page_language, set_cookie

router = APIRouter(include_in_schema=False)

#: Where every provider sends the citizen back; the provider adds ``out_trade_no``.
RETURN_PATH = "/pay/return"
_TRADE_NO = re.compile(r"[A-Za-z0-9]{1,32}")
_ACCOUNT_INVALID = N_("This is not an account number of this biller. Check it against your bill.")
#: What an empty account field says, in the words the page labels the field with.
_ACCOUNT_MISSING = {
    "water": N_("Enter the account number."),
    "power": N_("Enter the account number."),
    "gas": N_("Enter the account number."),
    "fine": N_("Enter the licence plate number."),
    "fee": N_("Enter the payment reference number."),
}
_CHOOSE_BILL = N_("Choose at least one bill to pay.")
_CHOOSE_PROVIDER = N_("Choose how you want to pay.")
_BILLS_CHANGED = N_(
    "A bill you chose was paid or changed meanwhile. The list below is up to date; choose again."
)
_FORM_USED = N_(
    "This form was already used for a different payment. The list below is fresh; choose again."
)
_THROTTLED = N_(
    "You have looked up many accounts in a short time. Please wait a minute, then try again."
)
_PAYMENTS_THROTTLED = N_(
    "You have started many payments in a short time. Please wait a minute, then try again."
)
_NO_SUCH_PAYMENT = N_(
    "No payment has this transaction number. Check it against the number shown when you paid."
)
#: The trade numbers of the payments this browser started (a few, newest last): holding one is
#: what lets the citizen end a payment of theirs in flight by starting again; nobody else can.
TRADES_COOKIE = "civicloud_pay_trades"
TRADES_KEPT = 5
TRADES_SECONDS = 24 * 3600
_FORM_KEY = re.compile(r"[0-9a-f]{32}")


# --- choosing a biller and finding the bills ---------------------------------------------------


@router.get("/pay", name="pay.page.start")
def choose_biller(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    city: Annotated[uuid.UUID | None, Query()] = None,
) -> HTMLResponse:
    """Choose a city, then the biller to pay."""
    cities = billing.cities_with_billers(session=session)
    chosen = next((c for c in cities if c.tenant.id == city), cities[0] if cities else None)
    return page(request, "pay/choose.html", {"cities": cities, "chosen": chosen, "step": 1})


@router.get("/pay/billers/{biller_id}", name="pay.page.biller")
def enter_account(
    request: Request, session: SessionDep, actor: PageActorDep, biller_id: uuid.UUID
) -> HTMLResponse:
    """Enter the account number of the bills to pay; the expected format is shown."""
    biller = _public_biller(session, biller_id)
    return _account_page(request, biller)


@router.get("/pay/billers/{biller_id}/bills", name="pay.page.bills")
def open_bills(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    biller_id: uuid.UUID,
    account: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    """The open bills of an account, to choose and pay (rate-limited per client)."""
    biller = _public_biller(session, biller_id)
    if not account.strip():
        missing = _ACCOUNT_MISSING.get(biller.category, _ACCOUNT_MISSING["water"])
        return _account_page(request, biller, account, missing, status_code=422)
    try:
        bills = _lookup(request, session, biller, account)
    except LookupThrottled as exc:
        return _throttled(request, biller, account, exc)
    if bills is None:
        return _account_page(request, biller, account, _ACCOUNT_INVALID, status_code=422)
    return _bills_page(request, biller, account.strip(), bills)


@router.post("/pay/billers/{biller_id}/bills", name="pay.page.create")
def pay(
    request: Request,
    session: SessionDep,
    _csrf: CsrfChecked,
    biller_id: uuid.UUID,
    idempotency_key: Annotated[str, Form(max_length=200)] = "",
    account: Annotated[str, Form(max_length=200)] = "",
    bill_id: Annotated[list[str] | None, Form()] = None,
    provider: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Pay the chosen bills; the form's idempotency key makes a repeated submission a replay.

    A payment this browser started for these bills (its trade number is in the browser's
    cookie) is replaced (it ends ``superseded``); anyone else's payment in flight for them is
    left alone, and whichever succeeds first pays the bills (a later success is refunded).
    """
    context = pay_context(request)
    mine = _my_trades(request)
    try:
        context.payment_starts.hit(client_of(request))
        data = PaymentCreate.model_validate(
            {
                "biller_id": biller_id,
                "bill_ids": bill_id or [],
                "provider": provider,
                "return_url": _return_url(context, provider),
            }
        )
        payment, _created = payments.create_payment(
            session=session,
            data=data,
            idempotency_key=idempotency_key,
            context=context,
            replaces=mine,
        )
    except ValidationError as exc:
        fields = {str(e["loc"][0]) for e in exc.errors() if e.get("loc")}
        message = _CHOOSE_PROVIDER if "provider" in fields and bill_id else _CHOOSE_BILL
        raise _pay_rejected(request, session, biller_id, account, message, 422) from exc
    except PaymentsThrottled as exc:
        rejected = _pay_rejected(request, session, biller_id, account, _PAYMENTS_THROTTLED, 429)
        rejected.response.headers["Retry-After"] = str(exc.extra.get("retry_after", 60))
        raise rejected from exc
    except (BillNotPayable, BillNotFound) as exc:
        raise _pay_rejected(request, session, biller_id, account, _BILLS_CHANGED, 409) from exc
    except IdempotencyKeyReused as exc:
        raise _pay_rejected(request, session, biller_id, account, _FORM_USED, 409) from exc
    except InvalidInput as exc:  # the provider is not configured here, or the key is missing
        raise _pay_rejected(request, session, biller_id, account, _CHOOSE_PROVIDER, 422) from exc
    if payment.checkout.get("kind") == "redirect" and payment.checkout.get("url"):
        # A checkout of this site (the sandbox's) is reached by its path, whatever address the
        # browser used: the pages' policy (form-action) would block a redirect to another.
        response = see_other(local_path(str(payment.checkout["url"]), request))
    else:
        # A QR code (WeChat Pay Native, Alipay precreate) is shown on the payment's own page.
        response = see_other(f"/pay/payments/{payment.trade_no}")
    earlier = [t for t in mine if t != payment.trade_no][-(TRADES_KEPT - 1) :]
    kept = [*earlier, payment.trade_no]
    set_cookie(
        response, request, TRADES_COOKIE, ".".join(kept), max_age=TRADES_SECONDS, path="/pay"
    )
    return response


def _my_trades(request: Request) -> list[str]:
    """The trade numbers of the payments this browser started (from its cookie)."""
    value = read_cookie(request, TRADES_COOKIE, "/pay") or ""
    return [t for t in value.split(".") if _TRADE_NO.fullmatch(t)][-TRADES_KEPT:]


@router.get("/pay/billers/{biller_id}/confirm", name="pay.page.confirm")
def confirm(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    biller_id: uuid.UUID,
    account: Annotated[str, Query(max_length=200)] = "",
    bill_id: Annotated[list[str] | None, Query()] = None,
    provider: Annotated[str, Query(max_length=20)] = "",
    idempotency_key: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    """Check before paying: the chosen bills, their sum and how, with the button that pays."""
    biller = _public_biller(session, biller_id)
    try:
        bills = _lookup(request, session, biller, account)
    except LookupThrottled as exc:
        return _throttled(request, biller, account, exc)
    if bills is None:
        return _account_page(request, biller, account, _ACCOUNT_INVALID, status_code=422)
    context = pay_context(request)
    wanted = set(bill_id or [])
    chosen = [b for b in bills if str(b.id) in wanted]
    if not wanted:
        return _bills_page(request, biller, account.strip(), bills, _CHOOSE_BILL, status_code=422)
    if len(chosen) != len(wanted):
        return _bills_page(request, biller, account.strip(), bills, _BILLS_CHANGED, status_code=409)
    if provider not in offered_providers(context):
        return _bills_page(
            request, biller, account.strip(), bills, _CHOOSE_PROVIDER, status_code=422
        )
    response = page(
        request,
        "pay/confirm.html",
        {
            "biller": biller,
            "account": _as_looked_up(biller, account),
            "bills": chosen,
            "total_fen": sum(b.total_fen for b in chosen),
            "provider": provider,
            "idempotency_key": (
                idempotency_key if _FORM_KEY.fullmatch(idempotency_key) else new_form_key()
            ),
            "mismatch": address_mismatch(request),
            "step": 3,
        },
    )
    # The pay button's form may be sent on to a provider's checkout (Alipay's page).
    origins = " ".join(["'self'", *checkout_origins(context)])
    response.headers["Content-Security-Policy"] = SECURITY_HEADERS[
        "Content-Security-Policy"
    ].replace("form-action 'self'", f"form-action {origins}")
    return response


def _return_url(context: PayContext, provider: str) -> str:
    # The sandbox's checkout is a page of this site: a path keeps the citizen on its origin.
    if provider == "sandbox":
        return RETURN_PATH
    return context.settings.public_base_url.rstrip("/") + RETURN_PATH


def _public_biller(session: Session, biller_id: uuid.UUID) -> Biller:
    biller = billing.get_biller(session=session, biller_id=biller_id)
    if biller is None:
        raise BillerNotFound("no such biller", resource="biller")
    return biller


def _lookup(
    request: Request, session: Session, biller: Biller, account: str
) -> list[PublicBill] | None:
    """The account's open bills (counted against the client's limit); ``None`` if malformed."""
    limiter = pay_context(request).lookups
    limiter.hit(client_of(request))
    try:
        return billing.lookup_open_bills(
            session=session, biller_id=biller.id, account_number=account, today=utcnow().date()
        )
    except InvalidInput:
        return None


def _as_looked_up(biller: Biller, account: str) -> str:
    """The account number as the biller writes it, the one its bills were found by (lower case
    and full-width digits typed, 辽B7K2M9 shown); as typed, stripped, when it reads as none."""
    found = billing.normalise_account(compile_pattern(biller.account_pattern), account)
    return found if found is not None else account.strip()


def _throttled(
    request: Request, biller: Biller, account: str, exc: LookupThrottled
) -> HTMLResponse:
    response = _account_page(request, biller, account, _THROTTLED, status_code=exc.status)
    response.headers["Retry-After"] = str(exc.extra.get("retry_after", 60))
    return response


def _account_page(
    request: Request,
    biller: Biller,
    account: str = "",
    error: str | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    return page(
        request,
        "pay/account.html",
        {
            "biller": biller,
            "account": account,
            "error": error,
            "format": account_format(biller.account_pattern),
            "step": 2,
        },
        status_code=status_code,
    )


def _bills_page(
    request: Request,
    biller: Biller,
    account: str,
    bills: list[PublicBill],
    error: str | None = None,
    *,
    status_code: int = 200,
    error_args: dict[str, str] | None = None,
) -> HTMLResponse:
    providers = offered_providers(pay_context(request))
    response = page(
        request,
        "pay/bills.html",
        {
            "biller": biller,
            "account": _as_looked_up(biller, account),
            "bills": bills,
            "total_fen": sum(b.total_fen for b in bills),
            "providers": providers,
            "idempotency_key": new_form_key(),
            "today": utcnow().date(),
            "error": error,
            "error_args": error_args or {},
            "mismatch": address_mismatch(request),
            "step": 3,
        },
        status_code=status_code,
    )
    # The one script of the citizen's pages (this site's own file): the sum of the ticked bills
    # as they are ticked. Without it, the confirmation step shows the sum.
    response.headers["Content-Security-Policy"] = SECURITY_HEADERS[
        "Content-Security-Policy"
    ].replace("script-src 'none'", "script-src 'self'")
    return response


def _pay_rejected(
    request: Request,
    session: Session,
    biller_id: uuid.UUID,
    account: str,
    message: str,
    status_code: int,
    message_args: dict[str, str] | None = None,
) -> FormRejected:
    """The bills page again, looked up afresh (and counted, so that posts cannot enumerate)."""
    biller = _public_biller(session, biller_id)
    try:
        bills = _lookup(request, session, biller, account)
    except LookupThrottled as exc:
        return FormRejected(_throttled(request, biller, account, exc))
    if bills is None:
        return FormRejected(
            _account_page(request, biller, account, _ACCOUNT_INVALID, status_code=422)
        )
    return FormRejected(
        _bills_page(
            request,
            biller,
            account.strip(),
            bills,
            message,
            status_code=status_code,
            error_args=message_args,
        )
    )


# --- the sandbox's checkout, and coming back ---------------------------------------------------


def _sandbox(request: Request) -> SandboxProvider:
    provider = pay_context(request).providers.get("sandbox")
    if not isinstance(provider, SandboxProvider):
        raise PaymentNotFound("the sandbox is not configured here")
    return provider


@router.get("/pay/sandbox/checkout/{trade_no}", name="pay.page.sandbox")
def sandbox_checkout(request: Request, actor: PageActorDep, trade_no: str) -> HTMLResponse:
    """The sandbox provider's own checkout page: the amount and merchant, and two buttons."""
    view = _sandbox(request).checkout_view(trade_no)
    response = page(request, "pay/sandbox.html", {"view": view, "step": 4})
    if not local_path(view.return_url, request).startswith("/"):
        # The form's answer sends the citizen on to the biller's registered return origin
        # (payments checked it): the pages' policy lets forms lead nowhere else.
        response.headers["Content-Security-Policy"] = SECURITY_HEADERS[
            "Content-Security-Policy"
        ].replace("form-action 'self'", f"form-action 'self' {origin_of(view.return_url)}")
    return response


@router.post("/pay/sandbox/checkout/{trade_no}", name="pay.page.sandbox_submit")
async def sandbox_submit(
    request: Request,
    _csrf: CsrfChecked,
    trade_no: str,
    outcome: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Play the provider: settle the trade as paid or failed, notify, and send the citizen back."""
    # No database session here: the sandbox's notification is applied in a unit of work of its
    # own, as the provider's call to our notification endpoint would be, and like that call
    # it waits for a writer's slot (web.admission) rather than for the database's lock.
    sandbox = _sandbox(request)
    view = await run_in_threadpool(sandbox.checkout_view, trade_no)
    if outcome not in ("succeeded", "failed"):
        raise InvalidInput("choose to pay or to fail the payment")
    if view.status == "pending":
        settled: Outcome = "succeeded" if outcome == "succeeded" else "failed"
        async with admission_of(request).slot(write=True):
            await run_in_threadpool(sandbox.simulate, trade_no, settled)
    separator = "&" if "?" in view.return_url else "?"
    return see_other(f"{view.return_url}{separator}out_trade_no={trade_no}")


@router.get("/pay/return", name="pay.page.return")
def back_from_provider(
    out_trade_no: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """Where providers send the citizen back: on to the payment's page."""
    if not _TRADE_NO.fullmatch(out_trade_no):
        raise PaymentNotFound("no such payment", resource="payment")
    return see_other(f"/pay/payments/{out_trade_no}")


@router.get("/pay/payments/{trade_no}", name="pay.page.payment")
def payment_status(
    request: Request, session: SessionDep, actor: PageActorDep, trade_no: str
) -> HTMLResponse:
    """A payment's outcome; once it succeeded, its receipt number and the links to the receipt."""
    payment = payments.get_payment_by_trade_no(session=session, trade_no=trade_no)
    if payment is None:
        raise PaymentNotFound("no such payment", resource="payment")
    receipt = None
    if payment.status == PaymentStatus.SUCCEEDED.value:
        receipt = receipts.get_receipt_for_payment(session=session, payment_id=payment.id)
    qr = None
    waiting = payment.status in payments.IN_FLIGHT
    if waiting and payment.checkout.get("kind") == "qr" and payment.checkout.get("url"):
        svg = segno.make(str(payment.checkout["url"]), error="m").svg_inline(
            scale=4, border=2, omitsize=True, title=payment.trade_no
        )
        qr = Markup(svg)  # noqa: S704 - segno's generated markup, not user text
    response = page(
        request,
        "pay/payment.html",
        {
            "payment": payment,
            "biller": billing.get_biller(session=session, biller_id=payment.biller_id),
            "receipt": receipt,
            "qr": qr,
            "waiting": waiting,
            "reason": ENDED_REASONS.get(payment.status),
            "minutes": context_minutes(request),
            "mismatch": address_mismatch(request),
            "step": 5 if receipt else 4,
        },
    )
    if waiting and qr is not None:
        # Scanning happens on the phone: this page looks again by itself until it is paid.
        response.headers["Refresh"] = "5"
    return response


def context_minutes(request: Request) -> int:
    """How long a payment may take before it expires, in minutes."""
    return pay_context(request).settings.payment_minutes


@router.get("/pay/find", name="pay.page.find")
def find_payment(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    trade_no: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """Find a payment again by its transaction number (rate-limited per client like look-ups)."""
    trade_no = "".join(trade_no.split()).upper()
    if not trade_no:
        return page(request, "pay/find.html", {"trade_no": "", "error": None})
    limiter = pay_context(request).lookups
    try:
        limiter.hit(client_of(request))
    except LookupThrottled as exc:
        response = page(
            request,
            "pay/find.html",
            {"trade_no": trade_no, "error": _THROTTLED},
            status_code=exc.status,
        )
        response.headers["Retry-After"] = str(exc.extra.get("retry_after", 60))
        return response
    found = (
        payments.get_payment_by_trade_no(session=session, trade_no=trade_no)
        if _TRADE_NO.fullmatch(trade_no)
        else None
    )
    if found is None:
        return page(
            request,
            "pay/find.html",
            {"trade_no": trade_no, "error": _NO_SUCH_PAYMENT},
            status_code=404,
        )
    return see_other(f"/pay/payments/{found.trade_no}")


# --- receipts --------------------------------------------------------------------------------


def _receipt_or_404(session: Session, number: str) -> Receipt:
    receipt = receipts.get_receipt(session=session, number=number)
    if receipt is None:
        raise PaymentNotFound("no such receipt", resource="receipt")
    return receipt


def _payer_of(session: Session, receipt: Receipt) -> str | None:
    """The masked name(s) of the payer of the bills a receipt covers."""
    payment = session.get(Payment, receipt.payment_id)
    if payment is None:
        return None
    names = dict.fromkeys(
        billing.mask_name(bill.payer_name)
        for bill, _fen in payments.payment_bills(session=session, payment=payment)
    )
    return "、".join(names) or None


def _download_headers(filename: str, disposition: str = "inline") -> dict[str, str]:
    return {
        "Content-Disposition": f'{disposition}; filename="{filename}"',
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }


@router.get("/pay/receipt-key.pem", name="pay.page.receipt_key")
def receipt_public_key(request: Request) -> Response:
    """The public key receipts are signed with, for verifying them offline."""
    signer = pay_context(request).signer
    return Response(
        signer.public_key_pem(),
        media_type="application/x-pem-file",
        headers=_download_headers(f"civicloud-receipt-{signer.key_id}.pem", "attachment"),
    )


@router.get("/pay/receipts/{number}.pdf", name="pay.page.receipt_pdf")
def receipt_pdf(request: Request, session: SessionDep, number: str) -> Response:
    """The receipt as a printable A5 PDF, its signed document attached."""
    receipt = _receipt_or_404(session, number)
    body = receipts.render_receipt_pdf(
        receipt,
        page_language(request),
        public_base_url=pay_context(request).settings.public_base_url,
        payer=_payer_of(session, receipt),
        tzinfo=display_zone(request),
    )
    return Response(body, media_type="application/pdf", headers=_download_headers(f"{number}.pdf"))


@router.get("/pay/receipts/{number}.json", name="pay.page.receipt_json")
def receipt_json(session: SessionDep, number: str) -> Response:
    """The signed receipt document (``RECEIPT.json``) for offline verification."""
    document = receipts.receipt_document(_receipt_or_404(session, number))
    return Response(
        json.dumps(document, ensure_ascii=False, indent=1),
        media_type="application/json",
        headers=_download_headers(f"{number}.json", "attachment"),
    )


@router.get("/pay/receipts/{number}/verify", name="pay.page.receipt_verify")
def verify_receipt(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    number: str,
    sig: Annotated[str | None, Query(max_length=400)] = None,
) -> HTMLResponse:
    """Anyone may check a receipt: valid, tampered with, or unknown (``sig`` from its QR code)."""
    signer = pay_context(request).signer
    result = receipts.verify_receipt_by_number(
        session=session,
        number=number[:40],
        public_keys={signer.key_id: signer.public_key_pem()},
        signature_b64=sig,
    )
    body = result.body if result.status == "valid" else None
    paid_at = local_time(body["paid_at"], display_zone(request)) if body else ""
    return page(
        request,
        "pay/verify.html",
        {"result": result, "body": body, "paid_at": paid_at, "key_id": signer.key_id},
    )


@router.get("/pay/receipts/{number}", name="pay.page.receipt")
def receipt_page(request: Request, session: SessionDep, number: str) -> Response:
    """The printable receipt, with its QR code, in the page's language."""
    receipt = _receipt_or_404(session, number)
    html = receipts.render_receipt_html(
        receipt,
        page_language(request),
        public_base_url=pay_context(request).settings.public_base_url,
        payer=_payer_of(session, receipt),
        tzinfo=display_zone(request),
    )
    headers = dict(SECURITY_HEADERS)
    headers["Content-Security-Policy"] = receipts.receipt_content_security_policy()
    headers["Cache-Control"] = "no-store"
    return HTMLResponse(html, headers=headers)
