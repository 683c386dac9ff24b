"""Materialised paths: the index range that is "this tenant and everything below it"."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from civicloud.core.tenants import subtree_bounds

segment = st.text(alphabet="0123456789abcdef", min_size=1, max_size=6)
path = st.lists(segment, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts) + "/")


def in_range(candidate: str, root: str) -> bool:
    lo, hi = subtree_bounds(root)
    return lo <= candidate < hi


def test_the_range_of_a_tenant_holds_it_and_its_descendants() -> None:
    assert in_range("/aa/", "/aa/")
    assert in_range("/aa/bb/", "/aa/")
    assert in_range("/aa/bb/cc/", "/aa/")


def test_the_range_of_a_tenant_excludes_its_parent_siblings_and_lookalikes() -> None:
    assert not in_range("/", "/aa/")
    assert not in_range("/ab/", "/aa/")
    assert not in_range("/aa0/", "/aa/")
    assert not in_range("/aaf/bb/", "/aa/")
    assert not in_range("/a/", "/aa/")


@given(candidate=path, root=path)
def test_being_in_the_range_is_the_same_as_having_the_root_as_a_path_prefix(
    candidate: str, root: str
) -> None:
    assert in_range(candidate, root) is candidate.startswith(root)
