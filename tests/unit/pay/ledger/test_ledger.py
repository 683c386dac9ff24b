"""The ledger: postings made once, balances summed, and a check that finds what was planted."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM, make_tenant
from tests.factories.pay_money import make_biller, make_payment, member, problems_about

from civicloud.core.audit import AuditRecord
from civicloud.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from civicloud.core.services import Services
from civicloud.core.tenants import Tenant
from civicloud.pay import ledger
from civicloud.pay.models import (
    Biller,
    JournalEntry,
    JournalLine,
    LedgerAccount,
    Payment,
    Refund,
)


def _lines(session: Session, entry_id: uuid.UUID) -> list[JournalLine]:
    return list(session.scalars(select(JournalLine).where(JournalLine.entry_id == entry_id)))


def _account_id(session: Session, code: str) -> uuid.UUID:
    return session.scalars(select(LedgerAccount.id).where(LedgerAccount.code == code)).one()


def _balance(session: Session, code: str) -> int:
    found = [b for b in ledger.balances(session=session, actor=SYSTEM) if b.code == code]
    return found[0].balance_fen if found else 0


# --- posting --------------------------------------------------------------------------------


def test_posting_a_payment_twice_posts_it_once(db_session: Session, biller: Biller) -> None:
    # given a succeeded payment, posted once
    payment = make_payment(db_session, biller, amount_fen=12_345, post=False)
    first = ledger.post_payment(session=db_session, payment=payment, posted_by="tests")
    # when it is posted again
    second = ledger.post_payment(session=db_session, payment=payment, posted_by="tests")
    # then the first entry comes back, with one line from clearing to the biller's payable
    assert second == first
    entries = db_session.scalars(
        select(JournalEntry).where(JournalEntry.reference == str(payment.id))
    ).all()
    assert [e.kind for e in entries] == ["payment"]
    [line] = _lines(db_session, first)
    assert line.amount_fen == 12_345
    assert line.debit_account_id == _account_id(db_session, f"clearing:{payment.provider}")
    assert line.credit_account_id == _account_id(db_session, f"payable:{biller.id}")
    assert _balance(db_session, f"payable:{biller.id}") == -12_345


@pytest.mark.parametrize("status", ["created", "pending", "failed", "expired", "superseded"])
def test_a_payment_that_did_not_succeed_is_not_posted(
    db_session: Session, biller: Biller, status: str
) -> None:
    # given a payment that did not succeed
    payment = make_payment(db_session, biller, status=status)
    # when it is posted, then that is refused and nothing is written
    with pytest.raises(Conflict):
        ledger.post_payment(session=db_session, payment=payment, posted_by="tests")
    posted = db_session.scalar(
        select(func.count())
        .select_from(JournalEntry)
        .where(JournalEntry.reference == str(payment.id))
    )
    assert posted == 0


def test_two_transactions_posting_one_payment_leave_one_entry(core_services: Services) -> None:
    # given a succeeded payment, committed but not posted
    db = core_services.db
    with db.unit_of_work() as session:
        payment_id = make_payment(session, make_biller(session), post=False).id
    found: dict[str, uuid.UUID] = {}

    def post_in_second_transaction() -> None:
        with db.unit_of_work() as other:
            payment = other.get(Payment, payment_id)
            assert payment is not None
            found["second"] = ledger.post_payment(
                session=other, payment=payment, posted_by="second"
            )

    # when one transaction posts it and, before it commits, another posts it too
    with db.unit_of_work() as first:
        payment = first.get(Payment, payment_id)
        assert payment is not None
        found["first"] = ledger.post_payment(session=first, payment=payment, posted_by="first")
        racer = threading.Thread(target=post_in_second_transaction)
        racer.start()
        time.sleep(0.3)  # the second is now waiting on the first (the unique index or the lock)
    racer.join(timeout=30)
    # then both see the one entry the first made
    assert found["second"] == found["first"]
    with db.unit_of_work(write=False) as session:
        count = session.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.reference == str(payment_id))
        )
        assert count == 1
        assert not problems_about(ledger.check_ledger(session=session), [payment_id])


def test_payments_of_one_biller_post_side_by_side(core_services: Services) -> None:
    if core_services.db.is_sqlite:
        pytest.skip("SQLite runs one writing transaction at a time: nothing runs side by side")
    # given a biller whose accounts exist, and two more of its payments, committed unposted
    db = core_services.db
    with db.unit_of_work() as session:
        biller = make_biller(session)
        make_payment(session, biller, amount_fen=1)
        first_id, second_id = (make_payment(session, biller, post=False).id for _ in range(2))
    finished = threading.Event()

    def post_second() -> None:
        with db.unit_of_work() as other:
            payment = other.get(Payment, second_id)
            assert payment is not None
            ledger.post_payment(session=other, payment=payment, posted_by="second")
        finished.set()

    # when one transaction posts a payment and stays open while another posts the other one
    with db.unit_of_work() as first:
        payment = first.get(Payment, first_id)
        assert payment is not None
        ledger.post_payment(session=first, payment=payment, posted_by="first")
        racer = threading.Thread(target=post_second)
        racer.start()
        # then the second commits without waiting for the first: no row is shared for writing
        assert finished.wait(timeout=10)
    racer.join(timeout=10)


def test_an_adjustment_is_posted_once_audited_and_its_reference_is_not_reused(
    db_session: Session, biller: Biller
) -> None:
    # given an operator's adjustment moving an unexplained 5 yuan to suspense
    reference = f"case-{uuid.uuid4().hex[:8]}"
    entry = ledger.post_adjustment(
        session=db_session,
        actor=SYSTEM,
        debit_code="clearing:sandbox",
        credit_code="suspense",
        amount_fen=500,
        memo="unexplained credit on the statement",
        reference=reference,
    )
    # when the same adjustment is posted again, then it is the same entry
    again = ledger.post_adjustment(
        session=db_session,
        actor=SYSTEM,
        debit_code="clearing:sandbox",
        credit_code="suspense",
        amount_fen=500,
        memo="unexplained credit on the statement",
        reference=reference,
    )
    assert again.id == entry.id
    # and it was audited once
    audits = db_session.scalars(
        select(AuditRecord).where(AuditRecord.target == f"journal:{reference}")
    ).all()
    assert [a.action for a in audits] == ["pay.ledger.adjust"]
    # when the reference is reused for another adjustment, then that is refused
    with pytest.raises(Conflict, match="another adjustment"):
        ledger.post_adjustment(
            session=db_session,
            actor=SYSTEM,
            debit_code="clearing:sandbox",
            credit_code="suspense",
            amount_fen=501,
            memo="unexplained credit on the statement",
            reference=reference,
        )


@pytest.mark.parametrize(
    ("debit", "credit", "amount"),
    [
        ("clearing:sandbox", "suspense", 0),
        ("clearing:sandbox", "suspense", -1),
        ("clearing:sandbox", "suspense", 2**63),
        ("clearing:sandbox", "suspense", 1.5),
        ("clearing:sandbox", "suspense", True),
        ("suspense", "suspense", 100),
        ("clearing:Sandbox!", "suspense", 100),
        ("payable:not-a-uuid", "suspense", 100),
        ("cash", "suspense", 100),
    ],
)
def test_a_bad_adjustment_is_refused(
    db_session: Session, debit: str, credit: str, amount: object
) -> None:
    # when an adjustment has a bad amount or account, then it is refused and nothing is posted
    before = db_session.scalar(select(func.count()).select_from(JournalEntry))
    with pytest.raises(InvalidInput):
        ledger.post_adjustment(
            session=db_session,
            actor=SYSTEM,
            debit_code=debit,
            credit_code=credit,
            amount_fen=amount,  # type: ignore[arg-type]
            memo="test",
            reference=f"bad-{uuid.uuid4().hex[:8]}",
        )
    assert db_session.scalar(select(func.count()).select_from(JournalEntry)) == before


def test_an_adjustment_needs_a_platform_operator(db_session: Session, biller: Biller) -> None:
    # given an operator of the biller's tenant only
    local = member(db_session.get(Tenant, biller.tenant_id), "pay.reconcile")
    # when it adjusts, then it is refused
    with pytest.raises(PermissionDenied):
        ledger.post_adjustment(
            session=db_session,
            actor=local,
            debit_code=f"payable:{biller.id}",
            credit_code="suspense",
            amount_fen=100,
            memo="test",
            reference="local",
        )


# --- reading --------------------------------------------------------------------------------


def test_balances_and_journal_show_only_what_the_reader_may_see(db_session: Session) -> None:
    # given two billers in sibling tenants, each paid once
    root = make_tenant(db_session)
    a_tenant, b_tenant = make_tenant(db_session, parent=root), make_tenant(db_session, parent=root)
    a, b = make_biller(db_session, tenant=a_tenant), make_biller(db_session, tenant=b_tenant)
    pay_a = make_payment(db_session, a, amount_fen=1_000)
    make_payment(db_session, b, amount_fen=2_000)
    reader = member(a_tenant, "pay.ledger.read")
    # when A's ledger reader reads balances, then it sees A's payable only
    seen = ledger.balances(session=db_session, actor=reader)
    assert [(x.code, x.balance_fen) for x in seen] == [(f"payable:{a.id}", -1_000)]
    assert ledger.balances(session=db_session, actor=reader, biller_id=a.id) == seen
    # and its journal has A's payment only
    entries = ledger.journal(session=db_session, actor=reader)
    assert [e.reference for e in entries] == [str(pay_a.id)]
    assert entries[0].lines == (
        ledger.JournalLineView("clearing:sandbox", f"payable:{a.id}", 1_000, "CNY"),
    )
    # when it asks for B, or for the shared clearing account, then it is refused
    with pytest.raises(NotFound):
        ledger.balances(session=db_session, actor=reader, biller_id=b.id)
    with pytest.raises(PermissionDenied):
        ledger.journal(session=db_session, actor=reader, account_code="clearing:sandbox")
    # and a platform reader sees both payments in the clearing account's journal
    platform = member(None, "pay.ledger.read")
    refs = {e.reference for e in ledger.journal(session=db_session, actor=platform, limit=1000)}
    assert str(pay_a.id) in refs
    assert len(refs) >= 2


def test_the_journal_pages_backwards_by_time(db_session: Session, biller: Biller) -> None:
    # given three payments posted one after another
    payments = [make_payment(db_session, biller, amount_fen=100 * (i + 1)) for i in range(3)]
    code = f"payable:{biller.id}"
    # when the journal is read two at a time
    first = ledger.journal(session=db_session, actor=SYSTEM, account_code=code, limit=2)
    rest = ledger.journal(
        session=db_session, actor=SYSTEM, account_code=code, limit=2, before=first[-1].posted_at
    )
    # then it comes newest first, without repeats
    assert [e.reference for e in first + rest] == [str(p.id) for p in reversed(payments)]


# --- the check ------------------------------------------------------------------------------


def test_a_ledger_made_by_the_services_checks_clean(db_session: Session, biller: Biller) -> None:
    # given payments posted by the service
    payments = [make_payment(db_session, biller, amount_fen=n) for n in (1, 99, 100_000)]
    # when the ledger is checked, then nothing about them is wrong
    check = ledger.check_ledger(session=db_session)
    assert problems_about(check, [p.id for p in payments]) == []
    assert check.payments >= 3
    assert check.entries >= 3


def test_the_check_finds_a_succeeded_payment_never_posted(
    db_session: Session, biller: Biller
) -> None:
    # given a succeeded payment that was never posted
    payment = make_payment(db_session, biller, post=False)
    # when the ledger is checked, then it is reported missing
    found = problems_about(ledger.check_ledger(session=db_session), [payment.id])
    assert [(p.problem, p.kind) for p in found] == [("missing", "payment")]


def test_the_check_finds_a_payment_posted_that_did_not_succeed(
    db_session: Session, biller: Biller
) -> None:
    # given a pending payment with a payment entry planted for it
    payment = make_payment(db_session, biller, status="pending")
    _plant_entry(
        db_session, "payment", str(payment.id), "clearing:sandbox", f"payable:{biller.id}", 10_000
    )
    # when the ledger is checked, then the posting is reported as unexpected
    found = problems_about(ledger.check_ledger(session=db_session), [payment.id])
    assert [(p.problem, p.kind) for p in found] == [("unexpected", "payment")]


def test_the_check_finds_a_payment_posted_twice(db_session: Session, biller: Biller) -> None:
    # given a posted payment whose entry got a second, identical line
    payment = make_payment(db_session, biller, amount_fen=700)
    entry = db_session.scalars(
        select(JournalEntry).where(JournalEntry.reference == str(payment.id))
    ).one()
    [line] = _lines(db_session, entry.id)
    db_session.add(
        JournalLine(
            entry_id=entry.id,
            debit_account_id=line.debit_account_id,
            credit_account_id=line.credit_account_id,
            amount_fen=700,
        )
    )
    db_session.flush()
    # when the ledger is checked, then the payment is reported posted twice
    found = problems_about(ledger.check_ledger(session=db_session), [payment.id])
    assert [(p.problem, p.detail) for p in found] == [
        ("duplicate", "posted CNY 14.00 for CNY 7.00")
    ]


def _refused_take(db_session: Session, biller: Biller, taken_fen: int) -> tuple[Payment, Refund]:
    """A payment of 123.45 yuan whose success was refused because the provider took
    ``taken_fen``, and the automatic refund (succeeded) of all of it; nothing posted."""
    payment = make_payment(db_session, biller, amount_fen=12_345, status="failed")
    payment.taken_fen = taken_fen
    payment.refunded_fen = taken_fen
    refund = Refund(
        refund_no="RFTEST" + uuid.uuid4().hex[:20],
        payment_id=payment.id,
        amount_fen=taken_fen,
        idempotency_key=f"automatic:{payment.id}:1",
        request_hash="0" * 64,
        reason="the provider's amount did not match the payment",
        origin="automatic",
        status="succeeded",
    )
    db_session.add(refund)
    db_session.flush()
    return payment, refund


@pytest.mark.parametrize("taken_fen", [1, 12_344, 99_999], ids=["one fen", "less", "more"])
def test_a_late_payment_of_what_the_provider_took_checks_clean(
    db_session: Session, biller: Biller, taken_fen: int
) -> None:
    # given a refused take refunded in full, posted by the service
    payment, refund = _refused_take(db_session, biller, taken_fen)
    late = ledger.post_late_payment(session=db_session, payment=payment, posted_by="tests")
    ledger.post_refund(session=db_session, refund=refund, posted_by="tests")
    # then the late payment is of what the provider took, and the check finds nothing wrong
    assert [line.amount_fen for line in _lines(db_session, late.id)] == [taken_fen]
    found = problems_about(ledger.check_ledger(session=db_session), [payment.id, refund.id])
    assert found == []


def test_the_check_finds_a_late_payment_of_the_amount_not_of_the_take(
    db_session: Session, biller: Biller
) -> None:
    # given a refused take of 999.99 yuan posted as a late payment of the payment's 123.45
    payment, refund = _refused_take(db_session, biller, 99_999)
    _plant_entry(
        db_session, "late_payment", str(payment.id), "clearing:sandbox", "refunds_payable", 12_345
    )
    ledger.post_refund(session=db_session, refund=refund, posted_by="tests")
    # when the ledger is checked, then the late payment is reported for the wrong amount
    found = problems_about(ledger.check_ledger(session=db_session), [payment.id, refund.id])
    assert [(p.problem, p.kind, p.detail) for p in found] == [
        ("amount_mismatch", "late_payment", "posted CNY 123.45 for CNY 999.99")
    ]


def test_the_check_finds_money_taken_in_twice(db_session: Session, biller: Biller) -> None:
    # given a posted payment also posted as a late payment to refund
    payment = make_payment(db_session, biller, amount_fen=300)
    _plant_entry(db_session, "late_payment", str(payment.id), "clearing:sandbox", "suspense", 300)
    # when the ledger is checked, then both the double receipt and the stray posting show
    found = {
        (p.problem, p.kind)
        for p in problems_about(ledger.check_ledger(session=db_session), [payment.id])
    }
    assert ("duplicate", "payment") in found
    assert ("unexpected", "late_payment") in found


def test_the_check_finds_an_entry_without_lines_and_a_line_in_another_currency(
    db_session: Session, biller: Biller
) -> None:
    # given an adjustment with no lines, and one whose line is in dollars between yuan accounts
    empty = f"empty-{uuid.uuid4().hex[:8]}"
    db_session.add(JournalEntry(kind="adjustment", reference=empty, memo="", posted_by="x"))
    dollars = f"usd-{uuid.uuid4().hex[:8]}"
    _plant_entry(db_session, "adjustment", dollars, "fees", "suspense", 100, currency="USD")
    # when the ledger is checked, then both are reported unbalanced
    found = problems_about(ledger.check_ledger(session=db_session), [empty, dollars])
    assert sorted((p.problem, p.reference) for p in found) == sorted(
        [("unbalanced", empty), ("unbalanced", dollars)]
    )


def test_the_check_finds_lines_the_database_should_have_refused(
    db_session: Session, biller: Biller
) -> None:
    # given a negative line and a line from an account to itself, planted past the checks
    negative, circular = f"neg-{uuid.uuid4().hex[:8]}", f"self-{uuid.uuid4().hex[:8]}"
    with _checks_off(db_session):
        _plant_entry(db_session, "adjustment", negative, "fees", "suspense", -100)
        _plant_entry(db_session, "adjustment", circular, "fees", "fees", 100)
        # when the ledger is checked
        found = problems_about(ledger.check_ledger(session=db_session), [negative, circular])
    # then both are reported unbalanced
    assert sorted(p.reference for p in found if p.problem == "unbalanced") == sorted(
        [negative, circular]
    )


def test_the_check_finds_a_payment_posted_to_another_biller(db_session: Session) -> None:
    # given a payment of biller A whose posting credits biller B
    a, b = make_biller(db_session), make_biller(db_session)
    payment = make_payment(db_session, a, post=False)
    _plant_entry(
        db_session, "payment", str(payment.id), "clearing:sandbox", f"payable:{b.id}", 10_000
    )
    # when the ledger is checked, then the accounts are reported wrong
    found = problems_about(ledger.check_ledger(session=db_session), [payment.id])
    assert [p.problem for p in found] == ["wrong_accounts"]


def test_the_check_finds_a_refunded_total_out_of_step(db_session: Session, biller: Biller) -> None:
    # given a payment whose refunded_fen moved with no refund behind it
    payment = make_payment(db_session, biller)
    db_session.execute(update(Payment).where(Payment.id == payment.id).values(refunded_fen=50))
    # when the ledger is checked, then that is reported
    found = problems_about(ledger.check_ledger(session=db_session), [payment.id])
    assert [p.problem for p in found] == ["refund_total"]


# --- helpers --------------------------------------------------------------------------------


def _plant_entry(
    session: Session,
    kind: str,
    reference: str,
    debit: str,
    credit: str,
    amount: int,
    *,
    currency: str = "CNY",
) -> None:
    """An entry written straight into the tables, past the ledger's functions."""
    ids = {}
    for code in (debit, credit):
        found = session.scalars(select(LedgerAccount.id).where(LedgerAccount.code == code)).first()
        if found is None:
            kind_of, biller_id = ledger.describe_account(code)
            account = LedgerAccount(code=code, kind=kind_of, biller_id=biller_id)
            session.add(account)
            session.flush()
            found = account.id
        ids[code] = found
    entry = JournalEntry(kind=kind, reference=reference, memo="planted", posted_by="tests")
    session.add(entry)
    session.flush()
    session.add(
        JournalLine(
            entry_id=entry.id,
            debit_account_id=ids[debit],
            credit_account_id=ids[credit],
            amount_fen=amount,
            currency=currency,
        )
    )
    session.flush()


@contextmanager
def _checks_off(session: Session) -> Iterator[None]:
    """The journal line's CHECK constraints off, for this test's transaction only."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("PRAGMA ignore_check_constraints = ON"))
        try:
            yield
        finally:
            session.execute(text("PRAGMA ignore_check_constraints = OFF"))
    else:
        # DDL is transactional on PostgreSQL: the test's rollback puts the constraints back.
        for name in ("amount_positive", "two_accounts"):
            session.execute(
                text(f"ALTER TABLE pay_journal_line DROP CONSTRAINT ck_pay_journal_line_{name}")
            )
        yield


def test_postings_of_the_wrong_state_are_refused(db_session: Session, biller: Biller) -> None:
    # given a succeeded payment and a pending refund of it
    payment = make_payment(db_session, biller)
    refund = Refund(
        refund_no="RFTEST" + uuid.uuid4().hex[:20],
        payment_id=payment.id,
        amount_fen=10,
        idempotency_key=uuid.uuid4().hex,
        request_hash="0" * 64,
        reason="test",
        status="pending",
    )
    db_session.add(refund)
    db_session.flush()
    # when either is posted as what it is not, then that is refused
    with pytest.raises(Conflict):
        ledger.post_late_payment(session=db_session, payment=payment, posted_by="tests")
    with pytest.raises(Conflict):
        ledger.post_refund(session=db_session, refund=refund, posted_by="tests")


@pytest.mark.parametrize(
    ("memo", "reference"),
    [
        ("", "ref"),
        ("m" * 301, "ref"),
        ("memo", ""),
        ("memo", "r" * 101),
        # what would make the ledger page show something else
        ("退款\u202e已核对", "ref"),
        ("memo", "ref\u200b1"),
        ("\u3164", "ref"),
    ],
)
def test_an_adjustment_needs_a_memo_and_a_reference(
    db_session: Session, memo: str, reference: str
) -> None:
    # when an adjustment comes without a usable memo or reference, then it is refused
    with pytest.raises(InvalidInput):
        ledger.post_adjustment(
            session=db_session,
            actor=SYSTEM,
            debit_code="fees",
            credit_code="suspense",
            amount_fen=1,
            memo=memo,
            reference=reference,
        )


def test_an_adjustment_to_an_unknown_billers_account_is_refused(db_session: Session) -> None:
    # when an adjustment names a biller that does not exist, then it is refused
    with pytest.raises(NotFound):
        ledger.post_adjustment(
            session=db_session,
            actor=SYSTEM,
            debit_code=f"payable:{uuid.uuid4()}",
            credit_code="suspense",
            amount_fen=1,
            memo="memo",
            reference="ref",
        )


def test_the_journal_refuses_an_unknown_account_and_a_bad_limit(db_session: Session) -> None:
    # when the journal is asked for an account nobody posted to, or too many entries, then no
    with pytest.raises(NotFound):
        ledger.journal(session=db_session, actor=SYSTEM, account_code="clearing:nowhere")
    with pytest.raises(InvalidInput):
        ledger.journal(session=db_session, actor=SYSTEM, limit=0)
    with pytest.raises(NotFound):
        ledger.balances(session=db_session, actor=SYSTEM, biller_id=uuid.uuid4())


def test_the_check_describes_itself_in_one_line_and_one_line_per_problem() -> None:
    # given a check with one problem, when it is described, then a head line and the problem show
    check = ledger.LedgerCheck(
        entries=3,
        payments=2,
        refunds=1,
        problems=[ledger.LedgerProblem("missing", "payment", "abc", "not posted")],
    )
    assert check.describe().splitlines() == [
        "ledger NOT balanced: 3 entries, 2 succeeded payments, 1 succeeded refunds, 1 problems",
        "missing: payment abc: not posted",
    ]
    assert ledger.LedgerCheck(entries=0, payments=0, refunds=0).ok
