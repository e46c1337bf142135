"""The systems compared, how each is installed if missing, and how each runs a job as PID 1.

Debian packages (tini, dumb-init, s6, runit) are installed with ``apt-get install -y`` (after
``apt-get update`` if a package is not found); supervisor and circus go into a venv of their own under
``benchmarks/.peers/venv``. Configs follow anchors.md §3: supervisord ``nodaemon``, output to
``/dev/fd/1``; circus one watcher with a StdoutStream and the ini default ``check_delay`` (5 s); s6/runit a
service dir whose ``run`` is the payload itself (symlink; arguments through ``$PAYLOAD_ARGS``); pypilot a
ContainerPilot 3 JSON5 config (INFO logging, DEBUG only for the dispatch measure).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from .common import PEERS_DIR, REPO, log, run

VENV = PEERS_DIR / "venv"
# pypilot as a user installs it (`pip install .`: bytecode compiled, no editable-install finder on the
# path), built from the working tree at each run; the checkout's editable .venv only if that fails
PYPILOT_VENV = PEERS_DIR / "pypilot-venv"
PYPILOT = PYPILOT_VENV / "bin" / "pypilot"
PYPILOT_DEV = REPO / ".venv" / "bin" / "pypilot"
APT = {
    "tini": ("tini", "tini"),
    "dumb-init": ("dumb-init", "dumb-init"),
    "s6": ("s6", "s6-svscan"),
    "runit": ("runit", "runsvdir"),
}
PYPI = ("supervisor", "circus")


@dataclasses.dataclass
class Job:
    """What to run: one payload command, restarted or not, ``procs`` copies at once."""

    argv: list[str]
    restart: bool = False
    procs: int = 1
    startsecs: int = 0  # supervisord only
    control_socket: Path | None = None  # pypilot/supervisord control endpoint, when a measure wants one
    restart_count: int | None = None  # pypilot: restarts N instead of "unlimited"
    debug: bool = False  # DEBUG logging (pypilot, circus): only the dispatch measure reads those lines
    throttle: bool = True  # pypilot: backoff for runs shorter than resetAfter; throughput measures: off


@dataclasses.dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    control: str = ""  # where the control API listens (unix path or tcp URL), if any


class Peer:
    """One init/supervisor. Subclasses say what it can do and how to run a Job under it."""

    name = ""
    restarts = False  # can restart a job (restart gap, spawn rate)
    supervisor = False  # dispatches job exits as events (exit -> dispatch latency)
    control = False  # has a control API (control latency under an exit storm)

    def available(self) -> bool:
        raise NotImplementedError

    def version(self) -> str:
        return ""

    def launch(self, job: Job, workdir: Path) -> Launch:
        raise NotImplementedError


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ")}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.update(extra)
    return env


def _dpkg_version(pkg: str) -> str:
    try:
        return run(["dpkg-query", "-W", "-f", "${Version}", pkg], timeout=20).stdout.strip()
    except Exception:
        return ""


def _pip_version(pkg: str) -> str:
    try:
        out = run(
            [
                str(VENV / "bin" / "python"),
                "-c",
                f"import importlib.metadata as m; print(m.version('{pkg}'))",
            ],
            timeout=30,
        )
        return out.stdout.strip()
    except Exception:
        return ""


class Tini(Peer):
    name = "tini"

    def available(self) -> bool:
        return shutil.which("tini") is not None

    def version(self) -> str:
        return _dpkg_version("tini")

    def launch(self, job: Job, workdir: Path) -> Launch:
        return Launch(["tini", "--", *job.argv], _env())


class DumbInit(Peer):
    name = "dumb-init"

    def available(self) -> bool:
        return shutil.which("dumb-init") is not None

    def version(self) -> str:
        return _dpkg_version("dumb-init")

    def launch(self, job: Job, workdir: Path) -> Launch:
        return Launch(["dumb-init", *job.argv], _env())


def _service_dirs(root: Path, job: Job) -> dict[str, str]:
    """One service dir per process; ``run`` is a symlink to the payload, its args go in $PAYLOAD_ARGS."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(job.procs):
        svc = root / f"app{i}"
        svc.mkdir()
        (svc / "run").symlink_to(job.argv[0])
    # a service dir in an image predates boot; runsvdir waits out a scan dir modified this very second
    old = time.time() - 10
    for path in (*root.iterdir(), root):
        os.utime(path, (old, old))
    return _env(PAYLOAD_ARGS=" ".join(job.argv[1:]))


class S6(Peer):
    name = "s6"
    restarts = True

    def available(self) -> bool:
        return shutil.which("s6-svscan") is not None

    def version(self) -> str:
        return _dpkg_version("s6")

    def launch(self, job: Job, workdir: Path) -> Launch:
        env = _service_dirs(workdir / "scan", job)
        return Launch(["s6-svscan", str(workdir / "scan")], env)


class Runit(Peer):
    name = "runit"
    restarts = True

    def available(self) -> bool:
        return shutil.which("runsvdir") is not None

    def version(self) -> str:
        return _dpkg_version("runit")

    def launch(self, job: Job, workdir: Path) -> Launch:
        env = _service_dirs(workdir / "service", job)
        return Launch(["runsvdir", "-P", str(workdir / "service")], env)


class Supervisord(Peer):
    name = "supervisord"
    restarts = supervisor = control = True

    def available(self) -> bool:
        return (VENV / "bin" / "supervisord").exists()

    def version(self) -> str:
        return _pip_version("supervisor")

    def launch(self, job: Job, workdir: Path) -> Launch:
        sock = job.control_socket or workdir / "supervisord.sock"
        conf = f"""[supervisord]
nodaemon=true
user=root
logfile=/dev/stdout
logfile_maxbytes=0
loglevel=info
pidfile={workdir}/supervisord.pid

[unix_http_server]
file={sock}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:app]
command={" ".join(job.argv)}
numprocs={job.procs}
process_name=%(program_name)s{"_%(process_num)d" if job.procs > 1 else ""}
autostart=true
autorestart={"true" if job.restart else "false"}
startsecs={job.startsecs}
startretries=1000000
stdout_logfile=/dev/fd/1
stdout_logfile_maxbytes=0
redirect_stderr=true
"""
        path = workdir / "supervisord.conf"
        path.write_text(conf)
        return Launch([str(VENV / "bin" / "supervisord"), "-c", str(path)], _env(), control=str(sock))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Circus(Peer):
    name = "circus"
    restarts = supervisor = control = True

    def available(self) -> bool:
        return (VENV / "bin" / "circusd").exists()

    def version(self) -> str:
        return _pip_version("circus")

    def launch(self, job: Job, workdir: Path) -> Launch:
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        logconf = workdir / "circus-log.json"
        logconf.write_text(
            json.dumps(
                {
                    "version": 1,
                    "disable_existing_loggers": False,
                    "formatters": {"f": {"format": "%(created).6f %(levelname)s %(message)s"}},
                    "handlers": {
                        "h": {
                            "class": "logging.StreamHandler",
                            "formatter": "f",
                            "stream": "ext://sys.stdout",
                        }
                    },
                    "root": {"level": "DEBUG" if job.debug else "INFO", "handlers": ["h"]},
                }
            )
        )
        args = " ".join(job.argv[1:])
        ini = f"""[circus]
endpoint = {endpoint}
pubsub_endpoint = tcp://127.0.0.1:{free_port()}
statsd = False
loggerconfig = {logconf}

[watcher:app]
cmd = {job.argv[0]}
args = {args}
numprocesses = {job.procs}
respawn = {"True" if job.restart else "False"}
stdout_stream.class = StdoutStream
stderr_stream.class = StdoutStream
"""
        path = workdir / "circus.ini"
        path.write_text(ini)
        return Launch([str(VENV / "bin" / "circusd"), str(path)], _env(), control=endpoint)


def pypilot_binary() -> Path | None:
    """The pypilot measured: ``$PYPILOT_BIN`` if set, else the pip install made for this run, else the
    checkout's venv, else the ``pypilot`` on PATH, so that the suite runs against any install."""
    for candidate in (os.environ.get("PYPILOT_BIN"), PYPILOT, PYPILOT_DEV, shutil.which("pypilot")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def pypilot_python() -> str:
    """The Python that runs the measured pypilot (its script's shebang; this one for a binary launcher)."""
    binary = pypilot_binary()
    if binary is not None:
        with open(binary, "rb") as f:
            first = f.readline(512)
        if first.startswith(b"#!"):
            interp = first[2:].decode(errors="replace").split()
            if interp and Path(interp[0]).name.startswith("python") and Path(interp[0]).exists():
                return interp[0]
    return sys.executable


class Pypilot(Peer):
    name = "pypilot"
    restarts = supervisor = control = True

    def available(self) -> bool:
        return pypilot_binary() is not None

    def binary(self) -> str:
        found = pypilot_binary()
        assert found is not None, "pypilot is not installed"
        return str(found)

    def version(self) -> str:
        try:
            out = run([self.binary(), "-version"], timeout=20, check=False).stdout.strip().splitlines()[0]
            rev = run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], timeout=20, check=False)
            return f"{out.removeprefix('Version: ')} (git {rev.stdout.strip() or '?'})"
        except Exception:
            return "dev"

    def launch(self, job: Job, workdir: Path) -> Launch:
        restarts: str | int = "unlimited" if job.restart else "never"
        if job.restart_count is not None:
            restarts = job.restart_count
        jobs = [
            {"name": "app" if job.procs == 1 else f"app{i}", "exec": job.argv, "restarts": restarts}
            | ({} if job.throttle else {"backoff": False})
            for i in range(job.procs)
        ]
        sock = job.control_socket or workdir / "pypilot.sock"
        config = {
            "consul": "localhost:8500",
            "logging": {"level": "DEBUG" if job.debug else "INFO"},
            "control": {"socket": str(sock)},
            "jobs": jobs,
        }
        path = workdir / "pypilot.json5"
        path.write_text(json.dumps(config, indent=1))
        return Launch([self.binary(), "-config", str(path)], _env(), control=str(sock))


CONTAINERPILOT = REPO.parent / "shared" / "bin" / "containerpilot"  # --containerpilot PATH overrides


class ContainerPilot(Pypilot):
    """ContainerPilot 3.8 itself (a static Go binary): it reads the very config pypilot is given."""

    name = "ContainerPilot 3.8"
    supervisor = control = False  # no DEBUG exit lines to time; its control API is not compared here
    path = Path(os.environ.get("CONTAINERPILOT", str(CONTAINERPILOT)))

    def available(self) -> bool:
        return self.path.is_file() and os.access(self.path, os.X_OK)

    def binary(self) -> str:
        return str(self.path)

    def version(self) -> str:
        out = run([self.binary(), "-version"], timeout=20, check=False).stdout.split()
        return out[1] if len(out) > 1 else "?"


class BarePython(Peer):
    """Not an init: the launch baseline of issue #3, a bare ``python3 -I -S`` that execs the payload."""

    name = "python3 -I -S"

    def available(self) -> bool:
        return True

    def version(self) -> str:
        return sys.version.split()[0]

    def launch(self, job: Job, workdir: Path) -> Launch:
        exe = pypilot_python()  # the same interpreter as the pypilot measured
        code = "import os,sys;os.execv(sys.argv[1],sys.argv[1:])"
        return Launch([exe, "-I", "-S", "-c", code, *job.argv], _env())


INITS: list[Peer] = [Pypilot(), ContainerPilot(), Tini(), DumbInit(), S6(), Runit(), Supervisord(), Circus()]
BASELINE = BarePython()


def install_pypilot() -> None:
    """(Re)install pypilot from the working tree into its own venv, as `pip install .` would for a user."""
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # a user's install compiles
    if not (PYPILOT_VENV / "bin" / "python").exists():
        run([sys.executable, "-m", "venv", str(PYPILOT_VENV)], timeout=300)
    pip = [str(PYPILOT_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    res = run([*pip, str(REPO)], timeout=900, check=False, env=env)  # dependencies, first time
    if res.returncode == 0:
        res = run([*pip, "--force-reinstall", "--no-deps", str(REPO)], timeout=900, check=False, env=env)
    if res.returncode != 0:
        log(f"installing pypilot into {PYPILOT_VENV} failed, measuring .venv:\n{res.stderr[-800:]}")
        (PYPILOT_VENV / "bin" / "pypilot").unlink(missing_ok=True)


def ensure_installed() -> None:
    """Install whichever peers are missing: Debian packages with apt-get, PyPI ones into the peers venv."""
    missing = [pkg for pkg, binary in APT.values() if shutil.which(binary) is None]
    if missing:
        log(f"apt-get install -y {' '.join(missing)}")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        import subprocess

        if subprocess.run(cmd, capture_output=True, env=env, timeout=600).returncode != 0:
            log("apt-get update (a package was not found)")
            subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600)
            res = subprocess.run(cmd, capture_output=True, env=env, timeout=600, text=True)
            if res.returncode != 0:
                log(f"apt-get install failed; those peers are skipped:\n{res.stderr[-800:]}")
    install_pypilot()
    if not (VENV / "bin" / "supervisord").exists() or not (VENV / "bin" / "circusd").exists():
        log(f"creating {VENV} with {' '.join(PYPI)}")
        PEERS_DIR.mkdir(parents=True, exist_ok=True)
        if not (VENV / "bin" / "python").exists():
            run([sys.executable, "-m", "venv", str(VENV)], timeout=300)
        res = run([str(VENV / "bin" / "pip"), "install", "-q", *PYPI], timeout=900, check=False)
        if res.returncode != 0:
            log(f"pip install failed; supervisord/circus are skipped:\n{res.stderr[-800:]}")


def ensure_matplotlib() -> Path | None:
    """The peers venv's python with matplotlib installed (only when charting); None if that fails."""
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    if run([str(python), "-c", "import matplotlib"], timeout=60, check=False).returncode != 0:
        log("installing matplotlib into the peers venv")
        if run(
            [str(python), "-m", "pip", "install", "-q", "matplotlib"], timeout=900, check=False
        ).returncode:
            return None
    return python
