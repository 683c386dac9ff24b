"""Reconciliation: every statement line classified, no money moved, exceptions resolved once."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM
from tests.factories.pay_money import (
    FakeProvider,
    make_payment,
    member,
    problems_about,
    statement,
)

from civicloud.core.audit import AuditRecord
from civicloud.core.errors import InvalidInput, PermissionDenied
from civicloud.core.tenants import Tenant
from civicloud.pay import ledger, reconciliation, refunds
from civicloud.pay.errors import (
    ItemAlreadyResolved,
    ReconciliationItemNotFound,
    StatementAlreadyImported,
)
from civicloud.pay.models import Biller, JournalEntry, Payment, ReconciliationItem, Refund
from civicloud.pay.settlement import SHANGHAI

DAY = date(2025, 6, 1)
NEXT = DAY + timedelta(days=1)


def at(day: date, hour: int) -> datetime:
    """An hour of ``day`` on the Shanghai clock."""
    return datetime.combine(day, time(hour), tzinfo=SHANGHAI)


def _paid(
    session: Session, biller: Biller, provider: FakeProvider, amount: int, **kw: object
) -> Payment:
    kw.setdefault("finished_at", at(DAY, 10))
    return make_payment(session, biller, amount_fen=amount, provider=provider.name, **kw)  # type: ignore[arg-type]


def _refunded(
    session: Session, payment: Payment, provider: FakeProvider, amount: int, when: datetime
) -> Refund:
    refund = refunds.request_refund(
        session=session,
        actor=SYSTEM,
        payment_id=payment.id,
        amount_fen=amount,
        reason="test",
        idempotency_key=uuid.uuid4().hex,
        provider=provider,
    )
    refund.finished_at = when
    session.flush()
    return refund


def _import(
    session: Session, provider: FakeProvider, content: bytes, day: date = DAY
) -> list[tuple[str, str | None, int | None, int | None]]:
    record = reconciliation.import_statement(
        session=session, actor=SYSTEM, provider=provider, content=content, business_date=day
    )
    items = reconciliation.list_items(
        session=session, actor=SYSTEM, import_id=record.id, include_matched=True, limit=1000
    )
    return sorted(
        (i.classification, i.trade_no, i.provider_amount_fen, i.our_amount_fen) for i in items
    )


def _entries(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(JournalEntry)) or 0


def test_every_kind_of_line_is_classified_and_no_money_moves(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given our side of the day: payments, a late payment refunded automatically, refunds
    matched = _paid(db_session, biller, provider, 10_000)
    mismatched = _paid(db_session, biller, provider, 5_000)
    absent = _paid(db_session, biller, provider, 3_000)
    unpaid = _paid(db_session, biller, provider, 400, status="expired")
    late = _paid(db_session, biller, provider, 800, status="expired")
    auto = refunds.refund_automatically(
        session=db_session, payment=late, provider=provider, reason="late"
    )
    auto.finished_at = at(DAY, 11)
    refund = _refunded(db_session, matched, provider, 1_000, at(DAY, 12))
    lost_refund = _refunded(db_session, absent, provider, 500, at(DAY, 13))
    # and the provider's statement of the day
    content = statement(
        ("payment", matched.trade_no, "P1", 10_000),
        ("payment", matched.trade_no, "P1", 10_000),
        ("payment", mismatched.trade_no, "P2", 5_001),
        ("payment", "T-not-ours", "P3", 777),
        ("payment", unpaid.trade_no, "P4", 400),
        ("payment", late.trade_no, "P5", 800),
        ("refund", matched.trade_no, refund.provider_refund_no or "", -1_000),
        ("refund", late.trade_no, auto.refund_no, 800),
        ("refund", mismatched.trade_no, "R-unknown", -300),
    )
    entries = _entries(db_session)
    # when it is imported
    items = _import(db_session, provider, content)
    # then every line, and each of our trades missing from it, is classified
    assert items == sorted(
        [
            ("matched", matched.trade_no, 10_000, 10_000),
            ("duplicate", matched.trade_no, 10_000, 10_000),
            ("amount_mismatch", mismatched.trade_no, 5_001, 5_000),
            ("missing_ours", "T-not-ours", 777, None),
            ("missing_ours", unpaid.trade_no, 400, 400),
            ("matched", late.trade_no, 800, 800),
            ("missing_provider", absent.trade_no, None, 3_000),
            ("matched", matched.trade_no, -1_000, -1_000),
            ("matched", late.trade_no, -800, -800),
            ("missing_ours", mismatched.trade_no, -300, None),
            ("missing_provider", absent.trade_no, None, -500),
        ]
    )
    assert lost_refund.status == "succeeded"
    # and no money moved
    assert _entries(db_session) == entries


def test_a_statement_is_imported_once(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given an imported statement
    payment = _paid(db_session, biller, provider, 100)
    content = statement(("payment", payment.trade_no, "P", 100))
    _import(db_session, provider, content)
    # when the same file is imported again, then it is refused
    with pytest.raises(StatementAlreadyImported):
        _import(db_session, provider, content)


@pytest.mark.parametrize(
    "content", [b"", b"not,a,statement\n", b"\xff\xfe\x00garbage", b"kind,trade_no\n"]
)
def test_an_unreadable_statement_is_invalid_input(
    db_session: Session, provider: FakeProvider, content: bytes
) -> None:
    # when a file the provider cannot read is imported, then it is refused
    with pytest.raises(InvalidInput):
        _import(db_session, provider, content)


def test_only_a_platform_operator_imports(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a reconciler of the biller's tenant only, when it imports, then it is refused
    tenant = db_session.get(Tenant, biller.tenant_id)
    with pytest.raises(PermissionDenied):
        reconciliation.import_statement(
            session=db_session,
            actor=member(tenant, "pay.reconcile"),
            provider=provider,
            content=statement(),
            business_date=DAY,
        )


def test_a_payment_matched_on_another_days_statement(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a payment just before midnight that the provider put on the next day's statement
    evening = _paid(db_session, biller, provider, 2_000, finished_at=at(DAY, 23))
    assert _import(
        db_session, provider, statement(("payment", evening.trade_no, "P", 2_000)), NEXT
    ) == [("matched", evening.trade_no, 2_000, 2_000)]
    # when the day's own statement, without it, is imported
    # then it is not reported missing at the provider
    assert _import(db_session, provider, statement(), DAY) == []
    # and when yet another day's statement lists it again, it is a duplicate
    # (another file: a statement lists its own day's trades too)
    later = statement(("payment", evening.trade_no, "P", 2_000), ("payment", "T-other", "Q", 1))
    assert _import(db_session, provider, later, NEXT + timedelta(days=1)) == [
        ("duplicate", evening.trade_no, 2_000, 2_000),
        ("missing_ours", "T-other", 1, None),
    ]


def test_an_exception_is_resolved_once_with_an_audited_adjustment(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a statement with money we have no payment for, and a matched line
    payment = _paid(db_session, biller, provider, 900)
    record = reconciliation.import_statement(
        session=db_session,
        actor=SYSTEM,
        provider=provider,
        content=statement(
            ("payment", payment.trade_no, "P", 900), ("payment", "T-stranger", "Q", 777)
        ),
        business_date=DAY,
    )
    [exception] = reconciliation.list_items(session=db_session, actor=SYSTEM, import_id=record.id)
    assert exception.classification == "missing_ours"
    assert (
        reconciliation.import_summary(session=db_session, actor=SYSTEM, import_id=record.id)[
            "unresolved"
        ]
        == 1
    )
    # when an operator parks the unexplained money in suspense
    resolved = reconciliation.resolve_item(
        session=db_session,
        actor=SYSTEM,
        item_id=exception.id,
        debit_code=f"clearing:{provider.name}",
        credit_code="suspense",
        amount_fen=777,
        memo="unknown credit, asked the provider",
    )
    # then the adjustment is posted and the item resolved, and both are audited
    assert resolved.resolved_by == SYSTEM.name
    assert resolved.resolution_entry_id is not None
    entry = db_session.get(JournalEntry, resolved.resolution_entry_id)
    assert entry is not None
    assert (entry.kind, entry.reference) == ("adjustment", f"reconciliation:{exception.id}")
    actions = db_session.scalars(
        select(AuditRecord.action).where(
            AuditRecord.target.in_(
                [f"reconciliation:{exception.id}", f"journal:reconciliation:{exception.id}"]
            )
        )
    ).all()
    assert sorted(actions) == ["pay.ledger.adjust", "pay.reconcile.resolve"]
    assert (
        reconciliation.list_items(
            session=db_session, actor=SYSTEM, import_id=record.id, unresolved_only=True
        )
        == []
    )
    assert problems_about(ledger.check_ledger(session=db_session), [entry.reference]) == []
    # when it is resolved again, then that is refused and nothing more is posted
    with pytest.raises(ItemAlreadyResolved):
        reconciliation.resolve_item(
            session=db_session,
            actor=SYSTEM,
            item_id=exception.id,
            debit_code=f"clearing:{provider.name}",
            credit_code="suspense",
            amount_fen=777,
            memo="again",
        )
    # and a matched line needs no resolution
    matched = db_session.scalars(
        select(ReconciliationItem).where(
            ReconciliationItem.import_id == record.id,
            ReconciliationItem.classification == "matched",
        )
    ).one()
    with pytest.raises(ItemAlreadyResolved):
        reconciliation.resolve_item(
            session=db_session,
            actor=SYSTEM,
            item_id=matched.id,
            debit_code="fees",
            credit_code="suspense",
            amount_fen=1,
            memo="no",
        )


def test_a_resolution_with_a_bad_amount_leaves_the_item_open(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given an exception
    record = reconciliation.import_statement(
        session=db_session,
        actor=SYSTEM,
        provider=provider,
        content=statement(("payment", "T-stranger", "Q", 5)),
        business_date=DAY,
    )
    [item] = reconciliation.list_items(session=db_session, actor=SYSTEM, import_id=record.id)
    # when it is resolved with a negative amount, then that is refused and it stays open
    with pytest.raises(InvalidInput):
        reconciliation.resolve_item(
            session=db_session,
            actor=SYSTEM,
            item_id=item.id,
            debit_code="fees",
            credit_code="suspense",
            amount_fen=-5,
            memo="x",
        )
    assert item.resolved_at is None


def test_bad_arguments_are_refused(db_session: Session, provider: FakeProvider) -> None:
    # when a statement comes as text, for a moment instead of a day, or too large, then no
    from civicloud.core.errors import PayloadTooLarge

    def attempt(content: object, day: object) -> None:
        reconciliation.import_statement(
            session=db_session,
            actor=SYSTEM,
            provider=provider,
            content=content,  # type: ignore[arg-type]
            business_date=day,  # type: ignore[arg-type]
        )

    with pytest.raises(InvalidInput):
        attempt("kind,trade_no,provider_trade_no,amount_fen\n", DAY)
    with pytest.raises(InvalidInput):
        attempt(statement(), at(DAY, 1))
    with pytest.raises(PayloadTooLarge):
        attempt(b" " * (reconciliation.MAX_STATEMENT_BYTES + 1), DAY)
    with pytest.raises(InvalidInput):
        reconciliation.list_items(session=db_session, actor=SYSTEM, classification="odd")
    with pytest.raises(InvalidInput):
        reconciliation.list_items(session=db_session, actor=SYSTEM, limit=0)
    with pytest.raises(ReconciliationItemNotFound):
        reconciliation.resolve_item(
            session=db_session,
            actor=SYSTEM,
            item_id=uuid.uuid4(),
            debit_code="fees",
            credit_code="suspense",
            amount_fen=1,
            memo="x",
        )


def test_imports_are_listed_newest_first(db_session: Session, provider: FakeProvider) -> None:
    # given two imports, when they are listed, then the newer comes first
    first = reconciliation.import_statement(
        session=db_session, actor=SYSTEM, provider=provider, content=statement(), business_date=DAY
    )
    second = reconciliation.import_statement(
        session=db_session,
        actor=SYSTEM,
        provider=provider,
        content=statement(("payment", "T-x", "P", 1)),
        business_date=NEXT,
    )
    listed = [i.id for i in reconciliation.list_imports(session=db_session, actor=SYSTEM)]
    assert listed.index(second.id) < listed.index(first.id)


def test_refund_lines_named_only_by_their_trade_are_matched_by_amount(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a payment refunded three times on the day, one refund still pending on our side
    payment = _paid(db_session, biller, provider, 10_000)
    _refunded(db_session, payment, provider, 1_000, at(DAY, 11))
    _refunded(db_session, payment, provider, 2_000, at(DAY, 12))
    provider.mode = "pending"
    _refunded(db_session, payment, provider, 3_000, at(DAY, 13))
    # and a statement naming refunds by the payment's provider number only, as real ones do,
    # with the 1000 listed twice
    trade, ptn = payment.trade_no, payment.provider_trade_no or ""
    content = statement(
        ("payment", trade, ptn, 10_000),
        ("refund", trade, ptn, 2_000),
        ("refund", trade, ptn, 1_000),
        ("refund", trade, ptn, 1_000),
        ("refund", trade, ptn, 3_000),
    )
    # when it is imported, then each refund is matched once, and the repeat is a duplicate
    assert _import(db_session, provider, content) == sorted(
        [
            ("matched", trade, 10_000, 10_000),
            ("matched", trade, -2_000, -2_000),
            ("matched", trade, -1_000, -1_000),
            ("duplicate", trade, -1_000, None),
            ("missing_ours", trade, -3_000, -3_000),
        ]
    )


def _refund_items(
    session: Session, provider: FakeProvider, content: bytes, day: date = DAY
) -> list[tuple[str, str | None, int | None, uuid.UUID | None]]:
    record = reconciliation.import_statement(
        session=session, actor=SYSTEM, provider=provider, content=content, business_date=day
    )
    items = reconciliation.list_items(
        session=session,
        actor=SYSTEM,
        import_id=record.id,
        kind="refund",
        include_matched=True,
        limit=1000,
    )
    assert all(i.kind == "refund" for i in items)
    return sorted(
        ((i.classification, i.refund_no, i.provider_amount_fen, i.refund_id) for i in items),
        key=str,
    )


def test_refund_lines_carrying_our_refund_number_are_matched_by_it(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a payment refunded twice with the same amount
    payment = _paid(db_session, biller, provider, 10_000)
    first = _refunded(db_session, payment, provider, 1_000, at(DAY, 11))
    second = _refunded(db_session, payment, provider, 1_000, at(DAY, 12))
    trade, ptn = payment.trade_no, payment.provider_trade_no or ""
    # and a statement naming them by our refund numbers: the second first, the second again,
    # and a refund number we never issued, of the same amount
    content = statement(
        ("payment", trade, ptn, 10_000),
        ("refund", trade, ptn, -1_000, second.refund_no),
        ("refund", trade, ptn, -1_000, second.refund_no),
        ("refund", trade, ptn, -1_000, "RF-NEVER-ISSUED"),
    )
    # when it is imported
    items = _refund_items(db_session, provider, content)
    # then each line is the refund it names: the second matched, then a duplicate; the unknown
    # number is missing on our side (not matched to the first by amount), and the first,
    # absent from the statement, is missing at the provider
    assert items == sorted(
        [
            ("matched", second.refund_no, -1_000, second.id),
            ("duplicate", second.refund_no, -1_000, None),
            ("missing_ours", "RF-NEVER-ISSUED", -1_000, None),
            ("missing_provider", first.refund_no, None, first.id),
        ],
        key=str,
    )


def test_a_refund_matched_on_another_days_statement(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a refund just before midnight that the provider put on the next day's statement
    payment = _paid(db_session, biller, provider, 5_000)
    evening = _refunded(db_session, payment, provider, 700, at(DAY, 23))
    line = ("refund", payment.trade_no, "P", -700, evening.refund_no)
    assert _refund_items(db_session, provider, statement(line), NEXT) == [
        ("matched", evening.refund_no, -700, evening.id)
    ]
    # when the day's own statement, without it, is imported
    # then it is not reported missing at the provider
    assert _refund_items(db_session, provider, statement(), DAY) == []
    # and when yet another day's statement lists it again, it is a duplicate
    later = statement(line, ("payment", "T-other", "Q", 1))
    assert _refund_items(db_session, provider, later, NEXT + timedelta(days=1)) == [
        ("duplicate", evening.refund_no, -700, evening.id)
    ]


def test_items_are_listed_by_kind(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    # given a statement with an unknown payment and an unknown refund
    record = reconciliation.import_statement(
        session=db_session,
        actor=SYSTEM,
        provider=provider,
        content=statement(("payment", "T-a", "P", 5), ("refund", "T-b", "P", -5, "RF-b")),
        business_date=DAY,
    )

    def kinds(kind: str | None) -> list[tuple[str, str | None]]:
        found = reconciliation.list_items(
            session=db_session, actor=SYSTEM, import_id=record.id, kind=kind
        )
        return sorted((i.kind, i.refund_no) for i in found)

    # then each kind is listed on its own, or both together
    assert kinds("payment") == [("payment", None)]
    assert kinds("refund") == [("refund", "RF-b")]
    assert kinds(None) == [("payment", None), ("refund", "RF-b")]
    with pytest.raises(InvalidInput):
        kinds("fee")
