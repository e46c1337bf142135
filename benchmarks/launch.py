"""Launch -> first child exec: harness CLOCK_MONOTONIC just before ``Popen(unshare ... init)`` to the
``stamp`` payload's own CLOCK_MONOTONIC at exec. Also issue #3's baseline: a bare ``python3 -I -S`` that
execs the stamp.

pypilot runs twice: ``pypilot`` with a plain-JSON config (read by the stdlib ``json``) and ``pypilot
(JSON5 config)`` with the same config written as JSON5 (a comment, unquoted keys, a trailing comma), which
only a JSON5 parser reads; ContainerPilot 3.8 reads the plain one.

``launch_cpu``: the same start, counted in CPU time rather than wall time, so that other work on the
machine does not stretch it: PID 1's threads' on-CPU nanoseconds (``/proc/1/task/*/schedstat``) when its
first job reads them (the job is ``sh -c 'cat ...'``; for the bare python, which execs the job itself,
``cat /proc/1/schedstat`` directly, so its figure includes cat's own start, ~0.3 ms). Same rounds.

Includes ``unshare``'s fork and /proc mount, the same for every row. One unrecorded warm-up run per
system (page cache), then ``repeats`` rounds, systems interleaved within each round.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from .harness import STAMP, Context, guarded, stamp_of, started
from .peers import Job, Launch, Peer, Pypilot

MEASURE = "launch_to_first_exec"
CPU = "launch_cpu"
SCHEDSTAT = re.compile(r"^(?:.*\s)?(\d+) (\d+) (\d+)$")
# launch_cpu is taken where PID 1 runs the job itself; the four supervisors showed no schedstat line in
# 20 s per round (their job wrappers), which only cost each run 80 s
NO_CPU = frozenset({"s6", "runit", "supervisord", "circus"})


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

    def cpu(peer: Peer) -> float:
        if peer is ctx.baseline:
            argv = ["/bin/cat", "/proc/1/schedstat"]
        else:
            argv = ["/bin/sh", "-c", "cat /proc/1/task/*/schedstat"]
        with started(peer, Job(argv), ctx.ws) as (ns, _):
            ns.wait_for(SCHEDSTAT, timeout=20)
            time.sleep(0.2)  # the other threads' lines, written at once by the one cat
            threads = ns.matches(SCHEDSTAT)
            return sum(int(m.group(1)) for m in threads) / 1e6

    for peer in systems:
        guarded(ctx.col, MEASURE, peer.name, "ms", lambda peer=peer: once(peer))  # warm-up
    for _ in range(ctx.s.repeats):
        for peer in systems:
            value = guarded(ctx.col, MEASURE, peer.name, "ms", lambda peer=peer: once(peer))
            if value is not None:
                ctx.col.add(MEASURE, peer.name, "ms", value)
            if peer.name in NO_CPU:
                continue
            value = guarded(ctx.col, CPU, peer.name, "ms", lambda peer=peer: cpu(peer))
            if value is not None:
                ctx.col.add(CPU, peer.name, "ms", value)
