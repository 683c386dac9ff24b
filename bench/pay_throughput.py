"""Pay throughput: end-to-end payments per second through Pay's services, against raw SQL.

One payment, in both paths: a citizen pays one open bill through the sandbox provider, then the
sandbox's signed success notification is applied. Two transactions:

1. create: lock the bill, insert the payment and its bill link, register the trade with the
   sandbox, mark the payment pending (no audit record: a citizen's payment is a data event);
2. notify: verify the sandbox's HMAC, lock bill and payment, mark the payment succeeded and the
   bill paid, record the bill's payment, post the ledger (creating accounts if needed), sign and
   store the Ed25519 receipt, queue the biller's webhook, keep the notification, audit it.

- **service**: civicloud's code. ``payments.create_payment`` in one ``unit_of_work`` (a fresh
  ``Idempotency-Key`` each time), then ``payments.handle_notification`` in another, as
  Pay's context (``civicloud.pay.context``) delivers the sandbox's notifications.
- **raw**: the same rows with the same values written by hand-written SQL through the driver
  (psycopg on PostgreSQL, ``sqlite3`` on SQLite), in the same two transactions, no SQLAlchemy.
  The same sandbox calls (register, sign, verify) and the same hashing and signing.

Both run here, in one process, with ``--clients`` threads (32) each paying in a loop, on one
database: a throwaway PostgreSQL cluster (``bench/_postgres.py``), then SQLite. Rounds
alternate the order (service/raw, raw/service, ...); the reported ratio is service/raw
payments per second, the median over rounds. At the end ``ledger.check_ledger`` and the audit
chain must hold and every payment must have succeeded exactly once.

    .venv/bin/python bench/pay_throughput.py            # about 2 minutes
    .venv/bin/python bench/pay_throughput.py --quick    # under 30 seconds
    .venv/bin/python bench/pay_throughput.py --profile  # also: where the time goes (cProfile)
    .venv/bin/python bench/pay_throughput.py --postgres-url postgresql+psycopg://U:PW@HOST/DB

The last line printed is ``pay_throughput ratio=X goal=0.5``: X is the PostgreSQL ratio (the
SQLite one when no PostgreSQL is available, which a line before says).
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import hashlib
import hmac
import json
import math
import os
import pstats
import queue
import re
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import _postgres
from civicloud.app import load_settings
from civicloud.pay.payments import PayContext

GOAL = 0.5
# A path of this installation: the checkout never leads elsewhere (payments.check_return_url).
RETURN_URL = "/pay/return"
#: Tables one payment writes to, for the rows-per-payment comparison of the two paths.
TABLES = (
    "pay_payment",
    "pay_payment_bill",
    "pay_bill_payment",
    "pay_provider_notification",
    "pay_journal_entry",
    "pay_journal_line",
    "pay_receipt",
    "pay_webhook_delivery",
    "audit_record",
)


# --- the world: a migrated database, a biller, its bills ---------------------------------------


@dataclass
class World:
    """One database with civicloud's services over it, a biller and a supply of open bills."""

    label: str
    services: Any  # civicloud.core.services.Services
    context: Any  # civicloud.pay.payments.PayContext
    biller_id: uuid.UUID
    tenant_id: uuid.UUID
    bills: Iterator[uuid.UUID] = field(default_factory=lambda: iter(()))
    #: Payments made so far per path (``service``, ``raw``), to check at the end.
    issued: Counter[str] = field(default_factory=Counter)

    @property
    def sqlite(self) -> bool:
        """Whether this is the SQLite world."""
        return bool(self.services.db.is_sqlite)

    @property
    def sandbox(self) -> Any:
        """The sandbox provider of the world's PayContext."""
        return self.context.providers["sandbox"]

    def take(self, count: int) -> list[uuid.UUID]:
        """``count`` fresh open bills (pre-created; running out is a bug in the sizing)."""
        return [next(self.bills) for _ in range(count)]

    def pool_capacity(self) -> int:
        """How many connections the application's engine may hold open at once."""
        pool = self.services.db.engine.pool
        return int(pool.size() + max(getattr(pool, "_max_overflow", 0), 0))


def build_world(label: str, url: str, data_dir: Path) -> World:
    """Build, migrate and seed civicloud at ``url``: an agency with a water biller."""
    from civicloud.app import build_services, prepare_database
    from civicloud.core import tenants
    from civicloud.core.actor import Actor
    from civicloud.pay import billing
    from civicloud.pay.schemas import BillerCreate

    settings = load_settings(data_dir=data_dir, database_url=url, log_level="WARNING")
    services = build_services(settings)
    prepare_database(services)
    context = services.context("pay", PayContext)
    system = Actor.system("bench")
    tag = os.urandom(3).hex()  # fresh slugs, so that repeated runs on one database never collide
    with services.db.unit_of_work() as session:
        parent = None
        for kind, name_zh, name_en in (
            (tenants.TenantKind.COUNTRY, "中国", "China"),
            (tenants.TenantKind.CITY, "大连市", "Dalian"),
            (tenants.TenantKind.AGENCY, "大连市供水", "Dalian Water"),
        ):
            parent = tenants.create_tenant(
                session=session,
                actor=system,
                data=tenants.TenantCreate(
                    slug=f"bench-{tag}-{kind.value}",
                    name_zh=name_zh,
                    name_en=name_en,
                    kind=kind,
                    parent_id=parent.id if parent else None,
                    region_code=None if parent else "cn-beijing",
                ),
            )
        assert parent is not None
        biller = billing.create_biller(
            session=session,
            actor=system,
            data=BillerCreate(
                tenant_id=parent.id,
                code=f"water-{tag}",
                name_zh="大连市供水有限公司",
                name_en="Dalian Water Supply",
                category="water",
                account_pattern=r"\d{10}",
                settlement_bank="中国工商银行大连分行",
                settlement_account="6222020200112233445",
                settlement_account_name="大连市供水有限公司",
                # A webhook URL, so that every paid bill queues a webhook (nothing is sent).
                webhook_url="https://biller.example.cn/civicloud/webhook",
                webhook_secret=secrets.token_hex(16),
            ),
        )
        biller_id, tenant_id = biller.id, parent.id
    return World(
        label=label, services=services, context=context, biller_id=biller_id, tenant_id=tenant_id
    )


def create_bills(world: World, count: int) -> float:
    """Insert ``count`` open bills in one bulk insert; returns the seconds it took."""
    from sqlalchemy import insert

    from civicloud.core.db import utcnow
    from civicloud.pay.models import Bill

    started = time.perf_counter()
    now = utcnow()
    due = now.date() + timedelta(days=20)
    ids = [uuid.uuid4() for _ in range(count)]
    rows = [
        {
            "id": bill_id,
            "biller_id": world.biller_id,
            "bill_number": f"B{now:%y%m%d}{number:07d}",
            "account_number": f"{3_000_000_000 + number:010d}",
            "payer_name": "张三丰",
            "amount_fen": 5_000 + number % 20_000,
            "currency": "CNY",
            "period": "2026-10",
            "due_date": due,
            "late_fee_rule": {"per_day_basis_points": 5, "cap_fen": 10_000},
            "status": "open",
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        for number, bill_id in enumerate(ids)
    ]
    with world.services.db.unit_of_work() as session:
        session.execute(insert(Bill), rows)
    world.bills = iter(ids)
    return time.perf_counter() - started


# --- the service path: civicloud's code -------------------------------------------------------


class ServicePath:
    """Pays through ``payments.create_payment`` and ``payments.handle_notification``."""

    name = "service"

    def __init__(self, world: World) -> None:
        from sqlalchemy import event

        from civicloud.core.context import set_request_id
        from civicloud.pay import payments
        from civicloud.pay.schemas import PaymentCreate

        self.world = world
        #: New database connections the engine's pool opened (beyond its first ones, a churn).
        self.connects = 0
        event.listen(world.services.db.engine, "connect", self._connected)
        self._set_request_id = set_request_id
        self._payments = payments
        self._payment_create = PaymentCreate

    def _connected(self, _dbapi_connection: Any, _record: Any) -> None:
        self.connects += 1  # under the GIL; an estimate is all the report needs anyway

    def pay(self, bill_id: uuid.UUID) -> None:
        """One payment, end to end; raises when it did not succeed."""
        db, context, payments = self.world.services.db, self.world.context, self._payments
        # A request id per unit of work, as the web layer sets one per request.
        self._set_request_id(uuid.uuid4().hex)
        with db.unit_of_work() as session:
            payment, created = payments.create_payment(
                session=session,
                data=self._payment_create(
                    biller_id=self.world.biller_id,
                    bill_ids=[bill_id],
                    provider="sandbox",
                    return_url=RETURN_URL,
                ),
                idempotency_key=f"bench-service-{uuid.uuid4().hex}",
                context=context,
            )
            trade_no = payment.trade_no
        if not created:
            raise RuntimeError(f"payment for {bill_id} was a replay")
        # The sandbox settles the trade and signs its notification; the no-op deliver keeps it
        # from sending, so that it is applied here, where an error is not swallowed.
        (notice,) = self.world.sandbox.simulate(trade_no, "succeeded", deliver=lambda *_: None)
        self._set_request_id(uuid.uuid4().hex)
        with db.unit_of_work() as session:
            result = payments.handle_notification(
                session=session,
                context=context,
                provider_name="sandbox",
                headers=notice.headers,
                body=notice.body,
            )
        if result.outcome != "succeeded":
            raise RuntimeError(f"notification for {trade_no}: {result.outcome}")

    @contextmanager
    def counting(self) -> Iterator[Counter[str]]:
        """Count what goes to the database, by first word: statements, BEGIN, COMMIT, pings."""
        from sqlalchemy import event

        counts: Counter[str] = Counter()
        engine = self.world.services.db.engine
        dialect = engine.dialect
        pinged = dialect.do_ping

        def statement(_c: Any, _cu: Any, sql: str, _p: Any, _x: Any, many: bool) -> None:
            counts[sql.split(None, 1)[0].upper()] += 1

        def begin(_conn: Any) -> None:
            # psycopg sends BEGIN before a transaction's first statement; on SQLite civicloud's
            # engine sends BEGIN IMMEDIATE itself (counted as a statement above).
            if not self.world.sqlite:
                counts["BEGIN"] += 1

        def commit(_conn: Any) -> None:
            counts["COMMIT"] += 1

        def ping(dbapi_connection: Any) -> bool:
            # The pool's ping of a connection that idled (psycopg's is the empty query ";").
            counts["PING"] += 1
            return bool(pinged(dbapi_connection))

        event.listen(engine, "before_cursor_execute", statement)
        event.listen(engine, "begin", begin)
        event.listen(engine, "commit", commit)
        dialect.do_ping = ping
        try:
            yield counts
        finally:
            del dialect.do_ping  # back to the class's method
            event.remove(engine, "before_cursor_execute", statement)
            event.remove(engine, "begin", begin)
            event.remove(engine, "commit", commit)

    def close(self) -> None:
        """Nothing to close: the engine belongs to the world."""


# --- the raw path: the same writes by hand --------------------------------------------------

# PostgreSQL spelling; ``RawPath`` rewrites it for SQLite (``?`` placeholders, no FOR UPDATE,
# no ::json casts: SQLite serialises writers with BEGIN IMMEDIATE, as civicloud's engine does).
RAW_SQL = {
    # -- transaction 1: create
    "lock_bill": """
        SELECT b.biller_id, b.bill_number, b.amount_fen, b.status, b.due_date, b.late_fee_rule,
               r.tenant_id, r.name_zh
        FROM pay_bill b JOIN pay_biller r ON r.id = b.biller_id
        WHERE b.id = %s FOR UPDATE OF b""",
    "insert_payment": """
        INSERT INTO pay_payment (id, trade_no, biller_id, tenant_id, provider, status, amount_fen,
            refunded_fen, currency, idempotency_key, request_hash, return_url, provider_trade_no,
            checkout, created_at, expires_at, finished_at, version)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::json, %s, %s, %s, %s)
        ON CONFLICT (idempotency_key) DO NOTHING RETURNING id""",
    "insert_payment_bill": """
        INSERT INTO pay_payment_bill (payment_id, bill_id, amount_fen, active)
        VALUES (%s, %s, %s, %s)""",
    "payment_pending": """
        UPDATE pay_payment SET status = %s, provider_trade_no = %s, checkout = %s::json,
            version = %s
        WHERE id = %s AND version = %s""",
    # -- transaction 2: the success notification
    "lock_payment": """
        SELECT p.id, p.status, p.amount_fen, p.biller_id, p.tenant_id, p.provider, p.currency,
               pb.bill_id, pb.amount_fen, b.bill_number, b.account_number, b.period,
               r.code, r.name_zh, r.name_en, r.webhook_url
        FROM pay_payment p
        JOIN pay_payment_bill pb ON pb.payment_id = p.id
        JOIN pay_bill b ON b.id = pb.bill_id
        JOIN pay_biller r ON r.id = p.biller_id
        WHERE p.trade_no = %s
        ORDER BY b.id FOR UPDATE OF b, p""",
    "insert_bill_payment": """
        INSERT INTO pay_bill_payment (bill_id, payment_id, paid_at) VALUES (%s, %s, %s)""",
    "payment_succeeded": """
        UPDATE pay_payment SET status = %s, finished_at = %s, version = version + 1
        WHERE id = %s""",
    "links_inactive": "UPDATE pay_payment_bill SET active = %s WHERE payment_id = %s",
    "bill_paid": """
        UPDATE pay_bill SET status = %s, updated_at = %s, version = version + 1 WHERE id = %s""",
    "accounts": "SELECT code, id, currency FROM pay_ledger_account WHERE code IN (%s, %s)",
    "insert_account": """
        INSERT INTO pay_ledger_account (id, code, kind, currency, biller_id, created_at)
        VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (code) DO NOTHING""",
    "insert_entry": """
        INSERT INTO pay_journal_entry (id, kind, reference, memo, posted_at, posted_by)
        VALUES (%s, %s, %s, %s, %s, %s)""",
    "insert_line": """
        INSERT INTO pay_journal_line (id, entry_id, debit_account_id, credit_account_id,
            amount_fen, currency)
        VALUES (%s, %s, %s, %s, %s, %s)""",
    "insert_receipt": """
        INSERT INTO pay_receipt (id, number, payment_id, issued_at, body, algorithm, key_id,
            signature)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
    "insert_webhook": """
        INSERT INTO pay_webhook_delivery (id, event_id, biller_id, event, payload, attempts,
            next_attempt_at, delivered_at, last_error, created_at)
        VALUES (%s, %s, %s, %s, %s::json, %s, %s, %s, %s, %s)""",
    "insert_notification": """
        INSERT INTO pay_provider_notification (id, provider, notify_id, payment_id, event,
            outcome, payload, received_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s::json, %s)""",
    # -- the audit chain, in both transactions
    # the chain of the tenant's root: its head locked, the record's seq drawn once it is held
    "lock_head": """
        UPDATE audit_head SET seq = seq WHERE chain = %s
        RETURNING id, seq, hash, nextval('audit_record_seq')""",
    "insert_audit": """
        INSERT INTO audit_record (seq, chain, chain_seq, hash_format, at, actor, tenant_id,
            action, target, request_id, outcome, detail, prev_hash, hash, seal)
        VALUES (%s, %s, %s, 2, %s, %s, %s, %s, %s, %s, %s, %s::json, %s, %s, %s)""",
    "update_head": """
        UPDATE audit_head SET seq = %s, hash = %s, seal = %s, first_seq = COALESCE(first_seq, %s)
        WHERE id = %s""",
}

_RECEIPT_TZ = timezone(timedelta(hours=8))
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _mask(account: str) -> str:
    keep = 4 if len(account) > 6 else min(2, max(len(account) - 1, 0))
    return "*" * (len(account) - keep) + account[len(account) - keep :]


class RawPath:
    """Pays with hand-written SQL through the driver: psycopg, or sqlite3 for SQLite."""

    name = "raw"

    def __init__(
        self, world: World, *, capacity: int, dsn: str = "", sqlite_file: str = ""
    ) -> None:
        self.world = world
        self.sqlite = bool(sqlite_file)
        self.sql = {key: self._dialect(text) for key, text in RAW_SQL.items()}
        self._chain: str | None = None
        # The same receipt key as the service path: the same signatures, on the same sizes.
        self.signer = world.context.signer
        self.counts: Counter[str] | None = None
        # A pool as large as the application engine's, so both paths get the same connections.
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._connections = []
        for _ in range(capacity):
            connection = self._open_sqlite(sqlite_file) if self.sqlite else self._open_pg(dsn)
            self._connections.append(connection)
            self._pool.put(connection)

    # -- the two drivers

    @staticmethod
    def _open_pg(dsn: str) -> Any:
        import psycopg

        return psycopg.connect(dsn)  # not autocommit: the driver begins a transaction

    @staticmethod
    def _open_sqlite(path: str) -> sqlite3.Connection:
        # The settings civicloud's engine gives every SQLite connection (core/db.py).
        connection = sqlite3.connect(
            path, timeout=30, check_same_thread=False, isolation_level=None
        )
        for pragma in (
            "PRAGMA foreign_keys=ON",
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=FULL",
            "PRAGMA busy_timeout=30000",
        ):
            connection.execute(pragma)
        return connection

    def _dialect(self, text: str) -> str:
        text = " ".join(text.split())
        if not self.sqlite:
            return text
        text = re.sub(r" FOR UPDATE( OF [a-z, ]+)?$", "", text)
        # SQLite has no sequences; its writers are serial, and a record takes the next number.
        text = text.replace(
            "nextval('audit_record_seq')", "(SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_record)"
        )
        return text.replace("::json", "").replace("%s", "?")

    def _id(self, value: uuid.UUID | None) -> Any:
        # SQLAlchemy keeps a UUID as CHAR(32) hex on SQLite, as UUID on PostgreSQL.
        if value is None or not self.sqlite:
            return value
        return value.hex

    def _time(self, value: datetime) -> Any:
        # SQLite: the text SQLAlchemy's DATETIME stores (UTC, microseconds, no zone).
        if not self.sqlite:
            return value
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def _uuid(self, value: Any) -> uuid.UUID:
        return uuid.UUID(hex=value) if isinstance(value, str) else value

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        connection = self._pool.get()
        try:
            cursor = connection.cursor()
            if self.sqlite:
                self._run(cursor, "BEGIN IMMEDIATE")
            else:
                self._note("BEGIN")  # psycopg sends it before the first statement
            try:
                yield cursor
                if self.sqlite:
                    self._run(cursor, "COMMIT")
                else:
                    connection.commit()
                    self._note("COMMIT")
            except BaseException:
                if self.sqlite:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                else:
                    connection.rollback()
                raise
            finally:
                cursor.close()
        finally:
            self._pool.put(connection)

    def _note(self, verb: str) -> None:
        if self.counts is not None:
            self.counts[verb] += 1

    def _run(self, cursor: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
        self._note(sql.split(None, 1)[0].upper())
        cursor.execute(sql, params)
        return cursor

    def _exec(self, cursor: Any, key: str, *params: Any) -> Any:
        return self._run(cursor, self.sql[key], params)

    def _audit(
        self,
        cursor: Any,
        *,
        actor: str,
        action: str,
        tenant_id: uuid.UUID,
        target: str,
        detail: dict[str, Any],
    ) -> None:
        # The head of the tenant's root's chain locked, the record hashed over the chain's
        # previous hash and appended, the head moved on: what core.audit.record does
        # (verify_chain checks it at the end). The tenant is under the world's root.
        chain = self._chain_of(cursor, tenant_id)
        head_id, chain_seq, prev_hash, seq = self._exec(cursor, "lock_head", chain).fetchone()
        chain_seq += 1
        at = datetime.now(UTC)
        request_id = uuid.uuid4().hex
        body = {
            "seq": seq,
            "chain": chain,
            "chain_seq": chain_seq,
            "at": at.isoformat(timespec="microseconds"),
            "actor": actor,
            "tenant_id": str(tenant_id),
            "action": action,
            "target": target,
            "request_id": request_id,
            "outcome": "success",
            "detail": detail,
        }
        digest = hashlib.sha256(f"{prev_hash}\n{_canonical(body)}".encode()).hexdigest()
        # Sealed with the installation's audit key, as core.audit.record seals (HMAC-SHA256).
        key = self.world.services.db.audit_key
        seal = hmac.new(key, f"civicloud-audit-record\n{digest}".encode(), "sha256").hexdigest()
        head = hmac.new(
            key, f"civicloud-audit-head\n{chain}\n{chain_seq}\n{digest}".encode(), "sha256"
        )
        self._exec(
            cursor,
            "insert_audit",
            seq,
            chain,
            chain_seq,
            self._time(at),
            actor,
            self._id(tenant_id),
            action,
            target,
            request_id,
            "success",
            json.dumps(detail),
            prev_hash,
            digest,
            seal,
        )
        self._exec(cursor, "update_head", chain_seq, digest, head.hexdigest(), seq, head_id)

    def _chain_of(self, cursor: Any, tenant_id: uuid.UUID) -> str:
        # The root's id, read once (the world's tenants never move).
        if self._chain is None:
            sql = self._dialect("SELECT path FROM tenant WHERE id = %s")
            (path,) = self._run(cursor, sql, (self._id(tenant_id),)).fetchone()
            self._chain = str(uuid.UUID(hex=path[1:33]))
        return self._chain

    # -- one payment

    def pay(self, bill_id: uuid.UUID) -> None:
        """One payment, end to end; raises when it did not succeed."""
        trade_no = self._create(bill_id)
        (notice,) = self.world.sandbox.simulate(trade_no, "succeeded", deliver=lambda *_: None)
        self._notify(notice.headers, notice.body)

    def _create(self, bill_id: uuid.UUID) -> str:
        from civicloud.pay.backends import CheckoutRequest

        sandbox, settings = self.world.sandbox, self.world.context.settings
        key = f"bench-raw-{uuid.uuid4().hex}"
        request = {
            "biller_id": str(self.world.biller_id),
            "bill_ids": [str(bill_id)],
            "provider": "sandbox",
            "return_url": RETURN_URL,
        }
        request_hash = hashlib.sha256(_canonical(request).encode()).hexdigest()
        with self._transaction() as cursor:
            row = self._exec(cursor, "lock_bill", self._id(bill_id)).fetchone()
            if row is None:
                raise RuntimeError(f"no bill {bill_id}")
            biller_id, bill_number, amount, status, due, rule, tenant_id, biller_name = row
            if self._uuid(biller_id) != self.world.biller_id or status != "open":
                raise RuntimeError(f"bill {bill_number} is not payable ({status})")
            # Other payments in flight for the bill are left alone (the first success pays it),
            # as civicloud does: nothing to look up.
            now = datetime.now(UTC)
            rule = json.loads(rule) if isinstance(rule, str) else rule
            due = date.fromisoformat(due) if isinstance(due, str) else due
            if rule and now.date() > due:
                days = (now.date() - due).days
                amount += min(
                    amount * rule["per_day_basis_points"] * days // 10_000, rule["cap_fen"]
                )
            payment_id = uuid.uuid4()
            trade_no = f"CC{now:%Y%m%d}{secrets.randbelow(10**16):016d}"
            expires_at = now + timedelta(minutes=settings.payment_minutes)
            inserted = self._exec(
                cursor,
                "insert_payment",
                self._id(payment_id),
                trade_no,
                self._id(self.world.biller_id),
                self._id(self._uuid(tenant_id)),
                "sandbox",
                "created",
                amount,
                0,
                "CNY",
                key,
                request_hash,
                RETURN_URL,
                None,
                "{}",
                self._time(now),
                self._time(expires_at),
                None,
                1,
            ).fetchone()
            if inserted is None:
                raise RuntimeError("idempotency key reused")  # never, with fresh keys
            self._exec(
                cursor,
                "insert_payment_bill",
                self._id(payment_id),
                self._id(bill_id),
                amount,
                1 if self.sqlite else True,
            )
            checkout = sandbox.create_checkout(
                CheckoutRequest(
                    trade_no=trade_no,
                    amount_fen=amount,
                    currency="CNY",
                    subject=f"{biller_name} 账单缴费 1 笔",
                    return_url=RETURN_URL,
                    notify_url=f"{settings.public_base_url}/api/v1/pay/notify/sandbox",
                    expires_at=expires_at,
                )
            )
            self._exec(
                cursor,
                "payment_pending",
                "pending",
                checkout.provider_trade_no,
                json.dumps({"kind": checkout.kind, "url": checkout.url}),
                2,
                self._id(payment_id),
                1,
            )
            # No audit record: a citizen's payment is a data event of the payment itself, as
            # civicloud keeps it (the audit log holds management events).
        return trade_no

    def _notify(self, headers: Any, body: bytes) -> None:
        sandbox, signer = self.world.sandbox, self.signer
        notification = sandbox.parse_notification(headers=headers, body=body)
        with self._transaction() as cursor:
            rows = self._exec(cursor, "lock_payment", notification.trade_no).fetchall()
            if not rows:
                raise RuntimeError(f"no payment {notification.trade_no}")
            payment_id, status, amount, biller_id, tenant_id, provider, currency = rows[0][:7]
            code, name_zh, name_en, webhook_url = rows[0][12:]
            # (bill id, fen paid, bill number, account number, period) per bill
            bills = [row[7:12] for row in rows]
            payment_id, biller_id = self._uuid(payment_id), self._uuid(biller_id)
            tenant_id = self._uuid(tenant_id)
            if provider != "sandbox" or notification.amount_fen != amount:
                raise RuntimeError(f"notification does not match payment {notification.trade_no}")
            if notification.status != "succeeded" or status not in ("created", "pending"):
                raise RuntimeError(f"payment {notification.trade_no} is {status}")
            now = datetime.now(UTC)
            for bill in bills:
                self._exec(
                    cursor, "insert_bill_payment", bill[0], self._id(payment_id), self._time(now)
                )
            self._exec(
                cursor, "payment_succeeded", "succeeded", self._time(now), self._id(payment_id)
            )
            self._exec(cursor, "links_inactive", 0 if self.sqlite else False, self._id(payment_id))
            for bill in bills:
                self._exec(cursor, "bill_paid", "paid", self._time(now), bill[0])
            # The ledger: clearing:sandbox -> payable:<biller>, accounts made on first use.
            debit, credit = f"clearing:{provider}", f"payable:{biller_id}"
            accounts = {c: i for c, i, _ in self._exec(cursor, "accounts", debit, credit)}
            if len(accounts) < 2:
                for code, kind, owner in ((debit, "asset", None), (credit, "liability", biller_id)):
                    if code not in accounts:
                        self._exec(
                            cursor,
                            "insert_account",
                            self._id(uuid.uuid4()),
                            code,
                            kind,
                            "CNY",
                            self._id(owner),
                            self._time(now),
                        )
                accounts = {c: i for c, i, _ in self._exec(cursor, "accounts", debit, credit)}
            trade_no = notification.trade_no
            entry_id = uuid.uuid4()
            self._exec(
                cursor,
                "insert_entry",
                self._id(entry_id),
                "payment",
                str(payment_id),
                f"payment {trade_no}",
                self._time(now),
                f"provider:{provider}",
            )
            self._exec(
                cursor,
                "insert_line",
                self._id(uuid.uuid4()),
                self._id(entry_id),
                accounts[debit],
                accounts[credit],
                amount,
                currency,
            )
            # The receipt: canonical JSON of the same fields, signed with the same Ed25519 key.
            issued_at = now.replace(microsecond=0)
            suffix = "".join(secrets.choice(_CROCKFORD) for _ in range(8))
            receipt_no = f"R{issued_at.astimezone(_RECEIPT_TZ):%Y%m%d}-{suffix}"
            stamp = now.isoformat(timespec="seconds")
            receipt = _canonical(
                {
                    "format": "civicloud.pay.receipt/1",
                    "number": receipt_no,
                    "trade_no": trade_no,
                    "biller": {
                        "id": str(biller_id),
                        "code": code,
                        "name_zh": name_zh,
                        "name_en": name_en,
                        "tenant_id": str(tenant_id),
                    },
                    "bills": [
                        {
                            "bill_number": number,
                            "account": _mask(account),
                            "period": period,
                            "amount_fen": fen,
                        }
                        for _, fen, number, account, period in bills
                    ],
                    "amount_fen": amount,
                    "currency": currency,
                    "paid_at": stamp,
                    "provider": provider,
                    "provider_trade_no": notification.provider_trade_no,
                    "issued_at": issued_at.isoformat(timespec="seconds"),
                    "algorithm": signer.algorithm,
                    "key_id": signer.key_id,
                }
            )
            signature = base64.b64encode(signer.sign(receipt.encode())).decode("ascii")
            self._exec(
                cursor,
                "insert_receipt",
                self._id(uuid.uuid4()),
                receipt_no,
                self._id(payment_id),
                self._time(issued_at),
                receipt,
                signer.algorithm,
                signer.key_id,
                signature,
            )
            if webhook_url:
                for _, fen, number, account, _ in bills:
                    payload = {
                        "bill_number": number,
                        "account_number": account,
                        "amount_fen": fen,
                        "currency": currency,
                        "trade_no": trade_no,
                        "paid_at": now.isoformat(),
                    }
                    self._exec(
                        cursor,
                        "insert_webhook",
                        self._id(uuid.uuid4()),
                        uuid.uuid4().hex,
                        self._id(biller_id),
                        "bill.paid",
                        json.dumps(payload),
                        0,
                        self._time(now),
                        None,
                        None,
                        self._time(now),
                    )
            # Kept last, as the service does; its unique (provider, notify_id) refuses a replay.
            self._exec(
                cursor,
                "insert_notification",
                self._id(uuid.uuid4()),
                "sandbox",
                notification.notify_id,
                self._id(payment_id),
                notification.status,
                "succeeded",
                json.dumps(dict(notification.raw), default=str),
                self._time(now),
            )
            self._audit(
                cursor,
                actor="system:provider:sandbox",
                action="pay.payment.notify",
                tenant_id=tenant_id,
                target=f"payment:{trade_no}",
                detail={"status": notification.status, "outcome": "succeeded"},
            )

    @contextmanager
    def counting(self) -> Iterator[Counter[str]]:
        """Count the statements sent (by first word) and the commits; one thread at a time."""
        self.counts = Counter()
        try:
            yield self.counts
        finally:
            self.counts = None

    def close(self) -> None:
        """Close the pool's connections."""
        for connection in self._connections:
            connection.close()


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Sample:
    """One measured round of one path."""

    payments: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    #: CPU this process (the clients and all of civicloud) used, in cores, and per payment.
    client_cores: float
    client_ms: float
    #: CPU the PostgreSQL server used, in cores (NaN on SQLite or an outside server).
    db_cores: float


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000 if ordered else 0.0


def run_round(
    pay: Callable[[uuid.UUID], None],
    bills: list[uuid.UUID],
    *,
    clients: int,
    db_cpu: Callable[[], float],
) -> Sample:
    """Pay every bill in ``bills`` with ``clients`` threads taking them from a shared queue."""
    work: queue.SimpleQueue[uuid.UUID] = queue.SimpleQueue()
    for bill in bills:
        work.put(bill)
    spans: list[tuple[float, float]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)

    def client() -> None:
        clock = time.perf_counter
        start.wait()
        while True:
            try:
                bill = work.get_nowait()
            except queue.Empty:
                return
            began = clock()
            try:
                pay(bill)
            except Exception as exc:  # counted and reported; the round goes on
                errors.append(exc)
                continue
            spans.append((began, clock()))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    cpu_before, db_before = time.process_time(), db_cpu()
    started = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    if errors:
        kinds = Counter(f"{type(e).__name__}: {e}"[:200] for e in errors)
        detail = "; ".join(f"{n} x {k}" for k, n in kinds.most_common(3))
        raise SystemExit(f"{len(errors)} of {len(bills)} payments failed: {detail}")
    ordered = sorted(end - began for began, end in spans)
    # The rate while every client was busy: from the start to the moment the last payment
    # began (the queue ran dry), counting the payments done by then. The ramp-down after it,
    # with fewer and fewer clients left, would otherwise weigh on short rounds.
    last_start = max(began for began, _ in spans)
    done = sum(1 for _, end in spans if end <= last_start)
    if done >= max(clients, len(bills) // 4) and last_start > started:
        rate = done / (last_start - started)
    else:  # too few payments per client for a busy window: the whole round
        rate = len(bills) / seconds
    return Sample(
        payments=len(bills),
        seconds=seconds,
        rate=rate,
        p50_ms=_percentile(ordered, 0.50),
        p99_ms=_percentile(ordered, 0.99),
        client_cores=cpu / seconds,
        client_ms=cpu / len(bills) * 1000,
        db_cores=(db_cpu() - db_before) / seconds,
    )


def table_counts(world: World) -> Counter[str]:
    """Rows in each table a payment writes."""
    from sqlalchemy import text

    with world.services.db.unit_of_work(write=False) as session:
        return Counter(
            {
                # The names are the constants above, not input.
                t: int(session.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())  # noqa: S608
                for t in TABLES
            }
        )


def describe_counts(counts: Counter[str], payments: int) -> str:
    """``48.0 per payment (SELECT 17.0, INSERT 12.0, ...)``."""
    total = sum(counts.values()) / payments
    parts = ", ".join(f"{verb} {n / payments:g}" for verb, n in counts.most_common())
    return f"{total:5.1f} per payment ({parts})"


def count_statements(world: World, paths: list[Any], payments: int) -> None:
    """Pay ``payments`` bills on each path, one at a time, and print what each sent and wrote."""
    print(f"round trips per payment (one client, {payments} payments each, after the warm-up):")
    written: dict[str, Counter[str]] = {}
    for path in paths:
        bills = world.take(payments)
        before = table_counts(world)
        with path.counting() as counts:
            for bill in bills:
                path.pay(bill)
        written[path.name] = table_counts(world) - before
        world.issued[path.name] += payments
        print(f"  {path.name:<7} {describe_counts(counts, payments)}")
    rows = {name: {t: n / payments for t, n in sorted(c.items())} for name, c in written.items()}
    first, *rest = rows.values()
    same = all(other == first for other in rest)
    shown = ", ".join(f"{t.removeprefix('pay_')} {n:g}" for t, n in first.items())
    print(f"  rows written per payment: {shown} ({'the same' if same else 'NOT the same'} on both)")
    if not same:
        raise SystemExit(f"the two paths wrote different rows: {rows}")


def profile(world: World, paths: list[Any], payments: int, top: int) -> None:
    """cProfile one client paying ``payments`` bills on each path; print where the time went."""
    for path in paths:
        bills = world.take(payments)
        profiler = cProfile.Profile()
        cpu, started = time.process_time(), time.perf_counter()
        profiler.enable()
        for bill in bills:
            path.pay(bill)
        profiler.disable()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        world.issued[path.name] += payments
        stats = pstats.Stats(profiler)
        total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
        by_package: Counter[str] = Counter()
        for (filename, _, _), row in stats.stats.items():  # type: ignore[attr-defined]
            by_package[_package(filename)] += row[2]
        print(
            f"profile {world.label} {path.name}: one client, {payments} payments, "
            f"{wall / payments * 1000:.2f} ms wall and {cpu / payments * 1000:.2f} ms CPU per "
            f"payment (under cProfile); own time by package:"
        )
        print(
            "  "
            + ", ".join(
                f"{name} {seconds / total:.0%}" for name, seconds in by_package.most_common(9)
            )
        )
        print(f"  top {top} functions by own time (ms per payment, own / cumulative, calls):")
        rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
        for (filename, line, function), (_, calls, own, cumulative, _) in rows[:top]:
            where = f"{_short(filename)}:{line}({function})"
            print(
                f"    {own / payments * 1000:6.3f} / {cumulative / payments * 1000:6.3f}  "
                f"{calls / payments:6.1f}  {where}"
            )


def _package(filename: str) -> str:
    if filename.startswith("<") or filename == "~":
        return "builtins/C"
    parts = Path(filename).parts
    for marker in ("site-packages", "src"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1 :]
            if rest and rest[0] == "civicloud" and len(rest) > 2:
                return f"civicloud.{rest[1]}"
            return rest[0].removesuffix(".py") if rest else filename
    if "bench" in parts:
        return "bench"
    return "stdlib"


def _short(filename: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# --- the checks -----------------------------------------------------------------------------


def check_world(world: World) -> list[str]:
    """Prove the ledger balances, the audit chain holds, every payment succeeded exactly once."""
    from sqlalchemy import func, select

    from civicloud.core import audit
    from civicloud.pay import ledger
    from civicloud.pay.models import (
        Bill,
        BillPayment,
        JournalEntry,
        Payment,
        Receipt,
        WebhookDelivery,
    )

    expected = sum(world.issued.values())
    with world.services.db.unit_of_work(write=False) as session:
        check = ledger.check_ledger(session=session)
        chain = audit.verify_chain(session=session)
        statuses = dict(
            session.execute(select(Payment.status, func.count()).group_by(Payment.status)).all()
        )
        by_path = {
            name: session.scalar(
                select(func.count()).where(
                    Payment.status == "succeeded",
                    Payment.idempotency_key.startswith(f"bench-{name}-"),
                )
            )
            for name in ("service", "raw")
        }

        def count(*criteria: Any, of: Any) -> int:
            return int(session.scalar(select(func.count(of)).where(*criteria)) or 0)

        paid = count(Bill.status == "paid", of=Bill.id)
        distinct = {
            "bill_payment": count(of=BillPayment.payment_id.distinct()),
            "receipt": count(of=Receipt.payment_id.distinct()),
            "journal_entry": count(
                JournalEntry.kind == "payment", of=JournalEntry.reference.distinct()
            ),
        }
        rows = {
            "bill_payment": count(of=BillPayment.bill_id),
            "receipt": count(of=Receipt.id),
            "journal_entry": count(JournalEntry.kind == "payment", of=JournalEntry.id),
            "webhook": count(WebhookDelivery.event == "bill.paid", of=WebhookDelivery.id),
        }
    problems = []
    if not check.ok:
        problems.append(check.describe())
    if not chain.ok:
        problems.append(chain.describe())
    if statuses != {"succeeded": expected}:
        problems.append(f"payments by status {statuses}, expected {expected} succeeded")
    if by_path != {k: world.issued[k] for k in ("service", "raw")}:
        problems.append(f"succeeded per path {by_path}, issued {dict(world.issued)}")
    if paid != expected or any(n != expected for n in [*distinct.values(), *rows.values()]):
        problems.append(f"paid bills {paid}, distinct payments {distinct}, rows {rows}")
    if problems:
        raise SystemExit(f"{world.label}: the checks failed:\n" + "\n".join(problems))
    head = check.describe().splitlines()[0]
    return [
        f"check {world.label}: ledger.check_ledger ok ({head}); {chain.describe()}",
        f"check {world.label}: {expected} payments ({by_path['service']} service, "
        f"{by_path['raw']} raw), each succeeded once: {paid} bills paid, one bill_payment, "
        "receipt, journal entry and webhook each",
    ]


# --- one database, start to end ---------------------------------------------------------------


@dataclass
class Result:
    """The figures of one database."""

    label: str
    ratio: float
    spread: str
    samples: dict[str, list[Sample]]
    checks: list[str]


def summarise(name: str, samples: list[Sample]) -> str:
    """One line of medians for a path."""

    def median(attr: str) -> float:
        return float(statistics.median(getattr(s, attr) for s in samples))

    db = median("db_cores")
    db_text = "" if math.isnan(db) else f"   db CPU {db:4.2f} cores"
    return (
        f"  {name:<7} {median('rate'):7.1f} payments/s   p50 {median('p50_ms'):7.1f} ms   "
        f"p99 {median('p99_ms'):7.1f} ms   client CPU {median('client_cores'):4.2f} cores "
        f"({median('client_ms'):5.2f} ms/payment){db_text}"
    )


def run_database(
    label: str,
    url: str,
    raw_target: dict[str, str],
    args: argparse.Namespace,
    plan: dict[str, int],
    data_dir: Path,
    db_cpu: Callable[[], float],
) -> Result:
    """Seed, warm up, count, measure in interleaved rounds, check; returns the ratio."""
    world = build_world(label, url, data_dir)
    rounds, per_round = plan["rounds"], plan["payments"]
    needed = 2 * (plan["warmup"] + plan["count"] + rounds * per_round + plan["profile"])
    seconds = create_bills(world, needed)
    capacity = world.pool_capacity()
    print(f"database:   {label}: {world.services.db.engine.url.render_as_string()}")
    print(
        f"seed:       {needed} open bills of one biller in one bulk insert ({seconds:.1f} s); "
        f"connections: the engine's pool holds {capacity}, the raw pool as many"
    )
    service = ServicePath(world)
    raw = RawPath(world, capacity=capacity, **raw_target)
    paths: dict[str, ServicePath | RawPath] = {"service": service, "raw": raw}
    try:
        for path in paths.values():  # warm-up: accounts made, statement caches filled
            run_round(path.pay, world.take(plan["warmup"]), clients=args.clients, db_cpu=db_cpu)
            world.issued[path.name] += plan["warmup"]
        count_statements(world, list(paths.values()), plan["count"])
        print(
            f"method:     {plan['warmup']} payments per path to warm up, then {rounds} rounds x "
            f"{per_round} payments per path, {args.clients} client threads, order alternating"
        )
        samples: dict[str, list[Sample]] = {"service": [], "raw": []}
        ratios: list[float] = []
        connects = service.connects
        for number in range(rounds):
            order = ("service", "raw") if number % 2 == 0 else ("raw", "service")
            for name in order:
                bills = world.take(per_round)
                samples[name].append(
                    run_round(paths[name].pay, bills, clients=args.clients, db_cpu=db_cpu)
                )
                world.issued[name] += per_round
            s, r = samples["service"][-1], samples["raw"][-1]
            ratios.append(s.rate / r.rate)
            print(
                f"round {number + 1}/{rounds}: service {s.rate:6.1f}/s (p99 {s.p99_ms:6.1f} ms)  "
                f"raw {r.rate:6.1f}/s (p99 {r.p99_ms:6.1f} ms)  ratio {ratios[-1]:.2f}"
            )
        connects = service.connects - connects
        if plan["profile"]:
            profile(world, list(paths.values()), plan["profile"], args.top)
        checks = check_world(world)
    finally:
        raw.close()
        world.services.db.dispose()
    print(f"{label} (medians over rounds):")
    for name in ("service", "raw"):
        print(summarise(name, samples[name]))
    ratio = float(statistics.median(ratios))
    spread = f"{min(ratios):.2f}..{max(ratios):.2f}"
    print(f"  ratio service/raw: median {ratio:.2f} over {rounds} rounds (range {spread})")
    print(
        f"  connections: the service path's engine opened {connects} new ones during the rounds "
        f"({connects / (rounds * per_round):.2f} per payment); the raw pool opened none"
    )
    for line in checks:
        print(line)
    return Result(label, ratio, spread, samples, checks)


def _nan() -> float:
    return float("nan")


def main() -> None:
    """Parse the options, run PostgreSQL then SQLite, print the ratio line last."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short run (under 30 s)")
    parser.add_argument("--clients", type=int, default=32, help="client threads (32)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, quick 3)")
    parser.add_argument("--payments", type=int, help="payments per path per round (512, quick 128)")
    parser.add_argument("--warmup", type=int, help="warm-up payments per path (128, quick 32)")
    parser.add_argument(
        "--databases",
        choices=["both", "postgresql", "sqlite"],
        default="both",
        help="which databases to run on (both)",
    )
    parser.add_argument(
        "--postgres-url",
        default="",
        help="use this PostgreSQL (postgresql+psycopg://USER:PW@HOST/DB) instead of starting a "
        "throwaway cluster; the bench adds tenants, a biller, bills and payments there",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        type=int,
        const=200,
        default=0,
        help="after the rounds, cProfile one client paying N bills per path (N=200)",
    )
    parser.add_argument("--top", type=int, default=25, help="functions to list per profile (25)")
    args = parser.parse_args()
    plan = {
        "rounds": args.rounds or (3 if args.quick else 5),
        "payments": args.payments or (128 if args.quick else 512),
        "warmup": args.warmup if args.warmup is not None else (32 if args.quick else 128),
        "count": 10 if args.quick else 20,
        "profile": args.profile,
    }
    cores = os.cpu_count() or 1
    print(
        f"machine:    {cores} cores, Python {sys.version.split()[0]}; {args.clients} client threads "
        "in this one process share its GIL on both paths"
    )
    results: dict[str, Result] = {}
    note = ""
    with tempfile.TemporaryDirectory(prefix="civicloud-bench-") as scratch:
        if args.databases in ("both", "postgresql"):
            with _postgres_target(args.postgres_url) as target:
                if target is None:
                    note = (
                        "note: PostgreSQL server binaries not found (initdb, pg_ctl): "
                        "ran on SQLite only; the ratio below is SQLite's"
                    )
                    print(note)
                else:
                    url, dsn, cpu, about = target
                    print(f"postgresql: {about}")
                    results["postgresql"] = run_database(
                        "PostgreSQL",
                        url,
                        {"dsn": dsn},
                        args,
                        plan,
                        Path(scratch) / "pg",
                        cpu,
                    )
            print()
        if args.databases in ("both", "sqlite") or "postgresql" not in results:
            path = Path(scratch) / "sqlite" / "civicloud.db"
            print("sqlite:     WAL, synchronous=FULL, BEGIN IMMEDIATE (civicloud's settings)")
            results["sqlite"] = run_database(
                "SQLite",
                f"sqlite:///{path}",
                {"sqlite_file": str(path)},
                args,
                plan,
                Path(scratch) / "sqlite-data",
                _nan,
            )
    print()
    for key, result in results.items():
        service = statistics.median(s.rate for s in result.samples["service"])
        raw = statistics.median(s.rate for s in result.samples["raw"])
        p99 = statistics.median(s.p99_ms for s in result.samples["service"])
        raw_p99 = statistics.median(s.p99_ms for s in result.samples["raw"])
        print(
            f"{key:<10} service {service:6.1f}/s p99 {p99:6.1f} ms | raw {raw:6.1f}/s "
            f"p99 {raw_p99:6.1f} ms | ratio {result.ratio:.2f} ({result.spread})"
        )
    headline = results.get("postgresql") or results["sqlite"]
    if headline.ratio < GOAL and not args.profile:
        print("the ratio is below the goal: --profile shows where the service path spends it")
    if note:
        print(note)
    print(f"pay_throughput ratio={headline.ratio:.2f} goal={GOAL}")


@contextmanager
def _postgres_target(
    url: str,
) -> Iterator[tuple[str, str, Callable[[], float], str] | None]:
    """``(SQLAlchemy URL, libpq DSN, server CPU clock, description)``; ``None``: no server."""
    if url:
        from sqlalchemy.engine import make_url

        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        yield url, dsn, _nan, "given by --postgres-url (server CPU not measured)"
        return
    with _postgres.cluster() as cluster:
        if cluster is None:
            yield None
            return
        name = "civicloud_bench"
        sa_url = cluster.create_database(name)
        about = f"{cluster.version}, a throwaway cluster on 127.0.0.1:{cluster.port} ({cluster.settings})"
        yield sa_url, cluster.dsn(name), cluster.cpu_seconds, about


if __name__ == "__main__":
    main()
