"""Real, unmodified S3 clients driven against the S3 port: the AWS CLI (v1 from the virtual
environment, v2 from the system), rclone, and helpers shared by their tests.

Each CLI runs as a subprocess with an environment of its own: a temporary home and config file,
the member's keys, and the port's CA for TLS, so nothing of the machine leaks in. Every client
keeps its default settings (checksums, chunking, multipart thresholds) unless a test says why.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.factories.store import S3Member
from tests.functional.store.conftest import Port

#: The AWS CLI v1, installed in the virtual environment from PyPI.
AWS_V1 = str(Path(sys.executable).with_name("aws"))
#: The AWS CLI v2 as Debian packages it (``apt-get install awscli``).
AWS_V2 = "/usr/bin/aws"
RCLONE = shutil.which("rclone") or "/usr/bin/rclone"

#: A CLI that has not answered in this long has hung on the port.
TIMEOUT = 120


class ClientFailed(AssertionError):
    """A client exited with an error (its command, exit status and output are in the message)."""


@dataclass(frozen=True)
class Result:
    """What a client printed, and how it exited."""

    returncode: int
    stdout: str
    stderr: str


def _run(
    argv: list[str],
    env: dict[str, str],
    *,
    check: bool,
    cwd: Path | None,
    stdin: bytes | None = None,
) -> Result:
    done = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    result = Result(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )
    if check and done.returncode != 0:
        raise ClientFailed(
            f"{' '.join(argv)} exited {done.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-8000:]}"
        )
    return result


def _base_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": str(home),
    }
    return env


@dataclass(frozen=True)
class AwsCli:
    """One AWS CLI binary pointed at a port as one member."""

    binary: str
    port: Port
    member: S3Member
    home: Path
    #: Lines added to the ``[default]`` profile of the CLI's config file.
    config: tuple[str, ...] = ()

    def env(self) -> dict[str, str]:
        """The CLI's whole environment (no inherited AWS settings)."""
        env = _base_env(self.home)
        config = self.home / "aws-config"
        config.write_text("\n".join(["[default]", "region = us-east-1", *self.config, ""]))
        env.update(
            {
                "AWS_ACCESS_KEY_ID": self.member.access_key,
                "AWS_SECRET_ACCESS_KEY": self.member.secret,
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": str(config),
                "AWS_SHARED_CREDENTIALS_FILE": str(self.home / "aws-credentials"),
                "AWS_PAGER": "",
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        if self.port.ca_file:
            env["AWS_CA_BUNDLE"] = self.port.ca_file
        return env

    def __call__(
        self, *args: str, check: bool = True, cwd: Path | None = None, debug: bool = False
    ) -> Result:
        """Run ``aws --endpoint-url <port> <args>``."""
        argv = [self.binary, "--endpoint-url", self.port.endpoint, *args]
        if debug:
            argv.append("--debug")
        return _run(argv, self.env(), check=check, cwd=cwd)

    def version(self) -> str:
        """``aws --version``."""
        done = _run([self.binary, "--version"], self.env(), check=True, cwd=None)
        return (done.stdout or done.stderr).strip()

    def with_config(self, *lines: str) -> AwsCli:
        """The same CLI with ``lines`` added to its profile."""
        return AwsCli(self.binary, self.port, self.member, self.home, (*self.config, *lines))


@dataclass(frozen=True)
class Rclone:
    """rclone with one remote, ``s3:``, configured from environment variables."""

    port: Port
    member: S3Member
    home: Path

    def env(self) -> dict[str, str]:
        """rclone's whole environment (its remote ``s3`` and an empty config file)."""
        env = _base_env(self.home)
        config = self.home / "rclone.conf"
        config.touch()
        env.update(
            {
                "RCLONE_CONFIG": str(config),
                "RCLONE_CONFIG_S3_TYPE": "s3",
                "RCLONE_CONFIG_S3_PROVIDER": "Other",
                "RCLONE_CONFIG_S3_ENDPOINT": self.port.endpoint,
                "RCLONE_CONFIG_S3_ACCESS_KEY_ID": self.member.access_key,
                "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": self.member.secret,
                "RCLONE_CONFIG_S3_REGION": "us-east-1",
            }
        )
        return env

    def __call__(self, *args: str, check: bool = True, stdin: bytes | None = None) -> Result:
        """Run ``rclone <args>`` (with ``--ca-cert`` over TLS), ``stdin`` on its input."""
        argv = [RCLONE, *args, "--retries", "1", "--low-level-retries", "1"]
        if self.port.ca_file:
            argv += ["--ca-cert", self.port.ca_file]
        return _run(argv, self.env(), check=check, cwd=None, stdin=stdin)


def make_tree(root: Path, *, seed: int = 7) -> dict[str, bytes]:
    """A small folder tree of files (nested folders, an empty file, a name with spaces and
    non-ASCII letters), written under ``root``; its relative paths and contents."""
    rng = random.Random(seed)
    files = {
        "top.txt": b"top level\n",
        "empty.bin": b"",
        "docs/readme.md": b"# readme\n" * 50,
        "docs/deep/er/file.bin": rng.randbytes(70_000),
        "docs/deep/other.bin": rng.randbytes(1_234),
        "名字 with spaces/数据.csv": b"a,b\n1,2\n",
        "img/photo.jpg": rng.randbytes(300_000),
    }
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its relative path (``/``-separated)."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def random_file(path: Path, size: int, *, seed: int = 1) -> bytes:
    """A file of ``size`` pseudo-random bytes (written in 1 MiB blocks); its contents."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = rng.randbytes(size)
    path.write_bytes(data)
    return data


def md5(data: bytes) -> str:
    """The hex MD5 of ``data`` (a single-part object's ETag)."""
    return hashlib.md5(data).hexdigest()  # noqa: S324 - S3's ETag


__all__ = [
    "AWS_V1",
    "AWS_V2",
    "RCLONE",
    "AwsCli",
    "ClientFailed",
    "Rclone",
    "Result",
    "make_tree",
    "md5",
    "random_file",
    "read_tree",
]
