"""Test harness: pypilot (with discovery wired, see runner.py) as PID 1 of a fresh PID namespace,
talking to a Consul stand-in on 127.0.0.1; helpers to wait for conditions and send test commands."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psutil

from tests.pid1 import Pilot as BasePilot
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


class Pilot(BasePilot):
    """pypilot with a test control socket (see runner.py), talking to a Consul stand-in."""

    def __init__(self, config: dict[str, Any], pid1: bool = True, env: dict[str, str] | None = None) -> None:
        super().__init__(config, pid1, env)
        self.control = self._control_path()
        wait_for(lambda: os.path.exists(self.control) or self.proc.poll() is not None, 10, "control socket")

    def _control_path(self) -> str:
        return str(self.dir / "test-control.sock")

    def config_text(self, config: dict[str, Any] | str) -> str:
        return config if isinstance(config, str) else orjson.dumps(config).decode()

    def command(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "tests.discovery.runner", str(self.config_path), self._control_path()]

    def environment(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}

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

    def count(self, text: str) -> int:
        return self.log().count(text)

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        wait_for(lambda: text in self.log(), timeout, f"{text!r} in the log; tail:\n{self.log()[-3000:]}")

    def until(self, cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        try:
            return wait_for(cond, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\nlog tail:\n{self.log()[-3000:]}") from None

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



def service_job(name: str, port: int, *, check: str = "true", interval: int = 1, ttl: int = 5,
                exec_: str = "sleep 1000", **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "exec": exec_, "port": port, "interfaces": LOCAL,
        "health": {"exec": check, "interval": interval, "ttl": ttl}, **extra,
    }


def monotonic() -> float:
    return time.monotonic()
