"""Runs one init as PID 1 of a fresh PID namespace (``unshare -fp --mount-proc``) and watches its output.

Each output line is kept with the harness's CLOCK_MONOTONIC receive time (figures themselves come from the
payloads' own stamps). Every wait has a deadline; ``kill()`` SIGKILLs the namespace's init, which makes the
kernel kill everything else in the namespace, so a hung init can never hang the suite.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

UNSHARE = ("unshare", "-fp", "--mount-proc")


class InitTimeout(RuntimeError):
    """An init did not produce the expected output before the deadline."""


class NsInit:
    """A context manager: ``with NsInit(argv) as ns: ns.wait_for(...)``; the namespace is killed on exit."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None):
        self.argv = list(argv)
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.lines: list[tuple[int, str]] = []
        self.launch_ns = 0
        self.eof = False
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._init_pid: int | None = None

    def __enter__(self) -> NsInit:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()

    def start(self) -> None:
        self.launch_ns = time.monotonic_ns()
        self._proc = subprocess.Popen(
            [*UNSHARE, *self.argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            now = time.monotonic_ns()
            with self._cond:
                self.lines.append((now, raw.decode("utf-8", "replace").rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def wait_for(
        self, pattern: str | re.Pattern[str], count: int = 1, timeout: float = 10.0, start: int = 0
    ) -> list[re.Match[str]]:
        """Wait until ``count`` lines (from line index ``start``) match ``pattern``; return the matches."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for _, line in self.lines[start:] if (m := rx.search(line))]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    tail = "\n".join(line for _, line in self.lines[-8:])
                    rc = self._proc.poll() if self._proc is not None else None
                    why = (
                        f"exited (status {rc})"
                        if self.eof
                        else f"no {count}x {rx.pattern!r} within {timeout:.0f}s"
                    )
                    raise InitTimeout(f"{self.argv[0]}: {why}; last output:\n{tail}")
                self._cond.wait(min(left, 0.5))

    def matches(self, pattern: str | re.Pattern[str]) -> list[re.Match[str]]:
        """Every line seen so far that matches ``pattern``."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        with self._cond:
            return [m for _, line in self.lines if (m := rx.search(line))]

    def init_pid(self, timeout: float = 5.0) -> int:
        """The host PID of the namespace's PID 1 (the child that ``unshare -f`` forked)."""
        if self._init_pid is not None:
            return self._init_pid
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kids = children(self._proc.pid)
            if kids:
                self._init_pid = kids[0]
                return kids[0]
            if self._proc.poll() is not None:
                break
            time.sleep(0.001)
        raise InitTimeout(f"{self.argv[0]}: no PID 1 found")

    def tree(self) -> list[int]:
        """PID 1 and all its descendants (host PIDs), breadth first."""
        todo, seen = [self.init_pid()], []
        while todo and len(seen) < 100_000:
            pid = todo.pop(0)
            seen.append(pid)
            todo.extend(children(pid))
        return seen

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the init to exit by itself; return its status (None on timeout)."""
        assert self._proc is not None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL the namespace's init (the kernel then kills the whole namespace) and reap ``unshare``."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            try:
                os.kill(self.init_pid(timeout=1.0), signal.SIGKILL)
            except (InitTimeout, ProcessLookupError):
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` from /proc/<pid>/task/*/children ([] if it is gone)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(x) for x in fh.read().split())
        except OSError:
            continue
    return out
