"""Multipart uploads through boto3: checksums of both kinds, listing parts and uploads, parts
copied from other objects, a part uploaded again, aborts."""

from __future__ import annotations

import base64
import zlib
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.factories.store import S3Member
from tests.functional.store.conftest import Port, bucket_name, client

MIB = 1024 * 1024


@pytest.fixture
def s3(s3_tls: Port, member: S3Member) -> Any:
    return client(s3_tls, member)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    return name


def parts_of(
    s3: Any, bucket: str, key: str, upload: str, bodies: list[bytes], **extra: Any
) -> list[dict[str, Any]]:
    done = []
    for number, body in enumerate(bodies, start=1):
        answer = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=body, **extra
        )
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        for name in ("ChecksumCRC32", "ChecksumSHA256", "ChecksumCRC32C"):
            if name in answer:
                part[name] = answer[name]
        done.append(part)
    return done


def test_composite_checksums(s3: Any, bucket: str) -> None:
    bodies = [b"a" * (5 * MIB), b"b" * 123]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="c", ChecksumAlgorithm="SHA256")[
        "UploadId"
    ]
    parts = parts_of(s3, bucket, "c", upload, bodies, ChecksumAlgorithm="SHA256")
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="c", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    assert done["ChecksumSHA256"].endswith("-2")
    got = s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == done["ChecksumSHA256"]
    assert got["ChecksumType"] == "COMPOSITE"
    attributes = s3.get_object_attributes(
        Bucket=bucket, Key="c", ObjectAttributes=["ObjectParts", "Checksum"]
    )
    assert attributes["ObjectParts"]["TotalPartsCount"] == 2
    assert [p["Size"] for p in attributes["ObjectParts"]["Parts"]] == [5 * MIB, 123]


def test_full_object_crc32(s3: Any, bucket: str) -> None:
    bodies = [b"x" * (5 * MIB), b"y" * (5 * MIB), b"z" * 10]
    upload = s3.create_multipart_upload(
        Bucket=bucket, Key="f", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )["UploadId"]
    parts = parts_of(s3, bucket, "f", upload, bodies, ChecksumAlgorithm="CRC32")
    whole = b"".join(bodies)
    expected = base64.b64encode(zlib.crc32(whole).to_bytes(4, "big")).decode()
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="f", UploadId=upload, MultipartUpload={"Parts": parts},
        ChecksumCRC32=expected, ChecksumType="FULL_OBJECT",
    )  # fmt: skip
    assert done["ChecksumCRC32"] == expected
    got = s3.get_object(Bucket=bucket, Key="f", ChecksumMode="ENABLED")
    assert got["Body"].read() == whole
    assert got["ChecksumCRC32"] == expected
    assert got["ChecksumType"] == "FULL_OBJECT"


def test_list_parts_and_uploads_and_a_part_sent_again(s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="p")["UploadId"]
    other = s3.create_multipart_upload(Bucket=bucket, Key="q")["UploadId"]
    for number in (1, 2, 3):
        s3.upload_part(Bucket=bucket, Key="p", UploadId=upload, PartNumber=number, Body=b"1" * 100)
    again = s3.upload_part(Bucket=bucket, Key="p", UploadId=upload, PartNumber=2, Body=b"2" * 50)
    listed = s3.list_parts(Bucket=bucket, Key="p", UploadId=upload, MaxParts=2)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2]
    assert listed["Parts"][1]["ETag"] == again["ETag"]
    assert listed["Parts"][1]["Size"] == 50
    assert listed["IsTruncated"] is True
    rest = s3.list_parts(
        Bucket=bucket, Key="p", UploadId=upload, PartNumberMarker=listed["NextPartNumberMarker"]
    )
    assert [p["PartNumber"] for p in rest["Parts"]] == [3]
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert sorted((u["Key"], u["UploadId"]) for u in uploads) == [("p", upload), ("q", other)]
    s3.abort_multipart_upload(Bucket=bucket, Key="p", UploadId=upload)
    with pytest.raises(ClientError) as gone:
        s3.list_parts(Bucket=bucket, Key="p", UploadId=upload)
    assert gone.value.response["Error"]["Code"] == "NoSuchUpload"


def test_upload_part_copy(s3: Any, bucket: str) -> None:
    source = bytes(range(256)) * (24 * 1024)  # 6 MiB
    s3.put_object(Bucket=bucket, Key="src", Body=source)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="joined")["UploadId"]
    first = s3.upload_part_copy(
        Bucket=bucket, Key="joined", UploadId=upload, PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=f"bytes=0-{5 * MIB - 1}",
    )  # fmt: skip
    second = s3.upload_part_copy(
        Bucket=bucket, Key="joined", UploadId=upload, PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "src"},
    )  # fmt: skip
    s3.complete_multipart_upload(
        Bucket=bucket, Key="joined", UploadId=upload,
        MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
            {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]},
        ]},
    )  # fmt: skip
    assert s3.get_object(Bucket=bucket, Key="joined")["Body"].read() == source[: 5 * MIB] + source
    with pytest.raises(ClientError) as beyond:
        s3.upload_part_copy(
            Bucket=bucket, Key="x", UploadId=s3.create_multipart_upload(Bucket=bucket, Key="x")["UploadId"],
            PartNumber=1, CopySource={"Bucket": bucket, "Key": "src"},
            CopySourceRange=f"bytes=0-{len(source)}",
        )  # fmt: skip
    assert beyond.value.response["Error"]["Code"] == "InvalidArgument"


def test_the_transfer_manager_round_trips_a_multipart_file(
    s3: Any, bucket: str, tmp_path: Any
) -> None:
    from boto3.s3.transfer import TransferConfig

    data = bytes(range(251)) * (12 * MIB // 251)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    s3.upload_file(str(path), bucket, "big.bin", Config=config)
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-3"')
    back = tmp_path / "back.bin"
    s3.download_file(bucket, "big.bin", str(back), Config=config)
    assert back.read_bytes() == data
