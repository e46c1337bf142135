"""Test harness: pypilot as PID 1 of a fresh PID namespace (``unshare -fp --mount-proc``).

``Pilot`` writes a config, starts pypilot under unshare with its output in a file, and offers
wait-for-condition helpers. Everything a test observes is real: processes (through psutil, from
outside the namespace), signals, exit codes and log lines.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Self

import orjson
import psutil

PAYLOADS = Path(__file__).parent / "payloads"


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class Pilot:
    """One pypilot run. Subclasses change what runs through ``config_text``, ``command`` and
    ``environment`` (the discovery tests run a supervisor with a test control socket)."""

    ROOT = Path(__file__).resolve().parents[1]

    def __init__(
        self,
        config: dict[str, Any] | str,
        pid1: bool = True,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pypilot-test-"))
        self.config_path = self.dir / "config.json5"
        self.config_path.write_text(self.config_text(config))
        self.log_path = self.dir / "out.log"
        cmd = self.command(args or [])
        if pid1:
            cmd = ["unshare", "-fp", "--mount-proc", *cmd]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**self.environment(), **(env or {})},
        )
        self.pid1 = pid1
        self.host_pid = self._find_pilot() if pid1 else self.proc.pid

    def config_text(self, config: dict[str, Any] | str) -> str:
        if isinstance(config, str):
            return config
        # each pypilot its own control socket: tests run side by side
        control = {"socket": str(self.dir / "control.sock"), **config.get("control", {})}
        return orjson.dumps({"consul": "localhost:8500", **config, "control": control}).decode()

    def command(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "pypilot", "-config", str(self.config_path), *args]

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _find_pilot(self) -> int:
        def child() -> int | None:
            try:
                kids = psutil.Process(self.proc.pid).children()
            except psutil.NoSuchProcess:
                kids = []
            if kids:
                return kids[0].pid
            if self.proc.poll() is not None:  # a run so short it is over already: nothing left to find
                return self.proc.pid
            return None

        return int(wait_for(child, 10, "pypilot to start under unshare"))

    # --- observing -----------------------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self, pattern: str) -> list[str]:
        rx = re.compile(pattern)
        return [ln for ln in self.log().splitlines() if rx.search(ln)]

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 10.0) -> list[str]:
        return wait_for(
            lambda: (found := self.lines(pattern)) and len(found) >= count and found,
            timeout,
            f"{count} log line(s) matching {pattern!r}; log tail:\n{self.log()[-2000:]}",
        )

    def process(self) -> psutil.Process:
        return psutil.Process(self.host_pid)

    def children(self) -> list[psutil.Process]:
        try:
            return self.process().children()
        except psutil.NoSuchProcess:
            return []

    def descendants(self) -> list[psutil.Process]:
        try:
            return self.process().children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def zombies(self) -> list[psutil.Process]:
        out = []
        for p in self.children():
            try:
                if p.status() == psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.NoSuchProcess:
                pass
        return out

    def alive(self) -> bool:
        return self.proc.poll() is None

    # --- acting --------------------------------------------------------------------------------

    def signal(self, sig: int) -> None:
        os.kill(self.host_pid, sig)

    def wait_exit(self, timeout: float = 15.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"pypilot did not exit within {timeout}s; log tail:\n{self.log()[-2000:]}"
            ) from None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def host_pid(ns_pid: int, candidates: Iterable[int]) -> int:
    """The host PID of a PID namespace's ``ns_pid`` among ``candidates`` (by ``NSpid`` in /proc)."""
    for pid in candidates:
        try:
            line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                        if ln.startswith("NSpid:"))
        except (OSError, StopIteration):
            continue
        if int(line.split()[-1]) == ns_pid:
            return pid
    raise AssertionError(f"no process is {ns_pid} in the namespace among {list(candidates)}")
