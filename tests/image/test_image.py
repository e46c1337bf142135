"""The container image, built with podman and run for real: pypilot as a container's PID 1.

Run: ``pytest -m image tests/image`` (as root; ``tests/image/build.sh`` installs podman, runc and
debootstrap when they are missing, makes the Debian base once and builds ``localhost/pypilot:test-<pid>``,
removed again at the end with every container the tests made). They skip only where podman cannot be
had at all (not root, no apt-get); a failed build or a failed check is a failure.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pid1 import wait_for

pytestmark = [pytest.mark.image, pytest.mark.timeout(900)]  # the first test builds the image

HERE = Path(__file__).resolve().parent
BUILD_SH = HERE / "build.sh"
STOP_TIMEOUT = 10  # podman stop -t: SIGTERM, then SIGKILL after this many seconds
LAYER_TARGET = 30 * 1000 * 1000  # pypilot's layer over its Python base, bytes (podman reports SI units)
# examples/pypilot.json5, baked into the image: what its jobs show once they run
EXAMPLE_FIRST_OUTPUT = "preparing"  # the setup job
EXAMPLE_TICK = re.compile(r"tick: \d\d:\d\d:\d\d")  # the periodic job
EXAMPLE_WEB = ("http://127.0.0.1:8080/index.html", "ready")  # the web job serves what setup wrote
EXAMPLE_JOBS = ("setup", "web", "tick")


class Podman:
    """podman with the store and containers.conf of build.sh."""

    def __init__(self, env: dict[str, str]) -> None:
        self.args = ["podman", *shlex.split(env["PODMAN_ARGS"])]
        self.env = {**os.environ, "CONTAINERS_CONF": env["CONTAINERS_CONF"]}
        self.image = env["PYPILOT_IMAGE"]
        self.base = env["PYPILOT_IMAGE_BASE"]
        self.containers: list[str] = []

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([*self.args, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {shlex.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def run_detached(self, *args: str, image_args: tuple[str, ...] = ()) -> str:
        name = f"pypilot-test-{uuid.uuid4().hex[:10]}"
        self.containers.append(name)
        # no healthcheck timer: it needs systemd, absent here; `podman healthcheck run` still works
        self(
            "run",
            "-d",
            "--pull",
            "never",
            "--name",
            name,
            "--health-interval",
            "disable",
            *args,
            self.image,
            *image_args,
        )
        return name

    def logs(self, name: str) -> str:
        p = self("logs", name, check=False)
        return p.stdout + p.stderr

    def state(self, name: str) -> tuple[str, int]:
        out = self("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name).stdout.split()
        return out[0], int(out[1])

    def remove_all(self) -> None:
        for name in self.containers:
            self("rm", "-f", "-t", "0", name, check=False)
        self.containers.clear()


# this session's own tag (the layer cache is shared), so that concurrent runs do not remove each other's
BUILD_ENV = {
    **os.environ,
    "PYPILOT_IMAGE": os.environ.get("PYPILOT_IMAGE", f"localhost/pypilot:test-{os.getpid()}"),
}


def _build_env() -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(BUILD_SH), "--env"], env=BUILD_ENV, capture_output=True, text=True, check=True
    ).stdout
    env = {}
    for line in out.splitlines():
        key, _, value = shlex.split(line.removeprefix("export "))[0].partition("=")
        env[key] = value
    return env


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    if os.geteuid() != 0:
        pytest.skip("the image tests run podman as root (its store under /var/tmp, its runroot under /run)")
    if shutil.which("podman") is None and shutil.which("apt-get") is None:
        pytest.skip("podman is not installed and cannot be installed here (no apt-get)")
    t0 = time.monotonic()
    p = subprocess.run(["bash", str(BUILD_SH)], env=BUILD_ENV, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        pytest.fail(f"tests/image/build.sh failed ({p.returncode}):\n{p.stderr[-4000:]}", pytrace=False)
    print(f"\nimage built in {time.monotonic() - t0:.1f} s")
    pm = Podman(_build_env())
    yield pm
    pm.remove_all()
    pm("rmi", "-f", pm.image, check=False)


@pytest.fixture(scope="module")
def container(podman: Podman) -> str:
    """One container of the image as built: its example config, default command."""
    name = podman.run_detached()
    wait_for(lambda: EXAMPLE_FIRST_OUTPUT in podman.logs(name), 30, "the example job's output")
    return name


def exec_in(podman: Podman, name: str, *cmd: str, check: bool = True, timeout: float = 30) -> str:
    return podman("exec", name, *cmd, check=check, timeout=timeout).stdout


def children_of_1(podman: Podman, name: str) -> list[tuple[int, str, str]]:
    """(pid, comm, state) of every process whose parent is PID 1 in the container."""
    out = exec_in(podman, name, "sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null", check=False)
    procs = []
    for line in out.splitlines():
        m = re.match(r"(\d+) \((.*)\) (\S) (\d+) ", line)
        if m and m.group(4) == "1":
            procs.append((int(m.group(1)), m.group(2), m.group(3)))
    return procs


# --- the image as built ---------------------------------------------------------------------------


def test_image_config(podman: Podman) -> None:
    fmt = "{{json .Config.Entrypoint}}|{{json .Config.Env}}|{{json .HealthCheck}}"
    inspect = podman("image", "inspect", "--format", fmt, podman.image).stdout
    entrypoint, env, health = inspect.strip().split("|", 2)
    assert entrypoint == '["pypilot"]'
    assert "CONTAINERPILOT=/etc/containerpilot.json5" in env
    assert '"pypilot"' in health and '"-ping"' in health, health
    # the runtime stage holds pypilot and its dependencies only: no compiler, no pip; and the jobs' python3
    # is the base image's, not pypilot's venv
    script = (
        "for t in gcc cc; do command -v $t; done; ls /opt/pypilot/bin; echo python3=$(command -v python3);"
        " echo pypilot=$(command -v pypilot); test -f /etc/containerpilot.json5 && echo config-ok"
    )
    out = podman(
        "run",
        "--rm",
        "--pull",
        "never",
        "--no-healthcheck",
        "--entrypoint",
        "sh",
        podman.image,
        "-c",
        script,
        check=False,
    ).stdout
    assert "config-ok" in out, out
    assert not re.search(r"^(/.*/(gcc|cc)|pip.*|easy_install.*)$", out, re.M), out
    assert not re.search(r"^python3=/opt/pypilot", out, re.M), out
    assert re.search(r"^pypilot=/", out, re.M), out


def test_pypilot_layer_size(podman: Podman) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", podman.image).stdout)
    base = int(podman("image", "inspect", "--format", "{{.Size}}", podman.base).stdout)
    print(f"\nimage {size / 1e6:.1f} MB, pypilot's layers over the Python base {(size - base) / 1e6:.1f} MB")
    assert size - base <= LAYER_TARGET


# --- a running container ----------------------------------------------------------------------------


def test_pypilot_is_pid_1(podman: Podman, container: str) -> None:
    argv = exec_in(podman, container, "cat", "/proc/1/cmdline").split("\0")
    assert any(Path(a).name == "pypilot" for a in argv[:2]), argv


def test_example_jobs_run(podman: Podman, container: str) -> None:
    wait_for(lambda: EXAMPLE_FIRST_OUTPUT in podman.logs(container), 10, "the setup job's output")
    wait_for(lambda: EXAMPLE_TICK.search(podman.logs(container)), 15, "the periodic job's output")
    url, body = EXAMPLE_WEB
    fetch = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=2).read().decode())"

    def served() -> bool:
        p = podman("exec", container, "python3", "-c", fetch, check=False)
        return p.returncode == 0 and body in p.stdout

    wait_for(served, 20, f"the web job to serve {url}")
    assert podman.state(container)[0] == "running"


def test_orphans_are_reaped(podman: Podman, container: str) -> None:
    # the exec'd shell exits at once: its background sleep is orphaned to PID 1 (pypilot), and must not
    # stay a zombie once it ends
    pid = int(exec_in(podman, container, "sh", "-c", "sleep 1 >/dev/null 2>&1 & echo $!").strip())
    watch = (
        'p=$1; i=0; last=""\n'
        "while [ -e /proc/$p ]; do\n"
        '  s=$(cut -d" " -f3,4 /proc/$p/stat 2>/dev/null) && last=$s\n'
        '  i=$((i+1)); [ $i -gt 200 ] && { echo "still there: $last"; exit 1; }\n'
        "  sleep 0.05\n"
        "done\n"
        'echo "gone, last seen: $last"\n'
    )
    out = podman("exec", container, "sh", "-c", watch, "watch", str(pid), check=False, timeout=30)
    assert out.returncode == 0, f"orphan {pid} not reaped: {out.stdout}{out.stderr}"
    assert out.stdout.split()[-1] == "1", f"orphan was not re-parented to PID 1: {out.stdout}"

    # a burst of double-forked orphans
    before = {pid for pid, _, _ in children_of_1(podman, container)}  # the jobs
    exec_in(podman, container, "sh", "-c", "for i in $(seq 20); do (sleep 0.3 >/dev/null 2>&1 &) ; done")

    def settled() -> bool:
        kids = children_of_1(podman, container)
        return not any(state == "Z" or (comm == "sleep" and pid not in before) for pid, comm, state in kids)

    wait_for(settled, 15, "the orphaned sleeps to end and be reaped")
    assert podman.state(container)[0] == "running"


def control(podman: Podman, container: str, *cmd: str) -> str:
    """Run a control-plane command in the container until it succeeds (the socket comes up just after
    the first jobs start); its stdout."""
    what = f"pypilot {' '.join(cmd)}"
    last = podman("exec", container, "pypilot", *cmd, check=False)
    if last.returncode == 0:
        return last.stdout

    def succeeds() -> str:
        nonlocal last
        last = podman("exec", container, "pypilot", *cmd, check=False)
        return last.stdout if last.returncode == 0 else ""

    try:
        return str(wait_for(succeeds, 15, f"{what} to succeed"))
    except AssertionError:
        raise AssertionError(f"{what} -> {last.returncode}: {last.stdout}{last.stderr}") from None


def test_ping_and_healthcheck(podman: Podman, container: str) -> None:
    control(podman, container, "-ping")
    health = podman("healthcheck", "run", container, check=False)
    assert health.returncode == 0, f"HEALTHCHECK failed: {health.stdout}{health.stderr}"


def test_status(podman: Podman, container: str) -> None:
    out = control(podman, container, "status")
    assert all(job in out for job in EXAMPLE_JOBS), out


# --- the container's lifecycle ------------------------------------------------------------------


def test_podman_stop_exits_0_quickly(podman: Podman) -> None:
    name = podman.run_detached()
    wait_for(lambda: EXAMPLE_FIRST_OUTPUT in podman.logs(name), 30, "the example job's output")
    t0 = time.monotonic()
    podman("stop", "-t", str(STOP_TIMEOUT), name, timeout=STOP_TIMEOUT + 30)
    took = time.monotonic() - t0
    print(f"\npodman stop (SIGTERM) took {took:.2f} s")
    status, code = podman.state(name)
    assert (status, code) == ("exited", 0), podman.logs(name)
    assert took < STOP_TIMEOUT / 2, f"stop took {took:.1f} s of the {STOP_TIMEOUT} s timeout"


@pytest.mark.parametrize(
    ("case", "config", "env"),
    [
        ("syntax", "{jobs: [{name: 'broken', exec: ['true'],", ()),
        ("missing", None, ("-e", "CONTAINERPILOT=/etc/no-such-config.json5")),
    ],
)
def test_bad_config_exits_nonzero(
    podman: Podman, tmp_path: Path, case: str, config: str | None, env: tuple[str, ...]
) -> None:
    args = ["run", "--rm", "--pull", "never", "--no-healthcheck", *env]
    if config is not None:
        (tmp_path / "bad.json5").write_text(config)
        args += ["-v", f"{tmp_path / 'bad.json5'}:/etc/containerpilot.json5:ro"]
    p = podman(*args, podman.image, check=False, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode not in (0, 125, 126, 127), f"{case}: exit {p.returncode}\n{out}"
    assert re.search(r"config|pars|json|no such file", out, re.I), f"{case}: no error on the output:\n{out}"


MAIN_JOB = """{
  consul: "localhost:8500",
  jobs: [
    {name: "app", exec: ["sh", "-c", "echo app starting; sleep 0.5; exit 7"], main: true},
    {name: "sidecar", exec: ["sleep", "infinity"], restarts: "unlimited"},
  ],
}"""


def test_main_job_exit_code_is_the_containers(podman: Podman, tmp_path: Path) -> None:
    cfg = tmp_path / "main.json5"
    cfg.write_text(MAIN_JOB)
    mount = f"{cfg}:/etc/containerpilot.json5:ro"
    name = podman.run_detached("-v", mount)
    wait_for(lambda: podman.state(name)[0] == "exited", 20, "the container to exit with its main job")
    code = podman.state(name)[1]
    assert code == 7, f"container exited {code}, the main job 7\n{podman.logs(name)}"
    assert "app starting" in podman.logs(name)


USER_DOCKERFILE = """\
FROM {base}
COPY --from={image} /opt/pypilot /opt/pypilot
COPY containerpilot.json5 /etc/containerpilot.json5
ENTRYPOINT ["/opt/pypilot/bin/pypilot", "-config", "/etc/containerpilot.json5"]
"""


def test_users_dockerfile_adds_pypilot_in_three_lines(podman: Podman, tmp_path: Path) -> None:
    """The README's tini-style use: a user's own image (same Python base) takes pypilot's venv."""
    (tmp_path / "Containerfile").write_text(USER_DOCKERFILE.format(base=podman.base, image=podman.image))
    (tmp_path / "containerpilot.json5").write_text(
        '{consul: "localhost:8500", jobs: [{name: "app", exec: ["sh", "-c", "echo user app up; sleep 600"]}]}'
    )
    tag = f"localhost/pypilot-user-test:{uuid.uuid4().hex[:8]}"
    podman("build", "--pull=never", "--format", "docker", "-t", tag, str(tmp_path), timeout=300)
    try:
        name = f"pypilot-test-{uuid.uuid4().hex[:10]}"
        podman.containers.append(name)
        podman("run", "-d", "--pull", "never", "--name", name, tag)
        wait_for(lambda: "user app up" in podman.logs(name), 30, "the user's job output")
        argv = exec_in(podman, name, "cat", "/proc/1/cmdline").split("\0")
        assert Path(argv[1]).name == "pypilot", argv
        podman("stop", "-t", str(STOP_TIMEOUT), name, timeout=STOP_TIMEOUT + 30)
        assert podman.state(name) == ("exited", 0)
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
        podman("rmi", "-f", tag, check=False)
