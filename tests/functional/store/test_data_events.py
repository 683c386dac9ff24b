"""Data events and encryption: S3 requests land in Store's append-only access log, apart from
the management audit log; SM4-GCM deployments store and serve objects as AES ones do."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from tests.factories.core import make_tenant
from tests.factories.store import S3Member, make_s3_member
from tests.functional.store.conftest import Port, bucket_name, client

from civicloud.core.audit.models import AuditRecord
from civicloud.core.db import utcnow
from civicloud.core.errors import Conflict
from civicloud.core.services import Services
from civicloud.store.accesslog import AccessEvent, write_events
from civicloud.store.context import StoreContext
from civicloud.store.models import AccessRecord, DataKey
from civicloud.store.s3.listener import RunningS3

EVENT = AccessEvent(
    at=utcnow(), tenant_id=None, bucket="b", key="k", operation="GetObject", status=200,
    error_code="", bytes_in=0, bytes_out=1, principal="anonymous", access_key_id="",
    remote="127.0.0.1", request_id="R", millis=1,
)  # fmt: skip


def test_object_requests_are_data_events_and_bucket_changes_are_audited(
    core_services: Services, store_context: StoreContext, s3_http: Port, member: S3Member
) -> None:
    s3 = client(s3_http, member)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"12345")
    s3.get_object(Bucket=name, Key="k")["Body"].read()
    with contextlib.suppress(ClientError):
        s3.get_object(Bucket=name, Key="missing")
    # The server records an event just after it answers: wait for the fourth.
    deadline = time.monotonic() + 10
    while True:
        store_context.log.flush()
        with core_services.db.unit_of_work(write=False) as session:
            events = list(
                session.scalars(
                    select(AccessRecord)
                    .where(AccessRecord.bucket == name)
                    .order_by(AccessRecord.id)
                )
            )
        if len(events) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    with core_services.db.unit_of_work(write=False) as session:
        audited = list(
            session.scalars(
                select(AuditRecord.action).where(AuditRecord.target == f"bucket:{name}")
            )
        )
    assert [(e.operation, e.status, e.error_code) for e in events] == [
        ("CreateBucket", 200, ""),
        ("PutObject", 200, ""),
        ("GetObject", 200, ""),
        ("GetObject", 404, "NoSuchKey"),
    ]
    assert events[1].bytes_in == 5
    assert events[2].bytes_out == 5
    assert {e.access_key_id for e in events} == {member.access_key}
    assert all(e.tenant_id == member.tenant.id for e in events)
    assert audited == ["store.bucket.create"]  # object reads and writes stay out of it


def test_the_access_log_is_append_only(
    core_services: Services, store_context: StoreContext
) -> None:
    # given a record (a row trigger fires only on a row: an empty log would prove nothing)
    write_events(core_services.db, [EVENT])
    for statement in ("UPDATE store_access_log SET status = 1", "DELETE FROM store_access_log"):
        # Refused by the database (SQLite's refusal reaches us as a Conflict).
        with pytest.raises((DBAPIError, Conflict)), core_services.db.unit_of_work() as session:
            session.execute(text(statement))


def test_an_sm4_installation_stores_and_serves_objects(
    core_services: Services, store_context: StoreContext
) -> None:
    settings = store_context.settings.model_copy(update={"cipher": "SM4-GCM"})
    context = dataclasses.replace(store_context, settings=settings, _keys={}, _active={})
    running = RunningS3(context, host="127.0.0.1", port=0, tls=None)
    try:
        with core_services.db.unit_of_work() as session:
            tenant = make_tenant(session, parent=make_tenant(session))
            member = make_s3_member(session, core_services.passwords, context, tenant=tenant)
        s3: Any = client(Port(running.address, None, context, core_services), member)
        name = bucket_name()
        s3.create_bucket(Bucket=name)
        body = bytes(range(256)) * 1000
        s3.put_object(Bucket=name, Key="national", Body=body)
        assert s3.get_object(Bucket=name, Key="national")["Body"].read() == body
        assert (
            s3.get_object(Bucket=name, Key="national", Range="bytes=70000-70009")["Body"].read()
            == body[70000:70010]
        )
        with core_services.db.unit_of_work(write=False) as session:
            ciphers = set(
                session.scalars(select(DataKey.cipher).where(DataKey.tenant_id == tenant.id))
            )
        assert ciphers == {"SM4-GCM"}
    finally:
        running.server.shutdown()
        running.server.server_close()
