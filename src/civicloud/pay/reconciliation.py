"""Reconciliation: a provider's daily statement, line by line, against our payments and refunds.

Importing a statement changes no money. Every statement line becomes one classified item:

- ``matched``: we hold the same trade with the same amount as received (a succeeded payment,
  or a late payment whose automatic refund was asked for) or refunded (a succeeded refund).
- ``missing_ours``: the provider took (or gave back) money we have no record of.
- ``amount_mismatch``: the trade is ours but the amounts differ.
- ``duplicate``: the same trade a second time in this statement, or a payment already matched
  by the statement of another day.

and every succeeded payment or refund of ours that falls in the business day (China Standard
Time, see ``pay.settlement``) and is absent from the statement becomes ``missing_provider`` (a
payment the statement of another day matched already is not reported again). Payment lines are
matched by our ``trade_no``. Refund lines are matched to a refund of that trade not matched yet:
by number when the adapter puts our ``refund_no`` or the provider's refund number in
``provider_trade_no``, else by amount (the statements of Alipay, WeChat Pay and the sandbox name
a refund by its trade only); a refund line with no refund left for it is a ``duplicate`` when an
identical line came before, else ``missing_ours``. Refund items carry negative amounts, as
statements show them. Only exceptions need an operator: :func:`resolve_item` posts an adjustment (audited)
and marks the item resolved, once.

A statement file is imported once: ``content_sha256`` is unique. A corrected statement of the
same day is a different file; it is classified on its own.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime

from sqlalchemy import Exists, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from civicloud.core import audit
from civicloud.core.actor import Actor
from civicloud.core.db import new_id, utcnow
from civicloud.core.errors import (
    CivicloudError,
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
)
from civicloud.pay import ledger
from civicloud.pay.backends import PaymentProvider, StatementLine
from civicloud.pay.models import (
    JournalEntry,
    Payment,
    PaymentStatus,
    ReconciliationItem,
    Refund,
    RefundStatus,
    StatementImport,
)
from civicloud.pay.settlement import business_day_bounds

PERMISSION = "pay.reconcile"
MATCHED = "matched"
MISSING_OURS = "missing_ours"
MISSING_PROVIDER = "missing_provider"
AMOUNT_MISMATCH = "amount_mismatch"
DUPLICATE = "duplicate"
EXCEPTIONS = (MISSING_OURS, MISSING_PROVIDER, AMOUNT_MISMATCH, DUPLICATE)
CLASSIFICATIONS = (MATCHED, *EXCEPTIONS)
#: The largest statement file accepted, in bytes.
MAX_STATEMENT_BYTES = 64 * 1024 * 1024
#: How many ids go into one ``IN (...)`` (SQLite allows 32766 parameters).
_CHUNK = 500


class StatementAlreadyImported(Conflict):
    """This statement file was imported before."""

    code = "pay.statement_already_imported"


class ItemAlreadyResolved(Conflict):
    """The reconciliation item was resolved already (or needs no resolution)."""

    code = "pay.reconciliation_item_resolved"


class ReconciliationItemNotFound(NotFound):
    """No such reconciliation item."""

    code = "pay.reconciliation_item_not_found"


def import_statement(
    *,
    session: Session,
    actor: Actor,
    provider: PaymentProvider,
    content: bytes,
    business_date: date,
) -> StatementImport:
    """Import a provider's daily statement once and classify every line; moves no money."""
    actor.require_platform(PERMISSION)
    if not isinstance(business_date, date) or isinstance(business_date, datetime):
        raise InvalidInput("business_date must be a date", field="business_date")
    if not isinstance(content, bytes):
        raise InvalidInput("the statement must be bytes", field="content")
    if len(content) > MAX_STATEMENT_BYTES:
        raise PayloadTooLarge(f"a statement may be at most {MAX_STATEMENT_BYTES} bytes")
    digest = hashlib.sha256(content).hexdigest()
    if _import_by_hash(session, digest) is not None:
        raise StatementAlreadyImported("this statement file was imported before")
    try:
        lines = provider.parse_statement(content, business_date=business_date)
    except CivicloudError:
        raise
    except (ValueError, UnicodeError) as exc:
        raise InvalidInput(f"the statement could not be read: {exc}"[:300]) from exc
    for number, line in enumerate(lines, start=1):
        _check_line(number, line)
    record = StatementImport(
        id=new_id(),
        provider=provider.name,
        business_date=business_date,
        content_sha256=digest,
        imported_at=utcnow(),
        imported_by=actor.name[:160],
    )
    try:
        with session.begin_nested():
            session.add(record)
            # Flushed inside the savepoint: the same file imported at the same moment fails
            # here on the unique content hash.
            session.flush()
    except IntegrityError:
        if _import_by_hash(session, digest) is None:
            raise
        raise StatementAlreadyImported("this statement file was imported before") from None
    items = _classify(session, record, lines)
    session.add_all(items)
    counts = {name: sum(1 for i in items if i.classification == name) for name in CLASSIFICATIONS}
    audit.record(
        session=session,
        actor=actor,
        action="pay.reconcile.import",
        target=f"statement:{provider.name}:{business_date.isoformat()}",
        detail={"sha256": digest, "lines": len(lines), **counts},
    )
    return record


def import_summary(*, session: Session, actor: Actor, import_id: uuid.UUID) -> dict[str, int]:
    """How many items of each classification (and how many still unresolved) an import has."""
    actor.require_platform(PERMISSION)
    rows = session.execute(
        select(
            ReconciliationItem.classification,
            func.count(),
            func.count(ReconciliationItem.resolved_at),
        )
        .where(ReconciliationItem.import_id == import_id)
        .group_by(ReconciliationItem.classification)
    ).all()
    summary = dict.fromkeys(CLASSIFICATIONS, 0) | {"unresolved": 0}
    for classification, count, resolved in rows:
        summary[classification] = count
        if classification != MATCHED:
            summary["unresolved"] += count - resolved
    return summary


def list_imports(*, session: Session, actor: Actor, limit: int = 50) -> Sequence[StatementImport]:
    """Imported statements, newest first."""
    actor.require_platform(PERMISSION)
    return session.scalars(
        select(StatementImport)
        .order_by(StatementImport.imported_at.desc(), StatementImport.id)
        .limit(max(1, min(limit, 1000)))
    ).all()


def list_items(
    *,
    session: Session,
    actor: Actor,
    import_id: uuid.UUID | None = None,
    classification: str | None = None,
    unresolved_only: bool = False,
    include_matched: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[ReconciliationItem]:
    """Reconciliation items, exceptions only unless ``include_matched``, oldest import first."""
    actor.require_platform(PERMISSION)
    if classification is not None and classification not in CLASSIFICATIONS:
        raise InvalidInput(f"unknown classification {classification[:40]!r}")
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput("limit must be 1 to 1000 and offset not negative", field="limit")
    query = select(ReconciliationItem).join(
        StatementImport, StatementImport.id == ReconciliationItem.import_id
    )
    if import_id is not None:
        query = query.where(ReconciliationItem.import_id == import_id)
    if classification is not None:
        query = query.where(ReconciliationItem.classification == classification)
    elif not include_matched:
        query = query.where(ReconciliationItem.classification != MATCHED)
    if unresolved_only:
        query = query.where(ReconciliationItem.resolved_at.is_(None))
    return session.scalars(
        query.order_by(
            StatementImport.business_date,
            StatementImport.imported_at,
            ReconciliationItem.trade_no,
            ReconciliationItem.id,
        )
        .limit(limit)
        .offset(offset)
    ).all()


def resolve_item(
    *,
    session: Session,
    actor: Actor,
    item_id: uuid.UUID,
    debit_code: str,
    credit_code: str,
    amount_fen: int,
    memo: str,
) -> ReconciliationItem:
    """Resolve an exception with a posted, audited adjustment; an item is resolved only once."""
    actor.require_platform(PERMISSION)
    amount_fen = ledger.check_amount(amount_fen)
    item = session.get(ReconciliationItem, item_id)
    if item is None:
        raise ReconciliationItemNotFound("no such reconciliation item")
    if item.classification == MATCHED:
        raise ItemAlreadyResolved("a matched line needs no resolution")
    now = utcnow()
    # Claimed with one conditional statement: of two operators resolving the same item at once,
    # the second finds it resolved (PostgreSQL re-reads the row the first one committed).
    claimed = session.execute(
        update(ReconciliationItem)
        .where(ReconciliationItem.id == item_id, ReconciliationItem.resolved_at.is_(None))
        .values(resolved_by=actor.name[:160], resolved_at=now)
        .returning(ReconciliationItem.id)
        .execution_options(synchronize_session="fetch")
    ).scalar_one_or_none()
    if claimed is None:
        raise ItemAlreadyResolved("this item was resolved already")
    entry = ledger.post_adjustment(
        session=session,
        actor=actor,
        debit_code=debit_code,
        credit_code=credit_code,
        amount_fen=amount_fen,
        memo=memo,
        reference=f"reconciliation:{item.id}",
    )
    item.resolution_entry_id = entry.id
    audit.record(
        session=session,
        actor=actor,
        action="pay.reconcile.resolve",
        target=f"reconciliation:{item.id}",
        detail={
            "classification": item.classification,
            "trade_no": item.trade_no,
            "entry": str(entry.id),
            "amount_fen": amount_fen,
        },
    )
    return item


# --- classification -------------------------------------------------------------------------


def _import_by_hash(session: Session, digest: str) -> StatementImport | None:
    return session.scalars(
        select(StatementImport).where(StatementImport.content_sha256 == digest)
    ).one_or_none()


def _check_line(number: int, line: StatementLine) -> None:
    if line.kind not in ("payment", "refund"):
        raise InvalidInput(f"statement line {number}: unknown kind {str(line.kind)[:20]!r}")
    if type(line.amount_fen) is not int or abs(line.amount_fen) > ledger.MAX_FEN:
        raise InvalidInput(f"statement line {number}: the amount is not a number of fen")
    if not line.trade_no:
        raise InvalidInput(f"statement line {number}: no trade number")


def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    values = sorted(set(values))
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _item(
    record: StatementImport,
    classification: str,
    *,
    trade_no: str | None,
    provider_trade_no: str | None,
    provider_amount_fen: int | None,
    our_amount_fen: int | None,
    payment_id: uuid.UUID | None,
) -> ReconciliationItem:
    return ReconciliationItem(
        id=new_id(),
        import_id=record.id,
        classification=classification,
        trade_no=trade_no[:32] if trade_no else None,
        provider_trade_no=provider_trade_no[:64] if provider_trade_no else None,
        provider_amount_fen=provider_amount_fen,
        our_amount_fen=our_amount_fen,
        payment_id=payment_id,
    )


def _matched_elsewhere(record: StatementImport) -> Exists:
    """SQL: the payment ``Payment.id`` was matched (as a payment) by another day's statement."""
    return exists().where(
        ReconciliationItem.payment_id == Payment.id,
        ReconciliationItem.classification.in_([MATCHED, AMOUNT_MISMATCH]),
        ReconciliationItem.provider_amount_fen > 0,
        StatementImport.id == ReconciliationItem.import_id,
        StatementImport.provider == record.provider,
        StatementImport.business_date != record.business_date,
    )


def _classify(
    session: Session, record: StatementImport, lines: Sequence[StatementLine]
) -> list[ReconciliationItem]:
    payments: dict[str, Payment] = {}
    elsewhere: set[uuid.UUID] = set()
    for chunk in _chunks(line.trade_no for line in lines):
        query = select(Payment, _matched_elsewhere(record)).where(
            Payment.trade_no.in_(chunk), Payment.provider == record.provider
        )
        for payment, matched in session.execute(query):
            payments[payment.trade_no] = payment
            if matched:
                elsewhere.add(payment.id)
    late: set[str] = set()
    for chunk in _chunks(str(p.id) for p in payments.values() if p.status in ledger.ENDED_UNPAID):
        late.update(
            session.scalars(
                select(JournalEntry.reference).where(
                    JournalEntry.kind == ledger.LATE_PAYMENT, JournalEntry.reference.in_(chunk)
                )
            )
        )
    items = _classify_payments(session, record, lines, payments, elsewhere, late)
    items += _classify_refunds(session, record, lines, payments)
    return items


def _our_refund(
    line: StatementLine, amount: int, refunds: Sequence[Refund], claimed: set[uuid.UUID]
) -> Refund | None:
    """The refund of ours that a statement's refund line stands for, if one is left unclaimed."""
    # By number when the line carries one (our refund_no or the provider's refund number in
    # provider_trade_no), else the oldest refund of the same amount, succeeded first. Most
    # statements name a refund only by its trade, so a second line of the same trade and
    # amount with no refund left for it is a duplicate.
    left = [r for r in refunds if r.id not in claimed]
    by_number = [r for r in left if line.provider_trade_no in (r.refund_no, r.provider_refund_no)]
    same_amount = [r for r in left if r.amount_fen == amount]
    for candidates in (
        by_number,
        [r for r in same_amount if r.status == RefundStatus.SUCCEEDED.value],
        [r for r in same_amount if r.status == RefundStatus.PENDING.value],
    ):
        if candidates:
            return candidates[0]
    return None


def _classify_payments(
    session: Session,
    record: StatementImport,
    lines: Sequence[StatementLine],
    payments: dict[str, Payment],
    elsewhere: set[uuid.UUID],
    late: set[str],
) -> list[ReconciliationItem]:
    items: list[ReconciliationItem] = []
    seen: set[str] = set()
    for line in (line for line in lines if line.kind == "payment"):
        payment = payments.get(line.trade_no)
        received = payment is not None and (
            payment.status == PaymentStatus.SUCCEEDED.value or str(payment.id) in late
        )
        if line.trade_no in seen or (payment is not None and payment.id in elsewhere):
            classification = DUPLICATE
        elif payment is None or not received:
            classification = MISSING_OURS
        elif line.amount_fen != payment.amount_fen:
            classification = AMOUNT_MISMATCH
        else:
            classification = MATCHED
        seen.add(line.trade_no)
        items.append(
            _item(
                record,
                classification,
                trade_no=line.trade_no,
                provider_trade_no=line.provider_trade_no,
                provider_amount_fen=line.amount_fen,
                our_amount_fen=payment.amount_fen if payment else None,
                payment_id=payment.id if payment else None,
            )
        )
    start, end = business_day_bounds(record.business_date)
    absent = session.scalars(
        select(Payment).where(
            Payment.provider == record.provider,
            Payment.status == PaymentStatus.SUCCEEDED.value,
            Payment.finished_at >= start,
            Payment.finished_at < end,
            ~_matched_elsewhere(record),
        )
    )
    items += [
        _item(
            record,
            MISSING_PROVIDER,
            trade_no=payment.trade_no,
            provider_trade_no=payment.provider_trade_no,
            provider_amount_fen=None,
            our_amount_fen=payment.amount_fen,
            payment_id=payment.id,
        )
        for payment in absent
        if payment.trade_no not in seen
    ]
    return items


def _classify_refunds(
    session: Session,
    record: StatementImport,
    lines: Sequence[StatementLine],
    payments: dict[str, Payment],
) -> list[ReconciliationItem]:
    refund_lines = [line for line in lines if line.kind == "refund"]
    ours: dict[str, list[Refund]] = {}
    for chunk in _chunks(line.trade_no for line in refund_lines):
        rows = session.execute(
            select(Refund, Payment.trade_no)
            .join(Payment, Payment.id == Refund.payment_id)
            .where(Payment.trade_no.in_(chunk), Payment.provider == record.provider)
            .order_by(Refund.created_at, Refund.id)
        )
        for row_refund, trade_no in rows:
            ours.setdefault(trade_no, []).append(row_refund)
    items: list[ReconciliationItem] = []
    claimed: set[uuid.UUID] = set()
    seen: set[tuple[str, str, int]] = set()
    for line in refund_lines:
        amount = abs(line.amount_fen)
        payment = payments.get(line.trade_no)
        refund = _our_refund(line, amount, ours.get(line.trade_no, []), claimed)
        if refund is not None:
            claimed.add(refund.id)
            if refund.status != RefundStatus.SUCCEEDED.value:
                classification = MISSING_OURS  # the provider refunded; we do not know it yet
            elif refund.amount_fen != amount:
                classification = AMOUNT_MISMATCH
            else:
                classification = MATCHED
        elif (line.trade_no, line.provider_trade_no, amount) in seen:
            classification = DUPLICATE
        else:
            classification = MISSING_OURS
        seen.add((line.trade_no, line.provider_trade_no, amount))
        items.append(
            _item(
                record,
                classification,
                trade_no=line.trade_no,
                provider_trade_no=line.provider_trade_no,
                provider_amount_fen=-amount,
                our_amount_fen=-refund.amount_fen if refund else None,
                payment_id=payment.id if payment else None,
            )
        )
    start, end = business_day_bounds(record.business_date)
    absent = session.execute(
        select(Refund, Payment.trade_no)
        .join(Payment, Payment.id == Refund.payment_id)
        .where(
            Payment.provider == record.provider,
            Refund.status == RefundStatus.SUCCEEDED.value,
            Refund.finished_at >= start,
            Refund.finished_at < end,
        )
    )
    items += [
        _item(
            record,
            MISSING_PROVIDER,
            trade_no=trade_no,
            provider_trade_no=refund.provider_refund_no or refund.refund_no,
            provider_amount_fen=None,
            our_amount_fen=-refund.amount_fen,
            payment_id=refund.payment_id,
        )
        for refund, trade_no in absent
        if refund.id not in claimed
    ]
    return items
