"""A throwaway Mosquitto broker on a free loopback port, for the MQTT tests.

Each pytest-xdist worker starts its own (the fixtures are session-scoped per worker), so workers
never share a broker, a port or a session.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

#: The skip reason; CI (``.ci/run``) fails when a test skipped with it.
MOSQUITTO_MISSING = "mosquitto not found: install the mosquitto package (apt-get install mosquitto)"


def mosquitto_binary() -> str | None:
    """The broker's executable (Debian puts it in /usr/sbin, often not on PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def require_mosquitto() -> str:
    """The broker's executable, or skip the test."""
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip(MOSQUITTO_MISSING)
    return binary


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Broker:
    """One Mosquitto process, restartable on the same port with the same persistence."""

    def __init__(self, binary: str, workdir: Path, *, passwords: dict[str, str] | None = None):
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {workdir}/",
            f"log_dest file {workdir / 'mosquitto.log'}",
            "log_type all",
            # Run as root (CI), Mosquitto would drop to the ``mosquitto`` account, which cannot
            # write here; naming the current account keeps it.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
        ]
        if passwords is None:
            lines.append("allow_anonymous true")
        else:
            password_file = workdir / "passwords"
            for index, (name, password) in enumerate(passwords.items()):
                create = ["-c"] if index == 0 else []
                subprocess.run(
                    ["mosquitto_passwd", "-b", *create, str(password_file), name, password],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        self.config = workdir / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        assert self.process is None
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.workdir / "mosquitto.log"
                raise RuntimeError(
                    f"mosquitto did not start on port {self.port}: "
                    f"{log.read_text() if log.exists() else 'no log'}"
                )
            time.sleep(0.05)  # polling: mosquitto says nothing when it is ready; its port answers

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, nothing saved since the last autosave."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
            self.process = None


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it is true; fail saying ``what`` did not happen (a broker's
    deliveries give no signal when they are done)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
