"""Writers under different roots append side by side; writers under one root take turns.

Only PostgreSQL runs writers at once (SQLite serialises write transactions as they begin), so
these run there. Waiting is shown with ``lock_timeout``: a transaction that would wait for a
head another one holds fails at once instead, and one that appends without waiting commits.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM, make_tenant, unique

from civicloud.core import audit
from civicloud.core.audit import AuditRecord, service
from civicloud.core.audit.service import OPEN_ACTION, lanes_of
from civicloud.core.services import Services
from civicloud.core.tenants import Tenant


@pytest.fixture(scope="module")
def services(fresh_services: Callable[[], Services]) -> Services:
    """A PostgreSQL database of the module's own, whose transactions commit for real."""
    services = fresh_services()
    if services.db.is_sqlite:
        pytest.skip("SQLite serialises writing transactions: no writer runs beside another")
    return services


def note(session: Session, tenant_id: uuid.UUID | None) -> None:
    audit.record(
        session=session, actor=SYSTEM, action="tests.note", target="x", tenant_id=tenant_id
    )


def roots(services: Services, count: int) -> list[uuid.UUID]:
    """``count`` root tenants, each with a child; their chains opened (creating them writes)."""
    with services.db.unit_of_work() as session:
        made = [make_tenant(session) for _ in range(count)]
        children = [make_tenant(session, parent=root) for root in made]
        return [child.id for child in children]


def no_waiting(session: Session) -> None:
    # Fail at once rather than wait for a lock another transaction holds.
    session.execute(text("SET LOCAL lock_timeout = '100ms'"))


def test_an_append_under_another_root_does_not_wait_for_an_open_transaction(
    services: Services,
) -> None:
    first, second = roots(services, 2)
    db = services.db
    # given a transaction that appended under one root and is still open
    with db.unit_of_work() as holder:
        note(holder, first)
        # when another appends under another root, refusing to wait for any lock
        with db.unit_of_work() as other:
            no_waiting(other)
            note(other, second)
        # then it committed while the first still holds its chain's head
        with db.unit_of_work(write=False) as reader:
            count = reader.scalar(select(func.count()).where(AuditRecord.tenant_id == second))
        assert count == 2  # the child's creation, and this one
    with db.unit_of_work(write=False) as session:
        assert audit.verify_chain(session=session).ok


def test_appends_under_one_root_spread_over_its_lanes_and_wait_only_when_all_are_held(
    services: Services,
) -> None:
    (tenant,) = roots(services, 1)
    db = services.db
    with db.unit_of_work(write=False) as session:
        found = session.get(Tenant, tenant)
        assert found is not None
        root = str(uuid.UUID(found.path.strip("/").split("/")[0]))
    # given the root's lanes opened (a lane is opened the first time every other one is held;
    # opening holds the platform chain's head until it commits, so here each is opened apart)
    for lane in lanes_of(root):
        with db.unit_of_work() as session:
            service._open_chain(session.connection(), audit.audit_key_of(session), SYSTEM, lane)
    with contextlib.ExitStack() as stack:
        # when as many transactions as there are lanes append under the root and stay open,
        # none waiting for another
        for _ in lanes_of(root):
            holder = stack.enter_context(db.unit_of_work())
            no_waiting(holder)
            note(holder, tenant)
        # then one more has to wait for a lane's head, and nothing of it is written
        with pytest.raises(OperationalError, match="lock timeout"), db.unit_of_work() as other:  # noqa: PT012 - the wait is the statement after SET
            no_waiting(other)
            note(other, tenant)
    # and the open ones committed, each in a lane of the root, every lane whole
    with db.unit_of_work(write=False) as session:
        chains = session.scalars(
            select(AuditRecord.chain).where(
                AuditRecord.tenant_id == tenant, AuditRecord.action == "tests.note"
            )
        ).all()
        assert sorted(chains) == sorted(lanes_of(root))
        assert audit.verify_chain(session=session).ok


def test_threads_appending_under_a_few_roots_keep_every_chain_whole(services: Services) -> None:
    tenants = roots(services, 3)
    db = services.db
    # given roots whose chains are not opened yet (tenants made without their records)
    with db.unit_of_work() as session:
        fresh = [
            Tenant(
                id=(new := uuid.uuid4()),
                slug=unique("unopened"),
                name_zh="未开",
                name_en="Unopened",
                kind="country",
                region_code="cn-beijing",
                path=f"/{new.hex}/",
            )
            for _ in range(2)
        ]
        session.add_all(fresh)
    targets = [*tenants, *(t.id for t in fresh), None]
    per_thread, errors = 15, list[Exception]()
    start = threading.Barrier(8)

    def append(index: int) -> None:
        try:
            start.wait()
            for number in range(per_thread):
                tenant_id = targets[(index + number) % len(targets)]

                def work(session: Session, tenant_id: uuid.UUID | None = tenant_id) -> None:
                    note(session, tenant_id)

                db.run(work)
        except Exception as exc:  # the test below reports it
            errors.append(exc)

    # when eight threads append at once, spread over the roots, the new ones and the platform
    threads = [threading.Thread(target=append, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then every append went in, each chain opened once, and the whole log verifies
    assert errors == []
    with db.unit_of_work(write=False) as session:
        result = audit.verify_chain(session=session)
        assert result.ok, result.describe()
        for opened in fresh:
            named = session.scalar(
                select(func.count()).where(
                    AuditRecord.action == OPEN_ACTION,
                    AuditRecord.target == f"audit:{opened.id}",
                )
            )
            assert named == 1
        numbers = session.execute(
            select(AuditRecord.chain, AuditRecord.chain_seq).order_by(AuditRecord.seq)
        ).all()
    last: dict[str, int] = {}
    for chain, chain_seq in numbers:
        # within each chain, the whole log's order is the chain's order
        assert chain_seq == last.get(chain, 0) + 1
        last[chain] = chain_seq


def test_many_threads_under_one_root_keep_its_lanes_whole(services: Services) -> None:
    # given one root, and more threads writing under it than it has lanes
    (tenant,) = roots(services, 1)
    db = services.db
    threads_count, per_thread, errors = 10, 25, list[Exception]()
    start = threading.Barrier(threads_count)

    def append() -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                db.run(lambda session: note(session, tenant))
        except Exception as exc:  # the test below reports it
            errors.append(exc)

    # when they append at once, each record in a unit of work of its own (the lanes' heads move
    # and commit while others wait for a free one: a head read from before its last move would
    # link a record to a stale hash)
    threads = [threading.Thread(target=append) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then every record went in, spread over the root's lanes, and each lane is whole
    assert errors == []
    with db.unit_of_work(write=False) as session:
        result = audit.verify_chain(session=session)
        assert result.ok, result.describe()
        written = session.execute(
            select(AuditRecord.chain, func.count())
            .where(AuditRecord.tenant_id == tenant, AuditRecord.action == "tests.note")
            .group_by(AuditRecord.chain)
        ).all()
    assert sum(count for _chain, count in written) == threads_count * per_thread
    assert len(written) > 1


def test_a_record_holding_a_stand_in_of_the_one_statement_append_still_verifies(
    services: Services,
) -> None:
    # given a record whose text holds what the one-statement append cuts its canonical text at
    (tenant,) = roots(services, 1)
    with services.db.unit_of_work() as session:
        audit.record(
            session=session,
            actor=SYSTEM,
            action="tests.note",
            target="@@civicloud-chain@@ -918273645",
            tenant_id=tenant,
            detail={"seq": -546372819},
        )
    # then it was appended all the same (by the two-statement path) and the log verifies
    with services.db.unit_of_work(write=False) as session:
        assert audit.verify_chain(session=session).ok
        assert (
            session.scalar(
                select(func.count()).where(AuditRecord.target == "@@civicloud-chain@@ -918273645")
            )
            == 1
        )
