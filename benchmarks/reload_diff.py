"""Reload of a 50-job config where one job changed (the control-plane issue's benchmark).

Run: ``python -m benchmarks.reload_diff [--jobs 50] [--repeats 5]``. pypilot runs as PID 1 (unshare) with
``--jobs`` long-running jobs; each round edits one job's exec and runs ``pypilot -reload``, timing the
command (validate → diff → stop the changed job → start it → its process is up → answer), and counts the
job PIDs that changed (the diff should restart exactly one). The same with ``control.reload: "restart"``
(ContainerPilot's full restart) for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import orjson  # noqa: E402
import psutil  # noqa: E402

from tests.pid1 import Pilot, wait_for  # noqa: E402


def pids(p: Pilot) -> dict[str, int]:
    """Job name (from the sleep's argument) → host PID, for every running job."""
    out = {}
    for c in p.children():
        try:
            cmd = c.cmdline()
        except psutil.Error:
            continue
        if cmd[:1] == ["sleep"]:
            out[cmd[1]] = c.pid
    return out


def run(jobs: int, repeats: int, mode: str) -> tuple[list[float], list[int]]:
    def config(round_: int) -> dict[str, object]:
        js = [
            {"name": f"job{i}", "exec": ["sleep", f"{100000 + i}.{round_ if i == 0 else 0}"]}
            for i in range(jobs)
        ]
        return {"control": {"reload": mode}, "jobs": js}

    times, restarted = [], []
    with Pilot(config(0)) as p:
        sock_cfg = p.config_path
        wait_for(lambda: len(pids(p)) == jobs, 30, "every job running")
        for r in range(1, repeats + 1):
            before = pids(p)
            text = orjson.loads(sock_cfg.read_bytes())
            text["jobs"] = config(r)["jobs"]
            sock_cfg.write_bytes(orjson.dumps(text))
            t0 = time.monotonic()
            res = subprocess.run(
                [sys.executable, "-m", "pypilot", "-reload", "-config", str(sock_cfg)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            times.append(time.monotonic() - t0)
            assert res.returncode == 0, res.stderr
            wait_for(lambda: len(pids(p)) == jobs, 30, "every job running again")
            after = pids(p)
            restarted.append(
                sum(
                    1
                    for name, pid in after.items()
                    if before.get(name.rsplit(".", 1)[0]) != pid and before.get(name) != pid
                )
            )
    return times, restarted


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    print(f"reload of a {a.jobs}-job config, one job's exec changed, {a.repeats} rounds")
    for mode in ("diff", "restart"):
        times, restarted = run(a.jobs, a.repeats, mode)
        print(
            f"  {mode:8s} time to done median {statistics.median(times) * 1000:7.1f} ms"
            f" (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}; includes the CLI's own start)"
            f"   processes restarted {sorted(set(restarted))}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
