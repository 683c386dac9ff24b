"""Tenant tree rules at the service layer: depth, ancestors and lookups (rolled back per test)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM, make_tenant

from civicloud.core import tenants
from civicloud.core.errors import InvalidInput
from civicloud.core.tenants import Tenant, TenantKind, TenantMove
from civicloud.core.tenants.service import MAX_DEPTH


def chain(session: Session, top: Tenant, levels: int) -> list[Tenant]:
    made = [top]
    for _ in range(levels):
        made.append(make_tenant(session, parent=made[-1], kind=TenantKind.AGENCY))
    return made


def test_the_tree_goes_as_deep_as_the_path_column_holds_and_no_deeper(
    db_session: Session,
) -> None:
    # given agencies nested down to the deepest level
    levels = chain(db_session, make_tenant(db_session), MAX_DEPTH)
    deepest = levels[-1]
    db_session.flush()
    assert deepest.depth == MAX_DEPTH
    assert len(deepest.path) <= 1024
    # when one more level is added, then it is refused as invalid, not as a database error
    with pytest.raises(InvalidInput, match="levels deep"):
        make_tenant(db_session, parent=deepest, kind=TenantKind.AGENCY)


def test_a_move_that_would_push_a_subtree_too_deep_is_refused(db_session: Session) -> None:
    # given a deep chain, and elsewhere an agency with a sub-agency
    levels = chain(db_session, make_tenant(db_session), MAX_DEPTH - 1)
    pair = chain(db_session, make_tenant(db_session), 2)
    # when the pair moves below the chain's bottom (its sub-agency would sit too deep)
    move = TenantMove(parent_id=levels[-1].id)
    with pytest.raises(InvalidInput, match="levels deep"):
        tenants.move_tenant(session=db_session, actor=SYSTEM, tenant_id=pair[1].id, data=move)
    # then nothing moved; the sub-agency alone still fits
    assert pair[1].parent_id == pair[0].id
    tenants.move_tenant(session=db_session, actor=SYSTEM, tenant_id=pair[2].id, data=move)
    db_session.flush()
    db_session.expire_all()
    moved = db_session.get(Tenant, pair[2].id)
    assert moved is not None
    assert moved.depth == MAX_DEPTH


def test_ancestors_come_root_first(db_session: Session) -> None:
    levels = chain(db_session, make_tenant(db_session), 3)
    db_session.flush()
    found = tenants.ancestors(session=db_session, tenant=levels[-1])
    assert [t.id for t in found] == [t.id for t in levels[:-1]]
    assert tenants.ancestors(session=db_session, tenant=levels[0]) == []


def test_tenants_are_found_by_slug_and_by_id(db_session: Session) -> None:
    tenant = make_tenant(db_session)
    assert tenants.get_tenant_by_slug(session=db_session, slug=tenant.slug) is tenant
    assert tenants.get_tenant_by_slug(session=db_session, slug="no-such-slug") is None
    assert tenants.get_tenant(session=db_session, tenant_id=tenant.id) is tenant
    assert tenant.name("zh-CN") == tenant.name_zh
    assert tenant.name("en") == tenant.name_en
