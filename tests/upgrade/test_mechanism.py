"""The in-place upgrade's mechanism (issue #17), end to end with pypilot as PID 1 of a PID namespace.

A second install of this checkout is a copy of the venv's launcher in a temp dir (another path, the
same code); the refusal cases use ``/bin/true`` (not a pypilot) and wrappers that set the target's test
hook ``PYPILOT_UPGRADE_FAIL``. The larger scenarios (orphan storms, 100 upgrades in a row) live in
``test_upgrade_e2e.py``; these pin each promise once, plus the state format's own rules.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from pypilot import handover
from pypilot.handover import FORMAT
from tests.consul_standin import ConsulStandin
from tests.discovery.harness import Pilot, http, service_job, sid
from tests.pid1 import wait_for

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = Path(sys.executable)


@pytest.fixture(scope="module")
def installs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Targets: ``new`` (another install of this checkout), ``fail_check`` and ``fail_exec`` (it, with
    the test hook set), ``true`` (no pypilot at all)."""
    base = tmp_path_factory.mktemp("installs")
    body = (ROOT / "scripts" / "pypilot").read_text().split("\n", 1)[1]
    new = base / "new" / "bin" / "pypilot"
    new.parent.mkdir(parents=True)
    new.write_text(f"#!{VENV_PYTHON}\n{body}")
    new.chmod(0o755)
    out = {"new": str(new), "true": "/bin/true"}
    for hook in ("check", "exec"):
        wrapper = base / f"fail-{hook}"
        wrapper.write_text(f'#!/bin/sh\nPYPILOT_UPGRADE_FAIL={hook} exec {new} "$@"\n')
        wrapper.chmod(0o755)
        out[f"fail_{hook}"] = str(wrapper)
    return out


@pytest.fixture
def standin() -> Iterator[ConsulStandin]:
    with ConsulStandin() as fake:
        yield fake


def cli(p: Pilot, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pypilot", "-socket", p.control, *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def jobs(p: Pilot) -> dict[str, dict[str, Any]]:
    return {j["name"]: j for j in p.status()["jobs"]}


def ticks(p: Pilot, name: str) -> list[float]:
    """When each run of the interval job printed its line (the log's timestamps, epoch seconds)."""
    out = []
    for line in p.lines(rf"^\S+ {name} tick$"):
        stamp = line.split(" ", 1)[0].rstrip("Z")
        whole, _, frac = stamp.partition(".")
        out.append(datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp() + float(f"0.{frac or 0}"))
    return out


TICK = ["echo", "tick"]


class EventStream:
    """``GET /v3/events`` read in a thread: every data line and when it came."""

    def __init__(self, sock: str) -> None:
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(sock)
        self.s.sendall(b"GET /v3/events HTTP/1.1\r\nHost: control\r\n\r\n")
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        buf = b""
        while chunk := self._recv():
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.startswith(b"data: "):
                    try:
                        self.events.append((time.monotonic(), orjson.loads(line[6:])))
                    except orjson.JSONDecodeError:
                        pass

    def _recv(self) -> bytes:
        try:
            return self.s.recv(65536)
        except OSError:  # closed by the test
            return b""

    def close(self) -> None:
        self.s.shutdown(socket.SHUT_RDWR)
        self._t.join(10)
        self.s.close()


@pytest.mark.timeout(120)
def test_upgrade_keeps_jobs_timers_registrations_and_streams(installs: dict[str, str],
                                                              standin: ConsulStandin) -> None:
    """Same PIDs, no extra start, backoff and interval phase kept, no Consul (de)registration, TTLs
    still updated, the event stream still open; status names the new path and counts the upgrade."""
    config = {
        "consul": standin.address,
        "jobs": [
            {"name": "long", "exec": ["sleep", "1000"]},
            {"name": "crash", "exec": ["sh", "-c", "exit 1"], "restarts": "unlimited",
             "backoff": {"initial": "30s", "max": "30s"}},
            {"name": "tick", "exec": TICK, "when": {"interval": "100ms"}},
            service_job("web", 8080, interval=1, ttl=5),
            {"name": "waiter", "exec": ["true"], "when": {"once": "healthy", "source": "nobody"}},
        ],
    }
    with Pilot(config) as p:
        sid_web = sid("web")
        p.until(lambda: standin.check_status(f"service:{sid_web}") == "passing", 15, "web passing")
        p.until(lambda: jobs(p)["crash"]["state"] == "backoff", 15, "crash in backoff")
        stream = EventStream(p.control)
        p.until(lambda: stream.events, 10, "the event stream to carry an event")
        before = jobs(p)
        registers = len(standin.requests("PUT", "/v1/agent/service/register"))
        passes_before = len(standin.requests("PUT", prefix="/v1/agent/check/update/"))
        started = p.status()["pypilot"]["started"]

        t0 = time.time()
        result = cli(p, "-upgrade", installs["new"])
        assert result.returncode == 0, result.stderr
        upgraded_at, upgraded_mono = time.time(), time.monotonic()
        assert f"(state v{FORMAT}, 5 jobs)" in p.wait_log("upgrade: resumed from ")[0]

        after = jobs(p)
        assert after["long"]["pid"] == before["long"]["pid"] and after["long"]["runs"] == 1
        assert after["web"]["pid"] == before["web"]["pid"] and after["web"]["runs"] == 1
        assert after["crash"]["runs"] == before["crash"]["runs"]  # still in the same backoff
        assert after["crash"]["state"] == "backoff" and after["crash"]["failuresInARow"] > 1
        assert after["waiter"]["runs"] == 0 and after["waiter"]["state"] == "waiting"
        pp = p.status()["pypilot"]
        assert pp["path"] == installs["new"] and pp["upgrades"] == 1 and pp["started"] == started
        assert pp["last_upgrade"]["ok"] is True and pp["last_upgrade"]["to"] == installs["new"]

        # the interval keeps its period: the exec starts just after a tick, so the tick due meanwhile
        # is late by what the exec took beyond the period (nothing, when it takes less), never lost
        p.until(lambda: len([t for t in ticks(p, "tick") if t > upgraded_at]) >= 5, 10, "ticks after")
        around = [t for t in ticks(p, "tick") if t0 - 1 < t < upgraded_at + 1]
        gaps = [b - a for a, b in itertools.pairwise(around)]
        handover = pp["last_upgrade"]["handover_ms"] / 1000
        assert max(gaps) < max(0.19, handover + 0.15), (handover, gaps)  # + a spawn and its line read
        after_gaps = [b - a for a, b in itertools.pairwise([t for t in ticks(p, "tick") if t > upgraded_at])]
        assert sorted(after_gaps)[len(after_gaps) // 2] < 0.15, after_gaps  # the period again

        # Consul: no flap; the TTL goes on being passed
        updates = lambda: len(standin.requests("PUT", prefix="/v1/agent/check/update/"))  # noqa: E731
        p.until(lambda: updates() > passes_before + 1, 10, "TTL updates after the upgrade")
        assert len(standin.requests("PUT", "/v1/agent/service/register")) == registers
        assert not standin.requests("PUT", f"/v1/agent/service/deregister/{sid_web}")
        assert standin.check_status(f"service:{sid_web}") == "passing"

        # the event stream opened before the upgrade carries events from after it
        p.until(lambda: any(t > upgraded_mono + 0.3 for t, _ in stream.events), 10, "events after upgrade")
        stream.close()
        assert not p.zombies()
        assert p.lines("upgrade: checking ") and p.lines("upgrade: exec ")

        # and the new image shuts down as ever: the adopted discovery worker deregisters
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0
        assert standin.requests("PUT", f"/v1/agent/service/deregister/{sid_web}")


NOTIFY_LATER = [
    "python3", "-c",
    "import os, socket, sys, time\n"
    "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
    "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n"
    "time.sleep(1000)",
]


@pytest.mark.timeout(60)
def test_a_job_that_says_ready_after_the_upgrade_is_heard(installs: dict[str, str], tmp_path: Path) -> None:
    """The sd_notify socket is inherited, not bound again: READY=1 sent to the old image's socket after
    the upgrade reaches the new one, and the job turns healthy."""
    flag = tmp_path / "say-ready"
    with Pilot({"jobs": [{"name": "svc", "exec": [*NOTIFY_LATER, str(flag)], "ready": "notify"}]}) as p:
        p.until(lambda: jobs(p)["svc"]["pid"], 10, "svc to run")
        pid = jobs(p)["svc"]["pid"]
        assert cli(p, "-upgrade", installs["new"]).returncode == 0
        assert jobs(p)["svc"]["status"] != "healthy"
        flag.touch()
        p.until(lambda: jobs(p)["svc"]["status"] == "healthy", 10, "svc healthy after READY=1")
        assert jobs(p)["svc"]["pid"] == pid and jobs(p)["svc"]["readiness"]["ready"] is True


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("target", "why"),
    [("true", "is not a pypilot"), ("fail_check", "PYPILOT_UPGRADE_FAIL=check"),
     ("/nonexistent/pypilot", "not an executable file")],
)
def test_refused_upgrade_changes_nothing(installs: dict[str, str], target: str, why: str) -> None:
    """Not a pypilot, a check that fails, a path that is no executable: refused, exit 1 with the
    reason on stderr, and the jobs and the status are as they were."""
    with Pilot({"jobs": [{"name": "long", "exec": ["sleep", "1000"]}]}) as p:
        before = jobs(p)["long"]
        result = cli(p, "-upgrade", installs.get(target, target))
        assert result.returncode == 1
        assert why in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert why in p.wait_log("upgrade: refused: ")[0]
        assert jobs(p)["long"]["pid"] == before["pid"] and jobs(p)["long"]["runs"] == 1
        assert p.status()["pypilot"]["upgrades"] == 0
        assert not p.lines("upgrade: exec")
        assert not p.zombies()


@pytest.mark.timeout(90)
def test_failure_after_exec_rolls_back_then_a_good_upgrade_works(installs: dict[str, str]) -> None:
    """The target fails before confirming: it execs the old image back with the same state, which
    records ``ok: false``; the hook does not stick (the next upgrade, to a good target, succeeds)."""
    config = {"jobs": [{"name": "long", "exec": ["sleep", "1000"]},
                       {"name": "tick", "exec": TICK, "when": {"interval": "100ms"}}]}
    with Pilot(config) as p:
        pid = jobs(p)["long"]["pid"]
        result = cli(p, "-upgrade", installs["fail_exec"])
        assert result.returncode == 1 and "PYPILOT_UPGRADE_FAIL=exec" in result.stderr, result.stderr
        assert "PYPILOT_UPGRADE_FAIL=exec" in p.wait_log("upgrade: rolled back to ")[0]
        pp = p.status()["pypilot"]
        assert pp["upgrades"] == 0 and pp["last_upgrade"]["ok"] is False
        assert pp["path"] != installs["new"]
        assert jobs(p)["long"]["pid"] == pid and jobs(p)["long"]["runs"] == 1

        result = cli(p, "-upgrade", installs["new"])
        assert result.returncode == 0, result.stderr
        assert p.status()["pypilot"]["upgrades"] == 1
        assert jobs(p)["long"]["pid"] == pid
        assert not p.zombies()


@pytest.mark.timeout(60)
def test_a_failed_exec_is_refused_and_nothing_changes(installs: dict[str, str], tmp_path: Path) -> None:
    """A target that passes its check but is gone by the exec (ENOENT): PID 1 goes on as it was, the
    fds it had made inheritable are close-on-exec again, and the CLI says why."""
    vanishing = tmp_path / "vanishing"
    vanishing.write_text(f'#!/bin/sh\nrm -f "$0"\nexec {installs["new"]} "$@"\n')
    vanishing.chmod(0o755)
    with Pilot({"jobs": [{"name": "long", "exec": ["sleep", "1000"]}]}) as p:
        pid = jobs(p)["long"]["pid"]
        result = cli(p, "-upgrade", str(vanishing))
        assert result.returncode == 1 and "No such file" in result.stderr, result.stderr
        pp = p.status()["pypilot"]
        assert pp["upgrades"] == 0 and pp["last_upgrade"]["ok"] is False
        assert jobs(p)["long"]["pid"] == pid
        assert cli(p, "-upgrade", installs["new"]).returncode == 0  # and it can still upgrade


@pytest.mark.timeout(60)
def test_a_shutdown_during_the_check_wins(installs: dict[str, str], tmp_path: Path) -> None:
    """SIGTERM while the target's check runs: pypilot shuts down as ever and never execs the target."""
    slow = tmp_path / "slow"
    slow.write_text(f'#!/bin/sh\ntrap "" TERM\nsleep 1\nexec {installs["new"]} "$@"\n')  # outlives the sweep
    slow.chmod(0o755)
    with Pilot({"jobs": [{"name": "long", "exec": ["sleep", "1000"]}]}) as p:
        argv = [sys.executable, "-m", "pypilot", "-socket", p.control, "-upgrade", str(slow)]
        client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        p.wait_log("upgrade: checking ")
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0
        _, err = client.communicate(timeout=30)
        assert client.returncode == 1, err
        assert not p.lines("upgrade: exec ") and not p.lines("upgrade: resumed")
        assert p.lines("upgrade: refused: pypilot began a shutdown")


@pytest.mark.timeout(60)
def test_http_upgrade_answers_400_for_a_bad_body_and_422_for_a_refusal(installs: dict[str, str]) -> None:
    with Pilot({"jobs": [{"name": "long", "exec": ["sleep", "1000"]}]}) as p:
        status, _, body = http(p.control, "POST", "/v3/upgrade", {"nopath": 1})
        assert status == 400 and "path" in body["error"]
        status, _, body = http(p.control, "POST", "/v3/upgrade", {"path": "relative/pypilot"})
        assert status == 422 and "absolute" in body["error"]
        status, _, body = http(p.control, "POST", "/v3/upgrade", {"path": installs["true"]})
        assert status == 422 and "not a pypilot" in body["error"]


@pytest.mark.timeout(60)
def test_a_job_ending_around_the_upgrade_has_its_exit_counted(installs: dict[str, str]) -> None:
    """A short job whose runs end before, during or after the exec (timing decides which; an exit during
    it is a zombie until the new image reaps it): every exit is counted, nothing is left unreaped. The
    e2e suite kills a job exactly during the exec."""
    config = {"jobs": [{"name": "blip", "exec": ["sh", "-c", "sleep 0.15; exit 3"], "restarts": 1},
                       {"name": "long", "exec": ["sleep", "1000"]}]}
    with Pilot(config) as p:
        result = cli(p, "-upgrade", installs["new"])
        assert result.returncode == 0, result.stderr
        p.until(lambda: jobs(p)["blip"]["runs"] == 2 and jobs(p)["blip"]["pid"] is None, 10,
                "both of blip's runs to end")
        assert jobs(p)["blip"]["lastExit"] == 3
        assert not p.zombies()


@pytest.mark.timeout(60)
def test_after_an_upgrade_a_diff_reload_keeps_the_unchanged_job_and_putenv_reaches_spawns(
        installs: dict[str, str]) -> None:
    """The new image's jobs are the same jobs to a reload: an unchanged one is kept, not restarted;
    a -putenv after the upgrade reaches the next spawn."""
    config = {"control": {"reload": "diff"},
              "jobs": [{"name": "long", "exec": ["sleep", "1000"]},
                       {"name": "env", "exec": ["sh", "-c", "echo FOO=$FOO"], "when": {"source": "SIGHUP"}}]}
    with Pilot(config) as p:
        pid = jobs(p)["long"]["pid"]
        assert cli(p, "-upgrade", installs["new"]).returncode == 0
        assert cli(p, "-reload").returncode == 0
        p.wait_log("reloading: keeping 2 job(s)")
        assert jobs(p)["long"]["pid"] == pid and jobs(p)["long"]["runs"] == 1
        assert cli(p, "-putenv", "FOO=after").returncode == 0
        p.signal(signal.SIGHUP)
        p.wait_log("env FOO=after")


def test_status_text_names_version_and_last_upgrade(installs: dict[str, str]) -> None:
    with Pilot({"jobs": [{"name": "long", "exec": ["sleep", "1000"]}]}) as p:
        assert "pypilot 0.1.0" in cli(p, "status").stdout
        assert cli(p, "-upgrade", installs["new"]).returncode == 0
        text = cli(p, "status").stdout
        assert f"last upgrade: to {installs['new']}" in text and "ok" in text


# --- the state format --------------------------------------------------------------------------------


def test_a_newer_state_format_is_refused_not_misread() -> None:
    state = {"format": handover.FORMAT + 1, "jobs": []}
    with pytest.raises(handover.HandoverError, match=r"newer than this pypilot reads"):
        handover.load(orjson.dumps(state))
    with pytest.raises(handover.HandoverError, match="no format number"):
        handover.load(b'{"jobs": []}')
    with pytest.raises(handover.HandoverError, match="not JSON"):
        handover.load(b"\x00garbage")


def test_check_mode_reports_a_newer_format_on_stdout(tmp_path: Path) -> None:
    """What PID 1 reads from a target's check: one reason line and a non-zero exit."""
    config = tmp_path / "c.json5"
    config.write_text('{consul: "localhost:8500", jobs: [{name: "a", exec: "true"}]}')
    fd = handover.write_fd({"format": handover.FORMAT + 1})
    try:
        proc = subprocess.run([sys.executable, "-m", "pypilot", "-upgrade-check", "-config", str(config)],
                              capture_output=True, text=True, pass_fds=(fd,), cwd=ROOT, timeout=30,
                              env={**os.environ, handover.ENV_FD: str(fd)})
    finally:
        os.close(fd)
    assert proc.returncode == 1
    assert proc.stdout.startswith("refused: state format") and "newer" in proc.stdout


def test_check_mode_refuses_a_config_whose_jobs_changed(tmp_path: Path) -> None:
    config = tmp_path / "c.json5"
    config.write_text('{consul: "localhost:8500", jobs: [{name: "a", exec: "true"}]}')
    state = {"format": handover.FORMAT, "config_path": str(config), "jobs": [{"name": "b"}],
             "rollback": None}
    fd = handover.write_fd(state)
    try:
        proc = subprocess.run([sys.executable, "-m", "pypilot", "-upgrade-check", "-config", str(config)],
                              capture_output=True, text=True, pass_fds=(fd,), cwd=ROOT, timeout=30,
                              env={**os.environ, handover.ENV_FD: str(fd)})
    finally:
        os.close(fd)
    assert proc.returncode == 1 and "differ from the running ones" in proc.stdout, proc.stdout



def test_a_process_whose_output_ended_hands_over_no_pipe() -> None:
    """Between its stdout's EOF and its exit's handling a command has no pipe left: the state must not
    name one (a -1 in the fds made the exec step fail with EBADF: found by the e2e suite)."""
    from pypilot.loop import Loop
    from pypilot.process import Command
    from pypilot.reaper import Reaper

    loop, reaper = Loop(), Reaper()
    cmd = Command("quick", ["true"], loop, reaper)
    exits: list[int | None] = []
    cmd.start(lambda status, _err: exits.append(status))
    deadline = time.monotonic() + 10
    while cmd._output is not None and cmd._output.fd >= 0 and time.monotonic() < deadline:
        loop.call_later(0.01, loop.stop)
        loop.run()  # reads the pipe to its EOF; the exit is not reaped (no drain)
    fds: list[int] = []
    state = cmd.handover(fds)
    assert state is not None and state["output_fd"] == -1 and fds == []
    wait_for(lambda: reaper.drain() or exits, 10, "the exit")
    assert exits == [0]
