"""The control worker's Falcon app: ContainerPilot 3's endpoints, byte for byte, and pypilot's own.

``make_app`` mounts the routes of ``routes.ROUTES``; the middleware answers 404/405 from it (CP's
exact bodies on CP's paths, JSON on pypilot's), answers ``/v3/ping`` for any method, rejects bodies
over 1 MiB, and reports every answered request to PID 1 for the ``(code, path)`` counters. Resources
validate what they can here (JSON, types, signal names) and forward the rest to PID 1 through the
``Link``; a reply that does not come in time is a 503, never a hang.

Bodies on CP's paths are CP's (``\\n``, ``Unprocessable Entity\\n`` …, ``text/plain; charset=utf-8``);
the reason for a rejection is in the ``X-Pypilot-Error`` header, so CP clients see exactly what CP sent.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import falcon
import orjson

from pypilot.control.routes import ROUTES, Route, classify
from pypilot.control.validate import parse_signal, valid_env

TYPE_CHECKING = False  # typing is deferred while the worker imports this (worker.import_server)
if TYPE_CHECKING:
    from typing import Any, Protocol
else:
    Protocol = object


class Link(Protocol):
    """What the app needs of its channel to PID 1 (``worker.Link``; the worker imports this module)."""

    def call(self, kind: str, timeout: float, **args: Any) -> dict[str, Any] | None: ...

    def send(self, msg: dict[str, Any]) -> None: ...

    def open_stream(self, timeout: float) -> queue.Queue[dict[str, Any] | None] | None: ...

    def close_stream(self, q: queue.Queue[dict[str, Any] | None]) -> None: ...

    def open_log_stream(self, name: str, n: int | None, timeout: float
                        ) -> tuple[dict[str, Any] | None, queue.Queue[dict[str, Any] | None] | None]: ...

    def close_log_stream(self, name: str, q: queue.Queue[dict[str, Any] | None]) -> None: ...

MAX_BODY = 1 << 20
TEXT = "text/plain; charset=utf-8"
ERROR_HEADER = "X-Pypilot-Error"
KEEPALIVE = 15.0  # seconds between comments on an idle event stream (finds clients that left)
UPGRADE_TIMEOUT = 20.0  # PID 1 answers once the target's check is over (bounded at 10 s there)


GO_STATUS_TEXT = {  # Go 1.9's http.StatusText for the codes this app sends
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


# --- responses --------------------------------------------------------------------------------------


def text(resp: falcon.Response, status: int, body: str, why: str = "") -> None:
    resp.status = status
    resp.content_type = TEXT
    resp.text = body
    if status >= 400:
        resp.set_header("X-Content-Type-Options", "nosniff")  # Go's http.Error
    if why:
        resp.set_header(ERROR_HEADER, _header_safe(why))


def cp_error(resp: falcon.Response, status: int, why: str = "") -> None:
    """Go's ``http.Error(w, http.StatusText(code), code)``."""
    reason = GO_STATUS_TEXT.get(status) or falcon.code_to_http_status(status).split(" ", 1)[1]
    text(resp, status, reason + "\n", why)


def json(resp: falcon.Response, status: int, data: Any) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(data) + b"\n"


def error(resp: falcon.Response, route: Route, status: int, why: str) -> None:
    if route.cp:
        cp_error(resp, status, why)
    else:
        json(resp, status, {"error": why})
        resp.set_header(ERROR_HEADER, _header_safe(why))


def error_response(path: str, status: int, why: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """An error answer outside Falcon (waitress refused the request itself), in the same form as
    ``error``: ``(status line, headers, body)``."""
    route = classify(path)
    reason = GO_STATUS_TEXT.get(status) or falcon.code_to_http_status(status).split(" ", 1)[1]
    headers = [(ERROR_HEADER, _header_safe(why))]
    if route is None or route.cp:
        headers += [("Content-Type", TEXT), ("X-Content-Type-Options", "nosniff")]
        return f"{status} {reason}", headers, (reason + "\n").encode()
    headers.append(("Content-Type", falcon.MEDIA_JSON))
    return f"{status} {reason}", headers, orjson.dumps({"error": why}) + b"\n"


def _header_safe(s: str) -> str:
    s = "".join(c if " " <= c <= "~" else "?" for c in s)
    return s[:500]


class Rejected(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status, self.why = status, why


def read_body(req: falcon.Request) -> bytes:
    if req.content_length is not None and req.content_length > MAX_BODY:
        raise Rejected(413, f"the body is over {MAX_BODY} bytes")
    data = req.bounded_stream.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise Rejected(413, f"the body is over {MAX_BODY} bytes")
    return bytes(data)


def read_json(req: falcon.Request, status: int = 422) -> Any:
    data = read_body(req)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise Rejected(status, f"the body is not valid JSON: {e}") from None


def go_value(v: Any) -> str:
    """Go's ``%v`` of a value decoded by encoding/json into ``interface{}`` (numbers are float64)."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        from pypilot.gofmt import go_float  # at the first metric: 0.1 MiB the worker need not hold before

        return go_float(float(v))
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return "[" + " ".join(go_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_value(v[k])}" for k in sorted(v)) + "]"
    return str(v)


# --- the app ----------------------------------------------------------------------------------------


class Forward:
    """Shared by the resources: a request to PID 1, its reply or None after the timeout."""

    def __init__(self, link: Link, settings: dict[str, Any]) -> None:
        self.link, self.settings = link, settings
        self.timeout = float(settings.get("timeout", 5.0))
        self.reload_timeout = float(settings.get("reload_timeout", 60.0))
        self.slots = Slots(int(settings.get("max_streams", 8)))  # shared by every streaming resource

    def __call__(self, kind: str, timeout: float | None = None, **args: Any) -> tuple[int, Any]:
        reply = self.link.call(kind, self.timeout if timeout is None else timeout, **args)
        if reply is None:
            raise Rejected(503, f"pypilot did not answer the {kind} request in time")
        return int(reply.get("status", 500)), reply.get("data")


class Gate:
    """Middleware: 404/405 from ``ROUTES``, ``/v3/ping``, rejections, and the request counters."""

    def __init__(self, forward: Forward) -> None:
        self.forward = forward

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        route = classify(req.path)
        req.context.route = route
        if route is None:
            text(resp, 404, "404 page not found\n")
            resp.complete = True
        elif "*" in route.methods:  # /v3/ping: any method; PID 1 answers, so it proves PID 1 is alive
            try:
                status, data = self.forward("ping")
            except Rejected as e:
                cp_error(resp, e.status, e.why)
            else:
                if status == 200:
                    text(resp, 200, "\n")
                else:
                    cp_error(resp, status, str((data or {}).get("error", "")))
            resp.complete = True
        elif req.method not in route.methods:
            why = f"{req.method} is not allowed on {req.path}; use {'/'.join(sorted(route.methods))}"
            error(resp, route, 405, why)
            resp.set_header("Allow", ", ".join(sorted(route.methods)))
            resp.complete = True

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        route = getattr(req.context, "route", None)
        try:
            code = int(str(resp.status).split(" ", 1)[0])
        except ValueError:
            code = 0
        self.forward.link.send({"op": "count", "code": code, "path": route.label if route else "other"})


def handle_rejected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    assert isinstance(ex, Rejected)
    route = getattr(req.context, "route", None) or ROUTES["/v3/status"]
    error(resp, route, ex.status, ex.why)


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    if isinstance(ex, falcon.HTTPError):  # waitress/falcon-level problems (bad headers …)
        route = getattr(req.context, "route", None) or ROUTES["/v3/status"]
        error(resp, route, ex.status_code, ex.title or "bad request")
        return
    route = getattr(req.context, "route", None) or ROUTES["/v3/status"]
    error(resp, route, 500, f"internal error: {type(ex).__name__}: {ex}")


class _CP:
    """A CP POST endpoint: an answer from PID 1 is ``\\n`` on 200, CP's status text otherwise."""

    def __init__(self, forward: Forward) -> None:
        self.forward = forward

    def answer(self, resp: falcon.Response, status: int, data: Any) -> None:
        if status == 200:
            text(resp, 200, "\n")
        else:
            cp_error(resp, status, str((data or {}).get("error", "")))


class Environ(_CP):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise Rejected(422, "the body must be a JSON object of strings")
        env = {k: "" if v is None else v for k, v in body.items()}
        why = valid_env(env)
        if why is not None:
            raise Rejected(422, why)
        self.answer(resp, *self.forward("environ", env=env))


class Metric(_CP):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise Rejected(422, "the body must be a JSON object")
        strict = "application/json" in (req.accept or "")  # pypilot's client: refuse what CP ignored
        metrics = {k: go_value(v) for k, v in body.items()}
        status, data = self.forward("metric", metrics=metrics, strict=strict)
        if strict and status in (200, 422):
            json(resp, status, data)
            if status == 422:
                resp.set_header(ERROR_HEADER, _header_safe(str((data or {}).get("error", ""))))
            return
        self.answer(resp, status, data)
        if status == 200 and isinstance(data, dict) and data.get("warning"):
            resp.set_header(ERROR_HEADER, _header_safe(str(data["warning"])))  # CP's 200, and why not


class Maintenance(_CP):
    def __init__(self, forward: Forward, enable: bool) -> None:
        super().__init__(forward)
        self.enable = enable

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        read_body(req)
        self.answer(resp, *self.forward("maintenance", enable=self.enable))


class Reload(_CP):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        read_body(req)
        status, data = self.forward("reload", self.forward.reload_timeout)
        if status != 200 or not isinstance(data, dict):
            self.answer(resp, status, data)
        elif data.get("reloaded") and "application/json" not in (req.accept or ""):
            text(resp, 200, "\n")  # CP's answer, for CP's clients
        else:  # a rejected or rolled-back reload is still 200 (CP clients), with why in the body
            json(resp, 200, data)
            if not data.get("reloaded"):
                resp.set_header(ERROR_HEADER, _header_safe(str(data.get("error", ""))))


class Upgrade:
    """POST /v3/upgrade: PID 1 checks the target (it may take a few seconds) and answers 202 or 422."""

    def __init__(self, forward: Forward) -> None:
        self.forward = forward

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, 400)
        if not isinstance(body, dict) or not isinstance(body.get("path"), str) or not body["path"]:
            raise Rejected(400, 'the body must be a JSON object like {"path": "/opt/new/bin/pypilot"}')
        status, data = self.forward("upgrade", UPGRADE_TIMEOUT, path=body["path"])
        json(resp, status, data)
        if status >= 400 and isinstance(data, dict):
            resp.set_header(ERROR_HEADER, _header_safe(str(data.get("error", ""))))


class Status:
    def __init__(self, forward: Forward) -> None:
        self.forward = forward

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        status, data = self.forward("status")
        json(resp, status, data)

    on_head = on_get


class Jobs:
    def __init__(self, forward: Forward, action: str) -> None:
        self.forward, self.action = forward, action

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        args: dict[str, Any] = {}
        action = self.action
        if action == "signal":
            body = read_json(req, 400)
            value = body.get("signal") if isinstance(body, dict) else None
            if not isinstance(body, dict) or "signal" not in body:
                raise Rejected(422, 'the body must be a JSON object like {"signal": "SIGHUP"}')
            if parse_signal(value) is None:
                raise Rejected(422, f"invalid signal {value!r}")
            args["signal"] = value
        else:
            read_body(req)
        status, data = self.forward("job", name=name, action=action, **args)
        json(resp, status, data)
        if status >= 400 and isinstance(data, dict):
            resp.set_header(ERROR_HEADER, _header_safe(str(data.get("error", ""))))


class Slots:
    """The streams open at once (events and followed logs): each holds one of the server's threads."""

    def __init__(self, most: int) -> None:
        self.most, self.open = most, 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self.open >= self.most:  # the rest of the threads are for everyone else
                raise Rejected(503, f"{self.open} event streams are open already, the most there can be")
            self.open += 1

    def give_back(self) -> None:
        with self._lock:
            self.open -= 1


class Events:
    """``GET /v3/events``: server-sent events, one per bus event, as they happen."""

    def __init__(self, forward: Forward, slots: Slots) -> None:
        self.forward = forward
        self.slots = slots

    @property
    def open(self) -> int:
        return self.slots.open

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "no-cache")
        if req.method == "HEAD":
            return
        self.slots.take()
        try:
            link = self.forward.link
            q = link.open_stream(self.forward.timeout)
            if q is None:
                raise Rejected(503, "pypilot did not answer the subscribe request in time")
        except BaseException:
            self._closed()
            raise
        resp.stream = _stream(link, q, self._closed)

    def _closed(self) -> None:
        self.slots.give_back()

    on_head = on_get


def _queued(q: queue.Queue[dict[str, Any] | None]) -> Iterator[dict[str, Any] | bytes]:
    """A stream's messages as they come, a keep-alive comment after each quiet ``KEEPALIVE``, and an
    ``overflow`` event to end with when PID 1 dropped the stream (its queue overflowed)."""
    while True:
        try:
            msg = q.get(timeout=KEEPALIVE)
        except queue.Empty:
            yield b": keep-alive\n\n"
            continue
        if msg is None:
            yield b"event: overflow\ndata: {}\n\n"
            return
        yield msg


def _stream(link: Link, q: queue.Queue[dict[str, Any] | None], closed: Callable[[], None]) -> Iterator[bytes]:
    try:
        yield b": pypilot events\n\n"
        for msg in _queued(q):
            if isinstance(msg, bytes):
                yield msg
                continue
            data = {k: msg[k] for k in ("seq", "code", "source", "name", "time") if k in msg}
            yield (
                f"id: {msg.get('seq')}\nevent: {msg.get('code')}\ndata: ".encode()
                + orjson.dumps(data)
                + b"\n\n"
            )
    finally:
        link.close_stream(q)
        closed()


_TRUE, _FALSE = ("1", "true", "yes", "on", ""), ("0", "false", "no", "off")


class JobLogs:
    """``GET /v3/jobs/{name}/logs?n=N[&follow=1]``: the job's recent lines (JSON); with ``follow``,
    those and then each new one as a server-sent event."""

    def __init__(self, forward: Forward, slots: Slots) -> None:
        self.forward, self.slots = forward, slots

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        raw_n = req.get_param("n")
        n: int | None = None
        if raw_n is not None:
            if not raw_n.isdigit() or len(raw_n) > 9:
                raise Rejected(422, f"n must be a whole number >= 0, not {raw_n!r}")
            n = int(raw_n)
        raw_follow = req.get_param("follow", default="0").lower()
        if raw_follow not in _TRUE + _FALSE:
            raise Rejected(422, f"follow must be 1/true or 0/false, not {raw_follow!r}")
        if raw_follow in _FALSE or req.method == "HEAD":
            status, data = self.forward("logs", name=name, n=n)
            json(resp, status, data)
            if status >= 400 and isinstance(data, dict):
                resp.set_header(ERROR_HEADER, _header_safe(str(data.get("error", ""))))
            return
        self.slots.take()
        try:
            link = self.forward.link
            reply, q = link.open_log_stream(name, n, self.forward.timeout)
            if reply is None:
                raise Rejected(503, "pypilot did not answer the logs request in time")
            data = reply.get("data")
            if q is None:
                why = str((data or {}).get("error", "")) if isinstance(data, dict) else ""
                raise Rejected(int(reply.get("status", 500)), why or "the logs request failed")
        except BaseException:
            self.slots.give_back()
            raise
        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "no-cache")
        first = list((data or {}).get("lines") or [])
        raw = bool((data or {}).get("raw"))
        resp.stream = _log_stream(link, name, first, q, self.slots.give_back, raw)

    on_head = on_get


def _line_event(entry: dict[str, Any]) -> bytes:
    data = {k: entry.get(k) for k in ("seq", "time", "line")}
    return f"id: {entry.get('seq')}\nevent: line\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


def _log_stream(link: Link, name: str, first: list[dict[str, Any]], q: queue.Queue[dict[str, Any] | None],
                closed: Callable[[], None], raw: bool = False) -> Iterator[bytes]:
    try:
        yield f": pypilot logs {name}\n\n".encode()
        if raw:  # nothing will come: the job's output is not read (its logging.raw)
            yield b"event: raw\ndata: {}\n\n"
        last = 0
        for entry in first:
            last = max(last, int(entry.get("seq") or 0))
            yield _line_event(entry)
        for msg in _queued(q):
            if isinstance(msg, bytes):
                yield msg
                continue
            seq = int(msg.get("seq") or 0)
            if seq <= last:  # PID 1 sent it before our snapshot was taken: it is in ``first``
                continue
            last = seq
            yield _line_event(msg)
    finally:
        link.close_log_stream(name, q)
        closed()


class OpenAPI:
    """``GET /v3/openapi.json``: the document, built at its first request (the worker need not hold it
    before: most never serve it)."""

    data: bytes | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.data is None:
            from pypilot.control.openapi import DOCUMENT

            self.data = orjson.dumps(DOCUMENT)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.data

    on_head = on_get


def make_app(link: Link, settings: dict[str, Any]) -> falcon.App:
    forward = Forward(link, settings)
    app = falcon.App(middleware=[Gate(forward)], media_type=TEXT)
    app.req_options.strip_url_path_trailing_slash = False
    app.req_options.auto_parse_form_urlencoded = False
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(Rejected, handle_rejected)
    for route in ROUTES.values():
        resource = _resource(route, forward)
        if resource is not None:
            app.add_route(route.label, resource)
    return app


def _resource(route: Route, forward: Forward) -> object | None:
    """The resource that answers ``route`` (None for /v3/ping, which ``Gate`` answers)."""
    if route.kind == "job":
        return Jobs(forward, route.action)
    if route.kind == "maintenance":
        return Maintenance(forward, route.action == "enable")
    if route.kind == "ping":
        return None
    if route.kind is None:
        return OpenAPI()
    if route.kind == "subscribe":
        return Events(forward, forward.slots)
    if route.kind == "logs":
        return JobLogs(forward, forward.slots)
    kinds: dict[str, type[Any]] = {"environ": Environ, "metric": Metric, "reload": Reload, "status": Status,
                                   "upgrade": Upgrade}
    return kinds[route.kind](forward)
