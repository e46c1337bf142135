"""In-place upgrade (issue #17): time from ``pypilot -upgrade PATH`` to the new PID 1 serving, and the longest
gap in a 100 ms interval job's ticks meanwhile (target: under 200 ms, and no missed tick).

pypilot runs as PID 1 (unshare) from install A of ``tests/upgrade/harness.make_installs`` (two launchers of
this checkout on two interpreters) with a long-running job, a 100 ms interval job that stamps
CLOCK_BOOTTIME into a file and a 1 s exec health check; each round upgrades it to the other install
(A → B → A ...). Figures per round:

- ``upgrade_to_serving``: harness CLOCK_MONOTONIC just before it starts the ``-upgrade`` CLI to the first
  ``GET /v3/status`` (polled every 2 ms on the control socket) answered by the new image (``upgrades``
  moved on). Includes the CLI's own interpreter start, as a user sees it.
- ``upgrade_cli``: the CLI's wall time to its exit 0 (it waits for the new image's confirmation).
- ``upgrade_tick_gap``: the longest interval between consecutive ticks that touches the round.
- ``upgrade_check`` and ``upgrade_exec``: where the time goes, from PID 1's log stamps: ``upgrade: checking``
  to ``upgrade: exec`` (the target's check run), and ``upgrade: exec`` to ``upgrade: resumed`` (the new
  image's start until it has taken the state over; no image runs the loop meanwhile).

This measures the checkout's code (the installs are made from it), not ``$PYPILOT_BIN``; it is pypilot's
own figure (no peer has an in-place upgrade). Run alone: ``python -m benchmarks.upgrade [--repeats 20]``
(prints median and p95), or as the ``upgrade`` measure of ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: tests/ is importable from the checkout
    sys.path.insert(0, str(ROOT))

from benchmarks.common import percentile  # noqa: E402

TO_SERVING, CLI, GAP = "upgrade_to_serving", "upgrade_cli", "upgrade_tick_gap"
CHECK, EXEC = "upgrade_check", "upgrade_exec"
STEPS = {CHECK: ("upgrade: checking ", "upgrade: exec "), EXEC: ("upgrade: exec ", "upgrade: resumed ")}


def _steps(log: str, i: int) -> dict[str, float]:
    """The i-th upgrade's check and exec times from the log, in ms."""
    from tests.upgrade.harness import log_time

    out = {}
    for name, (first, then) in STEPS.items():
        a = [ln for ln in log.splitlines() if first in ln][i]
        b = [ln for ln in log.splitlines() if then in ln][i]
        out[name] = (log_time(b) - log_time(a)) * 1000
    return out


def _config(ticks: Path) -> dict[str, object]:
    return {
        "consul": "localhost:8500",
        "logging": {"level": "INFO"},
        "jobs": [
            {"name": "keeper", "exec": ["sleep", "100000"]},
            {"name": "checked", "exec": ["sleep", "100001"],
             "health": {"exec": "true", "interval": 1, "ttl": 5}},
            {"name": "ticker", "exec": ["sh", "-c", f'read up rest < /proc/uptime; echo "$up" >> {ticks}'],
             "when": {"interval": "100ms"}},
        ],
    }


def run(repeats: int) -> dict[str, list[float]]:
    """``repeats`` upgrades in a row; every figure in ms, one per round."""
    from tests.discovery.harness import http
    from tests.upgrade.harness import UpPilot, make_installs, max_gap, read_ticks, uptime, wait_for

    work = Path(tempfile.mkdtemp(prefix="pypilot-bench-upgrade-"))
    a, b = make_installs(work)
    ticks = work / "ticks"
    out: dict[str, list[float]] = {TO_SERVING: [], CLI: [], GAP: [], CHECK: [], EXEC: []}
    with UpPilot(_config(ticks), a) as p:
        wait_for(lambda: len(read_ticks(ticks)) >= 10, 20, "ticks")
        for i in range(repeats):
            target = b if i % 2 == 0 else a
            start_up, t0 = uptime(), time.monotonic()
            cli = p.start_upgrade(target.pypilot)
            serving = None
            while serving is None:
                try:
                    code, _, data = http(p.control, "GET", "/v3/status", timeout=30)
                except OSError:
                    code, data = 0, None
                if code == 200 and data["pypilot"]["upgrades"] == i + 1:
                    serving = time.monotonic()
                elif cli.poll() is not None and cli.returncode != 0:
                    raise RuntimeError(f"upgrade {i} failed: {cli.stderr.read() if cli.stderr else ''}")
                else:
                    time.sleep(0.002)
            _, err = cli.communicate(timeout=60)
            done, end_up = time.monotonic(), uptime()
            if cli.returncode != 0:
                raise RuntimeError(f"upgrade {i} failed: {err.strip()}")
            after = end_up + 0.3
            wait_for(lambda: read_ticks(ticks)[-1] > after, 10, "ticks after")  # noqa: B023 (used at once)
            out[TO_SERVING].append((serving - t0) * 1000)
            out[CLI].append((done - t0) * 1000)
            out[GAP].append(max_gap(read_ticks(ticks), start_up, end_up) * 1000)
            for name, ms in _steps(p.log(), i).items():
                out[name].append(ms)
    return out


def measure(ctx: object) -> None:
    """The ``upgrade`` measure of ``python -m benchmarks``: pypilot only."""
    from .harness import Context

    assert isinstance(ctx, Context)
    if not any(p.name == "pypilot" for p in ctx.peers):
        return
    repeats = max(3, ctx.s.repeats) if ctx.s.quick else max(10, ctx.s.repeats * 4)
    try:
        figures = run(repeats)
    except (RuntimeError, AssertionError, OSError) as exc:
        for name in (TO_SERVING, CLI, GAP, CHECK, EXEC):
            ctx.col.fail(name, "pypilot", "ms", exc)
        return
    for name, values in figures.items():
        note = f"p95 {percentile(values, 95):.1f} ms over {len(values)} upgrades (A → B → A ...)"
        for v in values:
            ctx.col.add(name, "pypilot", "ms", v, note=note)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root: pypilot runs as PID 1 of a new PID namespace (unshare -p)", file=sys.stderr)
        return 2
    figures = run(args.repeats)
    print(f"in-place upgrade, {args.repeats} rounds (A → B → A ...), 100 ms interval job running")
    labels = {TO_SERVING: "-upgrade -> new PID 1 serving", CLI: "-upgrade CLI until it exits 0",
              GAP: "longest gap between 100 ms ticks", CHECK: "  of which: the target's check",
              EXEC: "  of which: exec -> resumed"}
    for name, values in figures.items():
        ordered = sorted(values)
        print(f"  {labels[name]:34s} median {statistics.median(values):7.1f} ms   p95 "
              f"{percentile(values, 95):7.1f} ms   min {ordered[0]:.1f}   max {ordered[-1]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
