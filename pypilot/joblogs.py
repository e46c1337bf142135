"""Where a job's output lines go: pypilot's log (CP's default), or the job's own file with size
rotation (beyond CP: ``logging: {file, maxSize, keep, timestamps}``), and always a bounded buffer of
its recent lines for ``pypilot logs`` (GET /v3/jobs/{name}/logs).

One ``JobOutput`` per job name, kept across reloads (``for_job`` reconfigures it), so the buffer
survives a reload and the control plane finds it by name. It runs in PID 1, on every line, so it is
cheap and it never raises or blocks: the file is opened ``O_NONBLOCK`` (a FIFO with no reader fails
at open instead of freezing PID 1), a write that fails (full disk, unwritable path) is dropped and
counted, said once in pypilot's log, and said again with the count when writing works again. A file
that cannot be opened is retried at most once a second, and at once on SIGUSR1 (``reopen_all``).

Rotation, as supervisord does it: before a line would take the file over ``maxSize``, ``app.log.N``
is removed, ``app.log.{k}`` becomes ``app.log.{k+1}``, ``app.log`` becomes ``app.log.1`` and a new
``app.log`` is started; ``keep: 0`` truncates ``app.log`` instead; ``maxSize: 0`` never rotates
(for an external logrotate with SIGUSR1). Only regular files rotate (``/dev/stderr`` never does).
"""

from __future__ import annotations

import os
import stat
import time

from pypilot import logs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Callable

    from pypilot.config.model import JobConfig, JobLogConfig
else:  # the C deque itself: collections' own import (~2 ms) is not needed before the first spawn
    from _collections import deque

BUFFER_LINES = 1000  # recent lines kept per job for `pypilot logs`
BUFFER_BYTES = 256 << 10  # ... and at most this many bytes of them
RETRY_OPEN = 1.0  # seconds between attempts to open a file that could not be opened

Entry = tuple[int, float, str]  # (sequence number, time.time(), the line without its newline)
if TYPE_CHECKING:
    LineListener = Callable[[str, Entry], None]


class JobOutput:
    """One job's output: the buffer, and the file or pypilot's log. ``__call__(text)`` takes a line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cfg: JobLogConfig | None = None
        self.lines: deque[Entry] = deque()
        self.sizes: deque[int] = deque()  # each kept line's UTF-8 size, newline included
        self.bytes = 0
        self.seq = 0
        self.fd = -1
        self.size = 0
        self.regular = False
        self.dropped = 0  # lines the file did not get since the last report
        self.failing = ""  # why, once said; "" while writing works
        self._next_open = 0.0

    # --- configuration ----------------------------------------------------------------------------

    def configure(self, cfg: JobLogConfig | None) -> None:
        if cfg != self.cfg:
            self._close()
            self.cfg = cfg
            self._next_open = 0.0

    def reopen(self) -> None:
        """SIGUSR1: the file was moved away (logrotate): write to a new one at the path."""
        if self.cfg is not None:
            self._close()
            self._next_open = 0.0

    # --- lines ------------------------------------------------------------------------------------

    def __call__(self, text: str) -> None:
        now = time.time()
        self.seq += 1
        kept = text if len(text) <= BUFFER_BYTES // 4 else _clip(text)
        entry = (self.seq, now, kept)
        self.lines.append(entry)
        self.sizes.append(size := _size(kept))
        self.bytes += size
        while len(self.lines) > BUFFER_LINES or self.bytes > BUFFER_BYTES:
            self.lines.popleft()
            self.bytes -= self.sizes.popleft()
        if _listener is not None:
            _listener(self.name, entry)
        if self.cfg is None:
            logs.info(text, job=self.name)
        else:
            self._write_file(text, now)

    def restore(self, seq: int, lines: list[Entry]) -> None:
        """An in-place upgrade: the recent lines the previous image kept, and its line count."""
        self.seq = seq
        self.lines, self.sizes = deque(lines), deque(_size(e[2]) for e in lines)
        self.bytes = sum(self.sizes)

    def recent(self, n: int | None = None) -> list[Entry]:
        if n is None or n >= len(self.lines):
            return list(self.lines)
        return list(self.lines)[len(self.lines) - n:] if n > 0 else []

    # --- the file ---------------------------------------------------------------------------------

    def _write_file(self, text: str, now: float) -> None:
        cfg = self.cfg
        assert cfg is not None
        line = (f"{_stamp(now)} {text}\n" if cfg.timestamps else text + "\n").encode("utf-8", "replace")
        if self.fd < 0 and not self._open(now):
            self.dropped += 1
            return
        if self.regular and cfg.max_size and self.size and self.size + len(line) > cfg.max_size:
            self._rotate()
            if self.fd < 0 and not self._open(now):
                self.dropped += 1
                return
        try:
            view = memoryview(line)
            while view:
                try:
                    n = os.write(self.fd, view)
                except InterruptedError:
                    continue
                view = view[n:]
                self.size += n
        except OSError as e:  # full disk, a FIFO nobody reads: the line is lost, PID 1 goes on
            self.dropped += 1
            self._fail(str(e.strerror or e).lower())
            return
        if self.failing:
            logs.warn(f"{self.name}: writing its log file {cfg.file} works again; "
                      f"{self.dropped} output line(s) were not written to it", job=None)
            self.failing, self.dropped = "", 0

    def _open(self, now: float) -> bool:
        cfg = self.cfg
        assert cfg is not None
        if now < self._next_open:
            return False
        self._next_open = now + RETRY_OPEN
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            self.fd = os.open(cfg.file, flags, 0o644)
            st = os.fstat(self.fd)
        except OSError as e:
            self._close()
            self._fail(f"cannot open it: {str(e.strerror or e).lower()}")
            return False
        self.regular = stat.S_ISREG(st.st_mode)
        self.size = st.st_size if self.regular else 0
        return True

    def _rotate(self) -> None:
        cfg = self.cfg
        assert cfg is not None
        self._close()
        self._next_open = 0.0  # the caller opens the new file at once
        path = cfg.file
        try:
            if cfg.keep <= 0:
                os.truncate(path, 0)
                return
            for k in range(cfg.keep - 1, 0, -1):
                if os.path.lexists(f"{path}.{k}"):
                    os.replace(f"{path}.{k}", f"{path}.{k + 1}")
            os.replace(path, f"{path}.1")
        except OSError as e:  # rotation failed: go on appending to the one file rather than lose lines
            self._fail(f"cannot rotate it: {str(e.strerror or e).lower()}")
            if self._open(time.time()):
                self.size = 0  # try again after another maxSize, not on every line

    def _fail(self, why: str) -> None:
        if not self.failing:
            assert self.cfg is not None
            logs.error(f"{self.name}: log file {self.cfg.file}: {why}; output lines that cannot be "
                       "written are dropped and counted (kept in `pypilot logs` meanwhile)")
            self.failing = why

    def _close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1


def _size(text: str) -> int:
    return len(text) + 1 if text.isascii() else len(text.encode("utf-8", "replace")) + 1


def _clip(text: str) -> str:
    """A line too long for the buffer keeps its start, up to BUFFER_BYTES in UTF-8."""
    return text.encode("utf-8", "replace")[: BUFFER_BYTES - 1].decode("utf-8", "ignore")


_second: list[object] = [-1, "", ""]  # (second, its "YYYY-MM-DDTHH:MM:SS", zone): one strftime a second


def _stamp(t: float) -> str:
    """RFC 3339 with microseconds in local time, as pypilot's own log lines start."""
    sec = int(t)
    if sec != _second[0]:
        tm = time.localtime(sec)
        off = tm.tm_gmtoff
        sign = "+" if off > 0 else "-"
        zone = "Z" if off == 0 else f"{sign}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}"
        _second[:] = [sec, time.strftime("%Y-%m-%dT%H:%M:%S", tm), zone]
    return f"{_second[1]}.{int((t - sec) * 1e6):06d}{_second[2]}"


_outputs: dict[str, JobOutput] = {}
_listener: LineListener | None = None


def for_job(cfg: JobConfig) -> JobOutput:
    """The job's output, made on first use and reconfigured by a reload; same object by name."""
    out = _outputs.get(cfg.name)
    if out is None:
        out = _outputs[cfg.name] = JobOutput(cfg.name)
    out.configure(cfg.log)
    return out


def get(name: str) -> JobOutput | None:
    return _outputs.get(name)


def all_outputs() -> dict[str, JobOutput]:
    return dict(_outputs)


def set_listener(listener: LineListener | None) -> None:
    """Every job's every line goes to ``listener`` too (the control plane, for ``logs -f``)."""
    global _listener
    _listener = listener


def reopen_all() -> None:
    for out in _outputs.values():
        out.reopen()


logs.on_reopen(reopen_all)
