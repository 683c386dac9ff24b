"""Concurrent clients on one key or one quota: conditional writes decide exactly one winner,
compare-and-swap loses no update, quotas hold under racing uploads, and a versioned key raced by
PUTs and DELETEs keeps exactly one latest version.

Each client is a thread with a boto3 client of its own against the served S3 port. The races are
real on PostgreSQL; SQLite serialises writers, and must give the same answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from botocore.exceptions import ClientError
from tests.factories.core import SYSTEM
from tests.factories.store import S3Member
from tests.functional.store.conftest import Port, bucket_name, client

from civicloud.store.context import StoreContext
from civicloud.store.models import Bucket
from civicloud.store.service import bucket_ref, counted_usage, set_quota

T = TypeVar("T")
CLIENTS = 12


def race(count: int, work: Callable[[int, threading.Barrier], T]) -> list[T]:
    """Run ``work(i, barrier)`` in ``count`` threads at once; their results in order."""
    barrier = threading.Barrier(count)
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda i: work(i, barrier), range(count)))


def code_of(error: ClientError) -> tuple[int, str]:
    """An S3 error's HTTP status and code."""
    return error.response["ResponseMetadata"]["HTTPStatusCode"], error.response["Error"]["Code"]


def clients(port: Port, member: S3Member, count: int, **config: Any) -> list[Any]:
    """One boto3 client per racing thread (made before the race: sessions are not shared)."""
    return [client(port, member, max_pool_connections=2, **config) for _ in range(count)]


def test_create_if_absent_has_exactly_one_winner(s3_http: Port, member: S3Member) -> None:
    # given an empty key and a dozen clients
    bucket = bucket_name("race")
    client(s3_http, member).create_bucket(Bucket=bucket)
    racers = clients(s3_http, member, CLIENTS)

    # when they all create it at once, only if absent
    def create(i: int, barrier: threading.Barrier) -> tuple[int, str]:
        barrier.wait()
        try:
            racers[i].put_object(
                Bucket=bucket, Key="only-once", Body=f"writer {i}".encode(), IfNoneMatch="*"
            )
        except ClientError as error:
            return code_of(error)
        return 200, ""

    results = race(CLIENTS, create)
    # then exactly one succeeded, the others were refused as S3 refuses them, and the object is
    # the winner's
    winners = [i for i, (status, _) in enumerate(results) if status == 200]
    assert len(winners) == 1, results
    for status, code in results:
        assert (status, code) in {
            (200, ""),
            (412, "PreconditionFailed"),
            (409, "ConditionalRequestConflict"),
            # a commit that lost its race on every attempt: retryable, and nothing was stored
            (503, "SlowDown"),
        }, results
    body = client(s3_http, member).get_object(Bucket=bucket, Key="only-once")["Body"].read()
    assert body == f"writer {winners[0]}".encode()


def test_compare_and_swap_loses_no_update(s3_http: Port, member: S3Member) -> None:
    # given a counter object and clients that each increment it a few times, by If-Match
    bucket = bucket_name("race")
    client(s3_http, member).create_bucket(Bucket=bucket)
    client(s3_http, member).put_object(Bucket=bucket, Key="counter", Body=b"0")
    count, each = 8, 5
    racers = clients(s3_http, member, count)
    refused: list[tuple[int, str]] = []

    def increment(i: int, barrier: threading.Barrier) -> int:
        s3, done = racers[i], 0
        barrier.wait()
        while done < each and len(refused) < 1000:
            got = s3.get_object(Bucket=bucket, Key="counter")
            value = int(got["Body"].read())
            try:
                s3.put_object(
                    Bucket=bucket, Key="counter", Body=str(value + 1).encode(), IfMatch=got["ETag"]
                )
            except ClientError as error:
                refused.append(code_of(error))
                continue
            done += 1
        return done

    # when they all run at once
    results = race(count, increment)
    # then every refusal was a lost race, and the counter counts every successful write: none
    # was lost
    assert set(refused) <= {
        (412, "PreconditionFailed"),
        (409, "ConditionalRequestConflict"),
        (503, "SlowDown"),
    }
    final = client(s3_http, member).get_object(Bucket=bucket, Key="counter")["Body"].read()
    assert int(final) == sum(results) == count * each


def test_racing_uploads_never_pass_a_bucket_quota(
    s3_http: Port, member: S3Member, store_context: StoreContext
) -> None:
    # given a bucket whose quota holds ten objects of 100 KiB
    bucket = bucket_name("quota")
    client(s3_http, member).create_bucket(Bucket=bucket)
    size, fits = 100 * 1024, 10
    services = s3_http.services
    with services.db.unit_of_work() as session:
        set_quota(
            session=session,
            actor=SYSTEM,
            bucket=bucket,
            max_bytes=size * fits,
            max_objects=None,
            context=store_context,
        )
    count = 24
    racers = clients(s3_http, member, count)

    # when two dozen uploads of that size race
    def upload(i: int, barrier: threading.Barrier) -> tuple[int, str]:
        barrier.wait()
        try:
            racers[i].put_object(Bucket=bucket, Key=f"part-{i:02d}", Body=bytes([i]) * size)
        except ClientError as error:
            return code_of(error)
        return 200, ""

    results = race(count, upload)
    # then exactly the ten that fit were stored, the others refused with QuotaExceeded, and the
    # counters equal what is stored
    assert sorted(set(results)) == [(200, ""), (403, "QuotaExceeded")], results
    assert sum(1 for status, _ in results if status == 200) == fits
    listed = client(s3_http, member).list_objects_v2(Bucket=bucket).get("Contents", [])
    stored = {item["Key"]: item["Size"] for item in listed}
    assert stored == {
        f"part-{i:02d}": size for i, (status, _) in enumerate(results) if status == 200
    }
    with services.db.unit_of_work(write=False) as session:
        ref = bucket_ref(session, bucket)
        row = session.get(Bucket, ref.id)
        assert row is not None
        assert row.used_bytes <= size * fits
        assert (row.used_bytes, row.used_objects) == counted_usage(session, ref.id)
        assert row.used_bytes == sum(stored.values())


def test_racing_puts_and_deletes_keep_one_latest_version(s3_http: Port, member: S3Member) -> None:
    # given a versioned bucket, and clients that PUT and DELETE one key in turns
    bucket = bucket_name("race")
    s3 = client(s3_http, member)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    count, each = 8, 6
    # SlowDown (a commit that lost its race on every attempt) is retried, as S3 clients do
    racers = clients(s3_http, member, count, retries={"max_attempts": 5, "mode": "standard"})

    def churn(i: int, barrier: threading.Barrier) -> list[tuple[str, str, bytes]]:
        made: list[tuple[str, str, bytes]] = []
        barrier.wait()
        for n in range(each):
            if (i + n) % 2:
                body = f"{i}/{n}".encode()
                answer = racers[i].put_object(Bucket=bucket, Key="k", Body=body)
                made.append(("version", answer["VersionId"], body))
            else:
                answer = racers[i].delete_object(Bucket=bucket, Key="k")
                assert answer["DeleteMarker"] is True
                made.append(("marker", answer["VersionId"], b""))
        return made

    # when they all run at once
    made = [item for items in race(count, churn) for item in items]
    # then every write made one version or marker, each listed once, and exactly one of them
    # is the latest, which GET agrees with
    listing = s3.list_object_versions(Bucket=bucket, Prefix="k")
    versions = [(v["VersionId"], v["IsLatest"]) for v in listing.get("Versions", [])]
    markers = [(m["VersionId"], m["IsLatest"]) for m in listing.get("DeleteMarkers", [])]
    assert sorted(v for v, _ in versions) == sorted(v for kind, v, _ in made if kind == "version")
    assert sorted(m for m, _ in markers) == sorted(v for kind, v, _ in made if kind == "marker")
    latest = [v for v, is_latest in versions + markers if is_latest]
    assert len(latest) == 1, listing
    bodies = {v: body for kind, v, body in made if kind == "version"}
    if latest[0] in bodies:
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == bodies[latest[0]]
    else:
        with pytest.raises(ClientError) as refused:
            s3.get_object(Bucket=bucket, Key="k")
        assert code_of(refused.value) == (404, "NoSuchKey")
