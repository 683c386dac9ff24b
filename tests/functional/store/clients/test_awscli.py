"""The AWS CLI, v1 (PyPI) and v2 (Debian's package), unmodified and with its default settings,
against the S3 port over TLS (where botocore sends checksum trailers): ``aws s3`` high-level
commands and ``aws s3api`` operations."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from tests.factories.store import S3Member
from tests.functional.store.clients.tools import (
    AWS_V1,
    AWS_V2,
    AwsCli,
    make_tree,
    md5,
    random_file,
    read_tree,
)
from tests.functional.store.conftest import Port, bucket_name

from civicloud.core.db import utcnow
from civicloud.store.models import ObjectVersion
from civicloud.store.service import bucket_ref, charge

MiB = 1024 * 1024


@pytest.fixture(
    params=[
        pytest.param(AWS_V1, id="awscli-v1"),
        pytest.param(AWS_V2, id="awscli-v2"),
    ]
)
def aws(request: pytest.FixtureRequest, s3_tls: Port, member: S3Member, tmp_path: Path) -> AwsCli:
    """The AWS CLI (each major version) as ``member`` against the TLS port."""
    binary = str(request.param)
    if not Path(binary).exists():
        pytest.skip(f"{binary} is not installed (Debian package: awscli)")
    return AwsCli(binary, s3_tls, member, tmp_path / "home")


def _json(aws: AwsCli, *args: str) -> Any:
    return json.loads(aws(*args, "--output", "json").stdout or "null")


def test_mb_cp_ls_rm_rb(aws: AwsCli, tmp_path: Path) -> None:
    name = bucket_name("cli")
    assert f"make_bucket: {name}" in aws("s3", "mb", f"s3://{name}").stdout
    small = tmp_path / "small.txt"
    small.write_bytes(b"hello from the CLI\n")
    big = random_file(tmp_path / "big.bin", 20 * MiB)
    aws("s3", "cp", str(small), f"s3://{name}/dir/small.txt")
    # 20 MiB is above the CLI's multipart_threshold (8 MiB): three parts of 8 MiB.
    aws("s3", "cp", str(tmp_path / "big.bin"), f"s3://{name}/dir/sub/big.bin")

    head = _json(aws, "s3api", "head-object", "--bucket", name, "--key", "dir/sub/big.bin")
    assert head["ContentLength"] == 20 * MiB
    assert head["ETag"].endswith('-3"')
    small_head = _json(aws, "s3api", "head-object", "--bucket", name, "--key", "dir/small.txt")
    assert small_head["ETag"] == f'"{md5(small.read_bytes())}"'

    down = tmp_path / "down"
    aws("s3", "cp", f"s3://{name}/dir/small.txt", str(down / "small.txt"))
    aws("s3", "cp", f"s3://{name}/dir/sub/big.bin", str(down / "big.bin"))
    assert (down / "small.txt").read_bytes() == small.read_bytes()
    assert (down / "big.bin").read_bytes() == big

    listing = aws("s3", "ls", f"s3://{name}", "--recursive", "--human-readable").stdout
    lines = [line.split() for line in listing.splitlines()]
    assert [(line[2], line[3], line[4]) for line in lines] == [
        ("19", "Bytes", "dir/small.txt"),
        ("20.0", "MiB", "dir/sub/big.bin"),
    ]
    top = aws("s3", "ls", f"s3://{name}/").stdout
    assert top.split() == ["PRE", "dir/"]
    assert name in aws("s3", "ls").stdout

    removed = aws("s3", "rm", f"s3://{name}", "--recursive").stdout
    assert removed.count("delete: ") == 2
    assert aws("s3", "ls", f"s3://{name}", "--recursive", check=False).stdout == ""
    assert f"remove_bucket: {name}" in aws("s3", "rb", f"s3://{name}").stdout
    gone = aws("s3", "ls", f"s3://{name}", check=False)
    assert gone.returncode != 0
    assert "NoSuchBucket" in gone.stderr


def test_cp_over_http(aws: AwsCli, s3_http: Port, member: S3Member, tmp_path: Path) -> None:
    """Over plain HTTP the CLI signs the body's SHA-256 itself (no trailers)."""
    plain = AwsCli(aws.binary, s3_http, member, tmp_path / "home-http")
    name = bucket_name("clih")
    plain("s3", "mb", f"s3://{name}")
    data = random_file(tmp_path / "f.bin", 9 * MiB, seed=3)
    plain("s3", "cp", str(tmp_path / "f.bin"), f"s3://{name}/f.bin")
    plain("s3", "cp", f"s3://{name}/f.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data
    plain("s3", "rb", f"s3://{name}", "--force")


def test_sync_up_back_and_delete(aws: AwsCli, tmp_path: Path) -> None:
    name = bucket_name("sync")
    aws("s3", "mb", f"s3://{name}")
    source = tmp_path / "source"
    files = make_tree(source)
    out = aws("s3", "sync", str(source), f"s3://{name}/tree").stdout
    assert out.count("upload: ") == len(files)
    # A second sync has nothing to do (sizes and times match).
    assert aws("s3", "sync", str(source), f"s3://{name}/tree").stdout.strip() == ""

    back = tmp_path / "back"
    aws("s3", "sync", f"s3://{name}/tree", str(back))
    assert read_tree(back) == files

    (source / "docs" / "readme.md").unlink()
    (source / "new.txt").write_bytes(b"new\n")
    out = aws("s3", "sync", str(source), f"s3://{name}/tree", "--delete").stdout
    assert "delete: s3://" in out
    assert "docs/readme.md" in out
    assert "upload: " in out
    assert "new.txt" in out
    listed = aws("s3", "ls", f"s3://{name}/tree/", "--recursive").stdout
    keys = sorted(line.split(maxsplit=3)[3] for line in listed.splitlines())
    expected = {**files, "new.txt": b"new\n"}
    del expected["docs/readme.md"]
    assert keys == sorted(f"tree/{key}" for key in expected)

    aws("s3", "sync", f"s3://{name}/tree", str(back), "--delete")
    assert read_tree(back) == expected


def test_s3api_objects(aws: AwsCli, tmp_path: Path) -> None:
    name = bucket_name("api")
    aws("s3api", "create-bucket", "--bucket", name)
    body = tmp_path / "body.bin"
    data = bytes(range(256)) * 40
    body.write_bytes(data)
    put = _json(
        aws,
        "s3api",
        "put-object",
        "--bucket",
        name,
        "--key",
        "k.bin",
        "--body",
        str(body),
        "--content-type",
        "application/x-test",
        "--metadata",
        "colour=blue",
    )
    assert put["ETag"] == f'"{md5(data)}"'

    out = tmp_path / "range.bin"
    got = _json(
        aws,
        "s3api",
        "get-object",
        "--bucket",
        name,
        "--key",
        "k.bin",
        "--range",
        "bytes=100-299",
        str(out),
    )
    assert got["ContentRange"] == f"bytes 100-299/{len(data)}"
    assert got["ContentLength"] == 200
    assert out.read_bytes() == data[100:300]

    head = _json(aws, "s3api", "head-object", "--bucket", name, "--key", "k.bin")
    assert head["ContentLength"] == len(data)
    assert head["ContentType"] == "application/x-test"
    assert head["Metadata"] == {"colour": "blue"}

    attributes = _json(
        aws,
        "s3api",
        "get-object-attributes",
        "--bucket",
        name,
        "--key",
        "k.bin",
        "--object-attributes",
        "ETag",
        "ObjectSize",
        "StorageClass",
    )
    assert attributes["ETag"] == md5(data)
    assert attributes["ObjectSize"] == len(data)
    assert attributes["StorageClass"] == "STANDARD"

    missing = aws("s3api", "head-object", "--bucket", name, "--key", "nope", check=False)
    assert missing.returncode != 0
    assert "404" in missing.stderr


def _fill(port: Port, name: str, count: int) -> list[str]:
    """``count`` empty objects, their rows made directly (the listing reads rows only; writing
    thousands of objects one by one would be most of the test); their keys."""
    keys = [f"p/{index:05d}" for index in range(count)]
    with port.services.db.unit_of_work() as session:
        ref = bucket_ref(session, name)
        session.execute(
            insert(ObjectVersion),
            [
                {"bucket_id": ref.id, "key": key, "version_id": "null",
                 "etag": "d41d8cd98f00b204e9800998ecf8427e", "headers": {}, "meta": {},
                 "created_at": utcnow()}
                for key in keys
            ],
        )  # fmt: skip
        charge(session, bucket_id=ref.id, tenant_id=ref.tenant_id, size=0, objects=count)
    return keys


@pytest.mark.slow
def test_list_objects_v2_pagination(aws: AwsCli, s3_http: Port, member: S3Member) -> None:
    """3,000 keys: three pages of the port's 1,000."""
    name = bucket_name("page")
    aws("s3api", "create-bucket", "--bucket", name)
    keys = _fill(s3_http, name, 3000)

    everything = _json(aws, "s3api", "list-objects-v2", "--bucket", name, "--page-size", "700")
    assert [item["Key"] for item in everything["Contents"]] == keys

    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        args = ["--max-items", "400", "--page-size", "150"]
        if token:
            args += ["--starting-token", token]
        page = _json(aws, "s3api", "list-objects-v2", "--bucket", name, *args)
        seen += [item["Key"] for item in page["Contents"]]
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    assert pages == 8  # 400 items each
    assert seen == keys

    prefixed = _json(
        aws,
        "s3api",
        "list-objects-v2",
        "--bucket",
        name,
        "--prefix",
        "p/010",
        "--max-items",
        "1000",
    )
    assert [item["Key"] for item in prefixed["Contents"]] == keys[1000:1100]
    assert aws("s3", "ls", f"s3://{name}/p/").stdout.count("\n") == 3000


@pytest.mark.slow
def test_versions(aws: AwsCli, tmp_path: Path) -> None:
    name = bucket_name("ver")
    aws("s3api", "create-bucket", "--bucket", name)
    aws(
        "s3api",
        "put-bucket-versioning",
        "--bucket",
        name,
        "--versioning-configuration",
        "Status=Enabled",
    )
    assert _json(aws, "s3api", "get-bucket-versioning", "--bucket", name) == {"Status": "Enabled"}
    ids = []
    for text in (b"one", b"two", b"three"):
        (tmp_path / "v").write_bytes(text)
        put = _json(
            aws,
            "s3api",
            "put-object",
            "--bucket",
            name,
            "--key",
            "doc",
            "--body",
            str(tmp_path / "v"),
        )
        ids.append(put["VersionId"])
    listed = _json(aws, "s3api", "list-object-versions", "--bucket", name)
    versions = listed["Versions"]
    assert [v["VersionId"] for v in versions] == ids[::-1]
    assert [v["IsLatest"] for v in versions] == [True, False, False]

    first = tmp_path / "first"
    aws("s3api", "get-object", "--bucket", name, "--key", "doc", "--version-id", ids[0], str(first))
    assert first.read_bytes() == b"one"

    aws("s3api", "delete-object", "--bucket", name, "--key", "doc", "--version-id", ids[2])
    latest = tmp_path / "latest"
    aws("s3api", "get-object", "--bucket", name, "--key", "doc", str(latest))
    assert latest.read_bytes() == b"two"

    marker = _json(aws, "s3api", "delete-object", "--bucket", name, "--key", "doc")
    assert marker["DeleteMarker"] is True
    listed = _json(aws, "s3api", "list-object-versions", "--bucket", name)
    assert [v["VersionId"] for v in listed["Versions"]] == [ids[1], ids[0]]
    assert [m["VersionId"] for m in listed["DeleteMarkers"]] == [marker["VersionId"]]
    hidden = aws("s3api", "head-object", "--bucket", name, "--key", "doc", check=False)
    assert hidden.returncode != 0


def _fetch(url: str, ca_file: str | None) -> tuple[int, bytes]:
    import ssl

    context = ssl.create_default_context(cafile=ca_file)
    try:
        with urllib.request.urlopen(url, context=context, timeout=30) as answer:  # noqa: S310
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _tamper(url: str) -> str:
    """``url`` with its expiry moved by a second (its signature no longer matches)."""
    if "X-Amz-Expires=" in url:
        return re.sub(r"X-Amz-Expires=(\d+)", lambda m: f"X-Amz-Expires={int(m[1]) + 1}", url)
    return re.sub(r"Expires=(\d+)", lambda m: f"Expires={int(m[1]) + 1}", url)


def _check_presigned(aws: AwsCli, ca_file: str | None, s3_url: str, *, v4: bool) -> None:
    url = aws("s3", "presign", s3_url, "--expires-in", "300").stdout.strip()
    assert ("X-Amz-Signature=" in url) is v4
    assert ("AWSAccessKeyId=" in url) is not v4
    assert _fetch(url, ca_file) == (200, b"presigned bytes")

    status, body = _fetch(_tamper(url), ca_file)
    assert status == 403
    assert b"SignatureDoesNotMatch" in body

    short = aws("s3", "presign", s3_url, "--expires-in", "1").stdout.strip()
    time.sleep(2.1)
    status, body = _fetch(short, ca_file)
    assert status == 403
    assert b"AccessDenied" in body
    assert b"expired" in body.lower()


def test_presign(aws: AwsCli, s3_tls: Port, tmp_path: Path) -> None:
    name = bucket_name("pre")
    aws("s3", "mb", f"s3://{name}")
    (tmp_path / "f").write_bytes(b"presigned bytes")
    aws("s3", "cp", str(tmp_path / "f"), f"s3://{name}/a b/ü.txt")
    # The CLI v1 presigns with Signature Version 2 by default; v2 with Version 4.
    _check_presigned(aws, s3_tls.ca_file, f"s3://{name}/a b/ü.txt", v4=aws.binary == AWS_V2)
    if aws.binary == AWS_V1:
        v4 = aws.with_config("s3 =", "    signature_version = s3v4")
        _check_presigned(v4, s3_tls.ca_file, f"s3://{name}/a b/ü.txt", v4=True)


@pytest.mark.slow
def test_copy_move_between_buckets(aws: AwsCli, tmp_path: Path) -> None:
    """S3-to-S3 copies: one CopyObject for a small object (its metadata kept), a multipart copy
    (UploadPartCopy in ranges) above 8 MiB, ``mv`` and a recursive copy; and an upload from
    standard input of unknown length."""
    source, target = bucket_name("cpa"), bucket_name("cpb")
    aws("s3", "mb", f"s3://{source}")
    aws("s3", "mb", f"s3://{target}")
    (tmp_path / "small").write_bytes(b"small object")
    aws("s3", "cp", str(tmp_path / "small"), f"s3://{source}/small", "--content-type", "text/x-s")
    aws("s3", "cp", str(tmp_path / "small"), f"s3://{source}/meta", "--metadata", "k=v")
    data = random_file(tmp_path / "big.bin", 12 * MiB, seed=8)
    aws("s3", "cp", str(tmp_path / "big.bin"), f"s3://{source}/big.bin")

    aws("s3", "cp", f"s3://{source}/small", f"s3://{target}/small")
    head = _json(aws, "s3api", "head-object", "--bucket", target, "--key", "small")
    assert head["ContentType"] == "text/x-s"
    aws("s3", "cp", f"s3://{source}/big.bin", f"s3://{target}/big.bin")
    head = _json(aws, "s3api", "head-object", "--bucket", target, "--key", "big.bin")
    assert head["ContentLength"] == 12 * MiB
    assert head["ETag"].endswith('-2"')

    aws("s3", "mv", f"s3://{target}/big.bin", f"s3://{target}/moved/big.bin")
    aws("s3", "cp", "--recursive", f"s3://{source}/", f"s3://{target}/all/")
    listed = aws("s3", "ls", "--recursive", f"s3://{target}").stdout
    assert sorted(line.split()[-1] for line in listed.splitlines()) == [
        "all/big.bin",
        "all/meta",
        "all/small",
        "moved/big.bin",
        "small",
    ]
    assert _json(aws, "s3api", "head-object", "--bucket", target, "--key", "all/meta")[
        "Metadata"
    ] == {"k": "v"}
    aws("s3", "cp", f"s3://{target}/moved/big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data

    streamed = subprocess.run(
        [aws.binary, "--endpoint-url", aws.port.endpoint, "s3", "cp", "-", f"s3://{source}/in"],
        input=data[: 9 * MiB],
        env=aws.env(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert streamed.returncode == 0, streamed.stderr
    head = _json(aws, "s3api", "head-object", "--bucket", source, "--key", "in")
    assert head["ContentLength"] == 9 * MiB
    assert head["ETag"].endswith('-2"')


def test_public_read_and_checksum_options(aws: AwsCli, s3_tls: Port, tmp_path: Path) -> None:
    name = bucket_name("cko")
    aws("s3", "mb", f"s3://{name}")
    (tmp_path / "pub").write_bytes(b"for everyone")
    aws("s3", "cp", str(tmp_path / "pub"), f"s3://{name}/pub", "--acl", "public-read")
    assert _fetch(f"{s3_tls.endpoint}/{name}/pub", s3_tls.ca_file) == (200, b"for everyone")
    (tmp_path / "priv").write_bytes(b"private")
    aws("s3", "cp", str(tmp_path / "priv"), f"s3://{name}/priv")
    assert _fetch(f"{s3_tls.endpoint}/{name}/priv", s3_tls.ca_file)[0] == 403
    if aws.binary == AWS_V2 and "--checksum-algorithm" not in aws("s3", "cp", "help").stdout:
        return  # Debian's CLI v2 (2.9) predates the checksum options
    data = random_file(tmp_path / "big.bin", 10 * MiB, seed=6)
    aws(
        "s3",
        "cp",
        str(tmp_path / "big.bin"),
        f"s3://{name}/big",
        "--checksum-algorithm",
        "CRC64NVME",
    )
    head = _json(
        aws, "s3api", "head-object", "--bucket", name, "--key", "big", "--checksum-mode", "ENABLED"
    )
    assert head["ChecksumType"] == "FULL_OBJECT"
    assert "ChecksumCRC64NVME" in head
    aws("s3", "cp", f"s3://{name}/big", str(tmp_path / "back"))
    assert (tmp_path / "back").read_bytes() == data
