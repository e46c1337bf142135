"""Launch -> first child exec: harness CLOCK_MONOTONIC just before ``Popen(unshare ... init)`` to the
``stamp`` payload's own CLOCK_MONOTONIC at exec. Also issue #3's baseline: a bare ``python3 -I -S`` that
execs the stamp.

Includes ``unshare``'s fork and /proc mount, the same for every row. One unrecorded warm-up run per
system (page cache), then ``repeats`` rounds, systems interleaved within each round.
"""

from __future__ import annotations

from .harness import STAMP, Context, guarded, stamp_of, started
from .peers import Job, Peer

MEASURE = "launch_to_first_exec"


def measure(ctx: Context) -> None:
    job = Job([ctx.p("stamp")])  # stamps, then sleeps forever
    systems: list[Peer] = [*ctx.peers, ctx.baseline]

    def once(peer: Peer) -> float:
        with started(peer, job, ctx.ws) as (ns, _):
            _, mono, _ = stamp_of(ns.wait_for(STAMP, timeout=20)[0])
            return (mono - ns.launch_ns) / 1e6

    for peer in systems:
        guarded(ctx.col, MEASURE, peer.name, "ms", lambda peer=peer: once(peer))  # warm-up
    for _ in range(ctx.s.repeats):
        for peer in systems:
            value = guarded(ctx.col, MEASURE, peer.name, "ms", lambda peer=peer: once(peer))
            if value is not None:
                ctx.col.add(MEASURE, peer.name, "ms", value)
