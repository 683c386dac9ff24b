"""The audit hash chain: whatever is recorded verifies, and any single tampering is found where it
happened (an edited field, a removed record, two swapped records, a cut-off tail)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session
from tests.conftest import rolled_back_session

from civicloud.core import audit
from civicloud.core.actor import Actor
from civicloud.core.audit import AuditRecord
from civicloud.core.services import Services

SessionFactory = Callable[[], contextlib.AbstractContextManager[Session]]

text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
entries = st.fixed_dictionaries(
    {
        "actor": st.sampled_from(["li.wei", "system:cli", "王芳"]),
        "action": st.sampled_from(["core.tenant.create", "core.user.update", "pay.refund"]),
        "target": text,
        "tenant_id": st.none() | st.uuids(),
        "outcome": st.sampled_from(["success", "denied", "failed"]),
        "detail": st.dictionaries(st.text(max_size=5), st.integers() | text, max_size=3),
    }
)
chains = st.lists(entries, min_size=2, max_size=8)
FIELDS = ["at", "actor", "tenant_id", "action", "target", "request_id", "outcome", "detail", "hash"]


@pytest.fixture(scope="module")
def empty_chain(fresh_services: Callable[[], Services]) -> SessionFactory:
    """Rolled-back sessions on a database of its own, so every example starts an empty chain."""
    services = fresh_services()
    return lambda: rolled_back_session(services.db.engine)


def write(session: Session, chain: list[dict[str, Any]]) -> None:
    for entry in chain:
        actor = Actor(kind="user", name=str(entry["actor"]), via="test")
        audit.record(
            session=session,
            actor=actor,
            action=str(entry["action"]),
            target=str(entry["target"]),
            tenant_id=entry["tenant_id"],
            outcome=entry["outcome"],
            detail=entry["detail"],
        )
    session.flush()


def place(session: Session, number: int) -> int:
    """The ``seq`` of the example's ``number``-th record (1 for the first). PostgreSQL draws
    ``seq`` from a sequence, which rolled-back examples advanced, so it need not start at 1."""
    first: int | None = session.scalar(select(func.min(AuditRecord.seq)))
    assert first is not None
    return first + number - 1


def verify(session: Session) -> audit.VerifyResult:
    session.expire_all()
    return audit.verify_chain(session=session, batch=3)


@contextlib.contextmanager
def written(factory: SessionFactory, chain: list[dict[str, Any]]) -> Iterator[Session]:
    with factory() as session:
        write(session, chain)
        yield session


def edited_value(record: AuditRecord, field: str) -> object:
    value = getattr(record, field)
    if field == "at":
        return value + timedelta(microseconds=1)
    if field == "tenant_id":
        return uuid.uuid4() if value is None else None
    if field == "outcome":
        return "failed" if value == "success" else "success"
    if field == "detail":
        return {**value, "tampered": True}
    if field == "hash":
        return "f" * 64 if value != "f" * 64 else "e" * 64
    return f"{value}x"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain=chains)
def test_an_untouched_chain_verifies(
    empty_chain: SessionFactory, chain: list[dict[str, Any]]
) -> None:
    with written(empty_chain, chain) as session:
        result = verify(session)
        assert result.ok, result.describe()
        assert result.checked == len(chain)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain=chains, data=st.data())
def test_editing_any_field_of_any_record_is_found_at_that_record(
    empty_chain: SessionFactory, chain: list[dict[str, Any]], data: st.DataObject
) -> None:
    with written(empty_chain, chain) as session:
        # given one record whose field is changed in place
        seq = place(session, data.draw(st.integers(1, len(chain)), label="seq"))
        field = data.draw(st.sampled_from(FIELDS), label="field")
        record = session.get(AuditRecord, seq)
        assert record is not None
        new_value = edited_value(record, field)
        session.execute(
            update(AuditRecord).where(AuditRecord.seq == seq).values({field: new_value}),
            execution_options={"synchronize_session": False},
        )
        # when the chain is verified, then the edited record is named
        result = verify(session)
        assert not result.ok
        assert result.seq == seq, result.describe()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain=chains, data=st.data())
def test_removing_any_record_is_found_at_its_place(
    empty_chain: SessionFactory, chain: list[dict[str, Any]], data: st.DataObject
) -> None:
    with written(empty_chain, chain) as session:
        seq = place(session, data.draw(st.integers(1, len(chain)), label="seq"))
        session.execute(delete(AuditRecord).where(AuditRecord.seq == seq))
        result = verify(session)
        assert not result.ok
        assert result.seq == seq, result.describe()
        assert "removed" in (result.problem or "")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain=chains, data=st.data())
def test_swapping_two_records_is_found_at_the_first_of_them(
    empty_chain: SessionFactory, chain: list[dict[str, Any]], data: st.DataObject
) -> None:
    with written(empty_chain, chain) as session:
        drawn = data.draw(st.integers(1, len(chain) - 1), label="first")
        first = place(session, drawn)
        second = place(session, data.draw(st.integers(drawn + 1, len(chain)), label="second"))
        for old, new in ((first, -1), (second, first), (-1, second)):
            session.execute(update(AuditRecord).where(AuditRecord.seq == old).values(seq=new))
        result = verify(session)
        assert not result.ok
        assert result.seq == first, result.describe()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain=chains, data=st.data())
def test_cutting_off_the_tail_is_found_where_it_was_cut(
    empty_chain: SessionFactory, chain: list[dict[str, Any]], data: st.DataObject
) -> None:
    with written(empty_chain, chain) as session:
        cut = place(session, data.draw(st.integers(1, len(chain)), label="cut"))
        session.execute(delete(AuditRecord).where(AuditRecord.seq >= cut))
        result = verify(session)
        assert not result.ok
        assert result.seq == cut, result.describe()
