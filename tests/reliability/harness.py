"""Helpers for the reliability suite: exact exit times (pidfd), control calls, PID-1 resource samples
and a least-squares slope. The pypilot under test is ``tests.pid1.Pilot`` (PID 1 under unshare)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil

from tests.control.harness import http
from tests.pid1 import Pilot

ROOT = Path(__file__).resolve().parents[2]


def exit_time(pid: int, timeout: float) -> float:
    """``time.monotonic()`` when process ``pid`` (not necessarily our child) exits, within ~1 ms."""
    fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(int(timeout * 1000)):
            raise AssertionError(f"process {pid} did not exit within {timeout}s")
        return time.monotonic()
    finally:
        os.close(fd)


def control(p: Pilot, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    sock = str(p.dir / "control.sock")
    code, _, data = http(sock, method, path, None if body is None else orjson.dumps(body), timeout=timeout)
    try:
        return code, orjson.loads(data)
    except orjson.JSONDecodeError:
        return code, data


def status(p: Pilot) -> dict[str, Any]:
    code, data = control(p, "GET", "/v3/status")
    assert code == 200, data
    return data


def jobs(p: Pilot) -> dict[str, dict[str, Any]]:
    return {j["name"]: j for j in status(p)["jobs"]}


def cli(p: Pilot, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """The real command line: ``python -m pypilot -config FILE ARGS``."""
    return subprocess.run(
        [sys.executable, "-m", "pypilot", "-config", str(p.config_path), *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )


@dataclass
class Sample:
    t: float
    rss: int
    fds: int
    threads: int
    zombies: int


def sample(p: Pilot) -> Sample:
    proc = p.process()
    return Sample(
        time.monotonic(),
        proc.memory_info().rss,
        len(os.listdir(f"/proc/{p.host_pid}/fd")),
        proc.num_threads(),
        len(p.zombies()),
    )


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def ns_pid(proc: psutil.Process) -> int:
    """A process's PID inside its own (innermost) PID namespace."""
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {proc.pid}")
