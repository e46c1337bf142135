"""Where pypilot's start-up time and memory go (pypilot only: the figures behind a missed target).

Launch breakdown: the same launch -> first exec measure as ``launch.py`` for a ladder of Python start-ups in
pypilot's venv, each exec'ing the ``stamp`` payload: bare ``-I -S``; with ``site`` (the venv's .pth files,
including an editable install's finder); + ``import pypilot.__main__``; + ``import pyjson5``; then pypilot
itself. Memory ladder: VmRSS of a Python that has imported the same things, plus the control plane.
Instructions (callgrind, when valgrind is installed and not ``--quick``): the same kind of ladder counted
in instructions, which the machine's load does not change: each rung a ``python -c`` that imports one more
group of what PID 1 loads before its first spawn (the plain config's path), then ``os._exit(0)`` (PID 1 never
pays a shutdown before its first exec); garbage collection off, as pypilot's own start has it;
``PYTHONHASHSEED=0`` so that the counts repeat exactly. ``launch.py``'s ``launch_instructions`` is the whole
start to the first exec. Imports: ``python -X importtime`` of a real pypilot start with a ``raw`` logging
job (its output is not relayed, so the payload's STAMP line marks the first exec in the stream); the
slowest top-level imports before that line, by cumulative time (importtime inflates them; compare them with
each other).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess

from .common import REPO
from .harness import STAMP, Context, guarded, stamp_of
from .nsrun import NsInit
from .peers import pypilot_binary, pypilot_python

EXEC = "import os,sys;os.execv(sys.argv[1],sys.argv[1:])"
RSS = 'import re;print(re.search(r"VmRSS:\\s+(\\d+)",open("/proc/self/status").read()).group(1))'
IMPORT = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\S.*)$")


def measure(ctx: Context) -> None:
    binary = pypilot_binary()
    if not any(p.name == "pypilot" for p in ctx.peers) or binary is None:
        return
    # the ladder runs in the interpreter of the pypilot measured, wherever it is installed
    py, pypilot = pypilot_python(), str(binary)
    cfg = ctx.ws.fresh() / "profile.json5"
    job = {
        "name": "app",
        "exec": [ctx.p("stamp"), "0", "exit"],
        "restarts": "never",
        "logging": {"raw": True},
    }
    cfg.write_text(
        json.dumps(
            {
                "consul": "localhost:8500",
                "logging": {"level": "INFO"},
                "control": {"socket": str(cfg.parent / "pp.sock")},
                "jobs": [job],
            }
        )
    )
    stamp = ctx.p("stamp")
    ladder = {
        "python -I -S": [py, "-I", "-S", "-c", EXEC, stamp],
        "python + site (venv .pth files)": [py, "-c", EXEC, stamp],
        "+ import pypilot.__main__": [py, "-c", "import pypilot.__main__;" + EXEC, stamp],
        "+ import pyjson5": [py, "-c", "import pypilot.__main__, pyjson5;" + EXEC, stamp],
        "pypilot -config (whole start)": [pypilot, "-config", str(cfg)],
    }
    for label, argv in ladder.items():
        for i in range(ctx.s.repeats + 1):
            value = guarded(ctx.col, "profile_launch", label, "ms", lambda argv=argv: _launch(argv))
            if value is not None and i > 0:  # the first is a warm-up
                ctx.col.add("profile_launch", label, "ms", value)
    mem = {
        "python -I -S": [py, "-I", "-S", "-c", RSS],
        "python + site": [py, "-c", RSS],
        "+ pypilot.__main__": [py, "-c", "import pypilot.__main__;" + RSS],
        "+ pyjson5": [py, "-c", "import pypilot.__main__, pyjson5;" + RSS],
        "+ control plane, workers, reaper": [
            py,
            "-c",
            "import pypilot.__main__, pyjson5, pypilot.control.plane, pypilot.workers, pypilot.reaper;" + RSS,
        ],
    }
    for label, argv in mem.items():
        res = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO)
        if res.returncode == 0:
            ctx.col.add("profile_rss", label, "MiB", int(res.stdout.split()[-1]) / 1024)
        else:
            ctx.col.fail("profile_rss", label, "MiB", res.stderr.strip()[-200:] or "failed")
    guarded(ctx.col, "profile_imports", "pypilot", "ms", lambda: _imports(ctx, cfg, py, pypilot))
    if not ctx.s.quick and shutil.which("valgrind"):
        _instructions(ctx, py, str(cfg))


# each rung adds one group of what PID 1 imports before its first spawn, in its order (a plain config)
RUNGS = (
    ("python -I -S (no shutdown)", None),
    ("+ site (the venv's .pth files)", ""),
    ("+ environ, cli, logs", "import pypilot.environ, pypilot.cli, pypilot.logs"),
    ("+ the reaper (cffi)", "import pypilot.reaper"),
    ("+ the config package", "import pypilot.config"),
    ("+ the config's load", "pypilot.config.load(CFG, dict(os.environ))"),
    ("+ events, loop, process, jobs", "import pypilot.events, pypilot.loop, pypilot.process, pypilot.jobs"),
    ("+ supervisor, __main__", "import pypilot.supervisor, pypilot.__main__"),
)


def _instructions(ctx: Context, py: str, cfg: str) -> None:
    env = dict(os.environ, PYTHONHASHSEED="0")
    done: list[str] = []
    for label, code in RUNGS:
        if code:
            done.append(code)
        flags = ["-I", "-S"] if code is None else []
        body = f"import gc, os; gc.disable(); CFG = {cfg!r}\n" + "\n".join(done) + "\nos._exit(0)\n"
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", py, *flags, "-c", body]

        def count(argv: list[str] = argv) -> float:
            # cwd "/": the checkout (the ``-c`` sys.path[0]) would shadow the install measured
            res = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd="/", env=env)
            m = re.search(r"Collected\s*:\s*(\d+)", res.stderr)
            if res.returncode != 0 or not m:
                raise OSError(f"no callgrind total: {res.stderr[-300:]}")
            return int(m.group(1)) / 1e6

        value = guarded(ctx.col, "profile_instructions", label, "M instr", count)
        if value is not None:
            ctx.col.add("profile_instructions", label, "M instr", value, note="cumulative")


def _launch(argv: list[str]) -> float:
    with NsInit(argv, cwd=REPO) as ns:
        return (stamp_of(ns.wait_for(STAMP, timeout=20)[0])[1] - ns.launch_ns) / 1e6


def _imports(ctx: Context, cfg: object, py: str, pypilot: str) -> None:
    runs: dict[str, list[float]] = {}
    for _ in range(3):
        with NsInit([py, "-X", "importtime", pypilot, "-config", str(cfg)], cwd=REPO) as ns:
            ns.wait_for(STAMP, timeout=20)
            ns.wait_exit(timeout=10)
            lines = [line for _, line in ns.lines]
        for line in lines:
            if STAMP.search(line):
                break
            m = IMPORT.match(line)
            if m and not m.group(3).startswith(" "):  # top level: what PID 1 itself asked for
                runs.setdefault(m.group(3), []).append(int(m.group(2)) / 1000)
    top = sorted(runs.items(), key=lambda kv: -statistics.median(kv[1]))[:8]
    for name, values in top:
        ctx.col.add(
            "profile_imports",
            name,
            "ms",
            statistics.median(values),
            note="cumulative, before the first exec, under -X importtime",
        )
