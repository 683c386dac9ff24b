from __future__ import annotations

from tests.functional.store.conftest import Port, bucket_name, client


def test_put_get_list(s3_http: Port, member) -> None:
    s3 = client(s3_http, member)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="a/b.txt", Body=b"hello")
    assert s3.get_object(Bucket=name, Key="a/b.txt")["Body"].read() == b"hello"
    listed = s3.list_objects_v2(Bucket=name, Delimiter="/")
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["a/"]


def test_tls_trailers(s3_tls: Port, member) -> None:
    s3 = client(s3_tls, member)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"x" * 100_000)
    got = s3.get_object(Bucket=name, Key="k", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"x" * 100_000
    assert "ChecksumCRC32" in got
