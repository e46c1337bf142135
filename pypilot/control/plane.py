"""PID 1's side of the control plane: the listening socket, the control worker, and the op handlers.

PID 1 binds and listens on ``control.socket`` itself (one fd: stale file removed, created with the
configured mode, 0600 by default) and polls it. The first connection starts the control worker (a
``Worker`` forked from PID 1), hands it the listening fd over the socketpair (SCM_RIGHTS, the first
byte the worker reads), and stops polling the fd: from then on the worker accepts. A dead worker is
replaced by ``Worker``; connections wait in the listen backlog meanwhile.

The worker forwards every request that needs PID 1 as ``{"op": "req", "id", "kind", ...}`` and gets
``{"op": "rep", "id", "status", "data"}`` back. Every handler runs inside a try: PID 1 answers 500
rather than die. The worker validates first; PID 1 checks again, so a rejected request changes
nothing. While an event stream is open, bus events go to the worker as ``{"op": "event", ...}``.

Only the stdlib is imported here: PID 1 must not pay for falcon or waitress.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from pypilot import logs
from pypilot.config.model import ControlConfig
from pypilot.events import CP_NAMES, Event
from pypilot.workers import Message, Worker

BACKLOG = 1024  # a burst of clients waits here while the worker accepts them
REQUEST_TIMEOUT = 5.0  # how long the worker waits for PID 1's reply before answering 503

Reply = Callable[[int, Any], None]


def parse_signal(value: object) -> int | None:
    """``SIGHUP``, ``hup``, ``HUP`` or a number → a valid signal number; None if it is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        num = value
    elif isinstance(value, str):
        name = value.strip().upper()
        if name.isdigit():
            num = int(name)
        else:
            if not name.startswith("SIG"):
                name = "SIG" + name
            try:
                num = int(signal.Signals[name])
            except KeyError:
                return None
    else:
        return None
    valid = {int(s) for s in signal.valid_signals()}
    return num if num in valid and num != 0 else None


def valid_env(env: object) -> str | None:
    """Why ``env`` cannot be set (None if it can): string keys and values, settable by setenv."""
    if not isinstance(env, dict):
        return "the body must be a JSON object"
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return f"the value of {key!r} must be a string or null"
        if not key or "=" in key or "\0" in key:
            return f"invalid environment variable name {key!r}"
        if "\0" in value:
            return f"the value of {key!r} contains a NUL byte"
        try:
            os.fsencode(key), os.fsencode(value)
        except UnicodeError:
            return f"{key!r} cannot be encoded for the environment"
    return None


class _ControlWorker(Worker):
    """A ``Worker`` that is handed the listening socket each time it (re)starts."""

    on_started: Callable[[], None] = staticmethod(lambda: None)

    def start(self) -> None:
        super().start()
        self.on_started()


class ControlPlane:
    def __init__(self, sup: Any, cfg: ControlConfig) -> None:
        self.sup = sup
        self.cfg = cfg
        self.path = cfg.socket
        self.sock: socket.socket | None = None
        self.worker: _ControlWorker | None = None
        self.requests: dict[tuple[int, str], int] = {}
        self.streaming = False
        self.events_seen = 0
        self._listening = False  # PID 1 polls the listening fd (no worker yet)
        self._listener_added = False

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
            self._listener_added = True
        self.sup.loop.add_reader(self.sock.fileno(), self._on_first_connection)
        self._listening = True
        logs.info(f"control: serving at {self.path}")
        return True

    def _bind(self) -> socket.socket:
        from pypilot.control.socketfile import bind

        return bind(self.path, self.cfg.socket_mode, BACKLOG)

    def stop(self) -> None:
        """Stop the worker, close the socket and remove its file."""
        if self.worker is not None:
            self.worker.stop()
        if self.sock is not None:
            if self._listening:
                self.sup.loop.remove_reader(self.sock.fileno())
                self._listening = False
            self.sock.close()
            self.sock = None
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def _on_first_connection(self) -> None:
        assert self.sock is not None
        self.sup.loop.remove_reader(self.sock.fileno())
        self._listening = False
        if self.worker is None:
            self.worker = _ControlWorker(
                "control",
                self._worker_main,
                self.sup.loop,
                self.sup.reaper,
                self._on_message,
                self._on_worker_death,
            )
            self.worker.on_started = self._send_listener
        self.worker.start()

    def _worker_main(self, chan: socket.socket) -> None:
        from pypilot.control.worker import worker_main

        worker_main(
            chan,
            {"socket": self.path, "reload_timeout": self.cfg.reload_grace + 30.0, "timeout": REQUEST_TIMEOUT,
             "allow_uids": list(self.cfg.allow_uids)},
        )

    def _send_listener(self) -> None:
        """The listening fd goes to the worker as the first byte on the channel."""
        worker, sock = self.worker, self.sock
        if worker is None or worker.channel is None or sock is None:
            return
        try:
            socket.send_fds(worker.channel.sock, [b"L"], [sock.fileno()])
        except OSError as e:
            logs.error(f"control: cannot hand the socket to the worker: {e}")
            worker.channel.close()

    def _on_worker_death(self) -> None:
        self.streaming = False  # the new worker has no stream clients

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
            key = (int(msg.get("code", 0)), str(msg.get("path", "")))
            self.requests[key] = self.requests.get(key, 0) + 1
        elif op == "log":
            logs.write_raw(str(msg.get("data", "")).encode("utf-8", "backslashreplace"))

    def handle(self, msg: Message, reply: Reply) -> None:
        """One request from the worker: the Supervisor API call, then ``reply(status, data)``."""
        kind = msg.get("kind")
        sup = self.sup
        if kind == "ping":
            reply(200, None)
        elif kind == "status":
            reply(200, self.status())
        elif kind == "environ":
            env = msg.get("env")
            why = valid_env(env)
            if why is not None:
                reply(422, {"error": why})
                return
            sup.set_env(env)
            reply(200, None)
        elif kind == "metric":
            metrics = msg.get("metrics")
            if not isinstance(metrics, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metrics.items()
            ):
                reply(422, {"error": "metrics must be an object of strings"})
                return
            sup.put_metrics(metrics)
            reply(200, None)
        elif kind == "maintenance":
            sup.set_maintenance(bool(msg.get("enable")))
            reply(200, None)
        elif kind == "reload":
            self._reload(reply)
        elif kind == "job":
            self._job(msg, reply)
        elif kind == "subscribe":
            self.streaming = bool(msg.get("on"))
            reply(200, {"seq": self.events_seen})
        else:
            reply(400, {"error": f"unknown request kind {kind!r}"})

    def _reload(self, reply: Reply) -> None:
        reload = getattr(self.sup, "reload", None)
        if reload is None:
            reply(200, {"reloaded": False, "error": "reload is not supported by this pypilot"})
            return
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

        reload(done)

    def _job(self, msg: Message, reply: Reply) -> None:
        name, action = msg.get("name"), msg.get("action")
        job = self.sup.job(name) if isinstance(name, str) else None
        if job is None:
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
            why = f"job {name!r} is already running, has completed, or has no exec"
        elif action == "restart":
            ok = job.operator_restart()
            why = f"job {name!r} cannot be restarted (completed, or no exec)"
        else:
            reply(400, {"error": f"unknown job action {action!r}"})
            return
        if not ok:
            reply(409, {"error": why, "job": job.snapshot()})
            return
        reply(200, {"job": job.snapshot()})

    def status(self) -> dict[str, Any]:
        data = dict(self.sup.status())
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
