"""A job's whole lifecycle: when it starts, restarts, times out, stops and completes (CP §3.4–3.6, §4.4–4.6).

Each ``Job`` is a state machine fed by the bus (``receive``) and by its own timers. It decides and
asks for effects: spawn or signal its command, publish events, tell the supervisor it completed.
``receive`` is CP's dispatch table, first match wins; each row is an ``_on_*`` handler that answers
``Flow.CONTINUE`` or ``Flow.HALT`` (completed), as CP's job loop does. Where a job
is in its lifecycle is one ``State``, every allowed move in ``TRANSITIONS``; its health is ``status``.
Its command comes from the context (``Context.command``), and its own exits reach ``_on_exec_exit``
directly, queued in the bus order ahead of what that handler publishes.

Beyond CP, and only where a CP config cannot tell the difference: restart backoff for every run shorter
than ``resetAfter`` (crash loops, and daemons that fork into the background and exit 0 at once) of
``restarts: "unlimited"`` jobs (finite ``restarts`` keep CP's immediate restarts), a per-job stop signal,
the job ``stopTimeout`` bounding the wait for a preStop dependent, a ``shutdown``-triggered job that
really runs at shutdown, and ``when.all`` (start once several triggers have all fired).
"""

from __future__ import annotations

from pypilot import events as ev
from pypilot import logs, reaper
from pypilot.config.model import UNLIMITED, JobConfig, WhenConfig
from pypilot.events import Event
from pypilot.loop import Loop, Timer
from pypilot.process import Command

TYPE_CHECKING = False  # typing's costs start-up time; mypy reads this name as True
if TYPE_CHECKING:
    from collections.abc import Callable
    from enum import Enum as _Enum
    from typing import Any, Protocol, TypeVar

    from pypilot.health import HealthChecks
    from pypilot.readiness import Readiness
    from pypilot.workers import Message

    _E = TypeVar("_E", bound=type[_Enum])

    def _enum(cls: _E) -> _E: ...
else:
    class _Enum:
        """Enum members without ``enum``, whose import (with ``functools``, ``types``, ``operator``) is
        ~3 M instructions before the first spawn: one object per name, compared with ``is``, with the
        enum's ``name``, ``value``, repr and lookup by value (``State("held")``, a ``ValueError`` for an
        unknown one). Type checkers see a real ``Enum``."""

        __slots__ = ("name", "value")
        _by_value: dict[object, _Enum] = {}

        def __new__(cls, value):
            try:
                return cls._by_value[value]
            except (KeyError, TypeError):
                raise ValueError(f"{value!r} is not a valid {cls.__qualname__}") from None

        def __repr__(self):
            return f"<{type(self).__name__}.{self.name}: {self.value!r}>"

        def __str__(self):
            return f"{type(self).__name__}.{self.name}"

        def __reduce__(self):
            return type(self), (self.value,)

    def _enum(cls):
        """Turn each public class attribute of ``cls`` (a ``_Enum``) into a member with that value."""
        cls._by_value = {}
        for name, value in list(vars(cls).items()):
            if not name.startswith("_"):
                member = object.__new__(cls)
                member.name, member.value = name, value
                cls._by_value.setdefault(value, member)
                setattr(cls, name, member)
        return cls

IDLE, UNKNOWN, HEALTHY, UNHEALTHY, MAINTENANCE = "idle", "unknown", "healthy", "unhealthy", "maintenance"
SIGNAL_SOURCES = ("SIGHUP", "SIGUSR2")


def _nothing() -> None:
    pass


@_enum
class Flow(_Enum):
    """What a ``receive`` handler tells the job's loop (CP's job loop): go on, or this job is over."""

    CONTINUE = "continue"
    HALT = "halt"  # completed: it takes no more events


@_enum
class State(_Enum):
    """Where a job is in its lifecycle; ``status`` (above) is its health, a separate axis (CP)."""

    ACTIVE = "active"  # started by its triggers, restarted by its policy: waiting, running or backing off
    STOPPING = "stopping"  # an operator stop: its process is on the stop path, then HELD
    HELD = "held"  # stopped by an operator: not restarted until started again
    RESTARTING = "restarting"  # an operator restart: its process is on the stop path, then ACTIVE
    HALTING = "halting"  # cleanup has begun (CP §4.6): no trigger starts it any more
    COMPLETED = "completed"  # stopped for good (``stopped`` published)


# Every transition a job may take; anything else is a bug, logged and refused.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.ACTIVE: frozenset({State.STOPPING, State.HELD, State.RESTARTING, State.HALTING, State.COMPLETED}),
    State.STOPPING: frozenset({State.HELD, State.ACTIVE, State.RESTARTING, State.HALTING, State.COMPLETED}),
    State.HELD: frozenset({State.ACTIVE, State.STOPPING, State.HALTING, State.COMPLETED}),
    State.RESTARTING: frozenset({State.ACTIVE, State.STOPPING, State.HALTING, State.COMPLETED}),
    State.HALTING: frozenset({State.COMPLETED}),
    State.COMPLETED: frozenset(),
}


# what a job needs of its surroundings, for type checkers only (a class costs ~70 K instructions to make)
if TYPE_CHECKING:

    class Registry(Protocol):
        """Service discovery as jobs see it (Consul, in the I/O worker): fire and forget."""

        def register(self, job: Job, status: str) -> None: ...

        def heartbeat(self, job: Job) -> None: ...

        def unhealthy(self, job: Job, note: str) -> None: ...

        def deregister(self, job: Job) -> None: ...

    class Context(Protocol):
        """What a job needs from the supervisor that owns it."""

        loop: Loop
        reaper: reaper.Reaper
        bus: ev.Bus
        health: HealthChecks | None

        @property
        def discovery(self) -> Registry | None: ...  # read-only here: the supervisor's is a wider type
        env_generation: int  # bumped by each change of the environment jobs are spawned with

        def job_completed(self, job: Job) -> None: ...

        def main_job_ended(self, job: Job) -> None: ...

        def stop_grace(self, job: Job) -> float: ...

        def command(self, cfg: JobConfig, timeout: float | None) -> Command: ...


def start_trigger(when: WhenConfig) -> tuple[Event | None, int, set[Event]]:
    """What starts a job (CP §3.4): its start event, how many starts it has, the ``when.all`` set."""
    startup = Event(ev.STARTUP, ev.GLOBAL)
    if when.interval:  # the ticks restart it; the first run is at startup
        return startup, 1, set()
    if when.all:
        return None, 1, {Event(t.event, t.source) for t in when.all}
    if when.source in SIGNAL_SOURCES:  # once/each are ignored for signal sources
        return Event(ev.SIGNAL, when.source), UNLIMITED, set()
    if when.once:  # CP: with no source the event can never match ("")
        return Event(when.once, when.source or ""), 1, set()
    if when.each:
        return Event(when.each, when.source or ""), UNLIMITED, set()
    if when.source is not None:  # CP: a source with no event (or `when: {}`) is inert
        return None, 0, set()
    return startup, 1, set()


class Job:
    def __init__(self, cfg: JobConfig, ctx: Context) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.ctx = ctx
        self.status = IDLE
        self.state = State.ACTIVE
        self.runs = 0
        self.last_exit: int | None = None
        self.failures_in_a_row = 0
        self.short_runs_in_a_row = 0  # runs shorter than backoff.resetAfter, whatever their exit code
        self.told_quick_exit = False
        when = cfg.when
        self.interval = when.interval
        self.start_event, self.starts_remain, self.pending_triggers = start_trigger(when)
        self.restart_limit = cfg.restarts
        self.restarts_remain = cfg.restarts
        self.stopping_wait: Event | None = None  # Stopped{<preStop dependent>}, set by the supervisor
        self.queued_runs = 0  # `each` triggers that came while a run was going: serialised, never dropped
        self.command: Command | None = None
        if cfg.exec:
            timeout = cfg.timeout if cfg.timeout is not None else when.interval
            self.command = ctx.command(cfg, timeout)
        self._timers: dict[str, Timer] = {}
        # health (CP §3.7), with beyond-CP thresholds and initial delay
        self.check_source = f"check.{cfg.name}"
        self.check_request: Message | None = None
        if cfg.health is not None:  # pypilot.health loads only for a job with a check
            from pypilot.health import request_for

            self.check_request = request_for(self)
        self.check_in_flight = False
        self.check_detail = ""  # the last check's output: the note when it turns unhealthy
        self.passes_in_a_row = self.fails_in_a_row = 0
        self.started_at: float | None = None
        self.env_generation: int | None = None  # the context's, at this job's last spawn
        self.readiness = self._readiness()  # beyond CP: `ready`, the job's own word (readiness.py)

    @property
    def completed(self) -> bool:
        return self.state is State.COMPLETED

    @property
    def halted(self) -> bool:
        """Cleanup has begun (or is over): no trigger starts it any more."""
        return self.state is State.HALTING or self.state is State.COMPLETED

    @property
    def held(self) -> bool:
        return self.state is State.HELD or self.state is State.STOPPING

    def _to(self, state: State) -> None:
        if state is self.state:
            return
        if state not in TRANSITIONS[self.state]:
            logs.error(f"job {self.name}: no transition from {self.state.value} to {state.value}")
            return
        self.state = state

    # --- lifecycle entry points -------------------------------------------------------------------

    def run(self) -> None:
        """Arm the job's own timers (before ``startup`` is published, as CP does)."""
        if self.interval:
            self._every("run-every", self.interval, self._on_tick)
        if self.cfg.health is not None and self.cfg.health.interval > 0:
            self._every("heartbeat", self.cfg.health.interval, self._on_heartbeat)
        if self.cfg.has_service and self.cfg.initial_status and self.ctx.discovery is not None:
            self.ctx.discovery.register(self, self.cfg.initial_status)  # CP §6.3: before startup
        timeout = self.cfg.when.timeout
        if timeout and not self.interval and (self.start_event is not None or self.pending_triggers):
            self._once("wait-timeout", timeout, self._on_start_timeout)

    def receive(self, event: Event) -> Flow:
        """CP's dispatch table (§4.4): the first row that matches handles the event, and its handler
        says whether the job goes on. The job's own exits are not among them: ``_on_process_exit``
        hands them to ``_on_exec_exit`` directly."""
        state = self.state
        if state is State.COMPLETED:
            return Flow.HALT
        if state is State.HALTING:
            return self._on_halting(event)
        code, source = event
        if source == self.check_source and code in (ev.EXIT_SUCCESS, ev.EXIT_FAILED):
            return self._on_check_event(code)
        if code in (ev.QUIT, ev.SHUTDOWN) and (source == self.name or event == (ev.SHUTDOWN, ev.GLOBAL)):
            return self._on_quit(event)
        if code == ev.ENTER_MAINTENANCE and source == ev.GLOBAL:
            return self._on_enter_maintenance(event)
        if code == ev.EXIT_MAINTENANCE and source == ev.GLOBAL:
            return self._on_exit_maintenance(event)
        if code in (ev.EXIT_SUCCESS, ev.EXIT_FAILED) and source == self.name:
            return Flow.CONTINUE  # already handled, before it was published
        if code == ev.SIGNAL:
            return self._on_signal(event)
        if event == self.start_event:
            return self._on_start()
        if event in self.pending_triggers:
            return self._on_trigger(event)
        return Flow.CONTINUE

    def _flow(self) -> Flow:
        return Flow.HALT if self.state is State.COMPLETED else Flow.CONTINUE

    # --- operator commands (control API, CP #571) ------------------------------------------------

    def signal(self, sig: int) -> bool:
        return self.command is not None and self.command.signal(sig)

    def operator_stop(self) -> bool:
        """Stop the running process and keep it stopped; False if nothing was running."""
        if self.halted:
            return False
        running = self.command is not None and self.command.running
        self._to(State.STOPPING if running else State.HELD)
        self._cancel("backoff")
        return self._stop_process()

    def operator_start(self) -> bool:
        """Start it now (again); False if it is already running or has completed."""
        if self.halted:
            return False
        self._to(State.ACTIVE)
        if self.command is None or self.command.running:
            return False
        self._cancel("backoff")
        self._start_exec()
        return True

    def operator_restart(self) -> bool:
        if self.halted:
            return False
        if self.command is not None and self.command.running:
            self._to(State.RESTARTING)
            return self._stop_process()
        return self.operator_start()

    def snapshot(self) -> dict[str, object]:
        """What the status API shows of this job."""
        cmd = self.command
        backoff = self._timers.get("backoff")
        return {
            "name": self.name,
            "state": self._state_name(),
            "status": self.status,
            "pid": cmd.pid if cmd is not None and cmd.running else None,
            "runs": self.runs,
            "restarts": max(self.runs - 1, 0),
            "restartsRemaining": None if self.restarts_remain == UNLIMITED else self.restarts_remain,
            "lastExit": self.last_exit,
            "failuresInARow": self.failures_in_a_row,
            "backoffUntil": round(backoff.deadline - self.ctx.loop.now(), 3) if backoff is not None else None,
            **({"readiness": self.readiness.snapshot()} if self.readiness is not None else {}),
        }

    def _state_name(self) -> str:
        """The status API's word: the state, and for an active job what its process is doing."""
        state = self.state
        if state is State.HALTING:
            return "stopping"
        if state is not State.ACTIVE:
            return state.value  # stopping/restarting/held after an operator action, or completed
        if self.command is not None and self.command.running:
            return "running"
        return "backoff" if "backoff" in self._timers else "waiting"

    # --- the table's cells -----------------------------------------------------------------------

    def _on_heartbeat(self) -> None:
        """Heartbeat tick: run the check, unless idle, in maintenance, or the last one still runs."""
        health = self.cfg.health
        if self.halted or self.status in (IDLE, MAINTENANCE) or health is None:
            return
        if self.started_at is None or self.ctx.loop.now() - self.started_at < health.initial_delay:
            return
        if self.check_request is None:
            if self.cfg.has_service and self.ctx.discovery is not None and self._ready_yet():
                self.ctx.discovery.heartbeat(self)  # a port-only service is healthy while it runs
            return
        if self.ctx.health is None or self.check_in_flight:
            return  # CP blocked the job's loop behind a slow check; we skip the tick instead
        self.check_in_flight = True
        self.ctx.health.check(self.check_request, self._on_check_done)

    def _on_check_done(self, ok: bool, detail: str) -> None:
        self.check_in_flight = False
        self.check_detail = detail
        if self.completed:
            return
        if not ok and self.check_request is not None and self.check_request["kind"] != "exec":
            logs.warn(f"{self.check_source} failed: {detail}")
        self.ctx.bus.publish(Event(ev.EXIT_SUCCESS if ok else ev.EXIT_FAILED, self.check_source))

    def _on_halting(self, event: Event) -> Flow:
        """Cleanup has begun: only the preStop dependent's ``stopped`` moves it on."""
        if event == self.stopping_wait:
            self._finish_cleanup()
        return self._flow()

    def _on_check_event(self, code: str) -> Flow:
        if self.status != MAINTENANCE:  # a check finishing in maintenance changes nothing
            self._on_check_result(code == ev.EXIT_SUCCESS)
        return self._flow()

    def _on_signal(self, event: Event) -> Flow:
        """SIGHUP/SIGUSR2: a job triggered by that signal runs (once/each do not apply, CP)."""
        if event == self.start_event:
            self._start_exec()
        return self._flow()

    def _on_check_result(self, ok: bool) -> None:
        """Rows 4/5: a passing check publishes ``healthy`` every time, a failing one ``unhealthy``."""
        health = self.cfg.health
        if ok and not self._ready_yet():
            return  # `ready` gates the first healthy; the check takes over after it
        if ok:
            self.passes_in_a_row, self.fails_in_a_row = self.passes_in_a_row + 1, 0
            if health is None or self.passes_in_a_row >= health.success_threshold:
                self.status = HEALTHY
                self.ctx.bus.publish(Event(ev.HEALTHY, self.name))
                if self.cfg.has_service and self.ctx.discovery is not None:
                    self.ctx.discovery.heartbeat(self)
        else:
            self.passes_in_a_row, self.fails_in_a_row = 0, self.fails_in_a_row + 1
            if health is None or self.fails_in_a_row >= health.failure_threshold:
                was, self.status = self.status, UNHEALTHY
                self.ctx.bus.publish(Event(ev.UNHEALTHY, self.name))
                if was != UNHEALTHY and self.cfg.has_service and self.ctx.discovery is not None:
                    self.ctx.discovery.unhealthy(self, self.check_detail)  # Consul hears it at once

    def _on_enter_maintenance(self, event: Event) -> Flow:
        self.status = MAINTENANCE
        if self.cfg.has_service and self.ctx.discovery is not None:
            self.ctx.discovery.deregister(self)
        if event == self.start_event:
            return self._on_start()
        return self._flow()

    def _on_exit_maintenance(self, event: Event) -> Flow:
        self.status = UNKNOWN
        if event == self.start_event:
            return self._on_start()
        return self._flow()

    def _on_trigger(self, event: Event) -> Flow:
        """One of ``when.all``'s triggers fired; the last one starts the job."""
        self.pending_triggers.discard(event)
        if not self.pending_triggers:
            return self._on_start()
        return self._flow()

    def _on_start(self) -> Flow:
        if self.starts_remain == 0:
            self.start_event = None
            self._halt()
            return self._flow()
        if self.starts_remain != UNLIMITED:
            self.starts_remain -= 1
            if self.starts_remain == 0 or self.restarts_remain == 0:
                self.start_event = None
        self._start_exec()
        return self._flow()

    def _on_tick(self) -> None:
        if self.halted:
            return
        if self.restart_limit == UNLIMITED or self.restarts_remain > 0:
            if self.restarts_remain > 0:
                self.restarts_remain -= 1
            self._start_exec()
        else:
            self.start_event = None
            self._halt()

    def _on_start_timeout(self) -> None:
        if self.runs or self.halted:
            return
        self.ctx.bus.publish(Event(ev.TIMER_EXPIRED, self.name))
        self.receive(Event(ev.QUIT, self.name))

    def _on_exec_exit(self, success: bool) -> None:
        if self.state is State.RESTARTING:  # commanded: no counters, no backoff (circus #809)
            self._to(State.ACTIVE)
            self._start_exec()
            return
        if self.held:
            self._to(State.HELD)
            return
        if self.interval:
            if self.queued_runs and not self.halted:
                self.queued_runs -= 1
                self._start_exec()
            return
        if self.restart_limit == UNLIMITED or self.restarts_remain > 0:
            if self.restarts_remain > 0:
                self.restarts_remain -= 1
            delay = self._backoff_delay()
            if delay > 0:
                self._log_backoff(success, delay)
                self._once("backoff", delay, self._start_exec)
            else:
                self._start_exec()
            return
        if not success and (self.restart_limit > 0 or self.starts_remain == 0):  # #21: the default too
            if not self.cfg.interactive:  # tini mode's command: its exit code is pypilot's and says it
                logs.warn(f"{self.name} failed and has no restarts left ({self.restart_limit} used)")
            self.ctx.bus.publish(Event(ev.GAVE_UP, self.name))
        if self.starts_remain != 0:
            if self.queued_runs:
                self.queued_runs -= 1
                self._start_exec()
            return
        self._end()

    def _end(self) -> None:
        """No run follows: the job halts, and a main job ends the container."""
        self.start_event = None
        self.status = UNKNOWN
        self._halt()
        if self.cfg.main:
            self.ctx.main_job_ended(self)

    def _on_quit(self, event: Event) -> Flow:
        self.restarts_remain = 0
        self._cancel("backoff")
        hook = self.start_event is not None and self.start_event.code in (ev.STOPPING, ev.STOPPED)
        if hook and self.command is not None:
            # preStop/postStop-style jobs outlive shutdown and run once more on their trigger
            if self.starts_remain == UNLIMITED:
                self.starts_remain = 1
            return Flow.CONTINUE
        if event == self.start_event and self.command is not None:
            # CP never ran a `once: shutdown` job (the quit row matched first); run it now, then stop
            self.starts_remain = 1
            return self._on_start()
        self.starts_remain = 0
        self.start_event = None
        self._halt()
        return self._flow()

    # --- effects ---------------------------------------------------------------------------------

    def _start_exec(self) -> None:
        if self.held:  # operator-stopped: no trigger starts it, only an operator start
            return
        self._cancel("wait-timeout")
        if self.status != MAINTENANCE:
            self.status = UNKNOWN
        if self.started_at is None:  # an exec-less job is "started" too: its heartbeats begin now
            self.started_at = self.ctx.loop.now()
        cmd = self.command
        if cmd is None:
            return
        if cmd.running:  # one instance at a time: the trigger waits for the current run
            self.queued_runs += 1
            return
        self.runs += 1
        self.env_generation = self.ctx.env_generation
        cmd.start(self._on_process_exit)

    def _on_process_exit(self, status: int | None, start_error: str | None) -> None:
        self._cancel("kill")  # the grace's SIGKILL was for this process, not the next one
        if start_error is not None:
            self.last_exit = 127
            logs.error(f"unable to start {self.name}: {start_error}")
            self._count_run(0.0, failed=True)
            self._exited(False, Event(ev.EXIT_FAILED, self.name), Event(ev.ERROR, start_error))
            return
        assert status is not None and self.command is not None
        self.last_exit = reaper.exit_code(status)
        ran_for = self.ctx.loop.now() - self.command.started_at
        said_stopping = self.readiness is not None and self.readiness.stopping  # STOPPING=1: not a crash
        self._count_run(ran_for, failed=status != 0 and not said_stopping)
        if status == 0:
            logs.debug(f"{self.name} exited without error")
            self._exited(True, Event(ev.EXIT_SUCCESS, self.name))
        else:
            err = reaper.describe(status)
            if self.cfg.interactive:  # tini mode: the exit code is pypilot's own, tini prints nothing
                logs.info(f"{self.name} exited with error: {err}")
            else:
                logs.error(f"{self.name} exited with error: {err}")
            self._exited(False, Event(ev.EXIT_FAILED, self.name), Event(ev.ERROR, f"{self.name}: {err}"))

    def _exited(self, success: bool, *events: Event) -> None:
        """Publish the exit; the job's own handler runs once the exit has reached everyone, not as
        a subscriber matching its own event, and what it publishes queues behind the exit."""
        if self.halted:
            self.ctx.bus.publish(*events)
            return

        def handle() -> None:
            if not self.halted:  # a subscriber may have stopped it (a reload rolled back)
                try:
                    self._on_exec_exit(success)
                except Exception as e:
                    self._exit_handling_failed(e)

        self.ctx.bus.publish_then(events, handle)

    def _exit_handling_failed(self, e: Exception) -> None:
        """A pypilot bug while deciding what follows an exit: the job must not look running with no
        process (a main job would keep the container up forever), so it ends as if it had no restarts."""
        logs.exception(f"{self.name}: handling its exit failed; the job ends here", e)
        if not self.halted:
            self._end()

    def _count_run(self, ran_for: float, failed: bool) -> None:
        """A run at least ``resetAfter`` long starts the counts again; a shorter one, or a failure,
        counts (Kubernetes and systemd throttle any quick exit, not only failures)."""
        backoff = self.cfg.backoff
        long_run = backoff is not None and ran_for >= backoff.reset_after
        if long_run:
            self.short_runs_in_a_row = 0
        if failed:
            self.failures_in_a_row = 1 if long_run else self.failures_in_a_row + 1
            self.short_runs_in_a_row += 1
        else:
            self.failures_in_a_row = 0
            if not long_run:
                self.short_runs_in_a_row += 1

    def _backoff_delay(self) -> float:
        """Kubernetes' shape: the first restart is immediate, then initial, doubling, capped."""
        b = self.cfg.backoff
        if b is None or self.restart_limit != UNLIMITED or self.short_runs_in_a_row < 2:
            return 0.0
        return float(min(b.max, b.initial * b.factor ** (self.short_runs_in_a_row - 2)))

    def _log_backoff(self, success: bool, delay: float) -> None:
        if success and not self.told_quick_exit:
            self.told_quick_exit = True
            logs.warn(
                f"{self.name} exits right after it starts ({self.short_runs_in_a_row} runs in a row shorter "
                f"than backoff.resetAfter, the last with exit code 0): a daemon that forks into the "
                f"background ends its foreground process at once; run it in the foreground "
                f"(its no-daemon option) so that pypilot supervises the process itself",
                job=self.name,
            )
        why = "failed runs" if not success else "runs that ended early"
        logs.info(
            f"restarting {self.name} in {delay:g}s after {self.short_runs_in_a_row} {why} in a row",
            job=self.name,
        )

    def _halt(self) -> None:
        """Cleanup (CP §4.6): stopping → wait for a preStop dependent → stop signal → stopped."""
        if self.halted:
            return
        self._to(State.HALTING)
        self._cancel_all()
        self.ctx.bus.publish(Event(ev.STOPPING, self.name))
        if self.completed:
            return  # our preStop dependent already ran to its end while `stopping` was delivered
        if self.stopping_wait is not None:
            if self.cfg.stop_timeout > 0:
                self._once("stopping-timeout", self.cfg.stop_timeout, self._finish_cleanup)
            return
        self._finish_cleanup()

    def force_complete(self) -> None:
        """The shutdown deadline passed: complete now, whatever the job was waiting for."""
        self._finish_cleanup()

    def halt_now(self) -> None:
        """The shutdown deadline passed: no trigger may start anything now."""
        if not self.halted:
            self._to(State.HALTING)

    def _finish_cleanup(self) -> None:
        if self.completed:
            return
        self._cancel_all()
        self._to(State.COMPLETED)
        self._stop_process()
        if self.readiness is not None:
            self.readiness.close()
        if self.cfg.has_service and self.ctx.discovery is not None:
            self.ctx.discovery.deregister(self)
        self.ctx.bus.unsubscribe(self)
        self.ctx.bus.publish(Event(ev.STOPPED, self.name))
        self.ctx.job_completed(self)

    def _stop_process(self) -> bool:
        """The one stop path for every stop (cleanup, operator stop and restart): the stop signal to
        the group, the grace (job stopTimeout, else the global one), then SIGKILL to the group."""
        cmd = self.command
        if cmd is None or not cmd.running:
            return False
        sent = cmd.signal(self.cfg.stop_signal)
        self._once("kill", self.ctx.stop_grace(self), cmd.kill)
        return sent

    # --- an in-place upgrade (``pypilot.handover``): all of this job's state, and back ----------------

    def handover(self, fds: list[int]) -> dict[str, object]:
        """Everything this job is, as plain values: timers as absolute monotonic deadlines (the clock
        survives the exec), its process as a PID; the fds that must survive the exec go to ``fds``."""
        return {
            "name": self.name, "state": self.state.value, "status": self.status, "runs": self.runs,
            "last_exit": self.last_exit, "failures_in_a_row": self.failures_in_a_row,
            "short_runs_in_a_row": self.short_runs_in_a_row, "told_quick_exit": self.told_quick_exit,
            "start_event": list(self.start_event) if self.start_event is not None else None,
            "starts_remain": self.starts_remain, "pending_triggers": sorted(map(list, self.pending_triggers)),
            "restarts_remain": self.restarts_remain, "queued_runs": self.queued_runs,
            "check_in_flight": self.check_in_flight, "check_detail": self.check_detail,
            "passes_in_a_row": self.passes_in_a_row, "fails_in_a_row": self.fails_in_a_row,
            "started_at": self.started_at, "env_generation": self.env_generation,
            "timers": {name: t.deadline for name, t in self._timers.items() if not t.cancelled},
            "has_exec": self.command is not None,
            "command": self.command.handover(fds) if self.command is not None else None,
            "readiness": self.readiness.handover(fds) if self.readiness is not None else None,
        }

    def check_handover(self, s: dict[str, Any]) -> None:
        """Raise ValueError (naming what) unless ``s`` is a state this job can take over."""
        State(s["state"])
        unknown = set(s["timers"]) - set(self._timer_callbacks())
        if unknown:
            raise ValueError(f"job {self.name}: unknown timer(s) {sorted(unknown)}")
        if s["has_exec"] != (self.command is not None):
            raise ValueError(f"job {self.name}: its exec was added or removed since the config was loaded")

    def resume(self, s: dict[str, Any]) -> None:
        """Take over ``s`` (from ``handover``) instead of ``run``: nothing is started or signalled."""
        self.check_handover(s)
        self.state, self.status, self.runs = State(s["state"]), s["status"], s["runs"]
        self.last_exit, self.failures_in_a_row = s["last_exit"], s["failures_in_a_row"]
        self.short_runs_in_a_row, self.told_quick_exit = s["short_runs_in_a_row"], s["told_quick_exit"]
        self.start_event = Event(*s["start_event"]) if s["start_event"] is not None else None
        self.starts_remain, self.restarts_remain = s["starts_remain"], s["restarts_remain"]
        self.pending_triggers = {Event(c, src) for c, src in s["pending_triggers"]}
        self.queued_runs, self.check_in_flight = s["queued_runs"], s["check_in_flight"]
        self.check_detail = s["check_detail"]
        self.passes_in_a_row, self.fails_in_a_row = s["passes_in_a_row"], s["fails_in_a_row"]
        self.started_at, self.env_generation = s["started_at"], s["env_generation"]
        if self.readiness is not None and s["readiness"] is not None:
            self.readiness.resume(s["readiness"])
        if self.command is not None and s["command"] is not None:
            self.command.resume(s["command"], self._on_process_exit)
        callbacks = self._timer_callbacks()
        for name, deadline in s["timers"].items():
            period, fn = callbacks[name]
            if period:
                self._every(name, period, fn, first=deadline)
            else:
                self._once(name, 0.0, fn, at=deadline)

    def next_tick(self) -> float | None:
        """When a short interval (a second or less) next runs this job; None for any other job."""
        timer = self._timers.get("run-every")
        return timer.deadline if timer is not None and self.interval and self.interval <= 1.0 else None

    def _timer_callbacks(self) -> dict[str, tuple[float, Callable[[], None]]]:
        """Each timer a job arms, by name: (its period, 0 for a one-shot; what it calls)."""
        health = self.cfg.health.interval if self.cfg.health is not None else 0.0
        cmd = self.command
        return {
            "run-every": (self.interval or 0.0, self._on_tick),
            "heartbeat": (health, self._on_heartbeat),
            "wait-timeout": (0.0, self._on_start_timeout),
            "backoff": (0.0, self._start_exec),
            "kill": (0.0, cmd.kill if cmd is not None else _nothing),
            "stopping-timeout": (0.0, self._finish_cleanup),
        }

    # --- readiness (beyond CP: `ready`, `watchdog`) -------------------------------------------------

    def _readiness(self) -> Readiness | None:
        if self.cfg.ready is None or self.command is None:
            return None
        from pypilot.readiness import Readiness

        cmd = self.command
        r = Readiness(self.cfg.ready, self.name, self.ctx.loop, self._on_ready, self._on_watchdog,
                      lambda: cmd.pid)
        cmd.readiness = r
        return r

    def _ready_yet(self) -> bool:
        return self.readiness is None or self.readiness.ready

    def _on_ready(self) -> None:
        """READY=1, or the notification fd's newline: healthy, as a passing check would make it."""
        if self.halted or self.status == MAINTENANCE:
            return
        logs.debug(f"{self.name} is ready")
        self.passes_in_a_row, self.fails_in_a_row = 1, 0
        self.status = HEALTHY
        self.ctx.bus.publish(Event(ev.HEALTHY, self.name))
        if self.cfg.has_service and self.ctx.discovery is not None:
            self.ctx.discovery.heartbeat(self)

    def _on_watchdog(self) -> None:
        """No WATCHDOG=1 within ``watchdog``: the job is hung; unhealthy, then restarted on the stop path."""
        if self.halted or self.command is None or not self.command.running:
            return
        note = f"watchdog timeout: no WATCHDOG=1 for {self.cfg.ready.watchdog if self.cfg.ready else 0:g}s"
        logs.warn(f"{self.name} {note}, restarting it", job=self.name)
        was, self.status = self.status, UNHEALTHY
        self.ctx.bus.publish(Event(ev.UNHEALTHY, self.name))
        if was != UNHEALTHY and self.cfg.has_service and self.ctx.discovery is not None:
            self.ctx.discovery.unhealthy(self, note)
        if self.state is State.ACTIVE:
            self._to(State.RESTARTING)
        self._stop_process()

    # --- timers ----------------------------------------------------------------------------------

    def _once(self, name: str, delay: float, fn: object, at: float | None = None) -> None:
        self._cancel(name)

        def fire() -> None:
            self._timers.pop(name, None)
            fn()  # type: ignore[operator]

        loop = self.ctx.loop
        self._timers[name] = loop.call_at(at, fire) if at is not None else loop.call_later(delay, fire)

    def _every(self, name: str, period: float, fn: object, first: float | None = None) -> None:
        def tick() -> None:
            self._timers[name] = self.ctx.loop.call_later(period, tick)
            fn()  # type: ignore[operator]

        loop = self.ctx.loop
        self._timers[name] = loop.call_at(first, tick) if first is not None else loop.call_later(period, tick)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _cancel_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
