"""The tenant tree against a model: any sequence of creates and moves keeps every subtree right.

The model is a plain ``{tenant: parent}`` map. After every step, listing any tenant's subtree
(``list_tenants(root_id=X)``, and as an actor granted only at X) gives exactly the model's
subtree, paths and depths agree with the parent links, and a move below oneself is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM, make_tenant

from civicloud.core import tenants
from civicloud.core.actor import Actor, Grant
from civicloud.core.errors import InvalidInput
from civicloud.core.tenants import Tenant, TenantKind, TenantMove

Step = tuple[str, int, int]
steps = st.lists(
    st.tuples(st.sampled_from(["create", "move"]), st.integers(0, 63), st.integers(0, 63)),
    max_size=10,
)


def model_subtree(parents: dict[uuid.UUID, uuid.UUID | None], top: uuid.UUID) -> set[uuid.UUID]:
    found = {top}
    changed = True
    while changed:
        below = {child for child, parent in parents.items() if parent in found}
        changed = not below <= found
        found |= below
    return found


def reader_at(tenant: Tenant) -> Actor:
    return Actor(
        kind="user",
        name="reader",
        via="test",
        grants=(Grant("viewer", tenant.id, tenant.path, frozenset({"core.tenant.read"})),),
    )


def check_tree(session: Session, parents: dict[uuid.UUID, uuid.UUID | None]) -> None:
    session.flush()
    session.expire_all()
    # Only this example's trees: the shared database holds many more tenants than one page.
    roots = [tenant_id for tenant_id, parent_id in parents.items() if parent_id is None]
    stored = {
        t.id: t
        for root in roots
        for t in tenants.list_tenants(session=session, actor=SYSTEM, root_id=root)
    }
    for tenant_id, parent_id in parents.items():
        tenant = stored[tenant_id]
        # the stored parent link, path and depth agree with the model
        assert tenant.parent_id == parent_id
        parent_path = stored[parent_id].path if parent_id else "/"
        assert tenant.path == parent_path + tenant_id.hex + "/"
        assert tenant.depth == (stored[parent_id].depth + 1 if parent_id else 0)
        # the subtree, asked for by id and seen by someone granted only there, is the model's
        expected = model_subtree(parents, tenant_id)
        listed = tenants.list_tenants(session=session, actor=SYSTEM, root_id=tenant_id)
        assert {t.id for t in listed} == expected
        assert listed[0].id == tenant_id  # tree order: the root of the subtree comes first
        seen = tenants.list_tenants(session=session, actor=reader_at(tenant))
        assert {t.id for t in seen} == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps)
def test_subtrees_follow_the_model_through_any_creates_and_moves(
    savepoint_session: Callable[[], AbstractContextManager[Session]], plan: list[Step]
) -> None:
    with savepoint_session() as session:
        # given two roots that may hold agencies, and agencies that may hold agencies
        country = make_tenant(session, kind=TenantKind.COUNTRY)
        partner = make_tenant(session, kind=TenantKind.PARTNER, region_code="ap-singapore")
        parents: dict[uuid.UUID, uuid.UUID | None] = {country.id: None, partner.id: None}
        order = [country.id, partner.id]
        for action, first, second in plan:
            if action == "create":
                # when an agency is created under any tenant
                parent = session.get(Tenant, order[first % len(order)])
                created = make_tenant(session, parent=parent, kind=TenantKind.AGENCY)
                parents[created.id] = parent.id if parent else None
                order.append(created.id)
            else:
                agencies = order[2:]
                if not agencies:
                    continue
                # when an agency is moved under any tenant
                moving = agencies[first % len(agencies)]
                target = order[second % len(order)]
                move = TenantMove(parent_id=target)
                if target in model_subtree(parents, moving):
                    # then a move below itself is refused and changes nothing
                    with pytest.raises(InvalidInput, match="below itself"):
                        tenants.move_tenant(
                            session=session, actor=SYSTEM, tenant_id=moving, data=move
                        )
                else:
                    tenants.move_tenant(session=session, actor=SYSTEM, tenant_id=moving, data=move)
                    parents[moving] = target
            # then every subtree is still the model's
            check_tree(session, parents)
