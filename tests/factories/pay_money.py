"""Factories for Pay's money core (ledger, refunds, settlement, reconciliation), and a fake provider.

Billers and payments are made directly with the models, as the payments service would leave
them: a succeeded payment has its ``payment_bill`` rows (inactive), its ``bill_payment`` rows,
paid bills, and (unless told otherwise) its ledger posting. ``FakeProvider`` implements the
``PaymentProvider`` Protocol in memory: it refunds at most what was paid, deduplicates refunds
by ``refund_no`` as real providers do, and reads a small CSV statement.
"""

from __future__ import annotations

import csv
import io
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session
from tests.factories.core import make_tenant, unique

from civicloud.core.actor import Actor, Grant
from civicloud.core.db import utcnow
from civicloud.core.tenants import Tenant
from civicloud.pay import ledger
from civicloud.pay.backends import (
    Acknowledgement,
    Checkout,
    CheckoutRequest,
    Notification,
    RefundOutcome,
    StatementLine,
    TradeQuery,
)
from civicloud.pay.ledger import LedgerCheck, LedgerProblem
from civicloud.pay.models import Bill, Biller, BillPayment, Payment, PaymentBill

RefundMode = Literal["succeeded", "pending", "failed", "raise"]


def provider_name() -> str:
    """A provider name no other test uses, so that a statement's day holds only our payments."""
    return f"f{uuid.uuid4().hex[:10]}"


def make_biller(session: Session, *, tenant: Tenant | None = None) -> Biller:
    """A water biller under ``tenant`` (a fresh root tenant when there is none)."""
    biller = Biller(
        id=uuid.uuid4(),
        tenant_id=(tenant or make_tenant(session)).id,
        code=unique("water"),
        name_zh="大连市供水有限公司",
        name_en="Dalian Water Supply",
        category="water",
        account_pattern=r"\d{10}",
        settlement_bank="中国工商银行大连分行",
        settlement_account="6222020200112233445",
        settlement_account_name="大连市供水有限公司",
    )
    session.add(biller)
    session.flush()
    return biller


def make_payment(
    session: Session,
    biller: Biller,
    *,
    amount_fen: int = 10_000,
    status: str = "succeeded",
    provider: str = "sandbox",
    finished_at: datetime | None = None,
    bills: int = 1,
    post: bool = True,
    account_number: str = "0102030405",
    payer_name: str = "张三丰",
    created_at: datetime | None = None,
    trade_no: str | None = None,
) -> Payment:
    """A payment of ``bills`` bills of ``biller`` (succeeded and posted unless told otherwise)."""
    now = utcnow()
    succeeded = status == "succeeded"
    shares = [amount_fen // bills] * bills
    shares[0] += amount_fen - sum(shares)
    payment = Payment(
        id=uuid.uuid4(),
        trade_no=trade_no or f"T{uuid.uuid4().hex[:30]}",
        biller_id=biller.id,
        tenant_id=biller.tenant_id,
        provider=provider,
        status=status,
        amount_fen=amount_fen,
        refunded_fen=0,
        currency="CNY",
        idempotency_key=unique("pay"),
        request_hash="0" * 64,
        return_url="/",
        provider_trade_no=f"P{uuid.uuid4().hex[:20]}",
        checkout={},
        created_at=created_at or now - timedelta(minutes=5),
        expires_at=now + timedelta(minutes=10),
        finished_at=(finished_at or now) if status not in ("created", "pending") else None,
    )
    session.add(payment)
    for share in shares:
        bill = Bill(
            id=uuid.uuid4(),
            biller_id=biller.id,
            bill_number=f"B{uuid.uuid4().hex[:20]}",
            account_number=account_number,
            payer_name=payer_name,
            amount_fen=share,
            period="2026-10",
            due_date=date(2026, 12, 31),
            status="paid" if succeeded else "open",
        )
        session.add(bill)
        session.flush()
        session.add(
            PaymentBill(
                payment_id=payment.id,
                bill_id=bill.id,
                amount_fen=share,
                active=status in ("created", "pending"),
            )
        )
        if succeeded:
            session.add(BillPayment(bill_id=bill.id, payment_id=payment.id, paid_at=now))
    session.flush()
    if succeeded and post:
        ledger.post_payment(session=session, payment=payment, posted_by="tests")
    return payment


@dataclass
class FakeProvider:
    """An in-memory payment provider: refunds deduplicated by refund_no, a CSV statement."""

    name: str = "sandbox"
    #: What the next refund request is answered with (``raise``: the call fails).
    mode: RefundMode = "succeeded"
    #: refund_no → the answer given, as a real provider keeps it.
    answers: dict[str, RefundOutcome] = field(default_factory=dict)
    #: trade_no → fen actually given back.
    refunded: dict[str, int] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """Not used by these tests."""
        raise NotImplementedError

    def parse_notification(self, *, headers: Mapping[str, str], body: bytes) -> Notification:
        """Not used by these tests."""
        raise NotImplementedError

    def acknowledge(self, *, accepted: bool) -> Acknowledgement:
        """Not used by these tests."""
        raise NotImplementedError

    def query(self, trade_no: str) -> TradeQuery:
        """Not used by these tests."""
        raise NotImplementedError

    def refund(
        self, *, trade_no: str, refund_no: str, amount_fen: int, total_fen: int, reason: str
    ) -> RefundOutcome:
        """Refund once per refund_no; never more than ``total_fen`` in all."""
        with self.lock:
            self.calls.append(refund_no)
            if self.mode == "raise":
                raise ConnectionError("the provider did not answer")
            earlier = self.answers.get(refund_no)
            if earlier is not None and earlier.status != "pending":
                return earlier
            if self.mode == "succeeded":
                given = self.refunded.get(trade_no, 0) + amount_fen
                assert given <= total_fen, "the provider was asked to refund more than was paid"
                self.refunded[trade_no] = given
            answer = RefundOutcome(status=self.mode, provider_refund_no=f"PR{refund_no[2:20]}")
            self.answers[refund_no] = answer
            return answer

    def parse_statement(self, content: bytes, *, business_date: date) -> list[StatementLine]:
        """``kind,trade_no,provider_trade_no,amount_fen,refund_no`` lines, after a header."""
        rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
        if not rows or rows[0] != [*STATEMENT_COLUMNS]:
            raise ValueError("not a fake statement")
        return [
            StatementLine(
                trade_no=trade_no,
                provider_trade_no=provider_trade_no,
                kind="refund" if kind == "refund" else "payment",
                amount_fen=int(amount),
                refund_no=refund_no or None,
            )
            for kind, trade_no, provider_trade_no, amount, refund_no in rows[1:]
        ]


STATEMENT_COLUMNS = ("kind", "trade_no", "provider_trade_no", "amount_fen", "refund_no")


def statement(*lines: tuple[str, str, str, int] | tuple[str, str, str, int, str]) -> bytes:
    """A fake statement of ``(kind, trade_no, provider_trade_no, amount_fen[, refund_no])``
    lines (a refund line without ``refund_no`` names its refund by its trade only)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(STATEMENT_COLUMNS)
    writer.writerows((*line, "")[:5] for line in lines)
    return out.getvalue().encode()


def member(tenant: Tenant | None, *permissions: str) -> Actor:
    """A user holding ``permissions`` at ``tenant`` (platform-wide when ``None``)."""
    return Actor(
        kind="user",
        name=f"user-{uuid.uuid4().hex[:8]}",
        via="test",
        grants=(
            Grant(
                "test_role",
                tenant.id if tenant else None,
                tenant.path if tenant else None,
                frozenset(permissions),
            ),
        ),
    )


def problems_about(check: LedgerCheck, references: Iterable[object]) -> list[LedgerProblem]:
    """The problems ``check`` found about ``references`` (other tests may share the database)."""
    wanted = {str(reference) for reference in references}
    return [problem for problem in check.problems if problem.reference in wanted]
