"""HTTP load generators shared by the benchmarks: ``wrk`` when it is installed, else a lean one here.

Both run in a process of their own, hold ``connections`` keep-alive HTTP/1.1 connections open to
one URL for ``duration`` seconds and report requests/s, p50/p99 latency, the count of non-2xx
answers and socket errors, and the CPU the generator itself used (to tell whether it, rather
than the server, was the bottleneck).

Run as a script, this module *is* the Python generator:
``python bench/_loadgen.py URL --duration 3 --connections 8 -H 'Authorization: Bearer …'``
prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class LoadResult:
    """What one run of a generator measured."""

    generator: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    #: CPU seconds the generator used per second of the run (1.0 = one core busy).
    cpu: float


def available(choice: str) -> str:
    """The generator to use for ``choice`` (``auto``, ``wrk`` or ``python``)."""
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if choice == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not on PATH (Debian: apt-get install wrk); use --generator python")
    return choice


def describe(generator: str, connections: int) -> str:
    """One line naming the generator and its settings."""
    if generator == "wrk":
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        first = (version.stdout or version.stderr).splitlines()[:1]
        name = first[0].split(" Copyright")[0] if first else "wrk"
        return f"{name}, 1 thread, {connections} keep-alive connections"
    return f"python asyncio raw-socket generator, 1 process, {connections} keep-alive connections"


def run(
    generator: str, url: str, *, duration: float, connections: int, headers: dict[str, str]
) -> LoadResult:
    """Load ``url`` for ``duration`` seconds with ``generator`` in a child process."""
    if generator == "wrk":
        command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        command.append(url)
    else:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            url,
            f"--duration={duration}",
            f"--connections={connections}",
        ]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / wall
    if generator == "wrk":
        return _parse_wrk(done.stdout, cpu)
    return LoadResult(**{**json.loads(done.stdout), "cpu": cpu})


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def _parse_wrk(out: str, cpu: float) -> LoadResult:
    def find(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, out, re.MULTILINE)

    summary = find(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)")
    rps = find(r"^Requests/sec:\s*([\d.]+)")
    p50 = find(r"^\s*50%\s+(\S+)")
    p99 = find(r"^\s*99%\s+(\S+)")
    if not (summary and rps and p50 and p99):
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    non_2xx = find(r"Non-2xx or 3xx responses:\s*(\d+)")
    sockets = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    return LoadResult(
        generator="wrk",
        requests=int(summary.group(1)),
        seconds=_ms(summary.group(2) + summary.group(3)) / 1000,
        rps=float(rps.group(1)),
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
        cpu=cpu,
    )


# --- the Python generator -------------------------------------------------------------------


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.non_2xx = 0
        self.errors = 0


async def _connection(host: str, port: int, request: bytes, deadline: float, tally: _Tally) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        tally.errors += 1
        return
    clock = time.perf_counter
    latencies = tally.latencies
    try:
        while (sent := clock()) < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at < 0:
                raise ValueError("response without Content-Length (chunked bodies not supported)")
            end = lower.find(b"\r\n", at + 2)
            await reader.readexactly(int(lower[at + 17 : end]))
            latencies.append(clock() - sent)
            if not 200 <= status < 300:
                tally.non_2xx += 1
    except (OSError, asyncio.IncompleteReadError, ValueError):
        tally.errors += 1
    finally:
        writer.close()


async def _generate(url: str, duration: float, connections: int, headers: list[str]) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", *headers, "", ""]
    request = "\r\n".join(lines).encode("latin-1")
    tally = _Tally()
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(
        *(_connection(host, port, request, deadline, tally) for _ in range(connections))
    )
    seconds = time.perf_counter() - started
    ordered = sorted(tally.latencies)
    count = len(ordered)

    def percentile(fraction: float) -> float:
        return ordered[min(count - 1, int(fraction * count))] * 1000 if count else 0.0

    return LoadResult(
        generator="python",
        requests=count,
        seconds=seconds,
        rps=count / seconds,
        p50_ms=percentile(0.50),
        p99_ms=percentile(0.99),
        non_2xx=tally.non_2xx,
        errors=tally.errors,
        cpu=0.0,  # measured by the parent, which sees this whole process
    )


def main() -> None:
    """Run the Python generator and print its result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("-H", "--header", action="append", default=[])
    args = parser.parse_args()
    result = asyncio.run(_generate(args.url, args.duration, args.connections, args.header))
    result_dict = asdict(result)
    del result_dict["cpu"]
    print(json.dumps(result_dict))


if __name__ == "__main__":
    main()
