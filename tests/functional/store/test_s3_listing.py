"""Listings through boto3: v1 and v2, prefixes, delimiters, pages, url encoding, versions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, unquote

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import insert
from tests.factories.store import S3Member
from tests.functional.store.conftest import Port, bucket_name, client

from civicloud.core.db import utcnow
from civicloud.store.models import ObjectVersion
from civicloud.store.service import bucket_ref, charge

#: A few keys written through the S3 port, and 3,000 more whose rows are made directly (the
#: listing reads rows only; writing 3,000 objects one by one would be most of the test).
WRITTEN = sorted(
    [f"docs/{name}" for name in ("a.txt", "b.txt", "deep/c.txt", "deep/d/e.txt")]
    + ["readme", "z/1", "z/2", "ünïcode/ключ", "space key", "plus+key", "tab\tkey"]
)
MADE = [f"photos/{year}/{i:04d}.jpg" for year in (2025, 2026) for i in range(1500)]
KEYS = sorted(WRITTEN + MADE)
EMPTY_ETAG = "d41d8cd98f00b204e9800998ecf8427e"


@pytest.fixture(scope="module")
def filled(s3_http: Port, member_factory: Any, request: pytest.FixtureRequest) -> tuple[Any, str]:
    del request
    from tests.factories.core import make_tenant

    with s3_http.services.db.unit_of_work() as session:
        root = make_tenant(session)
        tenant = make_tenant(session, parent=root)
    member: S3Member = member_factory(tenant)
    s3 = client(s3_http, member, max_pool_connections=16)
    name = bucket_name("list")
    s3.create_bucket(Bucket=name)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=name, Key=k, Body=k.encode()), WRITTEN))
    with s3_http.services.db.unit_of_work() as session:
        ref = bucket_ref(session, name)
        session.execute(
            insert(ObjectVersion),
            [
                {"bucket_id": ref.id, "key": key, "version_id": "null", "etag": EMPTY_ETAG,
                 "headers": {}, "meta": {}, "created_at": utcnow()}
                for key in MADE
            ],
        )  # fmt: skip
        charge(session, bucket_id=ref.id, tenant_id=ref.tenant_id, size=0, objects=len(MADE))
    return s3, name


@pytest.fixture(scope="module")
def member_factory(core_services: Any, store_context: Any) -> Any:
    from tests.factories.store import make_s3_member

    def make(tenant: Any, role: str = "store_admin", **scope: Any) -> S3Member:
        with core_services.db.unit_of_work() as session:
            return make_s3_member(
                session, core_services.passwords, store_context, tenant=tenant, role=role, **scope
            )

    return make


def test_v2_pages_through_every_key_in_order(filled: tuple[Any, str]) -> None:
    s3, name = filled
    seen: list[str] = []
    pages = 0
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=name, PaginationConfig={"PageSize": 1000}
    ):
        pages += 1
        seen.extend(o["Key"] for o in page.get("Contents", []))
    assert seen == sorted(KEYS, key=lambda k: k.encode())
    assert pages == 4


def test_v1_pages_with_markers(filled: tuple[Any, str]) -> None:
    s3, name = filled
    seen: list[str] = []
    for page in s3.get_paginator("list_objects").paginate(
        Bucket=name, PaginationConfig={"PageSize": 300}
    ):
        seen.extend(o["Key"] for o in page.get("Contents", []))
    assert seen == sorted(KEYS, key=lambda k: k.encode())


def test_pages_of_a_prefix_by_delimiter(filled: tuple[Any, str]) -> None:
    s3, name = filled
    years = s3.list_objects_v2(Bucket=name, Prefix="photos/", Delimiter="/")
    assert [p["Prefix"] for p in years["CommonPrefixes"]] == ["photos/2025/", "photos/2026/"]
    seen: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=name, Prefix="photos/2025/", Delimiter="/", PaginationConfig={"PageSize": 400}
    ):
        seen.extend(o["Key"] for o in page.get("Contents", []))
    assert seen == [f"photos/2025/{i:04d}.jpg" for i in range(1500)]


def test_delimiters_roll_up_common_prefixes(filled: tuple[Any, str]) -> None:
    s3, name = filled
    top = s3.list_objects_v2(Bucket=name, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["docs/", "photos/", "z/", "ünïcode/"]
    assert [o["Key"] for o in top["Contents"]] == ["plus+key", "readme", "space key", "tab\tkey"]
    assert top["KeyCount"] == 8
    docs = s3.list_objects_v2(Bucket=name, Prefix="docs/", Delimiter="/")
    assert [o["Key"] for o in docs["Contents"]] == ["docs/a.txt", "docs/b.txt"]
    assert [p["Prefix"] for p in docs["CommonPrefixes"]] == ["docs/deep/"]


def test_a_page_of_prefixes_continues_after_the_prefix(filled: tuple[Any, str]) -> None:
    s3, name = filled
    first = s3.list_objects_v2(Bucket=name, Delimiter="/", MaxKeys=2)
    assert first["IsTruncated"] is True
    assert [p["Prefix"] for p in first["CommonPrefixes"]] == ["docs/", "photos/"]
    second = s3.list_objects_v2(
        Bucket=name, Delimiter="/", MaxKeys=2, ContinuationToken=first["NextContinuationToken"]
    )
    assert [o["Key"] for o in second.get("Contents", [])] == ["plus+key", "readme"]
    v1 = s3.list_objects(Bucket=name, Delimiter="/", MaxKeys=2)
    assert v1["NextMarker"] == "photos/"
    after = s3.list_objects(Bucket=name, Delimiter="/", MaxKeys=2, Marker=v1["NextMarker"])
    assert [o["Key"] for o in after["Contents"]] == ["plus+key", "readme"]


def test_start_after_and_max_keys_zero(filled: tuple[Any, str]) -> None:
    s3, name = filled
    got = s3.list_objects_v2(Bucket=name, StartAfter="photos/2026/1495.jpg", Prefix="photos/")
    assert [o["Key"] for o in got["Contents"]] == [
        f"photos/2026/{i:04d}.jpg" for i in range(1496, 1500)
    ]
    empty = s3.list_objects_v2(Bucket=name, MaxKeys=0)
    assert empty["KeyCount"] == 0
    assert "Contents" not in empty


def test_url_encoding_and_owner(filled: tuple[Any, str]) -> None:
    s3, name = filled
    got = s3.list_objects_v2(Bucket=name, Prefix="ünïcode/", FetchOwner=True, EncodingType="url")
    # Asked for by the caller, the encoding is left for the caller to undo.
    assert [unquote(o["Key"]) for o in got["Contents"]] == ["ünïcode/ключ"]
    assert got["Contents"][0]["Key"] == quote("ünïcode/ключ", safe="/")
    assert got["Contents"][0]["Owner"]["ID"]
    tabbed = s3.list_objects_v2(Bucket=name, Prefix="tab", EncodingType="url")
    assert [unquote(o["Key"]) for o in tabbed["Contents"]] == ["tab\tkey"]


def test_bad_listing_parameters(filled: tuple[Any, str]) -> None:
    s3, name = filled
    with pytest.raises(ClientError) as token:
        s3.list_objects_v2(Bucket=name, ContinuationToken="not base64 !!")
    assert token.value.response["Error"]["Code"] == "InvalidArgument"
    with pytest.raises(ClientError) as encoding:
        s3.list_objects_v2(Bucket=name, EncodingType="base64")
    assert encoding.value.response["Error"]["Code"] == "InvalidArgument"


def test_versions_page_within_one_key(s3_http: Port, member: S3Member) -> None:
    s3 = client(s3_http, member)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    made = [
        s3.put_object(Bucket=name, Key="k", Body=str(i).encode())["VersionId"] for i in range(7)
    ]
    s3.put_object(Bucket=name, Key="l", Body=b"l")
    seen: list[tuple[str, str]] = []
    for page in s3.get_paginator("list_object_versions").paginate(
        Bucket=name, PaginationConfig={"PageSize": 3}
    ):
        seen.extend((v["Key"], v["VersionId"]) for v in page.get("Versions", []))
    assert seen[:7] == [("k", v) for v in reversed(made)]
    assert seen[7][0] == "l"
    assert len(seen) == 8


def test_a_folder_of_deleted_keys_is_not_listed(s3_http: Port, member: S3Member) -> None:
    s3 = client(s3_http, member)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=name, Key="gone/a", Body=b"a")
    s3.put_object(Bucket=name, Key="kept/b", Body=b"b")
    s3.delete_object(Bucket=name, Key="gone/a")
    listed = s3.list_objects_v2(Bucket=name, Delimiter="/")
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["kept/"]


def test_uploads_of_one_key_page_one_by_one(s3_http: Port, member: S3Member) -> None:
    s3 = client(s3_http, member)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    made = [s3.create_multipart_upload(Bucket=name, Key="k")["UploadId"] for _ in range(3)]
    seen: list[str] = []
    for page in s3.get_paginator("list_multipart_uploads").paginate(
        Bucket=name, PaginationConfig={"PageSize": 1}
    ):
        seen.extend(u["UploadId"] for u in page.get("Uploads", []))
    assert sorted(seen) == sorted(made)
    assert len(seen) == 3


def test_a_long_run_of_deleted_keys_is_read_a_page_at_a_time(
    s3_http: Port, member: S3Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    from civicloud.store import listing

    monkeypatch.setattr(listing, "MAX_HIDDEN", 5)
    s3 = client(s3_http, member)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    for index in range(12):
        s3.put_object(Bucket=name, Key=f"d/{index:02d}", Body=b"x")
        s3.delete_object(Bucket=name, Key=f"d/{index:02d}")
    s3.put_object(Bucket=name, Key="z", Body=b"z")
    first = s3.list_objects_v2(Bucket=name)
    assert first["IsTruncated"] is True
    assert first["KeyCount"] == 0
    seen = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=name)
            for o in p.get("Contents", [])]  # fmt: skip
    assert seen == ["z"]
    seen_v1 = [o["Key"] for p in s3.get_paginator("list_objects").paginate(Bucket=name)
               for o in p.get("Contents", [])]  # fmt: skip
    assert seen_v1 == ["z"]
