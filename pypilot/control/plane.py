"""PID 1's side of the control plane: the listening socket, the control worker, and the op handlers.

PID 1 binds and listens on ``control.socket`` itself (one fd: stale file removed, created with the
configured mode, 0600 by default) and accepts on it (``front``): a ping it answers itself; the first
other request starts the control worker (a ``Worker`` forked from PID 1), which is handed the listening
fd and the connections PID 1 was reading, with their bytes, over the socketpair (SCM_RIGHTS, before
any message). From then on the worker accepts. A dead worker is replaced by ``Worker``; connections
wait in the listen backlog meanwhile.

The worker forwards every request that needs PID 1 as ``{"op": "req", "id", "kind", ...}`` and gets
``{"op": "rep", "id", "status", "data"}`` back. Every handler runs inside a try: PID 1 answers 500
rather than die. The worker validates first; PID 1 checks again, so a rejected request changes
nothing. While an event stream is open, bus events go to the worker as ``{"op": "event", ...}``.

Only the stdlib is imported here: PID 1 must not pay for falcon or waitress.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

from pypilot import joblogs, logs
from pypilot.config.model import Config, ControlConfig
from pypilot.control.front import Front, Held, pack_held
from pypilot.control.routes import KINDS
from pypilot.control.validate import metric_problem, parse_signal, valid_env
from pypilot.events import CP_NAMES, Bus, Event
from pypilot.loop import Loop
from pypilot.reaper import Reaper
from pypilot.workers import Message, Worker

BACKLOG = 1024  # a burst of clients waits here while the worker accepts them
REQUEST_TIMEOUT = 5.0  # how long the worker waits for PID 1's reply before answering 503

TYPE_CHECKING = False  # typing costs PID 1 ~8 ms (an upgrade's resume imports this at once)
if TYPE_CHECKING:
    from typing import Any, Protocol

    Reply = Callable[[int, Any], None]
else:
    Protocol = object


class ControlledJob(Protocol):
    """What a control request does to one job (``jobs.Job``)."""

    @property
    def completed(self) -> bool: ...

    def snapshot(self) -> dict[str, object]: ...

    def signal(self, sig: int) -> bool: ...

    def operator_stop(self) -> bool: ...

    def operator_start(self) -> bool: ...

    def operator_restart(self) -> bool: ...


class Supervised(Protocol):
    """What the control plane needs from the supervisor: every control request ends in one of these."""

    loop: Loop
    reaper: Reaper
    bus: Bus
    config: Config

    def status(self) -> dict[str, object]: ...

    def set_env(self, env: dict[str, str]) -> None: ...

    def set_maintenance(self, enable: bool) -> None: ...

    def put_metrics(self, metrics: dict[str, object]) -> None: ...

    def reload(self, done: Callable[[bool, str], None]) -> None: ...

    def upgrade(self, path: str, reply: Reply) -> None: ...

    def job(self, name: str) -> Any: ...  # a ControlledJob; Any: Supervisor returns a Job


class _ControlWorker(Worker):
    """A ``Worker`` that is handed the listening socket each time it (re)starts."""

    on_started: Callable[[], None] = staticmethod(lambda: None)

    def start(self) -> None:
        super().start()
        self.on_started()


class ControlPlane:
    def __init__(self, sup: Supervised, cfg: ControlConfig) -> None:
        self.sup = sup
        self.cfg = cfg
        self.path = cfg.socket
        self.sock: socket.socket | None = None
        self.worker: _ControlWorker | None = None
        self.requests: dict[tuple[int, str], int] = {}
        self.streaming = False
        self.followed: set[str] = set()  # jobs whose new output lines go to the worker (logs -f)
        self.events_seen = 0
        self._listening = False  # PID 1 accepts (no worker yet): ``front``
        self.front: Front | None = None
        self._handed: list[Held] = []  # connections PID 1 was reading, for the worker starting
        self._restarts = 0  # of the workers stopped as idle
        self._listener_added = False
        self._handlers: dict[str, Callable[[Message, Reply], None]] = {
            "ping": lambda msg, reply: reply(200, None),
            "status": lambda msg, reply: reply(200, self.status()),
            "environ": self._environ,
            "metric": self._metric,
            "maintenance": self._maintenance,
            "reload": self._reload,
            "job": self._job,
            "subscribe": self._subscribe,
            "logs": self._logs,
            "upgrade": self._upgrade,
        }
        assert set(self._handlers) == KINDS, "every route's request kind has its handler"

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> bool:
        """Bind and listen; False (logged) if the socket cannot be created: jobs run on without it."""
        try:
            self.sock = self._bind()
        except OSError as e:
            logs.error(f"error listening to socket at {self.path}: {e.strerror or e}")
            return False
        if not self._listener_added:
            self.sup.bus.listen(self._on_event)
            joblogs.set_listener(self._on_job_line)
            self._listener_added = True
        self._serve_front()
        logs.info(f"control: serving at {self.path}")
        return True

    def _serve_front(self) -> None:
        assert self.sock is not None
        allowed = frozenset(self.cfg.allow_uids)
        self.front = Front(self.sup.loop, self.sock, allowed, self._hand_off, self._count)
        self.front.start()
        self._listening = True

    def handover(self, fds: list[int]) -> dict[str, Any] | None:
        """The listening fd (never closed: clients wait in its backlog across the exec), the worker
        (adopted as it runs, open event streams and all) and the counters; None without a socket."""
        if self.sock is None:
            return None
        fds.append(self.sock.fileno())
        # "listening" (PID 1 accepts, ``front``): only until the first request that is not a ping, and an
        # upgrade is one, so no connection PID 1 was reading is ever left to carry over
        return {
            "fd": self.sock.fileno(),
            "listening": self._listening,
            "worker": self.worker.handover(fds) if self.worker is not None else None,
            "requests": [[code, path, n] for (code, path), n in self.requests.items()],
            "streaming": self.streaming,
            "followed": sorted(self.followed),
            "events_seen": self.events_seen,
        }

    def adopt(self, s: dict[str, Any]) -> None:
        """Take over what ``handover`` described instead of binding a new socket."""
        self.sock = socket.socket(fileno=int(s["fd"]))
        self.requests = {(int(c), str(p)): int(n) for c, p, n in s["requests"]}
        self.streaming, self.followed = bool(s["streaming"]), set(s["followed"])
        self.events_seen = int(s["events_seen"])
        self.sup.bus.listen(self._on_event)
        joblogs.set_listener(self._on_job_line)
        self._listener_added = True
        if s["worker"] is not None:
            self.worker = self._make_worker()
            self.worker.adopt(s["worker"])
        if s["listening"]:
            self._serve_front()

    def _bind(self) -> socket.socket:
        from pypilot.control.socketfile import bind

        return bind(self.path, self.cfg.socket_mode, BACKLOG)

    def stop(self) -> None:
        """Stop the worker, close the socket and remove its file."""
        if self.worker is not None:
            self.worker.stop()
        if self.sock is not None:
            if self.front is not None:
                self.front.close()
                self.front = None
            self._listening = False
            for sock, _data in self._handed:
                sock.close()
            self._handed = []
            self.sock.close()
            self.sock = None
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def _hand_off(self, held: list[Held]) -> None:
        """A request that is not a ping: the worker starts, and takes the socket and ``held``."""
        self._listening = False
        self.front = None
        self._handed = held
        if self.worker is None:
            self.worker = self._make_worker()
        try:
            self.worker.start()
        except OSError as e:  # no fork (EAGAIN, ENOMEM): those clients lose, pings go on being answered
            logs.error(f"control: cannot start the control worker: {e.strerror or e}")
            for conn, _data in self._handed:
                conn.close()
            self._handed = []
            self.worker = None
            self._serve_front()

    def _count(self, code: int, path: str) -> None:
        self.requests[(code, path)] = self.requests.get((code, path), 0) + 1

    def _make_worker(self) -> _ControlWorker:
        worker = _ControlWorker(
            "control", self._worker_main, self.sup.loop, self.sup.reaper, self._on_message,
            self._on_worker_death,
        )
        worker.on_started = self._send_listener
        worker.restarts = self._restarts  # one that went idle is not a restart: the count goes on
        return worker

    def _worker_main(self, chan: socket.socket) -> None:
        from pypilot.control.worker import worker_main

        worker_main(
            chan,
            {"socket": self.path, "reload_timeout": self.cfg.reload_grace + 30.0, "timeout": REQUEST_TIMEOUT,
             "allow_uids": list(self.cfg.allow_uids), "worker_idle": self.cfg.worker_idle},
        )

    def _send_listener(self) -> None:
        """The listening fd, and the connections PID 1 was reading, go to the worker before any message:
        ``L``, then their bytes (``front.pack_held``), in one send with their fds."""
        worker, sock, held = self.worker, self.sock, self._handed
        self._handed = []
        try:
            if worker is None or worker.channel is None or sock is None:
                return
            payload = b"L" + pack_held(held)
            try:
                fds = [sock.fileno(), *(conn.fileno() for conn, _data in held)]
                sent = socket.send_fds(worker.channel.sock, [payload], fds)
                if sent != len(payload):
                    raise OSError(f"sent {sent} of {len(payload)} bytes")
            except OSError as e:
                logs.error(f"control: cannot hand the socket to the worker: {e}")
                worker.channel.close()
        finally:
            for conn, _data in held:
                conn.close()  # the worker has its own copies now (or the connection is lost with it)

    def _on_worker_death(self) -> None:
        self.streaming = False  # the new worker has no stream clients
        self.followed.clear()

    def _on_job_line(self, name: str, entry: joblogs.Entry) -> None:
        if name in self.followed and self.worker is not None:
            seq, t, line = entry
            self.worker.send({"op": "jobline", "job": name, "seq": seq, "time": t, "line": line})

    # --- events for the stream --------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        self.events_seen += 1
        if self.streaming and self.worker is not None:
            self.worker.send(
                {
                    "op": "event",
                    "seq": self.events_seen,
                    "code": event.code,
                    "source": event.source,
                    "name": CP_NAMES.get(event.code, event.code),
                    "time": time.time(),
                }
            )

    # --- requests from the worker -----------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        op = msg.get("op")
        if op == "req":
            req_id = msg.get("id")

            def reply(status: int, data: Any) -> None:
                if self.worker is not None:
                    self.worker.send({"op": "rep", "id": req_id, "status": status, "data": data})

            try:
                self.handle(msg, reply)
            except Exception as e:
                logs.exception(f"control: {msg.get('kind')!r} request failed", e)
                reply(500, {"error": f"internal error: {type(e).__name__}: {e}"})
        elif op == "count":
            self._count(int(msg.get("code", 0)), str(msg.get("path", "")))
        elif op == "idle":
            self._retire_worker()

    def _retire_worker(self) -> None:
        """The worker had no connection for ``control.workerIdle`` and has stopped accepting: it is
        stopped (not a death: no restart), and PID 1 accepts again, answering pings itself."""
        worker = self.worker
        if worker is None or self.sock is None or self._listening:
            return
        self._restarts = worker.restarts
        worker.stop()
        self.worker = None
        self._on_worker_death()
        self._serve_front()
        logs.info(f"control: worker idle for {self.cfg.worker_idle:g}s, stopped; PID 1 answers pings")

    def handle(self, msg: Message, reply: Reply) -> None:
        """One request from the worker: the Supervisor API call, then ``reply(status, data)``."""
        kind = msg.get("kind")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            reply(400, {"error": f"unknown request kind {kind!r}"})
            return
        handler(msg, reply)

    def _environ(self, msg: Message, reply: Reply) -> None:
        env = msg.get("env")
        why = valid_env(env)
        if why is not None:
            reply(422, {"error": why})
            return
        assert isinstance(env, dict)
        self.sup.set_env(env)
        reply(200, None)

    def _metric(self, msg: Message, reply: Reply) -> None:
        """CP published every metric and answered 200, even one that telemetry then ignores (not
        declared, not a number). So does a CP client's request here, with the reason in ``warning``;
        a ``strict`` one (the client asked for JSON) is refused with it, and nothing is published."""
        metrics = msg.get("metrics")
        if not isinstance(metrics, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metrics.items()
        ):
            reply(422, {"error": "metrics must be an object of strings"})
            return
        tel = self.sup.config.telemetry
        declared = [(m.namespace, m.subsystem, m.name, m.type) for m in tel.metrics] if tel else []
        why = metric_problem(metrics, declared)
        if why is not None and msg.get("strict"):
            reply(422, {"error": why})
            return
        self.sup.put_metrics(metrics)
        reply(200, {"published": sorted(metrics), **({"warning": why} if why else {})})

    def _maintenance(self, msg: Message, reply: Reply) -> None:
        self.sup.set_maintenance(bool(msg.get("enable")))
        reply(200, None)

    def _subscribe(self, msg: Message, reply: Reply) -> None:
        self.streaming = bool(msg.get("on"))
        reply(200, {"seq": self.events_seen})

    def _logs(self, msg: Message, reply: Reply) -> None:
        """A job's recent output lines; ``follow`` also sends it every new one (``jobline``) until
        ``unfollow`` (the worker's last follower of that job left)."""
        name = msg.get("name")
        if not isinstance(name, str):
            reply(422, {"error": "the job name must be a string"})
            return
        if msg.get("unfollow"):
            self.followed.discard(name)
            reply(200, None)
            return
        job = self.sup.job(name)
        out = joblogs.get(name)
        if job is None and out is None:
            reply(404, {"error": f"no job named {name!r}"})
            return
        n = msg.get("n")
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
            reply(422, {"error": f"n must be a whole number >= 0, not {n!r}"})
            return
        cfg = getattr(job, "cfg", None)
        raw = bool(getattr(cfg, "raw_logging", False))
        lines = out.recent(n) if out is not None else []
        if msg.get("follow"):
            self.followed.add(name)
        reply(200, {"job": name, "raw": raw,
                    "lines": [{"seq": seq, "time": t, "line": line} for seq, t, line in lines]})

    def _reload(self, msg: Message, reply: Reply) -> None:
        answered = False

        def done(ok: bool, message: str) -> None:
            nonlocal answered
            if answered:
                return
            answered = True
            if ok:
                reply(200, {"reloaded": True, "message": message})
            else:
                reply(200, {"reloaded": False, "error": message})

        self.sup.reload(done)

    def _upgrade(self, msg: Message, reply: Reply) -> None:
        path = msg.get("path")
        if not isinstance(path, str) or not path:
            reply(400, {"error": "the upgrade needs a path (a string)"})
            return
        self.sup.upgrade(path, reply)

    def _job(self, msg: Message, reply: Reply) -> None:
        name, action = msg.get("name"), msg.get("action")
        job: ControlledJob | None = self.sup.job(name) if isinstance(name, str) else None
        if job is None or not isinstance(name, str):
            reply(404, {"error": f"no job named {name!r}"})
            return
        if action == "signal":
            sig = parse_signal(msg.get("signal"))
            if sig is None:
                reply(422, {"error": f"invalid signal {msg.get('signal')!r}"})
                return
            ok = job.signal(sig)
            why = f"job {name!r} has no running process to signal"
        elif action == "stop":
            signalled = job.operator_stop()  # held even if nothing was running: it stays stopped
            reply(200, {"job": job.snapshot(), "signalled": signalled})
            return
        elif action == "start":
            ok = job.operator_start()
            why = _not_started(name, job)
        elif action == "restart":
            ok = job.operator_restart()
            why = _not_started(name, job).replace("cannot be started", "cannot be restarted")
        else:
            reply(400, {"error": f"unknown job action {action!r}"})
            return
        if not ok:
            reply(409, {"error": why, "job": job.snapshot()})
            return
        reply(200, {"job": job.snapshot()})

    def request_counts(self) -> dict[tuple[int, str], int]:
        """Answered requests per (status code, route label): telemetry's control counters."""
        return dict(self.requests)

    def status(self) -> dict[str, Any]:
        data = dict(self.sup.status())
        from pypilot.zombies import unreaped

        jobs = data.get("jobs")
        running = [j for j in jobs if j.get("pid")] if isinstance(jobs, list) else []
        groups = {int(j["pid"]): str(j["name"]) for j in running}  # a job's leader leads its group
        data["zombies"] = unreaped(groups)
        worker = self.worker
        data["control"] = {
            "socket": self.path,
            "workerPid": worker.pid if worker is not None and worker.pid else None,
            "workerRestarts": worker.restarts if worker is not None else 0,
            "requests": [
                {"code": code, "path": path, "count": n} for (code, path), n in sorted(self.requests.items())
            ],
        }
        return data


def _not_started(name: str, job: ControlledJob) -> str:
    """Why ``operator_start`` did nothing, in the order it checks."""
    snap = job.snapshot()
    if job.completed:
        return f"job {name!r} cannot be started: it has completed (its when/restarts allow no more runs)"
    if snap.get("state") in ("running", "stopping"):
        return f"job {name!r} is already running (pid {snap.get('pid')})"
    return f"job {name!r} cannot be started: it has no exec"
