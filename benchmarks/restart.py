"""Restart gap: a job that runs ``restart_run_ms`` (2 s; longer than every peer's "started too fast" rule),
then exits 0 (clean) or SIGKILLs itself (crash); gap = the next run's exec stamp minus the payload's own exit
stamp (both CLOCK_MONOTONIC, taken by the payload). First restart only; median of up to 3 runs.

Backoff curve (pypilot only): a job that crashes at once, restarted for ``backoff_window_s``; every gap
between the crash stamp and the next exec stamp, in order.
"""

from __future__ import annotations

from .harness import EXIT, STAMP, Context, each, guarded, stamp_of, started
from .peers import Job, Peer


def measure(ctx: Context) -> None:
    repeats = min(ctx.s.repeats, 3)
    run_ms = ctx.s.restart_run_ms
    peers = [p for p in ctx.peers if p.restarts]
    cases = [(mode, peer) for _ in range(repeats) for mode in ("exit", "crash") for peer in peers]

    def once(mode: str, peer: Peer) -> float:
        job = Job([ctx.p("stamp"), str(run_ms), mode], restart=True, startsecs=1)
        with started(peer, job, ctx.ws) as (ns, _):
            _, exit_mono, _ = stamp_of(ns.wait_for(EXIT, timeout=run_ms / 1000 + 20)[0])
            _, start_mono, _ = stamp_of(ns.wait_for(STAMP, count=2, timeout=30)[1])
            return (start_mono - exit_mono) / 1e6

    def trial(case: tuple[str, Peer]) -> None:
        mode, peer = case
        name = "restart_gap_clean" if mode == "exit" else "restart_gap_crash"
        value = guarded(ctx.col, name, peer.name, "ms", lambda: once(mode, peer))
        if value is not None:
            ctx.col.add(name, peer.name, "ms", value)

    each(cases, trial, parallel=3 if ctx.s.quick else 1)
    for peer in ctx.peers:
        if peer.name == "pypilot":
            guarded(ctx.col, "backoff_curve", peer.name, "ms", lambda peer=peer: backoff(ctx, peer))


def backoff(ctx: Context, peer: Peer) -> None:
    import time

    job = Job([ctx.p("stamp"), "0", "crash"], restart=True)
    with started(peer, job, ctx.ws) as (ns, _):
        ns.wait_for(STAMP, timeout=20)
        time.sleep(ctx.s.backoff_window_s)
        starts = [stamp_of(m) for m in ns.matches(STAMP)]
        exits = [stamp_of(m) for m in ns.matches(EXIT)]
    for (_, exit_mono, _), (_, start_mono, _) in zip(exits, starts[1:], strict=False):
        ctx.col.add("backoff_curve", peer.name, "ms", (start_mono - exit_mono) / 1e6)
    if len(starts) < 2:
        ctx.col.fail("backoff_curve", peer.name, "ms", f"no restart within {ctx.s.backoff_window_s:.0f}s")
