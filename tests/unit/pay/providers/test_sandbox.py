"""The sandbox provider: signed notifications, simulation, refunds, statement."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.pay.providers.helpers import NOW, checkout_request

from civicloud.core.errors import Conflict, InvalidInput
from civicloud.pay.errors import InvalidNotification, PaymentNotFound, ProviderMisconfigured
from civicloud.pay.providers import (
    SandboxNotice,
    SandboxProvider,
    load_or_create_secret,
)
from civicloud.pay.providers._common import BEIJING

SECRET = bytes(range(32))


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def sandbox(clock: Clock | None = None, secret: bytes = SECRET) -> SandboxProvider:
    """A sandbox on the test clock, its checkout page under the demo's base URL."""
    return SandboxProvider(secret, base_url="http://localhost:8000/", clock=clock or Clock())


def paid(
    provider: SandboxProvider, trade_no: str = "P20261126000001", **options: Any
) -> list[SandboxNotice]:
    """Register a trade and simulate its success; the notifications sent."""
    provider.create_checkout(checkout_request(trade_no))
    return provider.simulate(trade_no, "succeeded", **options)


def test_checkout_sends_the_citizen_to_the_sandbox_page() -> None:
    provider = sandbox()

    checkout = provider.create_checkout(checkout_request())
    view = provider.checkout_view("P20261126000001")

    assert checkout.kind == "redirect"
    assert checkout.url == "http://localhost:8000/pay/sandbox/checkout/P20261126000001"
    assert (view.amount_fen, view.status, view.subject) == (
        1234,
        "pending",
        "大连市自来水费 2026年10月",
    )
    assert view.return_url == checkout_request().return_url
    assert view.provider_trade_no == checkout.provider_trade_no
    with pytest.raises(PaymentNotFound):
        provider.checkout_view("P-unknown")


def test_the_same_trade_twice_is_one_trade_and_another_amount_a_conflict() -> None:
    provider = sandbox()
    first = provider.create_checkout(checkout_request())
    assert provider.create_checkout(checkout_request()) == first
    with pytest.raises(Conflict):
        provider.create_checkout(checkout_request(amount_fen=999))


def test_a_simulated_success_is_delivered_signed_and_verifies() -> None:
    # Given an application callback
    provider = sandbox()
    received: list[tuple[bytes, Mapping[str, str]]] = []
    provider.create_checkout(checkout_request())

    # When the sandbox simulates the citizen paying
    provider.simulate(
        "P20261126000001",
        "succeeded",
        deliver=lambda body, headers: received.append((body, headers)),
    )

    # Then one notification arrived, verifies, and the trade is paid
    ((body, headers),) = received
    notification = provider.parse_notification(headers=headers, body=body)
    assert (notification.trade_no, notification.status, notification.amount_fen) == (
        "P20261126000001",
        "succeeded",
        1234,
    )
    assert provider.query("P20261126000001").status == "succeeded"
    assert provider.checkout_view("P20261126000001").status == "succeeded"


def test_a_simulated_failure() -> None:
    provider = sandbox()
    provider.create_checkout(checkout_request())
    (notice,) = provider.simulate("P20261126000001", "failed")
    assert provider.parse_notification(headers=notice.headers, body=notice.body).status == "failed"
    assert provider.query("P20261126000001").status == "failed"


def test_duplicates_carry_the_same_notify_id() -> None:
    provider = sandbox()
    first, second = paid(provider, duplicate=True)
    one = provider.parse_notification(headers=first.headers, body=first.body)
    two = provider.parse_notification(headers=second.headers, body=second.body)
    assert one == two


def test_out_of_order_sends_an_older_pending_notification_after_the_final_one() -> None:
    provider = sandbox()
    final, stale = (
        provider.parse_notification(headers=n.headers, body=n.body)
        for n in paid(provider, out_of_order=True)
    )
    assert (final.status, stale.status) == ("succeeded", "pending")
    assert stale.occurred_at is not None
    assert final.occurred_at is not None
    assert stale.occurred_at < final.occurred_at
    assert stale.notify_id != final.notify_id


def test_a_delayed_notification_arrives_later_from_another_thread() -> None:
    provider = sandbox()
    provider.create_checkout(checkout_request())
    arrived = threading.Event()

    notices = provider.simulate(
        "P20261126000001", delay=0.05, deliver=lambda body, headers: arrived.set()
    )

    assert len(notices) == 1
    assert not arrived.is_set()
    assert arrived.wait(timeout=5)


def test_a_failing_callback_does_not_stop_the_other_deliveries() -> None:
    provider = sandbox()
    provider.create_checkout(checkout_request())
    calls: list[bytes] = []

    def flaky(body: bytes, headers: Mapping[str, str]) -> None:
        calls.append(body)
        if len(calls) == 1:
            raise ConnectionError("the app was down")

    provider.simulate("P20261126000001", duplicate=True, deliver=flaky)
    assert len(calls) == 2


def test_a_reported_amount_can_differ_and_still_be_genuine() -> None:
    provider = sandbox()
    provider.create_checkout(checkout_request())
    (notice,) = provider.simulate("P20261126000001", amount_fen=1)
    assert provider.parse_notification(headers=notice.headers, body=notice.body).amount_fen == 1


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_changing_any_byte_of_a_notification_is_refused(data: st.DataObject) -> None:
    provider = sandbox()
    (notice,) = paid(provider)
    index = data.draw(st.integers(0, len(notice.body) - 1))
    replacement = data.draw(st.integers(0, 255).filter(lambda byte: byte != notice.body[index]))
    tampered = notice.body[:index] + bytes([replacement]) + notice.body[index + 1 :]
    with pytest.raises(InvalidNotification):
        provider.parse_notification(headers=notice.headers, body=tampered)


def test_a_replayed_body_with_a_changed_amount_is_refused() -> None:
    provider = sandbox()
    (notice,) = paid(provider)
    body = json.loads(notice.body)
    body["amount_fen"] = 1
    with pytest.raises(InvalidNotification, match="signature"):
        provider.parse_notification(headers=notice.headers, body=json.dumps(body).encode())


def test_another_installations_or_missing_signature_is_refused() -> None:
    (notice,) = paid(sandbox(secret=b"another installation's secret"))
    provider = sandbox()
    with pytest.raises(InvalidNotification):
        provider.parse_notification(headers=notice.headers, body=notice.body)
    with pytest.raises(InvalidNotification):
        provider.parse_notification(headers={}, body=notice.body)


def test_a_notification_older_than_five_minutes_is_refused() -> None:
    clock = Clock()
    provider = sandbox(clock)
    (notice,) = paid(provider)

    clock.now = NOW + timedelta(minutes=4)
    assert (
        provider.parse_notification(headers=notice.headers, body=notice.body).status == "succeeded"
    )
    clock.now = NOW + timedelta(minutes=5, seconds=1)
    with pytest.raises(InvalidNotification, match="old"):
        provider.parse_notification(headers=notice.headers, body=notice.body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"notify_id":"n"}',
        b'{"notify_id":"n","trade_no":"t","provider_trade_no":"p","status":"paid","amount_fen":1,"occurred_at":"2026-11-26T10:00:00+08:00"}',
    ],
)
def test_signed_but_malformed_notifications_are_refused(body: bytes) -> None:
    provider = sandbox()
    with pytest.raises(InvalidNotification):
        provider.parse_notification(headers=provider.sign(body), body=body)


def test_an_unpaid_trade_closes_when_it_expires() -> None:
    clock = Clock()
    provider = sandbox(clock)
    provider.create_checkout(checkout_request())
    clock.now = NOW + timedelta(minutes=16)
    assert provider.query("P20261126000001").status == "closed"
    assert provider.query("P-never-created").status == "not_found"


def test_a_late_success_after_expiry_is_still_reported() -> None:
    clock = Clock()
    provider = sandbox(clock)
    provider.create_checkout(checkout_request())
    clock.now = NOW + timedelta(minutes=16)
    (notice,) = provider.simulate("P20261126000001")
    assert (
        provider.parse_notification(headers=notice.headers, body=notice.body).status == "succeeded"
    )
    assert provider.query("P20261126000001").status == "succeeded"


def test_refunds_never_exceed_the_payment_and_repeat_safely() -> None:
    provider = sandbox()
    provider.create_checkout(checkout_request())
    refund = {"trade_no": "P20261126000001", "total_fen": 1234, "reason": "多缴退费"}
    assert provider.refund(refund_no="R0", amount_fen=1, **refund).status == "failed"  # type: ignore[arg-type]
    provider.simulate("P20261126000001")

    first = provider.refund(refund_no="R1", amount_fen=1000, **refund)  # type: ignore[arg-type]
    again = provider.refund(refund_no="R1", amount_fen=1000, **refund)  # type: ignore[arg-type]
    reused = provider.refund(refund_no="R1", amount_fen=5, **refund)  # type: ignore[arg-type]
    too_much = provider.refund(refund_no="R2", amount_fen=235, **refund)  # type: ignore[arg-type]
    rest = provider.refund(refund_no="R3", amount_fen=234, **refund)  # type: ignore[arg-type]

    assert (first.status, again.status, reused.status, too_much.status, rest.status) == (
        "succeeded",
        "succeeded",
        "failed",
        "failed",
        "succeeded",
    )
    assert again.provider_refund_no == first.provider_refund_no


def test_the_statement_round_trips() -> None:
    # Given a day with two payments, one refunded in part, and a failure
    provider = sandbox()
    paid(provider, "P1")
    paid(provider, "P2")
    provider.create_checkout(checkout_request("P3"))
    provider.simulate("P3", "failed")
    provider.refund(trade_no="P1", refund_no="R1", amount_fen=34, total_fen=1234, reason="")

    # When its statement is written and read back
    content = provider.statement(date(2026, 11, 26))
    lines = provider.parse_statement(content, business_date=date(2026, 11, 26))

    # Then every money movement of the day is there
    assert sorted((line.trade_no, line.kind, line.amount_fen) for line in lines) == [
        ("P1", "payment", 1234),
        ("P1", "refund", 34),
        ("P2", "payment", 1234),
    ]
    assert all(line.occurred_at == NOW.astimezone(BEIJING) for line in lines)
    # and a refund line carries our refund number
    assert sorted((line.kind, line.refund_no) for line in lines) == [
        ("payment", None),
        ("payment", None),
        ("refund", "R1"),
    ]
    assert (
        provider.parse_statement(
            provider.statement(date(2026, 11, 25)), business_date=date(2026, 11, 25)
        )
        == []
    )


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\xff", "UTF-8"),
        (b"# business_date: 2026-11-25\n", "2026-11-25"),
        (b"trade_no,amount\n", "header"),
        (
            b"trade_no,provider_trade_no,kind,amount_fen,occurred_at,refund_no\nP1,S1,payment,12.34,2026-11-26T10:00:00+08:00,\n",
            "line 2",
        ),
        (
            b"trade_no,provider_trade_no,kind,amount_fen,occurred_at,refund_no\nP1,S1,gift,1,2026-11-26T10:00:00+08:00,\n",
            "line 2",
        ),
        (
            b"trade_no,provider_trade_no,kind,amount_fen,occurred_at,refund_no\nP1,S1,payment,-1,2026-11-26T10:00:00+08:00,\n",
            "line 2",
        ),
        (
            b"trade_no,provider_trade_no,kind,amount_fen,occurred_at,refund_no\nP1,S1,refund,1,2026-11-26T10:00:00+08:00,\n",
            "refund_no",
        ),
        (
            b"trade_no,provider_trade_no,kind,amount_fen,occurred_at,refund_no\nP1,S1,payment,1,2026-11-26T10:00:00+08:00,R1\n",
            "refund_no",
        ),
        (b"", "header"),
        # a time with no offset, one of another day, and one out of any sensible range
        (
            b"trade_no,provider_trade_no,kind,amount_fen,occurred_at,refund_no\nP1,S1,payment,1,2026-11-26T10:00:00,\n",
            "UTC offset",
        ),
        (
            b"trade_no,provider_trade_no,kind,amount_fen,occurred_at,refund_no\nP1,S1,payment,1,2026-11-25T23:59:00+08:00,\n",
            "2026-11-26",
        ),
        (
            b"trade_no,provider_trade_no,kind,amount_fen,occurred_at,refund_no\nP1,S1,payment,1,0001-01-01T00:00:00+08:00,\n",
            "line 2",
        ),
    ],
)
def test_a_bad_statement_is_refused(content: bytes, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        sandbox().parse_statement(content, business_date=date(2026, 11, 26))


def test_many_threads_create_and_pay_without_losing_a_trade() -> None:
    provider = sandbox()

    def pay(number: int) -> str:
        trade_no = f"P{number:05d}"
        checkout = provider.create_checkout(checkout_request(trade_no))
        provider.simulate(trade_no)
        assert checkout.provider_trade_no is not None
        return checkout.provider_trade_no

    with ThreadPoolExecutor(max_workers=16) as pool:
        provider_numbers = list(pool.map(pay, range(400)))

    assert len(set(provider_numbers)) == 400
    assert all(provider.query(f"P{n:05d}").status == "succeeded" for n in range(400))


def test_the_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "sandbox.key"
    first = load_or_create_secret(path)
    assert load_or_create_secret(path) == first
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("abcd\n")
    with pytest.raises(ProviderMisconfigured):
        load_or_create_secret(path)
    with pytest.raises(ProviderMisconfigured):
        SandboxProvider(b"short")


def test_processes_starting_at_once_all_use_one_sandbox_secret(tmp_path: Path) -> None:
    # given 16 starts racing to make the sandbox's secret
    path = tmp_path / "sandbox.key"
    seen: list[bytes] = []
    errors: list[Exception] = []

    def start(_index: int) -> None:
        try:
            seen.append(load_or_create_secret(path))
        except Exception as exc:  # any error at all is the failure looked for
            errors.append(exc)

    barrier = threading.Barrier(16)

    def racer(index: int) -> None:
        barrier.wait()
        start(index)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # then none read a half-written file, and all use the same secret
    assert errors == []
    assert len(seen) == 16
    assert len(set(seen)) == 1
