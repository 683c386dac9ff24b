"""The sandbox: a simulated payment provider built in, so the demo and the tests need no network.

It keeps its own trades in memory (thread-safe), sends a citizen to its own checkout page
(``/pay/sandbox/checkout/{trade_no}``, rendered by the web layer from ``checkout_view``), and
signs its notifications with HMAC-SHA256 under a per-installation secret, so that
``parse_notification`` really verifies them, with the same refusals as a real provider
(bad signature, stale timestamp). ``simulate`` plays the provider's side: success or failure,
delayed, duplicated or out of order, handed to a ``deliver(body, headers)`` callback that the
application (or a test, which may reorder or drop them) provides. Query, refund and a daily
statement (CSV) answer from the same trade store.

The store lives in this process only: a restart forgets the sandbox's trades, and ``query``
then answers ``not_found`` for them.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import itertools
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from civicloud.core import keyfiles
from civicloud.core.errors import Conflict, InvalidInput, Misconfigured
from civicloud.pay.backends import (
    Acknowledgement,
    Checkout,
    CheckoutRequest,
    Notification,
    RefundOutcome,
    StatementLine,
    TradeQuery,
    TradeStatus,
)
from civicloud.pay.errors import InvalidNotification, PaymentNotFound, ProviderMisconfigured
from civicloud.pay.providers._common import (
    BEIJING,
    Clock,
    lower_headers,
    utc_now,
)

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Sandbox-Signature"
TIMESTAMP_HEADER = "Sandbox-Timestamp"
CHECKOUT_PATH = "/pay/sandbox/checkout/{trade_no}"
STATEMENT_HEADER = (
    "trade_no",
    "provider_trade_no",
    "kind",
    "amount_fen",
    "occurred_at",
    "refund_no",
)
MIN_SECRET_BYTES = 16

Outcome = Literal["succeeded", "failed"]
Deliver = Callable[[bytes, Mapping[str, str]], object]
_STATUSES: frozenset[str] = frozenset({"succeeded", "pending", "failed", "closed"})


@dataclass(frozen=True)
class SandboxNotice:
    """One signed notification as the sandbox sends it: a JSON body and its headers."""

    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True)
class SandboxCheckoutView:
    """What the sandbox checkout page shows, and where it sends the citizen back to."""

    trade_no: str
    provider_trade_no: str
    amount_fen: int
    currency: str
    subject: str
    return_url: str
    expires_at: datetime
    status: TradeStatus


@dataclass
class _Refund:
    refund_no: str
    provider_refund_no: str
    amount_fen: int
    at: datetime


@dataclass
class _Trade:
    request: CheckoutRequest
    provider_trade_no: str
    status: TradeStatus = "pending"
    paid_at: datetime | None = None
    refunds: dict[str, _Refund] = field(default_factory=dict)
    #: What the sandbox took, when told to take another amount or currency than asked.
    taken_fen: int | None = None
    taken_currency: str | None = None

    @property
    def amount_fen(self) -> int:
        """What the trade took (or will take)."""
        return self.request.amount_fen if self.taken_fen is None else self.taken_fen

    @property
    def currency(self) -> str:
        """The currency it took it in."""
        return self.taken_currency or self.request.currency


def _trade_to_json(trade: _Trade) -> dict[str, Any]:
    request = trade.request
    return {
        "request": {
            "trade_no": request.trade_no,
            "amount_fen": request.amount_fen,
            "currency": request.currency,
            "subject": request.subject,
            "return_url": request.return_url,
            "notify_url": request.notify_url,
            "expires_at": request.expires_at.isoformat(),
        },
        "provider_trade_no": trade.provider_trade_no,
        "status": trade.status,
        "paid_at": trade.paid_at.isoformat() if trade.paid_at else None,
        "taken_fen": trade.taken_fen,
        "taken_currency": trade.taken_currency,
        "refunds": [
            {
                "refund_no": r.refund_no,
                "provider_refund_no": r.provider_refund_no,
                "amount_fen": r.amount_fen,
                "at": r.at.isoformat(),
            }
            for r in trade.refunds.values()
        ],
    }


def _trade_from_json(data: dict[str, Any]) -> _Trade:
    request = dict(data["request"])
    request["expires_at"] = datetime.fromisoformat(request["expires_at"])
    refunds = {
        r["refund_no"]: _Refund(
            r["refund_no"],
            r["provider_refund_no"],
            int(r["amount_fen"]),
            datetime.fromisoformat(r["at"]),
        )
        for r in data["refunds"]
    }
    return _Trade(
        request=CheckoutRequest(**request),
        provider_trade_no=data["provider_trade_no"],
        status=data["status"],
        paid_at=datetime.fromisoformat(data["paid_at"]) if data["paid_at"] else None,
        refunds=refunds,
        taken_fen=data.get("taken_fen"),
        taken_currency=data.get("taken_currency"),
    )


def _load_trades(path: Path) -> dict[str, _Trade]:
    """Replay the store: one JSON line per change of a trade, the last line of each trade wins."""
    trades: dict[str, _Trade] = {}
    try:
        with open(path, encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                if not line.endswith("\n"):
                    break  # a line cut short by a crash was never acknowledged: drop it
                try:
                    trade = _trade_from_json(json.loads(line))
                except (ValueError, KeyError, TypeError) as error:
                    raise ProviderMisconfigured(
                        "sandbox: line %(line)s of its store %(path)s is damaged: %(reason)s",
                        params={"line": number, "path": str(path), "reason": str(error)},
                    ) from error
                trades[trade.request.trade_no] = trade
    except FileNotFoundError:
        return {}
    return trades


def _append_trade(path: Path, trade: _Trade) -> None:
    # One line per change, appended and fsync'd before the sandbox answers: a crash loses at
    # most a change that was never acknowledged, and a cut-off last line is ignored on load.
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(_trade_to_json(trade), ensure_ascii=False) + "\n"
    with open(path, "a", encoding="utf-8") as file:
        file.write(line)
        file.flush()
        os.fsync(file.fileno())


def load_or_create_secret(path: Path) -> bytes:
    """The installation's sandbox signing secret from ``path``, made (mode 0600) when absent."""
    try:
        return keyfiles.load_or_create_secret(
            path, what="the sandbox's secret", min_bytes=MIN_SECRET_BYTES
        )
    except Misconfigured as error:
        raise ProviderMisconfigured(error.message, params=error.params) from error


class SandboxProvider:
    """The built-in simulated provider: its own checkout page, signed notifications, statement."""

    name = "sandbox"

    def __init__(
        self,
        secret: bytes,
        *,
        base_url: str = "",
        deliver: Deliver | None = None,
        clock: Clock | None = None,
        max_age: timedelta = timedelta(minutes=5),
        store: Path | None = None,
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ProviderMisconfigured(
                "sandbox: the secret must be at least %(count)s bytes",
                params={"count": MIN_SECRET_BYTES},
            )
        self._secret = secret
        self._base_url = base_url.rstrip("/")
        self._deliver = deliver
        self._clock = clock or utc_now
        self._max_age = max_age
        self._lock = threading.Lock()
        # Like a real provider, the sandbox outlives our process when given a ``store`` file:
        # after a crash, the recovery job can still ask it what happened to a trade.
        self._store = store
        self._trades: dict[str, _Trade] = _load_trades(store) if store else {}
        self._serial = itertools.count(1)
        # Distinguishes this process's numbers from a previous run's, as a real provider's are.
        self._run = secrets.token_hex(3).upper()

    def _save(self, trade: _Trade) -> None:
        """Record ``trade``'s new state in the store (under the lock), durably, before answering."""
        if self._store is not None:
            _append_trade(self._store, trade)

    def _next_no(self, prefix: str) -> str:
        return f"{prefix}{self._run}{next(self._serial):08d}"

    def _trade(self, trade_no: str) -> _Trade:
        trade = self._trades.get(trade_no)
        if trade is None:
            raise PaymentNotFound("sandbox: no trade %(trade_no)s", params={"trade_no": trade_no})
        return trade

    # --- checkout --------------------------------------------------------------------------

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """Register the trade; the citizen is sent to the sandbox's own checkout page."""
        if request.amount_fen <= 0:
            raise InvalidInput("amount must be positive")
        with self._lock:
            trade = self._trades.get(request.trade_no)
            if trade is None:
                trade = _Trade(request=request, provider_trade_no=self._next_no("SBX"))
                self._trades[request.trade_no] = trade
                self._save(trade)
            elif trade.request.amount_fen != request.amount_fen:
                raise Conflict(
                    "sandbox: trade %(trade_no)s exists with another amount",
                    params={"trade_no": request.trade_no},
                )
        url = self._base_url + CHECKOUT_PATH.format(trade_no=request.trade_no)
        return Checkout(kind="redirect", url=url, provider_trade_no=trade.provider_trade_no)

    def checkout_view(self, trade_no: str) -> SandboxCheckoutView:
        """What the checkout page for ``trade_no`` shows (``PaymentNotFound`` if unknown)."""
        with self._lock:
            trade = self._trade(trade_no)
            status = self._status(trade)
            request = trade.request
            return SandboxCheckoutView(
                trade_no=trade_no,
                provider_trade_no=trade.provider_trade_no,
                amount_fen=request.amount_fen,
                currency=request.currency,
                subject=request.subject,
                return_url=request.return_url,
                expires_at=request.expires_at,
                status=status,
            )

    def _status(self, trade: _Trade) -> TradeStatus:
        if trade.status == "pending" and self._clock() >= trade.request.expires_at:
            return "closed"
        return trade.status

    # --- notifications ---------------------------------------------------------------------

    def sign(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """The headers that make ``body`` a notification from this sandbox."""
        sent_at = int(self._clock().timestamp()) if timestamp is None else timestamp
        return {
            TIMESTAMP_HEADER: str(sent_at),
            SIGNATURE_HEADER: "v1=" + self._mac(sent_at, body),
            "Content-Type": "application/json",
        }

    def _mac(self, sent_at: int, body: bytes) -> str:
        return hmac.new(self._secret, f"{sent_at}\n".encode() + body, hashlib.sha256).hexdigest()

    def _notice(self, trade: _Trade, status: TradeStatus, at: datetime) -> SandboxNotice:
        body = json.dumps(
            {
                "notify_id": self._next_no("SBN"),
                "trade_no": trade.request.trade_no,
                "provider_trade_no": trade.provider_trade_no,
                "status": status,
                "amount_fen": trade.amount_fen,
                "currency": trade.currency,
                "occurred_at": at.astimezone(BEIJING).isoformat(),
            },
            separators=(",", ":"),
        ).encode("utf-8")
        return SandboxNotice(body=body, headers=self.sign(body))

    def simulate(
        self,
        trade_no: str,
        outcome: Outcome = "succeeded",
        *,
        delay: float = 0,
        duplicate: bool = False,
        out_of_order: bool = False,
        amount_fen: int | None = None,
        currency: str | None = None,
        deliver: Deliver | None = None,
    ) -> list[SandboxNotice]:
        """Settle the trade as ``outcome`` and send the signed notification(s) about it.

        ``duplicate`` sends the same notification twice; ``out_of_order`` also sends an older
        "pending" notification after the final one; ``delay`` (seconds) sends them from a
        background thread; ``amount_fen`` and ``currency`` make the provider take (and report)
        another amount or currency than the trade asked for, as a misbehaving provider might. The
        notifications go to ``deliver`` (else the provider's own callback; with neither they are
        only returned), in the order returned.
        """
        if outcome not in ("succeeded", "failed"):
            raise InvalidInput(
                "sandbox: unknown outcome %(outcome)s", params={"outcome": repr(outcome)}
            )
        now = self._clock()
        with self._lock:
            trade = self._trade(trade_no)
            trade.status = outcome
            trade.paid_at = now if outcome == "succeeded" else None
            if amount_fen is not None:
                trade.taken_fen = amount_fen
            if currency is not None:
                trade.taken_currency = currency
            self._save(trade)
            notices = [self._notice(trade, outcome, now)]
            if duplicate:
                notices.append(notices[0])
            if out_of_order:
                notices.append(self._notice(trade, "pending", now - timedelta(seconds=1)))
        send = deliver or self._deliver
        if send is not None:
            if delay > 0:
                timer = threading.Timer(delay, self._send_all, args=(send, notices))
                timer.daemon = True
                timer.start()
            else:
                self._send_all(send, notices)
        return notices

    @staticmethod
    def _send_all(send: Deliver, notices: list[SandboxNotice]) -> None:
        for notice in notices:
            try:
                send(notice.body, notice.headers)
            except Exception:  # a provider keeps sending the rest whatever one answer was
                logger.exception("sandbox: delivering a notification failed")

    def parse_notification(self, *, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify the HMAC and age of a sandbox notification; raise ``InvalidNotification`` if bad."""
        lowered = lower_headers(headers)
        try:
            sent_at = int(lowered.get(TIMESTAMP_HEADER.lower(), ""))
        except ValueError as error:
            raise InvalidNotification("sandbox: missing or malformed timestamp") from error
        signature = lowered.get(SIGNATURE_HEADER.lower(), "")
        expected = "v1=" + self._mac(sent_at, body)
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise InvalidNotification("sandbox: notification signature does not verify")
        if abs(self._clock().timestamp() - sent_at) > self._max_age.total_seconds():
            raise InvalidNotification("sandbox: notification too old (a replay?)")
        try:
            data: Any = json.loads(body)
            occurred_at = datetime.fromisoformat(data["occurred_at"])
            fields = {
                key: data[key] for key in ("notify_id", "trade_no", "provider_trade_no", "status")
            }
            amount_fen = data["amount_fen"]
            currency = data.get("currency", "CNY")
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidNotification("sandbox: malformed notification") from error
        if not all(isinstance(value, str) and value for value in fields.values()):
            raise InvalidNotification("sandbox: malformed notification")
        if fields["status"] not in _STATUSES:
            raise InvalidNotification("sandbox: unknown status")
        if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
            raise InvalidNotification("sandbox: malformed amount")
        if not isinstance(currency, str) or not currency:
            raise InvalidNotification("sandbox: malformed currency")
        status: TradeStatus = fields["status"]
        return Notification(
            notify_id=fields["notify_id"],
            trade_no=fields["trade_no"],
            status=status,
            amount_fen=amount_fen,
            provider_trade_no=fields["provider_trade_no"],
            occurred_at=occurred_at,
            raw=data,
            currency=currency,
        )

    def acknowledge(self, *, accepted: bool) -> Acknowledgement:
        """``ok`` when taken, else a 400 ``fail``."""
        if accepted:
            return Acknowledgement(status_code=200, media_type="text/plain", body="ok")
        return Acknowledgement(status_code=400, media_type="text/plain", body="fail")

    # --- query, refund, statement ----------------------------------------------------------

    def query(self, trade_no: str) -> TradeQuery:
        """The trade's state in the sandbox's store (``not_found`` if it never was created)."""
        with self._lock:
            trade = self._trades.get(trade_no)
            if trade is None:
                return TradeQuery(trade_no=trade_no, status="not_found")
            return TradeQuery(
                trade_no=trade_no,
                status=self._status(trade),
                amount_fen=trade.amount_fen,
                provider_trade_no=trade.provider_trade_no,
                currency=trade.currency,
            )

    def refund(
        self, *, trade_no: str, refund_no: str, amount_fen: int, total_fen: int, reason: str
    ) -> RefundOutcome:
        """Refund from the store: never more than was paid; the same ``refund_no`` is one refund."""
        with self._lock:
            trade = self._trades.get(trade_no)
            if trade is None or trade.status != "succeeded":
                return RefundOutcome(status="failed", detail="trade not paid")
            done = trade.refunds.get(refund_no)
            if done is not None:
                if done.amount_fen != amount_fen:
                    return RefundOutcome(
                        status="failed", detail="refund_no used for another amount"
                    )
                return RefundOutcome(status="succeeded", provider_refund_no=done.provider_refund_no)
            if total_fen != trade.amount_fen:
                return RefundOutcome(status="failed", detail="total does not match the trade")
            refunded = sum(refund.amount_fen for refund in trade.refunds.values())
            if amount_fen <= 0 or refunded + amount_fen > trade.amount_fen:
                return RefundOutcome(status="failed", detail="refund exceeds the amount paid")
            refund = _Refund(refund_no, self._next_no("SBR"), amount_fen, self._clock())
            trade.refunds[refund_no] = refund
            self._save(trade)
            return RefundOutcome(status="succeeded", provider_refund_no=refund.provider_refund_no)

    def statement(self, business_date: date) -> bytes:
        """The sandbox's statement for a Beijing day: payments and refunds made that day, CSV."""
        rows: list[tuple[str, str, str, int, datetime, str]] = []
        with self._lock:
            for trade in self._trades.values():
                trade_no, provider_no = trade.request.trade_no, trade.provider_trade_no
                if (
                    trade.paid_at is not None
                    and trade.paid_at.astimezone(BEIJING).date() == business_date
                ):
                    rows.append(
                        (
                            trade_no,
                            provider_no,
                            "payment",
                            trade.amount_fen,
                            trade.paid_at,
                            "",
                        )
                    )
                rows.extend(
                    (
                        trade_no,
                        provider_no,
                        "refund",
                        refund.amount_fen,
                        refund.at,
                        refund.refund_no,
                    )
                    for refund in trade.refunds.values()
                    if refund.at.astimezone(BEIJING).date() == business_date
                )
        out = io.StringIO()
        out.write(f"# civicloud sandbox statement\n# business_date: {business_date.isoformat()}\n")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(STATEMENT_HEADER)
        for trade_no, provider_no, kind, amount, at, refund_no in sorted(
            rows, key=lambda row: row[4]
        ):
            writer.writerow(
                (trade_no, provider_no, kind, amount, at.astimezone(BEIJING).isoformat(), refund_no)
            )
        return out.getvalue().encode("utf-8")

    def parse_statement(self, content: bytes, *, business_date: date) -> list[StatementLine]:
        """Read a sandbox statement (``statement``'s CSV) for ``business_date``."""
        return parse_sandbox_statement(content, business_date=business_date)


def parse_sandbox_statement(content: bytes, *, business_date: date) -> list[StatementLine]:
    """Parse the sandbox's CSV statement; ``InvalidInput`` naming the first bad line."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput("the sandbox statement is not UTF-8 text") from error
    lines: list[StatementLine] = []
    header_seen = False
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not any(row):
            continue
        if row[0].startswith("#"):
            key, _, value = row[0].lstrip("# ").partition(":")
            if key == "business_date" and value.strip() != business_date.isoformat():
                raise InvalidInput(
                    "the sandbox statement is for %(found)s, not %(day)s",
                    params={"found": value.strip()[:40], "day": business_date.isoformat()},
                )
            continue
        if not header_seen:
            if tuple(row) != STATEMENT_HEADER:
                raise InvalidInput(
                    "sandbox statement line %(line)s: expected the column header",
                    params={"line": number},
                )
            header_seen = True
            continue
        lines.append(_statement_line(number, row, business_date))
    if not header_seen:
        raise InvalidInput("sandbox statement: no column header found")
    return lines


def _statement_line(number: int, row: list[str], business_date: date) -> StatementLine:
    """One line of the sandbox's statement (``number`` in the file); ``InvalidInput`` if bad."""
    if len(row) != len(STATEMENT_HEADER):
        raise InvalidInput(
            "sandbox statement line %(line)s: expected %(count)s cells",
            params={"line": number, "count": len(STATEMENT_HEADER)},
        )
    trade_no, provider_no, kind, amount, at, refund_no = row
    # A refund line, and only a refund line, carries our refund_no.
    if (
        kind not in ("payment", "refund")
        or not trade_no
        or not provider_no
        or (kind == "refund") != bool(refund_no)
    ):
        raise InvalidInput(
            "sandbox statement line %(line)s: bad kind, trade numbers or refund_no",
            params={"line": number},
        )
    try:
        amount_fen = int(amount)
        occurred_at = datetime.fromisoformat(at)
    except ValueError as error:
        raise InvalidInput(
            "sandbox statement line %(line)s: the amount or the time cannot be read",
            params={"line": number},
        ) from error
    if amount_fen <= 0:
        raise InvalidInput(
            "sandbox statement line %(line)s: amount must be positive",
            params={"line": number},
        )
    # A moment with its offset, on the statement's own day (China Standard Time, as the
    # statement's days are): a naive time, or one of another day, is not of this file.
    try:
        day = occurred_at.astimezone(BEIJING).date() if occurred_at.tzinfo else None
    except OverflowError:  # year 1 at +08:00 is before the first day there is
        day = None
    if day != business_date:
        raise InvalidInput(
            "sandbox statement line %(line)s: the time must carry its UTC offset and fall "
            "on %(day)s",
            params={"line": number, "day": business_date.isoformat()},
        )
    line = StatementLine(
        trade_no=trade_no,
        provider_trade_no=provider_no,
        kind="payment",
        amount_fen=amount_fen,
        occurred_at=occurred_at,
    )
    return line if kind == "payment" else replace(line, kind="refund", refund_no=refund_no)
