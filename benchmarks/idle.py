"""Idle cost of each init with one sleeping ``stamp`` job: memory of its whole process tree, and CPU/wake-ups.

Memory: every system is started at once, and 2 s after its job stamped, RSS and PSS are summed from
``/proc/<pid>/smaps_rollup`` over the init's whole tree minus the payload (s6-svscan + s6-supervise,
runsvdir + runsv, ...); PID 1's own RSS is reported too. Median of ``repeats`` rounds. Then pypilot and
ContainerPilot 3.8 get one ``-ping`` each (what an image's ``HEALTHCHECK`` does; pypilot's PID 1 answers it
itself) and 3 s later the tree is read again: ``idle_ping_tree_rss``/``_pss``; then one ``-putenv`` (pypilot's
control worker starts) and the tree 3 s later: ``idle_ctl_tree_rss``/``_pss``.
CPU: one more round, all at once; after 2 s of settling, per-thread ``schedstat`` (on-CPU ns, timeslices) and
voluntary + involuntary context switches are read twice, ``idle_window_s`` apart (30 s in a full run).
Wake-ups per second = context switches in the window / window (an idle event loop should have none).
"""

from __future__ import annotations

import contextlib
import subprocess
import time

from . import procstat
from .harness import STAMP, Context
from .nsrun import InitTimeout, NsInit
from .peers import Job, Pypilot

SETTLE_S = 2.0


def _start_all(ctx: Context, stack: contextlib.ExitStack) -> dict[str, NsInit]:
    job = Job([ctx.p("stamp")])
    running: dict[str, NsInit] = {}
    for peer in ctx.peers:
        launch = peer.launch(job, ctx.ws.fresh())
        running[peer.name] = stack.enter_context(NsInit(launch.argv, launch.env))
    ready: dict[str, NsInit] = {}
    for name, ns in running.items():
        try:
            ns.wait_for(STAMP, timeout=20)
            ready[name] = ns
        except InitTimeout as exc:
            ctx.col.fail("idle_tree_rss", name, "MiB", exc)
    time.sleep(SETTLE_S)
    return ready


def _init_pids(ns: NsInit, payload: str) -> list[int]:
    return [pid for pid in ns.tree() if procstat.exe(pid) != payload]


def _after_request(ctx: Context, ready: dict[str, NsInit], payload: str, step: str, args: list[str]) -> None:
    """One control command to each CP-compatible init, and its tree 3 s later (``idle_{step}_*``)."""
    asked = []
    for peer in ctx.peers:
        if isinstance(peer, Pypilot) and peer.name in ready:
            config = ready[peer.name].argv[-1]
            res = subprocess.run([peer.binary(), "-config", config, *args], capture_output=True, timeout=30)
            if res.returncode != 0:
                ctx.col.fail(f"idle_{step}_tree_rss", peer.name, "MiB", f"{args[0]} exited {res.returncode}")
            else:
                asked.append(peer.name)
    time.sleep(3.0)
    for name in asked:
        pids = _init_pids(ready[name], payload)
        sizes = [procstat.smaps(pid) for pid in pids]
        rss, pss = sum(r for r, _ in sizes) / 1024, sum(p for _, p in sizes) / 1024
        ctx.col.add(f"idle_{step}_tree_rss", name, "MiB", rss, note=f"{len(pids)} processes")
        ctx.col.add(f"idle_{step}_tree_pss", name, "MiB", pss)


def measure(ctx: Context) -> None:
    payload = ctx.p("stamp")
    for _ in range(ctx.s.repeats):
        with contextlib.ExitStack() as stack:
            ready = _start_all(ctx, stack)
            for name, ns in ready.items():
                pids = _init_pids(ns, payload)
                sizes = [procstat.smaps(pid) for pid in pids]
                ctx.col.add(
                    "idle_tree_rss",
                    name,
                    "MiB",
                    sum(r for r, _ in sizes) / 1024,
                    note=f"{len(pids)} processes",
                )
                ctx.col.add("idle_tree_pss", name, "MiB", sum(p for _, p in sizes) / 1024)
                ctx.col.add("idle_pid1_rss", name, "MiB", sizes[0][0] / 1024 if sizes else 0.0)
            _after_request(ctx, ready, payload, "ping", ["-ping"])  # the HEALTHCHECK: PID 1 answers
            _after_request(ctx, ready, payload, "ctl", ["-putenv", "BENCH_PROBE=1"])  # the worker starts
    with contextlib.ExitStack() as stack:
        ready = _start_all(ctx, stack)
        pids = {name: _init_pids(ns, payload) for name, ns in ready.items()}
        before = {name: procstat.cpu(p) for name, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(ctx.s.idle_window_s)
        window = time.monotonic() - t0
        for name, p in pids.items():
            delta = procstat.cpu(p) - before[name]
            ctx.col.add(
                "idle_wakeups",
                name,
                "/s",
                (delta.voluntary + delta.involuntary) / window,
                note=f"timeslices {delta.slices / window:.2f}/s",
            )
            ctx.col.add("idle_cpu", name, "ms/s", delta.run_ns / 1e6 / window)
