"""Harness of the end-to-end upgrade suite (issue #17): two installs of this checkout, PID 1 started from
the first, the config with every ingredient the issue lists, and the observers the tests assert on.

Installs: ``A`` is a launcher (``scripts/pypilot``'s body) on the suite's own interpreter; ``B`` is a second
venv (``python -m venv --without-pip``, its own ``bin/python``) whose site-packages reach the suite's through
a ``.pth`` file, with the same launcher on B's interpreter. So A and B are two paths to two interpreters that
run the same code, as a fresh install of the same release would be; B costs no pip run. Both read
compiled bytecode from a session cache (``_bytecode``), as installs do. ``wrapper`` makes a
shell script that sets ``PYPILOT_UPGRADE_FAIL`` (the contract's test hook) and execs B: a target that fails
in its check or right after the exec.

Observers read only what is visible from outside: ``/v3/status`` (job PIDs, runs, backoff, the
``pypilot`` section), PID 1's children and descendants through psutil (host PIDs, start times, zombies),
``/proc/<pid1>/fd`` and RSS, the stand-in's request log (registrations, deregistrations, TTL updates), the
interval job's tick file (one CLOCK_BOOTTIME stamp per run, from ``/proc/uptime``) and the log.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import os
import select
import site
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import psutil

from tests.consul_standin import ConsulStandin
from tests.discovery.harness import LOCAL, Pilot, free_port, http, service_job, sid
from tests.pid1 import host_pid, wait_for

ROOT = Path(__file__).resolve().parents[2]
STORM = Path(__file__).with_name("storm.py")
TICK = 0.1  # the interval job's period, seconds
TTL = 2  # the health-checked service's TTL, seconds (checked every second)
ORPHANS = 1000
SLOWPOKE = 20  # seconds: the exec timeout of a job that outlives it, due after the upgrade

__all__ = [
    "LOCAL",
    "ORPHANS",
    "ROOT",
    "SLOWPOKE",
    "TICK",
    "TTL",
    "Install",
    "UpPilot",
    "died_at",
    "free_port",
    "full_config",
    "http",
    "log_time",
    "make_installs",
    "service_job",
    "sid",
    "started_at",
    "uptime",
    "wait_for",
    "wrapper",
]


@dataclasses.dataclass(frozen=True)
class Install:
    """One install of pypilot: its interpreter and the launcher that is PATH for ``-upgrade``."""

    name: str
    python: Path
    pypilot: Path
    env: tuple[tuple[str, str], ...] = ()  # what its processes need in their environment (bytecode)


def _launcher(path: Path, python: Path) -> Path:
    body = (ROOT / "scripts" / "pypilot").read_text().split("\n", 1)[1]
    # this checkout, whatever the interpreter's own site-packages hold
    path.write_text(f"#!{python}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n{body}")
    path.chmod(0o755)
    return path


def make_installs(root: Path) -> tuple[Install, Install]:
    """Installs A and B of this checkout under ``root`` (see the module docstring)."""
    a_bin = root / "a" / "bin"
    a_bin.mkdir(parents=True)
    a = Install("A", Path(sys.executable), _launcher(a_bin / "pypilot", Path(sys.executable)))
    venv = root / "b"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    ours = [p for p in site.getsitepackages() if Path(p).is_dir()]
    # an `import` line in a .pth runs: addsitedir also processes the suite's .pth files (editable installs)
    lines = [f"import site; site.addsitedir({p!r})" for p in ours]
    (purelib / "zz_pypilot_upgrade_suite.pth").write_text("\n".join(lines) + "\n")
    b_python = venv / "bin" / "python"
    env = _bytecode(root / "pycache")
    a = dataclasses.replace(a, env=env)
    b = Install("B", b_python, _launcher(venv / "bin" / "pypilot", b_python), env)
    return a, b


WARM = (  # what PID 1, its workers and the CLI import (the stdlib's bytecode goes to the prefix too)
    "pypilot.__main__", "pypilot.supervisor", "pypilot.upgrade", "pypilot.handover", "pypilot.workers",
    "pypilot.control.plane", "pypilot.control.worker", "pypilot.control.app", "pypilot.control.client",
    "pypilot.health", "pypilot.discovery", "pypilot.telemetry", "pypilot.consul", "pypilot.config",
    "falcon", "waitress", "consul", "prometheus_client", "re2", "psutil", "orjson", "pyjson5", "cffi",
)


def _bytecode(prefix: Path) -> tuple[tuple[str, str], ...]:
    """Compiled bytecode for both installs, as an install has it: this environment may say
    PYTHONDONTWRITEBYTECODE (then every start of PID 1, and every upgrade, compiled pypilot from source
    again: ~100 ms). ``PYTHONPYCACHEPREFIX`` keeps it out of the checkout; it is filled here once."""
    env = (("PYTHONPYCACHEPREFIX", str(prefix)),)
    run_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | dict(env)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "pypilot")], env=run_env,
                   check=True, timeout=300, stdout=subprocess.DEVNULL)
    warm = "import importlib, sys\nfor m in sys.argv[1:]:\n    try: importlib.import_module(m)\n" \
           "    except Exception: pass\n"
    subprocess.run([sys.executable, "-c", warm, *WARM], env=run_env, check=True, timeout=300, cwd=ROOT)
    return env


def environment(install: Install) -> dict[str, str]:
    """The environment a process of ``install`` runs with (the caller's, no CONSUL_*, its bytecode)."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("CONSUL_") and k != "PYTHONDONTWRITEBYTECODE"}
    return base | dict(install.env)


def wrapper(path: Path, target: Install, fail: str) -> Path:
    """A target that execs ``target`` with ``PYPILOT_UPGRADE_FAIL=fail`` in its environment."""
    path.write_text(f'#!/bin/sh\nPYPILOT_UPGRADE_FAIL={fail} exec {target.pypilot} "$@"\n')
    path.chmod(0o755)
    return path


def log_time(line: str) -> float:
    """Epoch seconds of a pypilot log line (RFC 3339 UTC, nanoseconds)."""
    whole, _, frac = line.split(" ", 1)[0].rstrip("Z").partition(".")
    seconds = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC).timestamp()
    return seconds + float(f"0.{frac or 0}")


def started_at(pid: int) -> float:
    """When process ``pid`` started, on ``uptime``'s clock (``/proc/PID/stat`` starttime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def died_at(pid: int, timeout: float) -> float:
    """Wait for process ``pid`` (not ours: a pidfd) to end; when it did, on ``uptime``'s clock."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    assert ready, f"process {pid} still running after {timeout}s"
    return uptime()


def uptime() -> float:
    """CLOCK_BOOTTIME as the tick job stamps it (``/proc/uptime``, 10 ms resolution)."""
    return float(Path("/proc/uptime").read_text().split()[0])


def full_config(dir: Path, standin: ConsulStandin, telemetry_port: int) -> dict[str, Any]:
    """Every ingredient of issue #17's test: long-running, crash-looping (in backoff), 100 ms interval,
    exec health check with a service in the stand-in, a watch and a job on its changes, a job that
    prints the environment when started, the orphan storm, a job killed by its exec timeout after the
    upgrade, one the test kills during the exec, telemetry with a gauge."""
    ticks = dir / "ticks"
    return {
        "consul": standin.address,
        "logging": {"level": "INFO"},
        "jobs": [
            {"name": "keeper", "exec": ["sleep", "100000"]},
            {"name": "crasher", "exec": ["sh", "-c", "exit 3"], "restarts": "unlimited",
             "backoff": {"initial": "1s", "factor": 2, "max": "4s", "resetAfter": "60s"}},
            {"name": "ticker", "exec": ["sh", "-c", f'read up rest < /proc/uptime; echo "$up" >> {ticks}'],
             "when": {"interval": f"{int(TICK * 1000)}ms"}},
            service_job("app", free_port(), check="true", interval=1, ttl=TTL),
            {"name": "onchange", "exec": ["echo", "watch peer changed"],
             "when": {"source": "watch.peer", "each": "changed"}},
            {"name": "envdump", "exec": ["sh", "-c", 'echo "envdump UPV=[$UPV]"; exec sleep 100000'],
             "when": {"source": "never-fires", "once": "healthy"}},
            {"name": "storm", "exec": [sys.executable, str(STORM), str(ORPHANS)]},
            {"name": "blinker", "exec": ["sleep", "100002"], "restarts": 1},
            {"name": "slowpoke", "exec": ["sleep", "99999"], "timeout": f"{SLOWPOKE}s"},
        ],
        "watches": [{"name": "peer", "interval": 1}],
        "telemetry": {
            "port": telemetry_port, "interfaces": LOCAL,
            "metrics": [{"name": "upgrade_gauge", "help": "kept across upgrades", "type": "gauge"}],
        },
    }


class UpPilot(Pilot):
    """pypilot as PID 1 of a PID namespace, started from install ``A`` (so that A → B → A is a round trip
    between two launchers), with the observers and the ``-upgrade`` CLI."""

    def __init__(self, config: dict[str, Any], a: Install, env: dict[str, str] | None = None) -> None:
        self.a = a
        super().__init__(config, env=env)
        assert self.proc.poll() is None, self.log()

    def command(self, args: list[str]) -> list[str]:
        return [str(self.a.pypilot), "-config", str(self.config_path), *args]

    def environment(self) -> dict[str, str]:
        return environment(self.a)

    # --- acting -------------------------------------------------------------------------------

    def upgrade_cmd(self, target: Path | str) -> list[str]:
        return [sys.executable, "-m", "pypilot", "-upgrade", str(target), "-socket", self.control]

    def upgrade(self, target: Path | str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``pypilot -upgrade TARGET``: the CLI's outcome (it waits for the new image's confirmation)."""
        return subprocess.run(self.upgrade_cmd(target), capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT, env=self.environment())

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A client subcommand (``status``, ``-ping`` ...) against this PID 1's socket."""
        return subprocess.run([sys.executable, "-m", "pypilot", *args, "-socket", self.control],
                              capture_output=True, text=True, timeout=30, cwd=ROOT, env=self.environment())

    def start_upgrade(self, target: Path | str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.upgrade_cmd(target), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=ROOT, env=self.environment())

    # --- observing ----------------------------------------------------------------------------

    def pypilot(self) -> dict[str, Any]:
        """The status API's ``pypilot`` section (version, path, started, upgrades, last_upgrade)."""
        return dict(self.status()["pypilot"])

    def jobs(self) -> dict[str, dict[str, Any]]:
        return {j["name"]: j for j in self.status()["jobs"]}

    def host_children(self) -> dict[int, tuple[float, str]]:
        """PID 1's live children: host PID → (start time, command line), zombies left out."""
        out: dict[int, tuple[float, str]] = {}
        for c in self.children():
            try:
                if c.status() != psutil.STATUS_ZOMBIE:
                    out[c.pid] = (c.create_time(), " ".join(c.cmdline()))
            except psutil.NoSuchProcess:
                pass
        return out

    def host_pid_of(self, job: str) -> int:
        """The host PID of ``job``'s process (the status API shows the namespace's: NSpid maps them)."""
        ns = self.until(lambda: self.jobs()[job]["pid"], 10, f"{job} running")
        return host_pid(ns, self.host_children())

    def ns_zombies(self) -> list[int]:
        """Zombies anywhere in the namespace (PID 1's descendants)."""
        out = []
        for p in self.descendants():
            try:
                if p.status() == psutil.STATUS_ZOMBIE:
                    out.append(p.pid)
            except psutil.NoSuchProcess:
                pass
        return out

    def fds(self) -> list[str]:
        """PID 1's open descriptors, as ``fd -> target`` (for a diff in a failure message)."""
        base = f"/proc/{self.host_pid}/fd"
        out = []
        for fd in os.listdir(base):
            try:
                out.append(f"{fd} -> {os.readlink(f'{base}/{fd}')}")
            except OSError:
                pass
        return sorted(out)

    def blind(self, i: int) -> float:
        """Seconds from the i-th ``upgrade: exec`` to the next ``upgrade: resumed``: no image ran the loop."""
        execs, resumed = self.lines(r"upgrade: exec "), self.lines(r"upgrade: resumed ")
        return log_time(resumed[i]) - log_time(execs[i])

    def rss(self) -> int:
        return int(self.process().memory_info().rss)



def read_ticks(path: Path) -> list[float]:
    """The interval job's stamps (``full_config``'s ``dir / "ticks"``)."""
    if not path.exists():
        return []
    return [float(x) for x in path.read_text().split()]


def max_gap(ticks: list[float], start: float, end: float) -> float:
    """The longest interval between consecutive ticks that touches [start, end]."""
    inside = [i for i, t in enumerate(ticks) if start <= t <= end]
    if not inside:
        return float("inf")
    lo, hi = max(inside[0] - 1, 0), min(inside[-1] + 1, len(ticks) - 1)
    window = ticks[lo:hi + 1]
    return max((b - a for a, b in itertools.pairwise(window)), default=float("inf"))


def registrations(standin: ConsulStandin) -> list[str]:
    return [r.json["ID"] for r in standin.requests("PUT", "/v1/agent/service/register")]


def deregistrations(standin: ConsulStandin) -> list[str]:
    return [r.path for r in standin.requests("PUT", prefix="/v1/agent/service/deregister/")]


def ttl_updates(standin: ConsulStandin, service: str) -> list[tuple[float, str]]:
    """(time, body) of every TTL update of ``service``'s check."""
    out = []
    for r in standin.requests("PUT"):
        if r.path.endswith(f"/service:{sid(service)}") and "/v1/agent/check/" in r.path:
            out.append((r.time, r.body.decode(errors="replace") or r.path))
    return out


def monotonic() -> float:
    return time.monotonic()
