"""Permission names and the patterns roles use to name them."""

from __future__ import annotations

import pytest

from civicloud.core.permissions import (
    BUILTIN_ROLES,
    known_permissions,
    matches,
    register_permissions,
)


@pytest.mark.parametrize(
    ("pattern", "permission", "expected"),
    [
        ("*", "pay.refund", True),
        ("pay.refund", "pay.refund", True),
        ("pay.*", "pay.refund", True),
        ("pay.*", "pay.bill.void", True),
        ("pay.*", "payroll.run", False),
        ("pay.*", "pay", False),
        ("pay.refund", "pay.refunds", False),
        ("pay.refund", "pay.*", False),
        ("core.tenant.*", "core.tenant.read", True),
        ("core.tenant.*", "core.user.read", False),
    ],
)
def test_a_pattern_matches_exact_names_and_trailing_wildcards(
    pattern: str, permission: str, expected: bool
) -> None:
    assert matches(pattern, permission) is expected


@pytest.mark.parametrize("name", ["pay", "pay.", "pay..refund", "pay.re-fund", ".pay"])
def test_badly_formed_permission_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="bad permission name"):
        register_permissions({name: "nope"})


def test_every_builtin_role_names_only_known_permissions() -> None:
    known = known_permissions()
    for role in BUILTIN_ROLES:
        for pattern in role.permissions:
            assert any(matches(pattern, name) for name in known), (role.name, pattern)
