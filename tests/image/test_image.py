"""The container images, built with podman and run for real: pypilot as a container's PID 1.

Every image carries pypilot's self-contained build (/opt/pypilot: its own interpreter, loader, glibc and
libraries), made on a Python build base, on three runtime bases (``VARIANTS``): a Debian base with python3
(the default kind, for Python users), a Debian minbase with no python3, and ``scratch`` with only a static
busybox (no libc at all: it stands for Alpine and distroless). Each runs the same checks: the image's
make-up, PID 1, reaping, the jobs' environment (nothing of pypilot's runtime leaks into it), a full-featured
config (health worker, Consul worker against the stand-in, telemetry, control worker: ``-ping``, ``status``,
reload), stop, bad configs, the main job's exit code and the README's two-line use in a user's own image.
The baked-in example config (its web job runs python3) is checked on the Python base.

Run: ``pytest -m image tests/image`` (as root; ``tests/image/build.sh`` installs podman, runc, debootstrap
and busybox-static when they are missing, makes the bases once and builds ``localhost/pypilot:test-<pid>``
and its ``-minbase``/``-busybox`` variants, removed again at the end with every container the tests made).
They skip only where podman cannot be had at all (not root, no apt-get); a failed build or a failed check is
a failure.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.consul_standin import ConsulStandin
from tests.pid1 import wait_for

pytestmark = [pytest.mark.image, pytest.mark.timeout(900)]  # the first test builds the image

HERE = Path(__file__).resolve().parent
BUILD_SH = HERE / "build.sh"
STOP_TIMEOUT = 10  # podman stop -t: SIGTERM, then SIGKILL after this many seconds
LAYER_TARGET = 40 * 1000 * 1000  # pypilot's layer over any base, bytes (podman reports SI units); aim 30
VARIANTS = ("python", "minbase", "busybox")
BUNDLE_PYTHON = "/opt/pypilot/bin/pypilot-python"  # the bundle's own interpreter (not on PATH)
# what pypilot's runtime (or a bundler) could put in the environment, and must not hand to a job
LEAKS = re.compile(
    r"^(LD_LIBRARY_PATH|LD_PRELOAD|PYTHONHOME|PYTHONPATH|PYTHONEXECUTABLE|_PYI_\w*|_MEIPASS\w*|LC_CTYPE|LC_ALL|LANG)=",
    re.M,
)
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
        self.images = {v: env[f"PYPILOT_IMAGE_{v.upper()}"] for v in VARIANTS}
        self.bases = {v: env[f"PYPILOT_IMAGE_BASE_{v.upper()}"] for v in VARIANTS}
        self.containers: list[str] = []

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([*self.args, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {shlex.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def run_detached(self, *args: str, image_args: tuple[str, ...] = (), image: str = "") -> str:
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
            image or self.image,
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
    pm("rmi", "-f", *pm.images.values(), check=False)


@dataclasses.dataclass(frozen=True)
class Image:
    variant: str
    image: str
    base: str


@pytest.fixture(scope="module", params=VARIANTS)
def image(podman: Podman, request: pytest.FixtureRequest) -> Image:
    """Each runtime base in turn: the Python base, Debian minbase (no python3), scratch + static busybox."""
    v = request.param
    return Image(v, podman.images[v], podman.bases[v])


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


def sh_in(podman: Podman, image: Image, script: str) -> str:
    """Run ``sh -c script`` in a fresh container of ``image`` instead of pypilot; its stdout."""
    return podman(
        "run", "--rm", "--pull", "never", "--no-healthcheck", "--entrypoint", "sh", image.image, "-c", script,
        check=False,
    ).stdout  # fmt: skip


def test_image_config(podman: Podman, image: Image) -> None:
    fmt = "{{json .Config.Entrypoint}}|{{json .Config.Env}}|{{json .HealthCheck}}"
    inspect = podman("image", "inspect", "--format", fmt, image.image).stdout
    entrypoint, env, health = inspect.strip().split("|", 2)
    assert entrypoint == '["/opt/pypilot/bin/pypilot"]'
    assert "CONTAINERPILOT=/etc/containerpilot.json5" in env
    assert not LEAKS.search("\n".join(json.loads(env))), env
    assert '"/opt/pypilot/bin/pypilot"' in health and '"-ping"' in health, health
    # the runtime stage holds pypilot's bundle only: no compiler, no pip; the jobs' python3 is the base
    # image's (or none), never pypilot's; `pypilot` is on PATH
    script = (
        "for t in gcc cc; do command -v $t; done; ls /opt/pypilot/bin; echo python3=$(command -v python3);"
        " echo pypilot=$(command -v pypilot); test -f /etc/containerpilot.json5 && echo config-ok;"
        " ls /lib/*/libc.so.6 /lib/libc.so* /usr/lib/*/libc.so.6 2>/dev/null | sed 's/^/libc=/'"
    )
    out = sh_in(podman, image, script)
    assert "config-ok" in out, out
    assert not re.search(r"^(/.*/(gcc|cc)|pip.*|easy_install.*|python3?)$", out, re.M), out
    assert re.search(r"^pypilot=/", out, re.M), out
    python3 = re.search(r"^python3=(.*)$", out, re.M)
    assert python3 and not python3.group(1).startswith("/opt/pypilot"), out
    # each base is what it stands for
    if image.variant == "python":
        assert python3.group(1), out
    else:
        assert python3.group(1) == "", f"{image.variant} must have no python3: {out}"
    assert ("libc=" in out) == (image.variant != "busybox"), out


def test_pypilot_layer_size(podman: Podman, image: Image) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image.image).stdout)
    base = int(podman("image", "inspect", "--format", "{{.Size}}", image.base).stdout)
    layers = (size - base) / 1e6
    print(f"\n{image.variant}: image {size / 1e6:.1f} MB, pypilot's layers over the base {layers:.1f} MB")
    assert size - base <= LAYER_TARGET


# --- a running container of the example config (the Python base: its web job is python3's) ------------


@pytest.fixture(scope="module")
def container(podman: Podman) -> str:
    """One container of the Python-base image as built: its example config, default command."""
    name = podman.run_detached()
    wait_for(lambda: EXAMPLE_FIRST_OUTPUT in podman.logs(name), 30, "the example job's output")
    return name


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
    health = podman("healthcheck", "run", container, check=False)
    assert health.returncode == 0, f"HEALTHCHECK failed: {health.stdout}{health.stderr}"


# --- a full-featured container on every base ------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


JOB_ENV_SCRIPT = (
    "env > /tmp/job.env; (command -v python3 || echo none) > /tmp/job.python3;"
    " readlink /proc/self/exe > /tmp/job.exe; exec sleep 600"
)


def full_config(consul: str, telemetry_port: int, extra_jobs: tuple[dict[str, object], ...] = ()) -> str:
    config = {
        "consul": consul,
        "logging": {"level": "INFO"},
        "stopTimeout": 5,
        "jobs": [
            {"name": "envjob", "exec": ["sh", "-c", JOB_ENV_SCRIPT]},
            {"name": "app", "exec": ["sleep", "600"], "port": 8000, "interfaces": ["static:127.0.0.1"],
             "health": {"exec": ["sh", "-c", "test -e /proc/1"], "interval": 1, "ttl": 5}},
            {"name": "tick", "exec": ["sh", "-c", "echo tick"], "when": {"interval": "1s"}},
            *extra_jobs,
        ],
        "telemetry": {"port": telemetry_port, "interfaces": ["static:127.0.0.1"],
                      "metrics": [{"namespace": "image", "subsystem": "test", "name": "gauge", "help": "h",
                                   "type": "gauge"}]},
    }  # fmt: skip
    return json.dumps(config, indent=1)


@dataclasses.dataclass
class Full:
    name: str
    image: Image
    standin: ConsulStandin
    config_dir: Path
    telemetry_port: int


@pytest.fixture(scope="module")
def full(podman: Podman, image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Full]:
    """A container of ``image`` running the full config: host network, so that pypilot reaches the Consul
    stand-in on 127.0.0.1 and the tests reach its telemetry; its config directory is mounted read-write."""
    cfg_dir = tmp_path_factory.mktemp(f"full-{image.variant}")
    port = free_port()
    with ConsulStandin() as standin:
        (cfg_dir / "pypilot.json5").write_text(full_config(standin.address, port))
        name = podman.run_detached(
            "--network", "host", "-v", f"{cfg_dir}:/etc/pp:Z", "-e", "CONTAINERPILOT=/etc/pp/pypilot.json5",
            image=image.image,
        )  # fmt: skip
        wait_for(lambda: "tick" in podman.logs(name), 30, f"the periodic job's output ({image.variant})")
        yield Full(name, image, standin, cfg_dir, port)


def test_pypilot_is_pid_1(podman: Podman, full: Full) -> None:
    argv = exec_in(podman, full.name, "cat", "/proc/1/cmdline").split("\0")
    assert any(Path(a).name == "pypilot" for a in argv[:2]), argv
    # pypilot's interpreter runs on the bundle's own loader and libc, whatever the base has
    maps = exec_in(podman, full.name, "cat", "/proc/1/maps")
    libs = {line.split()[-1] for line in maps.splitlines() if ".so" in line.split()[-1]}
    assert libs and all(lib.startswith("/opt/pypilot/") for lib in libs), sorted(libs)


def test_job_environment_is_the_containers(podman: Podman, full: Full) -> None:
    """Nothing of pypilot's runtime reaches a job: no loader or Python variables, no LC_CTYPE from
    Python's locale coercion (the container sets no locale); the job's programs are the image's."""
    env = wait_for(lambda: exec_in(podman, full.name, "cat", "/tmp/job.env", check=False), 10, "job env")
    assert not LEAKS.search(env), env
    assert "CONTAINERPILOT_PID=1" in env and "CONTAINERPILOT=/etc/pp/pypilot.json5" in env, env
    pid1 = exec_in(podman, full.name, "sh", "-c", "tr '\\0' '\\n' < /proc/1/environ")
    assert not LEAKS.search(pid1), f"pypilot's own environment: {pid1}"
    python3 = exec_in(podman, full.name, "cat", "/tmp/job.python3").strip()
    exe = exec_in(podman, full.name, "cat", "/tmp/job.exe").strip()
    assert not exe.startswith("/opt/pypilot"), exe
    if full.image.variant == "python":
        assert python3.startswith("/usr/") and not python3.startswith("/opt/pypilot"), python3
    else:
        assert python3 == "none", python3


def test_locale_the_container_sets_reaches_the_job(podman: Podman, image: Image, tmp_path: Path) -> None:
    cfg = tmp_path / "c.json5"
    cfg.write_text('{consul: "localhost:8500", jobs: [{name: "a", exec: ["sh", "-c", "env; sleep 600"]}]}')
    name = podman.run_detached(
        "-v", f"{cfg}:/etc/containerpilot.json5:ro", "-e", "LC_CTYPE=C", "-e", "LANG=C", image=image.image
    )
    # LC_CTYPE=C is exactly what Python's locale coercion replaces with C.UTF-8: the job must see C
    wait_for(lambda: re.search(r" a LANG=C$", podman.logs(name), re.M), 20, "the job's environment")
    logs = podman.logs(name)
    assert re.search(r" a LC_CTYPE=C$", logs, re.M), logs
    assert "C.UTF-8" not in logs, logs


def test_orphans_are_reaped(podman: Podman, full: Full) -> None:
    container = full.name
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


def test_ping_status_and_healthcheck(podman: Podman, full: Full) -> None:
    control(podman, full.name, "-ping")
    out = control(podman, full.name, "status")
    assert all(job in out for job in ("envjob", "app", "tick")), out
    health = podman("healthcheck", "run", full.name, check=False)
    assert health.returncode == 0, f"HEALTHCHECK failed: {health.stdout}{health.stderr}"


def test_health_and_consul_workers(podman: Podman, full: Full) -> None:
    """The health check passes, and the Consul worker registers the service and keeps its TTL check
    passing (py-consul on pypilot's own transport: the bundle ships no requests)."""
    what = f"app passing in Consul ({full.image.variant})"
    wait_for(lambda: full.standin.health("app", passing=True), 30, what)
    wait_for(lambda: full.standin.health("containerpilot", passing=True), 30, "the telemetry self-service")


def test_telemetry_worker(podman: Podman, full: Full) -> None:
    url = f"http://127.0.0.1:{full.telemetry_port}/metrics"

    def metrics() -> str:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            return ""

    wait_for(lambda: "containerpilot_events" in metrics(), 20, f"{url}")
    control(podman, full.name, "-putmetric", "image_test_gauge=42")
    wait_for(lambda: "\nimage_test_gauge 42" in metrics(), 10, "the gauge at 42")


def test_reload_runs_the_new_config(podman: Podman, full: Full) -> None:
    added = {"name": "added", "exec": ["sh", "-c", "echo added-job-ran; exec sleep 600"]}
    (full.config_dir / "pypilot.json5").write_text(
        full_config(full.standin.address, full.telemetry_port, extra_jobs=(added,))
    )
    control(podman, full.name, "-reload")
    wait_for(lambda: "added-job-ran" in podman.logs(full.name), 20, "the reloaded config's new job")
    wait_for(lambda: "added" in control(podman, full.name, "status"), 10, "the new job in status")
    assert podman.state(full.name)[0] == "running"


def test_bundle_python_is_isolated(podman: Podman, full: Full) -> None:
    """The bundle's interpreter ignores PYTHONPATH/PYTHONHOME and imports only from /opt/pypilot."""
    code = "import sys, ssl; print(sys.flags.isolated, all(p.startswith('/opt/pypilot/') for p in sys.path))"
    out = podman(
        "exec", "-e", "PYTHONPATH=/nowhere", "-e", "PYTHONHOME=/nowhere", full.name, BUNDLE_PYTHON, "-c", code
    ).stdout
    assert out.split() == ["1", "True"], out
    # py-consul's requests (and what only it pulls in) is left out: pypilot's transport replaces it
    left_out = ("requests", "urllib3", "idna", "charset_normalizer", "certifi")
    code = f"import importlib.util as u; print([m for m in {left_out!r} if u.find_spec(m)])"
    out = podman("exec", full.name, BUNDLE_PYTHON, "-c", code).stdout
    assert out.strip() == "[]", out


# --- the container's lifecycle ------------------------------------------------------------------

SIMPLE = '{consul: "localhost:8500", jobs: [{name: "app", exec: ["sh", "-c", "echo app up; sleep 600"]}]}'


def test_podman_stop_exits_0_quickly(podman: Podman, image: Image, tmp_path: Path) -> None:
    (tmp_path / "c.json5").write_text(SIMPLE)
    mount = f"{tmp_path / 'c.json5'}:/etc/containerpilot.json5:ro"
    name = podman.run_detached("-v", mount, image=image.image)
    wait_for(lambda: "app up" in podman.logs(name), 30, "the job's output")
    t0 = time.monotonic()
    podman("stop", "-t", str(STOP_TIMEOUT), name, timeout=STOP_TIMEOUT + 30)
    took = time.monotonic() - t0
    print(f"\n{image.variant}: podman stop (SIGTERM) took {took:.2f} s")
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
    podman: Podman, image: Image, tmp_path: Path, case: str, config: str | None, env: tuple[str, ...]
) -> None:
    args = ["run", "--rm", "--pull", "never", "--no-healthcheck", *env]
    if config is not None:
        (tmp_path / "bad.json5").write_text(config)
        args += ["-v", f"{tmp_path / 'bad.json5'}:/etc/containerpilot.json5:ro"]
    p = podman(*args, image.image, check=False, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode not in (0, 125, 126, 127), f"{case}: exit {p.returncode}\n{out}"
    assert re.search(r"config|pars|json|no such file", out, re.I), f"{case}: no error on the output:\n{out}"


MAIN_JOB = """{
  consul: "localhost:8500",
  jobs: [
    {name: "app", exec: ["sh", "-c", "echo app starting; sleep 0.5; exit 7"], main: true},
    {name: "sidecar", exec: ["sleep", "600"], restarts: "unlimited"},
  ],
}"""


def test_main_job_exit_code_is_the_containers(podman: Podman, image: Image, tmp_path: Path) -> None:
    cfg = tmp_path / "main.json5"
    cfg.write_text(MAIN_JOB)
    mount = f"{cfg}:/etc/containerpilot.json5:ro"
    name = podman.run_detached("-v", mount, image=image.image)
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


def test_users_dockerfile_adds_pypilot_in_two_lines(podman: Podman, image: Image, tmp_path: Path) -> None:
    """The README's tini-style use: a user's own image, whatever its base, takes pypilot's bundle."""
    (tmp_path / "Containerfile").write_text(USER_DOCKERFILE.format(base=image.base, image=image.image))
    (tmp_path / "containerpilot.json5").write_text(
        '{consul: "localhost:8500", jobs: [{name: "app", exec: ["sh", "-c", "echo user app up; sleep 600"]}]}'
    )
    tag = f"localhost/pypilot-user-test:{uuid.uuid4().hex[:8]}"
    podman("build", "--pull=never", "--format", "docker", "-t", tag, str(tmp_path), timeout=300)
    name = f"pypilot-test-{uuid.uuid4().hex[:10]}"
    try:
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


UPGRADE_JOB = """{
  consul: "localhost:8500",
  jobs: [
    {name: "db", exec: ["sh", "-c", "echo db up; exec sleep 600"]},
    {name: "tick", exec: ["sh", "-c", "echo tick"], when: {interval: "500ms"}},
  ],
}"""
# a second bundle, as a newer one would be unpacked beside the first: the copy's entry point names its
# own interpreter (the bundle's shebang is absolute, its library paths are relative)
SECOND_BUNDLE = "cp -a /opt/pypilot /opt/pypilot-new && sed -i '1s|/opt/pypilot/|/opt/pypilot-new/|' " \
    "/opt/pypilot-new/bin/pypilot"


def test_upgrade_in_place_to_a_second_bundle_keeps_the_job(
        podman: Podman, image: Image, tmp_path: Path) -> None:
    """Issue #17 in an image without Python (or without a libc, on busybox): PID 1 becomes the other
    bundle's interpreter by exec, and the job it runs is the same process."""
    cfg = tmp_path / "up.json5"
    cfg.write_text(UPGRADE_JOB)
    name = podman.run_detached("-v", f"{cfg}:/etc/containerpilot.json5:ro", image=image.image)
    wait_for(lambda: "db up" in podman.logs(name), 30, "the db job")
    control(podman, name, "-ping")
    db = [pid for pid, comm, _ in children_of_1(podman, name) if comm == "sleep"]
    assert len(db) == 1, children_of_1(podman, name)
    exec_in(podman, name, "sh", "-c", SECOND_BUNDLE)
    up = podman("exec", name, "pypilot", "-upgrade", "/opt/pypilot-new/bin/pypilot", check=False, timeout=60)
    assert up.returncode == 0, f"{up.stdout}{up.stderr}\n{podman.logs(name)[-3000:]}"
    assert exec_in(podman, name, "readlink", "/proc/1/exe").strip() == "/opt/pypilot-new/bin/pypilot-python"
    assert [pid for pid, comm, _ in children_of_1(podman, name) if comm == "sleep"] == db
    status = control(podman, name, "status")
    assert "last upgrade: to /opt/pypilot-new/bin/pypilot" in status, status
    ticks = podman.logs(name).count("tick")
    wait_for(lambda: podman.logs(name).count("tick") > ticks + 1, 10, "the interval job ticking on")
    podman("stop", "-t", str(STOP_TIMEOUT), name, timeout=STOP_TIMEOUT + 30)
    assert podman.state(name) == ("exited", 0), podman.logs(name)[-3000:]
