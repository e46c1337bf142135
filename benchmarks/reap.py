"""Reap storm: N orphans (1 000 and 5 000; fewer with --quick) released at once; time until all are reaped.

The ``reapstorm`` payload orphans N children blocked on a pipe, releases them by closing it, and polls
``kill(pid, 0)`` until every one is ESRCH (a zombie still answers, so ESRCH means the init reaped it). The
physical floor is ``reapstorm N self`` under tini: the payload is its own subreaper and ``waitpid``s them
itself. Median of ``repeats`` runs for up to 1 000 orphans, of up to 3 beyond (5 000 under supervisord
take ~50 s a run).
"""

from __future__ import annotations

import re

from .harness import Context, guarded, started
from .peers import Job, Peer, Tini

REAPED = re.compile(r"REAPED n=(\d+) .* ms=([\d.]+)|STORMFAIL (.*)")
FLOOR = "floor (payload reaps itself)"


def measure(ctx: Context) -> None:
    for n in ctx.s.storm_sizes:
        repeats = ctx.s.repeats if n <= 1000 else min(ctx.s.repeats, 3)
        name = f"reap_{n}"
        budget = 20 + n * 0.02  # supervisord reaps ~100 per second
        cases: list[tuple[str, Peer, str]] = [(p.name, p, "init") for p in ctx.peers]
        cases.append((FLOOR, Tini(), "self"))

        def once(peer: Peer, mode: str, budget: float = budget, n: int = n) -> float:
            job = Job([ctx.p("reapstorm"), str(n), mode, str(int(budget))])
            with started(peer, job, ctx.ws) as (ns, _):
                m = ns.wait_for(REAPED, timeout=budget + 30)[0]
                if m.group(3):
                    raise ValueError(f"storm failed: {m.group(3)}")
                return float(m.group(2))

        for _ in range(repeats):
            for label, peer, mode in cases:
                value = guarded(ctx.col, name, label, "ms", lambda peer=peer, mode=mode: once(peer, mode))  # type: ignore[misc]
                if value is not None:
                    ctx.col.add(name, label, "ms", value)
