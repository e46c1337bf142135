"""Soak against the real Consul agent (issue 19): 40 s in CI, 10 minutes with ``-m slow``. pypilot as PID 1
with three services (one passing, one flapping between passing and failing every 3 s, so the TTL check goes
critical and back; issue 14), two watches, telemetry (scraped every round) and, every 15 rounds,
maintenance on and off; every 60 s (20 s in CI) the agent is killed with -9 and restarted empty, and each
service must be back within its heartbeat (1 s; the telemetry service's is 5 s). PID 1's and the workers'
RSS, fds and threads are sampled every round: RSS must not climb (least-squares slope over 10 minutes; total
growth in the short form, too short for a slope), fds and threads end where they started."""

from __future__ import annotations

import os
import time
import urllib.request
from dataclasses import dataclass

import psutil
import pytest

from tests.discovery.harness import LOCAL, Pilot, free_port, service_job, sid
from tests.real_consul import RealConsul
from tests.reliability.harness import slope

MiB = 1 << 20
FLAP = "test $(( $(date +%s) / 3 % 2 )) = 0"  # passes 3 s, fails 3 s


@dataclass
class Usage:
    t: float
    rss: int
    fds: int
    threads: int


def usage(procs: list[psutil.Process]) -> Usage:
    rss = fds = threads = 0
    for proc in procs:
        try:
            rss += proc.memory_info().rss
            fds += len(os.listdir(f"/proc/{proc.pid}/fd"))
            threads += proc.num_threads()
        except (psutil.NoSuchProcess, FileNotFoundError):
            pass
    return Usage(time.monotonic(), rss, fds, threads)


def workers(p: Pilot) -> list[psutil.Process]:
    return [psutil.Process(pid) for pid in p.worker_pids()]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("seconds", [pytest.param(40, id="40s"),
                                     pytest.param(600, id="10min", marks=pytest.mark.slow)])
def test_soak_against_the_real_agent_rss_fds_threads_flat(agent: RealConsul, seconds: int) -> None:
    port = free_port()
    cfg = {
        "consul": agent.address,
        "jobs": [
            service_job("app", 8000), service_job("web", 8080, tags=["a"]),
            service_job("flappy", 8081, check=["sh", "-c", FLAP], ttl=30),
            {"name": "onchange", "exec": ["echo", "changed"],
             "when": {"source": "watch.flappy", "each": "changed"}},
        ],
        "watches": [{"name": "flappy", "interval": 1}, {"name": "web", "interval": 1, "tag": "a"}],
        "telemetry": {"port": port, "interfaces": LOCAL},
    }
    def passing(*names: str) -> bool:
        return all(agent.passing(name) == [sid(name)] for name in names)

    def all_passing() -> bool:
        return passing("app", "web", "containerpilot")

    with Pilot(cfg) as p:
        p.until(all_passing, 15, "every service passing")
        p.until(lambda: p.count("changed") >= 2, 15, "flappy seen changing")  # warm-up: every path ran
        p.status()  # and the control worker is up (PID 1 answers pings itself): it is one of the workers
        pid1 = p.process()
        first = [usage([pid1])]
        first_workers = [usage(workers(p))]
        start = time.monotonic()
        rounds = restarts = maintenance = 0
        worst_back = 0.0
        restart_every = min(60.0, seconds / 2)
        next_restart = start + restart_every
        while time.monotonic() - start < seconds:
            rounds += 1
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                assert resp.status == 200 and b"containerpilot_events" in resp.read()
            states = {j["name"]: j["state"] for j in p.status()["jobs"]}
            assert [states[n] for n in ("app", "web", "flappy")] == ["running"] * 3, states
            if rounds % 15 == 0:
                maintenance += 1
                p.maintenance(True)
                p.until(lambda: sid("app") not in agent.services(), 5, "maintenance")
                p.maintenance(False)
                p.until(all_passing, 10, "back from maintenance")
            if time.monotonic() > next_restart:
                restarts += 1
                agent.kill()
                agent.start()
                up = time.monotonic()
                p.until(lambda: passing("app", "web"), 10, "back after the agent restarted empty")
                worst_back = max(worst_back, time.monotonic() - up)
                p.until(lambda: passing("containerpilot"), 10, "telemetry's service back (5 s heartbeat)")
                next_restart = time.monotonic() + restart_every
            first.append(usage([pid1]))
            first_workers.append(usage(workers(p)))
            time.sleep(1)  # the soak's pace: one round a second
        elapsed = time.monotonic() - start
        minutes = [(s.t - start) / 60 for s in first]
        report = []
        for label, samples in (("PID 1", first), ("workers", first_workers)):
            rss = slope(minutes, [s.rss for s in samples])
            fds = slope(minutes, [s.fds for s in samples])
            threads = slope(minutes, [s.threads for s in samples])
            report.append((label, samples, rss, fds, threads))
            print(f"\n{label}: RSS {samples[0].rss / MiB:.1f} -> {samples[-1].rss / MiB:.1f} MiB "
                  f"(slope {rss / 1024:.1f} KiB/min), fds {samples[0].fds} -> {samples[-1].fds} "
                  f"(slope {fds:.2f}/min), threads {samples[0].threads} -> {samples[-1].threads} "
                  f"(slope {threads:.2f}/min)")
        print(f"soak {elapsed:.0f} s: {rounds} rounds, {maintenance} maintenance cycles, {restarts} agent "
              f"restarts (worst re-registration {worst_back:.2f} s), {p.count('changed')} watch changes")
        for label, samples, rss, _, _ in report:
            if seconds >= 300:
                assert rss < 256 * 1024, f"{label}: RSS grows {rss / 1024:.1f} KiB/min"
            assert samples[-1].rss - samples[0].rss < 2 * MiB, label
            # the workers' pooled keep-alive connections to the agent come and go: one per calling
            # thread at most (4 services, 2 watches), whatever the length of the run
            assert samples[-1].fds <= samples[0].fds + (2 if label == "PID 1" else 6), label
            assert max(x.fds for x in samples) <= samples[0].fds + (2 if label == "PID 1" else 8), label
            assert samples[-1].threads == samples[0].threads, label
        assert restarts >= 1 and worst_back < 1.5  # heartbeat interval 1 s
        assert not p.lines(r"Traceback")
        assert p.stop() == 0
    assert agent.services() == {}
