"""The job's status view (``snapshot``: the control API's /v3/jobs), its backoff log lines, and the
job-level rules the end-to-end tests only see through timing: the state machine of pypilot/jobs.py
driven by events with a fake clock and command (the harness of tests/test_jobs.py)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from pypilot import events as ev
from pypilot import logs
from pypilot.config.model import UNLIMITED, Backoff, HealthConfig, WhenConfig
from pypilot.events import Event
from pypilot.jobs import State
from tests.test_jobs import STARTUP, Ctx


@pytest.fixture
def logged() -> Iterator[list[bytes]]:
    lines: list[bytes] = []
    logs.set_sink(lines.append)
    yield lines
    logs.set_sink(None)


def text(lines: list[bytes]) -> str:
    return b"".join(lines).decode()


def test_snapshot_of_a_fresh_job_before_its_trigger() -> None:
    ctx = Ctx()
    job, _cmd = ctx.add(name="app", restarts=3)
    assert job.snapshot() == {
        "name": "app",
        "state": "waiting",
        "status": "idle",
        "pid": None,
        "runs": 0,
        "restarts": 0,
        "restartsRemaining": 3,
        "lastExit": None,
        "failuresInARow": 0,
        "backoffUntil": None,
    }


def test_snapshot_of_a_running_then_exited_job_counts_runs_and_restarts() -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="app", restarts=UNLIMITED)
    ctx.bus.publish(STARTUP)
    snap = job.snapshot()
    assert snap["state"] == "running" and snap["pid"] == cmd.pid and snap["pid"]
    assert snap["runs"] == 1 and snap["restarts"] == 0 and snap["restartsRemaining"] is None
    assert snap["status"] == "unknown"
    cmd.exit(3)  # first failure: restarted at once
    snap = job.snapshot()
    assert snap["runs"] == 2 and snap["restarts"] == 1 and snap["lastExit"] == 3
    assert snap["failuresInARow"] == 1 and snap["backoffUntil"] is None and snap["state"] == "running"


def test_snapshot_shows_the_backoff_and_when_it_ends() -> None:
    ctx = Ctx()
    backoff = Backoff(initial=2.0, factor=2.0, max=30.0, reset_after=10.0)
    job, cmd = ctx.add(name="crash", restarts=UNLIMITED, backoff=backoff)
    ctx.bus.publish(STARTUP)
    cmd.exit(1)
    cmd.exit(1)  # second quick failure: backs off 2 s
    ctx.loop.advance(0.5)
    snap = job.snapshot()
    assert snap["state"] == "backoff" and snap["pid"] is None
    assert snap["backoffUntil"] == 1.5
    assert snap["failuresInARow"] == 2
    ctx.loop.advance(1.5)
    snap = job.snapshot()
    assert snap["state"] == "running" and snap["backoffUntil"] is None


def test_snapshot_state_words_for_held_stopping_restarting_and_completed() -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="app", restarts=UNLIMITED)
    ctx.bus.publish(STARTUP)
    assert job.operator_stop()
    assert job.snapshot()["state"] == "stopping"
    cmd.exit(0)
    assert job.snapshot()["state"] == "held" and job.snapshot()["pid"] is None
    assert job.operator_start()
    assert job.operator_restart()
    assert job.snapshot()["state"] == "restarting"
    cmd.exit(0)
    assert job.snapshot()["state"] == "running"
    ctx.bus.publish(Event(ev.SHUTDOWN, ev.GLOBAL))
    assert job.completed and job.snapshot()["state"] == "completed"


def test_snapshot_says_stopping_while_the_job_waits_for_its_prestop_dependent() -> None:
    ctx = Ctx()
    app, _ = ctx.add(name="app", restarts=UNLIMITED)
    ctx.add(name="preStop", when=WhenConfig(source="app", once=ev.STOPPING))
    app.stopping_wait = Event(ev.STOPPED, "preStop")
    ctx.bus.publish(STARTUP)
    ctx.bus.publish(Event(ev.SHUTDOWN, ev.GLOBAL))
    assert app.state is State.HALTING and app.snapshot()["state"] == "stopping"


def test_snapshot_counts_down_finite_restarts() -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="task", restarts=2)
    ctx.bus.publish(STARTUP)
    cmd.exit(1)
    assert job.snapshot()["restartsRemaining"] == 1
    cmd.exit(1)
    assert job.snapshot()["restartsRemaining"] == 0
    cmd.exit(1)
    assert job.snapshot()["restarts"] == 2 and job.snapshot()["state"] == "completed"


def test_backoff_log_says_failed_runs_and_the_delay(logged: list[bytes]) -> None:
    ctx = Ctx()
    backoff = Backoff(initial=0.25, factor=2.0, max=30.0, reset_after=10.0)
    _job, cmd = ctx.add(name="crash", restarts=UNLIMITED, backoff=backoff)
    ctx.bus.publish(STARTUP)
    cmd.exit(1)
    cmd.exit(1)
    out = text(logged)
    assert "restarting crash in 0.25s after 2 failed runs in a row" in out
    assert "exits right after it starts" not in out


def test_quick_clean_exits_warn_once_about_daemons_then_log_each_backoff(logged: list[bytes]) -> None:
    ctx = Ctx()
    backoff = Backoff(initial=0.5, factor=2.0, max=30.0, reset_after=10.0)
    _job, cmd = ctx.add(name="daemon", restarts=UNLIMITED, backoff=backoff)
    ctx.bus.publish(STARTUP)
    cmd.exit(0)
    cmd.exit(0)
    ctx.loop.advance(0.5)
    cmd.exit(0)
    out = text(logged)
    assert out.count("exits right after it starts") == 1
    assert "(2 runs in a row shorter than backoff.resetAfter, the last with exit code 0)" in out
    assert "restarting daemon in 0.5s after 2 runs that ended early in a row" in out
    assert "restarting daemon in 1s after 3 runs that ended early in a row" in out


def test_a_long_failed_run_counts_as_the_first_failure_again() -> None:
    ctx = Ctx()
    backoff = Backoff(initial=1.0, factor=2.0, max=30.0, reset_after=10.0)
    job, cmd = ctx.add(name="crash", restarts=UNLIMITED, backoff=backoff)
    ctx.bus.publish(STARTUP)
    cmd.exit(1)
    cmd.exit(1)
    assert job.failures_in_a_row == 2
    ctx.loop.advance(1.0)
    ctx.loop.advance(10.0)  # exactly resetAfter: a long run
    cmd.exit(1)
    assert job.failures_in_a_row == 1 and job.short_runs_in_a_row == 1 and cmd.running


def test_backoff_off_restarts_every_quick_failure_at_once() -> None:
    ctx = Ctx()
    _job, cmd = ctx.add(name="crash", restarts=UNLIMITED, backoff=None)
    ctx.bus.publish(STARTUP)
    for _ in range(5):
        cmd.exit(1)
        assert cmd.running


def test_stop_grace_sigkill_follows_the_stop_signal_and_is_cancelled_by_the_exit() -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="app", restarts=UNLIMITED, stop_signal=signal.SIGINT)
    ctx.bus.publish(STARTUP)
    job.operator_stop()
    ctx.loop.advance(4.9)
    assert cmd.signals == [signal.SIGINT]
    ctx.loop.advance(0.2)
    assert cmd.signals == [signal.SIGINT, signal.SIGKILL]
    # a process that exits within the grace is not killed later (the timer belonged to it)
    ctx2 = Ctx()
    job2, cmd2 = ctx2.add(name="app", restarts=UNLIMITED)
    ctx2.bus.publish(STARTUP)
    job2.operator_restart()
    cmd2.exit(0)
    assert cmd2.running
    ctx2.loop.advance(6)
    assert cmd2.signals == [signal.SIGTERM]


def test_operator_commands_on_a_completed_job_do_nothing() -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="once")
    ctx.bus.publish(STARTUP)
    cmd.exit(0)
    assert job.completed
    assert not job.operator_stop() and not job.operator_start() and not job.operator_restart()
    assert cmd.starts == 1


def test_operator_start_of_a_running_job_is_refused_and_stop_of_an_idle_one_holds_it() -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="app", restarts=UNLIMITED)
    assert not job.operator_stop()  # nothing running yet
    assert job.state is State.HELD and job.snapshot()["state"] == "held"
    assert job.operator_start() and cmd.running and job.state is State.ACTIVE
    assert not job.operator_start() and cmd.starts == 1
    assert job.signal(signal.SIGUSR1) and cmd.signals == [signal.SIGUSR1]


def test_operator_restart_of_a_stopped_job_starts_it() -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="app", restarts=UNLIMITED)
    ctx.bus.publish(STARTUP)
    job.operator_stop()
    cmd.exit(0)
    assert not cmd.running
    assert job.operator_restart() and cmd.running and job.snapshot()["state"] == "running"


def test_operator_stop_cancels_a_pending_backoff_restart() -> None:
    ctx = Ctx()
    backoff = Backoff(initial=1.0, factor=2.0, max=30.0, reset_after=10.0)
    job, cmd = ctx.add(name="crash", restarts=UNLIMITED, backoff=backoff)
    ctx.bus.publish(STARTUP)
    cmd.exit(1)
    cmd.exit(1)
    assert job.snapshot()["state"] == "backoff"
    assert not job.operator_stop()
    ctx.loop.advance(5)
    assert not cmd.running and job.snapshot()["state"] == "held"


def test_heartbeat_runs_the_check_after_the_initial_delay_and_never_two_at_once() -> None:
    class Health:
        def __init__(self) -> None:
            self.calls: list[Any] = []

        def check(self, request: Any, done: Any) -> None:
            self.calls.append(done)

    ctx = Ctx()
    ctx.health = Health()
    job, _cmd = ctx.add(
        name="app", restarts=UNLIMITED, exec=("true",),
        health=HealthConfig(exec=("check",), interval=1, ttl=5, initial_delay=2.5),
    )
    ctx.bus.publish(STARTUP)
    ctx.loop.advance(2.0)
    assert ctx.health.calls == []  # within initialDelay
    ctx.loop.advance(1.0)
    assert len(ctx.health.calls) == 1
    ctx.loop.advance(1.0)
    assert len(ctx.health.calls) == 1  # still in flight: the tick is skipped
    ctx.health.calls[0](True, "ok")
    assert Event(ev.EXIT_SUCCESS, "check.app") in ctx.events and job.status == "healthy"
    ctx.loop.advance(1.0)
    assert len(ctx.health.calls) == 2
    ctx.health.calls[1](False, "boom")
    assert job.status == "unhealthy" and job.check_detail == "boom"


def test_an_operator_stopped_job_stays_stopped_whatever_triggers_it() -> None:
    """`job NAME stop` holds the job: its next trigger, interval tick or signal does not start it
    again; only `job NAME start` (or restart) does."""
    ctx = Ctx()
    each, each_cmd = ctx.add(name="onchange", when=WhenConfig(source="watch.app", each="changed"))
    tick, tick_cmd = ctx.add(name="tick", when=WhenConfig(interval=1.0), restarts=UNLIMITED)
    hup, hup_cmd = ctx.add(name="onhup", when=WhenConfig(source="SIGHUP"))
    for job in (each, tick, hup):
        assert not job.operator_stop() and job.snapshot()["state"] == "held"
    ctx.bus.publish(STARTUP)  # the interval job's trigger
    ctx.bus.publish(Event(ev.CHANGED, "watch.app"))
    ctx.bus.publish(Event(ev.SIGNAL, "SIGHUP"))
    ctx.loop.advance(3.5)
    assert (each_cmd.starts, tick_cmd.starts, hup_cmd.starts) == (0, 0, 0)
    assert each.operator_start() and each_cmd.running
    assert tick.operator_start() and tick_cmd.running
    # held while a run is going: the trigger that comes meanwhile is not run after it either
    ctx.bus.publish(Event(ev.SIGNAL, "SIGHUP"))
    assert hup_cmd.starts == 0
    each.operator_stop()
    ctx.bus.publish(Event(ev.CHANGED, "watch.app"))
    each_cmd.exit(0)
    ctx.loop.advance(1)
    assert each_cmd.starts == 1 and not each_cmd.running and each.snapshot()["state"] == "held"
