"""Storms at PID 1, long forms (anchors §1.6 #1/#2): 5 000 orphans released at once; 10 000 mixed
signals (TERM/INT/QUIT excluded) from outside and inside the namespace while jobs churn, and after it
every job's state, as the control API reports it, is exactly what its config implies.

The CI forms of the reap and spawn storms are in tests/test_pid1.py; the signal storm's CI form here
adds the state check that test_pid1's 5 000-signal survival test does not make."""

from __future__ import annotations

import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.pid1 import PAYLOADS, Pilot, wait_for
from tests.reliability.harness import jobs

KEEPER = {"name": "keeper", "exec": "sleep 1000"}


def stamp(line: str) -> float:
    """The time of a log line (``2026-11-24T19:55:45.634552345Z ...``), to the microsecond."""
    return datetime.fromisoformat(line.split()[0][:26]).timestamp()


@pytest.mark.slow
def test_reap_storm_5000_orphans_all_reaped_fast() -> None:
    n = 5000
    storm = {"name": "storm", "exec": [sys.executable, str(PAYLOADS / "orphans.py"), str(n)]}
    with Pilot({"logging": {"level": "DEBUG"}, "jobs": [storm, KEEPER]}) as p:
        forked = p.wait_log(r"storm forked \d+", timeout=60)[0]
        reaped = p.wait_log(r"reaped orphan \d+: ", count=n, timeout=60)
        wait_for(lambda: not p.zombies(), 10, "no zombie left")
        span = stamp(reaped[-1]) - stamp(forked)
        print(f"\nreap storm: {len(reaped)} of {n} orphans reaped, last {span * 1000:.0f} ms after release")
        assert len(set(reaped)) == n
        assert [c.name() for c in p.children()] == ["sleep"]
        assert span < 2.5  # supervisord's tick-bounded drain takes ~50 s for 5 000 (anchors §1.6 #2)


STORM = [
    signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGALRM, signal.SIGCONT,
    signal.SIGPIPE, signal.SIGCHLD, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGURG,
    signal.SIGPWR, signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO, signal.SIGXCPU, signal.SIGXFSZ,
    signal.SIGTRAP, signal.SIGSYS, signal.SIGBUS, signal.SIGSEGV, signal.SIGFPE, signal.SIGILL,
    signal.SIGABRT, signal.SIGSTKFLT, signal.SIGRTMIN, signal.SIGRTMIN + 5, signal.SIGRTMAX,
]  # everything but the shutdown signals and the two the kernel forces (KILL, STOP)


@pytest.mark.parametrize(
    "total", [pytest.param(2000, id="2k"), pytest.param(10_000, id="10k", marks=pytest.mark.slow)]
)
def test_signal_storm_while_jobs_churn_leaves_every_job_state_right(total: int, tmp_path: Path) -> None:
    go = tmp_path / "go"
    inner = total // 4  # sent by a job inside the namespace (the kernel's PID-1 rules differ)
    counted, failing = 300, 100
    config = {
        "logging": {"level": "DEBUG"},
        "stopTimeout": 5,
        "jobs": [
            {"name": "churn", "exec": "true", "restarts": "unlimited", "backoff": False},
            {"name": "counted", "exec": "true", "restarts": counted, "backoff": False},
            {"name": "failing", "exec": ["sh", "-c", "exit 3"], "restarts": failing, "backoff": False},
            {"name": "steady", "exec": "sleep 1000"},
            {"name": "onhup", "exec": ["echo", "hup-fired"], "when": {"source": "SIGHUP"}},
            {
                "name": "inner",
                "exec": ["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.01; done; i=0; "
                         f"while [ $i -lt {inner // 4} ]; do kill -HUP 1; kill -USR2 1; kill -WINCH 1; "
                         "kill -ALRM 1; i=$((i+1)); done; echo inner-done"],
            },
        ],
    }
    with Pilot(config) as p:
        p.wait_log(r"churn exited without error", count=5)
        steady = wait_for(lambda: jobs(p)["steady"]["pid"], 10, "steady to run")
        start = time.monotonic()
        go.touch()
        for i in range(total - inner):
            p.signal(STORM[i % len(STORM)])
        p.wait_log(r"inner inner-done", timeout=30)
        sent = time.monotonic() - start
        assert p.alive() and p.process().status() != "stopped"
        before = len(p.lines(r"churn exited without error"))
        p.wait_log(r"churn exited without error", count=before + 50)  # still churning after the storm
        wait_for(lambda: jobs(p)["counted"]["state"] == "completed", 30, "counted to complete")
        wait_for(lambda: jobs(p)["failing"]["state"] == "completed", 30, "failing to complete")
        state = jobs(p)
        assert (state["counted"]["runs"], state["counted"]["lastExit"]) == (counted + 1, 0), state["counted"]
        assert (state["failing"]["runs"], state["failing"]["lastExit"]) == (failing + 1, 3), state["failing"]
        assert (state["steady"]["state"], state["steady"]["pid"], state["steady"]["runs"]) == (
            "running", steady, 1), state["steady"]
        assert state["churn"]["state"] in ("running", "waiting") and state["churn"]["runs"] > before
        assert 1 <= state["onhup"]["runs"] <= total  # HUPs coalesce; each run is one that arrived
        assert len(p.lines(r"counted exited without error")) == counted + 1
        assert len(p.lines(r"failing exited with error: exit status 3")) == failing + 1
        assert len(p.lines(r"steady exited")) == 0
        assert not p.lines(r"Traceback|event loop failed")
        wait_for(lambda: not p.zombies(), 10, "no zombie")
        print(f"\nsignal storm: {total} signals ({inner} from inside) in {sent:.2f}s; churn runs "
              f"{state['churn']['runs']}, onhup runs {state['onhup']['runs']}; every job state right")
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0
