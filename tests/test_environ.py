"""Nothing of pypilot's runtime reaches the jobs' environment (issue #13; #14: no LC_CTYPE in templates).

Python's locale coercion (PEP 538) sets ``LC_CTYPE=C.UTF-8`` in its own environment when no locale is set;
ContainerPilot added nothing. pypilot is run as PID 1 with ``env -i`` (nothing at all) and with a locale the
container chose, both as installed (this venv) and as the self-contained build (scripts/bundle.py, made once
here from this venv); a job prints its environment, and a template renders ``LC_CTYPE``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pid1 import Pilot

ROOT = Path(__file__).resolve().parents[1]
ENV = shutil.which("env") or "/usr/bin/env"
TEMPLATE = "lc=[{{ .LC_CTYPE }}] lang=[{{ .LANG }}]"


class CleanPilot(Pilot):
    """pypilot as PID 1 with exactly ``base_env`` as its environment (``env -i``)."""

    base_env: dict[str, str] = {}
    entry: list[str] = [sys.executable, "-m", "pypilot"]

    def command(self, args: list[str]) -> list[str]:
        env = [f"{k}={v}" for k, v in self.base_env.items()]
        return [ENV, "-i", *env, *self.entry, "-config", str(self.config_path), *args]


def job_env(entry: list[str], env: dict[str, str]) -> tuple[dict[str, str], str]:
    """The environment a job sees under pypilot started with exactly ``env``, and the rendered template."""
    pilot_cls = type("P", (CleanPilot,), {"base_env": env, "entry": entry})
    config = {
        "jobs": [
            {"name": "envjob", "exec": [ENV], "restarts": "never"},
            {"name": "tmpl", "exec": ["/bin/echo", TEMPLATE], "restarts": "never"},
        ]
    }
    with pilot_cls(config) as p:
        p.wait_log(r"tmpl lc=")
        p.wait_log(r"envjob CONTAINERPILOT_PID=")
        log = p.log()
    found = {}
    for line in log.splitlines():
        m = re.search(r"envjob ([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if m:
            found[m.group(1)] = m.group(2)
    tmpl = next(line for line in log.splitlines() if "tmpl lc=" in line)
    return found, tmpl.split("tmpl ", 1)[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pypilot's self-contained build, made from this venv."""
    if shutil.which("patchelf") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "patchelf"]
        if subprocess.run(cmd, capture_output=True, env=env, timeout=600).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=600)
            subprocess.run(cmd, capture_output=True, env=env, timeout=600)
    if shutil.which("patchelf") is None:
        pytest.skip("patchelf is not installed and cannot be here (apt-get install patchelf, as root)")
    prefix = tmp_path_factory.mktemp("bundle") / "pypilot"
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bundle.py"), "--prefix", str(prefix)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    yield prefix
    shutil.rmtree(prefix, ignore_errors=True)


def entries(request: pytest.FixtureRequest, kind: str) -> list[str]:
    if kind == "installed":
        return [sys.executable, "-m", "pypilot"]
    prefix: Path = request.getfixturevalue("bundle")
    return [str(prefix / "bin" / "pypilot")]


@pytest.mark.parametrize("kind", ["installed", "bundle"])
def test_env_i_job_sees_nothing_but_containerpilot_pid(request: pytest.FixtureRequest, kind: str) -> None:
    found, tmpl = job_env(entries(request, kind), {})
    assert found == {"CONTAINERPILOT_PID": "1"}, found
    assert tmpl == "lc=[] lang=[]", tmpl


@pytest.mark.parametrize("kind", ["installed", "bundle"])
def test_container_locale_reaches_jobs_unchanged(request: pytest.FixtureRequest, kind: str) -> None:
    # LC_CTYPE=C is what Python coerces to C.UTF-8: the job must see the container's C
    env = {"LC_CTYPE": "C", "LANG": "C", "PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": "/image/lib"}
    found, tmpl = job_env(entries(request, kind), env)
    assert found == {**env, "CONTAINERPILOT_PID": "1"}, found
    assert tmpl == "lc=[C] lang=[C]", tmpl


def test_python_coerces_and_restore_undoes_it() -> None:
    """The premise (Python sets LC_CTYPE itself) and the fix, in one clean process."""
    code = (
        "import os; before = sorted(os.environ); from pypilot import environ; changed = environ.restore();"
        " print(before, changed, sorted(os.environ))"
    )
    out = subprocess.run(
        [ENV, "-i", sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    assert out.strip() == "['LC_CTYPE'] ['LC_CTYPE'] []", out


def test_bundle_job_python3_is_the_systems(bundle: Path) -> None:
    """A job's python3 is the host's (the image's), never the bundle's interpreter; and nothing of the
    bundle's loader or libraries is on the job's path."""
    python3 = shutil.which("python3", path="/usr/bin:/bin")
    if python3 is None:
        pytest.skip("no python3 in /usr/bin")
    script = 'which python3; readlink -f "$(which python3)"; python3 -c "import sys; print(sys.prefix)"'
    attrs = {"base_env": {"PATH": "/usr/bin:/bin"}, "entry": [str(bundle / "bin" / "pypilot")]}
    pilot_cls = type("P", (CleanPilot,), attrs)
    with pilot_cls({"jobs": [{"name": "py", "exec": ["sh", "-c", script], "restarts": "never"}]}) as p:
        lines = p.wait_log(r"^.*py /", count=3)
    assert not any(str(bundle) in line for line in lines), lines
    assert os.path.realpath(python3) in "\n".join(lines), lines
