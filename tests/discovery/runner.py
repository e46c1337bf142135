"""The real entry point plus a probe socket, for ``benchmarks/consul_load.py`` (the tests use the real
entry point itself, ``tests/discovery/harness.py``).

``python -m tests.discovery.runner CONFIG CONTROL_SOCKET`` is ``pypilot -config CONFIG`` (it calls
``pypilot.__main__.run``) with one addition: a unix socket, served by PID 1's own loop, where the benchmark
sends one JSON request per connection: ``status`` (``sup.status()`` plus the loop's ``max_lateness``),
``reset_lateness``, ``maintenance``, ``metric``, and ``probe``/``probe_stats`` (timer
lateness percentiles of PID 1's loop).
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import orjson

from pypilot.supervisor import Supervisor


class TestControl:
    def __init__(self, sup: Supervisor, path: str) -> None:
        self.sup = sup
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.bufs: dict[int, tuple[socket.socket, bytearray]] = {}
        self.samples: list[float] = []
        sup.loop.add_reader(self.listener.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        fd = conn.fileno()
        self.bufs[fd] = (conn, bytearray())
        self.sup.loop.add_reader(fd, lambda: self._read(fd))

    def _read(self, fd: int) -> None:
        conn, buf = self.bufs[fd]
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        buf += data
        if data and not buf.endswith(b"\n"):
            return
        self.sup.loop.remove_reader(fd)
        del self.bufs[fd]
        try:
            reply = self.handle(orjson.loads(bytes(buf)))
        except Exception as e:
            reply = {"error": repr(e)}
        conn.setblocking(True)
        conn.settimeout(1.0)
        try:
            conn.sendall(orjson.dumps(reply, default=str) + b"\n")
        except OSError:
            pass
        conn.close()

    def handle(self, req: dict[str, Any]) -> Any:
        sup, cmd = self.sup, req["cmd"]
        if cmd == "status":
            return {**sup.status(), "max_lateness": sup.loop.max_lateness}
        if cmd == "reset_lateness":
            sup.loop.max_lateness = 0.0
            return {}
        if cmd == "maintenance":
            sup.set_maintenance(bool(req["on"]))
            return {}
        if cmd == "metric":
            sup.put_metrics(req["metrics"])
            return {}
        if cmd == "probe":  # a PID-1 timer every `period` s; each run records how late it fired
            self.samples: list[float] = []
            period = float(req.get("period", 0.01))
            loop = sup.loop

            def tick(deadline: float) -> None:
                self.samples.append(loop.now() - deadline)
                loop.call_at(deadline + period, lambda: tick(deadline + period))

            start = loop.now() + period
            loop.call_at(start, lambda: tick(start))
            return {}
        if cmd == "probe_stats":
            samples, self.samples = sorted(self.samples), []
            if not samples:
                return {"n": 0}
            pick = lambda q: samples[min(int(q * len(samples)), len(samples) - 1)]  # noqa: E731
            return {"n": len(samples), "p50": pick(0.5), "p99": pick(0.99), "max": samples[-1]}
        raise ValueError(f"unknown command {cmd}")


def main() -> int:
    config_path, control_path = sys.argv[1], sys.argv[2]
    from pypilot import supervisor
    from pypilot.__main__ import run

    real_init = supervisor.Supervisor.__init__

    def init(self: Supervisor, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        TestControl(self, control_path)

    supervisor.Supervisor.__init__ = init  # type: ignore[method-assign]
    return run(config_path)


if __name__ == "__main__":
    sys.exit(main())
