"""A job's own word that it is ready (beyond CP, issue #16): the sd_notify protocol or s6's notification fd.

``ready: "notify"``: the job gets ``NOTIFY_SOCKET``, a unix datagram socket of its own that PID 1 binds in
a private directory and polls in its loop (never blocking). ``SO_PASSCRED`` makes the kernel attach the
sender's pid to every datagram, so only the job's own processes are heard: a sender in the job's process
group, or the ``MAINPID=`` one of them named; anything else is dropped (and logged once). ``READY=1``,
``STATUS=``, ``WATCHDOG=1`` (with ``watchdog``: silence for that long means hung), ``STOPPING=1``.

``ready: {fd: N}``: the job gets a pipe's write end at fd N; the first newline on it means ready, then the
read end is closed (s6-supervise's notification-fd).

This module only listens and keeps the job's readiness facts; what they mean (the ``healthy`` event, a
restart) the job decides, through the two callbacks it gives.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable

from pypilot import logs
from pypilot.config.model import ReadyConfig
from pypilot.loop import Loop, Timer

_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
_MAX_DATAGRAM = 4096
_MAX_FDS = 16  # room for fds a job might send (FDSTORE=1): they are closed, not kept
_BURST = 64  # datagrams read per wake-up: a chatty job cannot hold the loop


class Readiness:
    """One job's readiness channel and what it last said; it outlives runs, facts are per run."""

    def __init__(
        self,
        cfg: ReadyConfig,
        job: str,
        loop: Loop,
        on_ready: Callable[[], None],
        on_watchdog: Callable[[], None],
        group: Callable[[], int],
    ) -> None:
        self.cfg, self.job, self.loop = cfg, job, loop
        self._on_ready, self._on_watchdog, self._group = on_ready, on_watchdog, group
        self.ready = False
        self.status_text: str | None = None
        self.stopping = False
        self.main_pid = 0
        self._sock: socket.socket | None = None
        self._dir = ""
        self._read_fd = self._write_fd = -1
        self._watchdog: Timer | None = None
        self._told_stranger = False

    # --- the command's side: each spawn -----------------------------------------------------------

    def spawn_args(self) -> tuple[dict[str, str], tuple[int, int] | None]:
        """What the next spawn adds: environment variables, and an fd for the child (fd, target)."""
        self.ready, self.status_text, self.stopping, self.main_pid = False, None, False, 0
        if self.cfg.kind == "notify":
            env = {"NOTIFY_SOCKET": self._bind()}
            if self.cfg.watchdog:
                env["WATCHDOG_USEC"] = str(int(self.cfg.watchdog * 1_000_000))
            return env, None
        self._close_pipe()
        self._read_fd, self._write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        os.set_blocking(self._write_fd, True)  # the job's end: a job's plain `echo >&3` must not see EAGAIN
        self.loop.add_reader(self._read_fd, self._on_pipe)
        return {}, (self._write_fd, self.cfg.fd)

    def spawned(self, pid: int | None) -> None:
        """The spawn is over (``pid`` None: it failed): PID 1 keeps only its read end."""
        if self._write_fd >= 0:
            os.close(self._write_fd)
            self._write_fd = -1
        if pid is None:
            self._close_pipe()
            return
        if self.cfg.watchdog:
            self._arm_watchdog()

    def exited(self) -> None:
        """The job's process has exited: a watchdog has nothing left to watch."""
        self._cancel_watchdog()
        if self._read_fd >= 0:
            self._on_pipe()  # a newline written just before the exit still counts
        self._close_pipe()

    def close(self) -> None:
        """The job has completed: the socket and its directory go."""
        self.exited()
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            for path in (os.path.join(self._dir, "notify.sock"), self._dir):
                try:
                    os.unlink(path) if path != self._dir else os.rmdir(path)
                except OSError:
                    pass

    def snapshot(self) -> dict[str, object]:
        return {"ready": self.ready, "statusText": self.status_text, "stopping": self.stopping}

    # --- an in-place upgrade (``pypilot.handover``) ---------------------------------------------------

    def handover(self, fds: list[int]) -> dict[str, object]:
        """What was said and the listening fds (to ``fds``: they survive the exec, so a job's next
        datagram or newline reaches the new image)."""
        sock_fd = self._sock.fileno() if self._sock is not None else -1
        fds.extend(fd for fd in (sock_fd, self._read_fd) if fd >= 0)
        watchdog = self._watchdog
        return {
            "ready": self.ready, "status_text": self.status_text, "stopping": self.stopping,
            "main_pid": self.main_pid, "told_stranger": self._told_stranger, "dir": self._dir,
            "sock_fd": sock_fd, "read_fd": self._read_fd,
            "watchdog_at": watchdog.deadline if watchdog is not None and not watchdog.cancelled else None,
        }

    def resume(self, s: dict[str, object]) -> None:
        self.ready, self.stopping = bool(s["ready"]), bool(s["stopping"])
        text = s["status_text"]
        self.status_text = text if isinstance(text, str) else None
        self.main_pid, self._told_stranger = int(str(s["main_pid"])), bool(s["told_stranger"])
        self._dir = str(s["dir"])
        sock_fd, read_fd = int(str(s["sock_fd"])), int(str(s["read_fd"]))
        if sock_fd >= 0:
            self._sock = socket.socket(fileno=sock_fd)
            self.loop.add_reader(sock_fd, self._on_datagram)
        if read_fd >= 0:
            self._read_fd = read_fd
            self.loop.add_reader(read_fd, self._on_pipe)
        at = s["watchdog_at"]
        if isinstance(at, float | int):
            self._watchdog = self.loop.call_at(float(at), self._watchdog_expired)

    # --- sd_notify ---------------------------------------------------------------------------------

    def _bind(self) -> str:
        if self._sock is not None:
            return os.path.join(self._dir, "notify.sock")
        import tempfile  # only a config with `ready: "notify"` pays for it

        # $TMPDIR when set, else /run (a container's tmpfs: nothing outlives it), else the temp dir
        base = os.environ.get("TMPDIR") or ("/run" if os.access("/run", os.W_OK | os.X_OK) else None)
        self._dir = tempfile.mkdtemp(prefix="pypilot-notify-", dir=base)
        # search only: a job running as another user reaches its socket, nobody lists the directory; who
        # may notify is decided by the sender's credentials, not by the file's mode
        os.chmod(self._dir, 0o711)
        path = os.path.join(self._dir, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.bind(path)
        os.chmod(path, 0o666)
        self._sock = sock
        self.loop.add_reader(sock.fileno(), self._on_datagram)
        return path

    def _on_datagram(self) -> None:
        sock = self._sock
        if sock is None:
            return
        space = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(_MAX_FDS * 4)
        for _ in range(_BURST):
            try:
                data, anc, _flags, _addr = sock.recvmsg(_MAX_DATAGRAM, space)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                logs.warn(f"job {self.job}: reading its notify socket failed: {e}")
                return
            pid = 0
            for level, kind, payload in anc:
                if level != socket.SOL_SOCKET:
                    continue
                if kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
                    pid = _UCRED.unpack_from(payload)[0]
                elif kind == socket.SCM_RIGHTS:
                    for fd in struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) // 4 * 4]):
                        os.close(fd)
            if not self._from_job(pid):
                if not self._told_stranger:
                    self._told_stranger = True
                    logs.warn(f"job {self.job}: notify message from pid {pid} ignored: not one of the job's "
                              "processes (logged once)")
                continue
            self._handle(data)

    def _from_job(self, pid: int) -> bool:
        if pid <= 0:
            return False
        if pid == self.main_pid:
            return True
        group = self._group()
        if not group:
            return False
        try:
            return os.getpgid(pid) == group
        except OSError:  # gone already: it cannot be told from a stranger now
            return False

    def _handle(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").split("\n"):
            key, eq, value = line.partition("=")
            if not eq:
                continue
            if key == "READY" and value == "1":
                self._mark_ready()
            elif key == "STATUS":
                self.status_text = value
            elif key == "STOPPING" and value == "1":
                self.stopping = True
            elif key == "MAINPID" and value.isdigit():
                self.main_pid = int(value)
            elif key == "WATCHDOG" and self.cfg.watchdog:
                if value == "1":
                    self._arm_watchdog()
                elif value == "trigger":
                    self._cancel_watchdog()
                    self._on_watchdog()

    def _mark_ready(self) -> None:
        if not self.ready:
            self.ready = True
            self._on_ready()

    # --- the watchdog ------------------------------------------------------------------------------

    def _arm_watchdog(self) -> None:
        self._cancel_watchdog()
        self._watchdog = self.loop.call_later(self.cfg.watchdog, self._watchdog_expired)

    def _cancel_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _watchdog_expired(self) -> None:
        self._watchdog = None
        self._on_watchdog()

    # --- s6's notification fd ----------------------------------------------------------------------

    def _on_pipe(self) -> None:
        try:
            chunk = os.read(self._read_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if b"\n" in chunk:
            self._close_pipe()
            self._mark_ready()
        elif not chunk:  # closed without a newline: it never said it was ready
            self._close_pipe()

    def _close_pipe(self) -> None:
        if self._read_fd >= 0:
            self.loop.remove_reader(self._read_fd)
            os.close(self._read_fd)
            self._read_fd = -1
