"""Container start -> first job exec: pypilot vs tini as the ENTRYPOINT of the same image.

    python benchmarks/image_start.py [--runs 10] [--json FILE] [--keep]

Builds the image with tests/image/build.sh (podman, local Debian base), plus a sibling image with Debian's
tini added, then starts containers of both, interleaved, each running one job:

    sh -c 'echo START <PID 1 start tick> <own start tick> <date +%s%N>'

Two figures per run: ``total`` is podman run -> the job's first exec (wall clock, host and container share
it), podman's own start-up included; ``in_container`` is PID 1's start -> the job's start, from their
/proc start times (clock ticks, 10 ms here; PID 1's is when runc's init forked, before it set the container
up and exec'd the ENTRYPOINT, so both include that). Medians are reported, pypilot/tini as ratios and
pypilot - tini as differences (the difference is what pypilot itself costs). It is a
benchmark, not a test: it asserts nothing. The containers and the two images are removed at the end
(podman's layer cache under the build.sh cache stays) unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD_SH = REPO / "tests" / "image" / "build.sh"
TINI_IMAGE = "localhost/pypilot-tini:bench"
JOB = "echo START $(cut -d' ' -f22 /proc/1/stat) $(cut -d' ' -f22 /proc/$$/stat) $(date +%s%N)"
START = re.compile(r"START (\d+) (\d+) (\d+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Podman:
    def __init__(self) -> None:
        env_sh = subprocess.run(["bash", str(BUILD_SH), "--env"], capture_output=True, text=True, check=True)
        out = env_sh.stdout
        env = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in out.splitlines())
        self.argv = ["podman", *shlex.split(env["PODMAN_ARGS"])]
        self.env = {**os.environ, "CONTAINERS_CONF": env["CONTAINERS_CONF"]}
        self.image = env["PYPILOT_IMAGE"]

    def __call__(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        p = subprocess.run(
            [*self.argv, *args], env=self.env, input=stdin, capture_output=True, text=True, timeout=600
        )
        if check and p.returncode != 0:
            raise RuntimeError(f"podman {shlex.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p.stdout + p.stderr


def build(pm: Podman) -> None:
    subprocess.run(["bash", str(BUILD_SH)], check=True)
    with tempfile.TemporaryDirectory() as ctx:
        containerfile = (
            f"FROM {pm.image}\n"
            "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends"
            " tini && rm -rf /var/lib/apt/lists/*\n"
        )
        pm("build", "--format", "docker", "-t", TINI_IMAGE, "-f", "-", ctx, stdin=containerfile)


def one_run(pm: Podman, which: str, config: Path) -> dict[str, float]:
    name = f"pypilot-bench-{which}-{uuid.uuid4().hex[:8]}"
    common = ["run", "-d", "--pull", "never", "--no-healthcheck", "--name", name]
    if which == "pypilot":
        args = [*common, "-v", f"{config}:/etc/containerpilot.json5:ro", TINI_IMAGE]
    else:
        args = [*common, "--entrypoint", "/usr/bin/tini", TINI_IMAGE, "--", "sh", "-c", JOB]
    try:
        t0 = time.time_ns()
        pm(*args)
        deadline = time.monotonic() + 30
        while not (m := START.search(pm("logs", name, check=False))):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{which}: no job output in 30 s:\n{pm('logs', name, check=False)}")
            time.sleep(0.01)
        pid1_tick, job_tick, job_ns = (int(g) for g in m.groups())
        return {"total": (job_ns - t0) / 1e6, "in_container": (job_tick - pid1_tick) * 1000 / CLK_TCK}
    finally:
        pm("rm", "-f", "-t", "0", name, check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="runs of each (interleaved)")
    ap.add_argument("--json", type=Path, help="also write the results here as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the images")
    opts = ap.parse_args()

    pm = Podman()
    build(pm)
    samples: dict[str, list[dict[str, float]]] = {"pypilot": [], "tini": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "bench.json5"
            config.write_text(
                json.dumps(
                    {"consul": "localhost:8500", "jobs": [{"name": "first", "exec": ["sh", "-c", JOB]}]}
                )
            )
            for which in samples:  # warm-up: page cache, podman's own first-run work
                one_run(pm, which, config)
            for _ in range(opts.runs):
                for which in samples:
                    samples[which].append(one_run(pm, which, config))
    finally:
        if not opts.keep:
            pm("rmi", "-f", TINI_IMAGE, pm.image, check=False)

    result: dict[str, object] = {"runs": opts.runs, "clock_tick_ms": 1000 / CLK_TCK}
    for which, runs in samples.items():
        for key in ("total", "in_container"):
            result[f"{which}_{key}_ms"] = round(statistics.median(r[key] for r in runs), 1)
    for key in ("total", "in_container"):
        tini = float(result[f"tini_{key}_ms"])  # type: ignore[arg-type]
        pypilot = float(result[f"pypilot_{key}_ms"])  # type: ignore[arg-type]
        result[f"{key}_ratio"] = round(pypilot / tini, 2) if tini > 0 else None
        result[f"{key}_diff_ms"] = round(pypilot - tini, 1)

    print(f"container start -> first job exec, median of {opts.runs} runs each (ms)")
    print(f"{'':10}{'podman run -> job':>20}{'PID 1 -> job':>16}")
    for which in samples:
        print(f"{which:10}{result[f'{which}_total_ms']:>20}{result[f'{which}_in_container_ms']:>16}")
    print(f"{'ratio':10}{result['total_ratio']!s:>20}{result['in_container_ratio']!s:>16}")
    print(f"{'diff':10}{result['total_diff_ms']:>20}{result['in_container_diff_ms']:>16}")
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
