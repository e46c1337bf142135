"""A job's own readiness (issue #16), pypilot as PID 1: ``ready: "notify"`` (sd_notify on NOTIFY_SOCKET,
credentials checked), ``ready: {fd: N}`` (s6's notification fd), ``watchdog``, and readiness gating the
health check. Event order is read from the log: a payload prints before it notifies."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from tests.pid1 import PAYLOADS, Pilot, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (PID namespaces)")

NOTIFIER = [sys.executable, str(PAYLOADS / "notifier.py")]


@pytest.fixture(autouse=True)
def notify_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """pypilot's notify sockets in a short directory of this test's (TMPDIR), gone afterwards even when
    pypilot was SIGKILLed; short, since a unix socket's path has at most 107 bytes."""
    path = tempfile.mkdtemp(prefix="pp-")
    monkeypatch.setenv("TMPDIR", path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def cli(p: Pilot, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pypilot", *args, "-socket", str(p.dir / "control.sock")],
                          capture_output=True, text=True, cwd=Pilot.ROOT, timeout=30)


def status(p: Pilot) -> dict[str, dict[str, Any]]:
    out = cli(p, "status", "-json")
    if out.returncode != 0:
        return {}
    return {j["name"]: j for j in orjson.loads(out.stdout)["jobs"]}


def index(p: Pilot, pattern: str) -> int:
    """The position in the log of the first line matching ``pattern`` (waiting for it)."""
    first = p.wait_log(pattern)[0]
    return p.log().splitlines().index(first)


def dependent(name: str, on: str) -> dict[str, Any]:
    return {"name": name, "exec": ["echo", f"{name} started"], "when": {"source": on, "once": "healthy"}}


def notifier(name: str, *steps: str, **keys: Any) -> dict[str, Any]:
    return {"name": name, "exec": [*NOTIFIER, *steps], "ready": "notify", **keys}


def notify_socket(p: Pilot, cmdline_part: str) -> str:
    """The NOTIFY_SOCKET the job whose command line holds ``cmdline_part`` was given."""
    for proc in p.descendants():
        try:
            if any(cmdline_part in a for a in proc.cmdline()):
                return str(proc.environ()["NOTIFY_SOCKET"])
        except (psutil.Error, KeyError):
            continue
    raise AssertionError(f"no job process running {cmdline_part}")


def stop(p: Pilot) -> None:
    p.signal(signal.SIGTERM)
    p.wait_exit()


def test_a_dependent_starts_only_after_ready_1_and_status_shows(notify_dir: str, tmp_path: Path) -> None:
    warm = tmp_path / "warm"  # READY=1 once the test has seen the job still warming up
    jobs = [notifier("db", "send:STATUS=warming up", f"until:{warm}", "send:READY=1\\nSTATUS=serving",
                     "forever"),
            dependent("app", "db")]
    with Pilot({"jobs": jobs}) as p:
        warming = index(p, r"db sending 'STATUS=warming up'")
        wait_for(lambda: status(p).get("db", {}).get("readiness", {}).get("statusText") == "warming up", 10,
                 "STATUS=warming up in the status")
        snap = status(p)
        assert snap["db"]["status"] == "unknown" and snap["db"]["readiness"]["ready"] is False
        assert snap["app"]["runs"] == 0
        warm.touch()
        p.wait_log(r"app started")
        ready = index(p, r"db sending 'READY=1")
        started = index(p, r"app started")
        assert warming < ready < started
        wait_for(lambda: status(p)["db"]["readiness"]["statusText"] == "serving", 10, "STATUS=serving")
        assert status(p)["db"]["status"] == "healthy"
        assert "db: serving" in cli(p, "status").stdout
        sock = notify_socket(p, "notifier.py")
        assert sock.startswith(notify_dir) and os.path.exists(sock)  # there while the job is ...
        stop(p)
        assert not os.path.exists(os.path.dirname(sock))  # ... and go with it


def test_a_notify_from_outside_the_job_is_ignored_and_mainpid_is_honoured() -> None:
    jobs = [notifier("stranger", "detached:READY=1", "forever"), dependent("after-stranger", "stranger"),
            notifier("named", "mainpid:READY=1", "forever"), dependent("after-named", "named")]
    with Pilot({"jobs": jobs}) as p:
        p.wait_log(r"after-named started")
        p.wait_log(r"job stranger: notify message from pid \d+ ignored")
        assert len(p.lines(r"notify message from pid .* ignored")) == 1  # logged once
        snap = status(p)
        assert snap["stranger"]["status"] != "healthy" and snap["stranger"]["readiness"]["ready"] is False
        assert snap["after-stranger"]["runs"] == 0
        assert snap["named"]["status"] == "healthy"


@pytest.mark.timeout(60)
def test_a_silent_job_is_restarted_by_its_watchdog_and_a_pinging_one_is_not() -> None:
    jobs = [notifier("silent", "send:READY=1", "forever", watchdog="1s"),
            notifier("pinger", "send:READY=1", "ping:0.2", watchdog="3s")]  # slack for a slow start
    with Pilot({"jobs": jobs}) as p:
        p.wait_log(r"silent watchdog timeout: no WATCHDOG=1 for 1s, restarting it", timeout=15)
        wait_for(lambda: status(p).get("silent", {}).get("runs", 0) >= 2, 15, "the silent job's second run")
        p.wait_log(r"silent sending 'READY=1'", count=2)  # it ran again, from the start
        snap = status(p)
        assert snap["pinger"]["runs"] == 1 and snap["pinger"]["status"] == "healthy"
        assert not p.lines(r"pinger watchdog timeout")


def test_fd_readiness_with_echo_to_fd_3_then_the_read_end_is_closed(tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = ('echo before; sleep 0.5; echo told; echo >&3; until [ -e "$GO" ]; do sleep 0.05; done; '
              '(echo again >&3) 2>/dev/null; echo rc=$?; exec sleep 100')
    jobs = [{"name": "db", "exec": ["sh", "-c", script], "ready": {"fd": 3}},
            {"name": "app", "exec": ["sh", "-c", 'echo app started; touch "$GO"'],
             "when": {"source": "db", "once": "healthy"}}]
    with Pilot({"jobs": jobs}, env={"GO": str(go)}) as p:
        rc = p.wait_log(r"db rc=\d+")[0]
        assert index(p, r"db before") < index(p, r"db told") < index(p, r"app started")
        assert rc.endswith("rc=141")  # SIGPIPE: PID 1 closed its end after the first newline
        assert status(p)["db"]["status"] == "healthy"


def test_readiness_gates_the_first_healthy_of_a_health_checked_job_then_the_check_takes_over(
        tmp_path: Path) -> None:
    bad, ready = tmp_path / "bad", tmp_path / "ready"
    check = {"exec": ["sh", "-c", f'echo checked; ! [ -e "{bad}" ]'], "interval": 1, "ttl": 10}
    jobs = [notifier("db", f"until:{ready}", "send:READY=1", "forever", health=check),
            dependent("app", "db"),
            {"name": "down", "exec": ["echo", "db went unhealthy"],
             "when": {"source": "db", "once": "unhealthy"}}]
    with Pilot({"jobs": jobs}) as p:
        p.wait_log(r"check\.db checked", count=2)  # passing checks before READY=1 ...
        assert status(p)["db"]["status"] != "healthy" and status(p)["app"]["runs"] == 0  # ... are not healthy
        ready.touch()
        p.wait_log(r"app started")
        assert index(p, r"db sending 'READY=1'") < index(p, r"app started")
        bad.touch()  # after readiness the check decides
        p.wait_log(r"db went unhealthy")
        wait_for(lambda: status(p)["db"]["status"] == "unhealthy", 10, "the failing check to count")


@pytest.mark.skipif(shutil.which("systemd-notify") is None, reason="systemd-notify is not installed")
def test_systemd_notify_itself_marks_the_job_ready() -> None:
    script = "sleep 0.3; echo notifying; systemd-notify --ready --status='via systemd-notify'; exec sleep 100"
    with Pilot({"jobs": [{"name": "db", "exec": ["sh", "-c", script], "ready": "notify"},
                         dependent("app", "db")]}) as p:
        assert index(p, r"db notifying") < index(p, r"app started")
        assert status(p)["db"]["readiness"]["statusText"] == "via systemd-notify"


def test_stopping_1_shows_in_status_and_its_failing_exit_is_not_counted_as_a_crash(tmp_path: Path) -> None:
    seen = tmp_path / "seen"  # the jobs exit once the test has seen STOPPING=1 in the status
    def job(name: str, *steps: str) -> dict[str, Any]:
        notify = " ".join(f"'{a}'" for a in [*NOTIFIER, *steps])
        return {"name": name, "exec": ["sh", "-c", f"{notify} & wait; exit 3"], "ready": "notify",
                "restarts": 1}

    jobs = [job("app", "send:READY=1", "send:STOPPING=1\\nSTATUS=draining", f"until:{seen}"),
            job("crash", "send:READY=1", f"until:{seen}"), {"name": "keeper", "exec": ["sleep", "100"]}]
    with Pilot({"jobs": jobs}) as p:
        wait_for(lambda: status(p).get("app", {}).get("readiness", {}).get("stopping"), 10, "STOPPING=1")
        assert "app: draining (stopping)" in cli(p, "status").stdout
        seen.touch()
        both = lambda: status(p)["app"]["runs"] == 2 and status(p)["crash"]["runs"] == 2  # noqa: E731
        wait_for(both, 10, "both restarted")
        snap = status(p)
        assert snap["app"]["failuresInARow"] == 0 and snap["crash"]["failuresInARow"] >= 1
