"""Reload that keeps the container up: validate, apply as a diff, roll back if the new jobs don't come up.

ContainerPilot stopped every job and exited on a bad config (§4.8). Here a reload is one ``Reload``:
1. the file is loaded and validated; an invalid config is rejected and nothing running changes;
2. the ``Plan`` says what stays and what goes: by default (``control.reload: "restart"``) every job
   stops and starts again, as ContainerPilot did; with ``"diff"`` a job whose config and spawn
   environment are unchanged keeps running (same PID, counters kept). Jobs stop through their normal
   stopping/stopped path; once their processes are gone, the others start;
3. each started job with a new or changed config that runs on ``startup`` must spawn and, if it has a
   health check, turn healthy
   within its ``when.timeout`` or ``control.reloadGrace``; if one does not, the new jobs are stopped
   and the old ones started again, and the reason goes to the caller, the log and the bus.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from pypilot import events as ev
from pypilot import logs
from pypilot.config.model import Config, JobConfig
from pypilot.events import Event
from pypilot.jobs import Job
from pypilot.loop import Timer

if TYPE_CHECKING:
    from pypilot.supervisor import Supervisor

Done = Callable[[bool, str], None]
STARTUP = Event(ev.STARTUP, ev.GLOBAL)


class Plan(NamedTuple):
    """What a reload does, by job name: computed from the two configs alone."""

    keep: tuple[str, ...]  # running jobs left alone (same PID, counters kept)
    stop: tuple[str, ...]  # removed, changed or restarted: stopped through their stopping/stopped path
    start: tuple[JobConfig, ...]  # then started, in the new config's order
    watch: frozenset[str]  # started jobs whose config is new or changed: failing to come up rolls back


def plan(running: Sequence[tuple[JobConfig, bool]], new: Sequence[JobConfig], mode: str) -> Plan:
    """``running``: each current job's config and whether its spawn environment changed since it
    started (a ``-putenv``). ``mode`` "restart" (CP's default) restarts every job; "diff" keeps a job
    whose config and environment are both unchanged. Only a new or changed config is watched: a job
    restarted with the config it had would come back the same after a rollback."""
    wanted = {cfg.name: cfg for cfg in new}
    keep = tuple(
        cfg.name
        for cfg, env_changed in running
        if mode == "diff" and not env_changed and wanted.get(cfg.name) == cfg
    )
    old = {cfg.name: cfg for cfg, _ in running}
    stop = tuple(cfg.name for cfg, _ in running if cfg.name not in keep)
    start = tuple(cfg for cfg in new if cfg.name not in keep)
    watch = frozenset(cfg.name for cfg in start if old.get(cfg.name) != cfg)
    return Plan(keep, stop, start, watch)


class Reload:
    def __init__(self, sup: Supervisor, new: Config, done: Done) -> None:
        self.sup, self.new, self.done = sup, new, done
        running = [(j.cfg, j.env_generation not in (None, sup.env_generation)) for j in sup.jobs]
        self.plan = plan(running, new.jobs, new.control.reload)
        self.kept = [j for j in sup.jobs if j.name in self.plan.keep]
        self.stopped = [j for j in sup.jobs if j not in self.kept]
        self.to_start = list(self.plan.start)
        self.started: list[Job] = []
        self.waiting: dict[str, bool] = {}  # job name -> has come up
        self.failure: str | None = None
        self.rolling_back = False
        self.finished = False
        self.stopped_back: list[Job] = []
        self.order = [cfg.name for cfg in new.jobs]
        self._grace: Timer | None = None

    # --- phase 1: stop what goes ---------------------------------------------------------------

    def begin(self) -> None:
        logs.info(
            f"reloading: keeping {len(self.kept)} job(s), stopping {len(self.stopped)}, "
            f"starting {len(self.to_start)}"
        )
        for job in self.stopped:
            if not job.completed:
                job.receive(Event(ev.QUIT, job.name))
        self.step()

    def step(self) -> None:
        """Called after every drain: start the new jobs once the stopped ones' processes are gone
        (an old and a new job of one name must not both publish that name's exits)."""
        if self.finished or self.started:
            return
        if any(j.command is not None and j.command.running for j in self.stopped):
            return
        for job in self.stopped:
            job.force_complete()  # hooks still waiting on a trigger that went with the old config
        if self.rolling_back:
            self._start([j.cfg for j in self.stopped_back], watch=False)
            self._finish(False, self.failure or "rolled back")
            return
        self._start(self.to_start, watch=True)
        if not self.waiting and not self.finished:
            self._commit()

    # --- phase 2: start what comes, and watch it ------------------------------------------------

    def _start(self, cfgs: list[JobConfig], watch: bool) -> None:
        sup = self.sup
        survivors = [j for j in sup.jobs if j in self.kept]
        fresh = [Job(cfg, sup) for cfg in cfgs]
        order = {name: i for i, name in enumerate(self.order)}
        sup.jobs = sorted(survivors + fresh, key=lambda j: order.get(j.name, len(order)))
        sup.wire_stopping_dependents()
        for job in fresh:
            sup.bus.subscribe(job)
        for job in fresh:
            job.run()
        self.started = fresh
        if watch:
            for job in fresh:
                if job.name in self.plan.watch and job.command is not None and job.start_event == STARTUP:
                    self.waiting[job.name] = False
            if self.waiting:
                grace = min(
                    (j.cfg.when.timeout or self.new.control.reload_grace)
                    for j in fresh
                    if j.name in self.waiting
                )
                self._grace = sup.loop.call_later(grace, self._on_grace_expired)
        for job in fresh:
            job.receive(STARTUP)
        if watch:
            self.after_spawn_check()

    def on_event(self, event: Event) -> None:
        """Bus listener: a watched job turned healthy, or could not even start."""
        if self.finished or self.rolling_back or event.source not in self.waiting:
            return
        job = next(j for j in self.started if j.name == event.source)
        if event.code == ev.HEALTHY:
            self.waiting[job.name] = True
            if all(self.waiting.values()):
                self._commit()
        elif event.code == ev.EXIT_FAILED and job.last_exit == 127 and not self.waiting[job.name]:
            self._rollback(f"job {job.name} could not start its exec")

    def after_spawn_check(self) -> None:
        """A watched job without a health check has come up once its process is running."""
        for job in self.started:
            if (
                job.name in self.waiting
                and job.cfg.health is None
                and job.command is not None
                and job.command.running
            ):
                self.waiting[job.name] = True
        if self.waiting and all(self.waiting.values()) and not self.finished and not self.rolling_back:
            self._commit()

    def _on_grace_expired(self) -> None:
        if self.finished or self.rolling_back:
            return
        self.after_spawn_check()
        if self.finished:
            return
        late = sorted(name for name, up in self.waiting.items() if not up)
        self._rollback(f"job(s) {', '.join(late)} did not come up within the reload grace period")

    # --- the two ends -------------------------------------------------------------------------

    def _rollback(self, reason: str) -> None:
        self.rolling_back = True
        self.failure = reason
        logs.error(f"reload failed, rolling back to the previous config: {reason}")
        self.stopped_back = self.stopped
        self.order = [cfg.name for cfg in self.sup.config.jobs]
        self.stopped = self.started
        self.started = []
        for job in self.stopped:
            if not job.completed:
                job.receive(Event(ev.QUIT, job.name))
        self.sup.bus.publish(Event(ev.ERROR, f"reload rolled back: {reason}"))
        self.step()

    def _commit(self) -> None:
        old_control = self.sup.config.control
        self.sup.config = self.new
        if self.new.control != old_control:  # a new socket, once this reload's answer has gone out on the old
            self.sup.loop.call_later(1.0, self.sup.restart_control)
        if self.sup.discovery is not None:
            self.sup.discovery.reconfigure(self.new)
        for job in self.kept:  # beyond CP: a kept job can re-read what the new config changed around it
            if job.cfg.reload_signal and job.signal(job.cfg.reload_signal):
                logs.info(f"sent reload signal {job.cfg.reload_signal} to {job.name}", job=job.name)
        try:
            logs.configure(self.new.logging.level, self.new.logging.format, self.new.logging.output)
        except ValueError as e:
            logs.error(str(e))
        logs.info("control: reloaded app via control plane")
        self._finish(True, "reloaded")

    def abort(self, why: str) -> None:
        """Shutdown overrides a reload in flight: every job is stopping anyway."""
        if not self.finished:
            self.finished = True
            self.done(False, why)

    def _finish(self, ok: bool, message: str) -> None:
        self.finished = True
        if self._grace is not None:  # or the timer keeps this reload, its old jobs and config, for the grace
            self._grace.cancel()
            self._grace = None
        self.sup.reload_finished(self)
        self.done(ok, message)
