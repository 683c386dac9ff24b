"""``civicloud demo`` and ``serve`` on any port: Pay's public address follows the port.

Providers send citizens back to ``pay.public_base_url`` and receipts' QR codes open it; on the
default ``http://localhost:8000`` a demo on another port sent "立即缴费" nowhere.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from civicloud.app import load_settings
from civicloud.cli.serve import with_public_address
from civicloud.demo import listening_url
from civicloud.pay.settings import PaySettings

CLI = [sys.executable, "-c", "from civicloud.cli import main; main()"]
REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 8123, "http://localhost:8123"),
        ("0.0.0.0", 8000, "http://localhost:8000"),  # noqa: S104 - every interface
        ("::1", 9000, "http://localhost:9000"),
        ("192.168.1.20", 8080, "http://192.168.1.20:8080"),
        ("fd00::20", 8080, "http://[fd00::20]:8080"),
    ],
)
def test_the_public_address_follows_where_the_server_listens(
    tmp_path: Path, host: str, port: int, url: str
) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert listening_url(host, port) == url
    assert with_public_address(settings, host, port).pay.public_base_url == url


def test_a_configured_public_address_is_kept(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, pay=PaySettings(public_base_url="https://pay.gov.cn")
    )
    assert with_public_address(settings, "127.0.0.1", 8123).pay.public_base_url == (
        "https://pay.gov.cn"
    )


def test_the_demo_on_another_port_prints_where_to_open_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "demo", "--no-serve", "--data-dir", str(tmp_path / "d"), "--port", "8123"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())  # the console wraps long lines
    assert "Open http://localhost:8123/" in said
    assert "Public address: http://localhost:8123 " in said


def test_make_demo_passes_the_port_on() -> None:
    dry = subprocess.run(
        ["make", "-n", "demo", "PORT=8123"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert dry.returncode == 0, dry.stderr
    assert "demo" in dry.stdout
    assert '--port "8123"' in dry.stdout
