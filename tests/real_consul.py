"""A real Consul agent for the tests: found, started on free loopback ports, restarted, observed.

``find_consul()`` looks for the binary as the README says: ``$PYPILOT_CONSUL``, else
``../shared/bin/consul`` beside the checkout, else ``consul`` on ``PATH``; it returns the path or the
reason there is none (the tests that need an agent are skipped with that reason).

``RealConsul`` runs ``consul agent -dev`` (in memory: every start is an agent without data, as a
restarted Consul container or ``consul agent -dev`` is) on ports chosen once, so a restart answers on the
same address; its data dir and logs live in a temp dir. The agent logs each HTTP request it served
at debug level (``http: Request GET /v1/health/service/app?index=9&passing=1&wait=1s (1.0s)``):
``requests()`` reads them back, which is how the tests count what pypilot asked of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.pid1 import wait_for

ROOT = Path(__file__).resolve().parents[1]
REQUEST_LINE = re.compile(r"\[DEBUG\] http: Request (\w+) (\S+) \(")


def find_consul() -> tuple[str | None, str]:
    """(path of a Consul binary, or None; the reason when None)."""
    env = os.environ.get("PYPILOT_CONSUL")
    if env:
        if os.access(env, os.X_OK):
            return env, ""
        return None, f"$PYPILOT_CONSUL={env} is not an executable file"
    beside = ROOT.parent / "shared" / "bin" / "consul"
    if os.access(beside, os.X_OK):
        return str(beside), ""
    found = shutil.which("consul")
    if found:
        return found, ""
    return None, "no Consul agent: set $PYPILOT_CONSUL, or put consul in ../shared/bin/ or on PATH"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class RealConsul:
    """One agent, started and stopped by its owner (the module fixture); restartable on the same ports."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="pypilot-consul-"))
        self.http_port, *self.other_ports = free_ports(4)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.logs: list[Path] = []
        self._mark = (0, 0)  # (log file, line) where requests() starts counting

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> float:
        """Start a fresh agent (empty data dir); seconds until it has a leader and its node is in the
        catalog (what a registration needs)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        data = self.dir / f"data-{self.starts}"
        log = self.dir / f"agent-{self.starts}.log"
        self.logs.append(log)
        lan, wan, server = self.other_ports
        hcl = f"ports {{ dns = -1, serf_lan = {lan}, serf_wan = {wan}, server = {server} }}"
        began = time.monotonic()
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [self.binary, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
                 "-http-port", str(self.http_port), "-data-dir", str(data), "-log-level", "debug",
                 "-hcl", hcl],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"consul exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            return self._ready()

        try:
            wait_for(ready, timeout, "the consul agent's leader and its node in the catalog")
        except AssertionError as e:
            raise RuntimeError(f"{e}:\n{log.read_text()[-3000:]}") from None
        return time.monotonic() - began

    def _ready(self) -> bool:
        try:
            code, _, leader = self.get("/v1/status/leader", timeout=1)
            if code != 200 or not leader:
                return False
            code, _, nodes = self.get("/v1/catalog/nodes", timeout=1)
            return code == 200 and bool(nodes)
        except OSError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the agent and wait for it to exit (``sig`` SIGKILL: it leaves nothing behind)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(20)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)  # 1.0.1 exits 1 on SIGTERM: that is normal
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def clean(self) -> None:
        """Between tests: a running agent with no services, and the request count from here."""
        if not self.running():
            self.start()
        _, _, services = self.get("/v1/agent/services")
        for sid in services or {}:
            self.put(f"/v1/agent/service/deregister/{sid}")
        self.mark()

    # --- HTTP -----------------------------------------------------------------------------------

    def call(
        self, method: str, path: str, body: Any = None, timeout: float = 10.0
    ) -> tuple[int, dict[str, str], bytes]:
        data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{self.address}{path}", data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
        code, headers, body = self.call("GET", path, timeout=timeout)
        return code, headers, json.loads(body) if code == 200 and body else body.decode()

    def put(self, path: str, body: Any = None) -> tuple[int, str]:
        code, _, data = self.call("PUT", path, b"" if body is None else body)
        return code, data.decode()

    # --- what the agent has ---------------------------------------------------------------------

    def services(self) -> dict[str, Any]:
        return dict(self.get("/v1/agent/services")[2])

    def checks(self) -> dict[str, Any]:
        return dict(self.get("/v1/agent/checks")[2])

    def check(self, check_id: str) -> dict[str, Any] | None:
        try:
            return self.checks().get(check_id)
        except OSError:
            return None

    def passing(self, name: str) -> list[str]:
        """IDs of the instances Consul itself reports passing (``/v1/health/service/NAME?passing``)."""
        try:
            code, _, entries = self.get(f"/v1/health/service/{name}?passing")
        except OSError:
            return []
        return sorted(e["Service"]["ID"] for e in entries) if code == 200 else []

    def settle(self, name: str, wait: str = "1s", tries: int = 10) -> int:
        """Until ``/v1/health/service/NAME``'s index holds for ``wait`` (the agent syncs registrations to
        its catalog in the background, moving the index once more): that index."""
        _, headers, _ = self.get(f"/v1/health/service/{name}")
        index = int(headers["X-Consul-Index"])
        for _ in range(tries):
            _, headers, _ = self.get(f"/v1/health/service/{name}?index={index}&wait={wait}", timeout=30)
            new = int(headers["X-Consul-Index"])
            if new == index:
                return index
            index = new
        raise AssertionError(f"the index of {name} kept moving")

    # --- what the agent was asked -----------------------------------------------------------------

    def mark(self) -> None:
        """``requests()`` counts from here on."""
        n = len(self.logs)
        self._mark = (n - 1, len(self._lines(self.logs[-1]))) if n else (0, 0)

    def requests(self, match: Callable[[str, str], bool] | None = None) -> list[tuple[str, str]]:
        """(method, path?query) of every request the agent served since ``mark()``, in order."""
        out = []
        first, skip = self._mark
        for i, log in enumerate(self.logs[first:], first):
            for line in self._lines(log)[skip if i == first else 0:]:
                m = REQUEST_LINE.search(line)
                if m and (match is None or match(m.group(1), m.group(2))):
                    out.append((m.group(1), m.group(2)))
        return out

    @staticmethod
    def _lines(log: Path) -> list[str]:
        try:
            return log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
