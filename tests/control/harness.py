"""Test harness for the control plane: pypilot with its control socket, and an HTTP client for it.

``ControlPilot`` runs pypilot (as a subreaper, not under unshare: the control plane does not care) on
a config whose ``control.socket`` is in a fresh temp dir. ``http`` sends one request over the unix
socket with ``http.client`` and returns ``(status, headers, body)``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from pypilot.control.client import UnixHTTPConnection
from tests.pid1 import wait_for

ROOT = Path(__file__).resolve().parents[2]
CONTROL_MAIN = [sys.executable, "-m", "pypilot", "-config"]

__all__ = ["CONTROL_MAIN", "KEEPER", "ROOT", "ControlPilot", "http", "wait_for"]


def http(
    sock: str,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    conn = UnixHTTPConnection(sock, timeout)
    try:
        data = body.encode() if isinstance(body, str) else body
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class ControlPilot:
    def __init__(
        self,
        jobs: list[dict[str, Any]] | None = None,
        control: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pypilot-control-"))
        self.socket = str(self.dir / "cp.socket")
        self.config = {
            "consul": "localhost:8500",
            "control": {"socket": self.socket, **(control or {})},
            "jobs": jobs if jobs is not None else [KEEPER],
            **(extra or {}),
        }
        self.socket = self.config["control"]["socket"]
        self.config_path = self.dir / "config.json5"
        self.write_config(self.config)
        self.log_path = self.dir / "out.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [*CONTROL_MAIN, str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env={**os.environ, "PYPILOT_CONTROL_TEST": str(os.getpid()), **(env or {})},
        )
        wait_for(lambda: self._connectable() or self.proc.poll() is not None, 10, "control socket")
        assert self.proc.poll() is None, self.log()

    def _connectable(self) -> bool:
        import socket

        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def write_config(self, config: dict[str, Any]) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(config))
        tmp.replace(self.config_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def http(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        return http(self.socket, method, path, body, headers, timeout)

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, _, data = self.http(method, path, None if body is None else orjson.dumps(body))
        return status, orjson.loads(data)

    def status(self) -> Any:
        code, data = self.json("GET", "/v3/status")
        assert code == 200, data
        return data

    def job(self, name: str) -> dict[str, Any]:
        return next(j for j in self.status()["jobs"] if j["name"] == name)

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """The control CLI (``pypilot.control.client.run_subcommand`` behind ``pypilot.cli.parse_args``)."""
        code = (
            "import sys; from pypilot.cli import parse_args; from pypilot.control.client import "
            "run_subcommand; sys.exit(run_subcommand(parse_args(sys.argv[1:])))"
        )
        return subprocess.run(
            [sys.executable, "-c", code, "-config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        """SIGTERM (pypilot stops its jobs), then SIGKILL if it takes too long."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()

    def __enter__(self) -> ControlPilot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


KEEPER = {"name": "keeper", "exec": ["sleep", "1000"], "restarts": "unlimited"}


def elapsed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


class EventStream:
    """A raw HTTP/1.0 client of ``GET /v3/events``: ``next_event()`` parses one server-sent event."""

    def __init__(self, sock_path: str, timeout: float = 10.0) -> None:
        import socket

        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(sock_path)
        self.sock.sendall(b"GET /v3/events HTTP/1.0\r\nHost: control\r\n\r\n")
        self.f = self.sock.makefile("rb")
        status = self.f.readline()
        assert b" 200 " in status, status
        self.headers: dict[str, str] = {}
        while (line := self.f.readline().rstrip(b"\r\n")) != b"":
            k, _, v = line.decode().partition(":")
            self.headers[k.strip().lower()] = v.strip()
        assert self.f.readline().startswith(b": pypilot events")  # sent once the subscription is on
        self.f.readline()

    def next_event(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("event stream closed")
            line = line.rstrip(b"\n").decode()
            if not line:
                if fields:
                    return fields
                continue
            if line.startswith(":"):
                continue
            k, _, v = line.partition(": ")
            fields[k] = orjson.loads(v) if k == "data" else v

    def wait_event(self, pred: Any, limit: int = 10_000) -> dict[str, Any]:
        for _ in range(limit):
            ev = self.next_event()
            if pred(ev["data"]):
                return ev
        raise AssertionError("event not seen")

    def close(self) -> None:
        self.f.close()
        self.sock.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
