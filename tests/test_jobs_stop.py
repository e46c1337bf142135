"""Every stop follows one path, end to end with pypilot as PID 1 (#20): the job's stop signal to its
whole process group, the grace (the job's ``stopTimeout``, else the global one), SIGKILL to the group.

The jobs here ignore SIGTERM, and the global ``stopTimeout`` is 30 s while the job's is 500 ms: a job
that is still there after a second was never sent the SIGKILL of its own grace. The group tests use a
leader that ignores the signal and a child that does not: only a signal to the group reaches the child.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from tests.control.harness import http
from tests.pid1 import Pilot, wait_for

STUBBORN = "trap '' TERM; echo ready; while :; do sleep 0.1; done"
# the child is forked before the trap, so it keeps the default dispositions the leader then ignores
LEADER_IGNORES = "sleep 1000 & trap '' TERM USR1; echo ready; while :; do sleep 0.1; done"
KEEPER = {"name": "keeper", "exec": "sleep 1000"}


def stubborn(**kw: Any) -> dict[str, Any]:
    return {"name": "stubborn", "exec": ["sh", "-c", STUBBORN], "stopTimeout": "500ms", **kw}


def api(p: Pilot, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    payload = None if body is None else orjson.dumps(body)
    code, _, data = http(str(p.dir / "control.sock"), method, path, payload)
    return code, orjson.loads(data) if data else None


def job_state(p: Pilot, name: str) -> dict[str, Any]:
    code, data = api(p, "GET", "/v3/status")
    assert code == 200, data
    return next(j for j in data["jobs"] if j["name"] == name)


def shells(p: Pilot, script: str) -> list[psutil.Process]:
    out = []
    for proc in p.descendants():
        try:
            if proc.cmdline()[-1:] == [script] and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def sleeper_child(p: Pilot) -> psutil.Process:
    def find() -> psutil.Process | None:
        for proc in p.descendants():
            try:
                if proc.cmdline() == ["sleep", "1000"] and proc.parent() and proc.parent().name() == "sh":
                    return proc
            except psutil.NoSuchProcess:
                pass
        return None

    return wait_for(find, 10, "the job's child")


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(proc: psutil.Process, timeout: float, what: str) -> float:
    start = time.monotonic()
    wait_for(lambda: gone(proc), timeout, what)
    return time.monotonic() - start


def test_term_ignoring_job_killed_after_its_stop_timeout_at_shutdown() -> None:
    with Pilot({"stopTimeout": 30, "jobs": [stubborn()]}) as p:
        p.wait_log(r"stubborn ready")
        start = time.monotonic()
        p.signal(signal.SIGTERM)
        assert p.wait_exit(5) == 0
        assert time.monotonic() - start < 1.0


def test_term_ignoring_job_killed_after_its_stop_timeout_when_its_runs_end() -> None:
    """An interval job with no restarts left halts on its next tick (``timeout`` set long, so the
    run's own exec timeout cannot be what ends it)."""
    job = stubborn(when={"interval": "200ms"}, timeout="60s", restarts=0)
    with Pilot({"stopTimeout": 30, "jobs": [job, KEEPER]}) as p:
        shell = wait_for(lambda: shells(p, STUBBORN), 5, "the job's shell")[0]
        # halted at the first tick (200 ms), killed 500 ms later
        assert wait_gone(shell, 5, "the halted job's process to be killed") < 1.0
        assert p.alive() and not shells(p, STUBBORN)


@pytest.mark.parametrize("action", ["stop", "restart"])
def test_operator_stop_and_restart_kill_after_the_job_stop_timeout(action: str) -> None:
    """#20: `job NAME stop` sent the stop signal and never escalated (`stop done; state running`)."""
    with Pilot({"stopTimeout": 30, "jobs": [stubborn(restarts="unlimited")]}) as p:
        p.wait_log(r"stubborn ready")
        shell = wait_for(lambda: shells(p, STUBBORN), 5, "the job's shell")[0]
        code, data = api(p, "POST", f"/v3/jobs/stubborn/{action}")
        assert code == 200, data
        assert data["job"]["state"] == ("stopping" if action == "stop" else "restarting")
        assert wait_gone(shell, 5, f"the job's process after {action}") < 1.0
        if action == "stop":
            wait_for(lambda: job_state(p, "stubborn")["state"] == "held", 5, "held")
            assert job_state(p, "stubborn")["pid"] is None
        else:
            p.wait_log(r"stubborn ready", count=2)
            new = job_state(p, "stubborn")
            assert new["state"] == "running" and new["pid"] not in (None, shell.pid)
        assert p.alive()


def test_operator_stop_signals_the_whole_group() -> None:
    job = {"name": "group", "exec": ["sh", "-c", LEADER_IGNORES], "stopTimeout": "20s"}
    with Pilot({"stopTimeout": 30, "jobs": [job, KEEPER]}) as p:
        p.wait_log(r"group ready")
        child = sleeper_child(p)
        code, _ = api(p, "POST", "/v3/jobs/group/stop")
        assert code == 200
        assert wait_gone(child, 5, "the child to get the stop signal") < 1.0
        assert shells(p, LEADER_IGNORES)  # the leader ignores it, and its grace is 20 s


def test_signal_endpoint_signals_the_whole_group() -> None:
    job = {"name": "group", "exec": ["sh", "-c", LEADER_IGNORES]}
    with Pilot({"jobs": [job, KEEPER]}) as p:
        p.wait_log(r"group ready")
        child = sleeper_child(p)
        code, data = api(p, "POST", "/v3/jobs/group/signal", {"signal": "SIGUSR1"})
        assert code == 200, data
        wait_gone(child, 5, "the child to get SIGUSR1")
        assert shells(p, LEADER_IGNORES)


def test_exec_timeout_kills_the_whole_group() -> None:
    """The child ignores TERM too: only the timeout's SIGKILL to the group can end it (the TERM sent
    to what is left of the group when the leader exits would not)."""
    script = "trap '' TERM; sleep 1000 & echo ready; while :; do sleep 0.1; done"
    job = {"name": "group", "exec": ["sh", "-c", script], "timeout": "500ms"}
    with Pilot({"stopTimeout": 30, "jobs": [job, KEEPER]}) as p:
        p.wait_log(r"group ready")
        child = sleeper_child(p)
        p.wait_log(r"group timeout after 500ms")
        wait_gone(child, 5, "the child to be killed with its group")
        assert p.alive()


ROOTED_C = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) {
    if (setresuid(0, 0, 0) != 0) return 2;  /* setuid root: now no longer ours to signal */
    puts("rooted"); fflush(stdout);
    for (;;) pause();
}
"""


class Unprivileged(Pilot):
    """pypilot as PID 1 running as nobody (its directory opened up for it)."""

    def config_text(self, config: dict[str, Any] | str) -> str:
        os.chmod(self.dir, 0o777)
        return super().config_text(config)

    def command(self, args: list[str]) -> list[str]:
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *super().command(args)]


def test_eperm_when_signalling_a_job_that_switched_uid_is_a_log_line_not_an_exit() -> None:
    """anchors §1.6 #8 (tini exits FATAL on EPERM): a job that became root cannot be signalled by
    an unprivileged pypilot; the control API says so, the log names the error, nothing stops."""
    bindir = Path(tempfile.mkdtemp(prefix="pypilot-rooted-"))
    try:
        os.chmod(bindir, 0o755)
        (bindir / "rooted.c").write_text(ROOTED_C)
        binary = bindir / "rooted"
        subprocess.run(["cc", "-o", str(binary), str(bindir / "rooted.c")], check=True, timeout=60)
        os.chown(binary, 0, 0)
        os.chmod(binary, 0o4755)
        with Unprivileged({"jobs": [{"name": "rooted", "exec": [str(binary)]}, KEEPER]}) as p:
            p.wait_log(r"rooted rooted")
            code, data = api(p, "POST", "/v3/jobs/rooted/signal", {"signal": "SIGUSR1"})
            assert code == 409, data
            p.wait_log(r"signalling rooted \(\d+\) failed: .*[Oo]peration not permitted")
            code, data = api(p, "POST", "/v3/jobs/rooted/stop")
            assert code == 200 and data["signalled"] is False
            assert p.wait_log(r"signalling rooted \(\d+\) failed", count=2)
            assert p.alive() and job_state(p, "keeper")["state"] == "running"
            assert job_state(p, "rooted")["pid"] is not None
    finally:
        shutil.rmtree(bindir, ignore_errors=True)
