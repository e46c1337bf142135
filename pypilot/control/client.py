"""The CLI's side of the control plane: ContainerPilot 3's subcommands and pypilot's own.

``run_subcommand(opts)`` runs ``-reload``, ``-maintenance enable|disable``, ``-putenv K=V``, ``-putmetric
K=V`` and ``-ping`` (CP §8.2, CP's precedence is ``Options.command``), and the positional ``status
[-json]``, ``job NAME signal SIG|stop|start|restart`` and ``logs NAME [-n N] [-f]``. Failures are
logrus-style fatal lines on stderr with CP's messages, exit 1; CP's putenv/putmetric message bug (they said
``-reload:``) is fixed.

Differences from CP's client, on purpose: the socket comes from ``-socket``, ``$PYPILOT_SOCKET`` or a
lenient read of the config's ``control.socket`` (CP loaded and validated the whole config, so a client could
not reach a running server while its config was being edited; ``-reload`` now reaches it and the server
reports the config's error); any non-2xx answer is a failure with the server's reason (CP ignored all but
422, which its own server never sent otherwise); a reload the server rejected or rolled back fails; and
``job NAME stop|start|restart`` prints the job's state once the action has taken effect.
"""

from __future__ import annotations

import _socket  # not socket, which imports enum: -ping needs none of its wrappers
import os
import sys

TYPE_CHECKING = False  # typing, http.client (with email and ssl) and orjson cost every -ping ~40 ms
if TYPE_CHECKING:
    import http.client
    import socket
    from collections.abc import Mapping
    from typing import Any, TextIO

    from pypilot.http1 import Headers

CONTROL_COMMANDS = ("reload", "upgrade", "maintenance", "putenv", "putmetric", "ping")
POSITIONAL = ("status", "job", "logs")
ERROR_HEADER = "X-Pypilot-Error"


def connect(path: str, timeout: float, kind: type[socket.socket] | None = None) -> _socket.socket:
    """A connected unix socket (a ``kind``, else the plain ``_socket.socket``); a full listen backlog
    (EAGAIN: a unix socket does not queue the connect) is retried until the timeout, as a TCP client's SYN
    would be."""
    import time

    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        sock = (kind or _socket.socket)(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except BlockingIOError:
            sock.close()
            if time.monotonic() + delay >= deadline:
                raise
            time.sleep(delay)  # the server has not accepted yet: nothing to wait on but time
            delay = min(delay * 2, 0.1)
            continue
        except OSError:
            sock.close()
            raise
        return sock


def _connection_class() -> type[http.client.HTTPConnection]:
    import http.client

    class UnixHTTPConnection(http.client.HTTPConnection):
        """HTTP/1.1 to host ``control`` over a unix socket, as CP's client dials it."""

        def __init__(self, path: str, timeout: float) -> None:
            super().__init__("control", timeout=timeout)
            self.socket_path = path

        def connect(self) -> None:
            """Connect (``connect``: a full backlog is retried until the timeout)."""
            import socket

            timeout = self.timeout if isinstance(self.timeout, (int, float)) else 10.0
            self.sock = connect(self.socket_path, timeout, socket.socket)

    return UnixHTTPConnection


def __getattr__(name: str) -> Any:
    """``UnixHTTPConnection`` is made on first use: ``-ping`` does without http.client."""
    if name == "UnixHTTPConnection":
        cls = globals()[name] = _connection_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Failed(Exception):
    """A client command failed; ``unreachable`` when the socket could not be connected to."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage | Headers, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def why(self) -> str:
        return self.headers.get(ERROR_HEADER, "") or ""

    def json(self) -> Any:
        import orjson

        return orjson.loads(self.body)


PING = b"GET /v3/ping HTTP/1.1\r\nHost: control\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
MAX_PING_ANSWER = 1 << 20


def ping(socket_path: str, timeout: float = 10.0) -> Response:
    """``GET /v3/ping`` on a plain socket, what an image's HEALTHCHECK runs every few seconds: the same
    request and errors as ``request``, without http.client (and its email and ssl) or orjson."""
    url = "http://control/v3/ping"
    try:
        sock = connect(socket_path, timeout)
    except OSError as e:
        reason = (e.strerror or str(e)).lower()
        raise Failed(f"Get {url}: dial unix {socket_path}: connect: {reason}", unreachable=True) from None
    try:
        sock.sendall(PING)
        data = b""
        while True:
            chunk = sock.recv(65536)
            data += chunk
            answer = _answer(data, done=not chunk or len(data) > MAX_PING_ANSWER)
            if answer is not None:
                return answer
    except OSError as e:
        raise Failed(f"Get {url}: {e or type(e).__name__}") from None
    except ValueError as e:
        raise Failed(f"Get {url}: {e}") from None
    finally:
        sock.close()


def _answer(data: bytes, done: bool) -> Response | None:
    """The response in ``data``, or None while it is incomplete and more may come (ValueError: malformed)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        if done:
            raise ValueError("Remote end closed connection without response" if not data else
                             f"malformed response {data[:100]!r}")
        return None
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ValueError(f"malformed status line {lines[0][:100]!r}")
    from pypilot.http1 import Headers

    fields = (ln.partition(":") for ln in lines[1:])
    headers = Headers((name.strip(), value.strip()) for name, colon, value in fields if colon)
    length = headers.get("Content-Length")
    if length is not None and length.isdigit():
        if len(body) < int(length) and not done:
            return None
        body = body[: int(length)]
    elif not done:  # no length: the body ends where the server closes
        return None
    return Response(int(code), headers, body)


def request(
    socket_path: str,
    method: str,
    path: str,
    body: Any = None,
    timeout: float = 10.0,
    accept_json: bool = False,
) -> Response:
    """One request; Failed with Go's error text when the socket cannot be reached."""
    import http.client

    import orjson

    conn = __getattr__("UnixHTTPConnection")(socket_path, timeout)
    headers = {"Accept": "application/json"} if accept_json else {}
    data = None
    if body is not None:
        data = orjson.dumps(body)
        headers["Content-Type"] = "application/json"
    try:
        try:
            conn.connect()
        except OSError as e:
            reason = (e.strerror or str(e)).lower()
            url = f"http://control{path}"
            raise Failed(f"{method.title()} {url}: dial unix {socket_path}: connect: {reason}",
                         unreachable=True) from None
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    except (OSError, http.client.HTTPException) as e:
        raise Failed(f"{method.title()} http://control{path}: {e or type(e).__name__}") from None
    finally:
        conn.close()


def check(resp: Response) -> None:
    """CP: a 422 is ``unprocessable entity received by control server``; pypilot: any non-2xx fails, with
    the server's reason (the ``X-Pypilot-Error`` header, else a JSON ``error``, else the body's text)."""
    if 200 <= resp.status < 300:
        return
    if resp.status == 422:
        msg = "unprocessable entity received by control server"
    else:
        msg = f"control server answered {resp.status}"
    why = resp.why or _body_reason(resp)
    raise Failed(f"{msg}: {why}" if why else msg)


def _body_reason(resp: Response) -> str:
    data = _json_or_none(resp)
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    text = resp.body.decode("utf-8", "replace").strip()
    return text if len(text) <= 500 else text[:500] + "..."


def fatal(msg: str, err: TextIO | None = None) -> int:
    """logrus's fatal line as CP printed it (text format, on stderr); exit code 1."""
    import time

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    stamp = stamp[:-2] + ":" + stamp[-2:] if stamp[-5:] != "+0000" else stamp[:-5] + "Z"
    quoted = '"' + msg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    stream = err or sys.stderr
    stream.write(f'time="{stamp}" level=fatal msg={quoted}\n')
    stream.flush()
    return 1


def wants_control(opts: Any) -> bool:
    """Whether ``opts`` asks for a control subcommand (CP's, or pypilot's positional ones)."""
    return opts.command in CONTROL_COMMANDS or opts.command in POSITIONAL


def socket_path(opts: Any, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(the control socket, where it came from) for a client command.

    ``-socket``, else ``$PYPILOT_SOCKET``, else ``control.socket`` of the config (``-config`` or
    ``$CONTAINERPILOT``), read leniently: only that key is needed, so a config that does not validate (being
    edited, or broken) still gives it; else the default socket. An unreadable config file is an error.
    """
    env = os.environ if environ is None else environ
    if opts.socket:
        return opts.socket, ""
    if env.get("PYPILOT_SOCKET"):
        return env["PYPILOT_SOCKET"], ""
    from pypilot.config import read_control
    from pypilot.config.model import DEFAULT_SOCKET

    if not (opts.config or env.get("CONTAINERPILOT")):
        return DEFAULT_SOCKET, "the default socket: no -config, -socket, $PYPILOT_SOCKET or $CONTAINERPILOT"
    control, note = read_control(opts.config or None, env)
    sock = next((v for k, v in control.items() if isinstance(k, str) and k.lower() == "socket"), None)
    if isinstance(sock, str) and sock:
        return sock, ""
    if note:
        return DEFAULT_SOCKET, f"the default socket: the config did not parse ({note})"
    return DEFAULT_SOCKET, ""


def _reload_timeout(opts: Any) -> float:
    """Long enough for the server's own bound (``control.reloadGrace``, read leniently), plus a margin."""
    from pypilot.config import ConfigError, read_control
    from pypilot.config.durations import DurationError, parse_cp_duration

    grace = 30.0
    if opts.config or os.environ.get("CONTAINERPILOT"):
        try:
            control, _ = read_control(opts.config or None)
            raw = next((v for k, v in control.items() if isinstance(k, str) and k.lower() == "reloadgrace"),
                       None)
            if raw is not None:
                grace = parse_cp_duration(str(raw)) / 1e9
        except (ConfigError, DurationError, ValueError, TypeError):
            pass  # a broken value: the server will say so; wait as long as its default
    return max(grace, 0.0) + 60.0


def run_subcommand(opts: Any, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the subcommand ``opts`` asks for; the process's exit code."""
    out = out or sys.stdout
    command = opts.command
    if command == "ping":
        prefix = "-ping: failed: "
    elif command in CONTROL_COMMANDS:
        prefix = f"-{command}: failed to run subcommand: "
    else:
        prefix = f"{command}: failed: "
    try:
        sock, origin = socket_path(opts)
    except ValueError as e:
        return fatal(str(e), err)
    except Exception as e:  # a ConfigError; the config package is loaded only if the socket came from it
        from pypilot.config import ConfigError

        if not isinstance(e, ConfigError):
            raise
        return fatal(str(e), err)
    try:
        if command == "reload":
            resp = request(sock, "POST", "/v3/reload", timeout=_reload_timeout(opts), accept_json=True)
            check(resp)
            result = _json_or_none(resp)
            if isinstance(result, dict) and result.get("reloaded") is False:
                raise Failed(f"reload failed: {result.get('error', 'unknown error')}")
        elif command == "upgrade":
            _upgrade(sock, opts.upgrade)
        elif command == "maintenance":
            which = "enable" if opts.maintenance == "enable" else "disable"
            check(request(sock, "POST", f"/v3/maintenance/{which}"))
        elif command == "putenv":
            check(request(sock, "POST", "/v3/environ", dict(opts.putenv)))
        elif command == "putmetric":
            # JSON: the server refuses (422, with why) a metric CP would have ignored with a 200
            check(request(sock, "POST", "/v3/metric", dict(opts.putmetric), accept_json=True))
        elif command == "ping":
            check(ping(sock))
            out.write("ok\n")
        elif command == "status":
            return _status(sock, opts.json, out, err, origin)
        elif command == "job":
            return _job(sock, opts, out, err, origin)
        elif command == "logs":
            return _logs(sock, opts, out, err, origin)
        else:
            return fatal(f"unknown subcommand {command!r}", err)
    except Failed as e:
        return fatal(prefix + str(e) + _origin(e, origin), err)
    return 0


UPGRADE_WAIT = 30.0  # for the new image to confirm (or the old one to say it rolled back)


def _pypilot_status(sock: str) -> dict[str, Any] | None:
    """The status's ``pypilot`` section; None while PID 1 does not answer (it is exec'ing)."""
    try:
        resp = request(sock, "GET", "/v3/status", timeout=5.0)
    except Failed:
        return None
    data = _json_or_none(resp) if resp.status == 200 else None
    section = data.get("pypilot") if isinstance(data, dict) else None
    return section if isinstance(section, dict) else None


def _upgrade(sock: str, path: str) -> None:
    """POST /v3/upgrade, then wait for the outcome: ``upgrades`` grows (done) or a new failed
    ``last_upgrade`` (rolled back, or the exec failed)."""
    import os
    import time

    before = _pypilot_status(sock)
    if before is None:
        check(request(sock, "GET", "/v3/status"))  # unreachable, or an answer that says why
        raise Failed("the server's status has no pypilot section: it cannot upgrade in place")
    body = {"path": os.path.abspath(path)}
    resp = request(sock, "POST", "/v3/upgrade", body, timeout=25.0, accept_json=True)
    if resp.status != 202:
        check(resp)
        raise Failed(f"upgrade refused: {_body_reason(resp)}")
    deadline = time.monotonic() + UPGRADE_WAIT
    while time.monotonic() < deadline:
        now = _pypilot_status(sock)
        if now is not None:
            last = now.get("last_upgrade") or {}
            if int(now.get("upgrades", 0)) > int(before.get("upgrades", 0)):
                return
            if last and last != before.get("last_upgrade") and last.get("ok") is False:
                raise Failed(f"upgrade failed: {last.get('message')}")
        time.sleep(0.02)
    raise Failed(f"no new pypilot confirmed the upgrade within {UPGRADE_WAIT:g}s")


def _origin(e: Failed, origin: str) -> str:
    """Say where the socket path came from when it could not be reached and was not the user's."""
    return f" (socket: {origin})" if origin and e.unreachable else ""


def _json_or_none(resp: Response) -> Any:
    import orjson

    try:
        return resp.json()
    except orjson.JSONDecodeError:
        return None


def _logs(sock: str, opts: Any, out: TextIO, err: TextIO | None, origin: str) -> int:
    """``logs NAME [-n N] [-f]``: the job's recent lines; with -f each new one, until interrupted."""
    from urllib.parse import quote

    name = opts.job_name
    path = f"/v3/jobs/{quote(name, safe='')}/logs"
    if opts.logs_lines is not None:
        path += f"?n={opts.logs_lines}"
    try:
        if not opts.logs_follow:
            resp = request(sock, "GET", path)
            check(resp)
            data = _json_or_none(resp) or {}
            _raw_note(name, data, err)
            out.write("".join(str(e.get("line", "")) + "\n" for e in data.get("lines") or []))
            return 0
        return _follow(sock, path + ("&" if "?" in path else "?") + "follow=1", name, out, err)
    except Failed as e:
        return fatal(f"logs {name}: failed: {e}{_origin(e, origin)}", err)
    except KeyboardInterrupt:
        return 130


def _raw_note(name: str, data: dict[str, Any], err: TextIO | None) -> None:
    if data.get("raw"):
        stream = err or sys.stderr
        stream.write(f"{name}: logging.raw is set: its output goes straight to pypilot's stdout and is not "
                     "kept\n")
        stream.flush()


def _follow(sock: str, path: str, name: str, out: TextIO, err: TextIO | None) -> int:
    """Read the server-sent events of a followed log; a line each ``data:``. The socket timeout is
    well over the server's keep-alive comments (15 s), so a server that went away is noticed."""
    import http.client

    import orjson

    conn = __getattr__("UnixHTTPConnection")(sock, 60.0)
    try:
        try:
            conn.connect()
        except OSError as e:
            raise Failed(f"Get http://control{path}: dial unix {sock}: connect: "
                         f"{(e.strerror or str(e)).lower()}", unreachable=True) from None
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            if resp.status != 200:
                check(Response(resp.status, resp.headers, resp.read()))
            event = ""
            while True:
                raw = resp.readline()
                if not raw:
                    raise Failed("the server closed the stream")
                text = raw.decode("utf-8", "replace").rstrip("\n")
                if text.startswith("event: "):
                    event = text[7:]
                elif text.startswith("data: ") and event == "line":
                    entry = orjson.loads(text[6:])
                    out.write(str(entry.get("line", "")) + "\n")
                    out.flush()
                elif text.startswith("data: ") and event == "raw":
                    _raw_note(name, {"raw": True}, err)
                elif text.startswith("data: ") and event == "overflow":
                    raise Failed("the server cut the stream off: this client read too slowly")
                elif not text:
                    event = ""
        except (OSError, http.client.HTTPException, orjson.JSONDecodeError) as e:
            raise Failed(f"Get http://control{path}: {e or type(e).__name__}") from None
    finally:
        conn.close()


# how long `job NAME stop|start|restart` waits for the job to settle before printing its state
SETTLE_TIMEOUT = 15.0


def _job(sock: str, opts: Any, out: TextIO, err: TextIO | None, origin: str) -> int:
    name, action = opts.job_name, opts.job_action
    from urllib.parse import quote

    body = {"signal": opts.job_signal} if action == "signal" else None
    try:
        before = _find_job(sock, name) if action in ("restart", "start") else None
        resp = request(sock, "POST", f"/v3/jobs/{quote(name, safe='')}/{action}", body)
        check(resp)
        job = (_json_or_none(resp) or {}).get("job") or {}
        settled = True
        if action != "signal":
            job, settled = _settle(sock, name, action, before, job)
    except Failed as e:
        return fatal(f"job {name} {action}: failed: {e}{_origin(e, origin)}", err)
    pid = job.get("pid") or "-"
    if settled:
        out.write(f"{name}: {action} done; state {job.get('state')}, pid {pid}\n")
    else:
        out.write(f"{name}: {action} in progress after {SETTLE_TIMEOUT:g}s; state {job.get('state')}, "
                  f"pid {pid}\n")
    return 0


def _find_job(sock: str, name: str) -> dict[str, Any] | None:
    resp = request(sock, "GET", "/v3/status")
    check(resp)
    data = _json_or_none(resp)
    jobs = data.get("jobs") if isinstance(data, dict) else None
    return next((j for j in jobs or [] if isinstance(j, dict) and j.get("name") == name), None)


def _settled(action: str, before: dict[str, Any] | None, job: dict[str, Any]) -> bool:
    state, pid = job.get("state"), job.get("pid")
    if state == "stopping":
        return False
    if action == "stop":
        return pid is None
    runs_before = (before or {}).get("runs", 0) or 0
    if action == "restart" and before is not None and before.get("pid") is not None:
        # the old process is gone and a new run began (or the job ended: completed, backoff, ...)
        return pid != before.get("pid") and (job.get("runs", 0) or 0) > runs_before
    return pid is not None or (job.get("runs", 0) or 0) > runs_before or state in ("completed", "backoff")


def _settle(sock: str, name: str, action: str, before: dict[str, Any] | None,
            job: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Poll the status until the job's state after ``action`` shows (bounded by SETTLE_TIMEOUT): the
    answer to the POST is the state at the moment the action was asked for, not its outcome."""
    import time

    deadline = time.monotonic() + SETTLE_TIMEOUT
    delay = 0.01
    while True:
        if job and _settled(action, before, job):
            return job, True
        if time.monotonic() >= deadline:
            return job, False
        time.sleep(delay)  # the client's own poll of the server, not synchronisation in pypilot
        delay = min(delay * 2, 0.2)
        job = _find_job(sock, name) or job


def _status(sock: str, as_json: bool, out: TextIO, err: TextIO | None, origin: str) -> int:
    try:
        resp = request(sock, "GET", "/v3/status")
        check(resp)
    except Failed as e:
        return fatal(f"status: failed: {e}{_origin(e, origin)}", err)
    data = resp.json()
    if as_json:
        import orjson

        out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    out.write(format_status(data))
    return 0


def format_status(data: dict[str, Any]) -> str:
    """The status as a table, one row a job, then maintenance and the control plane."""
    cols = ("NAME", "STATE", "STATUS", "PID", "RUNS", "RESTARTS", "LAST EXIT", "BACKOFF")
    rows = [cols]
    for job in data.get("jobs") or []:
        backoff = job.get("backoffUntil")
        rows.append(
            (
                str(job.get("name")),
                str(job.get("state")),
                str(job.get("status")),
                str(job.get("pid") or "-"),
                str(job.get("runs", 0)),
                str(job.get("restarts", 0)),
                "-" if job.get("lastExit") is None else str(job.get("lastExit")),
                "-" if backoff is None else f"{backoff:g}s",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for job in data.get("jobs") or []:  # what a `ready: "notify"` job said of itself (STATUS=, STOPPING=1)
        said = job.get("readiness") or {}
        if said.get("statusText") or said.get("stopping"):
            note = " (stopping)" if said.get("stopping") else ""
            lines.append(f"{job.get('name')}: {said.get('statusText') or ''}{note}".rstrip())
    lines.append("")
    lines.append(
        f"maintenance: {'on' if data.get('maintenance') else 'off'}"
        + ("   shutting down" if data.get("shuttingDown") else "")
    )
    if data.get("watches"):
        lines.append(f"watches: {', '.join(map(str, data['watches']))}")
    if isinstance(data.get("pypilot"), dict):
        lines.append(_pypilot_line(data["pypilot"]))
    return "\n".join(lines) + "\n"


def _pypilot_line(pp: dict[str, Any]) -> str:
    """``pypilot VERSION (PATH)``, and its last in-place upgrade, if any."""
    import time

    line = f"pypilot {pp.get('version')} ({pp.get('path')})"
    last = pp.get("last_upgrade")
    if isinstance(last, dict):
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(last.get("at") or 0)))
        outcome = "ok" if last.get("ok") else f"failed: {last.get('message')}"
        line += f"   last upgrade: to {last.get('to')} at {at}, {outcome} ({pp.get('upgrades', 0)} in all)"
    return line
