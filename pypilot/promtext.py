"""Prometheus text exposition (format 0.0.4) and the ``process_*`` metrics, for the discovery worker.

What ``pypilot.telemetry`` used of prometheus-client, without importing it: its package ``__init__``
loads every exposition helper it has (push gateway, WSGI and ASGI servers: ``urllib.request``,
``wsgiref``, ``http.server``, ``ssl``), ~7 MiB of RSS in a worker that only writes a page of text
(issue #15). The output is prometheus-client's, byte for byte (``tests/discovery/test_promtext.py``
compares the two): families in collection order, ``# HELP`` (``\\`` and newlines escaped) and ``# TYPE``
lines, a counter family named ``<name>_total``, samples with their labels sorted by name and values
escaped (``\\``, newline, ``"``), names outside Prometheus' legacy character set written with ``_``
for each other character, values as Go formats floats (``floatToGoString``).

``process_metrics`` reads what prometheus-client's ``ProcessCollector`` reads from ``/proc/PID``:
virtual and resident memory, start time, CPU seconds, open and maximum file descriptors.
"""

from __future__ import annotations

import math
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

__all__ = ["GaugeMetricFamily", "HistogramMetricFamily", "Metric", "ProcessMetrics", "float_text", "generate"]

Sample = tuple[str, dict[str, str], float]


class Metric:
    """One family: name, help, type and its samples ``(name, labels, value)``."""

    def __init__(self, name: str, documentation: str, typ: str) -> None:
        if not name:
            raise ValueError("metric name cannot be empty")
        self.name, self.documentation, self.type = name, documentation, typ
        self.samples: list[Sample] = []

    def add_sample(self, name: str, labels: dict[str, str], value: float) -> None:
        self.samples.append((name, labels, value))


class GaugeMetricFamily(Metric):
    def __init__(self, name: str, documentation: str, value: float | None = None,
                 labels: Sequence[str] | None = None) -> None:
        super().__init__(name, documentation, "gauge")
        self.labelnames = tuple(labels or ())
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self.add_sample(self.name, dict(zip(self.labelnames, labels, strict=False)), value)


class CounterMetricFamily(Metric):
    def __init__(self, name: str, documentation: str, value: float) -> None:
        super().__init__(name.removesuffix("_total"), documentation, "counter")
        self.add_sample(self.name + "_total", {}, value)


class HistogramMetricFamily(Metric):
    """Cumulative ``buckets`` ``[(le, count), ..., ("+Inf", count)]`` and their sum."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[tuple[str, float]],
                 sum_value: float | None = None) -> None:
        super().__init__(name, documentation, "histogram")
        for le, n in buckets:
            self.add_sample(self.name + "_bucket", {"le": le}, n)
        if buckets and float(buckets[0][0]) >= 0 and sum_value is not None:  # +Inf, last, is the count
            self.add_sample(self.name + "_count", {}, buckets[-1][1])
            self.add_sample(self.name + "_sum", {}, sum_value)


def float_text(value: float) -> str:
    """A value as Go's ``strconv.FormatFloat(v, 'g', -1, 64)`` writes the ones Prometheus shows."""
    d = float(value)
    if d == math.inf:
        return "+Inf"
    if d == -math.inf:
        return "-Inf"
    if d != d:
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to an exponent sooner than Python does
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def _legacy(name: str, label: bool) -> str:
    """``name`` in Prometheus' legacy character set (``[a-zA-Z_:][a-zA-Z0-9_:]*``; no ``:`` in a label
    name), each other character written as ``_``."""
    out = []
    for i, c in enumerate(name):
        ok = c.isascii() and (c.isalpha() or c == "_" or (c == ":" and not label) or (c.isdigit() and i > 0))
        out.append(c if ok else "_")
    return "".join(out)


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_value(value: str) -> str:
    return str(value).replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _sample_line(name: str, labels: dict[str, str], value: float) -> str:
    if labels:
        inner = ",".join(f'{_legacy(k, True)}="{_escape_value(v)}"' for k, v in sorted(labels.items()))
        return f"{_legacy(name, False)}{{{inner}}} {float_text(value)}\n"
    return f"{_legacy(name, False)} {float_text(value)}\n"


def generate(families: Iterable[Metric]) -> bytes:
    """The text page for ``families``, in their order."""
    out: list[str] = []
    for metric in families:
        mname, mtype = metric.name, metric.type
        if mtype == "counter":
            mname += "_total"
        elif mtype == "unknown":
            mtype = "untyped"
        out.append(f"# HELP {_legacy(mname, False)} {_escape_help(metric.documentation)}\n")
        out.append(f"# TYPE {_legacy(mname, False)} {mtype}\n")
        extra: dict[str, list[str]] = {}
        for name, labels, value in metric.samples:
            suffix = next((s for s in ("_created", "_gsum", "_gcount") if name == metric.name + s), None)
            if suffix is None:
                out.append(_sample_line(name, labels, value))
            else:  # OpenMetrics-only samples: a gauge of their own, after the family
                extra.setdefault(suffix, []).append(_sample_line(name, labels, value))
        for suffix, lines in sorted(extra.items()):
            extra_name = _legacy(metric.name + suffix, False)
            out.append(f"# HELP {extra_name} {_escape_help(metric.documentation)}\n")
            out.append(f"# TYPE {extra_name} gauge\n")
            out.extend(lines)
    return "".join(out).encode("utf-8")


class ProcessMetrics:
    """``process_*`` of the process ``pid()`` names (a PID or ``self``), from ``/proc``."""

    def __init__(self, pid: Callable[[], int | str], proc: str = "/proc") -> None:
        self.pid, self.proc = pid, proc
        try:
            self.ticks = float(os.sysconf("SC_CLK_TCK"))
        except (ValueError, OSError):
            self.ticks = 100.0
        self.pagesize = os.sysconf("SC_PAGESIZE")
        self.btime = 0.0  # also: can /proc be read at all
        try:
            with open(os.path.join(proc, "stat"), "rb") as f:
                for line in f:
                    if line.startswith(b"btime "):
                        self.btime = float(line.split()[1])
                        break
        except OSError:
            pass

    def collect(self) -> list[Metric]:
        if not self.btime:
            return []
        base = os.path.join(self.proc, str(self.pid()).strip())
        out: list[Metric] = []
        try:
            with open(os.path.join(base, "stat"), "rb") as f:
                parts = f.read().split(b")")[-1].split()  # after the command name, which may hold spaces
            out += [
                GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                                  value=float(parts[20])),
                GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in bytes.",
                                  value=float(parts[21]) * self.pagesize),
                GaugeMetricFamily("process_start_time_seconds",
                                  "Start time of the process since unix epoch in seconds.",
                                  value=float(parts[19]) / self.ticks + self.btime),
                CounterMetricFamily("process_cpu_seconds_total",
                                    "Total user and system CPU time spent in seconds.",
                                    value=float(parts[11]) / self.ticks + float(parts[12]) / self.ticks),
            ]
        except OSError:
            pass
        try:
            max_fds = None
            with open(os.path.join(base, "limits"), "rb") as f:
                for line in f:
                    if line.startswith(b"Max open file"):
                        max_fds = GaugeMetricFamily(
                            "process_max_fds", "Maximum number of open file descriptors.",
                            value=float(line.split()[3]))
                        break
            open_fds = GaugeMetricFamily("process_open_fds", "Number of open file descriptors.",
                                         value=len(os.listdir(os.path.join(base, "fd"))))
            out += [open_fds] + ([max_fds] if max_fds is not None else [])
        except OSError:
            pass
        return out
