"""Test harness: pypilot (with discovery wired, see runner.py) as PID 1 of a fresh PID namespace,
talking to a Consul stand-in on 127.0.0.1; helpers to wait for conditions and send test commands."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psutil

from tests.pid1 import wait_for

ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()
LOCAL = ["static:127.0.0.1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sid(name: str) -> str:
    return f"{name}-{HOST}"


class Pilot:
    """One pypilot run: config written, started under unshare, log in a file, a control socket."""

    def __init__(self, config: dict[str, Any], pid1: bool = True, env: dict[str, str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pypilot-disc-"))
        self.config_path = self.dir / "config.json5"
        self.config_path.write_text(orjson.dumps(config).decode())
        self.control = str(self.dir / "control.sock")
        self.log_path = self.dir / "out.log"
        cmd = [sys.executable, "-m", "tests.discovery.runner", str(self.config_path), self.control]
        if pid1:
            cmd = ["unshare", "-fp", "--mount-proc", *cmd]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**clean, **(env or {})},
        )
        self.host_pid = self._find() if pid1 else self.proc.pid
        wait_for(lambda: os.path.exists(self.control) or self.proc.poll() is not None, 10, "control socket")

    def _find(self) -> int:
        def child() -> int | None:
            try:
                kids = psutil.Process(self.proc.pid).children()
            except psutil.NoSuchProcess:
                return None
            return kids[0].pid if kids else None

        return int(wait_for(child, 10, "pypilot to start under unshare"))

    def cmd(self, cmd: str, **kw: Any) -> Any:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.control)
            s.sendall(orjson.dumps({"cmd": cmd, **kw}) + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return orjson.loads(buf)

    def status(self) -> dict[str, Any]:
        return dict(self.cmd("status"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def count(self, text: str) -> int:
        return self.log().count(text)

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        wait_for(lambda: text in self.log(), timeout, f"{text!r} in the log; tail:\n{self.log()[-3000:]}")

    def until(self, cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        try:
            return wait_for(cond, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\nlog tail:\n{self.log()[-3000:]}") from None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def worker_pids(self) -> list[int]:
        try:
            kids = psutil.Process(self.host_pid).children()
        except psutil.NoSuchProcess:
            return []
        return [k.pid for k in kids if "python" in (k.name() or "")]

    def stop(self, timeout: float = 15.0) -> int:
        os.kill(self.host_pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pypilot did not exit; log tail:\n{self.log()[-3000:]}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            for pid in (self.host_pid, self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(10)
        self._log.close()

    def __enter__(self) -> Pilot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def service_job(name: str, port: int, *, check: str = "true", interval: int = 1, ttl: int = 5,
                exec_: str = "sleep 1000", **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "exec": exec_, "port": port, "interfaces": LOCAL,
        "health": {"exec": check, "interval": interval, "ttl": ttl}, **extra,
    }


def monotonic() -> float:
    return time.monotonic()
