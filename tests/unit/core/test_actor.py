"""The ``Actor``: which grants reach which tenant, and the one ``authorize`` check."""

from __future__ import annotations

import uuid

import pytest

from civicloud.core.actor import Actor, Grant, authorize, grants_cover_all
from civicloud.core.errors import NotFound, PermissionDenied

PROVINCE = "/aa/"
CITY = "/aa/bb/"
SIBLING = "/aa/cc/"
OTHER_ROOT = "/dd/"


def grant(path: str | None, *permissions: str, role: str = "r") -> Grant:
    return Grant(
        role=role,
        tenant_id=uuid.uuid4() if path else None,
        tenant_path=path,
        permissions=frozenset(permissions),
    )


def user(*grants: Grant) -> Actor:
    return Actor(kind="user", name="li.wei", via="test", user_id=uuid.uuid4(), grants=grants)


def test_a_grant_reaches_its_tenant_and_everything_below_it() -> None:
    # given a grant at the province
    held = grant(PROVINCE, "core.tenant.read")
    # then it covers the province and the city below, and nothing beside or above it
    assert held.covers(PROVINCE)
    assert held.covers(CITY)
    assert not held.covers(OTHER_ROOT)
    assert not grant(CITY, "x.y").covers(PROVINCE)


def test_a_grant_does_not_reach_a_tenant_whose_id_merely_starts_the_same() -> None:
    # given tenants /aa/ and /aab/ (ids sharing a prefix)
    held = grant("/aa/", "core.tenant.read")
    # then the grant at /aa/ does not reach /aab/
    assert not held.covers("/aab/")


def test_a_platform_grant_reaches_every_tenant() -> None:
    actor = user(grant(None, "core.tenant.read"))
    assert actor.is_platform_wide
    assert actor.sees(OTHER_ROOT)
    assert actor.roots() is None


def test_can_needs_the_permission_at_a_grant_that_reaches_the_tenant() -> None:
    # given read at the province and admin only at one city
    actor = user(grant(PROVINCE, "core.tenant.read"), grant(CITY, "core.tenant.admin"))
    # then admin holds at the city, not at its sibling, and read holds at both
    assert actor.can("core.tenant.admin", CITY)
    assert not actor.can("core.tenant.admin", SIBLING)
    assert actor.can("core.tenant.read", SIBLING)
    assert actor.permissions_at(CITY) == {"core.tenant.read", "core.tenant.admin"}
    assert actor.permissions_at(SIBLING) == {"core.tenant.read"}


def test_roots_drop_subtrees_already_inside_another_one() -> None:
    actor = user(grant(CITY, "a.b"), grant(PROVINCE, "a.b"), grant(OTHER_ROOT, "c.d"))
    assert actor.roots() == [PROVINCE, OTHER_ROOT]
    assert actor.roots("c.d") == [OTHER_ROOT]
    assert actor.roots("e.f") == []


def test_authorize_hides_what_the_actor_cannot_see_and_refuses_what_it_may_only_see() -> None:
    actor = user(grant(PROVINCE, "core.tenant.read"))
    # when the tenant is outside every grant, then it does not exist for the actor
    with pytest.raises(NotFound):
        authorize(actor, "core.tenant.read", path=OTHER_ROOT)
    # when the tenant is visible but the permission is missing, then it is refused
    with pytest.raises(PermissionDenied):
        authorize(actor, "core.tenant.admin", path=CITY)
    # when both hold, then nothing is raised
    authorize(actor, "core.tenant.read", path=CITY)


def test_an_actor_without_grants_sees_nothing() -> None:
    actor = user()
    assert not actor.sees(PROVINCE)
    assert actor.roots() == []
    with pytest.raises(NotFound):
        authorize(actor, "core.tenant.read", path=PROVINCE)


def test_the_system_actor_may_do_anything_anywhere() -> None:
    actor = Actor.system("cli:ops")
    assert actor.name == "system:cli:ops"
    assert actor.can("pay.refund", OTHER_ROOT)
    actor.require_platform("core.region.admin")


def test_require_platform_ignores_grants_at_tenants() -> None:
    actor = user(grant(PROVINCE, "*"))
    with pytest.raises(PermissionDenied):
        actor.require_platform("core.region.admin")


@pytest.mark.parametrize(
    ("held", "wanted", "expected"),
    [
        (("*",), ("*",), True),
        (("core.*",), ("core.tenant.read", "core.user.read"), True),
        (("core.tenant.read",), ("core.tenant.read", "core.user.read"), False),
        (("core.tenant.read",), ("core.*",), False),
        (("pay.*",), ("*",), False),
    ],
)
def test_grants_cover_all_only_when_every_permission_is_held_there(
    held: tuple[str, ...], wanted: tuple[str, ...], expected: bool
) -> None:
    assert grants_cover_all([grant(PROVINCE, *held)], wanted, CITY) is expected


def test_grants_elsewhere_do_not_count_towards_covering() -> None:
    grants = [grant(SIBLING, "*"), grant(PROVINCE, "core.tenant.read")]
    assert not grants_cover_all(grants, ["core.tenant.admin"], CITY)
