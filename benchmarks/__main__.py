"""``python -m benchmarks [--quick] [--only NAME[,NAME]] [--repeats N] [--no-install] [--no-chart]``

Runs pypilot and its peers (tini, dumb-init, s6, runit, supervisord, circus), each as PID 1 of a fresh PID
namespace, on the same C payloads, in one run, and reports ratios. Needs root (``unshare -p``). Installs
missing peers first. Writes ``benchmarks/results/raw-<time>.{json,md,png}``; a full run also refreshes
``latest.*``. ``--quick`` is the CI smoke test (< 2 min): small storms, one repeat, short windows; it asserts
nothing about speed but exits 1 if a measure crashes or pypilot fails one. Measures: launch, reap, idle,
restart, dispatch, spawn, control, profile, bundle, tree, upgrade.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

from . import (
    bundle,
    control,
    dispatch,
    idle,
    launch,
    payloads,
    peers,
    profile,
    reap,
    report,
    restart,
    spawn,
    tree,
    upgrade,
)
from .common import RESULTS_DIR, Result, Settings, log
from .harness import Collector, Context, Workspace

MEASURES: dict[str, ModuleType] = {
    "launch": launch,
    "reap": reap,
    "idle": idle,
    "restart": restart,
    "dispatch": dispatch,
    "spawn": spawn,
    "control": control,
    "profile": profile,
    "bundle": bundle,
    "tree": tree,
    "upgrade": upgrade,
}


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _steal() -> tuple[int, int]:
    """(steal, total) jiffies from /proc/stat: how much CPU the hypervisor took."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def _render(path: Path, chart: bool) -> int:
    """Re-render ``<stem>.md`` (and ``.png``) next to a results JSON, e.g. after a report fix."""
    data = json.loads(path.read_text())
    fields = {f.name for f in dataclasses.fields(Result)}
    results = [Result(**{k: v for k, v in r.items() if k in fields}) for r in data["results"]]
    python = peers.ensure_matplotlib() if chart else None
    print(report.write(results, data["meta"], path.parent, path.stem, chart, python))
    return 0


def _busy(window: float = 1.0) -> float:
    """Percent of all CPUs busy (not idle/iowait) over ``window`` seconds: what else runs on the machine."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)

    idle0, total0 = sample()
    time.sleep(window)
    idle1, total1 = sample()
    return 100.0 * (1 - (idle1 - idle0) / max(1, total1 - total0))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="CI smoke test: small and fast, checks nothing about speed"
    )
    ap.add_argument("--only", default="", help=f"comma-separated measures: {', '.join(MEASURES)}")
    ap.add_argument("--repeats", type=int, default=None, help="runs per figure (default 5, --quick 1)")
    ap.add_argument("--peers", default="", help="comma-separated systems to run (default: all available)")
    ap.add_argument("--no-install", action="store_true", help="do not install missing peers")
    ap.add_argument("--no-chart", action="store_true", help="skip the PNG (and installing matplotlib)")
    ap.add_argument("--containerpilot", metavar="PATH", help="ContainerPilot 3.8 binary")
    ap.add_argument("--render", metavar="JSON", help="only redraw the table and chart of a results JSON")
    args = ap.parse_args(argv)
    if args.render:
        return _render(Path(args.render), not args.no_chart)
    if os.geteuid() != 0:
        print(
            "benchmarks need root: every init runs as PID 1 of a new PID namespace (unshare -p)",
            file=sys.stderr,
        )
        return 2
    only = [m for m in args.only.split(",") if m] or list(MEASURES)
    unknown = [m for m in only if m not in MEASURES]
    if unknown:
        ap.error(f"unknown measure(s) {unknown}; choose from {', '.join(MEASURES)}")
    if args.containerpilot:
        peers.ContainerPilot.path = Path(args.containerpilot)
    settings = Settings.make(args.quick, args.repeats)
    if not args.no_install:
        peers.ensure_installed()
    built = payloads.build()
    wanted = [p for p in args.peers.split(",") if p]
    systems = [p for p in peers.INITS if p.available() and (not wanted or p.name in wanted)]
    missing = [p.name for p in peers.INITS if not p.available()]
    if missing:
        log(f"not available, skipped: {', '.join(missing)}")
    versions = {p.name: p.version() for p in systems}
    col, ws = Collector(), Workspace()
    ctx = Context(settings, built, systems, peers.BASELINE, col, ws)
    busy0 = _busy()
    started, load0, steal0 = time.time(), os.getloadavg(), _steal()
    crashed: list[str] = []
    try:
        for name in only:
            log(f"measure {name} (load {os.getloadavg()[0]:.2f})")
            try:
                MEASURES[name].measure(ctx)
            except Exception:
                crashed.append(name)
                log(f"measure {name} CRASHED:\n{traceback.format_exc()}")
    finally:
        ws.cleanup()
    steal1 = _steal()
    steal_pct = 100.0 * (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1])
    load1, busy1 = os.getloadavg(), _busy()
    meta: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "machine": f"{_cpu_model()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        "mode": "quick" if settings.quick else f"full, {settings.repeats} repeats",
        "noise": f"CPUs {busy0:.0f}% busy with other work just before the run, {busy1:.0f}% just after; "
        f"load average {load0[0]:.2f} at start, {load1[0]:.2f} at end (1 min); CPU steal {steal_pct:.1f}%; "
        "other engineers' tests share the 2 cores",
        "duration_s": round(time.time() - started, 1),
        "versions": versions,
        "settings": settings.__dict__,
        "crashed": crashed,
    }
    results = list(col.results.values())
    stem = time.strftime("raw-%Y%m%d-%H%M%S", time.gmtime(started)) + ("-quick" if settings.quick else "")
    python = None if args.no_chart else peers.ensure_matplotlib()
    md = report.write(results, meta, RESULTS_DIR, stem, not args.no_chart, python)
    if not settings.quick and only == list(MEASURES) and not wanted:
        report.write(results, meta, RESULTS_DIR, "latest", not args.no_chart, python)
    print(md)
    pypilot_errors = [r.measure for r in results if r.peer == "pypilot" and r.error]
    if crashed or pypilot_errors:
        log(f"FAILED: crashed measures {crashed}, pypilot errors in {pypilot_errors}")
        return 1
    log(f"done in {meta['duration_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
