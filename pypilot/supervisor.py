"""The PID-1 supervisor: signals and exits in, the job state machines decide, shutdown out.

``Supervisor.run`` is the whole loop: signals arrive on the signalfd, every exit goes through the
reaper, and the jobs react on the bus. Shutdown (SIGTERM/SIGINT/SIGQUIT, or every job completed) runs
in two phases bounded by one deadline, the global ``stopTimeout``: the jobs stop through their normal
stopping/stopped path, then the escapees are swept (``kill(-1)`` as PID 1, the direct children as a
subreaper) and pypilot returns as soon as nothing is left, never sleeping a fixed time (CP #479).
A reload is carried out here, and only here are the jobs and the config replaced: ``reload.Progress``
decides each step from the bus events and the grace timer the supervisor hands it.
"""

from __future__ import annotations

import gc
import os
from time import time

from pypilot import events as ev
from pypilot import joblogs, logs, reaper
from pypilot.config.model import Config, JobConfig
from pypilot.config.names import env_name, ip_var
from pypilot.events import Event
from pypilot.jobs import Job
from pypilot.loop import Loop, Timer
from pypilot.process import Command, setenv

TYPE_CHECKING = False  # typing's costs start-up time; mypy reads this name as True
if TYPE_CHECKING:
    import signal
    import socket
    from collections.abc import Callable, Sequence
    from typing import Any, Protocol

    from pypilot.control.plane import ControlPlane
    from pypilot.health import HealthChecks
    from pypilot.jobs import Registry
    from pypilot.reload import Progress, Step
    from pypilot.upgrade import Upgrader
    from pypilot.workers import IOWorker

    class DiscoveryService(Registry, Protocol):
        """Service discovery as the supervisor drives it (``pypilot.discovery.Discovery``)."""

        def start(self) -> None: ...

        def stop(self, bound: float | None = None) -> None: ...

        def reconfigure(self, config: Config) -> None: ...

        def watch_status(self) -> list[dict[str, Any]]: ...

        def handover(self, fds: list[int]) -> dict[str, Any]: ...

        def resume(self, s: dict[str, Any]) -> None: ...
else:  # the C module's plain ints: signal.py builds IntEnums (enum, functools: ~3 M instructions)
    import _signal as signal

SHUTDOWN_SIGNALS: dict[int, str] = {
    signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT", signal.SIGQUIT: "SIGQUIT"}  # and their names, to log
EVENT_SIGNALS: dict[int, str] = {signal.SIGHUP: "SIGHUP", signal.SIGUSR2: "SIGUSR2"}
KILL_WAIT = 2.0  # after the final SIGKILL sweep: how long for the kernel to finish the kills
STARTUP = Event(ev.STARTUP, ev.GLOBAL)


class Reloading:
    """The supervisor's note of the reload it is carrying out (``Progress`` decides its steps)."""

    def __init__(self, progress: Progress, new: Config, done: Callable[[bool, str], None]) -> None:
        self.progress, self.new, self.done = progress, new, done
        self.leaving: list[Job] = []  # the jobs being stopped: the next step waits for their processes
        self.restore: list[JobConfig] = []  # the configs a rollback starts again
        self.grace: Timer | None = None


class Supervisor:
    def __init__(self, config: Config, sigfd: int) -> None:
        self.config = config
        self.sigfd = sigfd
        self.loop = Loop()
        self.reaper = reaper.Reaper()
        self.bus = ev.Bus()
        self.is_pid1 = os.getpid() == 1
        self.io: IOWorker | None = None
        self.health: HealthChecks | None = None
        self.discovery: DiscoveryService | None = None
        self.control: ControlPlane | None = None
        self.env_generation = 0
        for cfg in config.jobs:
            if cfg.has_service and cfg.ip:
                setenv(ip_var(cfg.name), cfg.ip)
        self.jobs = [Job(cfg, self) for cfg in config.jobs]
        checks = any(job.check_request is not None for job in self.jobs)
        consul = config.consul is not None and (
            any(job.cfg.has_service for job in self.jobs) or config.watches or config.telemetry
        )
        if checks or consul:  # one I/O worker for both (pypilot.ioworker); it starts when first needed
            from pypilot.workers import IOWorker

            name = "+".join(r for r, used in (("health", checks), ("discovery", consul)) if used)
            self.io = IOWorker(self.loop, self.reaper, name, _io_main)
        if checks and self.io is not None:
            from pypilot.health import HealthChecks

            self.health = HealthChecks(self.loop, self.io)  # the worker starts with the first check
        if consul:
            from pypilot.discovery import Discovery

            self.discovery = Discovery(self, config)  # or after `startup`
        self.wire_stopping_dependents()
        self._shutting_down = False
        self.maintenance_on = False
        self._reload: Reloading | None = None
        self._sweeping = False
        self._escapees_termed = False
        self._killing = False  # the final SIGKILL sweep has begun
        self._deadline: Timer | None = None
        self.started = time()  # the first start of PID 1 (an upgrade's resume sets it from the state)
        self._upgrader: Upgrader | None = None

    def wire_stopping_dependents(self) -> None:
        """A job whose trigger is another's ``stopping`` makes that job wait for its ``stopped``."""
        by_name = {job.name: job for job in self.jobs}
        for job in self.jobs:
            job.stopping_wait = None
        for job in self.jobs:
            when = job.cfg.when
            if ev.STOPPING in (when.once, when.each) and when.source in by_name:
                by_name[when.source].stopping_wait = Event(ev.STOPPED, job.name)

    # --- Context for jobs ---------------------------------------------------------------------------

    def stop_grace(self, job: Job) -> float:
        return max(job.cfg.stop_timeout or self.config.stop_timeout, 0.0)

    def command(self, cfg: JobConfig, timeout: float | None) -> Command:
        """The job's command (asked for only when the job has an exec)."""
        return Command(
            cfg.name,
            cfg.exec or (),
            self.loop,
            self.reaper,
            raw=cfg.raw_logging,
            timeout=timeout,
            env_name=env_name(cfg.name),
            process=cfg.process,
            interactive=cfg.interactive,
            sink=None if cfg.raw_logging else joblogs.for_job(cfg),
        )

    def main_job_ended(self, job: Job) -> None:
        """The container's main job ended for good: shut down, and exit with its code."""
        code = self.container_exit_code()
        remapped = f" (pypilot exits {code}: exitCodeMap)" if code != job.last_exit else ""
        logs.info(f"main job {job.name} ended with exit code {job.last_exit}{remapped}; shutting down")
        self.shutdown()

    def container_exit_code(self) -> int:
        """The main job's last exit (128+signal for a signal), remapped; 0 when there is none."""
        for job in self.jobs:
            if job.cfg.main and job.last_exit is not None:
                return dict(job.cfg.exit_code_map).get(job.last_exit, job.last_exit)
        return 0

    def job_completed(self, job: Job) -> None:
        if self._reload is None and all(j.completed for j in self.jobs):
            self.loop.call_soon(self._sweep)

    # --- the loop -----------------------------------------------------------------------------------

    def run(self, resumed: bool = False) -> int:
        """Supervise until the end; ``resumed``: the jobs were taken over from the image before (an
        in-place upgrade), so nothing is started and ``startup`` is not published again."""
        if not self.is_pid1:
            try:
                reaper.set_subreaper()  # orphans of our jobs still come to us, like `tini -s`
            except OSError as e:
                logs.warn(f"not PID 1 and cannot be a subreaper, orphans will not be reaped: {e}")
        self.loop.add_reader(self.sigfd, self._on_signals)
        logs.attach(self.loop)
        self.bus.listen(self._on_event)
        for job in self.jobs:  # every job subscribes before anything runs: no lost `startup`
            if not job.completed:
                self.bus.subscribe(job)
        if not resumed:
            self._start()
        gc.enable()  # pypilot.__main__.run keeps it off until the first spawns
        self.reaper.drain()  # after an upgrade: the exits that came during the exec, at once
        while True:
            try:
                self.loop.run()
                if self.control is not None:
                    self.control.stop()
                return self.container_exit_code()
            except Exception as e:  # the loop's own machinery failed: PID 1 must not die of it
                logs.exception("event loop failed; resuming", e)

    def _start(self) -> None:
        for job in self.jobs:
            job.run()
        self.bus.publish(Event(ev.STARTUP, ev.GLOBAL))
        if self.discovery is not None:
            self.discovery.start()
        self._start_control()  # after the first spawns: they are what start-up time is about

    def _start_control(self) -> None:
        from pypilot.control.plane import ControlPlane

        try:
            self.control = ControlPlane(self, self.config.control)
            self.control.start()
        except Exception as e:  # no control socket is an error to report, not a reason to stop the jobs
            logs.exception("control plane failed to start", e)

    def restart_control(self) -> None:
        if self._shutting_down:
            return
        if self.control is not None:
            self.control.stop()
        self._start_control()

    def _on_signals(self) -> None:
        chld = False
        for signo, sender in reaper.read_signals(self.sigfd):
            if signo == signal.SIGCHLD:
                chld = True
            elif signo in SHUTDOWN_SIGNALS:
                logs.debug(f"received {SHUTDOWN_SIGNALS[signo]} from pid {sender}")
                self.shutdown()
            elif signo in EVENT_SIGNALS:
                self.bus.publish(Event(ev.SIGNAL, EVENT_SIGNALS[signo]))
            elif signo == signal.SIGUSR1:
                logs.reopen()
            else:
                logs.debug(f"ignoring signal {signo} from pid {sender}")
        if chld:
            self.reaper.drain()
            if self._sweeping:
                self._progress()

    def _on_event(self, event: Event) -> None:
        if self._reload is not None:
            self._on_reload_event(self._reload, event)

    # --- the control plane's view: every control request ends in one of these --------------------

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def upgrader(self) -> Upgrader:
        """In-place upgrades (``pypilot.upgrade``), loaded on first use: not before the first spawn."""
        if self._upgrader is None:
            from pypilot.upgrade import Upgrader

            self._upgrader = Upgrader(self)
        return self._upgrader

    @property
    def reloading(self) -> bool:
        return self._reload is not None

    def upgrade(self, path: str, reply: Callable[[int, Any], None]) -> None:
        """POST /v3/upgrade: check ``path``, then become it (``pypilot.upgrade``); ``reply`` is called
        once: 422 refused, or 202 just before the exec."""
        self.upgrader.start(path, reply)

    def deadline_remaining(self) -> float | None:
        """Seconds until the shutdown deadline's final SIGKILL, or None while none is set."""
        deadline = self._deadline
        if deadline is None or deadline.cancelled:
            return None
        return max(deadline.deadline - self.loop.now(), 0.0)

    def status(self) -> dict[str, object]:
        return {
            "pid": os.getpid(),
            "shuttingDown": self._shutting_down,
            "maintenance": self.maintenance_on,
            "jobs": [job.snapshot() for job in self.jobs],
            "watches": self.discovery.watch_status() if self.discovery is not None else [],
            "pypilot": self.upgrader.status(),
        }

    def set_env(self, env: dict[str, str]) -> None:
        """POST /v3/environ: later spawns and reload renders see these (CP: a null sets empty)."""
        for key, value in env.items():
            if os.environ.get(key) != value:
                setenv(key, value)  # not C's setenv, which keeps every value for good
                self.env_generation += 1  # a diff reload restarts the jobs spawned before this

    def set_maintenance(self, enable: bool) -> None:
        self.maintenance_on = enable
        self.bus.publish(Event(ev.ENTER_MAINTENANCE if enable else ev.EXIT_MAINTENANCE, ev.GLOBAL))

    def put_metrics(self, metrics: dict[str, object]) -> None:
        for key, value in metrics.items():
            self.bus.publish(Event(ev.METRIC, f"{key}|{value}"))

    def reload(self, done: Callable[[bool, str], None]) -> None:
        """POST /v3/reload: the outcome goes to ``done(ok, message)``, possibly much later."""
        if self._shutting_down:
            done(False, "pypilot is shutting down")
            return
        if self._reload is not None:
            done(False, "a reload is already in progress")
            return
        from pypilot.config import ConfigError, load

        try:
            new = load(self.config.path)
        except ConfigError as e:
            logs.error(f"reload rejected, the running config is kept: {e}")
            done(False, f"invalid config: {e}")
            return
        from pypilot.reload import Progress, plan

        running = [(j.cfg, j.env_generation not in (None, self.env_generation)) for j in self.jobs]
        r = self._reload = Reloading(Progress(plan(running, new.jobs, new.control.reload)), new, done)
        r.leaving = [j for j in self.jobs if j.name not in r.progress.plan.keep]
        r.restore = [j.cfg for j in r.leaving]
        logs.info(
            f"reloading: keeping {len(self.jobs) - len(r.leaving)} job(s), stopping {len(r.leaving)}, "
            f"starting {len(r.progress.plan.start)}"
        )
        self._quit(r.leaving)

    # --- carrying out a reload: its ``Progress`` decides, these apply --------------------------------

    def _quit(self, jobs: list[Job]) -> None:
        for job in jobs:
            if not job.completed:
                job.receive(Event(ev.QUIT, job.name))
        self._reload_gone()

    def _reload_gone(self) -> None:
        """Once the leaving jobs' processes are gone (an old and a new job of one name must not both
        publish that name's exits), the next jobs start."""
        r = self._reload
        if r is None or any(j.command is not None and j.command.running for j in r.leaving):
            return
        for job in r.leaving:
            job.force_complete()  # hooks still waiting on a trigger that went with the old config
        r.leaving = []
        self._reload_step(r.progress.gone())

    def _on_reload_event(self, r: Reloading, event: Event) -> None:
        code, source = event
        if code in (ev.EXIT_SUCCESS, ev.EXIT_FAILED) and any(j.name == source for j in r.leaving):
            self._reload_gone()
        elif code == ev.HEALTHY:
            self._reload_step(r.progress.came_up(source))
        elif code == ev.EXIT_FAILED and (job := self.job(source)) is not None and job.last_exit == 127:
            self._reload_step(r.progress.could_not_start(source))

    def _reload_step(self, step: Step | None) -> None:
        r = self._reload
        if step is None or r is None:
            return
        from pypilot.reload import COMMIT, RESTORE, ROLLBACK, START

        if step.action == START:
            self._reload_start(r)
        elif step.action == ROLLBACK:
            logs.error(f"reload failed, rolling back to the previous config: {step.reason}")
            r.leaving = [j for j in self.jobs if j.name not in r.progress.plan.keep]
            self.bus.publish(Event(ev.ERROR, f"reload rolled back: {step.reason}"))
            self._quit(r.leaving)
        elif step.action == RESTORE:
            old_order = [cfg.name for cfg in self.config.jobs]
            for job in self._add_jobs(r.restore, old_order, r.progress.plan.keep):
                job.receive(STARTUP)
            self._reload_finished(False, step.reason or "rolled back")
        elif step.action == COMMIT:
            self._reload_commit(r)

    def _reload_start(self, r: Reloading) -> None:
        fresh = self._add_jobs(r.progress.plan.start, [cfg.name for cfg in r.new.jobs], r.progress.plan.keep)
        step = r.progress.started(j.name for j in fresh if j.command is not None and j.start_event == STARTUP)
        if step is None:
            default = r.new.control.reload_grace
            grace = min(j.cfg.when.timeout or default for j in fresh if j.name in r.progress.up)
            r.grace = self.loop.call_later(grace, self._reload_grace_expired)
        for job in fresh:
            job.receive(STARTUP)
        self._reload_step(step or self._reload_spawned(r))

    def _add_jobs(self, cfgs: Sequence[JobConfig], order: list[str], keep: Sequence[str]) -> list[Job]:
        """The kept jobs and new ones made from ``cfgs``, in ``order``: subscribed and armed."""
        fresh = [Job(cfg, self) for cfg in cfgs]
        rank = {name: i for i, name in enumerate(order)}
        kept = [j for j in self.jobs if j.name in keep]
        self.jobs = sorted(kept + fresh, key=lambda j: rank.get(j.name, len(rank)))
        self.wire_stopping_dependents()
        for job in fresh:
            self.bus.subscribe(job)
        for job in fresh:
            job.run()
        return fresh

    def _reload_spawned(self, r: Reloading) -> Step | None:
        """A watched job without a health check has come up once its process is running (one with
        ``ready`` once it says so: its READY publishes ``healthy``)."""
        first: Step | None = None
        for job in self.jobs:
            waits_for_healthy = job.cfg.health is not None or job.cfg.ready is not None
            if job.name in r.progress.up and not waits_for_healthy and job.command is not None:
                step = r.progress.came_up(job.name) if job.command.running else None
                first = first or step
        return first

    def _reload_grace_expired(self) -> None:
        r = self._reload
        if r is not None:
            r.grace = None
            self._reload_step(self._reload_spawned(r) or r.progress.grace_expired())

    def _reload_commit(self, r: Reloading) -> None:
        old_control, self.config = self.config.control, r.new
        if r.new.control != old_control:  # a new socket, once this reload's answer has gone out on the old
            self.loop.call_later(1.0, self.restart_control)
        if self.discovery is not None:
            self.discovery.reconfigure(r.new)
        for job in self.jobs:  # beyond CP: a kept job can re-read what the new config changed around it
            if job.name not in r.progress.plan.keep or not job.cfg.reload_signal:
                continue
            if job.signal(job.cfg.reload_signal):
                logs.info(f"sent reload signal {job.cfg.reload_signal} to {job.name}", job=job.name)
        try:
            logs.configure(r.new.logging.level, r.new.logging.format, r.new.logging.output)
        except ValueError as e:
            logs.error(str(e))
        logs.info("control: reloaded app via control plane")
        self._reload_finished(True, "reloaded")

    def _reload_finished(self, ok: bool, message: str) -> None:
        r, self._reload = self._reload, None
        if r is None:
            return
        if r.grace is not None:  # or the timer keeps this reload, its old jobs and config, for the grace
            r.grace.cancel()
        if not self._shutting_down and self.jobs and all(j.completed for j in self.jobs):
            self.loop.call_soon(self._sweep)
        r.done(ok, message)

    def job(self, name: str) -> Job | None:
        return next((job for job in self.jobs if job.name == name), None)

    # --- shutdown -----------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Graceful stop of every job; the global stopTimeout is a deadline for all of it."""
        if not self._shutting_down:
            self._shutting_down = True
            grace = max(self.config.stop_timeout, 0.0)
            self._deadline = self.loop.call_later(grace, self._kill_everything)
        if self._reload is not None:  # overridden: every job is stopping anyway
            self._reload_finished(False, "pypilot is shutting down")
        self.bus.publish(Event(ev.SHUTDOWN, ev.GLOBAL))
        if not self.jobs or all(j.completed for j in self.jobs):
            self.loop.call_soon(self._sweep)

    def _sweep(self) -> None:
        """Every job has completed: once their processes are gone, TERM what is left (escapees)."""
        if self._sweeping:
            return
        self._sweeping = True
        if self.discovery is not None:
            self.discovery.stop()  # deregistrations are flushed, bounded by the time left before the kill
        if self.health is not None:
            self.health.stop()
        if self.control is not None:  # before the escapee sweep, or its worker would be restarted
            self.control.stop()
        if self._deadline is None:
            self._deadline = self.loop.call_later(max(self.config.stop_timeout, 0.0), self._kill_everything)
        self._progress()

    def _progress(self) -> None:
        """Called after every drain while sweeping: the next step, or the end."""
        self.reaper.drain()
        if not self._escapees_termed:
            if any(j.command is not None and j.command.running for j in self.jobs):
                return  # each job's own stop signal and grace come first (stopSignal may not be TERM)
            self._escapees_termed = True
            self._signal_everyone(signal.SIGTERM)
            self.reaper.drain()
        elif self._killing:  # a subreaper's new orphans: the parent of each had not died at the sweep
            self._signal_everyone(signal.SIGKILL)
        if not self._has_children():
            self.loop.stop()

    def _kill_everything(self) -> None:
        for job in self.jobs:
            if job.command is not None and job.command.running:
                logs.info(f'killing processes for job "{job.name}"')
                job.command.signal(signal.SIGKILL)
        for job in self.jobs:  # no trigger may start anything now
            job.halt_now()
        for job in self.jobs:  # jobs still waiting on a hook that never came
            job.force_complete()
        self._sweeping = self._escapees_termed = self._killing = True
        self._signal_everyone(signal.SIGKILL)
        self.reaper.drain()
        if not self._has_children():
            self.loop.stop()
            return
        # SIGKILL cannot be refused, but a process in uninterruptible sleep takes its time
        self.loop.call_later(KILL_WAIT, self._give_up_waiting)

    def _give_up_waiting(self) -> None:
        logs.warn("processes still left after SIGKILL; exiting anyway")
        self.loop.stop()

    def _signal_everyone(self, sig: int) -> None:
        if self.is_pid1:
            reaper.kill(-1, sig)  # everyone in our PID namespace but us
            return
        for pid in _descendants_of(os.getpid()):  # not only children: a child's setsid child as well
            reaper.kill(pid, sig)

    @staticmethod
    def _has_children() -> bool:
        from pypilot._reaper import lib

        return bool(lib.pp_has_children() > 0)


def _descendants_of(root: int) -> list[int]:
    """Every process below ``root``, by one scan of /proc (as a subreaper each orphaned descendant
    becomes a child, but one whose parent is still dying is not ours yet)."""
    parent: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        parent.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], list(parent.get(root, ()))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parent.get(pid, ()))
    return out


def _io_main(sock: socket.socket) -> None:
    """The I/O worker's body, imported in the worker only: PID 1 never loads its side."""
    from pypilot.ioworker import main

    main(sock)
