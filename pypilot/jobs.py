"""A job's whole lifecycle: when it starts, restarts, times out, stops and completes (CP §3.4–3.6, §4.4–4.6).

Each ``Job`` is a state machine fed by the bus (``receive``) and by its own timers. It decides and
asks for effects: spawn or signal its command, publish events, tell the supervisor it completed.
``receive`` is CP's dispatch table, first match wins; the ``_on_*`` handlers are its cells.

Beyond CP, and only where a CP config cannot tell the difference: restart backoff for crash loops of
``restarts: "unlimited"`` jobs (finite ``restarts`` keep CP's immediate restarts), a per-job stop signal,
the job ``stopTimeout`` bounding the wait for a preStop dependent, a ``shutdown``-triggered job that
really runs at shutdown, and ``when.all`` (start once several triggers have all fired).
"""

from __future__ import annotations

from pypilot import events as ev
from pypilot import joblogs, logs, reaper
from pypilot.config.model import UNLIMITED, JobConfig
from pypilot.config.names import env_name
from pypilot.events import Event
from pypilot.health import request_for
from pypilot.loop import Loop, Timer
from pypilot.process import Command

TYPE_CHECKING = False  # typing's costs start-up time; mypy reads this name as True
if TYPE_CHECKING:
    from typing import Protocol

    from pypilot.health import HealthChecks
else:
    Protocol = object

IDLE, UNKNOWN, HEALTHY, UNHEALTHY, MAINTENANCE = "idle", "unknown", "healthy", "unhealthy", "maintenance"
SIGNAL_SOURCES = ("SIGHUP", "SIGUSR2")


class Registry(Protocol):
    """Service discovery as jobs see it (Consul, in the discovery worker): fire and forget."""

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
    discovery: Registry | None

    def job_completed(self, job: Job) -> None: ...

    def main_job_ended(self, job: Job) -> None: ...

    def stop_grace(self, job: Job) -> float: ...


class Job:
    def __init__(self, cfg: JobConfig, ctx: Context) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.ctx = ctx
        self.status = IDLE
        self.completed = False
        self.halted = False  # cleanup has begun: no trigger starts it any more
        self.runs = 0
        self.last_exit: int | None = None
        self.failures_in_a_row = 0
        # what starts it (CP §3.4)
        when = cfg.when
        self.interval = when.interval
        self.start_event: Event | None = Event(ev.STARTUP, ev.GLOBAL)
        self.starts_remain = 1
        self.pending_triggers: set[Event] = set()
        if when.interval:
            pass
        elif when.all:
            self.start_event = None
            self.pending_triggers = {Event(t.event, t.source) for t in when.all}
        elif when.source in SIGNAL_SOURCES:  # once/each are ignored for signal sources
            self.start_event, self.starts_remain = Event(ev.SIGNAL, when.source), UNLIMITED
        elif when.once:  # CP: with no source the event can never match ("")
            self.start_event = Event(when.once, when.source or "")
        elif when.each:
            self.start_event, self.starts_remain = Event(when.each, when.source or ""), UNLIMITED
        elif when.source is not None:
            self.start_event, self.starts_remain = (
                None,
                0,
            )  # CP: a source with no event (or `when: {}`) is inert
        self.restart_limit = cfg.restarts
        self.restarts_remain = cfg.restarts
        self.stopping_wait: Event | None = None  # Stopped{<preStop dependent>}, set by the supervisor
        self.held = False  # stopped by an operator (control API): not restarted until started again
        self.restart_requested = False
        self.queued_runs = 0  # `each` triggers that came while a run was going: serialised, never dropped
        self.command: Command | None = None
        if cfg.exec:
            timeout = cfg.timeout if cfg.timeout is not None else when.interval
            self.command = Command(
                cfg.name,
                cfg.exec,
                ctx.loop,
                ctx.reaper,
                raw=cfg.raw_logging,
                timeout=timeout,
                env_name=env_name(cfg.name),
                process=cfg.process,
                interactive=cfg.interactive,
                sink=None if cfg.raw_logging else joblogs.for_job(cfg),
            )
        self._timers: dict[str, Timer] = {}
        # health (CP §3.7), with beyond-CP thresholds and initial delay
        self.check_source = f"check.{cfg.name}"
        self.check_request = request_for(self)
        self.check_in_flight = False
        self.check_detail = ""  # the last check's output: the note when it turns unhealthy
        self.passes_in_a_row = self.fails_in_a_row = 0
        self.started_at: float | None = None

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

    def receive(self, event: Event) -> None:
        """CP's dispatch table (§4.4): the first row that matches handles the event."""
        if self.completed:
            return
        if self.halted:
            if event == self.stopping_wait:
                self._finish_cleanup()
            return
        code, source = event
        if source == self.check_source and code in (ev.EXIT_SUCCESS, ev.EXIT_FAILED):
            if self.status != MAINTENANCE:
                self._on_check_result(code == ev.EXIT_SUCCESS)
        elif code in (ev.QUIT, ev.SHUTDOWN) and (source == self.name or event == (ev.SHUTDOWN, ev.GLOBAL)):
            self._on_quit(event)
        elif code == ev.ENTER_MAINTENANCE and source == ev.GLOBAL:
            self.status = MAINTENANCE
            if self.cfg.has_service and self.ctx.discovery is not None:
                self.ctx.discovery.deregister(self)
            if event == self.start_event:
                self._on_start()
        elif code == ev.EXIT_MAINTENANCE and source == ev.GLOBAL:
            self.status = UNKNOWN
            if event == self.start_event:
                self._on_start()
        elif code in (ev.EXIT_SUCCESS, ev.EXIT_FAILED) and source == self.name:
            self._on_exec_exit(code == ev.EXIT_SUCCESS)
        elif code == ev.SIGNAL:
            if event == self.start_event:
                self._start_exec()
        elif event == self.start_event:
            self._on_start()
        elif event in self.pending_triggers:
            self.pending_triggers.discard(event)
            if not self.pending_triggers:
                self._on_start()

    # --- operator commands (control API, CP #571) ------------------------------------------------

    def signal(self, sig: int) -> bool:
        return self.command is not None and self.command.signal(sig)

    def operator_stop(self) -> bool:
        """Stop the running process and keep it stopped; False if nothing was running."""
        self.held = True
        self._cancel("backoff")
        return self.signal(self.cfg.stop_signal)

    def operator_start(self) -> bool:
        """Start it now (again); False if it is already running or has completed."""
        self.held = False
        if self.completed or self.command is None or self.command.running:
            return False
        self._cancel("backoff")
        self._start_exec()
        return True

    def operator_restart(self) -> bool:
        self.held = False
        if self.command is not None and self.command.running:
            self.restart_requested = True
            return self.signal(self.cfg.stop_signal)
        return self.operator_start()

    def snapshot(self) -> dict[str, object]:
        """What the status API shows of this job."""
        cmd = self.command
        backoff = self._timers.get("backoff")
        return {
            "name": self.name,
            "state": "completed"
            if self.completed
            else "stopping"
            if self.halted
            else "running"
            if cmd is not None and cmd.running
            else "held"
            if self.held
            else "backoff"
            if backoff is not None
            else "waiting",
            "status": self.status,
            "pid": cmd.pid if cmd is not None and cmd.running else None,
            "runs": self.runs,
            "restarts": max(self.runs - 1, 0),
            "restartsRemaining": None if self.restarts_remain == UNLIMITED else self.restarts_remain,
            "lastExit": self.last_exit,
            "failuresInARow": self.failures_in_a_row,
            "backoffUntil": round(backoff.deadline - self.ctx.loop.now(), 3) if backoff is not None else None,
        }

    # --- the table's cells -----------------------------------------------------------------------

    def _on_heartbeat(self) -> None:
        """Heartbeat tick: run the check, unless idle, in maintenance, or the last one still runs."""
        health = self.cfg.health
        if self.halted or self.status in (IDLE, MAINTENANCE) or health is None:
            return
        if self.started_at is None or self.ctx.loop.now() - self.started_at < health.initial_delay:
            return
        if self.check_request is None:
            if self.cfg.has_service and self.ctx.discovery is not None:
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

    def _on_check_result(self, ok: bool) -> None:
        """Rows 4/5: a passing check publishes ``healthy`` every time, a failing one ``unhealthy``."""
        health = self.cfg.health
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

    def _on_start(self) -> None:
        if self.starts_remain == 0:
            self.start_event = None
            self._halt()
            return
        if self.starts_remain != UNLIMITED:
            self.starts_remain -= 1
            if self.starts_remain == 0 or self.restarts_remain == 0:
                self.start_event = None
        self._start_exec()

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
        if self.restart_requested:  # commanded: no counters, no backoff (circus #809)
            self.restart_requested = False
            self._start_exec()
            return
        if self.held:
            return
        if self.interval:
            if self.queued_runs and not self.halted:
                self.queued_runs -= 1
                self._start_exec()
            return
        if self.restart_limit == UNLIMITED or self.restarts_remain > 0:
            if self.restarts_remain > 0:
                self.restarts_remain -= 1
            delay = self._backoff_delay(success)
            if delay > 0:
                logs.info(
                    f"restarting {self.name} in {delay:g}s after {self.failures_in_a_row} failed runs "
                    f"in a row",
                    job=self.name,
                )
                self._once("backoff", delay, self._start_exec)
            else:
                self._start_exec()
            return
        if not success and self.restart_limit > 0:
            logs.warn(f"{self.name} failed and has no restarts left ({self.restart_limit} used)")
            self.ctx.bus.publish(Event(ev.GAVE_UP, self.name))
        if self.starts_remain != 0:
            if self.queued_runs:
                self.queued_runs -= 1
                self._start_exec()
            return
        self.start_event = None
        self.status = UNKNOWN
        self._halt()
        if self.cfg.main:
            self.ctx.main_job_ended(self)

    def _on_quit(self, event: Event) -> None:
        self.restarts_remain = 0
        self._cancel("backoff")
        hook = self.start_event is not None and self.start_event.code in (ev.STOPPING, ev.STOPPED)
        if hook and self.command is not None:
            # preStop/postStop-style jobs outlive shutdown and run once more on their trigger
            if self.starts_remain == UNLIMITED:
                self.starts_remain = 1
            return
        if event == self.start_event and self.command is not None:
            # CP never ran a `once: shutdown` job (the quit row matched first); run it now, then stop
            self.starts_remain = 1
            self._on_start()
            return
        self.starts_remain = 0
        self.start_event = None
        self._halt()

    # --- effects ---------------------------------------------------------------------------------

    def _start_exec(self) -> None:
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
        cmd.start(self._on_process_exit)

    def _on_process_exit(self, status: int | None, start_error: str | None) -> None:
        bus = self.ctx.bus
        if start_error is not None:
            self.last_exit = 127
            logs.error(f"unable to start {self.name}: {start_error}")
            self._count_failure(0.0)
            bus.publish(Event(ev.EXIT_FAILED, self.name), Event(ev.ERROR, start_error))
            return
        assert status is not None and self.command is not None
        self.last_exit = reaper.exit_code(status)
        ran_for = self.ctx.loop.now() - self.command.started_at
        if status == 0:
            self.failures_in_a_row = 0
            logs.debug(f"{self.name} exited without error")
            bus.publish(Event(ev.EXIT_SUCCESS, self.name))
        else:
            err = reaper.describe(status)
            self._count_failure(ran_for)
            logs.error(f"{self.name} exited with error: {err}")
            bus.publish(Event(ev.EXIT_FAILED, self.name), Event(ev.ERROR, f"{self.name}: {err}"))

    def _count_failure(self, ran_for: float) -> None:
        backoff = self.cfg.backoff
        if backoff is not None and ran_for >= backoff.reset_after:
            self.failures_in_a_row = 0
        self.failures_in_a_row += 1

    def _backoff_delay(self, success: bool) -> float:
        """Kubernetes' shape: the first restart is immediate, then initial, doubling, capped."""
        b = self.cfg.backoff
        if success or b is None or self.restart_limit != UNLIMITED or self.failures_in_a_row < 2:
            return 0.0
        return float(min(b.max, b.initial * b.factor ** (self.failures_in_a_row - 2)))

    def _halt(self) -> None:
        """Cleanup (CP §4.6): stopping → wait for a preStop dependent → stop signal → stopped."""
        if self.halted:
            return
        self.halted = True
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

    def _finish_cleanup(self) -> None:
        if self.completed:
            return
        self._cancel_all()
        self.completed = True
        cmd = self.command
        if cmd is not None and cmd.running:
            cmd.signal(self.cfg.stop_signal)
            grace = self.ctx.stop_grace(self)
            self.ctx.loop.call_later(grace, cmd.kill)
        if self.cfg.has_service and self.ctx.discovery is not None:
            self.ctx.discovery.deregister(self)
        self.ctx.bus.unsubscribe(self)
        self.ctx.bus.publish(Event(ev.STOPPED, self.name))
        self.ctx.job_completed(self)

    # --- timers ----------------------------------------------------------------------------------

    def _once(self, name: str, delay: float, fn: object) -> None:
        self._cancel(name)

        def fire() -> None:
            self._timers.pop(name, None)
            fn()  # type: ignore[operator]

        self._timers[name] = self.ctx.loop.call_later(delay, fire)

    def _every(self, name: str, period: float, fn: object) -> None:
        def tick() -> None:
            self._timers[name] = self.ctx.loop.call_later(period, tick)
            fn()  # type: ignore[operator]

        self._timers[name] = self.ctx.loop.call_later(period, tick)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _cancel_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
