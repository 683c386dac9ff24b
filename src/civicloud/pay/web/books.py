"""Operators' Pay pages for the books: reconciliation of the providers' statements and the ledger.

Everything is authorised by the services, as for the API; the pages only hide forms their
caller could not use. A refused form is answered with its page again (``FormRejected``, so the
request's unit of work rolls back); a successful one with a redirect.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from civicloud.core.dates import DateOutOfRange, parse_date
from civicloud.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from civicloud.core.i18n import N_
from civicloud.core.money import InvalidAmount
from civicloud.core.money import parse_yuan as parse_amount
from civicloud.core.roles import Actor
from civicloud.pay import billing, ledger, reconciliation
from civicloud.pay.models import ReconciliationItem, StatementImport
from civicloud.pay.web.console import UploadDep
from civicloud.pay.web.views import (
    beijing_now,
    offered_providers,
    page,
    pay_context,
    yuan_text,
)
from civicloud.web.deps import SessionDep
from civicloud.web.pages.forms import service_error
from civicloud.web.pages.guards import ConsoleActorDep, FormRejected, see_other

router = APIRouter(prefix="/console/pay", include_in_schema=False)

_REASON_HINT = N_("Say in a few words why (at most 300 characters).")
_DATE_HINT = N_("Enter a date between 2000-01-01 and 2100-12-31 as YYYY-MM-DD.")
_PROVIDER_HINT = N_("Choose the provider whose statement this is.")
_FILE_HINT = N_("Choose a file to upload.")
_ACCOUNT_HINT = N_("Enter a ledger account code, such as suspense or clearing:sandbox.")
_ITEM_HINT = N_("Reload the page and try again.")


def _form(data: dict[str, str] | None = None) -> dict[str, Any]:
    return {"data": data or {}, "errors": {}, "summary": None}


def _rejected_form(
    data: dict[str, str], errors: dict[str, str], summary: dict[str, str] | None = None
) -> dict[str, Any]:
    return {"data": data, "errors": errors, "summary": summary}


def _parse_date(text: str) -> date | None:
    # One range for every date taken (core.dates): a year 1 or 9999 day is refused as malformed.
    try:
        return parse_date(text)
    except DateOutOfRange:
        return None


def _parse_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None


# --- reconciliation ----------------------------------------------------------------------------


@router.get("/reconciliation", name="pay.page.console_reconciliation")
def reconciliation_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    show: Annotated[str, Query(max_length=10)] = "",
) -> HTMLResponse:
    """Imported statements, the exceptions they raised, and the forms to import and resolve."""
    context = _reconciliation_context(request, session, actor, show == "all")
    return page(request, "pay/console/reconciliation.html", context)


@router.post("/reconciliation", name="pay.page.console_statement")
def import_statement(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    content: UploadDep,
    provider: Annotated[str, Form(max_length=20)] = "",
    business_date: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Import a provider's statement of one day and classify every line; moves no money."""
    values = {"provider": provider, "business_date": business_date}
    day = _parse_date(business_date)
    errors = {}
    if provider not in pay_context(request).providers:
        errors["provider"] = _PROVIDER_HINT
    if day is None:
        errors["business_date"] = _DATE_HINT
    if not content:
        errors["file"] = _FILE_HINT
    if errors or day is None:
        raise _reconciliation_rejected(request, session, actor, "form", values, errors)
    try:
        reconciliation.import_statement(
            session=session,
            actor=actor,
            provider=pay_context(request).provider(provider),
            content=content,
            business_date=day,
        )
    except (Conflict, InvalidInput) as exc:
        raise _reconciliation_rejected(
            request, session, actor, "form", values, {}, service_error(exc), exc.status
        ) from exc
    return see_other("/console/pay/reconciliation?done=statement_imported")


@router.post("/reconciliation/resolve", name="pay.page.console_resolve")
def resolve(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    item_id: Annotated[str, Form(max_length=64)] = "",
    debit_code: Annotated[str, Form(max_length=120)] = "",
    credit_code: Annotated[str, Form(max_length=120)] = "",
    amount: Annotated[str, Form(max_length=40)] = "",
    memo: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Resolve an exception with an adjustment posted to the ledger (audited, once)."""
    values = {"item_id": item_id, "debit_code": debit_code, "credit_code": credit_code}
    values |= {"amount": amount, "memo": memo}
    item, fen = _parse_uuid(item_id), None
    errors = {}
    try:
        fen = parse_amount(amount)
    except InvalidAmount as exc:
        errors["amount"] = exc.message
    if item is None:
        errors["item_id"] = _ITEM_HINT
    for field in ("debit_code", "credit_code"):
        if not values[field].strip():
            errors[field] = _ACCOUNT_HINT
    if not memo.strip() or len(memo.strip()) > 300:
        errors["memo"] = _REASON_HINT
    if errors or item is None or fen is None:
        raise _reconciliation_rejected(request, session, actor, "resolve", values, errors)
    try:
        reconciliation.resolve_item(
            session=session,
            actor=actor,
            item_id=item,
            debit_code=debit_code.strip(),
            credit_code=credit_code.strip(),
            amount_fen=fen,
            memo=memo.strip(),
        )
    except (Conflict, InvalidInput, NotFound) as exc:
        raise _reconciliation_rejected(
            request, session, actor, "resolve", values, {}, service_error(exc), exc.status
        ) from exc
    return see_other("/console/pay/reconciliation?done=item_resolved")


def _reconciliation_rejected(
    request: Request,
    session: Session,
    actor: Actor,
    slot: str,
    values: dict[str, str],
    errors: dict[str, str],
    summary: dict[str, str] | None = None,
    status_code: int = 422,
) -> FormRejected:
    """The reconciliation page again, with the refused form (``form`` or ``resolve``) filled in."""
    context = _reconciliation_context(request, session, actor, False)
    context[slot] = _rejected_form(values, errors, summary)
    return FormRejected(
        page(request, "pay/console/reconciliation.html", context, status_code=status_code)
    )


def _reconciliation_context(
    request: Request, session: Session, actor: Actor, show_all: bool
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "section": "pay",
        "pay_tab": "reconciliation",
        "allowed": True,
        "providers": offered_providers(pay_context(request)),
        "form": _form({"business_date": (beijing_now() - timedelta(days=1)).date().isoformat()}),
        "resolve": _form(),
        "show_all": show_all,
    }
    try:
        imports = reconciliation.list_imports(session=session, actor=actor, limit=100)
    except PermissionDenied:
        # Reconciliation is a platform-wide duty; say so rather than answer with an error.
        context.update(
            allowed=False, imports=[], summaries={}, items=[], by_import={}, waiting=set()
        )
        return context
    items = reconciliation.list_items(
        session=session, actor=actor, unresolved_only=not show_all, limit=200
    )
    context.update(
        imports=imports,
        summaries={
            i.id: reconciliation.import_summary(session=session, actor=actor, import_id=i.id)
            for i in imports[:20]
        },
        items=[(item, _suggestion(item, imports)) for item in items],
        by_import={i.id: i for i in imports},
        waiting=reconciliation.waiting_for_refund(session=session, items=items),
    )
    return context


def _suggestion(item: ReconciliationItem, imports: Sequence[StatementImport]) -> dict[str, str]:
    """A starting point for the adjustment form: the difference, between clearing and suspense."""
    provider = next((i.provider for i in imports if i.id == item.import_id), "sandbox")
    theirs, ours = item.provider_amount_fen or 0, item.our_amount_fen or 0
    # Positive: the provider holds money our books do not show; negative: the other way round.
    difference = {
        reconciliation.MISSING_OURS: theirs,
        reconciliation.MISSING_PROVIDER: -ours,
        reconciliation.AMOUNT_MISMATCH: theirs - ours,
        reconciliation.DUPLICATE: theirs,
    }.get(item.classification, 0)
    clearing = ledger.clearing_account(provider)
    # Money not yet explained waits in suspense until an operator explains it.
    debit, credit = (clearing, ledger.SUSPENSE) if difference > 0 else (ledger.SUSPENSE, clearing)
    return {
        "item_id": str(item.id),
        "debit_code": debit,
        "credit_code": credit,
        "amount": yuan_text(abs(difference)) if difference else "",
        "memo": "",
    }


# --- ledger ------------------------------------------------------------------------------------


@router.get("/ledger", name="pay.page.console_ledger")
def ledger_page(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    account: Annotated[str, Query(max_length=120)] = "",
) -> HTMLResponse:
    """Account balances and the latest journal entries (of one account, when chosen)."""
    balances = ledger.balances(session=session, actor=actor)
    entries = ledger.journal(
        session=session, actor=actor, account_code=account.strip() or None, limit=50
    )
    billers = billing.list_billers(session=session, actor=actor)
    return page(
        request,
        "pay/console/ledger.html",
        {
            "section": "pay",
            "pay_tab": "ledger",
            "balances": balances,
            "entries": entries,
            "account": account.strip(),
            "biller_names": {str(b.id): b for b in billers},
        },
    )
