"""Who reads reconciliation exceptions below platform level, which accounts an adjustment may
take, and the memo codes postings keep (on both databases)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM
from tests.factories.pay_money import FakeProvider, make_biller, make_payment, member, statement
from tests.unit.pay.ledger.test_reconciliation import DAY, at

from civicloud.core.errors import InvalidInput, PermissionDenied
from civicloud.core.tenants import Tenant
from civicloud.pay import ledger, reconciliation
from civicloud.pay.models import Biller, JournalEntry


def _imported(session: Session, provider: FakeProvider, biller: Biller) -> tuple[str, str]:
    """A statement with another amount for a payment of ``biller`` and a stranger line."""
    payment = make_payment(
        session, biller, amount_fen=500, provider=provider.name, finished_at=at(DAY, 10)
    )
    reconciliation.import_statement(
        session=session,
        actor=SYSTEM,
        provider=provider,
        content=statement(
            ("payment", payment.trade_no, "Q1", 501), ("payment", "T-stranger", "Q2", 5)
        ),
        business_date=DAY,
    )
    return payment.trade_no, "T-stranger"


def test_a_billers_payment_reader_sees_its_exceptions_only(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    ours, stranger = _imported(db_session, provider, biller)
    other = make_biller(db_session)
    make_payment(db_session, other, provider=provider.name, finished_at=at(DAY, 11))
    tenant = db_session.get(Tenant, biller.tenant_id)
    # when the biller's payment reader lists the exceptions, then only its payment's is there
    reader = member(tenant, "pay.payment.read")
    seen = {i.trade_no for i in reconciliation.list_items(session=db_session, actor=reader)}
    assert ours in seen
    assert stranger not in seen
    # and a platform reconciler sees the stranger too
    everyone = member(None, "pay.reconcile")
    assert stranger in {
        i.trade_no for i in reconciliation.list_items(session=db_session, actor=everyone)
    }
    # and someone who may not search payments anywhere is refused, not shown an empty list
    with pytest.raises(PermissionDenied):
        reconciliation.list_items(session=db_session, actor=member(tenant, "pay.biller.read"))
    # and the reader may neither resolve nor ask which accounts could take an adjustment
    [item] = [
        i for i in reconciliation.list_items(session=db_session, actor=reader) if i.trade_no == ours
    ]
    with pytest.raises(PermissionDenied):
        reconciliation.adjustment_accounts(session=db_session, actor=reader, item_id=item.id)


def test_an_adjustment_takes_only_the_accounts_offered_for_its_item(
    db_session: Session, biller: Biller, provider: FakeProvider
) -> None:
    ours, stranger = _imported(db_session, provider, biller)
    items = {i.trade_no: i for i in reconciliation.list_items(session=db_session, actor=SYSTEM)}
    # then an item of our payment offers its biller's payable, a stranger's does not
    offered = reconciliation.adjustment_accounts(
        session=db_session, actor=SYSTEM, item_id=items[ours].id
    )
    assert ledger.payable_account(biller.id) in offered
    assert ledger.clearing_account(provider.name) in offered
    strangers = reconciliation.adjustment_accounts(
        session=db_session, actor=SYSTEM, item_id=items[stranger].id
    )
    assert not any(code.startswith("payable:") for code in strangers)
    # when an adjustment names another provider's clearing account, then it is refused
    with pytest.raises(InvalidInput):
        reconciliation.resolve_item(
            session=db_session,
            actor=SYSTEM,
            item_id=items[stranger].id,
            debit_code="clearing:elsewhere",
            credit_code=ledger.SUSPENSE,
            amount_fen=5,
            memo="x",
        )
    assert items[stranger].resolved_at is None


def test_a_posted_payment_keeps_its_memo_as_a_code_and_values(
    db_session: Session, biller: Biller
) -> None:
    payment = make_payment(db_session, biller)
    entry = db_session.scalars(
        select(JournalEntry).where(
            JournalEntry.kind == ledger.PAYMENT, JournalEntry.reference == str(payment.id)
        )
    ).one()
    assert (entry.memo_code, entry.memo_params) == ("payment", {"trade_no": payment.trade_no})
    assert entry.memo == f"payment {payment.trade_no}"
