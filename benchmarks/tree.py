"""Full-featured tree memory (issue #15): pypilot and ContainerPilot 3.8 on the same config, in one run.

Config (JSON, read by both): Consul (a real ``consul agent -dev`` on loopback, one for the whole measure,
else the stand-in ``tests/consul_standin.py``), telemetry on (scraped once, 4 s in), N service jobs (the
``stamp`` payload, each with a port and an exec health check ``true`` every 1 s, TTL 5) and 1 watch; N = 3
and N = 20. Both systems run at once, each as PID 1 of its own PID namespace, with service names of their
own in the one agent.

8 s after start, RSS and PSS (``smaps_rollup``) are summed over the init's own processes: those whose
executable is PID 1's (pypilot's workers are forks of PID 1; the jobs and their health checks are other
executables and are excluded). Then the system's own ``-ping`` is run once against its control socket, as
the image's ``HEALTHCHECK`` does (pypilot's PID 1 answers it itself), and 3 s later the tree is read again
(``*_ping`` rows); then one ``-putenv`` (a control request of ContainerPilot's that PID 1 does not answer
itself: pypilot's control worker starts), and 3 s later the tree is read once more (``*_ctl`` rows). Per
process (pypilot): RSS and thread count, in the note. ``repeats`` rounds; each row says its sample count (n).

``tree3_breakdown``: pypilot's processes after the control request of the last N = 3 round, RSS by mapping
(the interpreter and libpython, each extension module's package, other shared libraries, heap and anonymous
memory), so that benchmarks/README.md can say where each MiB goes (a row per process, its parts in the note).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from . import procstat
from .common import REPO, log
from .harness import STAMP, Context
from .nsrun import InitTimeout, NsInit
from .peers import Launch, Pypilot, _env, free_port

SAMPLE_AT_S = 8.0
AFTER_PING_S = 3.0
SIZES = (3, 20)
CONSUL = REPO.parent / "shared" / "bin" / "consul"


@contextlib.contextmanager
def consul_agent() -> Iterator[str]:
    """``host:port`` of a Consul agent on loopback for the measure's lifetime."""
    port = free_port()
    ready = "/v1/status/leader"  # a real -dev agent: up once it has elected itself
    if CONSUL.exists():
        data = tempfile.mkdtemp(prefix="bench-consul-")
        p1, p2, p3 = free_port(), free_port(), free_port()
        argv = [
            str(CONSUL), "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
            "-http-port", str(port), "-data-dir", data,
            "-hcl", f"ports {{ dns = -1, serf_lan = {p1}, serf_wan = {p2}, server = {p3} }}",
        ]  # fmt: skip
    else:
        data = ""
        ready = "/v1/agent/self"  # the stand-in has no leader endpoint (404)
        argv = [sys.executable, str(REPO / "tests" / "consul_standin.py"), "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{ready}", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise OSError("Consul agent did not answer") from None
                time.sleep(0.05)
        time.sleep(0.3)  # a -dev agent elects itself just after its HTTP listener opens
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if data:
            shutil.rmtree(data, ignore_errors=True)


def config(stamp: str, consul: str, services: int, tag: str, workdir: Path, json5: bool = False) -> Path:
    """The full-featured config; ``tag`` keeps each system's service names apart in the one agent."""
    port = free_port()
    jobs = [
        {
            "name": f"{tag}svc{i}",
            "exec": [stamp],
            "port": 9000 + i,
            "interfaces": ["static:127.0.0.1"],
            "health": {"exec": "true", "interval": 1, "ttl": 5},
        }
        for i in range(services)
    ]
    cfg = {
        "consul": consul,
        "logging": {"level": "INFO"},
        "control": {"socket": str(workdir / "ctl.sock")},
        "jobs": jobs,
        "watches": [{"name": f"{tag}upstream", "interval": 5}],
        "telemetry": {"port": port, "interfaces": ["static:127.0.0.1"]},
    }
    path = workdir / ("full.json5" if json5 else "full.json")
    path.write_text(json.dumps(cfg, indent=1))
    return path


def own_pids(ns: NsInit) -> list[int]:
    """The init's own processes: those running PID 1's executable (jobs and checks excluded)."""
    tree = ns.tree()
    if not tree:
        return []
    exe = procstat.exe(tree[0])
    return [pid for pid in tree if procstat.exe(pid) == exe]


def threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _scrape(cfg: Path) -> None:
    port = json.loads(cfg.read_text())["telemetry"]["port"]
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError as exc:
        log(f"telemetry scrape failed: {exc}")


def private_kib(pid: int) -> int:
    """Pages only this process maps (Private_Clean + Private_Dirty), KiB: what it costs on its own."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
    except OSError:
        pass
    return total


def _sample(ctx: Context, measure: str, name: str, ns: NsInit) -> list[int]:
    pids = own_pids(ns)
    sizes = [procstat.smaps(pid) for pid in pids]
    per = ", ".join(
        f"{r / 1024:.1f} MiB RSS ({private_kib(pid) / 1024:.1f} private)/{threads(pid)} thr"
        for pid, (r, _) in zip(pids, sizes, strict=True)
    )
    rss = sum(r for r, _ in sizes) / 1024
    ctx.col.add(f"{measure}_rss", name, "MiB", rss, note=f"{len(pids)} procs: {per}")
    ctx.col.add(f"{measure}_pss", name, "MiB", sum(p for _, p in sizes) / 1024)
    if sizes:
        ctx.col.add(f"{measure}_pid1_rss", name, "MiB", sizes[0][0] / 1024)
    return pids


def breakdown(pid: int) -> dict[str, float]:
    """RSS of one process by what is mapped, in MiB: interpreter, each package's extensions, libs, heap."""
    out: dict[str, float] = {}
    current = "?"
    try:
        with open(f"/proc/{pid}/smaps") as fh:
            for line in fh:
                head = line.split(None, 1)[0]
                if "-" in head and not head.endswith(":"):
                    parts = line.split()
                    path = parts[5] if len(parts) > 5 else ""
                    current = _kind(path)
                elif head == "Rss:":
                    out[current] = out.get(current, 0.0) + int(line.split()[1]) / 1024
    except OSError:
        pass
    return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v >= 0.01}


def _kind(path: str) -> str:
    if not path or path.startswith("[anon") or path == "[heap]":
        return "heap + anonymous (Python objects, arenas, malloc)"
    if path.startswith("["):
        return path
    name = os.path.basename(path)
    if name.startswith("python3") or name.startswith("libpython"):
        return "interpreter (python3 / libpython)"
    if "site-packages/" in path:
        return "extension: " + path.split("site-packages/", 1)[1].split("/", 1)[0]
    if "lib-dynload/" in path:
        return "stdlib extensions (lib-dynload)"
    if name.startswith("libc.") or name.startswith("ld-linux") or name.startswith("libm."):
        return "libc, libm, loader"
    return "other: " + name.split(".so")[0]


LADDER = (  # what each process imports, in the order the tree pays for it; "mod:fn" also calls mod.fn()
    ("interpreter with site", ""),
    (
        "PID 1's modules",
        "pypilot.cli pypilot.config pypilot.supervisor pypilot.jobs pypilot.health pypilot.control.plane",
    ),
    ("+ interface addresses (PID 1, for a job's port: pypilot.config.ifaddrs)", "pypilot.config.ifaddrs"),
    ("+ discovery (PID 1 side)", "pypilot.discovery"),
    ("+ threading (workers)", "threading"),
    ("+ py-consul on pypilot.consul_http", "pypilot.consul_http:_import_consul"),
    ("+ pypilot.consul", "pypilot.consul"),
    ("+ pypilot.telemetry (prometheus-client, its own server)", "pypilot.telemetry pypilot.telemetry_server"),
    ("+ falcon (after pypilot.lean_imports' stand-ins)", "pypilot.lean_imports:install falcon"),
    ("+ waitress", "waitress"),
    (
        "+ pypilot.control.app, server, worker",
        "pypilot.control.app pypilot.control.server pypilot.control.worker",
    ),
    # not imported by pypilot any more, for the figures in benchmarks/README.md: what they would add
    ("+ ssl (not imported: only for an https agent)", "ssl"),
    ("+ requests (not imported; py-consul's std client used it)", "requests"),
)
LADDER_CODE = """
import sys, importlib
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096 / 1048576
out = [rss()]
for step in sys.argv[1:]:
    for item in step.split():
        mod, _, fn = item.partition(':')
        m = importlib.import_module(mod)
        if fn:
            getattr(m, fn)()
    out.append(rss())
print(' '.join(f'{x:.3f}' for x in out))
"""


def _python_of(script: str) -> str:
    """The interpreter a pypilot launcher script runs (its shebang), else this one."""
    with open(script, "rb") as fh:
        first = fh.readline(512)
    if first.startswith(b"#!"):
        interp = first[2:].decode(errors="replace").split()
        if interp and os.path.exists(interp[0]):
            return interp[0]
    return sys.executable


def libs(ctx: Context, python: str) -> None:
    """``tree_libs``: RSS added by each part, imported in turn into one fresh interpreter."""
    for _ in range(max(1, ctx.s.repeats)):
        steps = [mods for _, mods in LADDER[1:]]
        res = subprocess.run(
            [python, "-c", LADDER_CODE, *steps], capture_output=True, text=True, timeout=60, check=False
        )
        if res.returncode != 0:
            ctx.col.fail("tree_libs", LADDER[0][0], "MiB", res.stderr.strip()[-200:] or "failed")
            return
        values = [float(x) for x in res.stdout.split()]
        for i, (label, _) in enumerate(LADDER):
            added = values[i] - values[i - 1] if i else values[0]
            ctx.col.add("tree_libs", label, "MiB", added, note=f"total {values[i]:.1f} MiB")


def _start(ctx: Context, peer: Pypilot, consul: str, services: int, k: int) -> tuple[NsInit, Launch, Path]:
    wd = ctx.ws.fresh()
    tag = f"{'cp' if peer.name != 'pypilot' else 'pp'}{k}"
    cfg = config(ctx.p("stamp"), consul, services, tag, wd)
    launch = Launch([peer.binary(), "-config", str(cfg)], _env(), control=str(wd / "ctl.sock"))
    return NsInit(launch.argv, launch.env, cwd=wd), launch, cfg


def measure(ctx: Context) -> None:
    systems = [p for p in ctx.peers if isinstance(p, Pypilot)]  # pypilot and ContainerPilot 3.8
    if not any(p.name != "pypilot" for p in systems):
        log("tree: ContainerPilot 3.8 not found: pypilot alone (no quoted figure for this config)")
    rounds = max(1, ctx.s.repeats if not ctx.s.quick else 1)
    k = 0
    detail: dict[int, dict[str, float]] = {}
    with consul_agent() as consul:
        for _ in range(rounds):
            for services in SIZES:
                measure_name = f"tree{services}"
                with contextlib.ExitStack() as stack:
                    running: dict[str, tuple[NsInit, Path]] = {}
                    for peer in systems:
                        k += 1
                        ns, _, cfg = _start(ctx, peer, consul, services, k)
                        running[peer.name] = (stack.enter_context(ns), cfg)
                    t0 = time.monotonic()
                    for name, (ns, _) in list(running.items()):
                        try:
                            ns.wait_for(STAMP, timeout=20)
                        except InitTimeout as exc:
                            ctx.col.fail(f"{measure_name}_rss", name, "MiB", exc)
                            del running[name]
                    time.sleep(max(0.0, t0 + 4.0 - time.monotonic()))
                    for _, cfg in running.values():
                        _scrape(cfg)
                    time.sleep(max(0.0, t0 + SAMPLE_AT_S - time.monotonic()))
                    for name, (ns, _) in running.items():
                        _sample(ctx, measure_name, name, ns)
                    for step, args in (("ping", ["-ping"]), ("ctl", ["-putenv", "BENCH_PROBE=1"])):
                        for name, (_, cfg) in running.items():
                            binary = next(p.binary() for p in systems if p.name == name)
                            argv = [binary, "-config", str(cfg), *args]
                            res = subprocess.run(argv, capture_output=True, timeout=30, check=False)
                            if res.returncode != 0:
                                why = f"{args[0]} exit {res.returncode}"
                                ctx.col.fail(f"{measure_name}_{step}_rss", name, "MiB", why)
                        time.sleep(AFTER_PING_S)
                        for name, (ns, _) in running.items():
                            pids = _sample(ctx, f"{measure_name}_{step}", name, ns)
                            if name == "pypilot" and services == SIZES[0] and step == "ctl":
                                detail = {i: breakdown(pid) for i, pid in enumerate(pids)}
    mine = [p for p in systems if p.name == "pypilot"]
    if mine:
        libs(ctx, _python_of(mine[0].binary()))
    for i, parts in detail.items():
        note = "; ".join(f"{what} {mib:.1f}" for what, mib in parts.items())
        ctx.col.add("tree3_breakdown", f"pypilot process {i}", "MiB", sum(parts.values()), note=note)
