"""store_listing: a page of a huge bucket costs what a page of a small one costs.

The same listing requests (ListObjectsV2 pages of 1,000 keys from random start points, and the
folders of a random department with a delimiter) are timed through Store's listing service on a bucket of 10,000 keys and on
a bucket of N keys (``--quick``: 500,000; the full run: 10,000,000), in one SQLite database
made for the run (or ``--database-url``). The keys' rows are inserted directly: the listing
reads rows only. The ratio is the small bucket's time per page over the big one's: 1.0 when a
page costs the same whatever the bucket's size; the goal is at least 0.8.

    .venv/bin/python bench/store_listing.py --quick
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import insert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from civicloud.app import build_services, load_settings, prepare_database  # noqa: E402
from civicloud.core import tenants  # noqa: E402
from civicloud.core.actor import Actor  # noqa: E402
from civicloud.core.db import utcnow  # noqa: E402
from civicloud.store import listing  # noqa: E402
from civicloud.store.models import Bucket, ObjectVersion  # noqa: E402

GOAL = 0.8
ETAG = "d41d8cd98f00b204e9800998ecf8427e"


def key_of(index: int) -> str:
    """Departments of 10 folders of 1,000 files, as archives are laid out: the small bucket is
    one department, the big one a thousand, so a listing of one department's folders finds the
    same 10 folders in both."""
    return f"dept-{index // 10_000:04d}/{(index // 1000) % 10:02d}/file-{index:08d}.pdf"


def fill(services: object, bucket_id: uuid.UUID, count: int) -> None:
    now = utcnow()
    db = services.db  # type: ignore[attr-defined]
    step = 50_000
    for start in range(0, count, step):
        rows = [
            {"bucket_id": bucket_id, "key": key_of(i), "version_id": "null", "etag": ETAG,
             "headers": {}, "meta": {}, "created_at": now}
            for i in range(start, min(count, start + step))
        ]  # fmt: skip
        with db.unit_of_work() as session:
            session.execute(insert(ObjectVersion), rows)
        if start and start % 1_000_000 == 0:
            print(f"  {start:,} rows", flush=True)


def time_pages(
    services: object, bucket_id: uuid.UUID, count: int, rounds: int, *, folders: bool
) -> float:
    """Median seconds per page over ``rounds`` pages: 1,000 keys from a random start, or
    (``folders``) a random department's folders."""
    db = services.db  # type: ignore[attr-defined]
    rng = random.Random(7)
    times = []
    for _round in range(rounds):
        start = key_of(rng.randrange(count))
        delimiter = "/" if folders else ""
        prefix = start.split("/")[0] + "/" if folders else ""
        start = prefix if folders else start
        began = time.perf_counter()
        with db.unit_of_work(write=False) as session:
            page = listing.list_objects(
                session, bucket_id, prefix=prefix, delimiter=delimiter, start_after=start,
                max_keys=1000,
            )  # fmt: skip
        times.append(time.perf_counter() - began)
        assert page.entries or page.prefixes or not page.truncated
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--keep", action="store_true", help="keep the data directory (printed)")
    args = parser.parse_args()
    big = 500_000 if args.quick else 10_000_000
    small = 10_000
    rounds = 40 if args.quick else 100
    data = Path(tempfile.mkdtemp(prefix="civicloud-store-listing-"))
    try:
        run(args, data, big, small, rounds)
    finally:
        if args.keep:
            print(f"data kept in {data}", file=sys.stderr)
        else:
            shutil.rmtree(data, ignore_errors=True)


def run(args: argparse.Namespace, data: Path, big: int, small: int, rounds: int) -> None:
    """Fill both buckets in a database under ``data`` and time their pages."""
    services = build_services(load_settings(data_dir=data, database_url=args.database_url))
    prepare_database(services)
    with services.db.unit_of_work() as session:
        tenant = tenants.create_tenant(
            session=session,
            actor=Actor.system("bench"),
            data=tenants.TenantCreate(
                slug=f"bench-{uuid.uuid4().hex[:8]}", name_zh="基准", name_en="Bench",
                kind=tenants.TenantKind.COUNTRY, parent_id=None, region_code="cn-beijing",
            ),
        )  # fmt: skip
        ids = []
        for name in ("small", "big"):
            bucket = Bucket(
                name=f"bench-{name}-{uuid.uuid4().hex[:8]}",
                tenant_id=tenant.id,
                region_code=tenant.region_code,
            )
            session.add(bucket)
            session.flush()  # the ids, for the rows below
            ids.append(bucket.id)
    began = time.perf_counter()
    fill(services, ids[0], small)
    fill(services, ids[1], big)
    print(f"filled {small:,} and {big:,} keys in {time.perf_counter() - began:.0f} s")
    ratios = []
    for folders, what in ((False, "a page of 1,000 keys"), (True, "a department's folders")):
        for _ in range(3):  # warm the caches of both
            time_pages(services, ids[0], small, 5, folders=folders)
            time_pages(services, ids[1], big, 5, folders=folders)
        small_page = time_pages(services, ids[0], small, rounds, folders=folders)
        big_page = time_pages(services, ids[1], big, rounds, folders=folders)
        ratios.append(small_page / big_page)
        print(f"{what}: {small:,}-key bucket {small_page * 1000:.2f} ms, "
              f"{big:,}-key bucket {big_page * 1000:.2f} ms, ratio {ratios[-1]:.2f}")  # fmt: skip
    services.db.dispose()
    print(f"store_listing ratio={min(ratios):.2f} goal={GOAL}")


if __name__ == "__main__":
    main()
