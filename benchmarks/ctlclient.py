"""Control API client for the control-latency measure; runs in the peers venv (circus needs pyzmq).

``python ctlclient.py KIND ADDRESS COUNT`` sends COUNT requests one after another and prints a JSON object
``{"ms": [latency per request], "errors": N, "first_error": "..."}``. KIND: ``pypilot`` (HTTP
``GET /v3/ping`` on a unix socket), ``supervisord`` (XML-RPC ``supervisor.getState`` on a unix socket),
``circus`` (ZeroMQ ``list`` command). Every request has a 5 s timeout; the whole run stops after 60 s.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import time
import xmlrpc.client
from collections.abc import Callable

TIMEOUT_S = 5.0
BUDGET_S = 60.0


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT_S)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT_S)
        sock.connect(self.path)
        self.sock = sock


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def make_connection(self, host: object) -> http.client.HTTPConnection:
        return UnixHTTPConnection(self.path)


def pypilot(addr: str) -> Callable[[], None]:
    def call() -> None:
        conn = UnixHTTPConnection(addr)
        conn.request("GET", "/v3/ping")
        resp = conn.getresponse()
        resp.read()
        conn.close()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")

    return call


def supervisord(addr: str) -> Callable[[], None]:
    proxy = xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport(addr))

    def call() -> None:
        proxy.supervisor.getState()

    return call


def circus(addr: str) -> Callable[[], None]:
    from circus.client import CircusClient

    client = CircusClient(endpoint=addr, timeout=TIMEOUT_S)

    def call() -> None:
        res = client.send_message("list")
        if res.get("status") != "ok":
            raise RuntimeError(str(res))

    return call


def main(argv: list[str]) -> int:
    kind, addr, count = argv[0], argv[1], int(argv[2])
    call = {"pypilot": pypilot, "supervisord": supervisord, "circus": circus}[kind](addr)
    out: dict[str, object] = {"ms": [], "errors": 0, "first_error": ""}
    latencies: list[float] = out["ms"]  # type: ignore[assignment]
    end = time.monotonic() + BUDGET_S
    for _ in range(count):
        if time.monotonic() > end:
            break
        t0 = time.perf_counter_ns()
        try:
            call()
        except Exception as exc:
            out["errors"] = int(out["errors"]) + 1  # type: ignore[call-overload]
            out["first_error"] = out["first_error"] or f"{type(exc).__name__}: {exc}"
            continue
        latencies.append((time.perf_counter_ns() - t0) / 1e6)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
