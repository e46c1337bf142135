"""pypilot's own log, in ContainerPilot's three formats, and the line splitter for job output.

Formats (CP §10.3): ``default`` = ``<RFC3339Nano>[ <job>][ <pid>] <msg>``; ``text`` = logrus
``time="…" level=info msg="…" job=x``; ``json`` = one object a line, keys sorted. Output is stdout,
stderr or a file reopened on SIGUSR1. A write that fails (closed pipe, full disk) is dropped and
counted, never raised: a broken log must not fail a job or PID 1 (CP #423). When stdout or
stderr is a pipe, PID 1 writes through a non-blocking open file description of its own (the jobs
keep the blocking one they share), so a reader that stops reading cannot freeze PID 1: output
waits in a bounded buffer flushed when the pipe drains, and what overflows is counted and said.

No stdlib ``logging`` here: PID 1 imports this at start-up and needs none of its machinery.
"""

from __future__ import annotations

import os
import stat
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections.abc imports collections (~2 ms): for annotations only
    from collections.abc import Callable
    from typing import Any

DEBUG, INFO, WARN, ERROR, FATAL = 10, 20, 30, 40, 50
LEVELS = {
    "DEBUG": DEBUG,
    "INFO": INFO,
    "WARN": WARN,
    "WARNING": WARN,
    "ERROR": ERROR,
    "FATAL": FATAL,
    "PANIC": FATAL,
}
_NAMES = {DEBUG: "debug", INFO: "info", WARN: "warning", ERROR: "error", FATAL: "fatal"}


class _State:
    level = INFO
    format = "default"
    output = "stdout"
    fd = 1
    dropped = 0
    pending = bytearray()
    loop: Any = None  # the PID-1 loop, to flush pending output when the pipe drains
    sink: Callable[[bytes], None] | None = None  # in a worker: hand lines to PID 1, the log's one writer


_s = _State()


def configure(level: str = "INFO", fmt: str = "default", output: str = "stdout") -> None:
    """Switch level, format and output; raises ValueError naming the bad value."""
    lvl = LEVELS.get(level.upper())
    if lvl is None:
        raise ValueError(f"Unknown log level '{level}'")
    if fmt.lower() not in ("default", "text", "json"):
        raise ValueError(f"Unknown log format '{fmt}'")
    fd = _open(output)
    old = _s.fd
    _s.level, _s.format, _s.output, _s.fd = lvl, fmt.lower(), output, fd
    if old > 2 and old != fd:
        os.close(old)


MAX_PENDING = 4 << 20


def _open(output: str) -> int:
    if output.lower() in ("stdout", "stderr"):
        return _private(1 if output.lower() == "stdout" else 2)
    try:
        return os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise ValueError(f"Error initializing log file '{output}': {e}") from e


def _private(fd: int) -> int:
    """A non-blocking description of our own for a pipe on ``fd``; ``fd`` itself otherwise."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return fd  # files never block for long; a socket cannot be reopened this way
        return os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return fd


def attach(loop: Any) -> None:
    """Let pending output be flushed by ``loop`` (add_writer/remove_writer) when the pipe drains."""
    _s.loop = loop


def flush() -> None:
    if _s.pending:
        _write(_s.fd, b"")
    if not _s.pending and _s.loop is not None:
        _s.loop.remove_writer(_s.fd)


_reopen_hooks: list[Callable[[], None]] = []


def on_reopen(hook: Callable[[], None]) -> None:
    """Call ``hook`` on SIGUSR1 as well (the jobs' own log files, ``pypilot.joblogs``)."""
    _reopen_hooks.append(hook)


def reopen() -> None:
    """SIGUSR1: reopen a file output (after logrotate moved it); nothing for stdout/stderr."""
    for hook in _reopen_hooks:
        hook()
    if _s.output.lower() in ("stdout", "stderr"):
        return
    try:
        fd = _open(_s.output)
    except ValueError as e:
        error(str(e))
        return
    os.close(_s.fd)
    _s.fd = fd


def set_sink(sink: Callable[[bytes], None] | None) -> None:
    _s.sink = sink


def enabled(level: int) -> bool:
    return level >= _s.level


def _timestamp(nano: bool) -> str:
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    tm = time.localtime(secs)
    off = tm.tm_gmtoff
    zone = "Z" if off == 0 else f"{'+' if off > 0 else '-'}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}"
    base = time.strftime("%Y-%m-%dT%H:%M:%S", tm)
    if nano and frac:
        base += "." + f"{frac:09d}".rstrip("0")
    return base + zone


def _quote(v: str) -> str:
    if v and all(c.isalnum() or c in "-._/@^+" for c in v):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def format_line(level: int, msg: str, job: str | None = None, pid: int | None = None) -> str:
    if _s.format == "json":
        import orjson

        rec: dict[str, object] = {"level": _NAMES[level], "msg": msg, "time": _timestamp(True)}
        if job:
            rec["job"] = job
        if pid:
            rec["pid"] = pid
        return orjson.dumps(rec, option=orjson.OPT_SORT_KEYS).decode() + "\n"
    if _s.format == "text":
        line = f'time="{_timestamp(False)}" level={_NAMES[level]} msg={_quote(msg)}'
        if job:
            line += f" job={_quote(job)}"
        if pid:
            line += f" pid={pid}"
        return line + "\n"
    parts = [_timestamp(True)]
    if job:
        parts.append(job)
    if pid:
        parts.append(str(pid))
    parts.append(msg)
    return " ".join(parts) + "\n"


def write_raw(data: bytes, fd: int | None = None) -> None:
    """Write all of ``data``; a failure drops the rest (counted), never raises."""
    if _s.sink is not None and fd is None:
        _s.sink(data)
        return
    _write(_s.fd if fd is None else fd, data)


def _write(fd: int, data: bytes) -> None:
    if _s.pending:  # keep the order: nothing overtakes what is waiting
        if len(_s.pending) + len(data) > MAX_PENDING:
            _s.dropped += 1
            return
        _s.pending += data
        data = b""
    if _s.dropped and not _s.pending:
        note, _s.dropped = _s.dropped, 0
        data = f"pypilot: {note} log entries dropped (output blocked or failing)\n".encode() + data
    view = memoryview(bytes(_s.pending) + data if _s.pending else data)
    _s.pending = bytearray()
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except BlockingIOError:
            _s.pending += view
            if _s.loop is not None:
                _s.loop.add_writer(fd, flush)
            return
        except OSError:
            _s.dropped += 1
            return
        view = view[n:]


def log(level: int, msg: str, job: str | None = None, pid: int | None = None) -> None:
    if level < _s.level:
        return
    write_raw(format_line(level, msg, job, pid).encode("utf-8", "backslashreplace"))


def debug(msg: str, job: str | None = None) -> None:
    if _s.level <= DEBUG:
        log(DEBUG, msg, job)


def info(msg: str, job: str | None = None, pid: int | None = None) -> None:
    log(INFO, msg, job, pid)


def warn(msg: str, job: str | None = None) -> None:
    log(WARN, msg, job)


def error(msg: str, job: str | None = None) -> None:
    log(ERROR, msg, job)


def exception(msg: str, exc: BaseException) -> None:
    """An internal failure PID 1 survived: the cause and where, on one entry."""
    import traceback

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    log(ERROR, f"{msg}: {exc!r}\n{tb}")


def dropped() -> int:
    return _s.dropped


class LineSplitter:
    """Turns a child's output chunks into whole lines, whatever their length (CP broke at 64 KiB)."""

    MAX_PENDING = 1 << 20  # a line longer than this is emitted in pieces rather than held forever

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) >= self.MAX_PENDING:
            lines.append(self._pending)
            self._pending = b""
        return lines

    def flush(self) -> list[bytes]:
        rest, self._pending = self._pending, b""
        return [rest] if rest else []


def fatal_early(msg: str) -> None:
    """Before logging is configured: default format on stdout, as CP does."""
    sys.stdout.flush()
    write_raw(format_line(FATAL, msg).encode(), 1)
