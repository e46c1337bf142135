"""Config start-up cost: load+validate a generated 200-job config, and the import cost of pypilot.config.

Run: ``python benchmarks/config_load.py [-n RUNS] [--jobs N]``. Prints a small table (median of RUNS loads,
each a fresh read, render, JSON5 parse and validation; interface IPs resolved from the host via psutil for the
jobs with a port) and the ``python -X importtime`` cumulative cost of the config package and its lazy parts.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_config(n: int) -> str:
    jobs = []
    for i in range(n):
        if i % 2:
            jobs.append(f'{{name: "svc-{i}", exec: ["/bin/app", "--port", "{{{{ .BASE_PORT }}}}{i}"],'
                        f' port: {8000 + i}, interfaces: ["eth0:inet", "inet", "lo"], tags: ["a", "b"],'
                        f' health: {{exec: "/bin/check {i}", interval: 5, ttl: 15, timeout: "2s"}},'
                        f' when: {{source: "svc-{i - 1}", once: "healthy", timeout: "60s"}}}}')
        else:
            jobs.append(f'{{name: "task-{i}", exec: "/bin/task {i}",'
                        f' when: {{interval: "{i % 7 + 1}s"}}, restarts: "unlimited", timeout: "500ms",'
                        f' logging: {{raw: true}}}} /* task {i} */')
    return ("{\n  consul: \"{{ .CONSUL | default \"localhost\" }}:8500\",\n"
            "  logging: {level: \"INFO\"},\n  jobs: [\n    " + ",\n    ".join(jobs) + "\n  ],\n"
            "  watches: [{name: \"db\", interval: 5}],\n}\n")


def time_load(path: str, runs: int) -> tuple[float, float]:
    sys.path.insert(0, ROOT)
    from pypilot.config import load

    env = dict(os.environ, BASE_PORT="1")
    load(path, env)  # warm: imports, psutil
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        load(path, env)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3, min(samples) * 1e3


def import_cost(stmt: str, pycache: str) -> dict[str, float]:
    """Cumulative milliseconds per module from ``-X importtime`` (median of 5 fresh interpreters).

    Bytecode is cached in ``pycache`` (a warm-up run fills it), as it is in an installed image, even when the
    calling environment sets PYTHONDONTWRITEBYTECODE.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=ROOT, PYTHONPYCACHEPREFIX=pycache)
    per: dict[str, list[float]] = {}
    for i in range(6):
        out = subprocess.run([sys.executable, "-X", "importtime", "-c", stmt], capture_output=True, text=True,
                             cwd=ROOT, env=env, check=True).stderr
        if i == 0:
            continue
        for line in out.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|(\s*)(\S+)", line)
            if m:
                per.setdefault(m.group(3), []).append(int(m.group(1)))
    return {k: statistics.median(v) / 1e3 for k, v in per.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", "--runs", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=200)
    args = ap.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".json5", delete=False) as f:
        f.write(make_config(args.jobs))
        path = f.name
    try:
        median, best = time_load(path, args.runs)
    finally:
        os.unlink(path)
    with tempfile.TemporaryDirectory() as pycache:
        base = import_cost("import pypilot.config", pycache)
        lazy = import_cost("import pypilot.config, pypilot.config.template, pypilot.config.decode, pyjson5",
                           pycache)
    rows = [
        (f"load+validate {args.jobs} jobs (median of {args.runs})", f"{median:8.2f} ms"),
        (f"load+validate {args.jobs} jobs (best)", f"{best:8.2f} ms"),
        ("import pypilot.config (cumulative)", f"{base.get('pypilot.config', 0):8.2f} ms"),
        ("  of which pypilot.config.model", f"{base.get('pypilot.config.model', 0):8.2f} ms"),
        ("lazy: pypilot.config.template", f"{lazy.get('pypilot.config.template', 0):8.2f} ms"),
        ("lazy: pypilot.config.decode", f"{lazy.get('pypilot.config.decode', 0):8.2f} ms"),
        ("lazy: pyjson5", f"{lazy.get('pyjson5', 0):8.2f} ms"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'config benchmark':<{width}}  {'time':>11}")
    print("-" * (width + 13))
    for name, val in rows:
        print(f"{name:<{width}}  {val:>11}")


if __name__ == "__main__":
    main()
