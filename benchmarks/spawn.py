"""Spawn throughput: a job that stamps and exits at once (the ``true`` of the payloads), restarted without
limit, until ``spawn_target`` execs or ``spawn_window_s`` seconds. Rate = (execs - 1) / (last stamp - first
stamp), from the payloads' own CLOCK_MONOTONIC, i.e. exits dispatched and respawned per second.
Only systems that restart a job can do this (s6 and runit enforce a 1 s floor, circus polls every 5 s).

pypilot also runs the literal form: the same job with ``restarts: N - 1``; pypilot exits by itself once the
job has completed (checked: exit status 0 and exactly N stamps), so N / (launch -> pypilot's exit) is spawns
per second including start-up and shutdown.
"""

from __future__ import annotations

import time

from .harness import STAMP, Context, guarded, stamp_of, started
from .peers import Job, Peer

MEASURE = "spawn_rate"


def measure(ctx: Context) -> None:
    repeats = min(ctx.s.repeats, 3)
    job = Job([ctx.p("stamp"), "0", "exit"], restart=True, throttle=False)

    def once(peer: Peer) -> float:
        with started(peer, job, ctx.ws) as (ns, _):
            ns.wait_for(STAMP, timeout=20)
            deadline = time.monotonic() + ctx.s.spawn_window_s
            while time.monotonic() < deadline and len(ns.matches(STAMP)) < ctx.s.spawn_target:
                time.sleep(0.05)
            end = time.monotonic_ns()
            stamps = [stamp_of(m)[1] for m in ns.matches(STAMP)][: ctx.s.spawn_target]
        if len(stamps) >= ctx.s.spawn_target:
            end = stamps[-1]  # reached the target: up to the last exec; otherwise the whole window counts
        return (len(stamps) - 1) / ((end - stamps[0]) / 1e9)

    def n_runs(peer: Peer) -> float:
        n = ctx.s.spawn_target
        job = Job([ctx.p("stamp"), "0", "exit"], restart=True, restart_count=n - 1)
        with started(peer, job, ctx.ws) as (ns, _):
            status = ns.wait_exit(timeout=ctx.s.spawn_window_s * 3 + 10)
            elapsed = (time.monotonic_ns() - ns.launch_ns) / 1e9
            runs = len(ns.matches(STAMP))
        if status != 0 or runs != n:
            raise ValueError(f"exit status {status} after {runs} of {n} runs")
        return n / elapsed

    for _ in range(repeats):
        for peer in (p for p in ctx.peers if p.name == "pypilot"):
            value = guarded(
                ctx.col, "spawn_n_selfexit", peer.name, "/s", lambda peer=peer: n_runs(peer), lower=False
            )
            if value is not None:
                ctx.col.add(
                    "spawn_n_selfexit",
                    peer.name,
                    "/s",
                    value,
                    lower=False,
                    note=f"{ctx.s.spawn_target} runs, launch to self-exit",
                )
        for peer in (p for p in ctx.peers if p.restarts):
            value = guarded(ctx.col, MEASURE, peer.name, "/s", lambda peer=peer: once(peer), lower=False)
            if value is not None:
                ctx.col.add(MEASURE, peer.name, "/s", value, lower=False)
