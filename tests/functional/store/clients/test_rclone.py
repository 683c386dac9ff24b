"""rclone, unmodified, against the S3 port over TLS with its remote configured from environment
variables (provider ``Other``): copy, sync, check (sizes and MD5 from ETags), listings, deletes,
and its multipart upload."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.factories.store import S3Member
from tests.functional.store.clients.tools import RCLONE, Rclone, make_tree, random_file, read_tree
from tests.functional.store.conftest import Port, bucket_name, client

MiB = 1024 * 1024


@pytest.fixture
def rclone(s3_tls: Port, member: S3Member, tmp_path: Path) -> Rclone:
    """rclone as ``member`` against the TLS port."""
    if not Path(RCLONE).exists():
        pytest.skip("rclone is not installed (Debian package: rclone)")
    return Rclone(s3_tls, member, tmp_path / "home")


def test_copy_up_and_down_then_check(rclone: Rclone, tmp_path: Path) -> None:
    name = bucket_name("rc")
    rclone("mkdir", f"s3:{name}")
    source = tmp_path / "source"
    files = make_tree(source)
    rclone("copy", str(source), f"s3:{name}/tree")
    # check compares sizes and MD5 hashes (single-part ETags) of both sides.
    checked = rclone("check", str(source), f"s3:{name}/tree")
    assert f"{len(files)} matching files" in checked.stderr

    listed = rclone("lsf", "-R", "--files-only", f"s3:{name}/tree").stdout.splitlines()
    assert sorted(listed) == sorted(files)
    top = rclone("lsf", f"s3:{name}/tree").stdout.splitlines()
    assert sorted(top) == sorted(["docs/", "empty.bin", "img/", "top.txt", "名字 with spaces/"])
    hashes = rclone("md5sum", f"s3:{name}/tree/docs").stdout.splitlines()
    assert len(hashes) == 3
    assert all(len(line.split()[0]) == 32 for line in hashes)

    back = tmp_path / "back"
    rclone("copy", f"s3:{name}/tree", str(back))
    assert read_tree(back) == files


def test_sync_and_delete(rclone: Rclone, tmp_path: Path) -> None:
    name = bucket_name("rcs")
    rclone("mkdir", f"s3:{name}")
    source = tmp_path / "source"
    files = make_tree(source)
    rclone("sync", str(source), f"s3:{name}")
    (source / "top.txt").write_bytes(b"changed contents\n")
    (source / "img" / "photo.jpg").unlink()
    rclone("sync", str(source), f"s3:{name}")
    expected = {**files, "top.txt": b"changed contents\n"}
    del expected["img/photo.jpg"]
    rclone("check", str(source), f"s3:{name}")
    assert sorted(rclone("lsf", "-R", "--files-only", f"s3:{name}").stdout.splitlines()) == sorted(
        expected
    )

    rclone("delete", f"s3:{name}", "--include", "docs/**")
    remaining = rclone("lsf", "-R", "--files-only", f"s3:{name}").stdout.splitlines()
    assert sorted(remaining) == sorted(key for key in expected if not key.startswith("docs/"))
    rclone("purge", f"s3:{name}")
    gone = rclone("lsf", f"s3:{name}", check=False)
    assert gone.returncode != 0


def test_multipart_upload(rclone: Rclone, s3_tls: Port, member: S3Member, tmp_path: Path) -> None:
    """rclone goes multipart above ``--s3-upload-cutoff`` (200 MiB by default); a 5 MiB cutoff
    and chunk size send a 12 MiB file in three parts without a huge file."""
    name = bucket_name("rcm")
    rclone("mkdir", f"s3:{name}")
    data = random_file(tmp_path / "up" / "big.bin", 12 * MiB, seed=5)
    rclone(
        "copy",
        str(tmp_path / "up"),
        f"s3:{name}",
        "--s3-upload-cutoff",
        "5M",
        "--s3-chunk-size",
        "5M",
    )
    head = client(s3_tls, member).head_object(Bucket=name, Key="big.bin")
    assert head["ContentLength"] == 12 * MiB
    assert head["ETag"].endswith('-3"')
    # rclone keeps the whole file's MD5 in its own metadata for multipart objects, and check
    # uses it.
    assert "Md5chksum" in {k.capitalize() for k in head["Metadata"]}
    rclone("check", str(tmp_path / "up"), f"s3:{name}")
    rclone("copy", f"s3:{name}/big.bin", str(tmp_path / "down"))
    assert (tmp_path / "down" / "big.bin").read_bytes() == data
    # Server-side copy (rclone copies objects by CopyObject or UploadPartCopy).
    rclone("copyto", f"s3:{name}/big.bin", f"s3:{name}/copy/big.bin")
    rclone("check", str(tmp_path / "up"), f"s3:{name}/copy")


def test_rcat_streams_unknown_length(
    rclone: Rclone, s3_tls: Port, member: S3Member, tmp_path: Path
) -> None:
    """``rcat`` reads standard input of unknown length: small input goes in one PUT, and
    input above the cutoff goes multipart in chunks of ``--s3-chunk-size``."""
    name = bucket_name("rcc")
    rclone("mkdir", f"s3:{name}")
    rclone("rcat", f"s3:{name}/small.txt", stdin=b"from standard input\n")
    data = random_file(tmp_path / "stream.bin", 11 * MiB, seed=9)
    rclone(
        "rcat",
        f"s3:{name}/stream.bin",
        "--streaming-upload-cutoff",
        "1M",
        "--s3-chunk-size",
        "5M",
        stdin=data,
    )
    s3 = client(s3_tls, member)
    assert s3.get_object(Bucket=name, Key="small.txt")["Body"].read() == b"from standard input\n"
    assert s3.head_object(Bucket=name, Key="stream.bin")["ETag"].endswith('-3"')
    rclone("copy", f"s3:{name}/stream.bin", str(tmp_path / "down"))
    assert (tmp_path / "down" / "stream.bin").read_bytes() == data


def test_over_http(s3_http: Port, member: S3Member, tmp_path: Path) -> None:
    """Over plain HTTP too (rclone signs each body's SHA-256)."""
    rclone = Rclone(s3_http, member, tmp_path / "home")
    name = bucket_name("rch")
    rclone("mkdir", f"s3:{name}")
    files = make_tree(tmp_path / "source")
    rclone("copy", str(tmp_path / "source"), f"s3:{name}")
    rclone("check", str(tmp_path / "source"), f"s3:{name}")
    rclone("copy", f"s3:{name}", str(tmp_path / "back"))
    assert read_tree(tmp_path / "back") == files


def test_versions_moves_and_backend_commands(rclone: Rclone, tmp_path: Path) -> None:
    name = bucket_name("rcv")
    rclone("mkdir", f"s3:{name}")
    files = make_tree(tmp_path / "source")
    rclone("copy", str(tmp_path / "source"), f"s3:{name}")
    assert f"Total objects: {len(files)} " in rclone("size", f"s3:{name}").stdout
    assert name in rclone("lsd", "s3:").stdout
    rclone("moveto", f"s3:{name}/top.txt", f"s3:{name}/moved.txt")
    assert rclone("backend", "versioning", f"s3:{name}", "Enabled").stdout.strip() == "Enabled"
    (tmp_path / "new.txt").write_bytes(b"second version")
    rclone("copyto", str(tmp_path / "new.txt"), f"s3:{name}/moved.txt")
    versions = rclone("ls", "--s3-versions", f"s3:{name}").stdout.split()
    assert "moved.txt" in versions
    assert any(item.startswith("moved-v") and item.endswith(".txt") for item in versions)
    assert '"' + name + '": []' in rclone("backend", "list-multipart-uploads", f"s3:{name}").stdout
