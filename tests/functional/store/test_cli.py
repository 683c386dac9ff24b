"""``civicloud store …`` run as an operator runs it, on an installation of its own (a data
directory, and on PostgreSQL a database of its own, named by ``CIVICLOUD_DATABASE_URL``)."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path

import pytest
from tests.functional.cli.conftest import Result, Run, civicloud, data_dir

from civicloud.store.backends import LocalBackend
from civicloud.store.cli import human_size, parse_size

__all__ = ["civicloud", "data_dir"]  # the command-line fixtures, used here

KEY_LINE = re.compile(r"^(CC[A-Z2-7]{18}) (\S{40})\n$")


@pytest.fixture
def store(
    request: pytest.FixtureRequest,
    database_url: str,
    civicloud: Run,
    monkeypatch: pytest.MonkeyPatch,
) -> Run:
    """``store("bucket", "list")`` on an installation with tenant ``city`` (users ``clerk``
    and ``stranger``, the latter of tenant ``other``)."""
    if not database_url.startswith("sqlite"):
        server = request.getfixturevalue("postgres_server")
        url = server.create_database(f"civicloud_store_cli_{uuid.uuid4().hex[:10]}")
        monkeypatch.setenv("CIVICLOUD_DATABASE_URL", url)
    for argv in (
        [
            "tenant",
            "create",
            "city",
            "--name-zh",
            "市",
            "--name-en",
            "City",
            "--kind",
            "city",
            "--region",
            "cn-beijing",
        ],
        [
            "tenant",
            "create",
            "other",
            "--name-zh",
            "他",
            "--name-en",
            "Other",
            "--kind",
            "city",
            "--region",
            "cn-beijing",
        ],
        ["user", "create", "clerk", "--tenant", "city", "--password", "a-long-password-1"],
        ["user", "create", "stranger", "--tenant", "other", "--password", "a-long-password-2"],
    ):
        made = civicloud("admin", *argv)
        assert made.code == 0, made.err

    def run(*argv: str) -> Result:
        return civicloud("store", *argv)

    return run


def refused(result: Result, code: int) -> str:
    """The one line a refused command says (no traceback)."""
    assert result.code == code, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error:")
    return lines[0]


def test_buckets_are_created_listed_changed_and_deleted(store: Run) -> None:
    # given a bucket created for the city
    made = store("bucket", "create", "city-docs", "--tenant", "city", "--acl", "public-read")
    assert made.code == 0, made.err
    assert "created bucket city-docs for city" in made.out
    # when its versioning and ACL change
    assert store("bucket", "versioning", "city-docs", "enabled").code == 0
    assert store("bucket", "acl", "city-docs", "private").code == 0
    # then the list shows it as it is now
    listed = store("bucket", "list", "--tenant", "city")
    assert listed.code == 0, listed.err
    row = next(line for line in listed.out.splitlines() if "city-docs" in line)
    for cell in ("city", "enabled", "private", "0 B"):
        assert cell in row
    assert "city-docs" not in store("bucket", "list", "--tenant", "other").out
    # and once deleted it is gone
    assert store("bucket", "delete", "city-docs").code == 0
    assert "city-docs" not in store("bucket", "list").out


def test_a_new_key_is_one_line_id_and_secret(store: Run) -> None:
    made = store("key", "create", "--tenant", "city", "--user", "clerk")
    assert made.code == 0, made.err
    match = KEY_LINE.match(made.out)
    assert match is not None, made.out
    listed = store("key", "list", "--tenant", "city")
    assert match.group(1) in listed.out
    assert match.group(2) not in listed.out  # a secret is shown once


def test_a_new_key_as_json(store: Run) -> None:
    made = store(
        "key",
        "create",
        "--tenant",
        "city",
        "--user",
        "clerk",
        "--bucket",
        "a-bucket",
        "--prefix",
        "in/",
        "--read-only",
        "--json",
    )
    assert made.code == 0, made.err
    shown = json.loads(made.out)
    assert re.fullmatch(r"CC[A-Z2-7]{18}", shown["access_key_id"])
    assert len(shown["secret_access_key"]) == 40
    assert (shown["buckets"], shown["prefixes"], shown["read_only"]) == (
        ["a-bucket"],
        ["in/"],
        True,
    )


def test_a_revoked_key_is_no_longer_listed(store: Run) -> None:
    key_id = store("key", "create", "--tenant", "city", "--user", "clerk").out.split()[0]
    assert store("key", "revoke", key_id).code == 0
    assert key_id not in store("key", "list", "--tenant", "city", "--user", "clerk").out


def test_quotas_are_set_shown_and_cleared(store: Run) -> None:
    assert store("bucket", "create", "quota-bucket", "--tenant", "city").code == 0
    # a bucket's limits, one at a time: the other stays
    assert store("quota", "set", "--bucket", "quota-bucket", "--max-size", "10GiB").code == 0
    both = store("quota", "set", "--bucket", "quota-bucket", "--max-objects", "100")
    assert both.code == 0, both.err
    assert "10.0 GiB, 100 objects" in both.out
    # a tenant's
    assert store("quota", "set", "--tenant", "city", "--max-bytes", "1048576").code == 0
    usage = store("usage", "--tenant", "city")
    assert usage.code == 0, usage.err
    tenant_row = next(line for line in usage.out.splitlines() if "(all)" in line)
    assert "1.0 MiB" in tenant_row
    assert "0.0%" in tenant_row
    assert "10.0 GiB, 100 objects" in store("bucket", "list").out
    # cleared
    assert store("quota", "clear", "--bucket", "quota-bucket").code == 0
    row = next(line for line in store("bucket", "list").out.splitlines() if "quota-bucket" in line)
    assert "GiB" not in row


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["bucket", "create", "b-unknown", "--tenant", "nowhere"], 4, "nowhere"),
        (["bucket", "create", "Bad_Name", "--tenant", "city"], 2, ""),
        (["bucket", "create", "ok-name", "--tenant", "city", "--acl", "everyone"], 2, ""),
        (["bucket", "delete", "no-such-bucket"], 4, ""),
        (["bucket", "versioning", "no-such-bucket", "maybe"], 2, "maybe"),
        (["key", "create", "--tenant", "city", "--user", "stranger"], 2, "stranger"),
        (["key", "create", "--tenant", "city", "--user", "nobody"], 4, "nobody"),
        (["key", "revoke", "CCNOSUCHKEY000000000"], 4, ""),
        (["quota", "set", "--tenant", "city", "--max-size", "lots"], 2, "lots"),
        (["quota", "set", "--tenant", "city", "--max-size", "1G", "--max-bytes", "5"], 2, ""),
        (["quota", "set", "--tenant", "city"], 2, ""),
        (["quota", "set", "--tenant", "city", "--bucket", "x", "--max-bytes", "1"], 2, ""),
        (["quota", "clear"], 2, ""),
        (["usage", "--tenant", "nowhere"], 4, "nowhere"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(
    store: Run, argv: list[str], code: int, says: str
) -> None:
    line = refused(store(*argv), code)
    assert says in line


def test_a_duplicate_bucket_is_refused(store: Run) -> None:
    assert store("bucket", "create", "twice-made", "--tenant", "city").code == 0
    refused(store("bucket", "create", "twice-made", "--tenant", "other"), 5)


def test_fsck_exits_1_until_an_orphan_is_repaired(store: Run, data_dir: Path) -> None:
    # given a healthy store
    assert store("bucket", "create", "fsck-cli", "--tenant", "city").code == 0
    clean = store("fsck", "--deep")
    assert clean.code == 0, clean.err
    # and a blob nothing refers to, from a write that crashed two hours ago
    backend = LocalBackend(data_dir / "store")
    writer = backend.create("ab" * 16)
    writer.write(b"orphaned bytes")
    writer.commit()
    then = time.time() - 7200
    os.utime(backend.path_of("ab" * 16), (then, then))
    # then fsck says so and exits 1, a repair removes it, and the next check is clean
    found = store("fsck")
    assert found.code == 1
    assert "orphan: " + "ab" * 16 in found.out
    repaired = store("fsck", "--repair", "--progress-every", "1")
    assert repaired.code == 0, repaired.err
    assert "[repaired]" in repaired.out
    assert "fsck: 1 blobs checked" in repaired.err
    assert backend.size("ab" * 16) is None
    assert store("fsck").code == 0


def test_rotating_the_master_key_rewraps_every_key(store: Run, data_dir: Path) -> None:
    # given a tenant's data key (made with its first bucket) and an access key
    assert store("bucket", "create", "rotated", "--tenant", "city").code == 0
    key_id = store("key", "create", "--tenant", "city", "--user", "clerk").out.split()[0]
    # when the master key is rotated
    rotated = store("rotate-master-key")
    assert rotated.code == 0, rotated.err
    assert "rewrapped 1 data keys and 1 access keys" in rotated.out
    assert len(list((data_dir / "store" / "keys").glob("master-*.key"))) == 2
    # then a second rotation rewraps them again, and the keys still work (listed, revocable)
    assert "rewrapped 1 data keys and 1 access keys" in store("rotate-master-key").out
    assert store("fsck", "--deep").code == 0
    assert store("key", "revoke", key_id).code == 0


def test_sizes_read_and_written() -> None:
    assert parse_size("10GiB") == 10 << 30
    assert parse_size("500MB") == 500_000_000
    assert parse_size("1.5 KiB") == 1536
    assert parse_size("42") == 42
    assert human_size(512) == "512 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(10 << 30) == "10.0 GiB"
