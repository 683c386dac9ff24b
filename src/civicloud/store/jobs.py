"""Store's background jobs, run by the core's job runner, one item per unit of work:

- ``store.clean_uploads``: abort multipart uploads untouched for ``stale_upload_hours``;
- ``store.collect_garbage``: delete blobs no version or part refers to any more, a grace period
  after they were dropped (reads already streaming them finish first);
- ``store.sample_usage``: record each tenant's usage once an hour, for the usage chart.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from civicloud.core.jobs import JobEnv, Work
from civicloud.store import multipart, objects
from civicloud.store.context import StoreContext
from civicloud.store.models import Bucket, Garbage, StoreTenant, Upload, UsageSample
from civicloud.store.service import BucketRef

__all__ = ["clean_uploads", "collect_garbage", "sample_usage"]

#: How long a dropped blob is kept before it is deleted.
GARBAGE_GRACE = timedelta(minutes=10)
ITEMS_PER_RUN = 500


def _store(env: JobEnv) -> StoreContext:
    if not isinstance(env.context, StoreContext):
        raise TypeError(f"Store's jobs need a StoreContext, not {type(env.context).__name__}")
    return env.context


def _stale(session: Session, env: JobEnv) -> Sequence[str]:
    hours = _store(env).settings.stale_upload_hours
    return multipart.stale_uploads(session, before=env.now - timedelta(hours=hours), limit=100)


def _abort(session: Session, env: JobEnv, upload_id: str) -> str | None:
    upload = session.get(Upload, upload_id)
    if upload is None:
        return None
    bucket = session.get(Bucket, upload.bucket_id)
    if bucket is None:
        return None
    ref = BucketRef(
        bucket.id,
        bucket.name,
        bucket.tenant_id,
        "",
        bucket.region_code,
        bucket.versioning,
        bucket.acl,
    )
    multipart.abort_upload(session=session, bucket=ref, upload=upload)
    return "aborted"


def _garbage(session: Session, env: JobEnv) -> Sequence[str]:
    return list(
        session.scalars(
            select(Garbage.blob_id)
            .where(Garbage.queued_at < env.now - GARBAGE_GRACE)
            .limit(ITEMS_PER_RUN)
        )
    )


def _collect(session: Session, env: JobEnv, blob_id: str) -> str | None:
    session.execute(delete(Garbage).where(Garbage.blob_id == blob_id))
    if objects.still_referenced(session, blob_id):
        return "kept"  # queued by mistake: never delete bytes something names
    _store(env).backend.delete(blob_id)
    return "deleted"


def _tenants_to_sample(session: Session, env: JobEnv) -> Sequence[uuid.UUID]:
    hour = env.now.replace(minute=0, second=0, microsecond=0)
    sampled = select(UsageSample.tenant_id).where(UsageSample.at == hour)
    return list(
        session.scalars(
            select(StoreTenant.tenant_id).where(StoreTenant.tenant_id.not_in(sampled)).limit(1000)
        )
    )


def _sample(session: Session, env: JobEnv, tenant_id: uuid.UUID) -> str | None:
    account = session.get(StoreTenant, tenant_id)
    if account is None:
        return None
    hour = env.now.replace(minute=0, second=0, microsecond=0)
    if session.get(UsageSample, (tenant_id, hour)) is not None:
        return None
    session.add(
        UsageSample(
            tenant_id=tenant_id, at=hour, bytes=account.used_bytes, objects=account.used_objects
        )
    )
    return "sampled"


clean_uploads = Work(_stale, _abort)
collect_garbage = Work(_garbage, _collect)
sample_usage = Work(_tenants_to_sample, _sample)
