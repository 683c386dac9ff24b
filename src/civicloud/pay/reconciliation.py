"""Reconciliation: a provider's daily statement, line by line, against our payments and refunds.

Importing a statement changes no money. Every statement line becomes one classified item:

- ``matched``: we hold the same trade with the same amount as received (a succeeded payment,
  or a late payment whose automatic refund was asked for) or refunded (a succeeded refund).
- ``missing_ours``: the provider took (or gave back) money we have no record of, or took it
  for a trade whose success we refused (its notification or query answer named another
  currency, app or payer amount: ``payments.refuse_success``); the automatic refund that gives
  it back in full resolves that item, by its own posting, at import or when it succeeds.
- ``amount_mismatch``: the trade is ours but the amounts differ (a success we refused for
  another amount among them: what its automatic refund could not give back needs an operator).
- ``duplicate``: the same trade a second time in this statement, or a payment already matched
  by the statement of another day.

and every succeeded payment or refund of ours that falls in the business day (China Standard
Time, see ``pay.settlement``) and is absent from the statement becomes ``missing_provider`` (a
payment or refund the statement of another day matched already is not reported again, and a
line for it is a ``duplicate``). Each item is of ``kind`` ``payment`` or ``refund``.

Payment lines are matched by our ``trade_no``. Refund lines are matched to a refund of that
trade not matched yet: by our ``refund_no`` when the statement carries it (Alipay's 退款批次号/
请求号, WeChat Pay's 商户退款单号, the sandbox's ``refund_no``), which names that refund or
none of ours; else by number when the adapter puts our ``refund_no`` or the provider's refund
number in ``provider_trade_no``; else by amount. A refund line with no refund left for it is a
``duplicate`` when an identical line came before, else ``missing_ours``; so is a line of a
refund still pending on our side (the provider refunded; we do not know it yet). Refund items
name our refund (``refund_id``) and its number, and carry negative amounts, as statements show
them.

Only exceptions need an operator: :func:`resolve_item` posts an adjustment (audited) and marks
the item resolved, once. A refund item whose refund is still pending cannot be adjusted: the
refund's own confirmation posts the money, and :func:`resolve_by_refund` then resolves the
items that only waited for it (an adjustment as well would count the money twice).

A statement file is imported once: ``content_sha256`` is unique. A corrected statement of the
same day is a different file; it is classified on its own.

Who does what. Statements are the installation's merchant accounts' (one Alipay or WeChat Pay
account takes every biller's money), so importing them, reading the imports and resolving an
exception (an adjustment moves money between the shared clearing and suspense accounts) need
``pay.reconcile`` platform-wide. A biller's own operators see the exceptions touching their
billers' payments: whoever may search a biller's payments (``pay.payment.read`` at or above its
tenant) reads the items tied to one of them (:func:`items_query`), so that a water company's
operator can answer a citizen whose money the provider shows and we do not; a line tied to no
payment of ours belongs to no biller and is read platform-wide only. An adjustment debits and
credits only the accounts that can take it (:func:`adjustment_accounts`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime

from sqlalchemy import ColumnElement, Exists, Select, and_, exists, false, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from civicloud.core import audit
from civicloud.core.actor import Actor
from civicloud.core.db import new_id, utcnow
from civicloud.core.errors import (
    CivicloudError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
)
from civicloud.core.tenants import Tenant, in_subtrees
from civicloud.pay import ledger
from civicloud.pay.backends import PaymentProvider, StatementLine
from civicloud.pay.errors import (
    ItemAlreadyResolved,
    ReconciliationItemNotFound,
    ReconciliationRefundPending,
    StatementAlreadyImported,
)
from civicloud.pay.models import (
    Biller,
    JournalEntry,
    Payment,
    PaymentStatus,
    ProviderNotification,
    ReconciliationItem,
    ReconciliationItemKind,
    Refund,
    RefundStatus,
    StatementImport,
)
from civicloud.pay.providers.sandbox import SandboxProvider
from civicloud.pay.settlement import business_day_bounds

PERMISSION = "pay.reconcile"
#: Below platform level, who may search a biller's payments reads the exceptions touching them
#: (``payments.PAYMENT_READ``; not imported, since payments imports this module).
PAYMENT_READ = "pay.payment.read"
#: The kept outcome of a provider's word on a trade we refused (``payments.refuse_success``).
REFUSED = "refused"
#: The origin of automatic refunds (``refunds.AUTOMATIC_ORIGIN``), and who resolves the items
#: they explain at import.
AUTOMATIC_ORIGIN = "automatic"
REFUND_RESOLVER = Actor.system("pay-automatic-refund")
#: What an item is about (``ReconciliationItem.kind``).
PAYMENT, REFUND = ReconciliationItemKind.PAYMENT.value, ReconciliationItemKind.REFUND.value
KINDS = (PAYMENT, REFUND)
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
        raise PayloadTooLarge(
            "a statement may be at most %(count)s bytes", params={"count": MAX_STATEMENT_BYTES}
        )
    digest = hashlib.sha256(content).hexdigest()
    if _import_by_hash(session, digest) is not None:
        raise StatementAlreadyImported("this statement file was imported before")
    try:
        lines = provider.parse_statement(content, business_date=business_date)
    except CivicloudError:
        raise
    except (ValueError, UnicodeError) as exc:
        raise InvalidInput(
            "the statement could not be read: %(reason)s", params={"reason": str(exc)[:200]}
        ) from exc
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


def sandbox_statement(
    *, actor: Actor, provider: PaymentProvider | None, business_date: date | None
) -> bytes:
    """The sandbox's own statement of a business day, to try an import with (platform-wide
    reconcilers only, as importing is); NotFound when ``provider`` is not the sandbox or no
    day is given."""
    actor.require_platform(PERMISSION)
    if not isinstance(provider, SandboxProvider) or business_date is None:
        raise NotFound("only the sandbox gives its statement here", resource="provider")
    return provider.statement(business_date)


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


def may_reconcile(actor: Actor) -> bool:
    """Whether ``actor`` may import statements and resolve exceptions (platform-wide)."""
    try:
        actor.require_platform(PERMISSION)
    except PermissionDenied:
        return False
    return True


def _item_scope(actor: Actor) -> ColumnElement[bool] | None:
    """The items ``actor`` may read as a condition (``None``: every one); PermissionDenied when
    none: platform-wide reconcilers read all, a biller's payment readers its billers' items."""
    if may_reconcile(actor):
        return None
    roots = actor.roots(PAYMENT_READ)
    if roots == []:
        raise PermissionDenied(
            "%(permission)s is needed platform-wide, or pay.payment.read for a biller",
            params={"permission": PERMISSION},
        )
    of_billers = (
        select(Payment.id)
        .join(Biller, Biller.id == Payment.biller_id)
        .join(Tenant, Tenant.id == Biller.tenant_id)
        .where(in_subtrees(Tenant.path, roots))
    )
    return ReconciliationItem.payment_id.in_(of_billers)


def items_query(
    *,
    actor: Actor,
    import_id: uuid.UUID | None = None,
    classification: str | None = None,
    kind: str | None = None,
    provider: str | None = None,
    business_from: date | None = None,
    business_to: date | None = None,
    unresolved_only: bool = False,
    include_matched: bool = False,
) -> Select[ReconciliationItem, StatementImport]:
    """The items ``actor`` may read, each with its import, filtered; exceptions only unless
    ``include_matched``, the latest import first (what an operator just imported is what they
    look at), each import's lines by trade number. ``business_from``/``business_to`` bound the
    statements' business day (both included)."""
    scope = _item_scope(actor)
    if classification is not None and classification not in CLASSIFICATIONS:
        raise InvalidInput(
            "unknown classification %(value)s",
            params={"value": repr(classification[:40])},
            field="classification",
        )
    if kind is not None and kind not in KINDS:
        raise InvalidInput(
            "unknown kind %(value)s", params={"value": repr(kind[:40])}, field="kind"
        )
    query = select(ReconciliationItem, StatementImport).join(
        StatementImport, StatementImport.id == ReconciliationItem.import_id
    )
    if scope is not None:
        query = query.where(scope)
    if import_id is not None:
        query = query.where(ReconciliationItem.import_id == import_id)
    if kind is not None:
        query = query.where(ReconciliationItem.kind == kind)
    if provider is not None:
        query = query.where(StatementImport.provider == provider)
    if business_from is not None:
        query = query.where(StatementImport.business_date >= business_from)
    if business_to is not None:
        query = query.where(StatementImport.business_date <= business_to)
    if classification is not None:
        query = query.where(ReconciliationItem.classification == classification)
    elif not include_matched:
        query = query.where(ReconciliationItem.classification != MATCHED)
    if unresolved_only:
        query = query.where(ReconciliationItem.resolved_at.is_(None))
    return query.order_by(
        StatementImport.imported_at.desc(),
        StatementImport.id,
        ReconciliationItem.trade_no,
        ReconciliationItem.id,
    )


def list_items(
    *,
    session: Session,
    actor: Actor,
    import_id: uuid.UUID | None = None,
    classification: str | None = None,
    kind: str | None = None,
    unresolved_only: bool = False,
    include_matched: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[ReconciliationItem]:
    """Reconciliation items the actor may read (see :func:`items_query`), of one ``kind`` if
    given, exceptions only unless ``include_matched``, the latest import first."""
    query = items_query(
        actor=actor,
        import_id=import_id,
        classification=classification,
        kind=kind,
        unresolved_only=unresolved_only,
        include_matched=include_matched,
    )
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput("limit must be 1 to 1000 and offset not negative", field="limit")
    return [item for item, _import in session.execute(query.limit(limit).offset(offset))]


def adjustment_accounts(*, session: Session, actor: Actor, item_id: uuid.UUID) -> list[str]:
    """The ledger accounts an adjustment resolving ``item_id`` may debit and credit: the
    clearing account of its statement's provider, suspense, fees, refunds owed to citizens,
    and, for an item of a payment of ours, what its biller is owed."""
    actor.require_platform(PERMISSION)
    found = session.execute(
        select(ReconciliationItem, StatementImport.provider, Payment.biller_id)
        .join(StatementImport, StatementImport.id == ReconciliationItem.import_id)
        .outerjoin(Payment, Payment.id == ReconciliationItem.payment_id)
        .where(ReconciliationItem.id == item_id)
    ).one_or_none()
    if found is None:
        raise ReconciliationItemNotFound("no such reconciliation item")
    _item, provider, biller_id = found
    return _adjustable(provider, biller_id)


def adjustment_accounts_of(
    *, session: Session, actor: Actor, items: Sequence[ReconciliationItem]
) -> dict[uuid.UUID, list[str]]:
    """:func:`adjustment_accounts` of each of ``items`` (open or not), in two queries."""
    actor.require_platform(PERMISSION)
    if not items:
        return {}
    providers: dict[uuid.UUID, str] = dict(
        session.execute(
            select(StatementImport.id, StatementImport.provider).where(
                StatementImport.id.in_({i.import_id for i in items})
            )
        ).all()
    )
    paid = {i.payment_id for i in items if i.payment_id is not None}
    billers: dict[uuid.UUID, uuid.UUID] = {}
    if paid:
        billers = dict(
            session.execute(select(Payment.id, Payment.biller_id).where(Payment.id.in_(paid))).all()
        )
    return {
        i.id: _adjustable(
            providers.get(i.import_id, ""),
            billers.get(i.payment_id) if i.payment_id is not None else None,
        )
        for i in items
    }


def items_by_id(
    *, session: Session, actor: Actor, item_ids: Sequence[uuid.UUID]
) -> list[ReconciliationItem]:
    """The items of ``item_ids`` the actor may read (as :func:`items_query` scopes them)."""
    if not item_ids:
        return []
    query = select(ReconciliationItem).where(ReconciliationItem.id.in_(list(item_ids)))
    scope = _item_scope(actor)
    if scope is not None:
        query = query.where(scope)
    return list(session.scalars(query))


def _adjustable(provider: str, biller_id: uuid.UUID | None) -> list[str]:
    codes = [ledger.clearing_account(provider), ledger.SUSPENSE, ledger.FEES]
    codes.append(ledger.REFUNDS_PAYABLE)
    if biller_id is not None:
        codes.append(ledger.payable_account(biller_id))
    return codes


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
    """Resolve an exception with a posted, audited adjustment; an item is resolved only once.

    Not an item of a refund of ours still pending: its confirmation posts the money (and
    resolves the item), so an adjustment now would count it twice.
    """
    actor.require_platform(PERMISSION)
    amount_fen = ledger.check_amount(amount_fen)
    item = session.get(ReconciliationItem, item_id)
    if item is None:
        raise ReconciliationItemNotFound("no such reconciliation item")
    if item.classification == MATCHED:
        raise ItemAlreadyResolved("a matched line needs no resolution")
    provider = session.scalar(
        select(StatementImport.provider).where(StatementImport.id == item.import_id)
    )
    biller_id = (
        session.scalar(select(Payment.biller_id).where(Payment.id == item.payment_id))
        if item.payment_id is not None
        else None
    )
    allowed = _adjustable(provider or "", biller_id)
    for field, code in (("debit_code", debit_code), ("credit_code", credit_code)):
        if code not in allowed:
            raise InvalidInput(
                "the account %(account)s cannot take an adjustment of this item",
                params={"account": repr(code[:120])},
                field=field,
            )
    if item.refund_id is not None:
        # Locked, so that its notification cannot end it (and post it) while this adjusts it.
        refund = session.get(Refund, item.refund_id, with_for_update=True, populate_existing=True)
        if refund is not None and refund.status == RefundStatus.PENDING.value:
            raise ReconciliationRefundPending(
                "refund %(refund_no)s is still pending: its confirmation posts it and "
                "resolves this item; an adjustment now would count it twice",
                params={"refund_no": refund.refund_no},
            )
    elif _untied_refund(item):
        # A refund line not tied to one of our refunds (an item older than that link): while any
        # refund of its payment is pending, this line may be that refund, so it waits too.
        pending = session.scalars(
            select(Refund.refund_no)
            .where(
                Refund.payment_id == item.payment_id,
                Refund.status == RefundStatus.PENDING.value,
            )
            .with_for_update()
        ).first()
        if pending is not None:
            raise ReconciliationRefundPending(
                "refund %(refund_no)s of this payment is still pending and may be this line: "
                "resolve it once the refund has ended",
                params={"refund_no": pending},
            )
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
            "kind": item.kind,
            "classification": item.classification,
            "trade_no": item.trade_no,
            "refund_no": item.refund_no,
            "entry": str(entry.id),
            "amount_fen": amount_fen,
        },
    )
    return item


def resolve_by_refund(
    *, session: Session, actor: Actor, refund: Refund, entry: JournalEntry
) -> list[uuid.UUID]:
    """Resolve the open items a refund's success explains, by its own posting ``entry``.

    Those are the provider's lines of this refund that were ``missing_ours`` only because the
    refund was still pending on our side, for the same amount, and, for an automatic refund,
    the ``missing_ours`` line of the payment whose money it gives back in full (a success we
    refused, or one that came after the statement); any other exception still needs an
    operator. Returns the items resolved (each audited).
    """
    explained = (
        ReconciliationItem.refund_id == refund.id,
        ReconciliationItem.kind == REFUND,
        ReconciliationItem.provider_amount_fen == -refund.amount_fen,
    )
    paid_back = (
        ReconciliationItem.payment_id == refund.payment_id,
        ReconciliationItem.kind == PAYMENT,
        ReconciliationItem.provider_amount_fen == refund.amount_fen,
    )
    resolved = session.scalars(
        update(ReconciliationItem)
        .where(
            or_(
                and_(*explained),
                and_(*paid_back) if refund.origin == AUTOMATIC_ORIGIN else false(),
            ),
            ReconciliationItem.classification == MISSING_OURS,
            ReconciliationItem.resolved_at.is_(None),
        )
        .values(resolved_by=actor.name[:160], resolved_at=utcnow(), resolution_entry_id=entry.id)
        .returning(ReconciliationItem.id)
        .execution_options(synchronize_session="fetch")
    ).all()
    for item_id in resolved:
        audit.record(
            session=session,
            actor=actor,
            action="pay.reconcile.resolve",
            target=f"reconciliation:{item_id}",
            detail={
                "classification": MISSING_OURS,
                "refund_no": refund.refund_no,
                "entry": str(entry.id),
                "by": "refund_succeeded",
            },
        )
    return list(resolved)


def waiting_for_refund(*, session: Session, items: Sequence[ReconciliationItem]) -> set[uuid.UUID]:
    """The open ones of ``items`` whose refund is still pending: its confirmation, not an
    adjustment, resolves them. A refund item tied to none of our refunds (one older than that
    link) waits while any refund of its payment is pending, as :func:`resolve_item` makes it."""
    open_items = [i for i in items if i.resolved_at is None]
    tied = sorted({i.refund_id for i in open_items if i.refund_id is not None})
    untied = sorted({i.payment_id for i in open_items if i.payment_id and _untied_refund(i)})
    pending = Refund.status == RefundStatus.PENDING.value
    pending_refunds = (
        set(session.scalars(select(Refund.id).where(Refund.id.in_(tied), pending)))
        if tied
        else set()
    )
    payments_pending = (
        set(
            session.scalars(select(Refund.payment_id).where(Refund.payment_id.in_(untied), pending))
        )
        if untied
        else set()
    )
    return {
        i.id
        for i in open_items
        if i.refund_id in pending_refunds
        or (_untied_refund(i) and i.payment_id in payments_pending)
    }


def _untied_refund(item: ReconciliationItem) -> bool:
    """Whether any pending refund of the item's payment may be what explains it: a refund line
    tied to none of our refunds, or a payment line missing on our side (a success we refused or
    did not know of, which its automatic refund gives back)."""
    return (
        item.payment_id is not None
        and item.refund_id is None
        and (item.kind == REFUND or item.classification == MISSING_OURS)
    )


def adjusted_for_refund(*, session: Session, refund_id: uuid.UUID) -> bool:
    """Whether an operator's adjustment resolved an item of this refund (it explained the money)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(ReconciliationItem)
            .join(JournalEntry, JournalEntry.id == ReconciliationItem.resolution_entry_id)
            .where(
                ReconciliationItem.refund_id == refund_id,
                JournalEntry.kind == ledger.ADJUSTMENT,
            )
        )
        or 0
    ) > 0


# --- classification -------------------------------------------------------------------------


def _import_by_hash(session: Session, digest: str) -> StatementImport | None:
    return session.scalars(
        select(StatementImport).where(StatementImport.content_sha256 == digest)
    ).one_or_none()


def _check_line(number: int, line: StatementLine) -> None:
    if line.kind not in ("payment", "refund"):
        raise InvalidInput(
            "statement line %(line)s: unknown kind %(kind)s",
            params={"line": number, "kind": str(line.kind)[:20]},
        )
    if type(line.amount_fen) is not int or abs(line.amount_fen) > ledger.MAX_FEN:
        raise InvalidInput(
            "statement line %(line)s: the amount cannot be read", params={"line": number}
        )
    if not line.trade_no:
        raise InvalidInput("statement line %(line)s: no trade number", params={"line": number})


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
    kind: str = PAYMENT,
    refund: Refund | None = None,
    refund_no: str | None = None,
) -> ReconciliationItem:
    """An item; of a refund, it names ours (if any) and the refund number (the line's, or ours)."""
    number = refund_no or (refund.refund_no if refund is not None else None)
    return ReconciliationItem(
        id=new_id(),
        import_id=record.id,
        kind=kind,
        classification=classification,
        trade_no=trade_no[:32] if trade_no else None,
        provider_trade_no=provider_trade_no[:64] if provider_trade_no else None,
        provider_amount_fen=provider_amount_fen,
        our_amount_fen=our_amount_fen,
        payment_id=payment_id,
        refund_no=number[:64] if number else None,
        refund_id=refund.id if refund is not None else None,
    )


def _matched_elsewhere(record: StatementImport, kind: str = PAYMENT) -> Exists:
    """SQL: the payment ``Payment.id`` (or, for ``refund``, the refund ``Refund.id``) was
    matched by another day's statement of the same provider."""
    subject = (
        ReconciliationItem.payment_id == Payment.id
        if kind == PAYMENT
        else ReconciliationItem.refund_id == Refund.id
    )
    return exists().where(
        subject,
        ReconciliationItem.kind == kind,
        ReconciliationItem.classification.in_([MATCHED, AMOUNT_MISMATCH]),
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
    refused: set[uuid.UUID] = set()
    for chunk in _chunks(str(p.id) for p in payments.values() if p.status in ledger.ENDED_UNPAID):
        late.update(
            session.scalars(
                select(JournalEntry.reference).where(
                    JournalEntry.kind == ledger.LATE_PAYMENT, JournalEntry.reference.in_(chunk)
                )
            )
        )
        refused.update(
            session.scalars(
                select(ProviderNotification.payment_id).where(
                    ProviderNotification.payment_id.in_([uuid.UUID(i) for i in chunk]),
                    ProviderNotification.outcome == REFUSED,
                )
            )
        )
    items = _classify_payments(session, record, lines, payments, elsewhere, late, refused)
    items += _classify_refunds(session, record, lines, payments)
    return items


def _our_refund(
    line: StatementLine, amount: int, refunds: Sequence[Refund], claimed: set[uuid.UUID]
) -> Refund | None:
    """The refund of ours that a statement's refund line stands for, if one is left unclaimed."""
    # By our refund_no when the line carries it (Alipay's 退款批次号/请求号, WeChat's 商户退款单
    # 号, the sandbox's refund_no): that number names one refund, or none of ours. Else by our
    # refund_no or the provider's refund number in provider_trade_no, else the oldest refund of
    # the same amount, succeeded first. A line named only by its trade that finds no refund
    # left of its amount is a duplicate when an identical line came before.
    left = [r for r in refunds if r.id not in claimed]
    if line.refund_no:
        return next((r for r in left if r.refund_no == line.refund_no), None)
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
    refused: set[uuid.UUID],
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
        elif payment is not None and payment.id in refused:
            # We refused the provider's word that it was paid (another currency, app, amount…):
            # we hold no success of ours for the money, only its automatic refund (of all the
            # provider said it took: ``taken_fen``, when it took another amount).
            taken = payment.amount_fen if payment.taken_fen is None else payment.taken_fen
            classification = MISSING_OURS if line.amount_fen == taken else AMOUNT_MISMATCH
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
    _resolve_refunded(session, [i for i in items if i.payment_id in refused])
    return items


def _resolve_refunded(session: Session, items: Sequence[ReconciliationItem]) -> None:
    """Resolve, by its own posting, each ``missing_ours`` item of a refused success that its
    automatic refund gave back in full already (as :func:`resolve_by_refund` does when the
    refund succeeds later): the exception stays listed, and needs no adjustment."""
    for item in items:
        if item.classification != MISSING_OURS or item.payment_id is None:
            continue
        refund_id = session.scalar(
            select(Refund.id).where(
                Refund.payment_id == item.payment_id,
                Refund.origin == AUTOMATIC_ORIGIN,
                Refund.status == RefundStatus.SUCCEEDED.value,
                Refund.amount_fen == item.provider_amount_fen,
            )
        )
        entry_id = (
            session.scalar(
                select(JournalEntry.id).where(
                    JournalEntry.kind == ledger.LATE_PAYMENT_REFUND,
                    JournalEntry.reference == str(refund_id),
                )
            )
            if refund_id is not None
            else None
        )
        if entry_id is not None:
            item.resolved_by = REFUND_RESOLVER.name
            item.resolved_at = utcnow()
            item.resolution_entry_id = entry_id
            # Flushed for the audit record to name it; the import's own record counts it too.
            audit.record(
                session=session,
                actor=REFUND_RESOLVER,
                action="pay.reconcile.resolve",
                target=f"reconciliation:{item.id}",
                detail={
                    "kind": PAYMENT,
                    "classification": MISSING_OURS,
                    "trade_no": item.trade_no,
                    "entry": str(entry_id),
                    "by": "refund_succeeded",
                },
            )


def _classify_refunds(
    session: Session,
    record: StatementImport,
    lines: Sequence[StatementLine],
    payments: dict[str, Payment],
) -> list[ReconciliationItem]:
    refund_lines = [line for line in lines if line.kind == "refund"]
    ours: dict[str, list[Refund]] = {}
    # Refunds another day's statement matched already: a line for one again is a duplicate.
    elsewhere: set[uuid.UUID] = set()
    for chunk in _chunks(line.trade_no for line in refund_lines):
        rows = session.execute(
            select(Refund, Payment.trade_no, _matched_elsewhere(record, REFUND))
            .join(Payment, Payment.id == Refund.payment_id)
            .where(Payment.trade_no.in_(chunk), Payment.provider == record.provider)
            .order_by(Refund.created_at, Refund.id)
        )
        for row_refund, trade_no, matched in rows:
            ours.setdefault(trade_no, []).append(row_refund)
            if matched:
                elsewhere.add(row_refund.id)
    items: list[ReconciliationItem] = []
    claimed: set[uuid.UUID] = set(elsewhere)
    seen: set[tuple[str, str | None, str, int]] = set()
    for line in refund_lines:
        amount = abs(line.amount_fen)
        payment = payments.get(line.trade_no)
        candidates = ours.get(line.trade_no, [])
        refund = _our_refund(line, amount, candidates, claimed)
        if refund is not None:
            claimed.add(refund.id)
            if refund.status != RefundStatus.SUCCEEDED.value:
                classification = MISSING_OURS  # the provider refunded; we do not know it yet
            elif refund.amount_fen != amount:
                classification = AMOUNT_MISMATCH
            else:
                classification = MATCHED
        else:
            # Named for information: the refund another day's statement matched, if it is that.
            refund = _our_refund(line, amount, [r for r in candidates if r.id in elsewhere], set())
            key = (line.trade_no, line.refund_no, line.provider_trade_no, amount)
            classification = DUPLICATE if refund is not None or key in seen else MISSING_OURS
        seen.add((line.trade_no, line.refund_no, line.provider_trade_no, amount))
        items.append(
            _item(
                record,
                classification,
                trade_no=line.trade_no,
                provider_trade_no=line.provider_trade_no,
                provider_amount_fen=-amount,
                our_amount_fen=-refund.amount_fen if refund else None,
                payment_id=payment.id if payment else None,
                kind=REFUND,
                refund=refund,
                refund_no=line.refund_no,
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
            ~_matched_elsewhere(record, REFUND),
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
            kind=REFUND,
            refund=refund,
        )
        for refund, trade_no in absent
        if refund.id not in claimed
    ]
    return items
