"""Private key files: written once, whole, by whichever process comes first."""

from __future__ import annotations

import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from civicloud.app import audit_key, load_settings
from civicloud.core.errors import Misconfigured
from civicloud.core.keyfiles import write_private_once


def _race(count: int, work: Callable[[int], None]) -> None:
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        work(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)


def test_of_writers_racing_for_one_file_exactly_one_wins_and_its_file_is_whole(
    tmp_path: Path,
) -> None:
    # given 16 writers with different contents, started at once
    path = tmp_path / "keys" / "secret.key"
    won: list[int] = []

    def write(index: int) -> None:
        if write_private_once(path, f"candidate {index}\n".encode() * 1000):
            won.append(index)

    # when they all write the same file
    _race(16, write)
    # then one of them wrote it, whole, private, and no temporary file is left behind
    assert len(won) == 1
    assert path.read_bytes() == f"candidate {won[0]}\n".encode() * 1000
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]
    # and a later writer leaves it as it is
    assert write_private_once(path, b"another") is False
    assert path.read_bytes() == f"candidate {won[0]}\n".encode() * 1000


def test_the_audit_key_is_the_configured_one_else_a_private_file_made_once(
    tmp_path: Path,
) -> None:
    # given no configured key, then audit.key is made in the data directory once, privately
    settings = load_settings(data_dir=tmp_path)
    first = audit_key(settings)
    assert len(first) == 32
    assert stat.S_IMODE((tmp_path / "audit.key").stat().st_mode) == 0o600
    assert audit_key(settings) == first
    # and a configured key wins, but a short one is refused
    assert audit_key(load_settings(data_dir=tmp_path, audit_key=SecretStr("k" * 20))) == b"k" * 20
    with pytest.raises(Misconfigured, match="at least 16"):
        audit_key(load_settings(data_dir=tmp_path, audit_key=SecretStr("short")))
