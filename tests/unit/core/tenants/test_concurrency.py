"""Two transactions changing the same tenant at once: the second is told, not crashed.

SQLite serialises writers (each takes the write lock when it begins), so the race only exists on
PostgreSQL; there, the ``version`` column catches it.
"""

from __future__ import annotations

import pytest
from tests.factories.core import SYSTEM, make_tenant

from civicloud.core import tenants
from civicloud.core.errors import Conflict
from civicloud.core.services import Services
from civicloud.core.tenants import TenantKind, TenantMove, TenantRename


def test_a_rename_racing_another_is_a_conflict(core_services: Services) -> None:
    if core_services.db.is_sqlite:
        pytest.skip("SQLite serialises writing transactions: there is no race to lose")
    db = core_services.db
    with db.unit_of_work() as session:
        tenant_id = make_tenant(session).id
    # given two transactions that both read the tenant at version 1
    with pytest.raises(Conflict, match="changed"), db.unit_of_work() as slow:  # noqa: PT012 - both transactions must be open inside it
        seen = tenants.get_tenant_or_raise(session=slow, actor=SYSTEM, tenant_id=tenant_id)
        assert seen.version == 1
        # when the other renames it and commits first
        with db.unit_of_work() as fast:
            tenants.rename_tenant(
                session=fast, actor=SYSTEM, tenant_id=tenant_id, data=TenantRename(name_en="Fast")
            )
        # then the slow one's rename, built on what it read, is refused as a conflict
        tenants.rename_tenant(
            session=slow, actor=SYSTEM, tenant_id=tenant_id, data=TenantRename(name_en="Slow")
        )
    with db.unit_of_work(write=False) as session:
        assert tenants.get_tenant(session=session, tenant_id=tenant_id).name_en == "Fast"


def test_a_child_created_while_its_parent_moves_moves_with_it(core_services: Services) -> None:
    if core_services.db.is_sqlite:
        pytest.skip("SQLite serialises writing transactions: there is no race to lose")
    import threading

    db = core_services.db
    with db.unit_of_work() as session:
        root = make_tenant(session)
        a = make_tenant(session, parent=root, kind=TenantKind.PROVINCE)
        b = make_tenant(session, parent=root, kind=TenantKind.PROVINCE)
        x = make_tenant(session, parent=a, kind=TenantKind.CITY)
        x_id, b_id = x.id, b.id
    moved = threading.Event()
    failures: list[BaseException] = []

    def move_x_under_b() -> None:
        try:
            with db.unit_of_work() as mover:
                tenants.move_tenant(
                    session=mover, actor=SYSTEM, tenant_id=x_id, data=TenantMove(parent_id=b_id)
                )
        except BaseException as exc:  # reported to the test thread below
            failures.append(exc)
        finally:
            moved.set()

    # given a child being created under x, its transaction still open
    with db.unit_of_work() as creator:
        child = make_tenant(creator, parent=tenants.get_tenant(session=creator, tenant_id=x_id))
        child_id = child.id
        # when another transaction moves x meanwhile
        thread = threading.Thread(target=move_x_under_b)
        thread.start()
        # (the move waits for the child's transaction, which holds x's lock)
        assert not moved.wait(timeout=0.5)
    thread.join(timeout=30)
    assert not failures, failures
    # then the child sits below x's new place, not its old one
    with db.unit_of_work(write=False) as session:
        x_now = tenants.get_tenant(session=session, tenant_id=x_id)
        child_now = tenants.get_tenant(session=session, tenant_id=child_id)
        assert x_now is not None
        assert child_now is not None
        assert child_now.path == x_now.path + child_id.hex + "/"
        assert x_now.path.startswith(tenants.get_tenant(session=session, tenant_id=b_id).path)
