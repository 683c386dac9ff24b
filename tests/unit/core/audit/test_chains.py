"""The audit log's chains: one per root tenant and the platform chain; what joins which, and any
tampering with one chain (a record edited or removed, a tail cut off, a head rewound or
resealed, a chain removed whole) found where it happened, on both databases."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM, make_tenant

from civicloud.core import audit, tenants
from civicloud.core.audit import AuditHead, AuditRecord
from civicloud.core.audit.models import PLATFORM_CHAIN
from civicloud.core.audit.service import OPEN_ACTION
from civicloud.core.caches import CACHES_KEY
from civicloud.core.db import AUDIT_KEY
from civicloud.core.services import Services
from civicloud.core.tenants import TenantMove

SessionFactory = Callable[[], contextlib.AbstractContextManager[Session]]


@pytest.fixture(scope="module")
def keyed_session(fresh_services: Callable[[], Services]) -> SessionFactory:
    """Rolled-back sessions holding the installation's audit key, on a database of their own."""
    services = fresh_services()

    @contextlib.contextmanager
    def open_session() -> Iterator[Session]:
        connection = services.db.engine.connect()
        outer = connection.begin()
        session = Session(
            bind=connection,
            join_transaction_mode="create_savepoint",
            expire_on_commit=False,
            info={AUDIT_KEY: services.db.audit_key, CACHES_KEY: services.db.caches},
        )
        try:
            yield session
        finally:
            session.close()
            outer.rollback()
            connection.close()

    return open_session


def note(session: Session, tenant_id: uuid.UUID | None, what: str = "x") -> None:
    audit.record(
        session=session, actor=SYSTEM, action="tests.note", target=what, tenant_id=tenant_id
    )


def chain_records(session: Session, chain: str) -> list[AuditRecord]:
    return list(
        session.scalars(
            select(AuditRecord).where(AuditRecord.chain == chain).order_by(AuditRecord.seq)
        )
    )


def verify(session: Session) -> audit.VerifyResult:
    session.flush()
    session.expire_all()
    return audit.verify_chain(session=session, batch=4)


@dataclass(frozen=True)
class World:
    """Ids only: verifying empties the session, and the tenants' objects with it."""

    a: uuid.UUID
    a_child: uuid.UUID
    b: uuid.UUID

    @property
    def chain_a(self) -> str:
        return str(self.a)

    @property
    def chain_b(self) -> str:
        return str(self.b)


def make_world(session: Session) -> World:
    """Two roots, one with a child, and records for each and for no tenant, interleaved."""
    a = make_tenant(session)
    a_child = make_tenant(session, parent=a)
    b = make_tenant(session)
    world = World(a.id, a_child.id, b.id)
    for number in range(3):
        note(session, world.a_child, f"a{number}")
        note(session, world.b, f"b{number}")
        note(session, None, f"p{number}")
    session.flush()
    return world


def test_each_record_joins_the_chain_of_its_root_and_others_the_platform_chain(
    keyed_session: SessionFactory,
) -> None:
    with keyed_session() as session:
        # given records for a root, for a tenant below it, for another root and for no tenant
        world = make_world(session)
        # then the first two share their root's chain, the third has its own, the last the
        # platform's; each chain numbers its records from 1, and each was opened on the platform
        a_records = chain_records(session, world.chain_a)
        assert {r.tenant_id for r in a_records} == {world.a, world.a_child}
        assert [r.chain_seq for r in a_records] == list(range(1, len(a_records) + 1))
        assert {r.tenant_id for r in chain_records(session, world.chain_b)} == {world.b}
        platform = chain_records(session, PLATFORM_CHAIN)
        opened = [r.detail["chain"] for r in platform if r.action == OPEN_ACTION]
        assert opened == [world.chain_a, world.chain_b]
        assert all(r.tenant_id is None for r in platform)
        heads = {h.chain: (h.seq, h.hash) for h in session.scalars(select(AuditHead))}
        assert set(heads) == {PLATFORM_CHAIN, world.chain_a, world.chain_b}
        assert heads[world.chain_a][0] == len(a_records)
        # and the whole log verifies, every seal included
        result = verify(session)
        assert result.ok, result.describe()
        assert result.sealed
        assert result.chains == 3
        assert result.checked == session.query(AuditRecord).count()
        # and it names each chain's head, the platform's first, to be noted elsewhere
        assert result.heads[0][0] == PLATFORM_CHAIN
        assert {chain: (seq, digest) for chain, seq, digest in result.heads} == heads


def test_a_moved_tenant_writes_its_later_records_to_its_new_roots_chain(
    keyed_session: SessionFactory,
) -> None:
    with keyed_session() as session:
        world = make_world(session)
        before = [r.seq for r in chain_records(session, world.chain_a)]
        # when the child moves under the other root and is written about again
        tenants.move_tenant(
            session=session,
            actor=SYSTEM,
            tenant_id=world.a_child,
            data=TenantMove(parent_id=world.b),
        )
        note(session, world.a_child, "after the move")
        session.flush()
        # then its earlier records stay in the old root's chain, and the move and what follows
        # join the new root's
        assert [r.seq for r in chain_records(session, world.chain_a)] == before
        moved = [r for r in chain_records(session, world.chain_b) if r.tenant_id == world.a_child]
        assert [r.action for r in moved] == ["core.tenant.move", "tests.note"]
        result = verify(session)
        assert result.ok, result.describe()


def test_a_record_whose_tenant_does_not_exist_joins_the_platform_chain(
    keyed_session: SessionFactory,
) -> None:
    with keyed_session() as session:
        audit.record(
            session=session, actor=SYSTEM, action="tests.note", target="x", tenant_id=uuid.uuid4()
        )
        session.flush()
        last = session.scalars(select(AuditRecord).order_by(AuditRecord.seq.desc())).first()
        assert last is not None
        assert last.chain == PLATFORM_CHAIN


# --- tampering with one chain ------------------------------------------------------------------

Tampering = Callable[[Session, World], int]


def edit_a_record(session: Session, world: World) -> int:
    victim = chain_records(session, world.chain_a)[2]
    session.execute(update(AuditRecord).where(AuditRecord.seq == victim.seq).values(target="f"))
    return victim.seq


def remove_a_record(session: Session, world: World) -> int:
    victim = chain_records(session, world.chain_b)[1]
    session.execute(delete(AuditRecord).where(AuditRecord.seq == victim.seq))
    return victim.seq


def cut_the_tail(session: Session, world: World) -> int:
    cut = chain_records(session, world.chain_a)[-2:]
    session.execute(delete(AuditRecord).where(AuditRecord.seq.in_([r.seq for r in cut])))
    return cut[0].seq


def cut_the_tail_and_rewind_the_head(session: Session, world: World) -> int:
    records = chain_records(session, world.chain_a)
    first_cut = cut_the_tail(session, world)
    last = records[-3]
    session.execute(
        update(AuditHead)
        .where(AuditHead.chain == world.chain_a)
        .values(seq=last.chain_seq, hash=last.hash)
    )
    return last.seq if last.seq < first_cut else first_cut


def cut_the_tail_and_drop_the_heads_seal(session: Session, world: World) -> int:
    at = cut_the_tail_and_rewind_the_head(session, world)
    session.execute(update(AuditHead).where(AuditHead.chain == world.chain_a).values(seal=None))
    return at


def remove_the_whole_chain(session: Session, world: World) -> int:
    first = chain_records(session, world.chain_b)[0].seq
    session.execute(delete(AuditRecord).where(AuditRecord.chain == world.chain_b))
    session.execute(delete(AuditHead).where(AuditHead.chain == world.chain_b))
    return first


def remove_a_chains_head(session: Session, world: World) -> int:
    session.execute(delete(AuditHead).where(AuditHead.chain == world.chain_b))
    return chain_records(session, world.chain_b)[0].seq


def reseal_a_head(session: Session, world: World) -> int:
    session.execute(update(AuditHead).where(AuditHead.chain == world.chain_b).values(seal="f" * 64))
    return chain_records(session, world.chain_b)[-1].seq


def remove_a_chains_opening(session: Session, world: World) -> int:
    opening = next(
        r
        for r in chain_records(session, PLATFORM_CHAIN)
        if r.action == OPEN_ACTION and r.detail["chain"] == world.chain_b
    )
    session.execute(delete(AuditRecord).where(AuditRecord.seq == opening.seq))
    return opening.seq


def move_a_record_to_another_chain(session: Session, world: World) -> int:
    victim = chain_records(session, world.chain_a)[1]
    session.execute(
        update(AuditRecord)
        .where(AuditRecord.seq == victim.seq)
        .values(chain=world.chain_b, chain_seq=10_000)
    )
    return victim.seq


def swap_records_of_two_chains(session: Session, world: World) -> int:
    one, other = (
        chain_records(session, world.chain_a)[-1],
        chain_records(session, world.chain_b)[-1],
    )
    for old, new in ((one.seq, -1), (other.seq, one.seq), (-1, other.seq)):
        session.execute(update(AuditRecord).where(AuditRecord.seq == old).values(seq=new))
    return min(one.seq, other.seq)


TAMPERING: dict[str, tuple[Tampering, str]] = {
    "an edited record": (edit_a_record, "edited"),
    "a removed record": (remove_a_record, "removed"),
    "a cut-off tail, its head left": (cut_the_tail, "removed"),
    "a cut-off tail, its head moved back": (cut_the_tail_and_rewind_the_head, "wrong seal"),
    "a cut-off tail, its head moved back unsealed": (
        cut_the_tail_and_drop_the_heads_seal,
        "carries no seal",
    ),
    "a chain removed whole": (remove_the_whole_chain, "was removed"),
    "a chain's head removed": (remove_a_chains_head, "head of the chain"),
    "a head with a wrong seal": (reseal_a_head, "wrong seal"),
    "a chain's opening removed": (remove_a_chains_opening, "removed"),
    "a record moved to another chain": (move_a_record_to_another_chain, "beyond"),
    "records of two chains swapped": (swap_records_of_two_chains, ""),
}


@pytest.mark.parametrize("tampering", sorted(TAMPERING))
def test_tampering_with_one_chain_is_found_where_it_happened(
    keyed_session: SessionFactory, tampering: str
) -> None:
    with keyed_session() as session:
        # given the log of two roots and the platform, changed behind civicloud's back
        world = make_world(session)
        assert verify(session).ok
        change, says = TAMPERING[tampering]
        expected = change(session, world)
        # when it is verified, then the first record that no longer fits is named
        result = verify(session)
        assert not result.ok
        assert result.seq == expected, result.describe()
        assert says in (result.problem or ""), result.describe()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writes=st.lists(st.sampled_from(["a", "child", "b", None]), min_size=1, max_size=10))
def test_any_interleaving_of_chains_verifies_and_any_removed_record_is_found(
    keyed_session: SessionFactory, writes: list[str | None]
) -> None:
    with keyed_session() as session:
        world = make_world(session)
        by_name = {"a": world.a, "child": world.a_child, "b": world.b, None: None}
        for name in writes:
            note(session, by_name[name])
        result = verify(session)
        assert result.ok, result.describe()
        for chain in (PLATFORM_CHAIN, world.chain_a, world.chain_b):
            numbers = [r.chain_seq for r in chain_records(session, chain)]
            assert numbers == list(range(1, len(numbers) + 1))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    writes=st.lists(st.sampled_from(["a", "child", "b", None]), min_size=1, max_size=8),
    data=st.data(),
)
def test_removing_any_record_of_any_chain_is_found_at_its_place(
    keyed_session: SessionFactory, writes: list[str | None], data: st.DataObject
) -> None:
    with keyed_session() as session:
        world = make_world(session)
        by_name = {"a": world.a, "child": world.a_child, "b": world.b, None: None}
        for name in writes:
            note(session, by_name[name])
        session.flush()
        seqs = list(session.scalars(select(AuditRecord.seq).order_by(AuditRecord.seq)))
        victim = data.draw(st.sampled_from(seqs), label="removed")
        session.execute(delete(AuditRecord).where(AuditRecord.seq == victim))
        result = verify(session)
        assert not result.ok
        assert result.seq == victim, result.describe()
