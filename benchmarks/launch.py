"""Launch -> first child exec: harness CLOCK_MONOTONIC just before ``Popen(unshare ... init)`` to the
``stamp`` payload's own CLOCK_MONOTONIC at exec. Also issue #3's baseline: a bare ``python3 -I -S`` that
execs the stamp.

pypilot runs twice: ``pypilot`` with a plain-JSON config (read by the stdlib ``json``) and ``pypilot
(JSON5 config)`` with the same config written as JSON5 (a comment, unquoted keys, a trailing comma), which
only a JSON5 parser reads; ContainerPilot 3.8 reads the plain one.

Includes ``unshare``'s fork and /proc mount, the same for every row. One unrecorded warm-up run per
system (page cache), then ``repeats`` rounds, systems interleaved within each round.
"""

from __future__ import annotations

from pathlib import Path

from .harness import STAMP, Context, guarded, stamp_of, started
from .peers import Job, Launch, Peer, Pypilot

MEASURE = "launch_to_first_exec"


class PypilotJson5(Pypilot):
    """pypilot given its config as JSON5 proper: a comment, unquoted keys, a trailing comma."""

    name = "pypilot (JSON5 config)"

    def launch(self, job: Job, workdir: Path) -> Launch:
        launch = super().launch(job, workdir)
        path = Path(launch.argv[-1])
        text = path.read_text().rstrip().removesuffix("}").rstrip()
        for key in ("consul", "logging", "control", "jobs"):
            text = text.replace(f'"{key}":', f"{key}:", 1)
        path.write_text(f"// the same config, as JSON5\n{text},\n}}\n")
        return launch


def measure(ctx: Context) -> None:
    job = Job([ctx.p("stamp")])  # stamps, then sleeps forever
    json5 = [PypilotJson5()] if any(p.name == "pypilot" for p in ctx.peers) else []
    systems: list[Peer] = [*ctx.peers, *json5, ctx.baseline]

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
