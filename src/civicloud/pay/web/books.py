"""Operators' Pay pages for the books: reconciliation of the providers' statements and the ledger.

Everything is authorised by the services, as for the API; the pages only hide forms their
caller could not use. A refused form is answered with its page again (``FormRejected``, so the
request's unit of work rolls back); a successful one with a redirect.

Both lists are ``civicloud.web.lists`` lists (filters, cursor pages, count, CSV and Excel).
Ledger accounts are shown by name (a biller's, a provider's, "Suspense"…) with their code in
small print, and memos in the reader's language (``pay.ledger.MEMO_CODES``); an entry posted
before memo codes were kept, and an operator's adjustment, shows its memo as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Annotated, Any
from typing import cast as cast_type

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import ColumnElement, Select, String, case, cast, func, literal, or_
from sqlalchemy.orm import QueryableAttribute, Session

from civicloud.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from civicloud.core.i18n import N_
from civicloud.core.money import InvalidAmount
from civicloud.core.money import parse_yuan as parse_amount
from civicloud.core.roles import Actor
from civicloud.pay import billing, ledger, reconciliation
from civicloud.pay.models import (
    Biller,
    JournalEntry,
    JournalLine,
    ReconciliationItem,
    StatementImport,
)
from civicloud.pay.web.console import UploadDep
from civicloud.pay.web.views import (
    LABELS,
    beijing_now,
    offered_providers,
    page,
    pay_context,
    yuan_text,
)
from civicloud.pay.web.views import form_date as _parse_date
from civicloud.pay.web.views import form_state as _form
from civicloud.pay.web.views import form_uuid as _parse_uuid
from civicloud.web import lists
from civicloud.web.deps import SessionDep
from civicloud.web.pages.forms import rejected_form as _rejected_form
from civicloud.web.pages.forms import service_error
from civicloud.web.pages.guards import ConsoleActorDep, FormRejected, see_other
from civicloud.web.pages.rendering import get_renderer, page_language

router = APIRouter(prefix="/console/pay", include_in_schema=False)

_REASON_HINT = N_("Say in a few words why (at most 300 characters).")
_DATE_HINT = N_("Enter a date between 2000-01-01 and 2100-12-31 as YYYY-MM-DD.")
_PROVIDER_HINT = N_("Choose the provider whose statement this is.")
_FILE_HINT = N_("Choose a file to upload.")
_ACCOUNT_HINT = N_("Choose one of the accounts offered.")
_SAME_ACCOUNTS_HINT = N_("Choose two different accounts.")
_ITEM_HINT = N_("Reload the page and try again.")

#: The names of the shared accounts; a biller's accounts are named after the biller.
_ACCOUNT_NAMES: Mapping[str, str] = {
    ledger.SUSPENSE: N_("Suspense: not yet explained"),
    ledger.FEES: N_("Provider fees"),
    ledger.REFUNDS_PAYABLE: N_("Refunds owed to citizens"),
}
_CLEARING_NAME = N_("Clearing — %(provider)s")
_PAYABLE_NAME = N_("%(biller)s — payable")
_SETTLEMENT_NAME = N_("%(biller)s — being paid out")
#: What each memo code says (``pay.ledger.MEMO_CODES`` names the values).
MEMOS: Mapping[str, str] = {
    ledger.PAYMENT: N_("Payment %(trade_no)s"),
    ledger.LATE_PAYMENT: N_("Late payment %(trade_no)s, to be refunded"),
    ledger.REFUND: N_("Refund %(refund_no)s of %(trade_no)s"),
    ledger.SETTLEMENT: N_("Settlement of %(date)s"),
}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _e(attr: QueryableAttribute[Any]) -> ColumnElement[Any]:
    """A mapped attribute as the column expression a list selects."""
    return attr.expression


def _translator(request: Request) -> Callable[[str], str]:
    renderer, language = get_renderer(request), page_language(request)
    return lambda message: renderer.gettext(language, message)


def _biller_name(biller: Biller, language: str) -> str:
    return biller.name_zh if language == "zh" else biller.name_en


def account_name(
    code: str, billers: Mapping[str, Biller], tr: Callable[[str], str], language: str
) -> str:
    """Account ``code`` as a person reads it; the code itself when it names no biller we know."""
    if code in _ACCOUNT_NAMES:
        return tr(_ACCOUNT_NAMES[code])
    prefix, _, rest = code.partition(":")
    if prefix == "clearing":
        provider = LABELS["provider"].get(rest)
        return tr(_CLEARING_NAME) % {"provider": tr(provider) if provider else rest}
    biller = billers.get(rest)
    if biller is not None and prefix in ("payable", "settlement"):
        template = _PAYABLE_NAME if prefix == "payable" else _SETTLEMENT_NAME
        return tr(template) % {"biller": _biller_name(biller, language)}
    return code


def _account_name_sql(
    code: Any, biller: Any, tr: Callable[[str], str], language: str
) -> ColumnElement[str]:
    """:func:`account_name` in SQL, over an account's ``code`` and its biller (outer-joined)."""
    name = biller.name_zh if language == "zh" else biller.name_en
    whens: list[tuple[ColumnElement[bool], Any]] = [
        (code == shared, literal(tr(msgid))) for shared, msgid in _ACCOUNT_NAMES.items()
    ]
    for provider, msgid in LABELS["provider"].items():
        whens.append(
            (code == f"clearing:{provider}", literal(tr(_CLEARING_NAME) % {"provider": tr(msgid)}))
        )
    for prefix, template in (("payable", _PAYABLE_NAME), ("settlement", _SETTLEMENT_NAME)):
        before, _, after = tr(template).partition("%(biller)s")
        whens.append(
            (
                code.startswith(f"{prefix}:") & name.is_not(None),
                literal(before) + func.coalesce(name, "") + literal(after),
            )
        )
    return case(*whens, else_=code)


def _memo_sql(tr: Callable[[str], str]) -> ColumnElement[str]:
    """An entry's memo in the reader's language: its code's message with its values, else the
    memo as written."""
    whens: list[tuple[ColumnElement[bool], Any]] = []
    for code, msgid in MEMOS.items():
        pieces: list[Any] = []
        text = tr(msgid)
        position = 0
        for found in _PLACEHOLDER.finditer(text):
            pieces.append(literal(text[position : found.start()].replace("%%", "%")))
            pieces.append(
                func.coalesce(JournalEntry.memo_params[found.group(1)].as_string(), literal(""))
            )
            position = found.end()
        pieces.append(literal(text[position:].replace("%%", "%")))
        expr = pieces[0]
        for piece in pieces[1:]:
            expr = expr + piece
        whens.append((JournalEntry.memo_code == code, cast(expr, String)))
    return case(*whens, else_=JournalEntry.memo)


# --- ledger ------------------------------------------------------------------------------------


def _ledger_spec(
    request: Request, session: Session, actor: Actor, names: Mapping[str, str]
) -> lists.ListSpec:
    tr, language = _translator(request), page_language(request)
    rows = ledger.journal_rows(session=session, actor=actor)
    debit_name = _account_name_sql(rows.debit.code, rows.debit_biller, tr, language)
    credit_name = _account_name_sql(rows.credit.code, rows.credit_biller, tr, language)
    kinds = [(code, text) for code, text in LABELS["entry"].items()]

    def by_account(query: Any, value: str) -> Any:
        return query.where(ledger.account_scope(session=session, actor=actor, account_code=value))

    def by_kind(query: Any, value: str) -> Any:
        return query.where(JournalEntry.kind == value)

    def by_day(query: Any, bounds: tuple[Any, Any]) -> Any:
        start, end = bounds
        if start is not None:
            query = query.where(JournalEntry.posted_at >= start)
        if end is not None:
            query = query.where(JournalEntry.posted_at < end)
        return query

    def by_text(query: Any, value: str) -> Any:
        return query.where(
            or_(
                JournalEntry.reference == value,
                JournalEntry.memo.contains(value, autoescape=True),
            )
        )

    return lists.ListSpec(
        name="journal",
        title=N_("Journal entries"),
        query=rows.query,
        key=_e(JournalLine.id),
        columns=[
            lists.Column(
                "posted_at", N_("Time"), _e(JournalEntry.posted_at), "datetime", sortable=True
            ),
            lists.Column(
                "kind", N_("Kind"), _e(JournalEntry.kind), "label", labels=LABELS["entry"]
            ),
            lists.Column("debit_name", N_("Debit"), debit_name),
            lists.Column(
                "debit_code", N_("Debit account code"), _e(rows.debit.code), "code", show=False
            ),
            lists.Column("credit_name", N_("Credit"), credit_name),
            lists.Column(
                "credit_code", N_("Credit account code"), _e(rows.credit.code), "code", show=False
            ),
            lists.Column(
                "amount_fen", N_("Amount"), _e(JournalLine.amount_fen), "money", sortable=True
            ),
            lists.Column("memo", N_("Memo"), _memo_sql(tr)),
            lists.Column(
                "reference", N_("Reference"), _e(JournalEntry.reference), "code", show=False
            ),
            lists.Column("posted_by", N_("Posted by"), _e(JournalEntry.posted_by)),
        ],
        default_sort="posted_at",
        filters=[
            lists.Filter(
                "account",
                N_("Ledger account"),
                "choice",
                by_account,
                choices=sorted(names.items(), key=lambda pair: pair[1]),
                translate=False,
                max_length=120,
                refused=N_("You cannot read the entries of this account."),
            ),
            lists.Filter("kind", N_("Kind"), "choice", by_kind, choices=kinds),
            lists.Filter("posted", N_("Posted"), "date_range", by_day),
            lists.Filter(
                "q",
                N_("Reference or memo"),
                "text",
                by_text,
                hint=N_("A transaction or refund number, or words of an operator's memo."),
                max_length=100,
            ),
        ],
        totals=[lists.Total("amount", N_("Total moved"), _e(JournalLine.amount_fen))],
        empty=N_("No entries match."),
    )


@router.get("/ledger", name="pay.page.console_ledger")
def ledger_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> Response:
    """Account balances, and the journal (of one account, when chosen: ``?account=``) as a
    list with pages and exports."""
    if actor.roots(ledger.READ) == []:  # held nowhere: said so, not shown as an empty ledger
        return page(request, "pay/console/ledger.html", _ledger_refused())
    balances = ledger.balances(session=session, actor=actor)
    billers = {str(b.id): b for b in billing.list_billers(session=session, actor=actor)}
    tr, language = _translator(request), page_language(request)
    names = {b.code: account_name(b.code, billers, tr, language) for b in balances}
    spec = _ledger_spec(request, session, actor, names)
    chosen = request.query_params.get("account", "").strip()[:120]

    def render_page(view: lists.ListView) -> Response:
        return page(
            request,
            "pay/console/ledger.html",
            {
                "section": "pay",
                "pay_tab": "ledger",
                "allowed": True,
                "balances": balances,
                "names": names,
                "account": chosen if chosen in names else "",
                "account_label": names.get(chosen, chosen),
                "journal": view,
            },
        )

    return lists.respond(request, spec, session, render_page)


def _ledger_refused() -> dict[str, Any]:
    return {"section": "pay", "pay_tab": "ledger", "allowed": False}


# --- reconciliation ----------------------------------------------------------------------------


def _items_spec(request: Request, actor: Actor) -> lists.ListSpec:
    providers = [
        (name, LABELS["provider"].get(name, name)) for name in ("alipay", "wechatpay", "sandbox")
    ]
    classifications = [(code, LABELS["classification"][code]) for code in reconciliation.EXCEPTIONS]
    query = reconciliation.items_query(actor=actor)
    states = [("open", N_("Unresolved")), ("resolved", N_("Resolved"))]

    def by_state(q: Any, value: str) -> Any:
        resolved = ReconciliationItem.resolved_at
        return q.where(resolved.is_(None) if value == "open" else resolved.is_not(None))

    def by_classification(q: Any, value: str) -> Any:
        return q.where(ReconciliationItem.classification == value)

    def by_provider(q: Any, value: str) -> Any:
        return q.where(StatementImport.provider == value)

    def by_day(q: Any, days: lists.DayRange) -> Any:
        # A statement's business day is a date: the days as they were chosen.
        if days.first is not None:
            q = q.where(StatementImport.business_date >= days.first)
        if days.last is not None:
            q = q.where(StatementImport.business_date <= days.last)
        return q

    def by_number(q: Any, value: str) -> Any:
        # What an operator has in hand: our transaction number, the provider's, or a refund's.
        return q.where(
            (ReconciliationItem.trade_no == value.upper())
            | (ReconciliationItem.provider_trade_no == value)
            | (ReconciliationItem.refund_no == value.upper())
        )

    return lists.ListSpec(
        name="exceptions",
        title=N_("Reconciliation exceptions"),
        query=cast_type("Select[Any]", query),
        key=_e(ReconciliationItem.id),
        columns=[
            lists.Column(
                "imported_at",
                N_("Imported"),
                _e(StatementImport.imported_at),
                "datetime",
                sortable=True,
            ),
            lists.Column(
                "id", N_("Item"), _e(ReconciliationItem.id), "code", show=False, export=False
            ),
            lists.Column(
                "provider",
                N_("Provider"),
                _e(StatementImport.provider),
                "label",
                labels=LABELS["provider"],
            ),
            lists.Column(
                "business_date", N_("Business day"), _e(StatementImport.business_date), "date"
            ),
            lists.Column(
                "classification",
                N_("Classification"),
                _e(ReconciliationItem.classification),
                "label",
                labels=LABELS["classification"],
            ),
            lists.Column(
                "kind", N_("Kind"), _e(ReconciliationItem.kind), "label", labels=LABELS["item_kind"]
            ),
            lists.Column(
                "trade_no", N_("Transaction no."), _e(ReconciliationItem.trade_no), "code"
            ),
            lists.Column(
                "provider_trade_no",
                N_("Provider's transaction no."),
                _e(ReconciliationItem.provider_trade_no),
                "code",
            ),
            lists.Column("refund_no", N_("Refund no."), _e(ReconciliationItem.refund_no), "code"),
            lists.Column(
                "provider_amount_fen",
                N_("Provider's amount"),
                _e(ReconciliationItem.provider_amount_fen),
                "money",
            ),
            lists.Column(
                "our_amount_fen", N_("Our amount"), _e(ReconciliationItem.our_amount_fen), "money"
            ),
            lists.Column(
                "payment_id", N_("Payment"), _e(ReconciliationItem.payment_id), "code", export=False
            ),
            lists.Column(
                "resolved_at", N_("Resolved"), _e(ReconciliationItem.resolved_at), "datetime"
            ),
            lists.Column("resolved_by", N_("Resolved by"), _e(ReconciliationItem.resolved_by)),
        ],
        default_sort="imported_at",
        filters=[
            lists.Filter("state", N_("Resolution"), "choice", by_state, choices=states),
            lists.Filter(
                "classification",
                N_("Classification"),
                "choice",
                by_classification,
                choices=classifications,
            ),
            lists.Filter("provider", N_("Provider"), "choice", by_provider, choices=providers),
            lists.Filter("business", N_("Business day"), "date_range", by_day),
            lists.Filter(
                "number", N_("Transaction or refund no."), "text", by_number, max_length=64
            ),
        ],
        page_size=25,
        empty=N_("No exceptions match: every statement line matched."),
    )


@router.get("/reconciliation", name="pay.page.console_reconciliation")
def reconciliation_page(request: Request, session: SessionDep, actor: ConsoleActorDep) -> Response:
    """Imported statements, the exceptions they raised (those of one's billers below platform
    level), the latest import first, and the forms to import and resolve."""
    return _reconciliation_response(request, session, actor)


def _reconciliation_response(
    request: Request,
    session: Session,
    actor: Actor,
    slot: str | None = None,
    rejected: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    try:
        spec = _items_spec(request, actor)
    except PermissionDenied:
        return page(request, "pay/console/reconciliation.html", _reconciliation_refused())

    def render_page(view: lists.ListView) -> Response:
        context = _reconciliation_context(request, session, actor, view)
        if slot is not None and rejected is not None:
            context[slot] = rejected
        return page(request, "pay/console/reconciliation.html", context, status_code=status_code)

    return lists.respond(request, spec, session, render_page)


def _reconciliation_refused() -> dict[str, Any]:
    return {"section": "pay", "pay_tab": "reconciliation", "allowed": False}


def _reconciliation_context(
    request: Request, session: Session, actor: Actor, view: lists.ListView
) -> dict[str, Any]:
    reconciler = reconciliation.may_reconcile(actor)
    providers = offered_providers(pay_context(request))
    context: dict[str, Any] = {
        "section": "pay",
        "pay_tab": "reconciliation",
        "allowed": True,
        "reconciler": reconciler,
        "providers": providers,
        "sandbox": reconciler and "sandbox" in pay_context(request).providers,
        "form": _form({"business_date": (beijing_now() - timedelta(days=1)).date().isoformat()}),
        "resolve": _form(),
        "exceptions": view,
        "imports": [],
        "summaries": {},
        "waiting": set(),
        "suggestions": {},
        "options": {},
    }
    found = reconciliation.items_by_id(
        session=session, actor=actor, item_ids=[row["id"] for row in view.page.rows]
    )
    by_id = {item.id: item for item in found}
    items = [by_id[row["id"]] for row in view.page.rows if row["id"] in by_id]
    context["items"] = items
    context["waiting"] = reconciliation.waiting_for_refund(session=session, items=items)
    if reconciler:
        imports = reconciliation.list_imports(session=session, actor=actor, limit=20)
        context["imports"] = imports
        context["summaries"] = {
            i.id: reconciliation.import_summary(session=session, actor=actor, import_id=i.id)
            for i in imports
        }
        accounts = reconciliation.adjustment_accounts_of(session=session, actor=actor, items=items)
        billers = {str(b.id): b for b in billing.list_billers(session=session, actor=actor)}
        tr, language = _translator(request), page_language(request)
        context["options"] = {
            item_id: [(code, account_name(code, billers, tr, language)) for code in codes]
            for item_id, codes in accounts.items()
        }
        context["suggestions"] = {
            item.id: _suggestion(item, accounts.get(item.id, [])) for item in items
        }
    return context


@router.get("/reconciliation/sandbox-statement.csv", name="pay.page.console_sandbox_statement")
def sandbox_statement(
    request: Request,
    actor: ConsoleActorDep,
    business_date: Annotated[str, Query(alias="date", max_length=20)] = "",
) -> Response:
    """Download the sandbox's statement of a business day, to try an import with."""
    day = _parse_date(business_date)
    provider = pay_context(request).providers.get("sandbox")
    content = reconciliation.sandbox_statement(actor=actor, provider=provider, business_date=day)
    return Response(
        content,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="sandbox-{business_date}.csv"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


@router.post("/reconciliation", name="pay.page.console_statement")
def import_statement(
    request: Request,
    session: SessionDep,
    actor: ConsoleActorDep,
    upload: UploadDep,
    provider: Annotated[str, Form(max_length=20)] = "",
    business_date: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Import a provider's statement of one day and classify every line; moves no money."""
    content = upload.content
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
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Resolve an exception with an adjustment posted to the ledger (audited, once), in two
    steps: the form is answered with a confirmation repeating the amount and the two accounts,
    and only its button posts."""
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
    if not memo.strip() or len(memo.strip()) > 300:
        errors["memo"] = _REASON_HINT
    offered: list[str] = []
    if item is not None:
        try:
            offered = reconciliation.adjustment_accounts(session=session, actor=actor, item_id=item)
        except NotFound:
            errors["item_id"] = _ITEM_HINT
    for field in ("debit_code", "credit_code"):
        if values[field] not in offered:
            errors[field] = _ACCOUNT_HINT
    if not errors and debit_code == credit_code:
        errors["credit_code"] = _SAME_ACCOUNTS_HINT
    if errors or item is None or fen is None:
        raise _reconciliation_rejected(request, session, actor, "resolve", values, errors)
    if confirm != "yes":
        billers = {str(b.id): b for b in billing.list_billers(session=session, actor=actor)}
        tr, language = _translator(request), page_language(request)
        found = session.get(ReconciliationItem, item)
        return page(
            request,
            "pay/console/resolve_confirm.html",
            {
                "section": "pay",
                "pay_tab": "reconciliation",
                "item": found,
                "values": values,
                "amount_fen": fen,
                "debit_name": account_name(debit_code, billers, tr, language),
                "credit_name": account_name(credit_code, billers, tr, language),
            },
        )
    try:
        reconciliation.resolve_item(
            session=session,
            actor=actor,
            item_id=item,
            debit_code=debit_code,
            credit_code=credit_code,
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
    response = _reconciliation_response(
        request,
        session,
        actor,
        slot,
        _rejected_form(values, errors, summary),
        status_code,
    )
    response.status_code = status_code
    assert isinstance(response, HTMLResponse)
    return FormRejected(response)


def _suggestion(item: ReconciliationItem, offered: Sequence[str]) -> dict[str, str]:
    """A starting point for the adjustment form: the difference, between clearing and suspense."""
    clearing = next((code for code in offered if code.startswith("clearing:")), "")
    theirs, ours = item.provider_amount_fen or 0, item.our_amount_fen or 0
    # Positive: the provider holds money our books do not show; negative: the other way round.
    difference = {
        reconciliation.MISSING_OURS: theirs,
        reconciliation.MISSING_PROVIDER: -ours,
        reconciliation.AMOUNT_MISMATCH: theirs - ours,
        reconciliation.DUPLICATE: theirs,
    }.get(item.classification, 0)
    # Money not yet explained waits in suspense until an operator explains it.
    debit, credit = (clearing, ledger.SUSPENSE) if difference > 0 else (ledger.SUSPENSE, clearing)
    return {
        "item_id": str(item.id),
        "debit_code": debit,
        "credit_code": credit,
        "amount": yuan_text(abs(difference)) if difference else "",
        "memo": "",
    }
