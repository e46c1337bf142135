"""One running command of a job or a check: spawn, output, timeout, signals, exit (CP §4.5).

A ``Command`` spawns through the reaper into its own process group, logs its output line by line with its
name, or hands each line to its ``sink`` (or leaves stdout/stderr untouched when raw), kills its group at
its timeout, and reports its exit status once. While it runs, ``CONTAINERPILOT_<ENVNAME>_PID`` is set in PID
1's environment so that later spawns see it. It decides nothing: the job does.
"""

from __future__ import annotations

import os

from pypilot import logs, reaper
from pypilot.loop import Loop, Timer

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable, Sequence
    from typing import Any

    from pypilot.config.model import ProcessConfig
    from pypilot.readiness import Readiness

    ExitCallback = Callable[[int | None, str | None], None]  # (wait status, or None + start error)
else:  # the C module's plain ints: signal.py builds IntEnums (enum, functools: ~3 M instructions)
    import _signal as signal

_devnull = -1


def _stdin() -> int:
    global _devnull
    if _devnull < 0:
        _devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull


def _forget_devnull() -> None:
    """A forked worker closes every fd PID 1 had: its checks must open their own /dev/null, not pass
    whatever fd now has that number (or none: "bad file descriptor") as the check's stdin."""
    global _devnull
    _devnull = -1


os.register_at_fork(after_in_child=_forget_devnull)


def setenv(key: str, value: str) -> None:
    """Set ``key`` in ``os.environ``, which every spawn's environment is built from, without C's
    setenv: glibc keeps every value ever set for good (about 80 bytes each), and a job's PID variable
    takes a new value at each spawn, so PID 1 grew with every restart (#15). Nothing in pypilot reads
    the C environment: spawns pass ``os.environ`` explicitly."""
    env = os.environ
    data = getattr(env, "_data", None)
    if data is None:  # not CPython's _Environ: the plain (leaking) way
        env[key] = value
        return
    data[env.encodekey(key)] = env.encodevalue(value)


def unsetenv(key: str) -> None:
    env = os.environ
    data = getattr(env, "_data", None)
    if data is None:
        env.pop(key, None)
        return
    data.pop(env.encodekey(key), None)


def go_duration(seconds: float) -> str:
    """Seconds in Go's Duration.String() form, as CP's log lines print them (100ms, 1.5s, 2m0s)."""
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms" if ms >= 1 else f"{seconds * 1e6:g}µs"
    if seconds < 60:
        return f"{seconds:g}s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{int(m)}m{s:g}s"
    h, m = divmod(m, 60)
    return f"{int(h)}h{int(m)}m{s:g}s"


class _Output:
    """The read end of one run's stdout+stderr pipe; it outlives the run while stragglers write."""

    def __init__(self, loop: Loop, fd: int, emit: Callable[[bytes], None]) -> None:
        self.loop, self.fd, self.emit = loop, fd, emit
        self.splitter = logs.LineSplitter()
        loop.add_reader(fd, self.on_readable)

    def on_readable(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            for line in self.splitter.feed(chunk):
                self.emit(line)
            return
        for line in self.splitter.flush():
            self.emit(line)
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1


class Command:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        loop: Loop,
        reaper_: reaper.Reaper,
        raw: bool = False,
        timeout: float | None = None,
        env_name: str | None = None,
        process: ProcessConfig | None = None,
        interactive: bool = False,
        sink: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = tuple(argv)
        self.loop = loop
        self.reaper = reaper_
        self.raw = raw
        self.timeout = timeout
        self.env_name = env_name
        self.process = process  # user, limits, ...: applied by the reaper's clone path (beyond CP)
        self.interactive = interactive  # tini mode: pypilot's stdin, and its terminal if it is one
        self.sink = sink  # takes each output line (``joblogs.JobOutput``); None: pypilot's log
        self.pid = 0
        self.pidfd = -1
        self.started_at = 0.0
        self._on_exit: ExitCallback | None = None
        self._timer: Timer | None = None
        self._output: _Output | None = None
        self.readiness: Readiness | None = None  # the job's ready channel: env and an fd for each spawn

    @property
    def running(self) -> bool:
        return self.pid != 0

    def start(self, on_exit: ExitCallback) -> None:
        """Spawn; the outcome always arrives later through ``on_exit``, even a failure to start,
        so that a command that cannot start at all can never spin inside one loop iteration."""
        self._on_exit = on_exit
        rd = out = -1
        if not self.raw:
            rd, out = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(rd, False)
        since = self.reaper.generation
        try:
            pid = self._spawn(out)
        except OSError as e:
            if self.readiness is not None:
                self.readiness.spawned(None)
            if rd >= 0:
                os.close(rd)
                os.close(out)
            err = f"fork/exec {self.argv[0]}: {os.strerror(e.errno or 0).lower()}"
            if isinstance(e, reaper.SpawnError) and e.stage:  # a step before the exec: setuid, chdir, ...
                err = f"{self.argv[0]}: {e.stage}: {os.strerror(e.errno or 0).lower()}"
            self.loop.call_soon(lambda: on_exit(None, err))
            return
        if rd >= 0:
            os.close(out)
            self._output = _Output(self.loop, rd, self._log_line)
        self.pid = pid
        if self.readiness is not None:
            self.readiness.spawned(pid)
        self.pidfd = reaper.pidfd_open(pid)
        self.started_at = self.loop.now()
        # CP sends SIGTERM to whatever is left of the group when the leader exits
        self.reaper.register(pid, self._on_reaped, group_signal=signal.SIGTERM, since=since)
        if self.env_name:
            setenv(f"CONTAINERPILOT_{self.env_name}_PID", str(pid))
        if self.timeout:
            self._timer = self.loop.call_later(self.timeout, self._on_timeout)
        logs.debug(f"{self.name}.Run start")

    def _spawn(self, out: int) -> int:
        if self.process is None and not self.interactive and self.readiness is None:
            return reaper.spawn(self.argv, stdin=_stdin(), stdout=out, stderr=out)  # as CP: the hot path
        extra: dict[str, str] = {}
        pass_fd = None
        if self.readiness is not None:  # `ready`: NOTIFY_SOCKET in its environment, or its notification fd
            extra, pass_fd = self.readiness.spawn_args()
        tty = -1
        stdin = _stdin()
        if self.interactive:
            try:
                os.fstat(0)
                stdin = 0  # pypilot's own, when it has one
                tty = 0 if os.isatty(0) else -1
            except OSError:
                pass
        p = self.process
        env = None
        if extra or (p is not None and p.env):
            env = dict(os.environ)
            for key, value in p.env if p is not None else ():
                if value is None:
                    env.pop(key, None)
                else:
                    env[key] = value
            env.update(extra)
        if p is None:
            return reaper.spawn(self.argv, env=env, stdin=stdin, stdout=out, stderr=out, tty_fd=tty,
                                pass_fd=pass_fd)
        uid, gid, groups = p.uid, p.gid, p.groups
        euid = os.geteuid()
        if euid != 0 and uid in (None, euid) and gid in (None, os.getegid()):
            uid = gid = groups = None  # a non-root pypilot already is that user (USER in the image)
        return reaper.spawn(
            self.argv, env=env, cwd=p.workdir, stdin=stdin, stdout=out, stderr=out, uid=uid, gid=gid,
            groups=groups, umask=p.umask, rlimits=p.rlimits, no_new_privs=p.no_new_privileges,
            ppid_shim=p.ppid_shim, tty_fd=tty, pass_fd=pass_fd)

    def handover(self, fds: list[int]) -> dict[str, object] | None:
        """The running process (None if none) for an in-place upgrade: its PID, when it started, its
        timeout's deadline, its output pipe (the fd goes to ``fds``) and the half line read so far."""
        if not self.pid:
            return None
        out = self._output
        if out is not None and out.fd < 0:  # its pipe hit EOF before the exit was handled: nothing to read
            out = None
        if out is not None:
            fds.append(out.fd)
        return {
            "pid": self.pid,
            "started_at": self.started_at,
            "timeout_at": self._timer.deadline if self._timer is not None else None,
            "output_fd": out.fd if out is not None else -1,
            "partial": out.splitter._pending.hex() if out is not None else "",  # the half line
        }

    def resume(self, s: dict[str, Any] | None, on_exit: ExitCallback) -> None:
        """Adopt the process ``handover`` described: its exit (perhaps a zombie already) comes
        through the reaper as if this image had spawned it."""
        if s is None:
            return
        self._on_exit = on_exit
        self.pid, self.started_at = int(s["pid"]), float(s["started_at"])
        if s["output_fd"] >= 0:
            self._output = _Output(self.loop, int(s["output_fd"]), self._log_line)
            self._output.splitter._pending = bytes.fromhex(s["partial"])
        self.pidfd = reaper.pidfd_open(self.pid)
        self.reaper.register(self.pid, self._on_reaped, group_signal=signal.SIGTERM)
        if s["timeout_at"] is not None:
            self._timer = self.loop.call_at(float(s["timeout_at"]), self._on_timeout)

    def signal(self, sig: int) -> bool:
        """Signal the command's whole process group; False when nothing is left to signal."""
        if not self.pid:
            return False
        try:
            return reaper.kill_group(self.pid, sig, self.pidfd)
        except OSError as e:
            logs.warn(f"signalling {self.name} ({self.pid}) failed: {e}")
            return False

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def _on_timeout(self) -> None:
        self._timer = None
        args = "[" + " ".join(self.argv[1:]) + "]"
        logs.warn(f"{self.name} timeout after {go_duration(self.timeout or 0)}: '{args}'")
        self.signal(signal.SIGKILL)

    def _log_line(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if self.sink is not None:
            self.sink(text)
        else:
            logs.info(text, job=self.name)

    def _on_reaped(self, pid: int, status: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        if self.env_name:
            unsetenv(f"CONTAINERPILOT_{self.env_name}_PID")
        self.pid = 0
        if self.readiness is not None:
            self.readiness.exited()
        if self._output is not None:  # take what the leader wrote; stragglers may write on
            self._output.on_readable()
            self._output = None
        logs.debug(f"{self.name}.Run end")
        on_exit, self._on_exit = self._on_exit, None
        if on_exit is not None:
            on_exit(status, None)
