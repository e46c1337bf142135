"""Prometheus telemetry (CP §7), served from the I/O worker: ``/metrics`` and ``/status`` over TCP.

This module owns the metric values and their exposition. It runs only in the I/O worker; PID 1
never imports it. The page is prometheus-client's exposition (its registry, metric families, process
collector and text format), imported without the modules of its push-gateway and server helpers, which
are not used (``lean_imports.unused``, ~8 MiB); it is served by ``pypilot.telemetry_server`` (one thread).
Values come from three places:

- the declared metrics (``telemetry.metrics``: counter, gauge, histogram, summary) are fed by bus
  ``Metric`` events, ``key|value``, forwarded by PID 1. A key matches a metric by its Prometheus name
  (``namespace_subsystem_name`` with empty parts skipped) and also by CP's literal join, so both
  ``-putmetric name=1`` and CP's ``__name=1`` reach a metric declared with only ``name`` (CP's bug fixed).
  A negative counter increment is a logged error (CP panicked);
- PID 1's own counts, pulled at each scrape (``snapshot``): ``containerpilot_events{code,source}`` and,
  when the control plane keeps them, ``containerpilot_control_http_requests{code,path}``;
- the watches: ``containerpilot_watch_instances{service}``.

Names are exposed exactly as ContainerPilot (client_golang) did: a counter is ``name``, not the
``name_total`` that prometheus-client would write; histograms use the default buckets and summaries
the quantiles 0.5/0.9/0.99 over the last 10 minutes. ``process_*`` describes PID 1 (the container's
init), ``python_*`` this worker. The server listens on ``telemetry.ip:port`` only, never 0.0.0.0.
"""

from __future__ import annotations

import bisect
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from pypilot import logs
from pypilot.gofmt import go_float as _go_float
from pypilot.lean_imports import unused

# gzip and socketserver too: only its own servers and the push gateway use them (~0.3 MiB)
with unused("http.server", "urllib.request", "urllib.error", "wsgiref.simple_server", "ssl", "gzip",
            "socketserver"):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
    from prometheus_client.process_collector import ProcessCollector

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # client defaults (CP §7.1)
QUANTILES = (0.5, 0.9, 0.99)
SUMMARY_AGE = 600.0  # Go's DefMaxAge
SUMMARY_KEEP = 10_000  # observations kept for the quantiles (oldest dropped first)
LISTEN_TRIES = 10  # CP: listening is retried 10 × 1 s
Snapshot = Callable[[], dict[str, Any]]
_INTEGRAL = re.compile(rb"^([^#\n][^\n]* -?\d+)\.0$", re.M)


class _Declared:
    """One metric from the config and its value(s)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        ns, sub, name = cfg.get("namespace") or "", cfg.get("subsystem") or "", cfg.get("name") or ""
        self.name = "_".join(p for p in (ns, sub, name) if p)
        self.keys = {self.name, f"{ns}_{sub}_{name}"}
        self.help = str(cfg.get("help") or "")
        self.type = str(cfg.get("type") or "")
        self.value = 0.0
        self.sum = 0.0
        self.count = 0
        self.buckets = [0] * len(BUCKETS)
        self.window: deque[tuple[float, float]] = deque(maxlen=SUMMARY_KEEP)

    def record(self, v: float) -> None:
        if self.type == "counter":
            if v < 0:
                raise ValueError(f"counter cannot decrease in value (got {_go_float(v)})")
            self.value += v
        elif self.type == "gauge":
            self.value = v
        else:
            self.sum += v
            self.count += 1
            if self.type == "histogram":
                i = bisect.bisect_left(BUCKETS, v)
                if i < len(BUCKETS):
                    self.buckets[i] += 1
            else:
                self.window.append((time.monotonic(), v))

    def family(self) -> Metric:
        if self.type == "counter":
            m = Metric(self.name, self.help, "counter")
            m.add_sample(self.name, {}, self.value)
            return m
        if self.type == "gauge":
            return GaugeMetricFamily(self.name, self.help, value=self.value)
        if self.type == "histogram":
            cumulative, running = [], 0
            for le, n in zip(BUCKETS, self.buckets, strict=True):
                running += n
                cumulative.append((_go_float(le), running))
            cumulative.append(("+Inf", self.count))
            return HistogramMetricFamily(self.name, self.help, buckets=cumulative, sum_value=self.sum)
        m = Metric(self.name, self.help, "summary")
        horizon = time.monotonic() - SUMMARY_AGE
        while self.window and self.window[0][0] < horizon:
            self.window.popleft()
        values = sorted(v for _, v in self.window)
        for q in QUANTILES:
            value = values[min(int(q * len(values)), len(values) - 1)] if values else float("nan")
            m.add_sample(self.name, {"quantile": str(q)}, value)
        m.add_sample(f"{self.name}_sum", {}, self.sum)
        m.add_sample(f"{self.name}_count", {}, float(self.count))
        return m


class _Collector:
    """Everything on /metrics but the process collector, read under one lock."""

    def __init__(self, owner: Telemetry) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        t = self.owner
        snap = t.snapshot()
        with t.lock:
            for metric in t.metrics:
                yield metric.family()
            instances = dict(t.watch_instances)
        events = snap.get("events") or []
        if events:
            m = Metric("containerpilot_events", "count of events by code and source", "counter")
            for code, source, n in events:
                m.add_sample("containerpilot_events", {"code": str(code), "source": str(source)}, float(n))
            yield m
        http = snap.get("http") or []
        if http:
            m = Metric(
                "containerpilot_control_http_requests", "count of requests to control socket", "counter"
            )
            for code, path, n in http:
                labels = {"code": str(code), "path": str(path)}
                m.add_sample("containerpilot_control_http_requests", labels, float(n))
            yield m
        if instances:
            g = GaugeMetricFamily(
                "containerpilot_watch_instances", "count of healthy instances of a watched service",
                labels=["service"],
            )
            for service, n in sorted(instances.items()):
                g.add_metric([service], float(n))
            yield g


class Telemetry:
    """The metric values and the HTTP server; thread-safe (the server's thread and the worker's threads)."""

    def __init__(self, cfg: dict[str, Any], version: str, snapshot: Snapshot) -> None:
        self.lock = threading.Lock()
        self.version = version
        self._snapshot = snapshot
        self.metrics: list[_Declared] = []
        self.watch_instances: dict[str, int] = {}
        self.cfg: dict[str, Any] = {}
        self.reconfigure(cfg)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        pid1 = _pid1_visible()
        ProcessCollector(namespace="", pid=lambda: 1 if pid1 else "self", registry=self.registry)
        self._server: Any = None
        self._stopped = threading.Event()

    def reconfigure(self, cfg: dict[str, Any]) -> None:
        """Declared metrics keep their values when a reload keeps them (same name and type)."""
        with self.lock:
            old = {(m.name, m.type): m for m in self.metrics}
            new = []
            for mc in cfg.get("metrics") or ():
                declared = _Declared(mc)
                new.append(old.get((declared.name, declared.type), declared))
            self.metrics = new
            self.cfg = cfg

    # -- values ------------------------------------------------------------------------------

    def record(self, data: str) -> None:
        """A bus ``Metric`` event's source, ``key|value`` (CP §7.2). Errors are logged, never raised."""
        parts = data.split("|")
        if len(parts) < 2:
            logs.error(f"metric: invalid metric format: {data}")
            return
        key, text = parts[0], parts[1]
        with self.lock:
            targets = [m for m in self.metrics if key in m.keys]
        if not targets:
            return  # CP: unknown keys are ignored
        try:
            value = float(text.strip())
        except ValueError:
            logs.error(f"metric produced non-numeric value: {text}")
            return
        for metric in targets:
            try:
                with self.lock:
                    metric.record(value)
            except ValueError as e:
                logs.error(f"metric {metric.name}: {e}")

    def set_watch_instances(self, service: str, count: int) -> None:
        with self.lock:
            self.watch_instances[service] = count

    def snapshot(self) -> dict[str, Any]:
        try:
            return self._snapshot()
        except Exception as e:
            logs.warn(f"telemetry: no snapshot from pypilot: {e}")
            return {}

    def metrics_text(self) -> bytes:
        text = generate_latest(self.registry)
        # prometheus-client names a counter family ``x_total``; ContainerPilot's was ``x``
        text = _INTEGRAL.sub(rb"\1", text)  # Go writes 42, Python 42.0 (values only, never labels)
        for name in self._counter_names():
            text = text.replace(f"# HELP {name}_total ".encode(), f"# HELP {name} ".encode())
            text = text.replace(f"# TYPE {name}_total counter".encode(), f"# TYPE {name} counter".encode())
        return text

    def _counter_names(self) -> list[str]:
        with self.lock:
            names = [m.name for m in self.metrics if m.type == "counter"]
        return [*names, "containerpilot_events", "containerpilot_control_http_requests"]

    def status_body(self) -> bytes:
        """``/status`` (CP §7.3): jobs without a service, services, watches; empty lists are null."""
        snap = self.snapshot()
        jobs, services = [], []
        for name, status, has_service, address, port in snap.get("jobs") or ():
            if has_service:
                services.append({"Name": name, "Address": address, "Port": port, "Status": status})
            else:
                jobs.append({"Name": name, "Status": status})
        body = {
            "Version": self.version,
            "Jobs": jobs or None,
            "Services": services or None,
            "Watches": list(snap.get("watches") or ()) or None,
        }
        return json.dumps(body, separators=(",", ":")).encode() + b"\n"  # Go's json.Encoder ends with one

    # -- server ------------------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._serve, name="telemetry", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        server = self._server
        if server is not None:
            server.stop()

    def respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        """What the server answers (CP §7.3): status, content type and body."""
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics_text()
        if path == "/status" and method != "GET":
            return 405, "text/plain; charset=utf-8", b"Method Not Allowed\n"  # Go's http.Error, as CP
        if path == "/status":
            return 200, "application/json", self.status_body()
        return 404, "text/plain; charset=utf-8", b"404 page not found\n"

    def _serve(self) -> None:
        """The server thread: listen (CP's 10 tries, 1 s apart), then serve until ``stop``."""
        from pypilot.telemetry_server import Server

        ip = str(self.cfg.get("ip") or "")
        port = int(self.cfg.get("port") or 9090)
        if not ip:
            logs.error("telemetry: no address to listen on (no interface matched); not serving")
            return
        addr = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        for attempt in range(LISTEN_TRIES):
            try:
                listener = _listen(ip, port)
                break
            except OSError as e:
                if attempt == LISTEN_TRIES - 1:
                    logs.error(f"error listening to socket at {addr}: {e}")
                    return
                if self._stopped.wait(1.0):
                    return
        try:
            self._server = Server(listener, self.respond)
        except OSError as e:  # no fd left for its wake-up pipe: say so rather than end the thread unseen
            listener.close()
            logs.error(f"telemetry: cannot serve at {addr}: {e}")
            return
        logs.info(f"telemetry: serving /metrics and /status at {addr}")
        if self._stopped.is_set():  # stopped while we were binding: ``stop`` saw no server to stop
            self._server.stop()
        self._server.run()


def _listen(ip: str, port: int) -> socket.socket:
    from pypilot.consul_http import ascii_host  # an ASCII address as bytes: no idna codec loaded for it

    family, kind, proto, _, sockaddr = socket.getaddrinfo(ascii_host(ip), port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _pid1_visible() -> bool:
    try:
        with open("/proc/1/stat", "rb"):
            return True
    except OSError:
        return False
