"""``pypilot.promtext`` writes what prometheus-client wrote (differential: the library is a test
dependency here, the worker no longer imports it), and its process metrics are those of
prometheus-client's ``ProcessCollector``."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from pypilot import promtext

prom = pytest.importorskip("prometheus_client")
from prometheus_client import core as prom_core  # noqa: E402
from prometheus_client.process_collector import ProcessCollector  # noqa: E402

HELPS = ["plain", "a \\ backslash", "two\nlines", "", 'quote " and é']
VALUES = [0.0, 1.0, 42.0, -3.5, 0.1, 1e-9, 123456789.0, 1.5e300, math.inf, -math.inf, math.nan, 2.0**63]
LABELS = ["web", 'a "quoted" one', "back\\slash", "new\nline", "ünï", ""]
NAMES = ["app_requests", "ns:sub:name", "app.requests", "1st", "snake_case_total", "é"]


class Families:
    """The same families, built through both libraries."""

    def __init__(self, lib: object) -> None:
        self.lib = lib
        self.families: list[object] = []

    def collect(self):  # prometheus-client's collector protocol
        return iter(self.families)


def build(lib, name: str, help_: str, value: float, label: str) -> list[object]:
    out = []
    m = lib.Metric(name, help_, "counter")
    m.add_sample(name, {}, value)
    out.append(m)
    out.append(lib.GaugeMetricFamily(name + "_g", help_, value=value))
    g = lib.GaugeMetricFamily(name + "_gl", help_, labels=["service"])
    g.add_metric([label], value)
    g.add_metric(["zzz"], 1.0)
    out.append(g)
    buckets = [("0.005", 0.0), ("0.5", 2.0), ("10", 3.0), ("+Inf", 4.0)]
    out.append(lib.HistogramMetricFamily(name + "_h", help_, buckets=buckets, sum_value=value))
    s = lib.Metric(name + "_s", help_, "summary")
    for q in ("0.5", "0.9", "0.99"):
        s.add_sample(name + "_s", {"quantile": q}, value)
    s.add_sample(name + "_s_sum", {}, value)
    s.add_sample(name + "_s_count", {}, 3.0)
    out.append(s)
    e = lib.Metric("containerpilot_events", help_, "counter")
    e.add_sample("containerpilot_events", {"source": label, "code": "ExitSuccess"}, value)
    out.append(e)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_the_page_is_prometheus_clients_byte_for_byte(name: str) -> None:
    for i, value in enumerate(VALUES):
        help_, label = HELPS[i % len(HELPS)], LABELS[i % len(LABELS)]
        ours = promtext.generate(build(promtext, name, help_, value, label))
        registry = prom.CollectorRegistry(auto_describe=False)
        theirs = Families(prom_core)
        theirs.families = build(prom_core, name, help_, value, label)
        registry.register(theirs)
        assert ours == prom.generate_latest(registry), (name, value, help_, label)


def test_go_float_formatting_matches() -> None:
    from prometheus_client.utils import floatToGoString

    for v in [*VALUES, 1234567.0, 12345678.5, 0.000001, 5e-324, 1e21, 100.0, -1e7]:
        assert promtext.float_text(v) == floatToGoString(v)


def test_process_metrics_are_the_process_collectors() -> None:
    """Same names, help, types and values (the values that move between two reads excepted)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)"],
                             stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"up\n"  # running, past its exec
        ours = promtext.generate(promtext.ProcessMetrics(lambda: child.pid).collect())
        registry = prom.CollectorRegistry(auto_describe=False)
        ProcessCollector(pid=lambda: child.pid, registry=registry)
        theirs = prom.generate_latest(registry)
    finally:
        child.kill()
        child.wait()
    assert [ln for ln in ours.splitlines() if ln.startswith(b"#")] == [
        ln for ln in theirs.splitlines() if ln.startswith(b"#")]
    mine = dict(ln.rsplit(b" ", 1) for ln in ours.splitlines() if not ln.startswith(b"#"))
    ref = dict(ln.rsplit(b" ", 1) for ln in theirs.splitlines() if not ln.startswith(b"#"))
    assert mine.keys() == ref.keys() == {
        b"process_virtual_memory_bytes", b"process_resident_memory_bytes", b"process_start_time_seconds",
        b"process_cpu_seconds_total", b"process_open_fds", b"process_max_fds"}
    for key in (b"process_start_time_seconds", b"process_max_fds", b"process_open_fds",
                b"process_virtual_memory_bytes"):
        assert mine[key] == ref[key], key
    assert float(mine[b"process_resident_memory_bytes"]) > 1 << 20


def test_no_proc_no_process_metrics(tmp_path) -> None:
    assert promtext.ProcessMetrics(lambda: os.getpid(), proc=str(tmp_path)).collect() == []
