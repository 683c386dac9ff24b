"""Audit concurrency: audited management writes per second under 8 roots, against the same writes
with the audit append made a no-op.

The write: ``tenants.rename_tenant`` as the platform's system actor, each in a unit of work of its
own (``Database.unit_of_work``: one transaction, committed), as an API call or a CLI command runs
it. The world: 8 root tenants, each with 2 cities below it; 16 client threads, each renaming its
own city in a loop, so two threads write under each root and share its audit chain.

- **audited**: civicloud's code, the record appended to the root's chain in the same transaction.
- **no audit**: the identical write with ``core.audit.record`` replaced by a function that does
  nothing (the rename, its flush and its commit stay).

Both run in one process, on a throwaway PostgreSQL cluster (``bench/_postgres.py``); rounds
alternate the order (audited/no audit, no audit/audited, ...) and the ratio reported is the
median over rounds of audited/no-audit writes per second. At the end the audit log must verify
(``audit.verify_chain``) and hold one record per audited write.

    .venv/bin/python bench/audit_concurrency.py            # about a minute
    .venv/bin/python bench/audit_concurrency.py --quick    # under 30 seconds
    .venv/bin/python bench/audit_concurrency.py --postgres-url postgresql+psycopg://U:PW@HOST/DB

The last line printed is ``audit_concurrency ratio=X goal=0.7``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _postgres  # a sibling helper, found through the path set just above

GOAL = 0.7
ROOTS = 8
PER_ROOT = 2


@dataclass(frozen=True)
class Sample:
    """One path's run in one round."""

    writes: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.writes / self.seconds


def build_world(url: str, data_dir: Path) -> tuple[Any, list[uuid.UUID]]:
    """Migrate civicloud at ``url`` and make 8 roots with 2 cities each; the cities' ids."""
    from civicloud.app import build_services, prepare_database
    from civicloud.core import tenants
    from civicloud.core.actor import Actor
    from civicloud.core.config import Settings

    settings = Settings(data_dir=data_dir, database_url=url, log_level="WARNING")
    services = build_services(settings)
    prepare_database(services)
    system = Actor.system("bench")
    tag = os.urandom(3).hex()  # fresh slugs, so that repeated runs on one database never collide
    cities: list[uuid.UUID] = []
    with services.db.unit_of_work() as session:
        for number in range(ROOTS):
            root = tenants.create_tenant(
                session=session,
                actor=system,
                data=tenants.TenantCreate(
                    slug=f"bench-{tag}-root-{number}",
                    name_zh=f"根 {number}",
                    name_en=f"Root {number}",
                    kind=tenants.TenantKind.COUNTRY,
                    region_code="cn-beijing",
                ),
            )
            for child in range(PER_ROOT):
                city = tenants.create_tenant(
                    session=session,
                    actor=system,
                    data=tenants.TenantCreate(
                        slug=f"bench-{tag}-city-{number}-{child}",
                        name_zh=f"城市 {number}-{child}",
                        name_en=f"City {number}-{child}",
                        kind=tenants.TenantKind.CITY,
                        parent_id=root.id,
                    ),
                )
                cities.append(city.id)
    return services, cities


@contextmanager
def audit_switched_off() -> Iterator[None]:
    """``core.audit.record`` does nothing inside the block (services call it through the
    package, ``audit.record``, so the rename's own code is untouched)."""
    from civicloud.core import audit

    real = audit.record

    def nothing(**_: Any) -> None:
        return None

    audit.record = nothing
    try:
        yield
    finally:
        audit.record = real


def run_round(services: Any, cities: list[uuid.UUID], writes: int, label: str) -> Sample:
    """Each client renames its own city ``writes`` times; how long all of them took."""
    from civicloud.core import tenants
    from civicloud.core.actor import Actor

    system = Actor.system("bench")
    start = threading.Barrier(len(cities) + 1)
    errors: list[BaseException] = []

    def client(city: uuid.UUID) -> None:
        try:
            start.wait()
            for number in range(writes):
                with services.db.unit_of_work() as session:
                    tenants.rename_tenant(
                        session=session,
                        actor=system,
                        tenant_id=city,
                        data=tenants.TenantRename(name_en=f"City {label} {number}"),
                    )
        except BaseException as exc:  # reported below: the round is void
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(city,)) for city in cities]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]!r}") from errors[0]
    return Sample(writes * len(cities), took)


def measure(
    services: Any, cities: list[uuid.UUID], plan: dict[str, int]
) -> dict[str, list[Sample]]:
    """Warm both paths up, then the interleaved rounds."""
    paths: dict[str, Callable[[], AbstractContextManager[Any]]] = {
        "audited": nullcontext,
        "no audit": audit_switched_off,
    }
    for name, switch in paths.items():
        with switch():
            run_round(services, cities, plan["warmup"], f"warm-{name}")
    samples: dict[str, list[Sample]] = {name: [] for name in paths}
    order = list(paths)
    for number in range(plan["rounds"]):
        for name in order if number % 2 == 0 else reversed(order):
            with paths[name]():
                sample = run_round(services, cities, plan["writes"], f"{number}-{name}")
            samples[name].append(sample)
            print(f"  round {number + 1} {name:>8}: {sample.rate:8.0f} writes/s")
    return samples


def check(services: Any, audited_writes: int) -> None:
    """The log verifies and holds every audited rename."""
    from sqlalchemy import func, select

    from civicloud.core import audit
    from civicloud.core.audit import AuditRecord

    with services.db.unit_of_work(write=False) as session:
        result = audit.verify_chain(session=session)
        renames = session.scalar(
            select(func.count()).where(AuditRecord.action == "core.tenant.rename")
        )
    print(f"check:      {result.describe()}")
    if not result.ok:
        raise SystemExit("the audit log does not verify")
    if renames != audited_writes:
        raise SystemExit(f"{renames} rename records for {audited_writes} audited renames")


@contextmanager
def postgres_url(given: str) -> Iterator[str | None]:
    """``given``, or a database on a throwaway cluster (``None`` without the binaries)."""
    if given:
        yield given
        return
    with _postgres.cluster() as pg:
        if pg is None:
            yield None
            return
        print(f"postgresql: {pg.version}, {pg.settings}")
        yield pg.create_database("bench_audit")


def main() -> None:
    """Parse the options, run on PostgreSQL, print the ratio line last."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short run (under 30 s)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, quick 3)")
    parser.add_argument("--writes", type=int, help="writes per client per round (150, quick 40)")
    parser.add_argument(
        "--warmup", type=int, help="warm-up writes per client per path (20, quick 8)"
    )
    parser.add_argument(
        "--postgres-url",
        default="",
        help="use this PostgreSQL (postgresql+psycopg://USER:PW@HOST/DB) instead of starting a "
        "throwaway cluster; the bench adds tenants there",
    )
    args = parser.parse_args()
    plan = {
        "rounds": args.rounds or (3 if args.quick else 5),
        "writes": args.writes or (40 if args.quick else 150),
        "warmup": args.warmup if args.warmup is not None else (8 if args.quick else 20),
    }
    clients = ROOTS * PER_ROOT
    print(
        f"machine:    {os.cpu_count() or 1} cores, Python {sys.version.split()[0]}; {clients} "
        f"client threads over {ROOTS} roots ({PER_ROOT} each) in this one process"
    )
    with (
        tempfile.TemporaryDirectory(prefix="civicloud-bench-") as scratch,
        postgres_url(args.postgres_url) as url,
    ):
        if url is None:
            print("note: PostgreSQL server binaries not found (initdb, pg_ctl): nothing to run")
            print(f"audit_concurrency ratio=nan goal={GOAL}")
            return
        services, cities = build_world(url, Path(scratch))
        try:
            samples = measure(services, cities, plan)
            audited = plan["writes"] * clients * plan["rounds"] + plan["warmup"] * clients
            check(services, audited)
        finally:
            services.db.dispose()
    ratios = [
        with_audit.rate / without.rate
        for with_audit, without in zip(samples["audited"], samples["no audit"], strict=True)
    ]
    audited_rate = statistics.median(s.rate for s in samples["audited"])
    bare_rate = statistics.median(s.rate for s in samples["no audit"])
    print()
    print(f"audited:    {audited_rate:8.0f} writes/s (median over {plan['rounds']} rounds)")
    print(f"no audit:   {bare_rate:8.0f} writes/s")
    print(
        f"ratio:      {statistics.median(ratios):.2f} (median of the rounds' ratios; goal {GOAL})"
    )
    print(f"audit_concurrency ratio={statistics.median(ratios):.2f} goal={GOAL}")


if __name__ == "__main__":
    main()
