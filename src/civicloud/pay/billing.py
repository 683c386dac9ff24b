"""Billers and their bills: publishing (JSON batches and CSV files), amending, cancelling, and the
citizens' public look-up."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from civicloud.core import audit
from civicloud.core.actor import Actor, authorize
from civicloud.core.caches import invalidate_on_commit
from civicloud.core.dates import MAX_DATE, MIN_DATE
from civicloud.core.errors import InvalidInput, format_message
from civicloud.core.patterns import TenantPattern, compile_pattern
from civicloud.core.tenants import Tenant, resolve_tenant
from civicloud.core.text import invisible_character, typed_forms
from civicloud.pay.errors import (
    BillAlreadyPaid,
    BillBeingPaid,
    BillerNotFound,
    BillNotFound,
    ImportRejected,
)
from civicloud.pay.models import Bill, Biller, BillStatus, PaymentBill
from civicloud.pay.origins import check_return_origins
from civicloud.pay.schemas import (
    BILL_DETAILS,
    MAX_AMOUNT_FEN,
    BillAmend,
    BillerCreate,
    BillerUpdate,
    BillIn,
    ImportReport,
    PublicBill,
    RowError,
)

BILLER_READ = "pay.biller.read"
BILLER_ADMIN = "pay.biller.admin"
BILL_WRITE = "pay.bill.write"
#: The ``core.caches`` cache of billers' names that lists offer (``pay.listings``).
BILLER_NAMES = "pay.biller_names"
CSV_COLUMNS = ("bill_number", "account_number", "payer_name", "amount", "period", "due_date")
#: Optional CSV columns that make up a bill's ``details`` (a traffic fine's decision).
DETAIL_COLUMNS = ("decision_number", "offence_time", "place", "offence", "offence_code", "points")
MAX_IMPORT_BYTES = 5 * 1024 * 1024
#: The longest account number a bill may carry (the column's width).
MAX_ACCOUNT_LENGTH = 64

#: Why an import refuses a row: each reason's stable code (a :class:`RowError`'s ``code``) and
#: its English template, which is also its msgid; ``field`` names the column (``due_date``,
#: ``details.place``), amounts are ``*_fen`` parameters.
ROW_REASONS: Mapping[str, str] = {
    "pay.import.not_an_object": "the line is not an object with a bill's fields",
    "pay.import.missing": "%(field)s is missing",
    "pay.import.unknown_field": "%(field)s is not a field of a bill",
    "pay.import.empty": "%(field)s is empty",
    "pay.import.too_short": "%(field)s must have at least %(min_length)s characters",
    "pay.import.too_long": "%(field)s is longer than %(max_length)s characters",
    "pay.import.wrong_format": "%(field)s has the wrong format",
    "pay.import.not_a_number": "%(field)s must be a whole number",
    "pay.import.not_an_amount": "%(field)s must be an amount in yuan with at most two decimals, "
    "such as 52.31",
    "pay.import.not_more_than": "%(field)s must be more than %(limit)s",
    "pay.import.less_than_minimum": "%(field)s must be at least %(limit)s",
    "pay.import.not_less_than": "%(field)s must be less than %(limit)s",
    "pay.import.more_than_maximum": "%(field)s must be at most %(limit)s",
    "pay.import.not_a_date": "%(field)s must be a date written as YYYY-MM-DD",
    "pay.import.not_a_time": "%(field)s must be a time with its zone, such as "
    "2026-11-03T08:42:00+08:00",
    "pay.import.date_out_of_range": "%(field)s must be between %(min)s and %(max)s",
    "pay.import.invisible_character": "%(field)s contains %(character)s, an invisible, control "
    "or direction-changing character that could make a page show something else",
    "pay.import.not_allowed": "%(field)s must be %(expected)s",
    "pay.import.invalid_value": "%(field)s is not valid",
    "pay.import.wrong_account_format": "%(field)s has the wrong format for this biller",
    "pay.import.details_not_taken": "details: bills of this biller carry no details",
    "pay.import.details_missing": "details: a bill of this biller needs its details (%(fields)s)",
    "pay.import.repeated": "bill_number repeats line %(first_line)s",
    "pay.import.published_already": "bill_number is published already",
}
#: Pydantic's kinds of validation error, by the code of the reason they give a row.
_VALIDATION_CODES: Mapping[str, str] = {
    "model_type": "pay.import.not_an_object",
    "model_attributes_type": "pay.import.not_an_object",
    "dict_type": "pay.import.not_an_object",
    "missing": "pay.import.missing",
    "extra_forbidden": "pay.import.unknown_field",
    "string_too_long": "pay.import.too_long",
    "string_pattern_mismatch": "pay.import.wrong_format",
    "int_type": "pay.import.not_a_number",
    "int_parsing": "pay.import.not_a_number",
    "int_from_float": "pay.import.not_a_number",
    "greater_than": "pay.import.not_more_than",
    "greater_than_equal": "pay.import.less_than_minimum",
    "less_than": "pay.import.not_less_than",
    "less_than_equal": "pay.import.more_than_maximum",
    "date_type": "pay.import.not_a_date",
    "date_parsing": "pay.import.not_a_date",
    "date_from_datetime_parsing": "pay.import.not_a_date",
    "date_from_datetime_inexact": "pay.import.not_a_date",
    "datetime_type": "pay.import.not_a_time",
    "datetime_parsing": "pay.import.not_a_time",
    "datetime_from_date_parsing": "pay.import.not_a_time",
    "timezone_aware": "pay.import.not_a_time",
    "literal_error": "pay.import.not_allowed",
}
#: Fields holding dates and times, whose own check is their range.
_DATE_FIELDS = frozenset({"due_date", "offence_time"})


# --- billers -------------------------------------------------------------------------------


def create_biller(*, session: Session, actor: Actor, data: BillerCreate) -> Biller:
    """Register a biller for an agency or enterprise tenant."""
    tenant = resolve_tenant(session=session, tenant_id=data.tenant_id)
    if tenant is None:
        raise BillerNotFound("no such tenant", resource="tenant")
    authorize(actor, BILLER_ADMIN, path=tenant.path, what="tenant")
    if tenant.kind not in ("agency", "enterprise"):
        raise InvalidInput("a biller belongs to an agency or an enterprise")
    compile_pattern(data.account_pattern)  # the schema checked it; a direct caller may not
    origins = check_return_origins(data.return_origins)
    taken = session.scalars(
        select(Biller.id).where(Biller.tenant_id == tenant.id, Biller.code == data.code)
    ).first()
    if taken is not None:
        raise InvalidInput(
            "the tenant has a biller with code %(code)s already", params={"code": data.code}
        )
    biller = Biller(id=uuid.uuid4(), **data.model_dump(mode="python"))
    biller.category = data.category.value
    biller.return_origins = origins
    session.add(biller)
    invalidate_on_commit(session, BILLER_NAMES)
    audit.record(
        session=session,
        actor=actor,
        action="pay.biller.create",
        tenant_id=tenant.id,
        target=f"biller:{data.code}",
    )
    return biller


def update_biller(
    *, session: Session, actor: Actor, biller_id: uuid.UUID, data: BillerUpdate
) -> Biller:
    """Change a biller's return origins (the list is replaced) or its settlement account."""
    biller = get_biller_or_raise(
        session=session, actor=actor, biller_id=biller_id, permission=BILLER_ADMIN
    )
    changes: dict[str, dict[str, Any]] = {}
    if data.return_origins is not None:
        origins = check_return_origins(data.return_origins)
        changes["return_origins"] = {"before": list(biller.return_origins), "after": origins}
        biller.return_origins = origins
    for name in ("settlement_bank", "settlement_account", "settlement_account_name"):
        value = getattr(data, name)
        if value is not None and value != getattr(biller, name):
            changes[name] = {"before": getattr(biller, name), "after": value}
            setattr(biller, name, value)
    if changes:
        audit.record(
            session=session,
            actor=actor,
            action="pay.biller.update",
            tenant_id=biller.tenant_id,
            target=f"biller:{biller.code}",
            detail=changes,
        )
    invalidate_on_commit(session, BILLER_NAMES)
    return biller


def get_biller(*, session: Session, biller_id: uuid.UUID) -> Biller | None:
    """The biller with no access check, or ``None``."""
    return session.get(Biller, biller_id)


def get_biller_or_raise(
    *, session: Session, actor: Actor, biller_id: uuid.UUID, permission: str = BILLER_READ
) -> Biller:
    """The biller if ``actor`` holds ``permission`` at its tenant (404 if it cannot see it)."""
    biller = session.get(Biller, biller_id)
    tenant = resolve_tenant(session=session, tenant_id=biller.tenant_id) if biller else None
    if biller is None or tenant is None:
        raise BillerNotFound("no such biller", resource="biller")
    authorize(actor, permission, path=tenant.path, what="biller")
    return biller


def list_billers(
    *, session: Session, actor: Actor, tenant_id: uuid.UUID | None = None
) -> Sequence[Biller]:
    """Billers of tenants where the actor may read billers."""
    from civicloud.core.tenants import Tenant, in_subtrees

    query = (
        select(Biller)
        .join(Tenant, Tenant.id == Biller.tenant_id)
        .where(in_subtrees(Tenant.path, actor.roots(BILLER_READ)))
    )
    if tenant_id is not None:
        scope = resolve_tenant(session=session, tenant_id=tenant_id)
        if scope is None or not actor.sees(scope.path):
            raise BillerNotFound("no such tenant", resource="tenant")
        query = query.where(in_subtrees(Tenant.path, [scope.path]))
    return session.scalars(query.order_by(Biller.code)).all()


def public_billers(*, session: Session, under: uuid.UUID | None = None) -> Sequence[Biller]:
    """Every biller (below the tenant ``under``), for citizens choosing whom to pay."""
    from civicloud.core.tenants import Tenant, in_subtrees

    query = select(Biller).join(Tenant, Tenant.id == Biller.tenant_id)
    if under is not None:
        scope = resolve_tenant(session=session, tenant_id=under)
        if scope is None:
            return []
        query = query.where(in_subtrees(Tenant.path, [scope.path]))
    return session.scalars(query.order_by(Tenant.path, Biller.code)).all()


# --- publishing bills ----------------------------------------------------------------------


def import_bills(
    *,
    session: Session,
    actor: Actor,
    biller_id: uuid.UUID,
    rows: Sequence[dict[str, Any]],
    partial: bool = False,
    first_line: int = 1,
    source: str = "json",
) -> ImportReport:
    """Validate every row and publish the bills; a bad row changes nothing unless ``partial``."""
    biller = get_biller_or_raise(
        session=session, actor=actor, biller_id=biller_id, permission=BILL_WRITE
    )
    pattern = compile_pattern(biller.account_pattern)
    errors: list[RowError] = []
    good: list[BillIn] = []
    seen: dict[str, int] = {}
    for offset, row in enumerate(rows):
        line = first_line + offset
        number = row.get("bill_number") if isinstance(row, dict) else None
        label = number if isinstance(number, str) else None
        try:
            bill = BillIn.model_validate(row)
        except ValidationError as exc:
            errors.append(row_error(line, label, *_first_error(exc, source=source)))
            continue
        account = normalise_account(pattern, bill.account_number)
        details, wrong = _details(biller.category, bill.details)
        if account is None:
            errors.append(
                row_error(
                    line, label, "pay.import.wrong_account_format", {"field": "account_number"}
                )
            )
        elif wrong is not None:
            errors.append(row_error(line, label, *wrong))
        elif bill.bill_number in seen:
            errors.append(
                row_error(
                    line, label, "pay.import.repeated", {"first_line": seen[bill.bill_number]}
                )
            )
        else:
            seen[bill.bill_number] = line
            good.append(bill.model_copy(update={"account_number": account, "details": details}))
    existing = _existing_numbers(session, biller.id, [b.bill_number for b in good])
    if existing:
        kept = []
        for bill in good:
            if bill.bill_number in existing:
                errors.append(
                    row_error(
                        seen[bill.bill_number], bill.bill_number, "pay.import.published_already"
                    )
                )
            else:
                kept.append(bill)
        good = kept
    errors.sort(key=lambda e: e.line)
    report = ImportReport(
        accepted=len(good), refused=len(errors), errors=errors, applied=not errors or partial
    )
    if errors and not partial:
        raise ImportRejected(
            "%(refused)s of %(total)s rows are invalid; nothing was imported",
            params={"refused": len(errors), "total": len(rows)},
            errors=[e.model_dump() for e in errors],
        )
    for bill in good:
        session.add(
            Bill(
                id=uuid.uuid4(),
                biller_id=biller.id,
                bill_number=bill.bill_number,
                account_number=bill.account_number,
                payer_name=bill.payer_name,
                amount_fen=bill.amount_fen,
                currency=bill.currency,
                period=bill.period,
                due_date=bill.due_date,
                late_fee_rule=bill.late_fee_rule.model_dump() if bill.late_fee_rule else None,
                details=bill.details,
                status=BillStatus.OPEN.value,
            )
        )
    audit.record(
        session=session,
        actor=actor,
        action="pay.bill.import",
        tenant_id=biller.tenant_id,
        target=f"biller:{biller.code}",
        detail={"source": source, "accepted": len(good), "refused": len(errors)},
    )
    return report


def import_bills_csv(
    *, session: Session, actor: Actor, biller_id: uuid.UUID, content: bytes, partial: bool = False
) -> ImportReport:
    """Publish the bills of a CSV file; errors name the file's lines (the header is line 1)."""
    get_biller_or_raise(session=session, actor=actor, biller_id=biller_id, permission=BILL_WRITE)
    return import_bills(
        session=session,
        actor=actor,
        biller_id=biller_id,
        rows=parse_csv(content),
        partial=partial,
        first_line=2,
        source="csv",
    )


def row_error(
    line: int, bill_number: str | None, code: str, params: Mapping[str, Any] | None = None
) -> RowError:
    """A refused row: its reason's ``code`` and parameters, and the reason in English."""
    values = dict(params or {})
    return RowError(
        line=line,
        bill_number=bill_number,
        code=code,
        reason=format_message(ROW_REASONS[code], values),
        params=values,
    )


#: A row's refusal: the code of its reason and the reason's parameters.
Refusal = tuple[str, dict[str, Any]]


def _first_error(exc: ValidationError, prefix: str = "", source: str = "json") -> Refusal:
    """The first validation error of a row as a reason (``ROW_REASONS``) naming its column."""
    first = exc.errors()[0]
    location = [str(part) for part in first["loc"]]
    if source == "csv" and location == ["amount_fen"]:
        location = ["amount"]  # the file's column: yuan, read into fen
    field = ".".join([prefix, *location] if prefix else location)
    kind = str(first["type"])
    context: Mapping[str, Any] = first.get("ctx") or {}
    code = _VALIDATION_CODES.get(kind, "pay.import.invalid_value")
    params: dict[str, Any] = {"field": field}
    if not field and code != "pay.import.not_an_object":
        return "pay.import.not_an_object", {}
    if kind == "string_too_short":
        minimum = int(context.get("min_length", 1))
        if minimum <= 1:
            return "pay.import.empty", params
        return "pay.import.too_short", {**params, "min_length": minimum}
    if kind == "string_too_long":
        params["max_length"] = context.get("max_length")
    elif field == "amount" and code == "pay.import.not_a_number":
        code = "pay.import.not_an_amount"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        limit = next((context[k] for k in ("gt", "ge", "lt", "le") if k in context), "")
        params["limit_fen" if field.endswith("_fen") or field == "amount" else "limit"] = limit
    elif kind == "literal_error":
        params["expected"] = context.get("expected", "")
    elif kind == "value_error":
        typed = first.get("input")
        character = invisible_character(typed) if isinstance(typed, str) else None
        if character is not None:
            code, params["character"] = "pay.import.invisible_character", character
        elif location and location[-1] in _DATE_FIELDS:
            code = "pay.import.date_out_of_range"
            params.update(min=MIN_DATE.isoformat(), max=MAX_DATE.isoformat())
    return code, params


def _details(
    category: str, given: Mapping[str, Any] | None
) -> tuple[dict[str, Any] | None, Refusal | None]:
    """A bill's ``details`` checked against its biller's kind: (what to store, why refused)."""
    shape = BILL_DETAILS.get(category)
    if shape is None:
        return None, (("pay.import.details_not_taken", {}) if given else None)
    if given is None:
        fields = ", ".join(name for name, f in shape.model_fields.items() if f.is_required())
        return None, ("pay.import.details_missing", {"fields": fields})
    try:
        return shape.model_validate(given).model_dump(mode="json", exclude_none=True), None
    except ValidationError as exc:
        return None, _first_error(exc, "details")


def _existing_numbers(session: Session, biller_id: uuid.UUID, numbers: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(numbers), 500):
        chunk = numbers[start : start + 500]
        found.update(
            session.scalars(
                select(Bill.bill_number).where(
                    Bill.biller_id == biller_id, Bill.bill_number.in_(chunk)
                )
            )
        )
    return found


def parse_csv(content: bytes) -> list[dict[str, Any]]:
    """Rows of a bills CSV (UTF-8, header ``bill_number,account_number,payer_name,amount,period,
    due_date``, amount in yuan with at most two decimals; a traffic fine's file adds the
    :data:`DETAIL_COLUMNS`, which become its ``details``); raises ``InvalidInput`` for a file
    that cannot be read at all."""
    if len(content) > MAX_IMPORT_BYTES:
        raise InvalidInput(
            "the file is larger than %(max_mb)s MB", params={"max_mb": MAX_IMPORT_BYTES // 2**20}
        )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            "the file is not UTF-8 (byte %(byte)s); save it as UTF-8 and upload it again",
            params={"byte": exc.start},
        ) from None
    if "\x00" in text:
        raise InvalidInput("the file contains NUL characters")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = tuple(reader.fieldnames or ())
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise InvalidInput(
            "the header lacks %(missing)s; it needs %(columns)s",
            params={"missing": ", ".join(missing), "columns": ",".join(CSV_COLUMNS)},
        )
    rows: list[dict[str, Any]] = []
    extras = [c for c in DETAIL_COLUMNS if c in header]
    try:
        for record in reader:
            row: dict[str, Any] = {
                k: (v or "").strip() for k, v in record.items() if k in CSV_COLUMNS
            }
            row["amount_fen"] = _yuan_to_fen(row.pop("amount", ""))
            details: dict[str, Any] = {
                k: (record.get(k) or "").strip() for k in extras if (record.get(k) or "").strip()
            }
            if str(details.get("points", "x")).isdigit():
                details["points"] = int(details["points"])
            if details:
                row["details"] = details
            rows.append(row)
    except csv.Error as exc:
        raise InvalidInput(
            "the CSV is malformed near line %(line)s: %(reason)s",
            params={"line": reader.line_num, "reason": str(exc)},
        ) from None
    return rows


def _yuan_to_fen(text: str) -> int | str:
    """Exact yuan → fen; anything that is not a plain amount is passed on for validation to refuse."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return text
    if (
        not value.is_finite()
        or value != value.quantize(Decimal("0.01"))
        or abs(value) > MAX_AMOUNT_FEN
    ):
        return text
    return int(value * 100)


# --- amending and cancelling ---------------------------------------------------------------


def get_bill_or_raise(
    *, session: Session, actor: Actor, bill_id: uuid.UUID, permission: str = BILLER_READ
) -> Bill:
    """The bill if ``actor`` holds ``permission`` at its biller's tenant (404 otherwise)."""
    bill = session.get(Bill, bill_id)
    if bill is None:
        raise BillNotFound("no such bill", resource="bill")
    try:
        get_biller_or_raise(
            session=session, actor=actor, biller_id=bill.biller_id, permission=permission
        )
    except BillerNotFound as exc:
        raise BillNotFound("no such bill", resource="bill") from exc
    return bill


def _lock_changeable(session: Session, bill: Bill) -> None:
    # Lock the bill row so that no payment can start on it while it changes (PostgreSQL; SQLite
    # writers are serialised already).
    session.refresh(bill, with_for_update=True)
    if bill.status == BillStatus.PAID.value:
        raise BillAlreadyPaid("the bill is paid")
    if bill.status == BillStatus.CANCELLED.value:
        raise BillAlreadyPaid("the bill is cancelled")
    in_flight = session.scalars(
        select(PaymentBill.payment_id).where(PaymentBill.bill_id == bill.id, PaymentBill.active)
    ).first()
    if in_flight is not None:
        raise BillBeingPaid("the bill is being paid; try again when that payment has ended")


def cancel_bill(*, session: Session, actor: Actor, bill_id: uuid.UUID) -> Bill:
    """Withdraw an open bill that nobody is paying."""
    bill = get_bill_or_raise(session=session, actor=actor, bill_id=bill_id, permission=BILL_WRITE)
    _lock_changeable(session, bill)
    bill.status = BillStatus.CANCELLED.value
    biller = session.get(Biller, bill.biller_id)
    audit.record(
        session=session,
        actor=actor,
        action="pay.bill.cancel",
        tenant_id=biller.tenant_id if biller else None,
        target=f"bill:{bill.bill_number}",
    )
    return bill


def amend_bill(*, session: Session, actor: Actor, bill_id: uuid.UUID, data: BillAmend) -> Bill:
    """Change the amount or due date of an open bill that nobody is paying."""
    bill = get_bill_or_raise(session=session, actor=actor, bill_id=bill_id, permission=BILL_WRITE)
    _lock_changeable(session, bill)
    if data.version is not None and data.version != bill.version:
        raise BillBeingPaid(
            "the bill changed meanwhile (version %(version)s); reload it",
            params={"version": bill.version},
        )
    before = {"amount_fen": bill.amount_fen, "due_date": bill.due_date.isoformat()}
    if data.amount_fen is not None:
        bill.amount_fen = data.amount_fen
    if data.due_date is not None:
        bill.due_date = data.due_date
    biller = session.get(Biller, bill.biller_id)
    audit.record(
        session=session,
        actor=actor,
        action="pay.bill.amend",
        tenant_id=biller.tenant_id if biller else None,
        target=f"bill:{bill.bill_number}",
        detail={"before": before},
    )
    return bill


# --- citizens' look-up ---------------------------------------------------------------------


def mask_name(name: str) -> str:
    """A payer's name as a stranger may see it: 张三丰 → 张*丰, 张三 → 张*, Li Wei → L****i."""
    chars = list(name.strip())
    if len(chars) <= 1:
        return "*"
    if len(chars) == 2:
        return chars[0] + "*"
    return chars[0] + "*" * (len(chars) - 2) + chars[-1]


def normalise_account(pattern: TenantPattern, typed: str) -> str | None:
    """The account number as the biller writes it, from what a person typed (full-width digits,
    spaces, either case); ``None`` when no such reading matches the biller's pattern.

    The readings are tried in the order of :func:`civicloud.core.text.typed_forms`, so a value
    that matches as it is stays as it is: bills imported before folding are found the same.
    """
    for candidate in typed_forms(typed):
        if len(candidate) <= MAX_ACCOUNT_LENGTH and pattern.fullmatch(candidate):
            return candidate
    return None


def late_fee_fen(bill: Bill, today: date) -> int:
    """The late fee owed on ``today``: basis points of the amount per day overdue, capped."""
    return late_fee(
        amount_fen=bill.amount_fen, due_date=bill.due_date, rule=bill.late_fee_rule, today=today
    )


def late_fee(
    *, amount_fen: int, due_date: date, rule: Mapping[str, Any] | None, today: date
) -> int:
    """:func:`late_fee_fen` of a bill's parts: its amount, due date and late-fee rule."""
    if not rule or today <= due_date:
        return 0
    days = (today - due_date).days
    fee = amount_fen * int(rule["per_day_basis_points"]) * days // 10_000
    return int(min(fee, int(rule["cap_fen"])))


def lookup_open_bills(
    *, session: Session, biller_id: uuid.UUID, account_number: str, today: date
) -> list[PublicBill]:
    """A citizen's open bills at one biller (public; the caller rate-limits per client)."""
    biller = session.get(Biller, biller_id)
    if biller is None:
        raise BillerNotFound("no such biller", resource="biller")
    if not account_number.strip():
        raise InvalidInput("enter the account number")
    account = normalise_account(compile_pattern(biller.account_pattern), account_number)
    if account is None:
        raise InvalidInput("that is not an account number of this biller")
    bills = session.scalars(
        select(Bill)
        .where(
            Bill.biller_id == biller.id,
            Bill.account_number == account,
            Bill.status == BillStatus.OPEN.value,
        )
        .order_by(Bill.due_date, Bill.bill_number)
    ).all()
    return [_public(bill, today) for bill in bills]


def _public(bill: Bill, today: date) -> PublicBill:
    fee = late_fee_fen(bill, today)
    return PublicBill(
        id=bill.id,
        bill_number=bill.bill_number,
        payer_name_masked=mask_name(bill.payer_name),
        amount_fen=bill.amount_fen,
        late_fee_fen=fee,
        total_fen=bill.amount_fen + fee,
        currency=bill.currency,
        period=bill.period,
        due_date=bill.due_date,
        details=bill.details,
    )


# --- listings for the pages ----------------------------------------------------------------

#: The order citizens look for billers in: utilities first, then fines and fees.
CATEGORY_ORDER = {"water": 0, "power": 1, "gas": 2, "fine": 3, "fee": 4}


@dataclass(frozen=True)
class City:
    """A city and the billers citizens can pay below it."""

    tenant: Tenant
    billers: list[Biller]


def cities_with_billers(*, session: Session) -> list[City]:
    """Every city with billers below it, each with those billers (public)."""
    billers = public_billers(session=session)
    if not billers:
        return []
    homes = {
        t.id: t
        for t in session.scalars(
            select(Tenant).where(Tenant.id.in_({b.tenant_id for b in billers}))
        )
    }
    # A tenant's path names every ancestor: /<root>/<…>/<itself>/.
    ancestry = {
        home_id: [uuid.UUID(part) for part in home.path.strip("/").split("/")]
        for home_id, home in homes.items()
    }
    above = {i for ids in ancestry.values() for i in ids}
    cities = {
        t.id: City(t, [])
        for t in session.scalars(select(Tenant).where(Tenant.id.in_(above), Tenant.kind == "city"))
    }
    # Utilities first, as citizens look for them most, then fines and fees.
    for biller in sorted(billers, key=lambda b: (CATEGORY_ORDER.get(b.category, 9), b.name_zh)):
        for tenant_id in ancestry.get(biller.tenant_id, []):
            if tenant_id in cities:
                cities[tenant_id].billers.append(biller)
                break
    return sorted(cities.values(), key=lambda c: c.tenant.path)


def bill_counts(
    *, session: Session, biller_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """How many bills of each status each of these billers has (callers pass visible billers)."""
    counts: dict[uuid.UUID, dict[str, int]] = {b: {} for b in biller_ids}
    if biller_ids:
        rows = session.execute(
            select(Bill.biller_id, Bill.status, func.count())
            .where(Bill.biller_id.in_(list(biller_ids)))
            .group_by(Bill.biller_id, Bill.status)
        ).all()
        for biller_id, status, count in rows:
            counts[biller_id][status] = int(count)
    return counts


def list_bills(
    *,
    session: Session,
    actor: Actor,
    biller_id: uuid.UUID,
    search: str = "",
    status: str = "",
    limit: int = 100,
) -> tuple[Biller, Sequence[Bill]]:
    """A biller (``pay.biller.read`` there) and its bills, by bill or account number prefix."""
    biller = get_biller_or_raise(session=session, actor=actor, biller_id=biller_id)
    query = select(Bill).where(Bill.biller_id == biller.id)
    if search:
        query = query.where(
            or_(
                Bill.bill_number.startswith(search, autoescape=True),
                Bill.account_number.startswith(search, autoescape=True),
            )
        )
    if status:
        query = query.where(Bill.status == status)
    bills = session.scalars(
        query.order_by(Bill.due_date.desc(), Bill.bill_number).limit(limit)
    ).all()
    return biller, bills
