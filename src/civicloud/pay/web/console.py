"""Operators' Pay pages: billers and their bills (CSV imports), payments and refunds, and
settlements (reconciliation and the ledger are in ``books``).

Everything is authorised by the services, as for the API; the pages only hide forms their
caller could not use. A refused form is answered with its page again (``FormRejected``, so the
request's unit of work rolls back); a successful one with a redirect.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from civicloud.core import tenants
from civicloud.core.errors import Conflict, InvalidInput, NotFound
from civicloud.core.i18n import N_
from civicloud.core.money import InvalidAmount
from civicloud.core.money import parse_yuan as parse_amount
from civicloud.core.roles import Actor
from civicloud.pay import (
    billing,
    listings,
    payments,
    receipts,
    refunds,
    settlement,
)
from civicloud.pay.errors import ImportRejected, RefundExceedsPayment
from civicloud.pay.models import (
    Biller,
    BillStatus,
    PaymentStatus,
)
from civicloud.pay.schemas import ImportReport, RowError
from civicloud.pay.web import lists as pay_lists
from civicloud.pay.web.views import (
    beijing_now,
    new_form_key,
    page,
    pay_context,
    yuan_text,
)
from civicloud.pay.web.views import form_date as _parse_date
from civicloud.pay.web.views import form_state as _form
from civicloud.pay.web.views import form_uuid as _parse_uuid
from civicloud.web import lists
from civicloud.web.deps import SessionDep
from civicloud.web.pages.forms import Upload, service_error, uploaded
from civicloud.web.pages.forms import rejected_form as _rejected_form
from civicloud.web.pages.guards import ConsoleActorDep, FormRejected, see_other
from civicloud.web.pages.rendering import page_language

router = APIRouter(prefix="/console/pay", include_in_schema=False)
#: The most rows a console list shows at once.
LIST_LIMIT = 100

_AMOUNT_HINT = N_("Enter an amount in yuan with at most two decimals, such as 12.50.")
_REASON_HINT = N_("Say in a few words why (at most 300 characters).")
_REASON_HIDDEN_HINT = N_(
    "Remove the invisible or direction-changing characters from the reason: they could make "
    "the page show something else."
)
_DATE_HINT = N_("Enter a date between 2000-01-01 and 2100-12-31 as YYYY-MM-DD.")
_BILLER_HINT = N_("Choose a biller.")
_ITEM_HINT = N_("Reload the page and try again.")


#: The form's ``file`` field (empty when none was sent).
UploadDep = Annotated[Upload, Depends(uploaded("file"))]


def _tenant_path(session: Session, tenant_id: uuid.UUID) -> str:
    found = tenants.resolve_tenant(session=session, tenant_id=tenant_id)
    return found.path if found else ""


# --- overview ----------------------------------------------------------------------------------


@router.get("", name="pay.page.console")
def overview(request: Request, session: SessionDep, actor: ConsoleActorDep) -> HTMLResponse:
    """Pay at a glance: the billers of your subtree with their bills."""
    billers = billing.list_billers(session=session, actor=actor)
    visible = {t.id: t for t in tenants.list_tenants(session=session, actor=actor)}
    return page(
        request,
        "pay/console/overview.html",
        {
            "section": "pay",
            "pay_tab": "overview",
            "billers": billers,
            "homes": visible,
            "counts": billing.bill_counts(session=session, biller_ids=[b.id for b in billers]),
        },
    )


# --- a biller, its bills and CSV imports -------------------------------------------------------


@router.get("/billers/{biller_id}", name="pay.page.console_biller")
def biller_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    biller_id: uuid.UUID,
    q: Annotated[str, Query(max_length=64)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    """One biller: its details, its bills (searchable) and the CSV upload form."""
    context = _biller_context(request, session, actor, biller_id, q.strip(), status)
    return page(request, "pay/console/biller.html", context)


@router.post("/billers/{biller_id}/import", name="pay.page.console_import")
def import_bills(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    upload: UploadDep,
    biller_id: uuid.UUID,
    partial: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Publish the bills of a CSV file; with errors nothing is published unless ``partial``."""
    content = upload.content
    try:
        report = billing.import_bills_csv(
            session=session,
            actor=actor,
            biller_id=biller_id,
            content=content,
            partial=partial == "yes",
        )
    except ImportRejected as exc:
        rows = [RowError.model_validate(e) for e in exc.extra.get("errors", [])]
        refused = ImportReport(accepted=0, refused=len(rows), errors=rows, applied=False)
        raise _import_rejected(request, session, actor, biller_id, partial, report=refused) from exc
    except InvalidInput as exc:  # a file that cannot be read at all
        raise _import_rejected(
            request, session, actor, biller_id, partial, summary=service_error(exc)
        ) from exc
    if report.errors:
        # Published in part, as asked: the report shows what was left out (and is committed).
        context = _biller_context(request, session, actor, biller_id)
        context["report"] = report
        return page(request, "pay/console/biller.html", context)
    return see_other(f"/console/pay/billers/{biller_id}?done=bills_imported")


def _import_rejected(
    request: Request,
    session: Session,
    actor: Actor,
    biller_id: uuid.UUID,
    partial: str,
    *,
    report: ImportReport | None = None,
    summary: dict[str, str] | None = None,
) -> FormRejected:
    context = _biller_context(request, session, actor, biller_id)
    context["report"] = report
    context["form"] = _rejected_form({"partial": partial}, {}, summary)
    return FormRejected(page(request, "pay/console/biller.html", context, status_code=422))


def _biller_context(
    request: Request,
    session: Session,
    actor: Actor,
    biller_id: uuid.UUID,
    search: str = "",
    status: str = "",
) -> dict[str, Any]:
    status = status if status in {s.value for s in BillStatus} else ""
    biller, bills = billing.list_bills(
        session=session, actor=actor, biller_id=biller_id, search=search, status=status
    )
    path = _tenant_path(session, biller.tenant_id)
    settlements = []
    if actor.can(settlement.PERMISSION, path):
        settlements = list(
            settlement.list_settlements(session=session, actor=actor, biller_id=biller.id, limit=10)
        )
    return {
        "section": "pay",
        "pay_tab": "overview",
        "biller": biller,
        "home": tenants.get_tenant(session=session, tenant_id=biller.tenant_id),
        "bills": bills,
        "limit": LIST_LIMIT,
        "filters": {"q": search, "status": status},
        "statuses": [s.value for s in BillStatus],
        "counts": billing.bill_counts(session=session, biller_ids=[biller.id])[biller.id],
        "may_import": actor.can(billing.BILL_WRITE, path),
        "settlements": settlements,
        "max_bytes": request.app.state.services.settings.web.max_body_bytes,
        "columns": billing.CSV_COLUMNS,
        "report": None,
        "row_reasons": billing.ROW_REASONS,
        "form": _form(),
    }


# --- payments and refunds ----------------------------------------------------------------------


@router.get("/payments", name="pay.page.console_payments")
def payments_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> Response:
    """Find payments: by transaction number, account, bill, payer, amount and days, with
    totals, pages and CSV/Excel export."""
    return _list_page(request, session, actor, "payments", pay_lists.payments_spec)


@router.get("/bills", name="pay.page.console_bills")
def bills_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> Response:
    """Find bills of every biller the reader may see."""
    return _list_page(request, session, actor, "bills", pay_lists.bills_spec)


@router.get("/refunds", name="pay.page.console_refunds")
def refunds_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> Response:
    """Find refunds."""
    return _list_page(request, session, actor, "refunds", pay_lists.refunds_spec)


_LIST_TITLES = {
    "payments": (N_("Payments"), N_("Citizens' payments to the billers you may see.")),
    "bills": (N_("Bills"), N_("The bills your billers published.")),
    "refunds": (N_("Refunds"), N_("Refunds of payments you may see.")),
}


def _list_page(
    request: Request,
    session: Session,
    actor: Actor,
    what: str,
    build: Callable[[Session, Actor, str], lists.ListSpec],
) -> Response:
    title, lead = _LIST_TITLES[what]
    context: dict[str, Any] = {
        "section": "pay",
        "pay_tab": what,
        "list_title": title,
        "list_lead": lead,
        "not_allowed": None,
        "view": None,
    }
    if not listings.may_list(actor, what):
        context["not_allowed"] = pay_lists.NOT_ALLOWED[what]
        return page(request, "pay/console/list.html", context)
    spec = build(session, actor, page_language(request))
    return lists.respond(
        request,
        spec,
        session,
        lambda view: page(request, "pay/console/list.html", {**context, "view": view}),
    )


@router.get("/payments/{payment_id}", name="pay.page.console_payment")
def payment_page(
    request: Request, session: SessionDep, actor: ConsoleActorDep, payment_id: uuid.UUID
) -> HTMLResponse:
    """One payment: its bills, receipt and refunds, and the refund form."""
    context = _payment_context(request, session, actor, payment_id)
    return page(request, "pay/console/payment.html", context)


@router.post("/payments/{payment_id}/refunds", name="pay.page.console_refund")
def refund(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    payment_id: uuid.UUID,
    amount: Annotated[str, Form(max_length=40)] = "",
    reason: Annotated[str, Form(max_length=1000)] = "",
    idempotency_key: Annotated[str, Form(max_length=200)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Refund part or all of a payment, in two steps: the form is answered with a confirmation
    that repeats the amount and who gets it back, and only its button moves money. The key the
    form got when it was rendered makes a repeated confirmation a replay."""
    payment = payments.get_payment_or_raise(session=session, actor=actor, payment_id=payment_id)
    values = {"amount": amount, "reason": reason, "idempotency_key": idempotency_key}
    errors = {}
    fen = None
    try:
        fen = parse_amount(amount)
    except InvalidAmount as exc:
        errors["amount"] = exc.message
    try:  # the service's own rule, so that the confirmation never shows what it refuses
        refunds.check_reason(reason)
    except InvalidInput as exc:
        errors["reason"] = _REASON_HIDDEN_HINT if "char" in exc.params else _REASON_HINT
    if not idempotency_key.strip():
        errors["amount"] = errors.get("amount", _ITEM_HINT)
    if errors or fen is None:
        raise _refund_rejected(request, session, actor, payment_id, values, errors)
    refundable = payment.amount_fen - payment.refunded_fen
    if confirm != "yes":
        if fen > refundable:
            exceeded = RefundExceedsPayment(
                "%(asked)s is more than the %(refundable)s that can still be refunded",
                params={"asked_fen": fen, "refundable_fen": refundable},
            )
            raise _refund_rejected(
                request, session, actor, payment_id, values, {}, service_error(exceeded), 409
            )
        context = _payment_context(request, session, actor, payment_id)
        context.update(
            amount_fen=fen,
            reason=reason.strip(),
            payers=sorted({bill.payer_name for bill, _amount in context["bills"]}),
            confirm={"amount": yuan_text(fen), "reason": reason.strip(), "key": idempotency_key},
        )
        return page(request, "pay/console/refund_confirm.html", context)
    try:
        refunds.request_refund(
            session=session,
            actor=actor,
            payment_id=payment.id,
            amount_fen=fen,
            reason=reason.strip(),
            idempotency_key=idempotency_key,
            provider=pay_context(request).provider(payment.provider),
        )
    except (Conflict, InvalidInput) as exc:
        raise _refund_rejected(
            request, session, actor, payment_id, values, {}, service_error(exc), exc.status
        ) from exc
    return see_other(f"/console/pay/payments/{payment_id}?done=refund_requested")


def _refund_rejected(
    request: Request,
    session: Session,
    actor: Actor,
    payment_id: uuid.UUID,
    values: dict[str, str],
    errors: dict[str, str],
    summary: dict[str, str] | None = None,
    status_code: int = 422,
) -> FormRejected:
    context = _payment_context(request, session, actor, payment_id)
    context["form"] = _rejected_form(values, errors, summary)
    return FormRejected(page(request, "pay/console/payment.html", context, status_code=status_code))


def _payment_context(
    request: Request, session: Session, actor: Actor, payment_id: uuid.UUID
) -> dict[str, Any]:
    payment = payments.get_payment_or_raise(session=session, actor=actor, payment_id=payment_id)
    found_refunds = refunds.list_refunds(session=session, actor=actor, payment_id=payment.id)
    refundable = payment.amount_fen - payment.refunded_fen
    may_refund = (
        payment.status == PaymentStatus.SUCCEEDED.value
        and refundable > 0
        and actor.can(refunds.PERMISSION, _tenant_path(session, payment.tenant_id))
    )
    return {
        "section": "pay",
        "pay_tab": "payments",
        "payment": payment,
        "biller": billing.get_biller(session=session, biller_id=payment.biller_id),
        "bills": payments.payment_bills(session=session, payment=payment),
        "receipt": receipts.get_receipt_for_payment(session=session, payment_id=payment.id),
        "refunds": found_refunds,
        "refundable": refundable,
        "may_refund": may_refund,
        # Nothing is filled in for the operator: the amount is typed, then confirmed.
        "form": _form({"amount": "", "reason": "", "idempotency_key": new_form_key()}),
    }


# --- settlements -------------------------------------------------------------------------------


@router.get("/settlements", name="pay.page.console_settlements")
def settlements_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    biller_id: Annotated[uuid.UUID | None, Query()] = None,
) -> Response:
    """Run a biller's daily settlement; find settlements by biller and day, download their
    bank batch files, and export the list."""
    context = _settlements_context(request, session, actor, biller_id)
    if not listings.may_list(actor, "settlements"):
        context["not_allowed"] = pay_lists.NOT_ALLOWED["settlements"]
        return page(request, "pay/console/settlements.html", context)
    spec = pay_lists.settlements_spec(session, actor, page_language(request))
    return lists.respond(
        request,
        spec,
        session,
        lambda view: page(request, "pay/console/settlements.html", {**context, "view": view}),
        # Opened for one biller (the settle form's choice): its settlements are listed.
        defaults={"biller": str(biller_id)} if biller_id is not None else None,
    )


#: A net amount as a settlement's preview writes it into its confirmation: integer fen.
_NET = re.compile(r"-?[0-9]{1,15}")


@router.post("/settlements", name="pay.page.console_settle")
def settle(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    biller_id: Annotated[str, Form(max_length=64)] = "",
    business_date: Annotated[str, Form(max_length=20)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
    expected_net: Annotated[str, Form(max_length=24)] = "",
) -> Response:
    """Settle one biller's ended business day, in two steps: a preview of the figures and the
    payee's account, then its confirmation (once; a second run shows the first)."""
    values = {"biller_id": biller_id, "business_date": business_date}
    chosen, day = _parse_uuid(biller_id), _parse_date(business_date)
    errors = {}
    if chosen is None:
        errors["biller_id"] = _BILLER_HINT
    if day is None:
        errors["business_date"] = _DATE_HINT
    if chosen is None or day is None:
        raise _settle_rejected(request, session, actor, chosen, values, errors)
    payer = settlement.payer_from(pay_context(request).settings)
    # The confirmation carries the net its preview showed; one without a readable net (sent
    # by hand, or garbled) is shown the preview again rather than settled unseen.
    shown_net = int(expected_net) if _NET.fullmatch(expected_net) else None
    try:
        if confirm != "yes" or shown_net is None:
            preview = settlement.preview_day(
                session=session, actor=actor, biller_id=chosen, business_date=day, payer=payer
            )
            return page(
                request,
                "pay/console/settlement_confirm.html",
                {"section": "pay", "pay_tab": "settlements", "preview": preview},
            )
        settlement.settle_day(
            session=session,
            actor=actor,
            biller_id=chosen,
            business_date=day,
            payer=payer,
            expected_net_fen=shown_net,
        )
    except (InvalidInput, Conflict) as exc:  # not ended, nothing to settle, changed, unsafe
        raise _settle_rejected(
            request, session, actor, chosen, values, {}, service_error(exc), exc.status
        ) from exc
    return see_other(f"/console/pay/settlements?biller_id={chosen}&done=settled")


@router.get("/billers/{biller_id}/settlement.csv", name="pay.page.console_batch")
def batch_file(
    session: SessionDep,
    actor: ConsoleActorDep,
    biller_id: uuid.UUID,
    business_date: Annotated[str, Query(alias="date", max_length=20)] = "",
) -> Response:
    """Download the bank batch file of a biller's settled day."""
    day = _parse_date(business_date)
    found = None
    if day is not None:
        found = settlement.get_settlement(
            session=session, actor=actor, biller_id=biller_id, business_date=day
        )
    if found is None or day is None:
        raise NotFound("no settlement of this biller on that day", resource="settlement")
    filename = settlement.batch_id_for(biller_id, day) + ".csv"
    return Response(
        found.batch_file,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


def _settle_rejected(
    request: Request,
    session: Session,
    actor: Actor,
    biller_id: uuid.UUID | None,
    values: dict[str, str],
    errors: dict[str, str],
    summary: dict[str, str] | None = None,
    status_code: int = 422,
) -> FormRejected:
    context = _settlements_context(request, session, actor, biller_id)
    context["form"] = _rejected_form(values, errors, summary)
    return FormRejected(
        page(request, "pay/console/settlements.html", context, status_code=status_code)
    )


def _settlements_context(
    request: Request, session: Session, actor: Actor, biller_id: uuid.UUID | None
) -> dict[str, Any]:
    billers = billing.list_billers(session=session, actor=actor)
    chosen: Biller | None = None
    if biller_id is not None:
        # The reader must hold pay.settlement there, as for the list (404/403 otherwise).
        chosen = billing.get_biller_or_raise(
            session=session, actor=actor, biller_id=biller_id, permission=settlement.PERMISSION
        )
    yesterday = (beijing_now() - timedelta(days=1)).date()
    # Days still to settle: of the chosen biller, else of every biller the page lists.
    waiting = settlement.unsettled_days(
        session=session,
        actor=actor,
        biller_ids=[chosen.id] if chosen is not None else [b.id for b in billers],
    )
    return {
        "section": "pay",
        "pay_tab": "settlements",
        "billers": billers,
        "biller_names": {b.id: b for b in billers},
        "chosen": chosen,
        "unsettled": waiting,
        "view": None,
        "not_allowed": None,
        "form": _form({"biller_id": str(biller_id or ""), "business_date": yesterday.isoformat()}),
    }
