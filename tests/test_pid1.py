"""PID-1 behaviour of the core, end to end: pypilot is PID 1 of a fresh PID namespace and runs
real processes; tests assert on what happened (log lines, exit codes, the process table)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.pid1 import PAYLOADS, Pilot, wait_for

KEEPER = {"name": "keeper", "exec": "sleep 1000"}


def test_reap_storm_1000_orphans_all_reaped() -> None:
    """anchors §1.6 #1/#2: one SIGCHLD for many exits; the drain has no cap."""
    storm = {"name": "storm", "exec": [sys.executable, str(PAYLOADS / "orphans.py"), "1000"]}
    with Pilot({"logging": {"level": "DEBUG"}, "jobs": [storm, KEEPER]}) as p:
        p.wait_log(r"storm forked 1000")
        p.wait_log(r"reaped orphan \d+: ", count=1000, timeout=30)
        wait_for(lambda: not p.zombies(), 10, "no zombie left")
        assert [c.name() for c in p.children()] == ["sleep"]
        assert len(p.lines(r"reaped orphan")) == 1000


@pytest.mark.parametrize(
    "total", [pytest.param(20_000, id="20k"), pytest.param(100_000, id="100k", marks=pytest.mark.slow)]
)
def test_spawn_storm_every_exit_dispatched_to_its_job(total: int) -> None:
    """anchors §1.6 #4/#14: none lost, none misattributed, an exit of 0 reported as 0."""
    per_job = total // 4
    jobs = [
        {"name": "zero-a", "exec": "true", "restarts": per_job - 1},
        {"name": "zero-b", "exec": "true", "restarts": per_job - 1},
        {"name": "one", "exec": "false", "restarts": per_job - 1, "backoff": False},
        {"name": "seven", "exec": ["sh", "-c", "exit 7"], "restarts": per_job - 1, "backoff": False},
    ]
    with Pilot({"logging": {"level": "DEBUG"}, "jobs": jobs}) as p:
        assert p.wait_exit(timeout=total / 100) == 0
        log = p.log()
    assert log.count("zero-a exited without error") == per_job
    assert log.count("zero-b exited without error") == per_job
    assert log.count("one exited with error: exit status 1") == per_job
    assert log.count("seven exited with error: exit status 7") == per_job
    assert "zero-a exited with error" not in log and "zero-b exited with error" not in log
    assert log.count(" exited ") == total


def test_jobs_start_with_clean_signal_mask_and_dispositions() -> None:
    """anchors §1.6 #9: PID 1 blocks everything; a job must not inherit that (tini sigconf-test)."""
    job = {"name": "sigs", "exec": ["sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status"]}
    with Pilot({"jobs": [job]}) as p:
        assert p.wait_exit() == 0
        lines = p.lines(r"sigs Sig(Blk|Ign):")
    assert len(lines) == 2
    for line in lines:
        assert line.split()[-1] == "0000000000000000", line


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_shutdown_signal_takes_effect_and_returns_early(sig: int) -> None:
    """anchors §1.6 #10/#18, CP #479: no fixed sleep once everything has exited."""
    with Pilot({"stopTimeout": 30, "jobs": [KEEPER]}) as p:
        wait_for(lambda: [c for c in p.children() if c.name() == "sleep"], 10, "the job to run")
        start = time.monotonic()
        p.signal(sig)
        assert p.wait_exit() == 0
        assert time.monotonic() - start < 2.0


def test_sighup_does_not_stop_pypilot() -> None:
    """HUP and USR2 are event sources (CP): after each, pypilot and the job run on, same PIDs; the
    signal-triggered jobs prove each signal was handled before the check."""
    hup = {"name": "onhup", "exec": "echo saw-hup", "when": {"source": "SIGHUP"}}
    usr2 = {"name": "onusr2", "exec": "echo saw-usr2", "when": {"source": "SIGUSR2"}}
    with Pilot({"jobs": [KEEPER, hup, usr2]}) as p:
        sleeper = wait_for(lambda: [c for c in p.children() if c.name() == "sleep"], 10, "the job to run")[0]
        for sig, seen in ((signal.SIGHUP, "saw-hup"), (signal.SIGUSR2, "saw-usr2")):
            p.signal(sig)
            p.wait_log(seen)
            assert p.alive() and p.process().status() != psutil.STATUS_ZOMBIE
            assert sleeper.is_running() and sleeper.status() != psutil.STATUS_ZOMBIE
            assert [c.pid for c in p.children() if c.name() == "sleep"] == [sleeper.pid]
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0
        assert not psutil.pid_exists(sleeper.pid) or sleeper.status() == psutil.STATUS_ZOMBIE


def test_signal_storm_leaves_pid1_alive_and_working() -> None:
    """Thousands of mixed signals while a job churns: PID 1 survives, jobs keep being restarted."""
    churn = {"name": "churn", "exec": "true", "restarts": "unlimited", "backoff": False}
    storm = [
        signal.SIGHUP,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGWINCH,
        signal.SIGALRM,
        signal.SIGCONT,
        signal.SIGPIPE,
        signal.SIGCHLD,
        signal.SIGTSTP,
        signal.SIGTTIN,
        signal.SIGTTOU,
        signal.SIGURG,
        signal.SIGPWR,
        signal.SIGVTALRM,
        signal.SIGPROF,
        signal.SIGIO,
        signal.SIGXCPU,
        signal.SIGXFSZ,
        signal.SIGRTMIN,
        signal.SIGRTMIN + 5,
        signal.SIGRTMAX,
    ]
    with Pilot({"logging": {"level": "DEBUG"}, "jobs": [churn]}) as p:
        p.wait_log(r"churn exited without error", count=5)
        for i in range(5000):
            p.signal(storm[i % len(storm)])
        assert p.alive()
        assert p.process().status() != psutil.STATUS_STOPPED
        before = len(p.lines(r"churn exited without error"))
        p.wait_log(r"churn exited without error", count=before + 50)
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0


def test_escapee_is_gone_after_shutdown_within_deadline() -> None:
    """anchors §1.6 #12/#13: a setsid'd grandchild ignoring SIGTERM is swept by kill(-1) at the deadline."""
    escapee = {
        "name": "escapee",
        "exec": [
            "sh",
            "-c",
            "setsid sh -c 'trap \"\" TERM; echo escaped; exec sleep 1000' & exec sleep 1000",
        ],
    }
    with Pilot({"stopTimeout": 1, "jobs": [escapee]}) as p:
        p.wait_log(r"escapee escaped")
        sleepers = wait_for(
            lambda: len(ps := [d for d in p.descendants() if d.name() == "sleep"]) == 2 and ps,
            10,
            "two sleeps",
        )
        start = time.monotonic()
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0
        elapsed = time.monotonic() - start
        assert 0.9 < elapsed < 1.6, elapsed  # the deadline, plus a little: not CP's sleep + SIGKILL
        for s in sleepers:
            assert not psutil.pid_exists(s.pid)


def test_missing_executable_is_a_failed_exit_and_pid1_stays_up() -> None:
    missing = {"name": "missing", "exec": "/nonexistent/binary", "restarts": 3}
    with Pilot({"jobs": [missing, KEEPER]}) as p:
        lines = p.wait_log(r"unable to start missing:", count=4)
        assert lines[0].endswith(
            "unable to start missing: fork/exec /nonexistent/binary: no such file or directory"
        )
        p.wait_log(r"missing failed and has no restarts left")  # logged as the job halts: no more tries
        assert p.alive()
        assert len(p.lines(r"unable to start missing:")) == 4


def test_crash_looping_job_keeps_pid1_up_and_backs_off() -> None:
    crash = {"name": "crash", "exec": ["sh", "-c", "echo dying; exit 2"], "restarts": "unlimited"}
    with Pilot({"jobs": [crash]}) as p:
        p.wait_log(r"crash exited with error: exit status 2", count=6)
        backoffs = p.wait_log(r"restarting crash in [\d.]+s after \d+ failed runs", count=4)
        delays = [float(line.split(" in ")[1].split("s ")[0]) for line in backoffs]
        assert delays == sorted(delays) and delays[-1] > delays[0]
        assert p.alive()


def test_all_jobs_completed_pypilot_exits_by_itself() -> None:
    jobs = [{"name": "a", "exec": "true"}, {"name": "b", "exec": ["sh", "-c", "echo done-b"], "restarts": 2}]
    with Pilot({"jobs": jobs}) as p:
        assert p.wait_exit() == 0
        assert len(p.lines(r" b done-b$")) == 3


def test_raw_logging_passes_output_through_untouched() -> None:
    job = {"name": "raw", "exec": ["printf", "no prefix here\\n"], "logging": {"raw": True}}
    with Pilot({"jobs": [job]}) as p:
        assert p.wait_exit() == 0
        assert "no prefix here\n" in p.log().splitlines(keepends=True)


def test_long_output_line_is_logged_whole() -> None:
    """CP broke at 64 KiB (bufio.Scanner); a line of any length comes through as one entry."""
    job = {"name": "long", "exec": [sys.executable, "-c", "print('x' * 300_000)"]}
    with Pilot({"jobs": [job]}) as p:
        assert p.wait_exit() == 0
        assert len(p.lines(r" long x{300000}$")) == 1


def test_not_pid1_becomes_subreaper_and_reaps_orphans() -> None:
    storm = {"name": "storm", "exec": [sys.executable, str(PAYLOADS / "orphans.py"), "50"]}
    with Pilot({"logging": {"level": "DEBUG"}, "jobs": [storm, KEEPER]}, pid1=False) as p:
        p.wait_log(r"reaped orphan \d+", count=50)
        wait_for(lambda: not p.zombies(), 10, "no zombie left")
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0
    assert os.getpid() > 1


PID_MAX = "/proc/sys/kernel/pid_max"  # per PID namespace since Linux 6.14


def cmdline_pid(proc: psutil.Process) -> str:
    """The namespace PID of a live bystander.py, else ''."""
    try:
        if "bystander.py" not in " ".join(proc.cmdline()):
            return ""
        return open(f"/proc/{proc.pid}/status").read().split("NSpid:")[1].split("\n")[0].split()[-1]
    except (psutil.Error, OSError):
        return ""


def test_pid_reuse_never_signals_a_stranger(tmp_path: Path) -> None:
    """anchors §1.6 #7: in a namespace whose PIDs wrap every ~100 spawns (pid_max 400; after a wrap the
    kernel hands out 300-399), jobs are killed at their timeout, leave stragglers and restart thousands of
    times; a bystander that counts every signal it gets (a setsid'd process pypilot never targets) must
    count none, and must still be there."""
    count, pidfile = tmp_path / "signals", tmp_path / "sentinel.pid"
    count.write_text("")
    bystander = f"{sys.executable} {PAYLOADS / 'bystander.py'} {count} {pidfile}"
    after_setup = {"source": "setup", "once": "exitSuccess"}
    churn = {"restarts": "unlimited", "backoff": False, "when": after_setup}
    jobs = [
        # 301 is the least pid_max; spawn past it once so the bystander's PID is one the churn reuses
        {
            "name": "setup",
            "exec": ["sh", "-c", f"echo 400 > {PID_MAX}; for i in $(seq 400); do env true; done"],
        },
        {
            "name": "sentinel",
            # the launcher waits until the bystander is in its own session, or the SIGTERM that CP
            # sends to a leader's group when it exits would take the bystander with it
            "exec": ["sh", "-c", f"setsid {bystander} & while [ ! -s {pidfile} ]; do sleep 0.05; done"],
            "when": after_setup,
        },
        {"name": "killed", "exec": ["sleep", "1"], "timeout": "5ms", **churn},
        {"name": "straggler", "exec": ["sh", "-c", "sleep 1 & exit 1"], **churn},
        {"name": "quick", "exec": "true", **churn},
    ]
    with Pilot({"logging": {"level": "DEBUG"}, "jobs": jobs}) as p:
        wait_for(
            lambda: pidfile.exists() and pidfile.read_text().strip(), 30, f"the bystander; {p.log()[-800:]}"
        )
        p.wait_log(r"(killed|straggler|quick)\.Run start", count=3000, timeout=120)
        assert count.read_text() == "", "a signal reached a process pypilot does not own"
        # and every exit went to its own job: none of these can end by SIGTERM unless it was misdirected
        assert not p.lines(r"quick exited with error|(killed|straggler) exited with error: signal: term")
        assert pidfile.read_text().strip() in {cmdline_pid(d) for d in p.descendants()}, "the bystander died"
        assert len(p.lines(r"killed timeout after 5ms")) > 20
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0


def test_job_that_cannot_start_spinning_does_not_starve_the_loop() -> None:
    """circus #1157: a missing exec with unlimited restarts and no backoff retries on every turn of
    the loop, but signals are still read and exits still reaped between the retries."""
    spinning = {"name": "missing", "exec": "/nonexistent/binary", "restarts": "unlimited", "backoff": False}
    counted = {"name": "counted", "exec": "true", "restarts": 50}
    with Pilot({"logging": {"level": "DEBUG"}, "jobs": [spinning, counted]}) as p:
        p.wait_log(r"\{Stopped counted\}", timeout=20)
        assert len(p.lines(r"counted exited without error")) == 51
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0


def test_job_exiting_0_at_once_is_not_restarted_thousands_of_times() -> None:
    """#14: `restarts: "unlimited"` and exit 0 at once (a daemon forking into the background) ran
    ~2 200 times in 4 s; backoff covers every run shorter than resetAfter, and the log says why once."""
    daemon = {"name": "daemon", "exec": ["sh", "-c", "echo forked"], "restarts": "unlimited"}
    with Pilot({"jobs": [daemon, KEEPER]}) as p:
        p.wait_log(r"daemon exits right after it starts .*forks into the background")
        p.wait_log(r"restarting daemon in 0\.8s", timeout=10)
        runs = len(p.lines(r"daemon forked"))
        assert 5 <= runs <= 8, runs  # 0 + 0.1 + 0.2 + 0.4 s of backoff, not thousands of runs
        assert len(p.lines(r"exits right after it starts")) == 1
        assert p.alive()
