"""Where SUMO is and how its programs run: the ``eclipse-sumo`` package's binaries and tools.

Every run has a time limit and its output captured; a failure becomes one
:class:`SimulationFailed` with SUMO's last line of error, never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from civicloud.traffic.errors import SimulationFailed

#: The generated networks: one junction, an arterial of three, a 3x3 grid. Arms of 300 m (the
#: signals' spacing too), two lanes each way and a left-turn lane, netconvert's default
#: programs (protected-permissive lefts).
LAYOUTS = {
    "junction": ("1", "1"),
    "corridor": ("3", "1"),
    "grid": ("3", "3"),
}


def home() -> Path:
    import sumo  # the eclipse-sumo package

    return Path(sumo.SUMO_HOME)


def binary(name: str) -> Path:
    return home() / "bin" / name


def tool(name: str) -> Path:
    return home() / "tools" / name


def run(args: Sequence[str | Path], *, timeout: float = 600.0, what: str = "SUMO") -> str:
    """Run a SUMO program or tool; its stdout, or :class:`SimulationFailed`."""
    command = [str(a) for a in args]
    if command[0].endswith(".py"):
        command.insert(0, sys.executable)
    environment = {**os.environ, "SUMO_HOME": str(home())}
    try:
        done = subprocess.run(  # noqa: S603 - the programs are the package's own
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SimulationFailed(
            "%(program)s did not finish within %(seconds)s s.",
            params={"program": what, "seconds": int(timeout)},
        ) from exc
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise SimulationFailed(
            "%(program)s stopped with an error: %(reason)s",
            params={"program": what, "reason": (lines[-1] if lines else str(done.returncode))},
        )
    return done.stdout


def generate(
    layout: str,
    out: Path,
    *,
    arm_m: float = 300.0,
    size: tuple[int, int] | None = None,
    pedestrians: bool = False,
) -> Path:
    """A synthetic signal network made by netgenerate (no map data is needed): one of
    ``LAYOUTS``, or a grid of ``size`` junctions (a synthetic city); with ``pedestrians``,
    sidewalks and signalised crossings at every junction."""
    x, y = (str(n) for n in size) if size else LAYOUTS[layout]
    walking = ["--sidewalks.guess", "--crossings.guess"] if pedestrians else []
    run(
        [
            binary("netgenerate"),
            "--grid",
            "--grid.x-number",
            x,
            "--grid.y-number",
            y,
            "--grid.length",
            f"{arm_m:g}",
            "--grid.attach-length",
            f"{arm_m:g}",
            "--default.lanenumber",
            "2",
            "--turn-lanes",
            "1",
            "--turn-lanes.length",
            "80",
            "--tls.guess",
            "--tls.guess.threshold",
            "0",
            "--no-turnarounds",
            *walking,
            "--seed",
            "1",
            "--output-file",
            out,
        ],
        what="netgenerate",
        timeout=600.0,
    )
    return out
