"""Running ``civicloud`` in process: its exit code, stdout and stderr, on a data directory of
its own, with cheap password hashing and the logging set-up it changes put back afterwards."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from civicloud import cli
from civicloud.cli import common
from civicloud.core.config import Settings
from civicloud.core.services import Services


@dataclass(frozen=True)
class Result:
    """What one ``civicloud`` command did."""

    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory that does not exist yet."""
    return tmp_path / "civicloud-data"


@pytest.fixture
def civicloud(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Run]:
    """``civicloud("admin", "tenant", "list")`` runs the command on ``data_dir``.

    ``--data-dir`` is appended unless ``data=False``; the environment carries cheap argon2.
    """
    for name in ("CIVICLOUD_DATABASE_URL", "CIVICLOUD_DATA_DIR", "CIVICLOUD_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    # Tables as wide as a wide terminal, whatever runs the tests: rich reads the width once, at
    # import, from the terminal or $COLUMNS, and truncates cells to fit it.
    monkeypatch.setattr(common.console, "width", 200)
    monkeypatch.setenv("COLUMNS", "240")  # rich's tables would cut long cells at 80
    monkeypatch.setenv("CIVICLOUD_AUTH__ARGON2_TIME_COST", "1")
    monkeypatch.setenv("CIVICLOUD_AUTH__ARGON2_MEMORY_KIB", "1024")
    monkeypatch.setenv("CIVICLOUD_AUTH__ARGON2_PARALLELISM", "1")
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("uvicorn.access").disabled)

    # Commands leave their engine to the end of the process; in one test process, close it
    # after each command instead (PostgreSQL connections left to the garbage collector warn).
    opened: list[Services] = []
    build = common.build_services

    def tracked_build(settings: Settings) -> Services:
        services = build(settings)
        opened.append(services)
        return services

    monkeypatch.setattr(common, "build_services", tracked_build)

    def run(*argv: str, data: bool = True) -> Result:
        capsys.readouterr()
        args = [*argv, "--data-dir", str(data_dir)] if data else list(argv)
        try:
            with pytest.raises(SystemExit) as stopped:
                cli.main(args)
        finally:
            while opened:
                opened.pop().db.dispose()
        captured = capsys.readouterr()
        code = stopped.value.code
        return Result(code if isinstance(code, int) else 1, captured.out, captured.err)

    yield run
    root.handlers[:], root.level = saved[0], saved[1]
    logging.getLogger("uvicorn.access").disabled = saved[2]
