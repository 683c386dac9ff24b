"""Store's jobs through the core's runner: stale multipart uploads aborted, garbage deleted
after its grace, usage sampled once an hour."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select, update
from tests.factories.store import S3Member
from tests.functional.store.conftest import Port, bucket_name, client

from civicloud.core.db import utcnow
from civicloud.core.jobs.service import run_job
from civicloud.core.services import Services
from civicloud.store import MODULE
from civicloud.store.context import StoreContext
from civicloud.store.models import Garbage, StoreTenant, Upload, UsageSample


def job(name: str) -> Any:
    return next(j for j in MODULE.jobs if j.name == name)


def test_stale_uploads_are_aborted_and_their_parts_released(
    core_services: Services, s3_http: Port, member: S3Member
) -> None:
    s3 = client(s3_http, member)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    stale = s3.create_multipart_upload(Bucket=name, Key="old")["UploadId"]
    fresh = s3.create_multipart_upload(Bucket=name, Key="new")["UploadId"]
    s3.upload_part(Bucket=name, Key="old", UploadId=stale, PartNumber=1, Body=b"x" * 1000)
    with core_services.db.unit_of_work() as session:
        session.execute(
            update(Upload)
            .where(Upload.id == stale)
            .values(touched_at=utcnow() - timedelta(days=30))
        )
    report = run_job(core_services, job("store.clean_uploads"))
    assert report.failures == 0
    assert report.outcomes.get("aborted", 0) >= 1
    uploads = [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=name).get("Uploads", [])]
    assert uploads == [fresh]
    with pytest.raises(ClientError):
        s3.list_parts(Bucket=name, Key="old", UploadId=stale)
    with core_services.db.unit_of_work(write=False) as session:
        account = session.get(StoreTenant, member.tenant.id)
        assert account is not None
        assert account.used_bytes == 0


def test_garbage_is_deleted_after_its_grace(
    core_services: Services, store_context: StoreContext, s3_http: Port, member: S3Member
) -> None:
    s3 = client(s3_http, member)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"first")
    s3.put_object(Bucket=name, Key="k", Body=b"second")  # the first's blob becomes garbage
    with core_services.db.unit_of_work(write=False) as session:
        queued = list(session.scalars(select(Garbage.blob_id)))
    assert queued
    before = {blob for blob in queued if store_context.backend.size(blob) is not None}
    assert before
    run_job(core_services, job("store.collect_garbage"))
    assert all(store_context.backend.size(blob) is not None for blob in before)  # in its grace
    with core_services.db.unit_of_work() as session:
        session.execute(update(Garbage).values(queued_at=utcnow() - timedelta(hours=1)))
    run_job(core_services, job("store.collect_garbage"))
    assert all(store_context.backend.size(blob) is None for blob in before)
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"second"


def test_usage_is_sampled_once_an_hour(
    core_services: Services, s3_http: Port, member: S3Member
) -> None:
    s3 = client(s3_http, member)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"12345")
    run_job(core_services, job("store.sample_usage"))
    run_job(core_services, job("store.sample_usage"))
    with core_services.db.unit_of_work(write=False) as session:
        samples = list(
            session.scalars(select(UsageSample).where(UsageSample.tenant_id == member.tenant.id))
        )
    assert [(s.bytes, s.objects) for s in samples] == [(5, 1)]
