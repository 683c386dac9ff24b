"""Killed mid-write: ``civicloud serve`` is SIGKILLed at seeded random moments during PutObject,
CompleteMultipartUpload and DeleteObjects, and after every restart the store is whole.

Whole means: every listed object GETs, with the bytes that were PUT (a SHA-256 kept per key and
the ETag), and HEAD gives the listed size; every key holds its old content, its new content, or
nothing (never a torn mix, never something else); a write the server acknowledged is there; the
usage counters equal the stored sizes; every blob a version or part names exists and decrypts;
no blob is queued as garbage while referenced; and the only unreferenced blobs are leftovers of
the killed requests (at most one per killed write), which the consistency check finds.

Requests are signed with botocore and sent by hand over a socket, so the test decides when each
byte leaves: bodies of a few MiB are paced to be killed mid-way, or sent whole and killed within
milliseconds of the last byte (around the commit).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from sqlalchemy import select
from tests.functional.store.served import Served, served

from civicloud.core.db import utcnow
from civicloud.store import fsck, objects
from civicloud.store.models import Bucket, Garbage, ObjectPart, ObjectVersion, UploadPart
from civicloud.store.objects import Incoming, NewVersion
from civicloud.store.service import bucket_ref, counted_usage

pytestmark = pytest.mark.slow

MIB = 1 << 20
KEYS = [f"doc/{n}.bin" for n in range(4)]


# ---- the world ---------------------------------------------------------------------------------


@pytest.fixture
def crash_database() -> str:
    """The server's database: SQLite in its data directory (``""``). What a kill tests is the
    server's own write path (bytes durable, then the metadata committed, then the answer),
    which is the same code on both databases; a PostgreSQL server is not killed with it, and
    the races on PostgreSQL are tested in test_races.py."""
    return ""


@pytest.fixture
def server(tmp_path: Path, crash_database: str) -> Iterator[Served]:
    """A seeded world served by ``civicloud serve`` (parts of 64 KiB allowed, to keep uploads
    small)."""
    with served(
        tmp_path / "data", crash_database, env={"CIVICLOUD_STORE__MIN_PART_BYTES": "65536"}
    ) as running:
        yield running


# ---- requests sent by hand ---------------------------------------------------------------------


@dataclass
class Sent:
    """One request on its way: when its last byte left, and the answer if one came."""

    body_sent: threading.Event = field(default_factory=threading.Event)
    status: int | None = None
    answer: bytes = b""
    error: BaseException | None = None


def signed(
    server: Served, method: str, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """The request line's target and the headers of ``method path`` signed (SigV4) for the
    seeded member, body hashed."""
    url = f"{server.endpoint}{path}"
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    request.headers["Content-Length"] = str(len(body))
    S3SigV4Auth(
        Credentials(server.member.access_key, server.member.secret), "s3", "us-east-1"
    ).add_auth(request)
    prepared = request.prepare()
    target = prepared.url.removeprefix(server.endpoint)
    return target, {k: str(v) for k, v in prepared.headers.items()}


def send(
    server: Served,
    method: str,
    path: str,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    chunk: int = 64 * 1024,
    pause: float = 0.0,
) -> tuple[Sent, threading.Thread]:
    """Send a signed request in a thread, ``chunk`` bytes every ``pause`` seconds."""
    target, signed_headers = signed(server, method, path, body, headers)
    sent = Sent()

    def run() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.s3_port, timeout=30)
        try:
            connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in signed_headers.items():
                connection.putheader(name, value)
            connection.endheaders()
            view = memoryview(body)
            for start in range(0, len(body), chunk):
                connection.send(view[start : start + chunk])
                if pause:
                    time.sleep(pause)  # pacing: the body trickles in, to be killed mid-way
            sent.body_sent.set()
            response = connection.getresponse()
            sent.answer = response.read()
            sent.status = response.status
        except (OSError, http.client.HTTPException) as error:
            sent.error = error
        finally:
            sent.body_sent.set()
            connection.close()

    thread = threading.Thread(target=run, name="crash-client", daemon=True)
    thread.start()
    return sent, thread


def kill_during(
    server: Served, sent: Sent, thread: threading.Thread, rng: random.Random, span: float
) -> str:
    """Kill the server at a random moment: mid-body (within ``span`` seconds of the start), or
    within 40 ms of the body's last byte (around the commit). Which one it was."""
    if rng.random() < 0.5:
        time.sleep(rng.uniform(0, span))  # the moment of the kill, seeded
        when = "mid-body"
    else:
        sent.body_sent.wait(timeout=30)
        time.sleep(rng.uniform(0, 0.04))  # the moment of the kill, seeded
        when = "after-body"
    server.kill()
    thread.join(timeout=30)
    server.start()
    return when


# ---- what the store must hold ------------------------------------------------------------------


@dataclass(frozen=True)
class Content:
    """An object's content as the test knows it."""

    sha256: str
    etag: str
    size: int


def content_of(data: bytes) -> Content:
    return Content(
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data, usedforsecurity=False).hexdigest(),
        len(data),
    )


def observed(client: Any, bucket: str, sample: random.Random | None = None) -> dict[str, Content]:
    """Every listed object, checked against its own GET and HEAD (with ``sample``: 40 of them
    chosen at random, the others known by their listed ETag and size only, ``sha256`` empty)."""
    found: dict[str, Content] = {}
    listed = [
        item
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    ]
    chosen = set(range(len(listed)))
    if sample is not None:
        chosen = set(sample.sample(range(len(listed)), min(40, len(listed))))
    for index, item in enumerate(listed):
        key, etag, size = item["Key"], item["ETag"].strip('"'), item["Size"]
        if index not in chosen:
            found[key] = Content("", etag, size)
            continue
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] == size, key
        assert head["ETag"].strip('"') == etag, key
        response = client.get_object(Bucket=bucket, Key=key)
        digest, length = hashlib.sha256(), 0
        for piece in response["Body"].iter_chunks(MIB):
            digest.update(piece)
            length += len(piece)
        assert length == size, key
        found[key] = Content(digest.hexdigest(), etag, size)
    return found


def same(known: Content | None, seen: Content | None) -> bool:
    """Whether ``seen`` (maybe known by ETag and size only) is ``known``."""
    if known is None or seen is None:
        return known is seen
    return (seen.etag, seen.size) == (known.etag, known.size) and seen.sha256 in ("", known.sha256)


def referenced_blobs(server: Served) -> set[str]:
    with server.services.db.unit_of_work(write=False) as session:
        blobs = set(
            session.scalars(select(ObjectVersion.blob_id).where(ObjectVersion.blob_id.is_not(None)))
        )
        blobs |= set(session.scalars(select(ObjectPart.blob_id)))
        blobs |= set(session.scalars(select(UploadPart.blob_id)))
    return {b for b in blobs if b}


def check_store(server: Served, killed_writes: int) -> set[str]:
    """The store's own consistency after a restart; the orphan blobs (unreferenced, not
    queued), which may only be leftovers of the ``killed_writes`` killed writes."""
    context = server.context
    # Checked here by hand, and by ``civicloud store fsck`` in ``finish``.
    referenced = referenced_blobs(server)
    with server.services.db.unit_of_work(write=False) as session:
        queued = set(session.scalars(select(Garbage.blob_id)))
        assert not queued & referenced, "a blob queued for deletion is still referenced"
        for bucket in session.scalars(select(Bucket)):
            assert counted_usage(session, bucket.id) == (bucket.used_bytes, bucket.used_objects)
        # every referenced blob is there and authenticates end to end
        for version in session.scalars(
            select(ObjectVersion).where(ObjectVersion.is_delete_marker.is_(False))
        ):
            ref = bucket_ref(session, session.get(Bucket, version.bucket_id).name)  # type: ignore[union-attr]
            stored = objects.snapshot(session, context, ref, version)
            for segment in stored.segments:
                assert context.backend.size(segment.blob_id) is not None, segment.blob_id
            if stored.size:
                length = sum(
                    len(p) for p in objects.read_range(context, stored, 0, stored.size - 1)
                )
                assert length == stored.size
    present = {blob for blob, _size, _at in context.backend.blobs()}
    assert referenced <= present, "a referenced blob is missing"
    orphans = present - referenced - queued
    leftovers = context.backend.temporaries(utcnow() + timedelta(seconds=1))
    assert len(orphans) + len(leftovers) <= killed_writes, (orphans, leftovers)
    return orphans


def finish(server: Served, killed_writes: int, bucket: str, expected: dict[str, Content]) -> None:
    """The end of a run: collected garbage removes nothing that is read, and the orphans of
    the killed writes are removed without touching an object."""
    orphans = check_store(server, killed_writes)
    with server.services.db.unit_of_work() as session:
        objects.collect_garbage(session, server.context, older_than=utcnow() + timedelta(seconds=1))
    # fsck (deep: every blob read and authenticated) finds the killed writes' leftovers and
    # nothing else, and removes them
    with server.services.db.unit_of_work() as session:
        report = fsck.check(
            session=session, context=server.context, repair=True, deep=True,
            older_than=timedelta(0),
        )  # fmt: skip
    kinds = {finding.kind for finding in report.findings}
    assert kinds <= {"orphan", "temporary"}, report.summary()
    assert len([f for f in report.findings if f.kind == "orphan"]) == len(orphans)
    assert report.unrepaired == []
    with server.services.db.unit_of_work(write=False) as session:
        again = fsck.check(
            session=session, context=server.context, repair=False, deep=True,
            older_than=timedelta(0),
        )  # fmt: skip
    assert again.findings == [], again.summary()
    assert not check_store(server, killed_writes)
    assert observed(server.client(), bucket) == expected


# ---- PutObject ---------------------------------------------------------------------------------


def test_put_object_killed_anywhere_leaves_old_or_new_content(server: Served) -> None:
    # given a bucket of a few keys, some with content already
    rng = random.Random(20240501)
    client = server.client()
    bucket = f"crash-put-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    state: dict[str, Content | None] = dict.fromkeys(KEYS)
    for key in KEYS[:2]:
        data = rng.randbytes(rng.randrange(1, 256 * 1024))
        client.put_object(Bucket=bucket, Key=key, Body=data)
        state[key] = content_of(data)
    kills, seen = 0, set()
    for _round in range(10):
        # when a PUT of a few MiB is killed mid-body or around its commit
        key = rng.choice(KEYS)
        data = rng.randbytes(rng.randrange(MIB, 4 * MIB))
        new = content_of(data)
        sent, thread = send(
            server,
            "PUT",
            f"/{bucket}/{key}",
            data,
            headers={"Content-Type": "application/octet-stream"},
            pause=0.004,
        )
        seen.add(kill_during(server, sent, thread, rng, span=len(data) / (64 * 1024) * 0.005))
        kills += 1
        # then after the restart the key holds its old content or the new, and the new one if
        # the server said so; every other key is untouched
        now = observed(server.client(), bucket)
        got = now.get(key)
        assert got in (state[key], new), (key, got)
        if sent.status == 200:
            assert got == new
        for other in KEYS:
            if other != key:
                assert now.get(other) == state[other], other
        state[key] = got
        check_store(server, kills)
    assert seen == {"mid-body", "after-body"}
    finish(server, kills, bucket, {k: v for k, v in state.items() if v is not None})


# ---- CompleteMultipartUpload -------------------------------------------------------------------


def test_complete_multipart_upload_killed_leaves_old_object_or_whole_new_one(
    server: Served,
) -> None:
    # given a key with content, and uploads of three parts each waiting to be completed
    rng = random.Random(20240502)
    client = server.client()
    bucket = f"crash-mpu-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    key = "big/object.bin"
    data = rng.randbytes(100_000)
    client.put_object(Bucket=bucket, Key=key, Body=data)
    state: Content | None = content_of(data)
    kills, completed = 0, 0
    for _round in range(8):
        parts = [rng.randbytes(rng.randrange(64 * 1024, 512 * 1024)) for _ in range(3)]
        upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        listed = []
        for number, part in enumerate(parts, start=1):
            answer = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=part
            )
            listed.append((number, answer["ETag"]))
        whole = b"".join(parts)
        new = Content(
            hashlib.sha256(whole).hexdigest(),
            hashlib.md5(
                b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in parts),
                usedforsecurity=False,
            ).hexdigest()
            + "-3",
            len(whole),
        )
        document = (
            "<CompleteMultipartUpload>"
            + "".join(
                f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in listed
            )
            + "</CompleteMultipartUpload>"
        ).encode()
        # when the Complete request is killed within milliseconds of its arrival
        sent, thread = send(
            server,
            "POST",
            f"/{bucket}/{key}?uploadId={upload}",
            document,
            headers={"Content-Type": "application/xml"},
        )
        sent.body_sent.wait(timeout=30)
        time.sleep(rng.uniform(0, 0.03))  # the moment of the kill, seeded
        server.kill()
        thread.join(timeout=30)
        server.start()
        kills += 1
        # then the key holds the old object or the whole new one (acknowledged: the new one)
        client = server.client()
        got = observed(client, bucket).get(key)
        assert got in (state, new), got
        if sent.status == 200:
            assert got == new
        uploads = [
            u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        ]
        if got == new and got != state:
            completed += 1
            assert upload not in uploads, "a completed upload is still listed"
            parts_back = client.get_object(Bucket=bucket, Key=key, PartNumber=2)
            assert parts_back["ContentLength"] == len(parts[1])
        else:
            # an upload not completed is still there, whole, and can be completed again
            assert upload in uploads
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in listed]},
            )
            assert observed(client, bucket).get(key) == new
        state = new
        check_store(server, kills)
    finish(server, kills, bucket, {key: state} if state else {})


# ---- DeleteObjects -----------------------------------------------------------------------------


def seed_objects(server: Served, bucket: str, keys: list[str]) -> dict[str, Content]:
    """Write small objects in-process through the storage engine (fast, same store)."""
    written: dict[str, Content] = {}
    context = server.context
    with server.services.db.unit_of_work() as session:
        ref = bucket_ref(session, bucket)
        data_key = context.active_key(session, ref.tenant_id)
        assert data_key is not None
        for key in keys:
            data = hashlib.sha256(key.encode()).digest() * 4
            view = iter([data])
            blob = objects.write_blob(
                context,
                data_key,
                Incoming(read=lambda n, v=view: next(v, b""), length=len(data)),  # type: ignore[misc]
            )
            objects.commit_version(
                session=session,
                bucket=ref,
                key=key,
                new=NewVersion(
                    size=blob.size,
                    etag=blob.etag,
                    headers={"content-type": "binary/octet-stream"},
                    blob_id=blob.blob_id,
                    data_key_id=blob.data_key_id,
                ),
                owner_id=server.member.user.id,
            )
            written[key] = content_of(data)
    return written


def test_delete_objects_of_a_thousand_keys_killed_midway(server: Served) -> None:
    # given a bucket of 1,000 objects
    rng = random.Random(20240503)
    client = server.client()
    bucket = f"crash-del-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    keys = [f"logs/{n:04d}" for n in range(1000)]
    state = seed_objects(server, bucket, keys)
    document = (
        "<Delete><Quiet>true</Quiet>"
        + "".join(f"<Object><Key>{k}</Key></Object>" for k in keys)
        + "</Delete>"
    ).encode()
    md5 = base64.b64encode(hashlib.md5(document, usedforsecurity=False).digest()).decode()
    for _round in range(6):
        # when DeleteObjects of all of them is killed at a random moment of its work
        sent, thread = send(
            server, "POST", f"/{bucket}?delete", document, headers={"Content-MD5": md5}
        )
        sent.body_sent.wait(timeout=30)
        time.sleep(rng.uniform(0, 0.6))  # the moment of the kill, seeded
        server.kill()
        thread.join(timeout=30)
        server.start()
        # then every key holds its object, whole, or is gone (all gone if acknowledged)
        now = observed(server.client(), bucket, sample=rng)
        for key, content in now.items():
            assert same(state.get(key), content), key
        if sent.status == 200:
            assert now == {}
        check_store(server, killed_writes=0)
        missing = [k for k in keys if k not in now]
        if missing:
            state = {k: state[k] for k in now} | seed_objects(server, bucket, missing)
    finish(server, 0, bucket, state)
