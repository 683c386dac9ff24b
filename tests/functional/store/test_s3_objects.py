"""Objects through boto3: put, get (ranges, conditions, overrides, part numbers), head,
attributes, copy, delete, metadata, ACLs and versions, on both databases."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.factories.store import S3Member
from tests.functional.store.conftest import Port, bucket_name, client


def md5(data: bytes) -> Any:
    return hashlib.md5(data, usedforsecurity=False)


def code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def status(error: ClientError) -> int:
    return int(error.response["ResponseMetadata"]["HTTPStatusCode"])


@pytest.fixture
def s3(s3_tls: Port, member: S3Member) -> Any:
    return client(s3_tls, member)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    return name


def test_put_then_get_returns_the_bytes_headers_and_metadata(s3: Any, bucket: str) -> None:
    body = bytes(range(256)) * 4000
    put = s3.put_object(
        Bucket=bucket,
        Key="docs/报告 2026.pdf",
        Body=body,
        ContentType="application/pdf",
        ContentDisposition='attachment; filename="r.pdf"',
        CacheControl="max-age=60",
        ContentLanguage="zh",
        Metadata={"owner": "dalian", "note": "first"},
    )
    assert put["ETag"] == f'"{md5(body).hexdigest()}"'
    assert put["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket=bucket, Key="docs/报告 2026.pdf")
    assert got["Body"].read() == body
    assert got["ContentType"] == "application/pdf"
    assert got["ContentDisposition"] == 'attachment; filename="r.pdf"'
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentLanguage"] == "zh"
    assert got["Metadata"] == {"owner": "dalian", "note": "first"}
    assert got["ContentLength"] == len(body)
    head = s3.head_object(Bucket=bucket, Key="docs/报告 2026.pdf")
    assert head["ETag"] == put["ETag"]
    assert head["ContentLength"] == len(body)


def test_an_empty_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'


def test_ranges(s3: Any, bucket: str) -> None:
    body = bytes(i % 251 for i in range(300_000))
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    for asked, expected in [
        ("bytes=0-0", body[:1]),
        ("bytes=100-199", body[100:200]),
        ("bytes=65530-65545", body[65530:65546]),
        ("bytes=-10", body[-10:]),
        ("bytes=299990-", body[299990:]),
        ("bytes=299990-999999", body[299990:]),
    ]:
        got = s3.get_object(Bucket=bucket, Key="r", Range=asked)
        assert got["Body"].read() == expected, asked
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"].endswith("/300000")
    with pytest.raises(ClientError) as refused:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=300000-")
    assert code(refused.value) == "InvalidRange"
    assert status(refused.value) == 416


def test_conditional_reads(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"abc")
    etag = put["ETag"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"abc"
    with pytest.raises(ClientError) as failed:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert status(failed.value) == 412
    with pytest.raises(ClientError) as unmodified:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert status(unmodified.value) == 304
    later = datetime.now(UTC) + timedelta(hours=1)
    earlier = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(ClientError) as not_since:
        s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=later)
    assert status(not_since.value) == 304
    assert s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=earlier)["Body"].read() == b"abc"
    with pytest.raises(ClientError) as changed:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=earlier)
    assert status(changed.value) == 412


def test_response_overrides(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket,
        Key="o",
        ResponseContentType="application/json",
        ResponseContentDisposition="attachment",
        ResponseCacheControl="no-cache",
    )
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "attachment"
    assert got["CacheControl"] == "no-cache"


def test_conditional_writes(s3: Any, bucket: str) -> None:
    first = s3.put_object(Bucket=bucket, Key="lock", Body=b"one", IfNoneMatch="*")
    with pytest.raises(ClientError) as taken:
        s3.put_object(Bucket=bucket, Key="lock", Body=b"two", IfNoneMatch="*")
    assert status(taken.value) == 412
    assert code(taken.value) == "PreconditionFailed"
    with pytest.raises(ClientError) as stale:
        s3.put_object(Bucket=bucket, Key="lock", Body=b"two", IfMatch='"ffff"')
    assert status(stale.value) == 412
    second = s3.put_object(Bucket=bucket, Key="lock", Body=b"two", IfMatch=first["ETag"])
    assert s3.get_object(Bucket=bucket, Key="lock")["Body"].read() == b"two"
    with pytest.raises(ClientError) as wrong:
        s3.delete_object(Bucket=bucket, Key="lock", IfMatch=first["ETag"])
    assert status(wrong.value) == 412
    s3.delete_object(Bucket=bucket, Key="lock", IfMatch=second["ETag"])
    with pytest.raises(ClientError) as gone:
        s3.head_object(Bucket=bucket, Key="lock")
    assert status(gone.value) == 404
    with pytest.raises(ClientError) as absent:
        s3.put_object(Bucket=bucket, Key="nothing", Body=b"x", IfMatch='"abc"')
    assert status(absent.value) == 404


def test_copy_with_metadata_directives_and_conditions(s3: Any, bucket: str) -> None:
    body = b"copy me" * 50_000
    put = s3.put_object(Bucket=bucket, Key="src", Body=body, Metadata={"a": "1"})
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    copied = s3.get_object(Bucket=bucket, Key="dst")
    assert copied["Body"].read() == body
    assert copied["Metadata"] == {"a": "1"}
    s3.copy_object(
        Bucket=bucket,
        Key="dst2",
        CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        Metadata={"b": "2"},
        ContentType="text/plain",
    )
    replaced = s3.head_object(Bucket=bucket, Key="dst2")
    assert replaced["Metadata"] == {"b": "2"}
    assert replaced["ContentType"] == "text/plain"
    with pytest.raises(ClientError) as failed:
        s3.copy_object(
            Bucket=bucket,
            Key="dst3",
            CopySource={"Bucket": bucket, "Key": "src"},
            CopySourceIfMatch='"nope"',
        )
    assert status(failed.value) == 412
    s3.copy_object(
        Bucket=bucket,
        Key="dst3",
        CopySource={"Bucket": bucket, "Key": "src"},
        CopySourceIfMatch=put["ETag"],
    )
    with pytest.raises(ClientError) as itself:
        s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"})
    assert code(itself.value) == "InvalidRequest"


def test_delete_objects_in_bulk(s3: Any, bucket: str) -> None:
    for i in range(20):
        s3.put_object(Bucket=bucket, Key=f"k{i:02d}", Body=b"x")
    answer = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": f"k{i:02d}"} for i in range(15)] + [{"Key": "missing"}]},
    )
    assert len(answer["Deleted"]) == 16
    listed = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == [f"k{i:02d}" for i in range(15, 20)]


def test_versions_and_delete_markers(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    v1 = s3.put_object(Bucket=bucket, Key="v", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="v", Body=b"two")["VersionId"]
    assert v1 != v2
    assert s3.get_object(Bucket=bucket, Key="v", VersionId=v1)["Body"].read() == b"one"
    deleted = s3.delete_object(Bucket=bucket, Key="v")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    with pytest.raises(ClientError) as hidden:
        s3.get_object(Bucket=bucket, Key="v")
    assert status(hidden.value) == 404
    assert hidden.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    listed = s3.list_object_versions(Bucket=bucket)
    assert [v["VersionId"] for v in listed["Versions"]] == [v2, v1]
    assert [m["VersionId"] for m in listed["DeleteMarkers"]] == [marker]
    assert listed["DeleteMarkers"][0]["IsLatest"] is True
    s3.delete_object(Bucket=bucket, Key="v", VersionId=marker)
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"two"
    s3.delete_object(Bucket=bucket, Key="v", VersionId=v2)
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"one"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    null_put = s3.put_object(Bucket=bucket, Key="v", Body=b"null one")
    assert null_put.get("VersionId") in (None, "null")
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert sorted(v["VersionId"] for v in versions) == sorted(["null", v1])


def test_unversioned_buckets_list_null_versions(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    s3.put_object(Bucket=bucket, Key="a", Body=b"2")
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in versions] == [("a", "null", True)]


def test_object_attributes_and_checksums(s3: Any, bucket: str) -> None:
    body = b"attributes" * 1000
    s3.put_object(Bucket=bucket, Key="a", Body=body, ChecksumAlgorithm="SHA256")
    got = s3.get_object(Bucket=bucket, Key="a", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"]
    attributes = s3.get_object_attributes(
        Bucket=bucket, Key="a", ObjectAttributes=["ETag", "Checksum", "ObjectSize", "StorageClass"]
    )
    assert attributes["ObjectSize"] == len(body)
    assert attributes["ETag"] == md5(body).hexdigest()
    assert attributes["Checksum"]["ChecksumSHA256"] == got["ChecksumSHA256"]


def test_canned_acls_and_anonymous_reads(s3_tls: Port, s3: Any, bucket: str) -> None:
    anonymous = client(s3_tls, None)
    s3.put_object(Bucket=bucket, Key="public", Body=b"open", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="private", Body=b"closed")
    assert anonymous.get_object(Bucket=bucket, Key="public")["Body"].read() == b"open"
    with pytest.raises(ClientError) as refused:
        anonymous.get_object(Bucket=bucket, Key="private")
    assert code(refused.value) == "AccessDenied"
    with pytest.raises(ClientError) as no_list:
        anonymous.list_objects_v2(Bucket=bucket)
    assert code(no_list.value) == "AccessDenied"
    with pytest.raises(ClientError) as no_write:
        anonymous.put_object(Bucket=bucket, Key="x", Body=b"x")
    assert code(no_write.value) == "AccessDenied"
    grants = s3.get_object_acl(Bucket=bucket, Key="public")["Grants"]
    assert any(g["Permission"] == "READ" for g in grants)
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert [o["Key"] for o in anonymous.list_objects_v2(Bucket=bucket)["Contents"]] == [
        "private",
        "public",
    ]
    assert anonymous.get_object(Bucket=bucket, Key="private")["Body"].read() == b"closed"


def test_part_number_reads_a_part(s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    first = b"a" * (5 * 1024 * 1024)
    second = b"b" * 1000
    e1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=first)["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=2, Body=second)["ETag"]
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]},
    )
    expected = md5(md5(first).digest() + md5(second).digest()).hexdigest()
    assert done["ETag"] == f'"{expected}-2"'
    part = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert part["Body"].read() == second
    assert part["PartsCount"] == 2
    whole = s3.get_object(Bucket=bucket, Key="mp")["Body"].read()
    assert whole == first + second
    assert (
        s3.get_object(Bucket=bucket, Key="mp", Range="bytes=5242870-5242889")["Body"].read()
        == first[-10:] + second[:10]
    )


def test_last_modified_is_now(s3: Any, bucket: str) -> None:
    before = time.time()
    s3.put_object(Bucket=bucket, Key="t", Body=b"x")
    head = s3.head_object(Bucket=bucket, Key="t")
    assert abs(head["LastModified"].timestamp() - before) < 5
