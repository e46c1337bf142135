"""The job state machine driven by events alone, no processes: ContainerPilot's own oracles (§4.4 notes)
and the beyond-CP rules. A fake command records starts; a fake clock fires timers."""

from __future__ import annotations

import heapq
import itertools
import signal
from collections.abc import Callable
from typing import Any

import pytest

from pypilot import events as ev
from pypilot.config.model import UNLIMITED, Backoff, HealthConfig, JobConfig, Trigger, WhenConfig
from pypilot.events import Bus, Event
from pypilot.jobs import Job

STARTUP = Event(ev.STARTUP, ev.GLOBAL)
SHUTDOWN = Event(ev.SHUTDOWN, ev.GLOBAL)


class FakeTimer:
    def __init__(self, deadline: float, fn: Callable[[], None]) -> None:
        self.deadline, self.fn, self.cancelled = deadline, fn, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    def __init__(self) -> None:
        self.t = 0.0
        self._heap: list[tuple[float, int, FakeTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    def call_later(self, delay: float, fn: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.t + delay, fn)
        heapq.heappush(self._heap, (timer.deadline, next(self._seq), timer))
        return timer

    def call_soon(self, fn: Callable[[], None]) -> FakeTimer:
        return self.call_later(0, fn)

    def advance(self, dt: float) -> None:
        end = self.t + dt
        while self._heap and self._heap[0][0] <= end:
            deadline, _, timer = heapq.heappop(self._heap)
            self.t = max(self.t, deadline)
            if not timer.cancelled:
                timer.fn()
        self.t = end


class FakeCommand:
    """Stands in for process.Command: each start is a run that the test ends with ``exit``."""

    def __init__(self, loop: FakeLoop) -> None:
        self.loop = loop
        self.pid = 0
        self.starts = 0
        self.signals: list[int] = []
        self.started_at = 0.0
        self._on_exit: Callable[[int | None, str | None], None] | None = None

    @property
    def running(self) -> bool:
        return self.pid != 0

    def start(self, on_exit: Callable[[int | None, str | None], None]) -> None:
        self.starts += 1
        self.pid = 1000 + self.starts
        self.started_at = self.loop.now()
        self._on_exit = on_exit

    def exit(self, code: int = 0) -> None:
        assert self._on_exit is not None and self.pid
        self.pid = 0
        self._on_exit(code << 8, None)

    def signal(self, sig: int) -> bool:
        self.signals.append(sig)
        return self.running

    def kill(self) -> None:
        self.signal(signal.SIGKILL)


class Ctx:
    def __init__(self) -> None:
        self.loop = FakeLoop()
        self.bus = Bus()
        self.reaper: Any = None
        self.health: Any = None
        self.discovery: Any = None
        self.env_generation = 0
        self.events: list[Event] = []
        self.completed: list[str] = []
        self.bus.listen(self.events.append)

    def job_completed(self, job: Job) -> None:
        self.completed.append(job.name)

    def main_job_ended(self, job: Job) -> None:
        pass

    def stop_grace(self, job: Job) -> float:
        return 5.0

    def command(self, cfg: JobConfig, timeout: float | None) -> FakeCommand:
        return FakeCommand(self.loop)

    def add(self, **kw: Any) -> tuple[Job, FakeCommand]:
        kw.setdefault("exec", ("true",))
        job = Job(JobConfig(**kw), self)  # type: ignore[arg-type]
        cmd = job.command
        assert isinstance(cmd, FakeCommand)
        self.bus.subscribe(job)
        job.run()
        return job, cmd


def run_to_completion(ctx: Ctx, cmd: FakeCommand, code: int = 0, limit: int = 100) -> None:
    for _ in range(limit):
        if not cmd.running:
            return
        cmd.exit(code)
        ctx.loop.advance(0)


@pytest.mark.parametrize(("restarts", "runs"), [(3, 4), (1, 2), (0, 1)], ids=["3", "1", "never"])
def test_restart_counts_cp(restarts: int, runs: int) -> None:
    """CP §4.4: restarts 3 → 4 runs, "1" → 2, never/0/absent → 1 (restarts on success and failure)."""
    ctx = Ctx()
    job, cmd = ctx.add(name="myjob", restarts=restarts)
    ctx.bus.publish(STARTUP)
    run_to_completion(ctx, cmd, code=1)
    assert cmd.starts == runs
    assert job.completed
    assert ctx.events[-2:] == [Event(ev.STOPPING, "myjob"), Event(ev.STOPPED, "myjob")]
    failed = ctx.events.index(Event(ev.EXIT_FAILED, "myjob"))
    assert ctx.events[failed + 1].code == ev.ERROR  # adjacent, as CP's command published them


def test_interval_job_with_two_restarts_runs_exactly_three_times() -> None:
    """CP §4.4: interval 250 ms, restarts "2" → exactly 3 runs within 1 s."""
    ctx = Ctx()
    job, cmd = ctx.add(name="tick", when=WhenConfig(interval=0.25), restarts=2)
    ctx.bus.publish(STARTUP)
    for _ in range(8):
        if cmd.running:
            cmd.exit(0)
        ctx.loop.advance(0.125)
    assert cmd.starts == 3
    assert job.completed


def test_when_timeout_event_sequence() -> None:
    """CP §4.4: a job whose trigger never comes gives {startup, TimerExpired, Stopping, Stopped}."""
    ctx = Ctx()
    _job, cmd = ctx.add(name="myjob", when=WhenConfig(source="never", once="healthy", timeout=1.0))
    ctx.bus.publish(STARTUP)
    ctx.loop.advance(1.5)
    assert ctx.events == [
        STARTUP,
        Event(ev.TIMER_EXPIRED, "myjob"),
        Event(ev.STOPPING, "myjob"),
        Event(ev.STOPPED, "myjob"),
    ]
    assert cmd.starts == 0


def test_each_trigger_runs_are_serialised_never_dropped() -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="onchange", when=WhenConfig(source="watch.app", each="changed"))
    changed = Event(ev.CHANGED, "watch.app")
    for _ in range(3):
        ctx.bus.publish(changed)
    assert cmd.starts == 1 and job.queued_runs == 2
    cmd.exit(0)
    assert cmd.starts == 2
    cmd.exit(0)
    cmd.exit(0)
    assert cmd.starts == 3 and not cmd.running and not job.completed


def test_prestop_job_delays_stop_until_it_finished() -> None:
    """CP test_sigterm: preStop runs on `stopping`, postStop on `stopped`, both at shutdown."""
    ctx = Ctx()
    app, app_cmd = ctx.add(name="app", restarts=UNLIMITED)
    pre, pre_cmd = ctx.add(name="preStop", when=WhenConfig(source="app", once=ev.STOPPING))
    post, post_cmd = ctx.add(name="postStop", when=WhenConfig(source="app", once=ev.STOPPED))
    app.stopping_wait = Event(ev.STOPPED, "preStop")
    ctx.bus.publish(STARTUP)
    ctx.bus.publish(SHUTDOWN)
    assert pre_cmd.starts == 1 and not app.completed and app_cmd.signals == []
    pre_cmd.exit(0)
    assert app.completed and app_cmd.signals == [signal.SIGTERM]
    assert post_cmd.starts == 1
    post_cmd.exit(0)
    assert post.completed and pre.completed


def test_job_stop_timeout_bounds_the_wait_for_a_prestop_dependent() -> None:
    """CP bug: the job stopTimeout did nothing; here it ends the wait."""
    ctx = Ctx()
    app, _app_cmd = ctx.add(name="app", stop_timeout=2.0)
    ctx.add(name="preStop", exec=("sleep", "100"), when=WhenConfig(source="app", once=ev.STOPPING))
    app.stopping_wait = Event(ev.STOPPED, "preStop")
    ctx.bus.publish(STARTUP)
    ctx.bus.publish(SHUTDOWN)
    ctx.loop.advance(1.9)
    assert not app.completed
    ctx.loop.advance(0.2)
    assert app.completed


def test_shutdown_triggered_job_runs_at_shutdown() -> None:
    """CP bug: `when: {source: "global", once: "shutdown"}` never ran."""
    ctx = Ctx()
    job, cmd = ctx.add(name="bye", when=WhenConfig(source="global", once=ev.SHUTDOWN))
    ctx.bus.publish(STARTUP)
    assert cmd.starts == 0
    ctx.bus.publish(SHUTDOWN)
    assert cmd.starts == 1 and not job.completed
    cmd.exit(0)
    assert job.completed


def test_signal_triggered_job_runs_on_every_signal() -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="onhup", when=WhenConfig(source="SIGHUP"))
    ctx.bus.publish(STARTUP)
    for _ in range(3):
        ctx.bus.publish(Event(ev.SIGNAL, "SIGHUP"))
        cmd.exit(0)
    ctx.bus.publish(Event(ev.SIGNAL, "SIGUSR2"))
    assert cmd.starts == 3 and not job.completed


def test_maintenance_holds_status_until_exit() -> None:
    """CP §11: enter → maintenance; a result in maintenance keeps it; exit → unknown; pass → healthy."""
    ctx = Ctx()
    job, _ = ctx.add(name="app", health=HealthConfig(interval=1, ttl=5), restarts=UNLIMITED)
    ctx.bus.publish(STARTUP)
    ctx.bus.publish(Event(ev.ENTER_MAINTENANCE, ev.GLOBAL))
    assert job.status == "maintenance"
    ctx.bus.publish(Event(ev.EXIT_SUCCESS, "check.app"))
    ctx.bus.publish(Event(ev.EXIT_FAILED, "check.app"))
    assert job.status == "maintenance"
    ctx.bus.publish(Event(ev.EXIT_MAINTENANCE, ev.GLOBAL))
    assert job.status == "unknown"
    ctx.bus.publish(Event(ev.EXIT_SUCCESS, "check.app"))
    assert job.status == "healthy"
    assert ctx.events[-1] == Event(ev.HEALTHY, "app")


def test_healthy_published_on_every_passing_check_and_thresholds() -> None:
    ctx = Ctx()
    job, _ = ctx.add(
        name="app",
        restarts=UNLIMITED,
        health=HealthConfig(interval=1, ttl=5, success_threshold=2, failure_threshold=3),
    )
    ctx.bus.publish(STARTUP)
    check_ok, check_fail = Event(ev.EXIT_SUCCESS, "check.app"), Event(ev.EXIT_FAILED, "check.app")
    for e in (check_ok, check_ok, check_ok, check_fail, check_fail):
        ctx.bus.publish(e)
    assert ctx.events.count(Event(ev.HEALTHY, "app")) == 2 and job.status == "healthy"
    ctx.bus.publish(check_fail)
    assert job.status == "unhealthy" and ctx.events[-1] == Event(ev.UNHEALTHY, "app")


def test_backoff_first_restart_immediate_then_doubling_to_cap() -> None:
    ctx = Ctx()
    backoff = Backoff(initial=0.1, factor=2.0, max=0.5, reset_after=10.0)
    _job, cmd = ctx.add(name="crash", restarts=UNLIMITED, backoff=backoff)
    ctx.bus.publish(STARTUP)
    gaps = []
    for _ in range(6):
        cmd.exit(1)
        t0 = ctx.loop.now()
        while not cmd.running:
            ctx.loop.advance(0.01)
        gaps.append(round(ctx.loop.now() - t0, 2))
    assert gaps == pytest.approx([0.0, 0.1, 0.2, 0.4, 0.5, 0.5], abs=0.011)


def test_backoff_resets_after_a_clean_run_window_and_spares_finite_restarts() -> None:
    ctx = Ctx()
    _job, cmd = ctx.add(name="crash", restarts=UNLIMITED, backoff=Backoff(initial=1, reset_after=10))
    ctx.bus.publish(STARTUP)
    cmd.exit(1)
    cmd.exit(1)
    assert not cmd.running  # second failure in a row: backing off
    ctx.loop.advance(1)
    ctx.loop.advance(11)  # this run lasts past resetAfter
    cmd.exit(1)
    assert cmd.running  # counted as a first failure again: immediate
    ctx2 = Ctx()
    _, finite = ctx2.add(name="task", restarts=5)
    ctx2.bus.publish(STARTUP)
    for _ in range(5):
        finite.exit(1)
        assert finite.running  # CP's immediate restarts for a counted `restarts`


def test_when_all_starts_after_every_trigger_fired() -> None:
    """CP #435: start after A is healthy and B exited 0, in any order."""
    ctx = Ctx()
    triggers = (Trigger("a", ev.HEALTHY), Trigger("b", ev.EXIT_SUCCESS))
    _job, cmd = ctx.add(name="c", when=WhenConfig(all=triggers))
    ctx.bus.publish(STARTUP)
    ctx.bus.publish(Event(ev.EXIT_SUCCESS, "b"))
    assert cmd.starts == 0
    ctx.bus.publish(Event(ev.HEALTHY, "a"))
    assert cmd.starts == 1


def test_operator_stop_start_restart_bypass_counters() -> None:
    ctx = Ctx()
    job, cmd = ctx.add(name="app", restarts=UNLIMITED, stop_signal=signal.SIGQUIT)
    ctx.bus.publish(STARTUP)
    assert job.operator_stop() and cmd.signals == [signal.SIGQUIT]
    cmd.exit(0)
    assert not cmd.running and job.snapshot()["state"] == "held"
    assert job.operator_start() and cmd.running
    job.operator_restart()
    cmd.exit(1)
    assert cmd.running and job.failures_in_a_row <= 1


def test_quick_clean_exits_of_an_unlimited_job_back_off_too() -> None:
    """#14: a daemon that forks into the background exits 0 at once; it was restarted ~2 200 times
    in 4 s. Every run shorter than resetAfter counts, whatever its code; a long run resets."""
    ctx = Ctx()
    backoff = Backoff(initial=0.1, factor=2.0, max=0.5, reset_after=10.0)
    job, cmd = ctx.add(name="daemon", restarts=UNLIMITED, backoff=backoff)
    ctx.bus.publish(STARTUP)
    gaps = []
    for _ in range(5):
        cmd.exit(0)
        t0 = ctx.loop.now()
        while not cmd.running:
            ctx.loop.advance(0.01)
        gaps.append(round(ctx.loop.now() - t0, 2))
    assert gaps == pytest.approx([0.0, 0.1, 0.2, 0.4, 0.5], abs=0.011)
    assert job.failures_in_a_row == 0  # clean exits are not failures
    ctx.loop.advance(11)
    cmd.exit(0)
    assert cmd.running  # a run past resetAfter: immediate again
    ctx2 = Ctx()
    _, finite = ctx2.add(name="task", restarts=5, backoff=backoff)
    ctx2.bus.publish(STARTUP)
    for _ in range(5):
        finite.exit(0)
        assert finite.running  # CP's immediate restarts for a counted `restarts`


def test_gave_up_also_for_a_failing_job_with_the_default_restarts() -> None:
    """#21: `gaveUp` came only with restarts >= 1; a job with the default (never) said nothing."""
    ctx = Ctx()
    job, cmd = ctx.add(name="once")
    ctx.bus.publish(STARTUP)
    cmd.exit(1)
    assert Event(ev.GAVE_UP, "once") in ctx.events and job.completed
    ctx2 = Ctx()
    _, each = ctx2.add(name="onchange", when=WhenConfig(source="watch.app", each="changed"))
    ctx2.bus.publish(Event(ev.CHANGED, "watch.app"))
    each.exit(1)  # it runs again on the next change: it has not given up
    assert Event(ev.GAVE_UP, "onchange") not in ctx2.events
    ctx3 = Ctx()
    _, fine = ctx3.add(name="fine")
    ctx3.bus.publish(STARTUP)
    fine.exit(0)
    assert Event(ev.GAVE_UP, "fine") not in ctx3.events


def test_a_failure_while_handling_an_exit_ends_the_job_instead_of_leaving_it_running_with_no_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ended: list[str] = []
    ctx = Ctx()
    ctx.main_job_ended = lambda job: ended.append(job.name)  # type: ignore[method-assign]
    job, cmd = ctx.add(name="app", restarts="unlimited", main=True)
    ctx.bus.publish(STARTUP)
    assert cmd.running

    def broken() -> None:
        raise RuntimeError("a bug in the restart path")

    monkeypatch.setattr(job, "_start_exec", broken)
    cmd.exit(1)
    ctx.loop.advance(0)
    assert job.completed and ended == ["app"]  # a main job ends the container, as its last exit would
    assert ctx.events[-2:] == [Event(ev.STOPPING, "app"), Event(ev.STOPPED, "app")]
