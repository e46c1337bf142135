"""The job's status view (``snapshot``: the control API's /v3/jobs), its backoff log lines, and the
job-level rules the end-to-end tests only see through timing: the state machine of pypilot/jobs.py
driven by events with a fake clock and command (the harness of tests/test_jobs.py)."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from pypilot import events as ev
from pypilot import logs
from pypilot.config.model import UNLIMITED, Backoff, HealthConfig, WhenConfig
from pypilot.events import Event
from pypilot.jobs import State
from tests.test_jobs import STARTUP, Ctx, FakeCommand

pytestmark = pytest.mark.timeout(20)  # a timer that re-arms itself at no delay spins the fake clock


def text(lines: list[bytes]) -> str:
    return b"".join(lines).decode()


def crash_looping(name: str, initial: float) -> tuple[Ctx, Any, FakeCommand]:
    """A started job restarted without limit, with a backoff from ``initial`` (doubling, max 30 s,
    reset after a 10 s run)."""
    ctx = Ctx()
    backoff = Backoff(initial=initial, factor=2.0, max=30.0, reset_after=10.0)
    job, cmd = ctx.add(name=name, restarts=UNLIMITED, backoff=backoff)
    ctx.bus.publish(STARTUP)
    return ctx, job, cmd


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
    ctx, job, cmd = crash_looping("crash", initial=2.0)
    cmd.exit(1)
    cmd.exit(1)  # second quick failure: backs off 2 s
    ctx.loop.advance(0.1234)
    snap = job.snapshot()
    assert snap["state"] == "backoff" and snap["pid"] is None
    assert snap["backoffUntil"] == 1.877  # seconds left, to the ms
    assert snap["failuresInARow"] == 2
    ctx.loop.advance(1.8766)
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
    _ctx, _job, cmd = crash_looping("crash", initial=0.25)
    cmd.exit(1)
    cmd.exit(1)
    out = text(logged)
    assert "restarting crash in 0.25s after 2 failed runs in a row" in out
    assert "exits right after it starts" not in out


def test_quick_clean_exits_warn_once_about_daemons_then_log_each_backoff(logged: list[bytes]) -> None:
    ctx, _job, cmd = crash_looping("daemon", initial=0.5)
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
    ctx, job, cmd = crash_looping("crash", initial=1.0)
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
    ctx, job, cmd = crash_looping("crash", initial=1.0)
    cmd.exit(1)
    cmd.exit(1)
    assert job.snapshot()["state"] == "backoff"
    assert not job.operator_stop()
    assert job.snapshot()["backoffUntil"] is None
    ctx.loop.advance(5)
    assert not cmd.running and job.snapshot()["state"] == "held"


def test_operator_start_during_a_backoff_starts_now_and_drops_the_pending_restart() -> None:
    ctx, job, cmd = crash_looping("crash", initial=1.0)
    cmd.exit(1)
    cmd.exit(1)
    assert job.operator_start() and cmd.running
    assert job.snapshot()["backoffUntil"] is None
    ctx.loop.advance(5)
    assert cmd.starts == 3 and job.queued_runs == 0


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


class FakeDiscovery:
    """The registry as a job sees it: every call recorded as (what, job name, detail)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, object]] = []

    def register(self, job: Any, status: str) -> None:
        self.calls.append(("register", job.name, status))

    def heartbeat(self, job: Any) -> None:
        self.calls.append(("heartbeat", job.name, None))

    def unhealthy(self, job: Any, note: str) -> None:
        self.calls.append(("unhealthy", job.name, note))

    def deregister(self, job: Any) -> None:
        self.calls.append(("deregister", job.name, None))


class FakeHealth:
    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.done: list[Any] = []

    def check(self, request: Any, done: Any) -> None:
        self.requests.append(request)
        self.done.append(done)


def with_registry() -> tuple[Ctx, FakeDiscovery]:
    ctx = Ctx()
    ctx.discovery = FakeDiscovery()
    return ctx, ctx.discovery


CHECK_OK = Event(ev.EXIT_SUCCESS, "check.web")
CHECK_FAIL = Event(ev.EXIT_FAILED, "check.web")


def test_a_service_job_tells_the_registry_healthy_unhealthy_once_and_deregisters_when_done() -> None:
    ctx, reg = with_registry()
    job, _cmd = ctx.add(name="web", port=80, restarts=UNLIMITED, initial_status="warning",
                        health=HealthConfig(exec=("check",), interval=1, ttl=5))
    assert reg.calls == [("register", "web", "warning")]
    ctx.bus.publish(STARTUP)
    ctx.bus.publish(CHECK_OK)
    assert reg.calls[-1] == ("heartbeat", "web", None)
    job.check_detail = "down"
    ctx.bus.publish(CHECK_FAIL)
    ctx.bus.publish(CHECK_FAIL)  # already unhealthy: Consul is not told again
    assert reg.calls[1:] == [("heartbeat", "web", None), ("unhealthy", "web", "down")]
    ctx.bus.publish(Event(ev.ENTER_MAINTENANCE, ev.GLOBAL))
    assert reg.calls[-1] == ("deregister", "web", None)
    ctx.bus.publish(Event(ev.SHUTDOWN, ev.GLOBAL))
    assert job.completed and reg.calls[-1] == ("deregister", "web", None) and len(reg.calls) == 5
    assert job not in ctx.bus._subscribers


def test_a_job_without_a_port_never_reaches_the_registry() -> None:
    ctx, reg = with_registry()
    job, cmd = ctx.add(name="web", restarts=UNLIMITED, initial_status="warning",
                       health=HealthConfig(exec=("check",), interval=1, ttl=5))
    ctx.bus.publish(STARTUP)
    ctx.bus.publish(CHECK_OK)
    ctx.bus.publish(CHECK_FAIL)
    ctx.bus.publish(Event(ev.ENTER_MAINTENANCE, ev.GLOBAL))
    ctx.bus.publish(Event(ev.EXIT_MAINTENANCE, ev.GLOBAL))
    job._on_ready()
    ctx.loop.advance(3)
    job._on_watchdog()
    ctx.bus.publish(Event(ev.SHUTDOWN, ev.GLOBAL))
    cmd.exit(0)
    assert reg.calls == []


def test_a_port_only_service_heartbeats_while_it_runs() -> None:
    ctx, reg = with_registry()
    ctx.loop.advance(100)  # a clock that does not start at zero
    job, _cmd = ctx.add(name="web", port=80, restarts=UNLIMITED, health=HealthConfig(interval=1, ttl=5))
    ctx.loop.advance(2)
    assert reg.calls == []  # idle: not started yet
    ctx.bus.publish(STARTUP)
    ctx.loop.advance(2)
    assert reg.calls == [("heartbeat", "web", None)] * 2
    ctx2, reg2 = with_registry()
    ctx2.add(name="web", restarts=UNLIMITED, health=HealthConfig(interval=1, ttl=5))
    ctx2.bus.publish(STARTUP)
    ctx2.loop.advance(3)
    assert reg2.calls == []  # no port: no service
    assert job.status == "unknown"


def test_checks_wait_for_the_initial_delay_skip_idle_and_maintenance_and_get_the_jobs_request() -> None:
    ctx = Ctx()
    ctx.health = FakeHealth()
    ctx.loop.advance(100)
    job, _cmd = ctx.add(name="web", restarts=UNLIMITED,
                        health=HealthConfig(exec=("check",), interval=1, ttl=5, initial_delay=2))
    ctx.loop.advance(3)
    assert ctx.health.requests == []  # idle: its trigger has not come
    ctx.bus.publish(STARTUP)
    ctx.loop.advance(1)
    assert ctx.health.requests == []  # 1 s of a 2 s initial delay
    ctx.loop.advance(1)
    assert ctx.health.requests == [job.check_request]  # exactly at the initial delay
    ctx.health.done[0](True, "")
    ctx.bus.publish(Event(ev.ENTER_MAINTENANCE, ev.GLOBAL))
    ctx.loop.advance(3)
    assert len(ctx.health.requests) == 1  # none in maintenance


def test_a_failed_native_check_is_logged_an_exec_one_speaks_for_itself(logged: list[bytes]) -> None:
    ctx = Ctx()
    ctx.health = FakeHealth()
    http, _ = ctx.add(name="web", restarts=UNLIMITED,
                      health=HealthConfig(http="http://127.0.0.1:1/", interval=1, ttl=5))
    exe, _ = ctx.add(name="app", restarts=UNLIMITED, health=HealthConfig(exec=("check",), interval=1, ttl=5))
    ctx.bus.publish(STARTUP)
    ctx.loop.advance(1)
    assert len(ctx.health.done) == 2
    ctx.health.done[0](False, "connection refused")
    ctx.health.done[1](False, "exit status 1")
    ctx.loop.advance(1)
    ctx.health.done[2](True, "ok")
    out = text(logged)
    assert "check.web failed: connection refused" in out
    assert "check.app failed" not in out and "check.web failed: ok" not in out
    assert http.check_detail == "ok" and exe.check_detail == "exit status 1"
    assert Event(ev.EXIT_FAILED, "check.web") in ctx.events
    assert Event(ev.EXIT_SUCCESS, "check.web") in ctx.events


def test_a_pass_after_a_failure_starts_the_success_count_again() -> None:
    ctx = Ctx()
    job, _ = ctx.add(name="web", restarts=UNLIMITED,
                     health=HealthConfig(exec=("check",), interval=1, ttl=5, success_threshold=2))
    ctx.bus.publish(STARTUP)
    ctx.bus.publish(CHECK_FAIL)
    ctx.bus.publish(CHECK_OK)
    assert Event(ev.HEALTHY, "web") not in ctx.events
    ctx.bus.publish(CHECK_OK)
    assert ctx.events.count(Event(ev.HEALTHY, "web")) == 1 and job.status == "healthy"


def test_ready_counts_as_the_first_pass_and_not_in_maintenance_or_after_halting(logged: list[bytes]) -> None:
    ctx, reg = with_registry()
    job, _ = ctx.add(name="web", port=80, restarts=UNLIMITED,
                     health=HealthConfig(exec=("check",), interval=1, ttl=5, success_threshold=3))
    ctx.bus.publish(STARTUP)
    logs.configure(level="DEBUG")
    try:
        job._on_ready()
    finally:
        logs.configure(level="INFO")
    assert job.status == "healthy" and ctx.events[-1] == Event(ev.HEALTHY, "web")
    assert reg.calls[-1] == ("heartbeat", "web", None)
    assert "web is ready" in text(logged)
    ctx.bus.publish(CHECK_OK)  # 2 of 3: healthy is not published again yet
    assert ctx.events.count(Event(ev.HEALTHY, "web")) == 1
    ctx.bus.publish(CHECK_OK)
    assert ctx.events.count(Event(ev.HEALTHY, "web")) == 2
    ctx.bus.publish(Event(ev.ENTER_MAINTENANCE, ev.GLOBAL))
    job._on_ready()
    assert job.status == "maintenance"
    ctx.bus.publish(Event(ev.SHUTDOWN, ev.GLOBAL))
    job._on_ready()
    assert job.status == "maintenance" and ctx.events.count(Event(ev.HEALTHY, "web")) == 2


def test_watchdog_makes_a_running_job_unhealthy_and_restarts_it(logged: list[bytes]) -> None:
    ctx, reg = with_registry()
    job, cmd = ctx.add(name="web", port=80, restarts=UNLIMITED)
    job._on_watchdog()  # not running: nothing to do
    assert reg.calls == [] and Event(ev.UNHEALTHY, "web") not in ctx.events
    ctx.bus.publish(STARTUP)
    job._on_watchdog()
    assert ctx.events[-1] == Event(ev.UNHEALTHY, "web") and job.status == "unhealthy"
    assert reg.calls == [("unhealthy", "web", "watchdog timeout: no WATCHDOG=1 for 0s")]
    assert " web web watchdog timeout: no WATCHDOG=1 for 0s, restarting it" in text(logged)
    assert job.snapshot()["state"] == "restarting" and cmd.signals == [signal.SIGTERM]
    cmd.exit(143)
    assert cmd.running and cmd.starts == 2 and job.snapshot()["state"] == "running"
    ctx2, reg2 = with_registry()
    job2, _ = ctx2.add(name="web", restarts=UNLIMITED)
    ctx2.bus.publish(STARTUP)
    ctx2.bus.publish(Event(ev.SHUTDOWN, ev.GLOBAL))
    job2._on_watchdog()  # halted: the stop is under way already
    assert Event(ev.UNHEALTHY, "web") not in ctx2.events and reg2.calls == []


def test_backoff_log_lines_carry_the_job_name(logged: list[bytes]) -> None:
    _ctx, _job, cmd = crash_looping("daemon", initial=0.5)
    cmd.exit(0)
    cmd.exit(0)
    out = text(logged)
    assert " daemon daemon exits right after it starts" in out
    assert " daemon restarting daemon in 0.5s" in out


def test_a_stopping_hook_runs_once_more_at_shutdown_then_completes() -> None:
    """An `each: stopping` hook (and a `once` one) outlives shutdown for one run on its trigger."""
    ctx = Ctx()
    app, app_cmd = ctx.add(name="app", restarts=UNLIMITED)
    each, each_cmd = ctx.add(name="hook", when=WhenConfig(source="app", each=ev.STOPPING))
    app.stopping_wait = Event(ev.STOPPED, "hook")
    ctx.bus.publish(STARTUP)
    ctx.bus.publish(Event(ev.SHUTDOWN, ev.GLOBAL))
    assert each_cmd.starts == 1 and not each.completed and not app.completed
    each_cmd.exit(0)
    assert each.completed and app.completed and app_cmd.signals == [signal.SIGTERM]


def test_shutdown_cancels_a_hooks_pending_backoff_restart() -> None:
    ctx = Ctx()
    backoff = Backoff(initial=1.0, factor=2.0, max=30.0, reset_after=10.0)
    hook, cmd = ctx.add(name="hook", restarts=UNLIMITED, backoff=backoff,
                        when=WhenConfig(source="app", each=ev.STOPPING))
    ctx.bus.publish(STARTUP)
    ctx.bus.publish(Event(ev.STOPPING, "app"))
    cmd.exit(0)
    cmd.exit(0)
    assert hook.snapshot()["backoffUntil"] == 1.0
    ctx.bus.publish(Event(ev.SHUTDOWN, ev.GLOBAL))
    assert hook.snapshot()["backoffUntil"] is None
    ctx.loop.advance(5)
    assert cmd.starts == 2


def test_without_a_job_stop_timeout_the_wait_for_the_prestop_dependent_is_unbounded() -> None:
    """The job's stopTimeout bounds the wait (the global deadline bounds everything anyway)."""
    for stop_timeout, done_at in ((0.0, None), (0.5, 0.5)):
        ctx = Ctx()
        app, _ = ctx.add(name="app", stop_timeout=stop_timeout, restarts=UNLIMITED)
        ctx.add(name="pre", exec=("sleep", "100"), when=WhenConfig(source="app", once=ev.STOPPING))
        app.stopping_wait = Event(ev.STOPPED, "pre")
        ctx.bus.publish(STARTUP)
        ctx.bus.publish(Event(ev.SHUTDOWN, ev.GLOBAL))
        ctx.loop.advance(0.4)
        assert not app.completed
        ctx.loop.advance(100)
        assert app.completed is (done_at is not None)


def test_a_second_stop_rearms_the_grace_rather_than_adding_a_second_kill() -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="app", restarts=UNLIMITED)
    ctx.bus.publish(STARTUP)
    job.operator_stop()
    ctx.loop.advance(2)
    job.operator_stop()  # the grace starts again from here
    ctx.loop.advance(4)
    assert cmd.signals == [signal.SIGTERM, signal.SIGTERM]
    ctx.loop.advance(1.5)
    assert cmd.signals == [signal.SIGTERM, signal.SIGTERM, signal.SIGKILL]


def start_fails(cmd: Any, err: str) -> None:
    """The command's start failed: reported later through its exit callback (process.Command)."""
    assert cmd._on_exit is not None
    cmd.pid = 0
    cmd._on_exit(None, err)


def test_a_start_failure_is_exit_127_a_failure_and_an_error_event(logged: list[bytes]) -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="app")
    ctx.bus.publish(STARTUP)
    start_fails(cmd, "fork/exec /nope: no such file or directory")
    assert job.last_exit == 127 and job.failures_in_a_row == 1 and job.short_runs_in_a_row == 1
    failed = ctx.events.index(Event(ev.EXIT_FAILED, "app"))
    assert ctx.events[failed + 1] == Event(ev.ERROR, "fork/exec /nope: no such file or directory")
    assert Event(ev.GAVE_UP, "app") in ctx.events and job.completed
    assert "unable to start app: fork/exec /nope: no such file or directory" in text(logged)
    assert job.snapshot()["status"] == "unknown" and job.snapshot()["lastExit"] == 127


def test_start_failures_of_an_unlimited_job_back_off() -> None:
    _ctx, job, cmd = crash_looping("app", initial=1.0)
    start_fails(cmd, "no")
    assert cmd.starts == 2  # the first restart is immediate
    start_fails(cmd, "no")
    assert cmd.starts == 2 and job.snapshot()["state"] == "backoff" and job.failures_in_a_row == 2


def test_an_invalid_move_of_the_state_machine_is_logged_and_not_made(logged: list[bytes]) -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="app")
    ctx.bus.publish(STARTUP)
    cmd.exit(0)
    assert job.completed
    job._to(State.ACTIVE)
    assert job.state is State.COMPLETED
    assert "job app: no transition from completed to active" in text(logged)


def test_interval_runs_that_overlap_are_queued_one_each_and_run_in_turn() -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="tick", when=WhenConfig(interval=1.0), restarts=UNLIMITED)
    ctx.bus.publish(STARTUP)
    assert cmd.starts == 1
    ctx.loop.advance(2.5)  # two ticks while the first run goes on
    assert cmd.starts == 1 and job.queued_runs == 2
    cmd.exit(0)
    assert cmd.starts == 2 and job.queued_runs == 1
    cmd.exit(0)
    assert cmd.starts == 3 and job.queued_runs == 0
    cmd.exit(0)
    assert cmd.starts == 3 and not cmd.running


def test_an_each_job_with_restarts_gives_up_on_a_trigger_once_they_are_used() -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="onchange", restarts=1, when=WhenConfig(source="watch.app", each="changed"))
    ctx.bus.publish(Event(ev.CHANGED, "watch.app"))
    cmd.exit(1)
    assert cmd.running  # its one restart
    cmd.exit(1)
    assert Event(ev.GAVE_UP, "onchange") in ctx.events and not job.completed


def test_a_when_all_job_completes_after_its_one_run() -> None:
    ctx = Ctx()
    from pypilot.config.model import Trigger

    job, cmd = ctx.add(name="c", when=WhenConfig(all=(Trigger("a", ev.HEALTHY), Trigger("b", ev.HEALTHY))))
    ctx.bus.publish(STARTUP)
    ctx.bus.publish(Event(ev.HEALTHY, "b"))
    ctx.bus.publish(Event(ev.HEALTHY, "a"))
    cmd.exit(0)
    assert cmd.starts == 1 and job.completed


def test_a_job_waiting_for_its_trigger_stays_idle_through_startup() -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="later", when=WhenConfig(source="other", once=ev.HEALTHY),
                       health=HealthConfig(exec=("check",), interval=1, ttl=5))
    ctx.bus.publish(STARTUP)
    ctx.bus.publish(Event(ev.EXIT_MAINTENANCE, ev.GLOBAL))
    assert job.status == "unknown"  # leaving maintenance says unknown, as in CP
    ctx2 = Ctx()
    job2, _ = ctx2.add(name="later", when=WhenConfig(source="other", once=ev.HEALTHY))
    ctx2.bus.publish(STARTUP)  # a global event, not its trigger: nothing changes
    assert job2.status == "idle" and cmd.starts == 0


def test_a_spawn_records_the_environment_generation_it_saw() -> None:
    ctx = Ctx()
    ctx.env_generation = 3
    job, cmd = ctx.add(name="app", restarts=UNLIMITED)
    assert job.env_generation is None
    ctx.bus.publish(STARTUP)
    assert job.env_generation == 3
    ctx.env_generation = 4
    cmd.exit(1)
    assert job.env_generation == 4


def test_the_exec_timeout_is_the_jobs_else_an_interval_jobs_interval() -> None:
    class Recording(Ctx):
        def __init__(self) -> None:
            super().__init__()
            self.timeouts: dict[str, float | None] = {}

        def command(self, cfg: Any, timeout: float | None) -> FakeCommand:
            self.timeouts[cfg.name] = timeout
            return super().command(cfg, timeout)

    ctx = Recording()
    ctx.add(name="tick", when=WhenConfig(interval=5.0))
    ctx.add(name="own", when=WhenConfig(interval=5.0), timeout=2.0)
    ctx.add(name="plain")
    assert ctx.timeouts == {"tick": 5.0, "own": 2.0, "plain": None}


def test_a_health_config_without_an_interval_runs_no_heartbeat() -> None:
    ctx = Ctx()
    ctx.health = FakeHealth()
    ctx.add(name="web", restarts=UNLIMITED, health=HealthConfig(exec=("check",), interval=0, ttl=5))
    ctx.bus.publish(STARTUP)
    ctx.loop.advance(3)
    assert ctx.health.requests == []


def test_a_failure_before_any_check_output_reports_an_empty_note() -> None:
    ctx, reg = with_registry()
    ctx.add(name="web", port=80, restarts=UNLIMITED, health=HealthConfig(exec=("check",), interval=1, ttl=5))
    ctx.bus.publish(STARTUP)
    ctx.bus.publish(CHECK_FAIL)
    assert reg.calls == [("unhealthy", "web", "")]


def test_a_ready_job_gives_its_command_a_readiness_channel_for_its_own_group() -> None:
    from pypilot.config.model import ReadyConfig

    ctx = Ctx()
    job, cmd = ctx.add(name="web", restarts=UNLIMITED, ready=ReadyConfig(kind="notify"))
    r = job.readiness
    assert r is not None and cmd.readiness is r  # type: ignore[attr-defined]
    assert r.job == "web"
    ctx.bus.publish(STARTUP)
    assert r._group() == cmd.pid and cmd.pid
    plain, _ = ctx.add(name="plain")
    assert plain.readiness is None


def test_ready_clears_the_failure_count() -> None:
    ctx = Ctx()
    job, _ = ctx.add(name="web", restarts=UNLIMITED,
                     health=HealthConfig(exec=("check",), interval=1, ttl=5, failure_threshold=2))
    ctx.bus.publish(STARTUP)
    ctx.bus.publish(CHECK_FAIL)
    job._on_ready()
    ctx.bus.publish(CHECK_FAIL)  # one failure since it said ready: not yet unhealthy
    assert job.status == "healthy"
    ctx.bus.publish(CHECK_FAIL)
    assert job.status == "unhealthy"
