"""The Consul side of the I/O worker: every Consul call and watch, off PID 1 (CP §5, §6).

PID 1's side is ``pypilot.discovery``; this module runs only in the I/O worker (``pypilot.ioworker``),
which creates the ``_Agent`` at its first Consul message and hands it every message that is not a
check's; ``_Agent.shutdown`` is the worker's end when there is an agent. The agent owns the py-consul
client (imported there only) and runs:

- one thread per service, so the calls for one service stay in order (register → TTL updates →
  deregister) while a slow agent holds up no other service; requests that pile up while a call is in
  flight coalesce (one pending TTL update, never a queue), failures are retried with backoff;
- CP's exact bodies, sent through py-consul's HTTP client: register
  ``{"ID","Name","Tags","Port","Address","EnableTagOverride","Check":{"TTL","Status","Notes",
  "DeregisterCriticalServiceAfter"},"Checks":null}``, TTL update ``{"Status":"passing","Output":"ok"}``
  on ``/v1/agent/check/update/service:<id>``, deregister;
- beyond CP 3.8: a failing check marks the TTL check critical at once (``{"Status":"critical","Output":
  <the check's output>}``, one call per transition; PID 1 sends it once); a service is registered again
  after it was deregistered (maintenance) and at once when a TTL update finds that the agent lost it
  (Consul 1.0 answers ``500 … does not have associated TTL`` after a restart without its data, later
  versions 404; CP 3.8 kept failing);
- one thread per watch, state kept per (name, tag, dc) (CP shared it per name): the first query one
  interval after start, then Consul blocking queries (``index`` + ``wait=<interval>s``) started no more
  often than once per interval, so Consul sees CP's rate while a change is seen when it happens;
- errors logged once per change of state (per service kind of call, per watch), not once per call;
- the telemetry HTTP server (``pypilot.telemetry``) when the config has ``telemetry``: in this same
  process, which already pays for the interpreter and py-consul; another worker would cost another
  interpreter for nothing (measured in ``benchmarks/consul_load.py``).

The threads start after the worker blocked every signal (they inherit the mask): its main thread reads
them from a signalfd.
"""

from __future__ import annotations

import os

from pypilot import logs

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any

    from pypilot.channel import WorkerLink

    Message = dict[str, Any]
    Op = tuple[str, str, str]  # (register | update | deregister, check status, output)

FINAL_TRIES = 3  # attempts per deregistration at shutdown (0.2 s apart), within that bound
NOTE_MAX = 4096  # characters of a failing check's output sent as the TTL check's output


class AgentError(Exception):
    """The agent answered, with a status other than the one the call expects."""

    def __init__(self, code: int, body: str) -> None:
        super().__init__(code, body)
        self.code, self.body = code, body

    def __str__(self) -> str:  # CP's wording
        return f"Unexpected response code: {self.code} ({self.body.strip()[:200]})"


def describe_error(exc: BaseException) -> str:
    """A short, stable description of a failed call (stable: it decides when a state changed).

    Decided by the exception's class and those it wraps (requests wraps urllib3, which wraps the
    socket's error), never by its text."""
    import sys

    # only the classes of modules already loaded: a failure must not import ssl or requests (MiBs)
    rex: Any = sys.modules.get("requests.exceptions")
    ssl_error: Any = getattr(sys.modules.get("ssl"), "SSLError", None)
    http_error: Any = getattr(sys.modules.get("http.client"), "HTTPException", None)
    if isinstance(exc, AgentError):
        return str(exc)
    if (rex is not None and isinstance(exc, rex.SSLError)) or (ssl_error and _wrapped(exc, ssl_error)):
        inner = _wrapped(exc, ssl_error) if ssl_error else None
        return f"TLS error: {getattr(inner, 'reason', None) or type(inner or exc).__name__}"
    timeouts: Any = (rex.Timeout, TimeoutError) if rex is not None else TimeoutError
    if isinstance(exc, timeouts) or _wrapped(exc, TimeoutError):
        return "timed out"
    broken: Any = (rex.ConnectionError, rex.ChunkedEncodingError, ConnectionError) if rex else ConnectionError
    if isinstance(exc, broken):
        if _wrapped(exc, ConnectionRefusedError):
            return "connection refused"
        if _wrapped(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError) or (
            http_error and _wrapped(exc, http_error)
        ):
            return "connection reset"
        return "connection failed"
    if isinstance(exc, ValueError):  # json.JSONDecodeError, or not the shape Consul answers with
        return "invalid response from the agent (not the JSON Consul sends)"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _wrapped(exc: BaseException, cls: Any) -> BaseException | None:
    """``exc`` or an exception it wraps (args, urllib3's ``reason``, cause, context) of class ``cls``."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen or len(seen) > 32:
            continue
        seen.add(id(e))
        if isinstance(e, cls):
            return e
        more = [*e.args, getattr(e, "reason", None), e.__cause__, e.__context__]
        todo.extend(m for m in more if isinstance(m, BaseException))
    return None


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
        self.beat: str | None = None  # a TTL update with this status is asked for ("passing"/"critical")
        self.note = ""  # its output
        self.dereg = False  # a deregister is asked for
        self.inflight: str | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.thread: Any = None

    def next_op(self, stopping: bool) -> Op | None:
        if self.dereg:
            return ("deregister", "", "")
        if stopping or not self.want:
            return None
        if self.reg_status is not None:
            return ("register", self.reg_status, "")
        if self.beat is not None:
            return ("update", self.beat, self.note) if self.registered else ("register", self.beat, "")
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

    def __init__(self, sock: socket.socket, link: WorkerLink | None = None) -> None:
        import threading

        from pypilot.channel import WorkerLink

        self.link = link if link is not None else WorkerLink(sock)
        self.lock = threading.Lock()
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
        self.link.send(msg)  # fails only once PID 1 closed our channel: we are stopping anyway

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
        elif op in ("register", "heartbeat", "critical", "deregister"):
            self.on_request(op, str(msg["id"]), msg.get("status"), str(msg.get("note") or ""))
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
            Telemetry = _import_telemetry()
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

    def on_request(self, op: str, sid: str, status: Any, note: str = "") -> None:
        import time

        with self.lock:
            svc = self.services.get(sid)
            if svc is None or self.stopping:
                return
            if op == "register":
                svc.want, svc.dereg, svc.reg_status = True, False, str(status)
            elif op == "heartbeat":
                svc.want, svc.dereg, svc.beat, svc.note = True, False, "passing", "ok"
                svc.reg_status = None
            elif op == "critical":
                svc.want, svc.dereg, svc.beat, svc.note = True, False, "critical", note[:NOTE_MAX]
            else:
                svc.want, svc.beat, svc.reg_status, svc.dereg = False, None, None, True
            if svc.failures and op != "deregister":
                # a fresh request from PID 1 paces the retries (one per heartbeat, as CP called):
                # an agent back after a long outage has the service again within one heartbeat
                svc.retry_at = min(svc.retry_at, time.monotonic())
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

    def _http(self, method: str, path: str, params: Any = None, data: str = "") -> Any:
        """One request through py-consul's HTTP client: its ``Response(code, headers, body)``."""
        client = self.client
        if client is None:
            raise RuntimeError("no consul configured")
        headers = client.prepare_headers()
        if method == "GET":
            return client.http.get(lambda r: r, path, params=params, headers=headers)
        return client.http.put(lambda r: r, path, params=params, data=data, headers=headers)

    def _call(self, op: Op, sid: str, body: dict[str, Any]) -> bool:
        """One call; False when a TTL update finds the agent without the check (register again)."""
        import json

        kind, status, note = op
        if kind == "register":
            body = dict(body)
            body["Check"] = {**body["Check"], "Status": status}
            data = json.dumps(body, separators=(",", ":"))
            resp = self._http("PUT", "/v1/agent/service/register", data=data)
        elif kind == "update":
            data = json.dumps({"Status": status, "Output": note}, separators=(",", ":"))
            resp = self._http("PUT", f"/v1/agent/check/update/service:{sid}", data=data)
            if _lost(resp.code, resp.body):
                return False
        else:
            logs.debug(f"deregistering: {sid}")
            resp = self._http("PUT", f"/v1/agent/service/deregister/{sid}")
            if resp.code == 404:
                return True  # not there is what we wanted
        if resp.code != 200:
            raise AgentError(resp.code, resp.body)
        return True

    def _apply(self, svc: _Svc, op: Op, result: bool, error: str | None) -> None:
        import time

        kind, status, _ = op
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
            if svc.beat == status:  # else a different status was asked for meanwhile: send it next
                svc.beat = None
        else:  # the agent lost it (restart without data, maintenance elsewhere): register again, now
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
            try:
                new_index, instances = self._health(w, index)
            except Exception as e:
                error = describe_error(e)
                if self.errors.report(f"watch {w.key}", error, f"failed to query {w.name}: {{}}"):
                    self.send({"op": "watch", "name": w.name, "tag": w.tag, "dc": w.dc, "error": error})
                index = None  # after an outage, start again with a plain query
                next_at = started + w.interval
                continue
            self.errors.report(f"watch {w.key}", None, "")
            idx = new_index
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

    def _health(self, w: _Watcher, index: int | None) -> tuple[int, list[tuple[str, str, str, int]]]:
        """``/v1/health/service/NAME?passing`` (blocking from ``index``): (X-Consul-Index, instances)."""
        import json

        params = [("passing", "1")]
        if w.tag:
            params.append(("tag", w.tag))
        if w.dc:
            params.append(("dc", w.dc))
        if index:
            params += [("index", str(index)), ("wait", f"{max(int(w.interval), 1)}s")]
        resp = self._http("GET", f"/v1/health/service/{w.name}", params)
        if resp.code != 200:
            raise AgentError(resp.code, resp.body)
        instances = _instances(json.loads(resp.body))
        try:
            new_index = int(resp.headers.get("X-Consul-Index") or 0)
        except ValueError:
            new_index = 0
        return new_index, instances

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
                self._call(("deregister", "", ""), svc.sid, svc.body)
                break
            except Exception as e:
                error = describe_error(e)
                self.errors.report("consul deregister", error, "service deregistration failed: {}")
                if attempt < FINAL_TRIES - 1:
                    time.sleep(0.2)
        with self.lock:
            self._pending_final -= 1
            self._final_cond.notify_all()


def _lost(code: int, body: str) -> bool:
    """A TTL update's answer saying the agent does not have the check: Consul 1.0 answers
    ``500 CheckID "service:…" does not have associated TTL``, later versions (and proxies) 404."""
    return code == 404 or (code == 500 and "does not have associated TTL" in body)


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


def _import_telemetry() -> Any:
    """``pypilot.telemetry.Telemetry``, its module imported while modules prometheus-client imports for
    what the worker never does are stand-ins (``lean_imports.deferring``; ``pypilot.telemetry`` itself
    keeps out those of its servers and push gateway): its ``decorator`` (with ``inspect``: a function
    wrapped in a metric's timer), ``base64`` (push-gateway auth), ``mmap`` (multiprocess mode) and
    ``timeit`` (a timer's clock, read when one runs). Any such use still gets the real module; after
    the import, any importer does. Measured in a child forked from PID 1's modules: the import's private
    pages 3.3 -> 1.8 MiB (``inspect`` with ``ast``, ``dis`` and ``tokenize`` 0.9, the rest 0.15)."""
    from pypilot.lean_imports import deferring, forward

    decorator = "prometheus_client.decorator"
    with deferring({
        decorator: {"decorate": forward(decorator, "decorate")},
        "timeit": {"default_timer": forward("timeit", "default_timer")},
        "base64": {}, "mmap": {},
    }):  # fmt: skip
        from pypilot.telemetry import Telemetry
    return Telemetry


def make_client(cfg: dict[str, Any]) -> Any:
    """A py-consul client from the ``consul`` config (env overrides were applied by the loader), on
    ``pypilot.consul_http`` (no requests; ssl only for https)."""
    from pypilot.consul_http import consul_client

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
    elif scheme == "https":
        logs.warn(f"consul: tls.verify is false: the certificate of {address} is not checked")
    cert: Any = None
    if tls.get("clientcert"):
        cert = (tls["clientcert"], tls["clientkey"]) if tls.get("clientkey") else tls["clientcert"]
    client = consul_client(
        host=host,
        port=port,
        scheme=scheme,
        token=cfg.get("token") or None,
        verify=verify,
        cert=cert,
        connections_timeout=_Agent.CALL_TIMEOUT,
        server_hostname=str(tls["servername"]) if scheme == "https" and tls.get("servername") else None,
    )
    client.token = cfg.get("token") or None  # py-consul lets an empty CONSUL_HTTP_TOKEN win; CP does not
    return client
