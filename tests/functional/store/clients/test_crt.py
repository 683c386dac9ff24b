"""boto3 with the AWS Common Runtime installed (``awscrt``: botocore then computes CRC32, CRC32C
and CRC64NVME with it) against the S3 port over TLS, where botocore sends checksums as
``aws-chunked`` trailers: CRC64NVME objects, full-object multipart checksums, checksums
validated on download, and ``upload_file`` of a large file through ``boto3.s3.transfer``.

boto3's own CRT transfer client (``preferred_transfer_client="crt"``) is a process-wide
singleton that resolves AWS's endpoints and trusts only the system's CAs, so it cannot be
pointed at the port; the classic transfer manager runs here, with CRT checksums.
"""

from __future__ import annotations

import base64
import logging
import random
from pathlib import Path
from typing import Any

import pytest
from awscrt import checksums as crt
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from tests.factories.store import S3Member
from tests.functional.store.clients.tools import md5
from tests.functional.store.conftest import Port, bucket_name, client

MiB = 1024 * 1024


def crc64nvme(data: bytes) -> str:
    """The base64 CRC64NVME of ``data`` as S3 writes it."""
    return base64.b64encode(crt.crc64nvme(data).to_bytes(8, "big")).decode()


def crc32(data: bytes) -> str:
    """The base64 CRC32 of ``data`` as S3 writes it."""
    return base64.b64encode(crt.crc32(data).to_bytes(4, "big")).decode()


@pytest.fixture
def s3(s3_tls: Port, member: S3Member) -> Any:
    """boto3 (default checksum settings) as ``member`` against the TLS port."""
    return client(s3_tls, member)


def test_crt_is_what_botocore_uses() -> None:
    from botocore import httpchecksum

    assert httpchecksum.HAS_CRT
    assert "crc64nvme" in httpchecksum._CHECKSUM_CLS


def test_put_and_get_crc64nvme(s3: Any, caplog: pytest.LogCaptureFixture) -> None:
    name = bucket_name("crt")
    s3.create_bucket(Bucket=name)
    data = random.Random(11).randbytes(3 * MiB + 5)
    with caplog.at_level(logging.DEBUG, logger="botocore.endpoint"):
        put = s3.put_object(Bucket=name, Key="k", Body=data, ChecksumAlgorithm="CRC64NVME")
    # Sent as a trailer of an aws-chunked body (TLS).
    assert "x-amz-trailer" in caplog.text.lower()
    assert put["ChecksumCRC64NVME"] == crc64nvme(data)
    assert put["ChecksumType"] == "FULL_OBJECT"
    assert put["ETag"] == f'"{md5(data)}"'

    got = s3.get_object(Bucket=name, Key="k", ChecksumMode="ENABLED")
    assert got["ChecksumCRC64NVME"] == crc64nvme(data)
    assert got["Body"].read() == data  # botocore checks the checksum as it reads
    head = s3.head_object(Bucket=name, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == crc64nvme(data)
    attributes = s3.get_object_attributes(Bucket=name, Key="k", ObjectAttributes=["Checksum"])
    assert attributes["Checksum"] == {
        "ChecksumCRC64NVME": crc64nvme(data),
        "ChecksumType": "FULL_OBJECT",
    }

    # A checksum given by value is checked against the body.
    with pytest.raises(ClientError) as wrong:
        s3.put_object(Bucket=name, Key="bad", Body=data, ChecksumCRC64NVME=crc64nvme(b"other"))
    assert wrong.value.response["Error"]["Code"] == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=name, Key="bad")


@pytest.mark.parametrize(("algorithm", "digest"), [("CRC64NVME", crc64nvme), ("CRC32", crc32)])
def test_multipart_full_object_checksum(s3: Any, algorithm: str, digest: Any) -> None:
    name = bucket_name("crtm")
    s3.create_bucket(Bucket=name)
    rng = random.Random(12)
    parts = [rng.randbytes(5 * MiB), rng.randbytes(5 * MiB), rng.randbytes(123_457)]
    whole = b"".join(parts)
    upload = s3.create_multipart_upload(
        Bucket=name, Key="mp", ChecksumAlgorithm=algorithm, ChecksumType="FULL_OBJECT"
    )
    assert upload["ChecksumAlgorithm"] == algorithm
    assert upload["ChecksumType"] == "FULL_OBJECT"
    done = []
    for number, part in enumerate(parts, 1):
        answer = s3.upload_part(
            Bucket=name,
            Key="mp",
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=part,
            ChecksumAlgorithm=algorithm,
        )
        assert answer[f"Checksum{algorithm}"] == digest(part)
        done.append(
            {
                "PartNumber": number,
                "ETag": answer["ETag"],
                f"Checksum{algorithm}": answer[f"Checksum{algorithm}"],
            }
        )
    listed = s3.list_parts(Bucket=name, Key="mp", UploadId=upload["UploadId"])
    assert listed["ChecksumType"] == "FULL_OBJECT"
    assert [p[f"Checksum{algorithm}"] for p in listed["Parts"]] == [digest(p) for p in parts]

    completed = s3.complete_multipart_upload(
        Bucket=name,
        Key="mp",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": done},
        ChecksumType="FULL_OBJECT",
        MpuObjectSize=len(whole),
        **{f"Checksum{algorithm}": digest(whole)},
    )
    assert completed[f"Checksum{algorithm}"] == digest(whole)
    assert completed["ChecksumType"] == "FULL_OBJECT"
    assert completed["ETag"].endswith('-3"')

    got = s3.get_object(Bucket=name, Key="mp", ChecksumMode="ENABLED")
    assert got[f"Checksum{algorithm}"] == digest(whole)
    assert got["ChecksumType"] == "FULL_OBJECT"
    assert got["Body"].read() == whole
    one = s3.get_object(Bucket=name, Key="mp", PartNumber=2, ChecksumMode="ENABLED")
    assert one["PartsCount"] == 3
    assert one["Body"].read() == parts[1]


def test_multipart_full_object_checksum_refused_when_wrong(s3: Any) -> None:
    name = bucket_name("crtw")
    s3.create_bucket(Bucket=name)
    part = random.Random(13).randbytes(5 * MiB)
    upload = s3.create_multipart_upload(
        Bucket=name, Key="mp", ChecksumAlgorithm="CRC64NVME", ChecksumType="FULL_OBJECT"
    )
    answer = s3.upload_part(
        Bucket=name,
        Key="mp",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=part,
        ChecksumAlgorithm="CRC64NVME",
    )
    parts = [{"PartNumber": 1, "ETag": answer["ETag"], "ChecksumCRC64NVME": crc64nvme(part)}]
    with pytest.raises(ClientError) as wrong:
        s3.complete_multipart_upload(
            Bucket=name,
            Key="mp",
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": parts},
            ChecksumType="FULL_OBJECT",
            ChecksumCRC64NVME=crc64nvme(part + b"x"),
        )
    assert wrong.value.response["Error"]["Code"] in {"BadDigest", "InvalidRequest"}
    # The upload is still there to complete rightly.
    completed = s3.complete_multipart_upload(
        Bucket=name,
        Key="mp",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
        ChecksumType="FULL_OBJECT",
        ChecksumCRC64NVME=crc64nvme(part),
    )
    assert completed["ChecksumCRC64NVME"] == crc64nvme(part)


def test_default_multipart_checksum_is_composite_crc32(s3: Any, tmp_path: Path) -> None:
    """boto3's default (``when_supported``): a CRC32 per part, the object's value a checksum
    of the parts' (``-N``), which botocore does not try to validate on download."""
    name = bucket_name("crtd")
    s3.create_bucket(Bucket=name)
    data = random.Random(14).randbytes(17 * MiB)
    source = tmp_path / "f.bin"
    source.write_bytes(data)
    s3.upload_file(str(source), name, "f.bin")  # default threshold 8 MiB: 3 parts
    head = s3.head_object(Bucket=name, Key="f.bin", ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-3"')
    assert head["ChecksumCRC32"].endswith("-3")
    assert head["ChecksumType"] == "COMPOSITE"
    s3.download_file(name, "f.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data


@pytest.mark.slow
def test_upload_file_large(s3: Any, tmp_path: Path) -> None:
    """A 120 MiB file through ``boto3.s3.transfer``, multipart above 100 MiB (15 parts of
    8 MiB, sent concurrently), and back with concurrent ranged GETs."""
    name = bucket_name("crtl")
    s3.create_bucket(Bucket=name)
    source = tmp_path / "large.bin"
    rng = random.Random(15)
    block = rng.randbytes(MiB)
    with source.open("wb") as out:
        for index in range(120):
            out.write(block[index:] + block[:index])
    config = TransferConfig(multipart_threshold=100 * MiB)
    s3.upload_file(
        str(source), name, "large.bin", Config=config, ExtraArgs={"ChecksumAlgorithm": "CRC64NVME"}
    )
    head = s3.head_object(Bucket=name, Key="large.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == 120 * MiB
    assert head["ETag"].endswith('-15"')
    assert "ChecksumCRC64NVME" in head
    back = tmp_path / "back.bin"
    s3.download_file(name, "large.bin", str(back), Config=config)
    assert back.stat().st_size == 120 * MiB
    assert md5(back.read_bytes()) == md5(source.read_bytes())
