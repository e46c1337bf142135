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

``launch_instructions`` (when valgrind is installed): the same start counted in instructions, which other
work on the machine does not change at all (the wall and CPU figures above swell with the load): callgrind's
total for PID 1 from its start until its first job has run (the job runs ``callgrind_control -d 1``, which
dumps the count so far, then the namespace is killed), plain-JSON config; the bare baseline is
``python3 -I -S -c pass`` under callgrind, start to exit. One run each (the count repeats within 1-2 %).
Page faults, I/O and cache misses are not instructions: this is the interpreter's and the imports' work,
the floor under the wall figure, not the wall figure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .harness import STAMP, Context, guarded, stamp_of, started
from .peers import Job, Launch, Peer, Pypilot, _env, pypilot_binary, pypilot_python

MEASURE = "launch_to_first_exec"
CPU = "launch_cpu"
INSTRUCTIONS = "launch_instructions"
CALLGRIND_TOTAL = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.M)
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
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
    instructions(ctx)


def instructions(ctx: Context) -> None:
    """``launch_instructions``: callgrind's instruction counts (see the module docstring)."""
    if ctx.s.quick or not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        return
    binary = pypilot_binary()
    if binary is None:
        return
    unit = "M instr"
    bare = guarded(ctx.col, INSTRUCTIONS, ctx.baseline.name, unit, _bare_instructions)
    if bare is not None:
        ctx.col.add(INSTRUCTIONS, ctx.baseline.name, unit, bare, note="python3 -I -S -c pass, start to exit")
    value = guarded(ctx.col, INSTRUCTIONS, "pypilot", unit, lambda: _pypilot_instructions(ctx, str(binary)))
    if value is not None:
        ctx.col.add(INSTRUCTIONS, "pypilot", unit, value, note="start to its first job's exec, plain JSON")


def _bare_instructions() -> float:
    res = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", pypilot_python(), "-I", "-S", "-c",
         "pass"], capture_output=True, text=True, timeout=300, check=False,
    )
    m = COLLECTED.search(res.stderr)
    if not m:
        raise OSError(f"no callgrind total: {res.stderr[-300:]}")
    return int(m.group(1)) / 1e6


def _pypilot_instructions(ctx: Context, binary: str) -> float:
    work = ctx.ws.fresh()
    flag = work / "started"
    flag.unlink(missing_ok=True)
    config = work / "pypilot.json"
    config.write_text(json.dumps({
        "consul": "localhost:8500", "logging": {"level": "INFO"},
        "control": {"socket": str(work / "pypilot.sock")},
        # the job asks for the dump from inside the namespace: valgrind's vgdb knows it as PID 1 there
        "jobs": [{"name": "app", "restarts": "never", "exec": [
            "/bin/sh", "-c", f"callgrind_control -d 1 >/dev/null 2>&1; touch {flag}; exec sleep 600"]}],
    }))
    out = work / "cg.out"
    argv = ["unshare", "-fp", "--mount-proc", "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            "--trace-children=no", pypilot_python(), binary, "-config", str(config)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise OSError("pypilot under callgrind did not start its job")
            time.sleep(0.05)
        dumps: list[Path] = []
        deadline = time.monotonic() + 30
        while not dumps and time.monotonic() < deadline:
            dumps = [p for p in work.glob("cg.out*") if CALLGRIND_TOTAL.search(p.read_bytes())]
            time.sleep(0.1)
        if not dumps:
            raise OSError("callgrind wrote no dump")
        m = CALLGRIND_TOTAL.search(dumps[0].read_bytes())
        assert m is not None
        return int(m.group(1)) / 1e6
    finally:
        for pid in _children(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)  # PID 1 of the namespace: every process in it goes with it
            except ProcessLookupError:
                pass
        proc.wait(30)
        for p in work.glob("cg.out*"):
            p.unlink()


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out
