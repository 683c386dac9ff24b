"""Store's console lists on the core's list component: buckets and the access log."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from sqlalchemy import Select

from civicloud.core.actor import Actor
from civicloud.core.i18n import N_
from civicloud.core.tenants.models import Tenant
from civicloud.store import console
from civicloud.store.models import AccessRecord, Bucket
from civicloud.store.web.views import LABELS, PREFIX
from civicloud.web.lists import Column, DayRange, Filter, ListSpec

NOT_ALLOWED = {
    "buckets": N_(
        "You cannot see buckets: none of your roles includes seeing buckets "
        "(store.bucket.read). Ask your administrator if you need it."
    ),
    "log": N_(
        "You cannot read the access log: none of your roles includes reading it "
        "(store.log.read). Ask your administrator if you need it."
    ),
}


def _bucket_href(row: Any) -> str:
    return f"{PREFIX}/buckets/{quote(str(row['name']), safe='')}"


def buckets_spec(actor: Actor, language: str) -> ListSpec:
    """The buckets the reader may see, with their size, objects and settings."""
    tenant_name = Tenant.name_zh if language == "zh" else Tenant.name_en
    return ListSpec(
        name="buckets",
        title=N_("Buckets"),
        query=console.buckets_query(actor),
        key=Bucket.id,
        columns=(
            Column("name", N_("Name"), Bucket.name, "code", sortable=True, href=_bucket_href),
            Column("tenant", N_("Tenant"), tenant_name),
            Column("region", N_("Region"), Bucket.region_code, "code"),
            Column("size", N_("Size"), Bucket.used_bytes, "bytes", sortable=True),
            Column("objects", N_("Objects"), Bucket.used_objects, "count", sortable=True),
            Column(
                "versioning",
                N_("Versioning"),
                Bucket.versioning,
                "label",
                labels=LABELS["versioning"],
            ),
            Column("acl", N_("Access"), Bucket.acl, "label", labels=LABELS["acl"]),
            Column("quota", N_("Quota"), Bucket.quota_bytes, "bytes"),
            Column("created", N_("Created"), Bucket.created_at, "datetime", sortable=True),
        ),
        default_sort="name",
        default_descending=False,
        filters=(
            Filter(
                "q",
                N_("Name starts with"),
                "text",
                lambda query, text: query.where(Bucket.name.startswith(text, autoescape=True)),
                max_length=63,
            ),
        ),
        empty=N_("No buckets yet."),
    )


_OPERATIONS = (
    "GetObject",
    "HeadObject",
    "PutObject",
    "CopyObject",
    "DeleteObject",
    "DeleteObjects",
    "ListObjects",
    "ListObjectsV2",
    "ListObjectVersions",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "CreateBucket",
    "DeleteBucket",
    "ListBuckets",
)


def _status(query: Select[Any], value: str) -> Select[Any]:
    if value == "ok":
        return query.where(AccessRecord.status < 400)
    if value == "client":
        return query.where(AccessRecord.status >= 400, AccessRecord.status < 500)
    return query.where(AccessRecord.status >= 500)


def _days(query: Select[Any], days: DayRange) -> Select[Any]:
    if days.start is not None:
        query = query.where(AccessRecord.at >= days.start)
    if days.end is not None:
        query = query.where(AccessRecord.at < days.end)
    return query


def log_spec(actor: Actor) -> ListSpec:
    """The access log of the tenants whose log the reader may read, newest first."""
    return ListSpec(
        name="store-access-log",
        title=N_("Access log"),
        query=console.access_log_query(actor),
        key=AccessRecord.id,
        columns=(
            Column("at", N_("Time"), AccessRecord.at, "datetime", sortable=True),
            Column("bucket", N_("Bucket"), AccessRecord.bucket, "code"),
            Column("key", N_("Key"), AccessRecord.key, "code"),
            Column("operation", N_("Operation"), AccessRecord.operation, "code"),
            Column("status", N_("Status"), AccessRecord.status, "count"),
            Column("error", N_("Error"), AccessRecord.error_code, "code"),
            Column("bytes_in", N_("Bytes in"), AccessRecord.bytes_in, "bytes"),
            Column("bytes_out", N_("Bytes out"), AccessRecord.bytes_out, "bytes"),
            Column("principal", N_("Who"), AccessRecord.principal),
            Column("access_key", N_("Access key"), AccessRecord.access_key_id, "code"),
            Column("remote", N_("From"), AccessRecord.remote, "code", show=False),
            Column("request_id", N_("Request"), AccessRecord.request_id, "code", show=False),
            Column("millis", N_("Milliseconds"), AccessRecord.millis, "count", show=False),
        ),
        default_sort="at",
        filters=(
            Filter(
                "bucket",
                N_("Bucket"),
                "text",
                lambda query, text: query.where(AccessRecord.bucket == text),
                max_length=63,
            ),
            Filter(
                "operation",
                N_("Operation"),
                "choice",
                lambda query, value: query.where(AccessRecord.operation == value),
                choices=[(name, name) for name in _OPERATIONS],
                translate=False,
            ),
            Filter(
                "status",
                N_("Status"),
                "choice",
                _status,
                choices=(
                    ("ok", N_("Succeeded")),
                    ("client", N_("Refused (4xx)")),
                    ("server", N_("Failed (5xx)")),
                ),
            ),
            Filter("days", N_("Days"), "date_range", _days),
        ),
        empty=N_("No requests match."),
    )
