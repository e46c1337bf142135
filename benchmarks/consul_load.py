"""Consul load: 100 jobs with services and 1 s checks against the Consul stand-in, normal then slow.

Run: ``python -m benchmarks.consul_load [--jobs 100] [--window 10]``. pypilot runs as PID 1 (unshare)
with the discovery worker wired (``tests/discovery/runner.py``); a PID-1 timer every 10 ms records how
late it fires. For each phase (agent answering at once; agent answering every call after 2 s) it
prints the Consul calls per second pypilot sent, by kind, PID 1's timer lateness p50/p99/max, and how
many services pass. Then the shutdown with the slow agent (time to exit, services left registered)
and the memory of the workers (RSS and USS: what a worker costs beyond the pages it shares with PID 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import psutil  # noqa: E402

from tests.consul_standin import ConsulStandin  # noqa: E402
from tests.discovery.harness import LOCAL, free_port, service_job  # noqa: E402
from tests.discovery.harness import ProbePilot as Pilot  # noqa: E402


def kind(path: str) -> str:
    for prefix, name in (("/v1/agent/check/update/", "ttl update"),
                         ("/v1/agent/service/register", "register"),
                         ("/v1/agent/service/deregister/", "deregister"), ("/v1/health/service/", "watch")):
        if path.startswith(prefix):
            return name
    return path


def window(standin: ConsulStandin, p: Pilot, seconds: float) -> tuple[dict[str, float], dict[str, float]]:
    p.cmd("probe_stats")  # drop what came before
    start_n, start = len(standin.requests()), time.monotonic()
    time.sleep(seconds)
    reqs = standin.requests()[start_n:]
    elapsed = time.monotonic() - start
    rates = {k: n / elapsed for k, n in Counter(kind(r.path) for r in reqs).items()}
    rates["all"] = len(reqs) / elapsed
    return rates, p.cmd("probe_stats")


def memory(p: Pilot) -> list[tuple[str, float, float]]:
    out = []
    for child in psutil.Process(p.host_pid).children():
        try:
            if "python" not in child.name():
                continue
            info = child.memory_full_info()
            threads = child.num_threads()
            name = f"discovery worker ({threads} threads)" if threads > 2 else "health worker"
            out.append((name, info.rss / 2**20, info.uss / 2**20))
        except psutil.Error:
            continue
    me = psutil.Process(p.host_pid).memory_full_info()
    return [("PID 1", me.rss / 2**20, me.uss / 2**20), *out]


def passing_count(standin: ConsulStandin, n: int) -> int:
    return sum(1 for i in range(n) if standin.health(f"svc{i}", passing=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--delay", type=float, default=2.0)
    ap.add_argument("--no-telemetry", action="store_true", help="to see what telemetry adds to the worker")
    args = ap.parse_args()
    with ConsulStandin() as standin:
        jobs = [service_job(f"svc{i}", 10000 + i, ttl=10) for i in range(args.jobs)]
        cfg = {"consul": standin.address, "jobs": jobs, "stopTimeout": 10}
        if not args.no_telemetry:
            cfg["telemetry"] = {"port": free_port(), "interfaces": LOCAL}
        with Pilot(cfg) as p:
            deadline = time.monotonic() + 60
            while passing_count(standin, args.jobs) < args.jobs and time.monotonic() < deadline:
                time.sleep(0.5)
            p.cmd("probe", period=0.01)
            rows = []
            rates, lat = window(standin, p, args.window)
            rows.append(("agent answers at once", rates, lat, passing_count(standin, args.jobs)))
            standin.set_delay(args.delay)
            time.sleep(args.delay + 1)
            rates, lat = window(standin, p, args.window)
            slow = f"agent answers after {args.delay:g} s"
            rows.append((slow, rates, lat, passing_count(standin, args.jobs)))
            mem = memory(p)
            t0 = time.monotonic()
            code = p.stop(timeout=30)
            stop_s = time.monotonic() - t0
            left = len(standin.services())
            standin.set_delay(0)
    extra = "" if args.no_telemetry else ", plus telemetry and its containerpilot service"
    print(f"\n{args.jobs} jobs with services, 1 s checks, TTL 10 s{extra}; "
          f"{args.window:g} s windows; PID-1 probe timer every 10 ms\n")
    print(f"{'phase':<28} {'calls/s':>8} {'ttl upd/s':>9} {'register/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'passing':>8}")
    for name, rates, lat, ok in rows:
        print(f"{name:<28} {rates.get('all', 0):>8.1f} {rates.get('ttl update', 0):>9.1f} "
              f"{rates.get('register', 0):>10.1f} {lat['p50'] * 1e3:>7.2f} {lat['p99'] * 1e3:>7.2f} "
              f"{lat['max'] * 1e3:>7.2f} {ok:>5}/{args.jobs}")
    print(f"\nstop with the slow agent: exit {code} after {stop_s:.2f} s, {left} service(s) left registered")
    print(f"\n{'process':<40} {'RSS MiB':>8} {'USS MiB':>8}")
    for name, rss, uss in mem:
        print(f"{name[:40]:<40} {rss:>8.1f} {uss:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
