"""Test harness: pypilot's real entry point (``python -m pypilot -config FILE``) as PID 1 of a fresh PID
namespace, talking to a Consul stand-in or a real agent on 127.0.0.1, driven through its real control
socket (``/v3/status``, ``/v3/maintenance/*``, ``/v3/metric``); helpers to wait for conditions."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psutil

from pypilot.control.client import UnixHTTPConnection
from tests.pid1 import Pilot as BasePilot
from tests.pid1 import wait_for

ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()
LOCAL = ["static:127.0.0.1"]
PID1_STALL = 0.5  # seconds: a /v3/ping slower than this means PID 1's loop waited (an outage is longer)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sid(name: str) -> str:
    return f"{name}-{HOST}"


class PingProbe:
    """Pings PID 1 through the control socket every 20 ms in a thread; the slowest answer seen."""

    def __init__(self, control: str) -> None:
        self.control = control
        self.worst = 0.0
        self.count = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            began = time.monotonic()
            try:
                status, _, _ = http(self.control, "GET", "/v3/ping", timeout=30)
            except OSError:
                status = 0
            self.worst = max(self.worst, time.monotonic() - began)
            self.count += 1
            self.failed += status != 200


def http(sock: str, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, str, Any]:
    conn = UnixHTTPConnection(sock, timeout)
    try:
        data = None if body is None else orjson.dumps(body)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed = orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError:
            parsed = raw.decode(errors="replace")
        return resp.status, resp.getheader("Content-Type") or "", parsed
    finally:
        conn.close()


class Pilot(BasePilot):
    """``pypilot -config`` as PID 1, no CONSUL_* variables from the caller, its control socket ready."""

    def __init__(self, config: dict[str, Any], pid1: bool = True, env: dict[str, str] | None = None) -> None:
        super().__init__(config, pid1, env)
        self.control = str(self.dir / "control.sock")
        self._wait_ready()

    def _wait_ready(self) -> None:
        wait_for(lambda: self._connectable(self.control) or self.proc.poll() is not None, 10, "control")

    @staticmethod
    def _connectable(path: str) -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(path)
                return True
            except OSError:
                return False

    def environment(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}

    # --- the control API ---------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> Any:
        status, _, data = http(self.control, method, path, body)
        assert status == 200, (method, path, status, data)
        return data

    def status(self) -> dict[str, Any]:
        return dict(self.api("GET", "/v3/status"))

    def job_status(self, name: str) -> str:
        return str(next(j for j in self.status()["jobs"] if j["name"] == name)["status"])

    def maintenance(self, on: bool) -> None:
        self.api("POST", f"/v3/maintenance/{'enable' if on else 'disable'}")

    def metric(self, metrics: dict[str, Any]) -> None:
        self.api("POST", "/v3/metric", metrics)

    @contextmanager
    def pid1_probe(self) -> Iterator[PingProbe]:
        """PID 1's answers to ``/v3/ping`` while the block runs: the worst must stay under PID1_STALL."""
        http(self.control, "GET", "/v3/ping", timeout=30)  # PID 1 answers pings itself: latency is its stall
        probe = PingProbe(self.control)
        probe._thread.start()
        try:
            yield probe
        finally:
            probe._stop.set()
            probe._thread.join(35)

    # --- observing ----------------------------------------------------------------------------

    def count(self, text: str) -> int:
        return self.log().count(text)

    def wait_log(self, text: str, count: int = 1, timeout: float = 10.0) -> list[str]:  # type: ignore[override]
        wait_for(lambda: self.log().count(text) >= count, timeout,
                 f"{count} x {text!r} in the log; tail:\n{self.log()[-3000:]}")
        return [ln for ln in self.log().splitlines() if text in ln]

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


class ProbePilot(Pilot):
    """For ``benchmarks/consul_load.py``: the real entry point plus ``tests/discovery/runner.py``'s probe
    socket (PID 1 timer lateness), driven with ``cmd``."""

    def command(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "tests.discovery.runner", str(self.config_path), self._probe_path()]

    def _probe_path(self) -> str:
        return str(self.dir / "probe.sock")

    def _wait_ready(self) -> None:  # not the control socket: its first connection starts a worker
        wait_for(lambda: self._connectable(self._probe_path()) or self.proc.poll() is not None, 10, "probe")

    def cmd(self, cmd: str, **kw: Any) -> Any:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self._probe_path())
            s.sendall(orjson.dumps({"cmd": cmd, **kw}) + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return orjson.loads(buf)


def service_job(name: str, port: int, *, check: str = "true", interval: int = 1, ttl: int = 5,
                exec_: str | list[str] = "sleep 1000", **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "exec": exec_, "port": port, "interfaces": LOCAL,
        "health": {"exec": check, "interval": interval, "ttl": ttl}, **extra,
    }


def monotonic() -> float:
    return time.monotonic()
