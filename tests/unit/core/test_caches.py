"""The per-database caches: expiry, size bound, and clearing when a change commits."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update
from tests.factories.core import SYSTEM, make_tenant

from civicloud.core import caches as caches_module
from civicloud.core import tenants
from civicloud.core.caches import TTLCache, invalidate_on_commit
from civicloud.core.services import Services
from civicloud.core.tenants import Tenant, TenantRename


class Clock:
    """A stand-in for ``time.monotonic`` that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(caches_module.time, "monotonic", fake)
    return fake


def test_an_entry_lives_for_its_ttl_and_no_longer(clock: Clock) -> None:
    # given a cache with a 10-second lifetime holding one entry
    cache: TTLCache[str, int] = TTLCache(ttl=10)
    cache.put("a", 1)
    # when 9.9 seconds pass it is still there; past 10 it is gone
    clock.now += 9.9
    assert cache.get("a") == 1
    clock.now += 0.2
    assert cache.get("a") is None


def test_the_least_recently_used_entry_goes_first_when_full(clock: Clock) -> None:
    # given a cache of two entries where "a" was read after "b" was stored
    cache: TTLCache[str, int] = TTLCache(ttl=10, max_entries=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    # when a third entry arrives
    cache.put("c", 3)
    # then "b", the least recently used, made room
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)


def test_a_zero_ttl_turns_the_cache_off() -> None:
    cache: TTLCache[str, int] = TTLCache(ttl=0)
    cache.put("a", 1)
    assert cache.get("a") is None


def test_invalidation_waits_for_commit_and_is_dropped_on_rollback(
    core_services: Services,
) -> None:
    db = core_services.db
    cache = db.caches.get("example")
    cache.put("k", "v")
    # when a unit of work that marks the cache stale rolls back, the entry stays
    with pytest.raises(RuntimeError), db.unit_of_work() as session:  # noqa: PT012 - the raise must happen inside the unit of work
        invalidate_on_commit(session, "example")
        raise RuntimeError("changed my mind")
    assert cache.get("k") == "v"
    # when one commits, the entry is gone, and not before the commit
    with db.unit_of_work() as session:
        invalidate_on_commit(session, "example")
        assert cache.get("k") == "v"
    assert cache.get("k") is None


def test_a_rename_in_this_process_is_read_back_at_once(core_services: Services) -> None:
    db = core_services.db
    with db.unit_of_work() as session:
        tenant_id = make_tenant(session).id
    with db.unit_of_work(write=False) as session:
        before = tenants.read_tenant(session=session, actor=SYSTEM, tenant_id=tenant_id)
    # when the tenant is renamed through the service
    with db.unit_of_work() as session:
        tenants.rename_tenant(
            session=session, actor=SYSTEM, tenant_id=tenant_id, data=TenantRename(name_en="New")
        )
    # then the next read shows it, cache or not
    with db.unit_of_work(write=False) as session:
        after = tenants.read_tenant(session=session, actor=SYSTEM, tenant_id=tenant_id)
    assert (before.name_en != "New", after.name_en, after.version) == (True, "New", 2)


def test_a_change_by_another_process_is_seen_once_the_ttl_passes(
    core_services: Services, clock: Clock
) -> None:
    db = core_services.db
    with db.unit_of_work() as session:
        tenant_id = make_tenant(session).id
    with db.unit_of_work(write=False) as session:
        tenants.read_tenant(session=session, actor=SYSTEM, tenant_id=tenant_id)
    # given another process renames it (straight SQL: this process's caches hear nothing)
    with db.engine.begin() as connection:
        connection.execute(update(Tenant).where(Tenant.id == tenant_id).values(name_en="Elsewhere"))
    # then this process may serve the old name until the TTL passes, and the new one after
    with db.unit_of_work(write=False) as session:
        cached = tenants.read_tenant(session=session, actor=SYSTEM, tenant_id=tenant_id)
    clock.now += db.caches.ttl + 0.1
    with db.unit_of_work(write=False) as session:
        fresh = tenants.read_tenant(session=session, actor=SYSTEM, tenant_id=tenant_id)
    assert cached.name_en != "Elsewhere"
    assert fresh.name_en == "Elsewhere"


def test_an_unknown_tenant_is_not_remembered(core_services: Services) -> None:
    db = core_services.db
    missing = uuid.uuid4()
    with db.unit_of_work(write=False) as session:
        assert tenants.resolve_tenant(session=session, tenant_id=missing) is None
    assert db.caches.get(tenants.service.CACHE).get(missing) is None
