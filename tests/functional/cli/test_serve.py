"""``civicloud serve`` runs in the foreground and stops cleanly on SIGTERM and SIGINT."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tests.functional.live_server import free_port

CLI = [sys.executable, "-c", "from civicloud.cli import main; main()"]


def _wait_until_healthy(url: str, process: subprocess.Popen[str], limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"civicloud serve exited early: {process.communicate()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 - loopback URL
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)  # polling: the server is still starting
    pytest.fail("civicloud serve did not answer /healthz in time")


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_answers_then_stops_cleanly_on_a_signal(tmp_path: Path, stop: signal.Signals) -> None:
    # given a server started on a free loopback port
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_until_healthy(f"http://127.0.0.1:{port}/healthz", process)
        # when it is sent the signal
        process.send_signal(stop)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    # then it shuts down, says so, and exits 0 without a traceback
    assert process.returncode == 0, err
    assert "civicloud stopped." in out
    assert "Traceback" not in err


def test_serve_refuses_a_port_in_use_in_one_line(tmp_path: Path) -> None:
    # given a port somebody else listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # when civicloud is asked to serve on it
        result = subprocess.run(
            [*CLI, "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    # then it says so in one line and exits non-zero
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def _metrics_status(port: int, forwarded_for: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"X-Forwarded-For": forwarded_for}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("trusted", "expected"),
    [("127.0.0.1,::1", 403), ("192.0.2.10", 200)],
    ids=["loopback proxy believed", "only another proxy believed"],
)
def test_serve_believes_x_forwarded_for_from_the_trusted_proxies_only(
    tmp_path: Path, trusted: str, expected: int
) -> None:
    # given a server whose trusted proxies are set, and a request from loopback that says it
    # forwards a remote client (/metrics without a token answers this machine only)
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CIVICLOUD_WEB__TRUSTED_PROXIES": trusted},
    )
    try:
        _wait_until_healthy(f"http://127.0.0.1:{port}/healthz", process)
        # then the remote client is believed only when loopback is a trusted proxy
        assert _metrics_status(port, "203.0.113.9") == expected
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


#: ``civicloud`` with an echo listener installed beside the modules (tests.fakes.listeners).
CLI_WITH_ECHO = [
    sys.executable,
    "-c",
    "from civicloud.cli import common, main\n"
    "from tests.fakes.jobs import with_modules\n"
    "from tests.fakes.listeners import module\n"
    "build = common.build_services\n"
    "def with_echo(settings):\n"
    "    services = build(settings)\n"
    "    return with_modules(services, *services.modules, module('echo'))\n"
    "common.build_services = with_echo\n"
    "main()\n",
]


@pytest.mark.slow
def test_serve_runs_the_listeners_reports_them_ready_and_stops_them_on_sigterm(
    tmp_path: Path,
) -> None:
    # given a server with an echo listener
    port = free_port()
    process = subprocess.Popen(
        [*CLI_WITH_ECHO, "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    try:
        _wait_until_healthy(f"http://127.0.0.1:{port}/healthz", process)
        # then the readiness check names the listener, well
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            ready = json.loads(answer.read())
        # (Traffic's MQTT listener is idle without a broker, and well.)
        assert ready["listeners"] == {
            "listentest.echo": "ok",
            "store.s3": "ok",
            "traffic.counts": "ok",
        }
        # when it is sent SIGTERM
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    # then it printed the listener's address, stopped it with the server, and exits 0
    assert process.returncode == 0, err
    (address,) = re.findall(r"listentest\.echo on tcp://127\.0\.0\.1:(\d+)", out)
    assert "civicloud stopped." in out
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", int(address)), timeout=2),
    ):
        pass
