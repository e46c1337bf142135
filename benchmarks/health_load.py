"""Health-check load: 200 jobs with 1 s exec checks, pypilot as PID 1 (the jobs issue's benchmark).

Run: ``python -m benchmarks.health_load [--jobs 200] [--window 20]``. Every job runs ``sleep`` and checks
``true`` every second, so the health worker spawns ~200 checks a second and PID 1 turns each result into
``healthy`` on the bus. Reported over the window: PID 1's CPU (share of one core, from /proc/PID/stat),
the health worker's, the checks per second that came back (``{StatusHealthy …}`` lines at DEBUG), the
timer lateness of PID 1's loop (a probe timer every 10 ms: p50/p99/max; target p99 ≤ 10 ms), and the
memory of the whole tree (RSS and PSS of PID 1 and its health worker, from smaps_rollup).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import psutil  # noqa: E402

from tests.discovery.harness import Pilot  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def memory(pid: int) -> tuple[float, float]:
    rss = pss = 0
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss / 1024, pss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--window", type=float, default=20.0)
    a = ap.parse_args()
    jobs = [{"name": f"app{i}", "exec": "sleep 100000", "health": {"exec": "true", "interval": 1, "ttl": 5}}
            for i in range(a.jobs)]
    with Pilot({"consul": "127.0.0.1:1", "logging": {"level": "DEBUG"}, "jobs": jobs}) as p:
        p.until(lambda: p.count("{StatusHealthy app") >= a.jobs, 60, "every job healthy once")
        worker = next(c for c in psutil.Process(p.host_pid).children() if "python" in c.name())
        p.cmd("probe", period=0.01)
        healthy0, t0 = p.count("{StatusHealthy app"), time.monotonic()
        cpu0, wcpu0 = cpu_seconds(p.host_pid), cpu_seconds(worker.pid)
        time.sleep(a.window)
        dt = time.monotonic() - t0
        cpu, wcpu = (cpu_seconds(p.host_pid) - cpu0) / dt, (cpu_seconds(worker.pid) - wcpu0) / dt
        rate = (p.count("{StatusHealthy app") - healthy0) / dt
        late = p.cmd("probe_stats")
        (rss1, pss1), (rss2, pss2) = memory(p.host_pid), memory(worker.pid)
        print(f"{a.jobs} jobs, 1 s exec checks, {dt:.0f} s window")
        print(f"  checks back per second      {rate:8.1f}   (ideal {a.jobs})")
        print(f"  PID 1 CPU                   {cpu * 100:7.1f} %")
        print(f"  health worker CPU           {wcpu * 100:7.1f} %")
        ms = {k: late[k] * 1000 for k in ("p50", "p99", "max")}
        print(f"  PID 1 timer lateness        p50 {ms['p50']:.2f} ms  p99 {ms['p99']:.2f} ms"
              f"  max {ms['max']:.2f} ms  (n={late['n']}; target p99 <= 10 ms)")
        print(f"  memory PID 1                RSS {rss1:.1f} MiB  PSS {pss1:.1f} MiB")
        print(f"  memory health worker        RSS {rss2:.1f} MiB  PSS {pss2:.1f} MiB")
        print(f"  whole tree (no jobs)        RSS {rss1 + rss2:.1f} MiB  PSS {pss1 + pss2:.1f} MiB"
              "  (ContainerPilot 3.8 idles at 14.7 MiB RSS)")
        p.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
