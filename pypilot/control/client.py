"""The CLI's side of the control plane: ContainerPilot 3's subcommands and pypilot's own.

``run_subcommand(opts)`` runs ``-reload``, ``-maintenance enable|disable``, ``-putenv K=V``,
``-putmetric K=V`` and ``-ping`` (CP §8.2, CP's precedence is ``Options.command``), and the positional
``status [--json]`` and ``job NAME signal SIG|stop|start|restart``. The socket is found through
``-config`` as CP does (the config is loaded). Failures are logrus-style fatal lines on stderr with
CP's messages, exit 1; CP's putenv/putmetric message bug (they said ``-reload:``) is fixed.

Differences from CP's client, on purpose: any non-2xx answer is a failure (CP ignored all but 422,
which its own server never sent otherwise), and a reload the server rejected or rolled back fails.
"""

from __future__ import annotations

import http.client
import socket
import sys
from typing import Any, TextIO

import orjson

CONTROL_COMMANDS = ("reload", "maintenance", "putenv", "putmetric", "ping")
POSITIONAL = ("status", "job")
ERROR_HEADER = "X-Pypilot-Error"


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 to host ``control`` over a unix socket, as CP's client dials it."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("control", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Failed(Exception):
    pass


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def why(self) -> str:
        return self.headers.get(ERROR_HEADER, "") or ""

    def json(self) -> Any:
        return orjson.loads(self.body)


def request(
    socket_path: str,
    method: str,
    path: str,
    body: Any = None,
    timeout: float = 10.0,
    accept_json: bool = False,
) -> Response:
    """One request; Failed with Go's error text when the socket cannot be reached."""
    conn = UnixHTTPConnection(socket_path, timeout)
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
            raise Failed(f"{method.title()} {url}: dial unix {socket_path}: connect: {reason}") from None
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    except (OSError, http.client.HTTPException) as e:
        raise Failed(f"{method.title()} http://control{path}: {e or type(e).__name__}") from None
    finally:
        conn.close()


def check(resp: Response) -> None:
    """CP: a 422 is ``unprocessable entity received by control server``; pypilot: any non-2xx fails."""
    if 200 <= resp.status < 300:
        return
    if resp.status == 422:
        msg = "unprocessable entity received by control server"
    else:
        msg = f"control server answered {resp.status}"
    raise Failed(f"{msg}: {resp.why}" if resp.why else msg)


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
    return opts.command in CONTROL_COMMANDS or (
        opts.command == "run" and bool(opts.args) and opts.args[0] in POSITIONAL
    )


def run_subcommand(opts: Any, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the subcommand ``opts`` asks for; the process's exit code."""
    out = out or sys.stdout
    command = opts.command
    if command not in CONTROL_COMMANDS:
        command = opts.args[0] if opts.args else ""
    if command == "ping":
        prefix = "-ping: failed: "
    elif command in CONTROL_COMMANDS:
        prefix = f"-{command}: failed to run subcommand: "
    else:
        prefix = f"{command}: failed: "
    from pypilot.config import ConfigError, load

    config_path = opts.config or _config_in(opts.args) or None
    try:
        cfg = load(config_path)
    except (ConfigError, ValueError) as e:
        return fatal(str(e), err)
    sock = cfg.control.socket
    try:
        if command == "reload":
            timeout = cfg.control.reload_grace + 60
            resp = request(sock, "POST", "/v3/reload", timeout=timeout, accept_json=True)
            check(resp)
            result = _json_or_none(resp)
            if isinstance(result, dict) and result.get("reloaded") is False:
                raise Failed(f"reload failed: {result.get('error', 'unknown error')}")
        elif command == "maintenance":
            which = "enable" if opts.maintenance == "enable" else "disable"  # CP: anything else disables
            check(request(sock, "POST", f"/v3/maintenance/{which}"))
        elif command == "putenv":
            check(request(sock, "POST", "/v3/environ", dict(opts.putenv)))
        elif command == "putmetric":
            check(request(sock, "POST", "/v3/metric", dict(opts.putmetric)))
        elif command == "ping":
            check(request(sock, "GET", "/v3/ping"))
            out.write("ok\n")
        elif command == "status":
            return _status(sock, _split_config(opts.args[1:])[1], out, err)
        elif command == "job":
            return _job(sock, _split_config(opts.args[1:])[1], out, err)
        else:
            return fatal(f"unknown subcommand {command!r}", err)
    except Failed as e:
        return fatal(prefix + str(e), err)
    return 0


def _config_in(args: list[str]) -> str:
    """``-config FILE`` given after a positional subcommand (``pypilot status -config f``)."""
    return _split_config(args)[0]


def _split_config(args: list[str]) -> tuple[str, list[str]]:
    config, rest, i = "", [], 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name == "config":
            config = value if eq else (args[i + 1] if i + 1 < len(args) else "")
            i += 1 if eq else 2
            continue
        rest.append(arg)
        i += 1
    return config, rest


def _json_or_none(resp: Response) -> Any:
    try:
        return resp.json()
    except orjson.JSONDecodeError:
        return None


JOB_USAGE = "usage: pypilot [-config FILE] job NAME signal SIGNAL|stop|start|restart"


def _job(sock: str, args: list[str], out: TextIO, err: TextIO | None) -> int:
    if (
        len(args) < 2
        or args[1] not in ("signal", "stop", "start", "restart")
        or (args[1] == "signal" and len(args) != 3)
        or (args[1] != "signal" and len(args) != 2)
    ):
        (err or sys.stderr).write(JOB_USAGE + "\n")
        return 2
    name, action = args[0], args[1]
    from urllib.parse import quote

    body = {"signal": args[2]} if action == "signal" else None
    try:
        resp = request(sock, "POST", f"/v3/jobs/{quote(name, safe='')}/{action}", body)
        check(resp)
    except Failed as e:
        return fatal(f"job {name} {action}: failed: {e}", err)
    job = (_json_or_none(resp) or {}).get("job") or {}
    out.write(f"{name}: {action} done; state {job.get('state')}, pid {job.get('pid') or '-'}\n")
    return 0


def _status(sock: str, args: list[str], out: TextIO, err: TextIO | None) -> int:
    as_json = "--json" in args or "-json" in args
    try:
        resp = request(sock, "GET", "/v3/status")
        check(resp)
    except Failed as e:
        return fatal(f"status: failed: {e}", err)
    data = resp.json()
    if as_json:
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
    lines.append("")
    lines.append(
        f"maintenance: {'on' if data.get('maintenance') else 'off'}"
        + ("   shutting down" if data.get("shuttingDown") else "")
    )
    if data.get("watches"):
        lines.append(f"watches: {', '.join(map(str, data['watches']))}")
    return "\n".join(lines) + "\n"
