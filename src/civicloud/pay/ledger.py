"""Pay's double-entry ledger: accounts made on demand, entries appended, balances summed.

Accounts (``code``: kind). A balance is debits minus credits, so assets show positive and
liabilities negative:

- ``clearing:<provider>`` (asset): money a provider (``sandbox``, ``alipay``…) holds for us.
- ``payable:<biller id>`` (liability): what we owe a biller for its paid bills.
- ``settlement:<biller id>`` (liability): owed to a biller and handed to the bank as a batch.
- ``refunds_payable`` (liability): money taken for a payment that paid no bill (a success that
  arrived after the payment expired or was superseded, or that was refused for not matching
  the payment), owed back to the citizen.
- ``fees`` (expense): provider fees; ``suspense``: money not yet explained. Both are used by
  operators' adjustments when they resolve reconciliation exceptions.

Entries (``kind``, ``reference``): each is one line, debit → credit:

- ``payment`` (payment id): ``clearing:<provider>`` → ``payable:<biller>``.
- ``late_payment`` (payment id): ``clearing:<provider>`` → ``refunds_payable``, for what the
  provider took: ``taken_fen`` when it took another amount than the payment's, else
  ``amount_fen``. Money taken in another currency than ours is not posted (the ledger is in
  CNY fen): reconciliation shows it, and an operator refunds it.
- ``refund`` (refund id): ``payable:<biller>`` → ``clearing:<provider>``.
- ``late_payment_refund`` (refund id): ``refunds_payable`` → ``clearing:<provider>``.
- ``settlement`` (settlement id): ``payable:<biller>`` → ``settlement:<biller>``.
- ``adjustment`` (the operator's reference): whatever the operator resolved.

Each entry keeps its ``memo`` in English, as written, and (since memo codes were kept) what it
says as a code and values (``memo_code``, ``memo_params``: see :data:`MEMO_CODES`), so that a
page can say it in the reader's language; an adjustment's memo is the operator's own words.

Every line debits and credits the same positive amount to two different accounts, so every
entry balances by construction; :func:`check_ledger` proves it and that every business event is
posted exactly once. ``journal_entry`` is unique per ``(kind, reference)``: a second posting of
the same event meets that constraint (caught in a savepoint) and returns the first entry, also
when two transactions race.

No hot row: nothing here updates a row. Posting reads the two account rows (made once, on first
use) and inserts an entry and its lines; on PostgreSQL the foreign keys take only a shared
``FOR KEY SHARE`` lock on the accounts, so payments of one biller post side by side.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Executable,
    Select,
    String,
    and_,
    bindparam,
    cast,
    exists,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from civicloud.core import audit
from civicloud.core.actor import Actor, authorize
from civicloud.core.caches import caches_of
from civicloud.core.db import new_id, utcnow
from civicloud.core.errors import Conflict, InvalidInput, NotFound
from civicloud.core.money import format_yuan
from civicloud.core.tenants import Tenant, in_subtrees, resolve_tenant
from civicloud.core.text import SPOOFING_CHARACTER, invisible_character
from civicloud.pay.errors import BillerNotFound
from civicloud.pay.models import (
    Biller,
    JournalEntry,
    JournalLine,
    LedgerAccount,
    Payment,
    PaymentFacts,
    PaymentStatus,
    Refund,
    RefundStatus,
    Settlement,
)

READ = "pay.ledger.read"
ADJUST = "pay.reconcile"

PAYMENT = "payment"
LATE_PAYMENT = "late_payment"
REFUND = "refund"
LATE_PAYMENT_REFUND = "late_payment_refund"
SETTLEMENT = "settlement"
ADJUSTMENT = "adjustment"

REFUNDS_PAYABLE = "refunds_payable"
FEES = "fees"
SUSPENSE = "suspense"
_FIXED_ACCOUNTS = {REFUNDS_PAYABLE: "liability", FEES: "expense", SUSPENSE: "suspense"}
_PROVIDER = re.compile(r"[a-z][a-z0-9_]{0,19}")
#: The largest amount a BIGINT column holds.
MAX_FEN = 2**63 - 1
#: The memo codes posting writes, with the values each carries (``JournalEntry.memo_params``).
MEMO_CODES: dict[str, tuple[str, ...]] = {
    PAYMENT: ("trade_no",),
    LATE_PAYMENT: ("trade_no",),
    REFUND: ("refund_no", "trade_no"),
    SETTLEMENT: ("date",),
}
#: Payments that ended without paying a bill; a late success for one is refunded.
ENDED_UNPAID = (
    PaymentStatus.FAILED.value,
    PaymentStatus.EXPIRED.value,
    PaymentStatus.SUPERSEDED.value,
)


def clearing_account(provider: str) -> str:
    """The code of the account holding what ``provider`` owes us."""
    return f"clearing:{provider}"


def payable_account(biller_id: uuid.UUID) -> str:
    """The code of the account holding what we owe biller ``biller_id``."""
    return f"payable:{biller_id}"


def settlement_account(biller_id: uuid.UUID) -> str:
    """The code of the account holding what is on its way to biller ``biller_id``'s bank."""
    return f"settlement:{biller_id}"


def check_amount(amount_fen: object, *, what: str = "amount_fen") -> int:
    """``amount_fen`` if it is a whole, positive number of fen that a BIGINT holds; else InvalidInput."""
    # bool is an int to Python, and a float or Decimal may carry a fraction: refuse all of them.
    if type(amount_fen) is not int:
        raise InvalidInput("%(field)s must be a whole number", params={"field": what}, field=what)
    if amount_fen <= 0:
        raise InvalidInput("%(field)s must be more than zero", params={"field": what}, field=what)
    if amount_fen > MAX_FEN:
        raise InvalidInput(
            "%(field)s must be at most %(max)s",
            params={"field": what, "max_fen": MAX_FEN},
            field=what,
        )
    return amount_fen


# --- posting ------------------------------------------------------------------------------


def post_payment(*, session: Session, payment: PaymentFacts, posted_by: str) -> uuid.UUID:
    """Post a succeeded payment (clearing → payable); returns the entry's id, the first entry's
    when it was posted already."""
    if payment.status != PaymentStatus.SUCCEEDED.value:
        raise Conflict(
            "payment %(trade_no)s is %(status_label)s, not succeeded",
            params={"trade_no": payment.trade_no, "status_label": payment.status},
        )
    return _post(
        session,
        kind=PAYMENT,
        reference=str(payment.id),
        memo=f"payment {payment.trade_no}",
        memo_code=PAYMENT,
        memo_params={"trade_no": payment.trade_no},
        posted_by=posted_by,
        debit=clearing_account(payment.provider),
        credit=payable_account(payment.biller_id),
        amount_fen=payment.amount_fen,
        currency=payment.currency,
    )


def post_late_payment(*, session: Session, payment: Payment, posted_by: str) -> JournalEntry:
    """Post money taken for a payment that paid no bill (clearing → refunds_payable): what the
    provider took (``taken_fen``, else the payment's amount); idempotent."""
    if payment.status not in ENDED_UNPAID:
        raise Conflict(
            "payment %(trade_no)s is %(status_label)s: it is not a late payment",
            params={"trade_no": payment.trade_no, "status_label": payment.status},
        )
    return _entry(
        session,
        _post(
            session,
            kind=LATE_PAYMENT,
            reference=str(payment.id),
            memo=f"late payment {payment.trade_no}, to be refunded",
            memo_code=LATE_PAYMENT,
            memo_params={"trade_no": payment.trade_no},
            posted_by=posted_by,
            debit=clearing_account(payment.provider),
            credit=REFUNDS_PAYABLE,
            amount_fen=payment.amount_fen if payment.taken_fen is None else payment.taken_fen,
            currency=payment.currency,
        ),
    )


def post_refund(*, session: Session, refund: Refund, posted_by: str) -> JournalEntry:
    """Post a succeeded refund (back out of clearing); posting it again returns the first entry."""
    if refund.status != RefundStatus.SUCCEEDED.value:
        raise Conflict(
            "refund %(refund_no)s is %(status_label)s, not succeeded",
            params={"refund_no": refund.refund_no, "status_label": refund.status},
        )
    payment = session.get(Payment, refund.payment_id)
    if payment is None:
        raise NotFound("the refund's payment is gone")
    automatic = refund.origin == "automatic"
    return _entry(
        session,
        _post(
            session,
            kind=LATE_PAYMENT_REFUND if automatic else REFUND,
            reference=str(refund.id),
            memo=f"refund {refund.refund_no} of {payment.trade_no}",
            memo_code=REFUND,
            memo_params={"refund_no": refund.refund_no, "trade_no": payment.trade_no},
            posted_by=posted_by,
            debit=REFUNDS_PAYABLE if automatic else payable_account(payment.biller_id),
            credit=clearing_account(payment.provider),
            amount_fen=refund.amount_fen,
            currency=refund.currency,
        ),
    )


def post_settlement(*, session: Session, settlement: Settlement, posted_by: str) -> JournalEntry:
    """Post a settlement's net payout (payable → settlement); idempotent."""
    if settlement.net_fen <= 0:
        raise Conflict("a settlement with nothing to pay out is not posted")
    return _entry(
        session,
        _post(
            session,
            kind=SETTLEMENT,
            reference=str(settlement.id),
            memo=f"settlement {settlement.business_date.isoformat()}",
            memo_code=SETTLEMENT,
            memo_params={"date": settlement.business_date.isoformat()},
            posted_by=posted_by,
            debit=payable_account(settlement.biller_id),
            credit=settlement_account(settlement.biller_id),
            amount_fen=settlement.net_fen,
            currency="CNY",
        ),
    )


def post_adjustment(
    *,
    session: Session,
    actor: Actor,
    debit_code: str,
    credit_code: str,
    amount_fen: int,
    memo: str,
    reference: str,
) -> JournalEntry:
    """Post an operator's adjustment (debit → credit), audited; the same reference posts once."""
    actor.require_platform(ADJUST)
    amount_fen = check_amount(amount_fen)
    memo, reference = memo.strip(), reference.strip()
    if not memo or len(memo) > 300:
        raise InvalidInput("memo must be 1 to 300 characters", field="memo")
    if not reference or len(reference) > 100:
        raise InvalidInput("reference must be 1 to 100 characters", field="reference")
    for name, text in (("memo", memo), ("reference", reference)):
        hidden = invisible_character(text)
        if hidden is not None:  # the ledger page shows both: nothing that disguises them
            raise InvalidInput(
                SPOOFING_CHARACTER, params={"what_label": name, "char": hidden}, field=name
            )
    if debit_code == credit_code:
        raise InvalidInput("an adjustment moves money between two different accounts")
    for code in (debit_code, credit_code):
        _, biller_id = describe_account(code)
        if biller_id is not None and session.get(Biller, biller_id) is None:
            raise BillerNotFound(
                "no biller %(biller_id)s for account %(account)s",
                params={"biller_id": str(biller_id), "account": code},
            )
    existing = _find_entry(session, ADJUSTMENT, reference)
    if existing is not None:
        lines = _entry_views(session, [existing])[0].lines
        if lines != (JournalLineView(debit_code, credit_code, amount_fen, "CNY"),):
            raise Conflict(
                "the reference %(reference)s was used for another adjustment",
                params={"reference": reference},
            )
        return existing
    entry_id = _post(
        session,
        kind=ADJUSTMENT,
        reference=reference,
        memo=memo,
        posted_by=actor.name,
        debit=debit_code,
        credit=credit_code,
        amount_fen=amount_fen,
        currency="CNY",
    )
    audit.record(
        session=session,
        actor=actor,
        action="pay.ledger.adjust",
        target=f"journal:{reference}",
        detail={"debit": debit_code, "credit": credit_code, "amount_fen": amount_fen, "memo": memo},
    )
    return _entry(session, entry_id)


def describe_account(code: str) -> tuple[str, uuid.UUID | None]:
    """The kind and biller of the account ``code``; InvalidInput when no such account may exist."""
    if code in _FIXED_ACCOUNTS:
        return _FIXED_ACCOUNTS[code], None
    prefix, _, rest = code.partition(":")
    if prefix == "clearing" and _PROVIDER.fullmatch(rest):
        return "asset", None
    if prefix in ("payable", "settlement"):
        try:
            biller_id = uuid.UUID(rest)
        except ValueError:
            biller_id = None
        # Only the canonical spelling, so that one biller never has two payable accounts.
        if biller_id is not None and str(biller_id) == rest:
            return "liability", biller_id
    raise InvalidInput(
        "no ledger account may be called %(account)s",
        params={"account": repr(code[:120])},
        field="account",
    )


def _find_entry(session: Session, kind: str, reference: str) -> JournalEntry | None:
    return session.scalars(
        select(JournalEntry).where(JournalEntry.kind == kind, JournalEntry.reference == reference)
    ).one_or_none()


def _account(session: Session, code: str) -> LedgerAccount:
    found = session.scalars(select(LedgerAccount).where(LedgerAccount.code == code)).one_or_none()
    if found is not None:
        return found
    kind, biller_id = describe_account(code)
    account = LedgerAccount(id=new_id(), code=code, kind=kind, currency="CNY", biller_id=biller_id)
    try:
        with session.begin_nested():
            session.add(account)
            # Flushed inside the savepoint: a transaction creating the same account at the same
            # moment makes this fail here, where it is caught and the winner's row read instead.
            session.flush()
    except IntegrityError:
        found = session.scalars(
            select(LedgerAccount).where(LedgerAccount.code == code)
        ).one_or_none()
        if found is None:
            raise
        return found
    session.info.setdefault(_CREATED_ACCOUNTS_KEY, set()).add(code)
    return account


#: Per-database cache (``core.caches``) of account code → (id, currency). Accounts never change
#: and are never deleted once committed, so an entry is right for as long as it lives.
_ACCOUNT_CACHE = "pay.ledger_accounts"
#: ``Session.info`` key: codes of the accounts this session created (perhaps not committed yet,
#: perhaps rolled back later), which are therefore never put in the cache by this session.
_CREATED_ACCOUNTS_KEY = "civicloud.pay.created_accounts"


@dataclass(frozen=True)
class _AccountRef:
    id: uuid.UUID
    code: str
    currency: str


def _account_ref(session: Session, code: str) -> _AccountRef:
    """The id and currency of account ``code``, made on first use; cached per database."""
    caches = caches_of(session)
    cache = caches.get(_ACCOUNT_CACHE) if caches is not None else None
    if cache is not None:
        cached: _AccountRef | None = cache.get(code)
        if cached is not None:
            return cached
    account = _account(session, code)
    ref = _AccountRef(id=account.id, code=account.code, currency=account.currency)
    # Only a row another transaction committed is cached: one this session made may yet be
    # rolled back (the next transaction that reads it caches it).
    if cache is not None and code not in session.info.get(_CREATED_ACCOUNTS_KEY, ()):
        cache.put(code, ref)
    return ref


def _post(
    session: Session,
    *,
    kind: str,
    reference: str,
    memo: str,
    posted_by: str,
    debit: str,
    credit: str,
    amount_fen: int,
    currency: str,
    memo_code: str | None = None,
    memo_params: dict[str, str] | None = None,
) -> uuid.UUID:
    """Post one line ``debit`` → ``credit`` as the entry (``kind``, ``reference``); its id.

    Written as SQL statements on the session's connection, not through the ORM: this is on
    every payment's path. Posting the same (``kind``, ``reference``) again writes nothing and
    returns the first entry's id.
    """
    # Accounts in code order, so that two first postings never wait on each other crosswise.
    accounts = {code: _account_ref(session, code) for code in sorted({debit, credit})}
    for account in accounts.values():
        if account.currency != currency:
            raise Conflict(
                "the account %(account)s keeps %(kept)s, not %(currency)s",
                params={"account": account.code, "kept": account.currency, "currency": currency},
            )
    connection = session.connection()
    insert_entry, find_entry, insert_line = _posting_statements(connection.dialect.name)
    # One statement instead of a lookup and a savepoint: the unique (kind, reference) refuses a
    # second posting of the same event (also one racing in another transaction, which this waits
    # for on PostgreSQL), and then the entry that was posted first is returned.
    entry_id: uuid.UUID | None = connection.execute(
        insert_entry,
        {
            "id": new_id(),
            "kind": kind,
            "reference": reference,
            "memo": memo[:300],
            "memo_code": memo_code,
            "memo_params": memo_params,
            "posted_at": utcnow(),
            "posted_by": posted_by[:160],
        },
    ).scalar_one_or_none()
    if entry_id is None:
        existing: uuid.UUID | None = connection.execute(
            find_entry, {"p_kind": kind, "p_reference": reference}
        ).scalar_one_or_none()
        if existing is None:
            raise Conflict(
                "the %(kind)s entry %(reference)s could not be posted",
                params={"kind": kind, "reference": reference},
            )
        return existing
    connection.execute(
        insert_line,
        {
            "id": new_id(),
            "entry_id": entry_id,
            "debit_account_id": accounts[debit].id,
            "credit_account_id": accounts[credit].id,
            "amount_fen": amount_fen,
            "currency": currency,
        },
    )
    return entry_id


@cache
def _posting_statements(dialect: str) -> tuple[Executable, Executable, Executable]:
    """Posting's statements, built once per dialect (``ON CONFLICT`` is spelled per dialect)."""
    insert_into = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert_into(JournalEntry)
        .on_conflict_do_nothing(index_elements=["kind", "reference"])
        .returning(JournalEntry.id),
        select(JournalEntry.id).where(
            JournalEntry.kind == bindparam("p_kind"),
            JournalEntry.reference == bindparam("p_reference"),
        ),
        insert(JournalLine),
    )


def _entry(session: Session, entry_id: uuid.UUID) -> JournalEntry:
    entry = session.get(JournalEntry, entry_id)
    if entry is None:
        raise NotFound("journal entry %(entry_id)s is gone", params={"entry_id": str(entry_id)})
    return entry


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountBalance:
    """An account's totals: ``balance_fen`` is debits minus credits (liabilities are negative)."""

    code: str
    kind: str
    biller_id: uuid.UUID | None
    currency: str
    debit_fen: int
    credit_fen: int
    balance_fen: int


@dataclass(frozen=True)
class JournalLineView:
    """One line of an entry: ``amount_fen`` debited to one account and credited to another."""

    debit_code: str
    credit_code: str
    amount_fen: int
    currency: str


@dataclass(frozen=True)
class JournalEntryView:
    """A posted entry with its lines, for display."""

    id: uuid.UUID
    kind: str
    reference: str
    memo: str
    posted_at: datetime
    posted_by: str
    lines: tuple[JournalLineView, ...]
    #: What ``memo`` says, as a code of :data:`MEMO_CODES` and its values (``None``: as written).
    memo_code: str | None = None
    memo_params: dict[str, str] | None = None


def _visible_accounts(session: Session, actor: Actor, biller_id: uuid.UUID | None) -> Select[Any]:
    """The ids of the accounts ``actor`` may read (of ``biller_id`` only, when given)."""
    query = select(LedgerAccount.id)
    if biller_id is not None:
        _authorize_biller(session, actor, biller_id)
        return query.where(LedgerAccount.biller_id == biller_id)
    roots = actor.roots(READ)
    if roots is None:
        return query
    # Below platform level one sees one's billers' accounts, never the shared ones.
    return (
        query.join(Biller, Biller.id == LedgerAccount.biller_id)
        .join(Tenant, Tenant.id == Biller.tenant_id)
        .where(in_subtrees(Tenant.path, roots))
    )


def _authorize_biller(session: Session, actor: Actor, biller_id: uuid.UUID) -> None:
    biller = session.get(Biller, biller_id)
    tenant = resolve_tenant(session=session, tenant_id=biller.tenant_id) if biller else None
    if tenant is None:
        raise BillerNotFound("no such biller")
    authorize(actor, READ, path=tenant.path, what="biller")


def balances(
    *, session: Session, actor: Actor, biller_id: uuid.UUID | None = None
) -> list[AccountBalance]:
    """Every account the actor may read (of one biller, when given) with its summed balance."""
    visible = _visible_accounts(session, actor, biller_id)
    sides = union_all(
        select(
            JournalLine.debit_account_id.label("account_id"),
            JournalLine.amount_fen.label("debit"),
            literal(0).label("credit"),
        ),
        select(
            JournalLine.credit_account_id.label("account_id"),
            literal(0).label("debit"),
            JournalLine.amount_fen.label("credit"),
        ),
    ).subquery()
    rows = session.execute(
        select(
            LedgerAccount.code,
            LedgerAccount.kind,
            LedgerAccount.biller_id,
            LedgerAccount.currency,
            func.coalesce(func.sum(sides.c.debit), 0),
            func.coalesce(func.sum(sides.c.credit), 0),
        )
        .outerjoin(sides, sides.c.account_id == LedgerAccount.id)
        .where(LedgerAccount.id.in_(visible))
        .group_by(
            LedgerAccount.id,
            LedgerAccount.code,
            LedgerAccount.kind,
            LedgerAccount.biller_id,
            LedgerAccount.currency,
        )
        .order_by(LedgerAccount.code)
    ).all()
    # PostgreSQL sums BIGINT as NUMERIC (a Decimal): back to int, exactly.
    return [
        AccountBalance(code, kind, biller, currency, int(debit), int(credit), int(debit - credit))
        for code, kind, biller, currency, debit, credit in rows
    ]


def journal(
    *,
    session: Session,
    actor: Actor,
    account_code: str | None = None,
    limit: int = 100,
    before: datetime | None = None,
) -> list[JournalEntryView]:
    """Entries the actor may read, newest first (touching ``account_code``, when given)."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    touches = _journal_scope(session, actor, account_code)
    query = select(JournalEntry)
    if touches is not None:
        query = query.where(JournalEntry.id.in_(select(JournalLine.entry_id).where(touches)))
    if before is not None:
        query = query.where(JournalEntry.posted_at < before)
    entries = session.scalars(
        query.order_by(JournalEntry.posted_at.desc(), JournalEntry.id.desc()).limit(limit)
    ).all()
    return _entry_views(session, entries)


@dataclass(frozen=True)
class JournalRows:
    """The journal's lines the actor may read, one row per line, as a query not yet run (for a
    list to choose its columns, filter, order and page): ``query`` selects from the lines joined
    to their entry (``JournalEntry``), their two accounts and those accounts' billers (``None``
    for shared accounts)."""

    query: Select[Any]
    debit: Any
    credit: Any
    debit_biller: Any
    credit_biller: Any


def journal_rows(*, session: Session, actor: Actor, account_code: str | None = None) -> JournalRows:
    """The authorised journal lines (touching ``account_code``, when given) as :class:`JournalRows`."""
    touches = _journal_scope(session, actor, account_code)
    debit, credit = aliased(LedgerAccount), aliased(LedgerAccount)
    debit_biller, credit_biller = aliased(Biller), aliased(Biller)
    query = (
        select(JournalLine.id)
        .select_from(JournalLine)
        .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        .join(debit, debit.id == JournalLine.debit_account_id)
        .join(credit, credit.id == JournalLine.credit_account_id)
        .outerjoin(debit_biller, debit_biller.id == debit.biller_id)
        .outerjoin(credit_biller, credit_biller.id == credit.biller_id)
    )
    if touches is not None:
        query = query.where(touches)
    return JournalRows(query, debit, credit, debit_biller, credit_biller)


def account_scope(*, session: Session, actor: Actor, account_code: str) -> ColumnElement[bool]:
    """The journal lines touching ``account_code``, as a condition; NotFound for no such
    account, and the refusal when the actor may not read it."""
    touches = _journal_scope(session, actor, account_code)
    assert touches is not None  # an account's lines are always a condition
    return touches


def _journal_scope(
    session: Session, actor: Actor, account_code: str | None
) -> ColumnElement[bool] | None:
    """Which lines the actor reads (of ``account_code``, when given): ``None`` for every one."""
    touches: ColumnElement[bool] | None
    if account_code is not None:
        account = session.scalars(
            select(LedgerAccount).where(LedgerAccount.code == account_code)
        ).one_or_none()
        if account is None:
            raise NotFound("no such ledger account", resource="account")
        if account.biller_id is not None:
            _authorize_biller(session, actor, account.biller_id)
        else:
            actor.require_platform(READ)
        touches = or_(
            JournalLine.debit_account_id == account.id,
            JournalLine.credit_account_id == account.id,
        )
    elif actor.roots(READ) is None:
        touches = None  # a platform-wide reader reads every entry
    else:
        accounts = _visible_accounts(session, actor, None)
        touches = or_(
            JournalLine.debit_account_id.in_(accounts), JournalLine.credit_account_id.in_(accounts)
        )
    return touches


def _entry_views(session: Session, entries: Sequence[JournalEntry]) -> list[JournalEntryView]:
    debit, credit = aliased(LedgerAccount), aliased(LedgerAccount)
    lines: dict[uuid.UUID, list[JournalLineView]] = {entry.id: [] for entry in entries}
    if entries:
        rows = session.execute(
            select(
                JournalLine.entry_id,
                debit.code,
                credit.code,
                JournalLine.amount_fen,
                JournalLine.currency,
            )
            .join(debit, debit.id == JournalLine.debit_account_id)
            .join(credit, credit.id == JournalLine.credit_account_id)
            .where(JournalLine.entry_id.in_(list(lines)))
            .order_by(JournalLine.entry_id, debit.code, credit.code)
        ).all()
        for entry_id, debit_code, credit_code, amount, currency in rows:
            lines[entry_id].append(JournalLineView(debit_code, credit_code, amount, currency))
    return [
        JournalEntryView(
            id=e.id,
            kind=e.kind,
            reference=e.reference,
            memo=e.memo,
            posted_at=e.posted_at,
            posted_by=e.posted_by,
            lines=tuple(lines[e.id]),
            memo_code=e.memo_code,
            memo_params=e.memo_params,
        )
        for e in entries
    ]


# --- the check ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerProblem:
    """One thing wrong with the ledger, with the entry kind and reference it concerns."""

    #: ``unbalanced``, ``missing``, ``duplicate``, ``unexpected``, ``amount_mismatch``,
    #: ``wrong_accounts`` or ``refund_total``.
    problem: str
    kind: str
    reference: str
    detail: str


@dataclass(frozen=True)
class LedgerCheck:
    """What :func:`check_ledger` looked at and every problem it found."""

    entries: int
    payments: int
    refunds: int
    problems: list[LedgerProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not self.problems

    def describe(self) -> str:
        """One line for a person, then one line per problem."""
        head = (
            f"ledger {'balanced' if self.ok else 'NOT balanced'}: {self.entries} entries, "
            f"{self.payments} succeeded payments, {self.refunds} succeeded refunds, "
            f"{len(self.problems)} problems"
        )
        rest = [f"{p.problem}: {p.kind} {p.reference}: {p.detail}" for p in self.problems]
        return "\n".join([head, *rest])


@dataclass(frozen=True)
class _Posted:
    """What one kind of entry posts: rows of ``model`` for which ``due`` holds, ``amount`` each."""

    kind: str
    model: Any
    due: ColumnElement[bool]
    amount: Any


def _specs() -> list[_Posted]:
    succeeded = Refund.status == RefundStatus.SUCCEEDED.value
    return [
        _Posted(
            PAYMENT, Payment, Payment.status == PaymentStatus.SUCCEEDED.value, Payment.amount_fen
        ),
        # A late payment is posted when its automatic refund is asked for, whatever came of it,
        # for what the provider took.
        _Posted(
            LATE_PAYMENT,
            Payment,
            and_(
                Payment.status.in_(ENDED_UNPAID),
                exists().where(Refund.payment_id == Payment.id, Refund.origin == "automatic"),
            ),
            func.coalesce(Payment.taken_fen, Payment.amount_fen),
        ),
        _Posted(REFUND, Refund, and_(succeeded, Refund.origin != "automatic"), Refund.amount_fen),
        _Posted(
            LATE_PAYMENT_REFUND,
            Refund,
            and_(succeeded, Refund.origin == "automatic"),
            Refund.amount_fen,
        ),
        _Posted(SETTLEMENT, Settlement, Settlement.net_fen > 0, Settlement.net_fen),
    ]


def _uuid_text(session: Session, column: Any) -> ColumnElement[str]:
    """``column`` (a UUID) as the text ``str(uuid)`` gives, so it compares with a reference."""
    if session.get_bind().dialect.name == "sqlite":
        # SQLite keeps a UUID as 32 lowercase hex digits: put the dashes back.
        hexa = type_coerce(column, String)
        parts = [(1, 8), (9, 4), (13, 4), (17, 4), (21, 12)]
        pieces = [func.substr(hexa, start, length, type_=String) for start, length in parts]
        text: ColumnElement[str] = pieces[0]
        for piece in pieces[1:]:
            text = text + "-" + piece
        return text
    return cast(column, String)


def _is_reference_of(session: Session, reference: Any, column: Any) -> ColumnElement[bool]:
    """``reference`` names the row whose UUID primary key is ``column`` (that key's index used)."""
    if session.get_bind().dialect.name == "sqlite":
        same: ColumnElement[bool] = type_coerce(column, String) == func.replace(reference, "-", "")
        return same
    same = reference == cast(column, String)
    return same


def check_ledger(*, session: Session) -> LedgerCheck:
    """Prove every entry balances and every payment, refund and settlement is posted exactly once."""
    problems = _check_lines(session)
    for spec in _specs():
        problems += _check_postings(session, spec)
    problems += _check_double_receipt(session)
    problems += _check_payment_accounts(session)
    problems += _check_refund_totals(session)
    return LedgerCheck(
        entries=session.scalar(select(func.count()).select_from(JournalEntry)) or 0,
        payments=session.scalar(
            select(func.count()).where(Payment.status == PaymentStatus.SUCCEEDED.value)
        )
        or 0,
        refunds=session.scalar(
            select(func.count()).where(Refund.status == RefundStatus.SUCCEEDED.value)
        )
        or 0,
        problems=problems,
    )


def _check_lines(session: Session) -> list[LedgerProblem]:
    # Each line debits and credits the same amount, so an entry balances exactly when each of
    # its lines is a real move: a positive amount, two different accounts, one currency. The
    # database checks the first two; this proves them (and the currency) for every row there is.
    problems = [
        LedgerProblem("unbalanced", kind, reference, "the entry has no lines")
        for kind, reference in session.execute(
            select(JournalEntry.kind, JournalEntry.reference).where(
                ~exists().where(JournalLine.entry_id == JournalEntry.id)
            )
        )
    ]
    debit, credit = aliased(LedgerAccount), aliased(LedgerAccount)
    rows = session.execute(
        select(
            JournalEntry.kind,
            JournalEntry.reference,
            JournalLine.amount_fen,
            JournalLine.currency,
            debit.code,
            debit.currency,
            credit.code,
            credit.currency,
        )
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .join(debit, debit.id == JournalLine.debit_account_id)
        .join(credit, credit.id == JournalLine.credit_account_id)
        .where(
            or_(
                JournalLine.amount_fen <= 0,
                JournalLine.debit_account_id == JournalLine.credit_account_id,
                JournalLine.currency != debit.currency,
                JournalLine.currency != credit.currency,
            )
        )
    )
    for kind, reference, amount, currency, d_code, d_cur, c_code, c_cur in rows:
        shown = (
            format_yuan(amount) if currency == "CNY" else f"{amount} (minor units of {currency})"
        )
        detail = f"line of {shown} from {d_code} ({d_cur}) to {c_code} ({c_cur})"
        problems.append(LedgerProblem("unbalanced", kind, reference, detail))
    return problems


def _check_postings(session: Session, spec: _Posted) -> list[LedgerProblem]:
    model = spec.model
    problems = [
        LedgerProblem("missing", spec.kind, str(row_id), "not posted")
        for row_id in session.scalars(
            select(model.id).where(
                spec.due,
                ~exists().where(
                    JournalEntry.kind == spec.kind,
                    JournalEntry.reference == _uuid_text(session, model.id),
                ),
            )
        )
    ]
    problems += [
        LedgerProblem("unexpected", spec.kind, reference, "posted, but nothing of that is due")
        for reference in session.scalars(
            select(JournalEntry.reference)
            .outerjoin(model, _is_reference_of(session, JournalEntry.reference, model.id))
            .where(JournalEntry.kind == spec.kind, or_(model.id.is_(None), not_(spec.due)))
        )
    ]
    posted = func.sum(JournalLine.amount_fen)
    rows = session.execute(
        select(JournalEntry.reference, spec.amount, posted)
        .join(model, _is_reference_of(session, JournalEntry.reference, model.id))
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .where(JournalEntry.kind == spec.kind, spec.due)
        .group_by(JournalEntry.id, JournalEntry.reference, spec.amount)
        .having(posted != spec.amount)
    )
    for reference, expected, summed in rows:
        total = int(summed)
        twice = expected > 0 and total % expected == 0 and total > expected
        problems.append(
            LedgerProblem(
                "duplicate" if twice else "amount_mismatch",
                spec.kind,
                reference,
                f"posted {format_yuan(total)} for {format_yuan(expected)}",
            )
        )
    return problems


def _check_double_receipt(session: Session) -> list[LedgerProblem]:
    # The same money taken in twice: as a payment of bills and as a late payment to refund.
    late = aliased(JournalEntry)
    return [
        LedgerProblem("duplicate", PAYMENT, reference, "also posted as a late payment")
        for reference in session.scalars(
            select(JournalEntry.reference)
            .join(late, and_(late.kind == LATE_PAYMENT, late.reference == JournalEntry.reference))
            .where(JournalEntry.kind == PAYMENT)
        )
    ]


def _check_payment_accounts(session: Session) -> list[LedgerProblem]:
    debit, credit = aliased(LedgerAccount), aliased(LedgerAccount)
    rows = session.execute(
        select(JournalEntry.reference, debit.code, credit.code)
        .join(Payment, _is_reference_of(session, JournalEntry.reference, Payment.id))
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .join(debit, debit.id == JournalLine.debit_account_id)
        .join(credit, credit.id == JournalLine.credit_account_id)
        .where(
            JournalEntry.kind == PAYMENT,
            or_(
                debit.code != literal("clearing:", String) + Payment.provider,
                credit.code != literal("payable:", String) + _uuid_text(session, Payment.biller_id),
            ),
        )
    )
    return [
        LedgerProblem("wrong_accounts", PAYMENT, reference, f"posted from {d} to {c}")
        for reference, d, c in rows
    ]


def _check_refund_totals(session: Session) -> list[LedgerProblem]:
    # A payment's refunded_fen is what its pending and succeeded refunds hold back.
    held = (
        select(func.coalesce(func.sum(Refund.amount_fen), 0))
        .where(
            Refund.payment_id == Payment.id,
            Refund.status.in_([RefundStatus.PENDING.value, RefundStatus.SUCCEEDED.value]),
        )
        .scalar_subquery()
    )
    rows = session.execute(
        select(Payment.id, Payment.refunded_fen, held).where(Payment.refunded_fen != held)
    )
    return [
        LedgerProblem(
            "refund_total",
            PAYMENT,
            str(payment_id),
            f"refunded_fen is {refunded} but its refunds hold {int(total)} fen",
        )
        for payment_id, refunded, total in rows
    ]
