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
from civicloud.core.tenants import TenantRename


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
