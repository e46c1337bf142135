"""Consul service discovery and watches, with every Consul call off PID 1 (CP §5, §6, §7.4).

PID 1's side, ``Discovery``, is the jobs' ``Registry``: ``register``/``heartbeat``/``deregister`` update a
small table and post a message to the discovery worker, never waiting. It also counts bus events for
telemetry, turns the worker's watch results into ``changed`` then ``healthy``/``unhealthy`` events on the
bus, heartbeats the ``containerpilot`` self-service every 5 s, and answers the worker's snapshot requests
(job statuses, event counts) for ``/status`` and ``/metrics``. It imports nothing heavy.

The worker's side, ``worker_main``, owns the py-consul client (imported there only) and runs:

- one thread per service, so the calls for one service stay in order (register → TTL updates →
  deregister) while a slow agent holds up no other service; requests that pile up while a call is in
  flight coalesce (one pending TTL update, never a queue), failures are retried with backoff;
- CP's exact bodies, sent through py-consul's HTTP client: register
  ``{"ID","Name","Tags","Port","Address","EnableTagOverride","Check":{"TTL","Status","Notes",
  "DeregisterCriticalServiceAfter"},"Checks":null}``, TTL update ``{"Status":"passing","Output":"ok"}``
  on ``/v1/agent/check/update/service:<id>``, deregister;
- beyond CP 3.8: a service is registered again after it was deregistered (maintenance) and whenever a TTL
  update finds that the agent lost it (py-consul returns False on that 404; CP 3.8 kept failing);
- one thread per watch, state kept per (name, tag, dc) (CP shared it per name): the first query one
  interval after start, then Consul blocking queries (``index`` + ``wait=<interval>s``) started no more
  often than once per interval, so Consul sees CP's rate while a change is seen when it happens;
- errors logged once per change of state (per service kind of call, per watch), not once per call;
- the telemetry HTTP server (``pypilot.telemetry``) when the config has ``telemetry``: in this same
  process, which already pays for the interpreter and ``requests``; a second worker would cost another
  ~30 MiB for nothing (measured in ``benchmarks/consul_load.py``).

At shutdown ``stop()`` asks the worker to deregister every service it registered, within a bound that
ends before the supervisor's final SIGKILL; a SIGTERM (``kill(-1)`` of the sweep) starts the same flush.
"""

from __future__ import annotations

import os

from pypilot import events as ev
from pypilot import logs
from pypilot.events import Event

TYPE_CHECKING = False  # not typing's: PID 1 imports this before its first spawn, typing costs ~2 ms
if TYPE_CHECKING:
    import socket
    from typing import Any

    from pypilot.config.model import Config
    from pypilot.jobs import Job
    from pypilot.loop import Timer
    from pypilot.workers import Worker

    Message = dict[str, Any]

SELF_SERVICE = "containerpilot"
CP_VERSION_STATUS = {"idle": "unknown"}  # our job statuses → CP's /status strings
STOP_BOUND_MAX = 5.0  # seconds the worker may spend deregistering at shutdown
FINAL_TRIES = 3  # attempts per deregistration at shutdown (0.2 s apart), within that bound


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

    __slots__ = ("body", "initial", "leaving")

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.initial: str | None = None  # a register with initial_status not yet superseded by a heartbeat
        self.leaving = False  # deregister sent, not yet confirmed


def _make_worker(owner: Discovery) -> Worker:
    """The discovery ``Worker``, telling ``owner`` each time a process starts (replacements too)."""
    from pypilot.workers import Worker

    class _DiscoveryWorker(Worker):
        def start(self) -> None:
            super().start()
            owner._on_worker_started()

    return _DiscoveryWorker("discovery", worker_main, owner.sup.loop, owner.sup.reaper, owner._on_message)


class Discovery:
    """PID 1's handle on the discovery worker; implements ``jobs.Registry``."""

    def __init__(self, sup: Any, config: Config) -> None:
        self.sup = sup
        self.config = config
        self.hostname = os.uname().nodename  # = gethostname(), without importing socket in PID 1
        self.services: dict[str, _Service] = {}
        self.event_counts: dict[tuple[str, str], int] = {}
        self.watches: dict[tuple[str, str, str], dict[str, Any]] = {
            (w.name, w.tag or "", w.dc or ""): {
                "name": w.name,
                "tag": w.tag,
                "dc": w.dc,
                "interval": w.interval,
                "instances": None,
                "error": None,
            }
            for w in config.watches
        }
        self.worker: Worker | None = None  # created at start(): nothing of it before the first spawn
        self.started = False
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

    def deregister(self, job: Job) -> None:
        sid = self.service_id(job)
        svc = self.services.get(sid)
        if svc is None:
            svc = self.services[sid] = _Service(registration(job, sid))
            self._send({"op": "service", "id": sid, "body": svc.body})
        svc.leaving, svc.initial = True, None
        self._send({"op": "deregister", "id": sid})

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker (after ``startup``: nothing here may delay the first job)."""
        if self.started:
            return
        self.started = True
        self.worker = _make_worker(self)
        self.worker.start()
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
            bound = STOP_BOUND_MAX
            deadline = getattr(self.sup, "_deadline", None)
            if deadline is not None and not deadline.cancelled:
                bound = deadline.deadline - self.sup.loop.now() - 0.5
        bound = min(max(bound, 0.2), STOP_BOUND_MAX)
        if self.worker is not None:
            self.worker.send({"op": "stop", "bound": bound})
            self.worker.stopped = True  # its exit is expected now: no replacement

    def reconfigure(self, config: Config) -> None:
        """A reload: new consul settings, watches or metrics (services follow the jobs' own calls)."""
        self.config = config
        old = self.watches
        self.watches = {}
        for w in config.watches:
            key = (w.name, w.tag or "", w.dc or "")
            self.watches[key] = old.get(key) or {
                "name": w.name,
                "tag": w.tag,
                "dc": w.dc,
                "interval": w.interval,
                "instances": None,
                "error": None,
            }
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
        http = _control_counts(self.sup)
        return {
            "jobs": jobs,
            "watches": [w.name for w in self.config.watches],
            "events": [[ev.CP_NAMES.get(c, c), s, n] for (c, s), n in self.event_counts.items()],
            "http": [[str(code), str(path), n] for (code, path), n in dict(http).items()],
        }

    # --- internals ------------------------------------------------------------------------------

    def _heartbeat(self, job: Job) -> None:
        sid = self._want(job)
        self.services[sid].initial = None
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
        if self.worker is not None and not self.stopping:
            self.worker.send(msg)

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
        if self.stopping or self.worker is None:
            return
        send = self.worker.send
        send(self._config_message())
        for sid, svc in self.services.items():
            send({"op": "service", "id": sid, "body": svc.body})
            if svc.leaving:
                send({"op": "deregister", "id": sid})
            elif svc.initial is not None:
                send({"op": "register", "id": sid, "status": svc.initial})

    def _on_event(self, event: Event) -> None:
        if event.code == ev.METRIC:
            self._send({"op": "metric", "data": event.source})
            return
        key = (event.code, event.source)
        self.event_counts[key] = self.event_counts.get(key, 0) + 1

    def _on_message(self, msg: Message) -> None:
        op = msg.get("op")
        if op == "log":
            logs.write_raw(str(msg["data"]).encode("utf-8", "backslashreplace"))
        elif op == "watch":
            self._on_watch(msg)
        elif op == "deregistered":
            svc = self.services.get(str(msg["id"]))
            if svc is not None and svc.leaving:
                del self.services[str(msg["id"])]
        elif op == "snap" and self.worker is not None:
            self.worker.send({"op": "snap", "n": msg["n"], "data": self.snapshot()})

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


def _plain(value: Any) -> Any:
    """Config records (``_asdict``) or dataclasses as plain JSON values for the worker."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _control_counts(sup: Any) -> dict[tuple[Any, Any], int]:
    """The control plane's per (code, path) request counts, wherever the supervisor keeps them:
    ``sup.control_http_requests``, or the ``requests`` dict of its control plane object."""
    counts = getattr(sup, "control_http_requests", None)
    if isinstance(counts, dict):
        return counts
    for attr in ("control", "control_plane", "plane"):
        counts = getattr(getattr(sup, attr, None), "requests", None)
        if isinstance(counts, dict):
            return counts
    return {}


# --- the worker process (everything below runs only there) ---------------------------------------


def worker_main(sock: socket.socket) -> None:
    """The discovery worker: a blocking read loop on PID 1's socket; Consul calls in threads."""
    _Agent(sock).run()


def describe_error(exc: BaseException) -> str:
    """A short, stable description of a failed call (stable: it decides when a state changed)."""
    import re

    text = str(exc)
    name = type(exc).__name__
    if name == "SSLError" or "SSLError" in text:
        m = re.search(r"\[SSL: ([A-Z_]+)\]", text)
        return f"TLS error: {m.group(1) if m else name}"
    if "Timeout" in name or "timed out" in text:
        return "timed out"
    if name == "ConnectionError" or "ConnectionError" in text:
        if "refused" in text:
            return "connection refused"
        if "reset" in text or "RemoteDisconnected" in text or "aborted" in text:
            return "connection reset"
        return "connection failed"
    if text.startswith("Failed to decode JSON"):
        return "invalid response from the agent (not the JSON Consul sends)"
    m = re.match(r"(\d{3}) (.*)", text, re.S)
    if m:  # py-consul's "<code> <body>" → CP's wording
        return f"Unexpected response code: {m.group(1)} ({m.group(2).strip()[:200]})"
    return f"{name}: {text[:200]}"


class _ErrorLog:
    """Logs a failure once when the state of a kind of call changes, and once when it recovers."""

    def __init__(self) -> None:
        import threading

        self.state: dict[str, str] = {}
        self.lock = threading.Lock()

    def report(self, kind: str, error: str | None, message: str) -> bool:
        """``message`` is CP's wording, ``{}`` for the error; True when this was a change."""
        with self.lock:
            old = self.state.get(kind)
            if error == old:
                return False
            if error is None:
                del self.state[kind]
            else:
                self.state[kind] = error
        if error is None:
            logs.info(f"{kind}: works again")
        else:
            logs.warn(message.format(error))
        return True


class _Svc:
    """One service in the worker: what the agent should have, and what is pending."""

    def __init__(self, sid: str, body: dict[str, Any], cond: Any) -> None:
        self.sid, self.body, self.cond = sid, body, cond
        self.name = str(body.get("Name", sid))
        self.want = False  # should be registered
        self.registered = False  # the agent has it, as far as we know
        self.reg_status: str | None = None  # a register with this check status is asked for
        self.beat = False  # a TTL pass is asked for
        self.dereg = False  # a deregister is asked for
        self.inflight: str | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.thread: Any = None

    def next_op(self, stopping: bool) -> tuple[str, str] | None:
        if self.dereg:
            return ("deregister", "")
        if stopping or not self.want:
            return None
        if self.reg_status is not None:
            return ("register", self.reg_status)
        if self.beat:
            return ("update", "") if self.registered else ("register", "passing")
        return None


class _Watcher:
    """One watch (name, tag, dc) and its own state (CP kept one state per name: #bug fixed)."""

    def __init__(self, cfg: dict[str, Any], event: Any) -> None:
        self.name = str(cfg["name"])
        self.tag: str | None = cfg.get("tag") or None
        self.dc: str | None = cfg.get("dc") or None
        self.interval = float(cfg["interval"])
        self.key = (self.name, self.tag or "", self.dc or "")
        self.state: list[tuple[str, str, str, int]] = []
        self.stop = event
        self.error: str | None = None


class _Agent:
    """The worker's state: the client, the services and watches, telemetry; one lock for all."""

    CALL_TIMEOUT = 30.0  # py-consul's default; CP had none
    RETRY_MIN, RETRY_MAX = 0.5, 10.0

    def __init__(self, sock: socket.socket) -> None:
        import threading

        self.sock = sock
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.client: Any = None
        self.consul_cfg: Any = None
        self.services: dict[str, _Svc] = {}
        self.watchers: dict[tuple[str, str, str], _Watcher] = {}
        self.telemetry: Any = None
        self.errors = _ErrorLog()
        self.stopping = False
        self.version = ""
        self._snap_n = 0
        self._snap_waiters: dict[int, list[Any]] = {}
        self._last_snap: dict[str, Any] = {"jobs": [], "watches": [], "events": [], "http": []}
        self._pending_final = 0
        self._final_cond = threading.Condition(self.lock)

    # -- talking to PID 1 --------------------------------------------------------------------

    def send(self, msg: Message) -> None:
        from pypilot.workers import encode

        data = encode(msg)
        with self.send_lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # PID 1 closed our channel: we are stopping anyway

    def run(self) -> None:
        import select
        import signal

        from pypilot.workers import Decoder

        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # _child reset it: a closed peer must be EPIPE
        signal.signal(signal.SIGTERM, lambda *_: None)
        signal.set_wakeup_fd(wake_w)
        logs.set_sink(lambda data: self.send({"op": "log", "data": data.decode("utf-8", "replace")}))
        decoder = Decoder()
        sock_fd = self.sock.fileno()
        while True:
            readable, _, _ = select.select([sock_fd, wake_r], [], [])
            if wake_r in readable:
                os.read(wake_r, 512)
                self._drain_then_stop(decoder)  # SIGTERM (the sweep's kill(-1))
            try:
                data = self.sock.recv(1 << 16)
                messages = decoder.feed(data) if data else None
            except (OSError, ValueError):
                messages = None
            if messages is None:  # PID 1 closed the channel (or sent garbage): we are done
                self.shutdown(3.0)
                return
            for msg in messages:
                if msg.get("op") == "stop":
                    self.shutdown(float(msg.get("bound") or 3.0))
                    return
                self.handle(msg)

    def _drain_then_stop(self, decoder: Any) -> None:
        """Take what PID 1 wrote before it signalled us (its last deregistrations), then stop."""
        self.sock.setblocking(False)
        bound = 3.0
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    break
                for msg in decoder.feed(data):
                    if msg.get("op") == "stop":
                        bound = float(msg.get("bound") or bound)
                    else:
                        self.handle(msg)
        except (OSError, ValueError):
            pass
        self.shutdown(bound)

    # -- messages ----------------------------------------------------------------------------

    def handle(self, msg: Message) -> None:
        try:
            self._handle(msg)
        except Exception as e:  # one bad message must not take Consul (and telemetry) down with it
            logs.exception(f"discovery: handling {msg.get('op')!r} failed", e)

    def _handle(self, msg: Message) -> None:
        op = msg.get("op")
        if op == "config":
            self.configure(msg)
        elif op == "service":
            self.on_service(str(msg["id"]), dict(msg["body"]))
        elif op in ("register", "heartbeat", "deregister"):
            self.on_request(op, str(msg["id"]), msg.get("status"))
        elif op == "metric":
            if self.telemetry is not None:
                self.telemetry.record(str(msg["data"]))
        elif op == "snap":
            with self.lock:
                waiter = self._snap_waiters.pop(int(msg["n"]), None)
                self._last_snap = msg["data"]
            if waiter is not None:
                waiter[1] = msg["data"]
                waiter[0].set()

    def configure(self, msg: Message) -> None:
        import threading

        self.version = str(msg.get("version") or "")
        consul_cfg = msg.get("consul")
        if consul_cfg != self.consul_cfg:
            self.consul_cfg = consul_cfg
            self.client = make_client(consul_cfg) if consul_cfg else None
        wanted = {}
        for w in msg.get("watches") or ():
            watcher = _Watcher(w, threading.Event())
            wanted[watcher.key] = watcher
        for key, old in list(self.watchers.items()):
            new = wanted.get(key)
            if new is None or new.interval != old.interval:
                old.stop.set()
                del self.watchers[key]
        for key, watcher in wanted.items():
            if key not in self.watchers:
                self.watchers[key] = watcher
                threading.Thread(
                    target=self._watch_loop, args=(watcher,), name=f"watch-{watcher.name}", daemon=True
                ).start()
        tel = msg.get("telemetry")
        if tel and self.telemetry is None:
            from pypilot.telemetry import Telemetry

            self.telemetry = Telemetry(tel, self.version, self.snapshot)
            self.telemetry.start()
        elif tel and self.telemetry is not None:
            self.telemetry.reconfigure(tel)

    def on_service(self, sid: str, body: dict[str, Any]) -> None:
        import threading

        with self.lock:
            svc = self.services.get(sid)
            if svc is None:
                svc = self.services[sid] = _Svc(sid, body, threading.Condition(self.lock))
                svc.thread = threading.Thread(target=self._svc_loop, args=(svc,), name=sid, daemon=True)
                svc.thread.start()
            elif svc.body != body:
                svc.body, svc.name = body, str(body.get("Name", sid))
                svc.registered = False  # address, port or tags changed (reload): register again

    def on_request(self, op: str, sid: str, status: Any) -> None:
        with self.lock:
            svc = self.services.get(sid)
            if svc is None or self.stopping:
                return
            if op == "register":
                svc.want, svc.dereg, svc.reg_status = True, False, str(status)
            elif op == "heartbeat":
                svc.want, svc.dereg, svc.beat = True, False, True
                svc.reg_status = None
            else:
                svc.want, svc.beat, svc.reg_status, svc.dereg = False, False, None, True
            svc.cond.notify()

    def snapshot(self, timeout: float = 1.0) -> dict[str, Any]:
        """From an HTTP thread: PID 1's statuses and counters now (the last ones if it is slow)."""
        import threading

        done = threading.Event()
        with self.lock:
            self._snap_n += 1
            n = self._snap_n
            waiter: list[Any] = [done, None]
            self._snap_waiters[n] = waiter
        self.send({"op": "snap", "n": n})
        if done.wait(timeout) and waiter[1] is not None:
            return dict(waiter[1])
        with self.lock:
            self._snap_waiters.pop(n, None)
            return dict(self._last_snap)

    # -- services ----------------------------------------------------------------------------

    def _svc_loop(self, svc: _Svc) -> None:
        import time

        while True:
            with self.lock:
                while True:
                    op = svc.next_op(self.stopping)
                    now = time.monotonic()
                    if op is not None and svc.retry_at <= now:
                        break
                    svc.cond.wait(svc.retry_at - now if op is not None else None)
                svc.inflight = op[0]
                body = svc.body
            error: str | None = None
            result = False
            try:
                result = self._call(op, svc.sid, body)
            except Exception as e:  # any failure of the call is a state to report, never a crash
                error = describe_error(e)
            with self.lock:
                svc.inflight = None
                self._apply(svc, op, result, error)
                svc.cond.notify()
                self._final_cond.notify_all()

    def _call(self, op: tuple[str, str], sid: str, body: dict[str, Any]) -> bool:
        import json

        from consul.callback import CB

        client = self.client
        if client is None:
            raise RuntimeError("no consul configured")
        headers = client.prepare_headers()
        kind, status = op
        if kind == "register":
            body = dict(body)
            body["Check"] = {**body["Check"], "Status": status}
            data = json.dumps(body, separators=(",", ":"))
            return bool(
                client.http.put(CB.boolean(), "/v1/agent/service/register", headers=headers, data=data)
            )
        if kind == "update":
            return bool(
                client.http.put(
                    CB.boolean(),
                    f"/v1/agent/check/update/service:{sid}",
                    headers=headers,
                    data='{"Status":"passing","Output":"ok"}',
                )
            )
        logs.debug(f"deregistering: {sid}")
        client.agent.service.deregister(sid)  # False on 404: not there is what we wanted
        return True

    def _apply(self, svc: _Svc, op: tuple[str, str], result: bool, error: str | None) -> None:
        import time

        kind, status = op
        if error is None and kind == "register" and not result:
            error = "the agent refused the registration"
        if error is not None:
            svc.failures += 1
            if self.stopping and kind == "deregister" and svc.failures >= FINAL_TRIES:
                svc.dereg = False  # the agent is not answering: do not hold the container's exit
                self._pending_final -= 1
                self.errors.report("consul deregister", error, "service deregistration failed: {}")
                return
            delay = 0.2 if self.stopping else min(self.RETRY_MIN * 2 ** (svc.failures - 1), self.RETRY_MAX)
            svc.retry_at = time.monotonic() + delay
            wording = {
                "register": "service registration failed: {}",
                "update": "service update TTL failed: {}",
                "deregister": "service deregistration failed: {}",
            }[kind]
            self.errors.report(f"consul {kind}", error, wording)
            return
        svc.failures, svc.retry_at = 0, 0.0
        self.errors.report(f"consul {kind}", None, "")
        if kind == "deregister":
            svc.dereg = svc.registered = False
            if self.stopping:
                self._pending_final -= 1
            else:
                self.send({"op": "deregistered", "id": svc.sid})
        elif kind == "register":
            svc.registered = True
            if svc.reg_status == status:
                svc.reg_status = None
                if status != "passing" or not svc.beat:
                    logs.info(f"Registering service {svc.name} with initial status set to {status}")
            logs.info(f"Service registered: {svc.name}")
        elif result:
            svc.beat = False
        else:  # 404: the agent lost it (restart without data, maintenance elsewhere): register again
            svc.registered = False
            logs.warn(f"service update TTL failed: the agent does not have {svc.sid}; registering it again")

    # -- watches -----------------------------------------------------------------------------

    def _watch_loop(self, w: _Watcher) -> None:
        import time

        next_at = time.monotonic() + w.interval  # CP: the first poll one interval after start
        index: int | None = None
        while not self.stopping:
            if w.stop.wait(max(next_at - time.monotonic(), 0.0)) or self.stopping:
                return
            started = time.monotonic()
            client = self.client
            try:
                if client is None:
                    raise RuntimeError("no consul configured")
                kw: dict[str, Any] = {"passing": True, "tag": w.tag, "dc": w.dc}
                if index:
                    kw.update(index=index, wait=f"{int(w.interval)}s")
                new_index, nodes = client.health.service(w.name, **kw)
                instances = _instances(nodes)
            except Exception as e:
                error = describe_error(e)
                if self.errors.report(f"watch {w.key}", error, f"failed to query {w.name}: {{}}"):
                    self.send({"op": "watch", "name": w.name, "tag": w.tag, "dc": w.dc, "error": error})
                index = None  # after an outage, start again with a plain query
                next_at = started + w.interval
                continue
            self.errors.report(f"watch {w.key}", None, "")
            try:
                idx = int(new_index)
            except (TypeError, ValueError):
                idx = 0
            index = idx if idx > 0 and (index is None or idx >= index) else None  # reset if it went back
            if w.stop.is_set():
                return
            old, w.state = w.state, instances
            changed = len(old) != len(instances) or any(
                (a[2], a[3]) != (b[2], b[3]) for a, b in zip(old, instances, strict=True)
            )
            if self.telemetry is not None:
                self.telemetry.set_watch_instances(w.name, len(instances))
            self.send(
                {
                    "op": "watch",
                    "name": w.name,
                    "tag": w.tag,
                    "dc": w.dc,
                    "count": len(instances),
                    "changed": changed,
                }
            )
            next_at = started + w.interval

    # -- stop --------------------------------------------------------------------------------

    def shutdown(self, bound: float) -> None:
        """Deregister every service we may have registered, within ``bound`` seconds, then exit."""
        import signal
        import threading
        import time

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        deadline = time.monotonic() + max(bound, 0.0)
        with self.lock:
            self.stopping = True
            for w in self.watchers.values():
                w.stop.set()
            for svc in self.services.values():
                if not (svc.registered or svc.dereg or svc.want or svc.inflight):
                    continue
                self._pending_final += 1
                svc.failures, svc.retry_at = 0, 0.0
                if svc.inflight == "deregister":
                    svc.dereg = True  # already on its way: its completion counts
                elif svc.inflight == "update":
                    # a TTL update cannot create the service: deregister now, alongside it
                    svc.dereg = svc.want = False
                    threading.Thread(target=self._final_deregister, args=(svc,), daemon=True).start()
                else:  # idle, or registering: its own thread deregisters next, in order
                    svc.dereg, svc.want = True, False
                    svc.cond.notify()
            while self._pending_final > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    logs.warn(f"{self._pending_final} service(s) not deregistered before the deadline")
                    break
                self._final_cond.wait(remaining)
        if self.telemetry is not None:
            self.telemetry.stop()
        os._exit(0)

    def _final_deregister(self, svc: _Svc) -> None:
        import time

        for attempt in range(FINAL_TRIES):
            try:
                self._call(("deregister", ""), svc.sid, svc.body)
                break
            except Exception as e:
                error = describe_error(e)
                self.errors.report("consul deregister", error, "service deregistration failed: {}")
                if attempt < FINAL_TRIES - 1:
                    time.sleep(0.2)
        with self.lock:
            self._pending_final -= 1
            self._final_cond.notify_all()


def _instances(nodes: Any) -> list[tuple[str, str, str, int]]:
    """A health/service answer as sorted (ID, node, Address, Port); ValueError if not Consul's shape."""
    if not isinstance(nodes, list):
        raise ValueError(f"unexpected health answer: {type(nodes).__name__}")
    out = []
    for entry in nodes:
        service = entry.get("Service") if isinstance(entry, dict) else None
        if not isinstance(service, dict):
            raise ValueError("unexpected health answer: an entry without Service")
        node = entry.get("Node")
        node_name = str(node.get("Node", "")) if isinstance(node, dict) else ""
        address, port = str(service.get("Address", "")), int(service.get("Port") or 0)
        out.append((str(service.get("ID", "")), node_name, address, port))
    out.sort()
    return out


def make_client(cfg: dict[str, Any]) -> Any:
    """A py-consul client from the ``consul`` config (env overrides were applied by the loader)."""
    import consul

    address = str(cfg.get("address") or "127.0.0.1:8500")
    scheme = str(cfg.get("scheme") or "http")
    host, port = address, 8500
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 8500
    elif address.count(":") == 1:
        host, _, port_text = address.partition(":")
        port = int(port_text)
    tls = cfg.get("tls") or {}
    verify: bool | str = False
    if scheme == "https" and tls.get("verify", True):
        verify = tls.get("cafile") or tls.get("capath") or True
    cert: Any = None
    if tls.get("clientcert"):
        cert = (tls["clientcert"], tls["clientkey"]) if tls.get("clientkey") else tls["clientcert"]
    client = consul.Consul(
        host=host,
        port=port,
        scheme=scheme,
        token=cfg.get("token") or None,
        verify=verify,
        cert=cert,
        connections_timeout=_Agent.CALL_TIMEOUT,
    )
    client.token = cfg.get("token") or None  # py-consul lets an empty CONSUL_HTTP_TOKEN win; CP does not
    if scheme == "https" and tls.get("servername"):
        _pin_server_name(client, str(tls["servername"]), bool(verify))
    return client


def _pin_server_name(client: Any, name: str, verify: bool) -> None:
    """``tls.servername``: SNI and the certificate's expected name differ from the address."""
    from requests.adapters import HTTPAdapter

    class _Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["server_hostname"] = name
            if verify:
                kwargs["assert_hostname"] = name
            super().init_poolmanager(*args, **kwargs)

    client.http.session.mount("https://", _Adapter())
