"""Store's part of ``civicloud demo``: Dalian's buckets, files and access key, made once however
often the demo is seeded, and the key printed working against the S3 port."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from sqlalchemy import create_engine, text
from tests.functional.cli.conftest import Run, civicloud, data_dir

from civicloud.app import build_services, load_settings
from civicloud.store.context import StoreContext
from civicloud.store.s3.listener import RunningS3

__all__ = ["civicloud", "data_dir"]  # the command-line fixtures, used here

pytestmark = pytest.mark.slow

COUNTS = {
    "buckets": "SELECT count(*) FROM store_bucket",
    "objects": "SELECT count(*) FROM store_object",
    "keys": "SELECT count(*) FROM store_access_key",
    "grants": "SELECT count(*) FROM role_binding WHERE role_name = 'store_admin'",
}


def _key(out: str) -> tuple[str, str]:
    key_id = re.search(r"export AWS_ACCESS_KEY_ID=(\S+)", out)
    secret = re.search(r"export AWS_SECRET_ACCESS_KEY=(\S+)", out)
    assert key_id is not None, out
    assert secret is not None, out
    return key_id.group(1), secret.group(1)


def test_seeding_twice_makes_everything_once_and_the_key_works(
    request: pytest.FixtureRequest,
    database_url: str,
    civicloud: Run,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"sqlite:///{data_dir / 'civicloud.db'}"
    if not database_url.startswith("sqlite"):
        url = request.getfixturevalue("postgres_server").create_database(
            f"civicloud_store_demo_{uuid.uuid4().hex[:10]}"
        )
        monkeypatch.setenv("CIVICLOUD_DATABASE_URL", url)
    # (the installation's own S3 port: nothing is served, so nothing binds it)
    monkeypatch.setenv("CIVICLOUD_STORE__S3_PORT", "9000")
    # when the demo is seeded twice
    first = civicloud("demo", "--no-serve")
    assert first.code == 0, first.err
    engine = create_engine(url)
    with engine.connect() as connection:
        before = {name: connection.execute(text(sql)).scalar_one() for name, sql in COUNTS.items()}
    second = civicloud("demo", "--no-serve")
    assert second.code == 0, second.err
    with engine.connect() as connection:
        after = {name: connection.execute(text(sql)).scalar_one() for name, sql in COUNTS.items()}
    engine.dispose()
    # then nothing was made twice, and the same key is printed both times
    assert before == after == {"buckets": 2, "objects": 7, "keys": 1, "grants": 1}
    assert _key(first.out) == _key(second.out)
    assert "aws --endpoint-url http://127.0.0.1:9000 s3 ls" in first.out
    # and the key lists Dalian's buckets on the S3 port; the open data needs no key
    services = build_services(load_settings(data_dir=data_dir, database_url=url))
    running = RunningS3(services.context("store", StoreContext), host="127.0.0.1", port=0, tls=None)
    try:
        key_id, secret = _key(second.out)
        s3 = boto3.session.Session().client(
            "s3",
            endpoint_url=running.address,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert names == ["dalian-archive", "dalian-open-data"]
        anonymous = boto3.session.Session().client(
            "s3",
            endpoint_url=running.address,
            region_name="us-east-1",
            config=Config(signature_version=UNSIGNED),
        )
        body = anonymous.get_object(Bucket="dalian-open-data", Key="air-quality/2025-05.csv")
        assert "监测点 Station" in body["Body"].read().decode("utf-8")
        # and what was seeded is sound
        assert civicloud("store", "fsck", "--deep").code == 0
    finally:
        running.server.shutdown()
        running.server.server_close()
        services.context("store", StoreContext).log.flush()
        services.db.dispose()
