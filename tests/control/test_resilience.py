"""The control plane never takes PID 1 down and answers in bounded time: a control worker killed
with -9 is replaced, requests are answered while PID 1 handles an exit storm, and rapid reloads
never deadlock."""

from __future__ import annotations

import os
import signal
import time

import orjson
import pytest

from tests.control.harness import KEEPER, ControlPilot, wait_for


def latencies(p: ControlPilot, n: int, path: str = "/v3/ping") -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        code, _, _ = p.http("GET", path)
        out.append(time.perf_counter() - t)
        assert code == 200
    return sorted(out)


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def test_control_worker_killed_with_9_is_replaced_pid1_unaffected() -> None:
    with ControlPilot() as p:
        first = p.status()["control"]["workerPid"]
        keeper = p.job("keeper")["pid"]
        os.kill(first, signal.SIGKILL)
        # the next request is answered by a new worker (it waits in the listen backlog meanwhile)
        code, _, body = p.http("GET", "/v3/ping")
        assert (code, body) == (200, b"\n")
        status = p.status()
        assert status["control"]["workerPid"] not in (None, first)
        assert status["control"]["workerRestarts"] == 1
        assert p.alive() and p.job("keeper")["pid"] == keeper  # PID 1 and its jobs did not notice
        assert "worker control" in p.log() and "died" in p.log()
        # again, mid-stream and repeatedly
        for _ in range(3):
            os.kill(p.status()["control"]["workerPid"], signal.SIGKILL)
            assert p.http("POST", "/v3/maintenance/enable")[0] == 200
        assert p.status()["maintenance"] is True
        assert p.stop() == 0


def test_requests_answered_in_bounded_time_during_an_exit_storm() -> None:
    # no backoff: quick clean exits are throttled by default, and this wants a storm
    storm = [
        {"name": f"storm{i}", "exec": ["true"], "restarts": "unlimited", "backoff": False} for i in range(4)
    ]
    with ControlPilot(jobs=[KEEPER, *storm], extra={"logging": {"level": "ERROR"}}) as p:
        idle_runs = sum(j["runs"] for j in p.status()["jobs"])
        t0 = time.monotonic()
        lat = latencies(p, 300)
        took = time.monotonic() - t0
        runs = sum(j["runs"] for j in p.status()["jobs"]) - idle_runs
        rate = runs / took
        print(
            f"\nexit storm: {rate:.0f} exits/s; ping p50 {pct(lat, 0.5) * 1e3:.1f} ms "
            f"p99 {pct(lat, 0.99) * 1e3:.1f} ms max {lat[-1] * 1e3:.1f} ms"
        )
        assert rate > 200, "not much of a storm"
        assert pct(lat, 0.99) < 0.25
        assert p.alive()


def test_idle_latency() -> None:
    with ControlPilot() as p:
        latencies(p, 20)
        lat = latencies(p, 300)
        print(f"\nidle: ping p50 {pct(lat, 0.5) * 1e3:.2f} ms p99 {pct(lat, 0.99) * 1e3:.2f} ms")
        assert pct(lat, 0.99) < 0.1


def test_spawn_failure_hot_loop_leaves_the_api_responsive() -> None:
    """anchors §1.6 #15 (circus #1157): a job whose exec is missing, restarting forever."""
    missing = {"name": "missing", "exec": ["/nonexistent/binary"], "restarts": "unlimited"}
    with ControlPilot(jobs=[KEEPER, missing]) as p:
        wait_for(lambda: p.job("missing")["runs"] >= 2, 10, "missing job retried")
        lat = latencies(p, 100, "/v3/status")
        assert pct(lat, 0.99) < 0.1


def test_config_reload_200_rapid_reloads_without_deadlock() -> None:
    with ControlPilot(control={"reload": "diff"}) as p:  # the diff reload keeps the unchanged job
        code, _, body = p.http("POST", "/v3/reload")
        assert (code, body) == (200, b"\n")
        keeper = p.job("keeper")["pid"]
        outcomes = []
        for _ in range(200):
            code, _, body = p.http("POST", "/v3/reload", headers={"Accept": "application/json"}, timeout=30)
            assert code == 200
            outcomes.append(orjson.loads(body))
        # one at a time, each answered once it was done: every one of them reloaded, none refused as
        # "already in progress" or rolled back
        assert [o["reloaded"] for o in outcomes] == [True] * 200, [o for o in outcomes if not o["reloaded"]]
        assert p.http("GET", "/v3/ping")[0] == 200
        # a reload that works after the storm, and the unchanged job kept its process
        code, _, body = p.http("POST", "/v3/reload")
        assert (code, body) == (200, b"\n")
        if p.job("keeper")["pid"] != keeper:
            pytest.fail("an unchanged job was restarted by a reload")


def test_pid1_not_answering_gives_503_not_a_hang() -> None:
    with ControlPilot() as p:
        assert p.http("GET", "/v3/status")[0] == 200  # the worker is up (PID 1 answers pings until then)
        os.kill(p.proc.pid, signal.SIGSTOP)  # PID 1 frozen: the worker must not wait forever
        try:
            t = time.monotonic()
            code, headers, body = p.http("GET", "/v3/ping", timeout=30)
            took = time.monotonic() - t
            assert (code, body) == (503, b"Service Unavailable\n")
            assert "in time" in headers["x-pypilot-error"]
            assert took < 10
        finally:
            os.kill(p.proc.pid, signal.SIGCONT)
        assert p.http("GET", "/v3/ping")[0] == 200  # and all is well again
