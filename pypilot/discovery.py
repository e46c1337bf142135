"""Consul service discovery and watches, with every Consul call off PID 1 (CP §5, §6, §7.4).

PID 1's side, ``Discovery``, is the jobs' ``Registry``: ``register``/``heartbeat``/``deregister`` update
a small table and post a message to the I/O worker (``workers.IOWorker``, shared with the health checks),
never waiting; a new worker process (after a death) is told the whole table again. It also counts bus
events for telemetry, turns the worker's watch results into ``changed`` then ``healthy``/``unhealthy``
events on the bus, heartbeats the ``containerpilot`` self-service every 5 s, and answers the worker's
snapshot requests (job statuses, event counts) for ``/status`` and ``/metrics``. It imports nothing
heavy.

The worker's side is ``pypilot.consul`` (imported only in the worker, at its first Consul message).

At shutdown ``stop()`` asks the worker to deregister every service it registered, within a bound that
ends before the supervisor's final SIGKILL; a SIGTERM (``kill(-1)`` of the sweep) starts the same flush.
"""

from __future__ import annotations

import os

from pypilot import events as ev
from pypilot.events import Event

TYPE_CHECKING = False  # not typing's: PID 1 imports this before its first spawn, typing costs ~2 ms
if TYPE_CHECKING:
    from typing import Any, Protocol

    from pypilot.config.model import Config
    from pypilot.jobs import Job
    from pypilot.loop import Loop, Timer
    from pypilot.reaper import Reaper
    from pypilot.workers import IOWorker

    class Counted(Protocol):
        def request_counts(self) -> dict[tuple[int, str], int]: ...

    class Owner(Protocol):
        """What discovery needs of the supervisor that owns it."""

        loop: Loop
        reaper: Reaper
        io: IOWorker | None
        bus: ev.Bus
        jobs: list[Job]

        @property
        def control(self) -> Counted | None: ...

        def job(self, name: str) -> Job | None: ...

        def deadline_remaining(self) -> float | None: ...

    Message = dict[str, Any]

SELF_SERVICE = "containerpilot"
CP_VERSION_STATUS = {"idle": "unknown"}  # our job statuses → CP's /status strings
STOP_BOUND_MAX = 5.0  # seconds the worker may spend deregistering at shutdown


def registration(job: Job, service_id: str) -> dict[str, Any]:
    """CP's register body (§6.2) for ``job``, with ``Check.Status`` to be set per call."""
    cfg = job.cfg
    body: dict[str, Any] = {"ID": service_id, "Name": job.name}
    if cfg.tags:
        body["Tags"] = list(cfg.tags)
    if cfg.port:
        body["Port"] = cfg.port
    if cfg.ip:
        body["Address"] = cfg.ip
    if cfg.enable_tag_override:
        body["EnableTagOverride"] = True
    ttl = cfg.health.ttl if cfg.health is not None else 0
    check: dict[str, Any] = {
        "TTL": f"{ttl}s",
        "Status": "passing",
        "Notes": f"TTL for {job.name} set by containerpilot",
    }
    if cfg.deregister_critical_service_after:
        check["DeregisterCriticalServiceAfter"] = cfg.deregister_critical_service_after
    body["Check"] = check
    body["Checks"] = None
    return body


class _Service:
    """PID 1's record of one service: what the worker must know again if it is replaced."""

    __slots__ = ("body", "critical", "initial", "leaving")

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.initial: str | None = None  # a register with initial_status not yet superseded by a heartbeat
        self.critical: str | None = None  # marked critical with this note, not yet passing again
        self.leaving = False  # deregister sent, not yet confirmed


class Discovery:
    """PID 1's handle on the Consul side of the I/O worker; implements ``jobs.Registry``."""

    OPS = ("watch", "deregistered", "snap")  # the messages of the worker that are ours

    def __init__(self, sup: Owner, config: Config) -> None:
        self.sup = sup
        assert sup.io is not None
        self.io = sup.io
        self.io.attach("discovery", self.OPS, self._on_message, on_start=self._on_worker_started)
        self.config = config
        self.hostname = os.uname().nodename  # = gethostname(), without importing socket in PID 1
        self.services: dict[str, _Service] = {}
        self.event_counts: dict[tuple[str, str], int] = {}
        self.watches: dict[tuple[str, str, str], dict[str, Any]] = {
            _watch_key(w): _watch_entry(w) for w in config.watches
        }
        self.started = False  # nothing is sent to the worker before start(), after the first spawns
        self.stopping = False
        self._self_timer: Timer | None = None
        sup.bus.listen(self._on_event)

    # --- jobs.Registry --------------------------------------------------------------------------

    def service_id(self, job: Job) -> str:
        return f"{job.name}-{self.hostname}"

    def register(self, job: Job, status: str) -> None:
        """Register now with ``status`` (``initial_status``, CP §6.3), retried until it succeeds."""
        sid = self._want(job)
        self.services[sid].initial = status
        self._send({"op": "register", "id": sid, "status": status})

    def heartbeat(self, job: Job) -> None:
        """A passing check: TTL pass (registering first if the agent does not have it)."""
        if job.name == SELF_SERVICE and self.config.telemetry is not None:
            return  # driven by our own 5 s timer (_self_tick), as CP's telemetry job was
        self._heartbeat(job)

    def unhealthy(self, job: Job, note: str) -> None:
        """The job's check turned failing (called once per transition): mark its TTL check critical
        now, with ``note`` (the check's output) as the check's output, rather than let Consul route
        to it until the TTL lapses. The next passing result (``heartbeat``) makes it passing again.
        A service that was never registered (or is leaving) is left alone: nothing routes to it."""
        sid = self.service_id(job)
        svc = self.services.get(sid)
        if svc is None or svc.leaving or (job.name == SELF_SERVICE and self.config.telemetry is not None):
            return
        sid = self._want(job)
        svc = self.services[sid]
        svc.critical = note
        self._send({"op": "critical", "id": sid, "note": note})

    def deregister(self, job: Job) -> None:
        sid = self.service_id(job)
        svc = self.services.get(sid)
        if svc is None:
            svc = self.services[sid] = _Service(registration(job, sid))
            self._send({"op": "service", "id": sid, "body": svc.body})
        svc.leaving, svc.initial, svc.critical = True, None, None
        self._send({"op": "deregister", "id": sid})

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker (after ``startup``: nothing here may delay the first job)."""
        if self.started:
            return
        self.started = True
        if self.io.connected("discovery"):  # the first health check started it already
            self._on_worker_started()
        else:
            self.io.ensure_started("discovery")  # its start calls _on_worker_started
        if self.config.telemetry is not None:
            self._self_tick()

    def stop(self, bound: float | None = None) -> None:
        """Deregister everything, then let the worker exit: bounded, before the final SIGKILL."""
        if self.stopping:
            return
        self.stopping = True
        if self._self_timer is not None:
            self._self_timer.cancel()
        if bound is None:
            left = self.sup.deadline_remaining()
            bound = STOP_BOUND_MAX if left is None else left - 0.5
        bound = min(max(bound, 0.2), STOP_BOUND_MAX)
        # the worker's last message: it deregisters, then exits (no replacement)
        self.io.finish("discovery", {"op": "stop", "bound": bound} if self.started else None)

    def handover(self, fds: list[int]) -> dict[str, Any]:
        """The service table, the event counters, the watches and the self-service timer. The worker is
        the supervisor's ``io``, handed over once for its two users (adopted as it runs: its
        registrations and TTL clocks never stop, so Consul sees no flap)."""
        timer = self._self_timer
        return {
            "started": self.started,
            "services": {
                sid: {"body": v.body, "initial": v.initial, "critical": v.critical, "leaving": v.leaving}
                for sid, v in self.services.items()
            },
            "event_counts": [[c, src, n] for (c, src), n in self.event_counts.items()],
            "watches": [[list(k), v] for k, v in self.watches.items()],
            "self_tick_at": timer.deadline if timer is not None and not timer.cancelled else None,
        }

    def resume(self, s: dict[str, Any]) -> None:
        for sid, v in s["services"].items():
            svc = self.services[sid] = _Service(v["body"])
            svc.initial, svc.critical, svc.leaving = v["initial"], v["critical"], v["leaving"]
        self.event_counts = {(c, src): int(n) for c, src, n in s["event_counts"]}
        for key, entry in s["watches"]:
            if tuple(key) in self.watches:
                self.watches[tuple(key)].update(entry)
        self.started = bool(s["started"])
        old = s.get("worker")
        if old is not None:  # an image with a discovery worker of its own (format 1)
            self.io.adopt_legacy("discovery", old)
            if self.started and not old.get("pid"):  # it had died: the shared worker takes over now
                self.sup.loop.call_soon(lambda: self.io.ensure_started("discovery"))
        if s["self_tick_at"] is not None:
            self._self_timer = self.sup.loop.call_at(float(s["self_tick_at"]), self._self_tick)

    def reconfigure(self, config: Config) -> None:
        """A reload: new consul settings, watches or metrics (services follow the jobs' own calls)."""
        self.config = config
        old = self.watches
        self.watches = {}
        for w in config.watches:
            key = _watch_key(w)
            self.watches[key] = old.get(key) or _watch_entry(w)
            self.watches[key]["interval"] = w.interval
        self._send(self._config_message())

    # --- views ----------------------------------------------------------------------------------

    def watch_status(self) -> list[dict[str, Any]]:
        """For ``Supervisor.status()["watches"]``."""
        return [dict(w) for w in self.watches.values()]

    def snapshot(self) -> dict[str, Any]:
        """What the telemetry server shows: statuses (CP §7.3 ``/status``) and counters."""
        jobs = []
        for job in self.sup.jobs:
            status = CP_VERSION_STATUS.get(job.status, job.status)
            if job.name == SELF_SERVICE and self.config.telemetry is not None:
                status = "healthy"  # CP: always healthy, maintenance included
            jobs.append([job.name, status, job.cfg.has_service, job.cfg.ip or "", job.cfg.port])
        http = self.sup.control.request_counts() if self.sup.control is not None else {}
        return {
            "jobs": jobs,
            "watches": [w.name for w in self.config.watches],
            "events": [[ev.CP_NAMES.get(c, c), s, n] for (c, s), n in self.event_counts.items()],
            "http": [[str(code), str(path), n] for (code, path), n in dict(http).items()],
        }

    # --- internals ------------------------------------------------------------------------------

    def _heartbeat(self, job: Job) -> None:
        sid = self._want(job)
        svc = self.services[sid]
        svc.initial = svc.critical = None
        self._send({"op": "heartbeat", "id": sid})

    def _want(self, job: Job) -> str:
        sid = self.service_id(job)
        body = registration(job, sid)
        svc = self.services.get(sid)
        if svc is None or svc.body != body:
            svc = self.services[sid] = _Service(body)
            self._send({"op": "service", "id": sid, "body": body})
        svc.leaving = False
        return sid

    def _self_tick(self) -> None:
        """The ``containerpilot`` service: a heartbeat at start, then every health.interval (5 s)."""
        job = self.sup.job(SELF_SERVICE)
        interval = 5.0
        if job is not None and job.cfg.has_service:
            if job.cfg.health is not None and job.cfg.health.interval > 0:
                interval = job.cfg.health.interval
            if not job.halted and not job.completed and job.status != "maintenance":
                self._heartbeat(job)
        if not self.stopping:
            self._self_timer = self.sup.loop.call_later(interval, self._self_tick)

    def _send(self, msg: Message) -> None:
        if self.started and not self.stopping:
            self.io.send("discovery", msg)

    def _config_message(self) -> Message:
        from pypilot import __version__

        c = self.config
        return {
            "op": "config",
            "consul": _plain(c.consul),
            "watches": _plain(c.watches),
            "telemetry": _plain(c.telemetry),
            "version": __version__,
        }

    def _on_worker_started(self) -> None:
        """A (new) worker: tell it the config and every service it must know about."""
        if self.stopping or not self.started:
            return

        def send(msg: Message) -> None:
            self.io.send("discovery", msg)

        send(self._config_message())
        for sid, svc in self.services.items():
            send({"op": "service", "id": sid, "body": svc.body})
            if svc.leaving:
                send({"op": "deregister", "id": sid})
            elif svc.initial is not None:
                send({"op": "register", "id": sid, "status": svc.initial})
            if not svc.leaving and svc.critical is not None:
                send({"op": "critical", "id": sid, "note": svc.critical})

    def _on_event(self, event: Event) -> None:
        if event.code == ev.METRIC:
            self._send({"op": "metric", "data": event.source})
            return
        key = (event.code, event.source)
        self.event_counts[key] = self.event_counts.get(key, 0) + 1

    def _on_message(self, msg: Message) -> None:
        op = msg.get("op")
        if op == "watch":
            self._on_watch(msg)
        elif op == "deregistered":
            svc = self.services.get(str(msg["id"]))
            if svc is not None and svc.leaving:
                del self.services[str(msg["id"])]
        elif op == "snap":
            self.io.send("discovery", {"op": "snap", "n": msg["n"], "data": self.snapshot()})

    def _on_watch(self, msg: Message) -> None:
        name = str(msg["name"])
        key = (name, msg.get("tag") or "", msg.get("dc") or "")
        state = self.watches.get(key)
        if state is None:
            return  # a watch a reload removed
        if msg.get("error") is not None:
            state["error"] = msg["error"]
            return
        count = int(msg["count"])
        state["instances"], state["error"] = count, None
        if msg.get("changed"):
            source = f"watch.{name}"
            self.sup.bus.publish(Event(ev.CHANGED, source))
            self.sup.bus.publish(Event(ev.HEALTHY if count > 0 else ev.UNHEALTHY, source))


def _watch_key(w: Any) -> tuple[str, str, str]:
    """Watches keep state per (name, tag, dc); ContainerPilot shared it per name."""
    return (w.name, w.tag or "", w.dc or "")


def _watch_entry(w: Any) -> dict[str, Any]:
    return {
        "name": w.name,
        "tag": w.tag,
        "dc": w.dc,
        "interval": w.interval,
        "instances": None,
        "error": None,
    }


def _plain(value: Any) -> Any:
    """Config records (``_asdict``) or dataclasses as plain JSON values for the worker."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

