"""Worker processes: how PID 1 starts them, hears from them, and replaces them when they die.

PID 1 does no I/O that can block (checks, Consul, HTTP); workers do. A worker is a child forked
(``os.fork``) from the single-threaded PID 1, so the fork is safe; its exit comes through the reaper
like any other (no second waiter). PID 1 imports nothing to start one (multiprocessing cost it
~3 MiB), and the worker freezes what it inherited out of its collector's reach, so those pages stay
shared. PID 1 and a worker talk over a socketpair in small messages
(``pypilot.channel``: the framing, and the worker's end); ``Channel`` here is PID 1's end, and a
worker's ``log`` messages are written to PID 1's log here, for every worker. A dead worker is started
again, after a delay that grows while it keeps dying. ``IOWorker`` is the one worker that health
checks and discovery share (``pypilot.ioworker`` is its process): messages routed by op, one death
and one replacement for both.
"""

from __future__ import annotations

import os
import sys

from pypilot import logs
from pypilot.channel import Decoder, Message, encode
from pypilot.loop import Loop
from pypilot.reaper import Reaper, describe

TYPE_CHECKING = False  # typing is not imported at start-up
if TYPE_CHECKING:
    import signal
    import socket  # at run time only where a worker is started or adopted: not before the first spawn
    from collections.abc import Callable
    from typing import Any, NoReturn
else:  # the C module's plain ints: PID 1 builds the I/O worker's handle before the first spawn, and
    import _signal as signal  # signal.py's IntEnums (enum, functools) cost ~3 M instructions of it

__all__ = ["Channel", "IOWorker", "Message", "Worker"]


class Channel:
    """PID 1's end of a socketpair: never blocks; output that does not fit waits for POLLOUT."""

    def __init__(
        self,
        loop: Loop,
        sock: socket.socket,
        on_message: Callable[[Message], None],
        on_close: Callable[[], None],
    ) -> None:
        self.loop, self.sock = loop, sock
        self.on_message, self.on_close = on_message, on_close
        sock.setblocking(False)
        self._decoder = Decoder()
        self._out = bytearray()
        self.closed = False
        loop.add_reader(sock.fileno(), self._on_readable)

    def send(self, msg: Message) -> None:
        if self.closed:
            return
        self._out += encode(msg)
        self._flush()

    def _flush(self) -> None:
        try:
            while self._out:
                n = self.sock.send(self._out)
                del self._out[:n]
        except BlockingIOError:
            self.loop.add_writer(self.sock.fileno(), self._flush)
            return
        except OSError:
            self.close()
            return
        self.loop.remove_writer(self.sock.fileno())

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        try:
            messages = self._decoder.feed(data)
        except ValueError as e:
            logs.error(f"bad message from worker: {e}")
            self.close()
            return
        for msg in messages:
            self.on_message(msg)
        if self._decoder.error is not None:  # whole messages came before a malformed frame
            logs.error(f"bad message from worker: {self._decoder.error}")
            self.close()

    def handover(self, fds: list[int]) -> dict[str, object]:
        """The socket's fd (to ``fds``), what is not sent yet and what was read of a message not yet
        whole: the new image goes on mid-stream, the worker sees nothing."""
        fds.append(self.sock.fileno())
        return {"fd": self.sock.fileno(), "out": self._out.hex(), "in": self._decoder._buf.hex()}

    @classmethod
    def adopt(
        cls, loop: Loop, s: dict[str, object], on_message: Callable[[Message], None],
        on_close: Callable[[], None],
    ) -> Channel:
        import socket

        chan = cls(loop, socket.socket(fileno=int(str(s["fd"]))), on_message, on_close)
        chan._decoder._buf += bytes.fromhex(str(s["in"]))
        if s["out"]:
            chan._out += bytes.fromhex(str(s["out"]))
            loop.call_soon(chan._flush)
        return chan

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        fd = self.sock.fileno()
        self.loop.remove_reader(fd)
        self.loop.remove_writer(fd)
        self.sock.close()
        self.on_close()


if TYPE_CHECKING:
    WorkerMain = Callable[["socket.socket"], None]


def _child(main: WorkerMain, sock: socket.socket, pass_fds: tuple[int, ...] = ()) -> None:
    """First thing in the forked worker: undo PID 1's signal state, drop its fds, run ``main``."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is PID 1's to handle, it stops us in order
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a peer that hung up is an EPIPE to handle, not death
    low = 3
    for keep in sorted({sock.fileno(), *pass_fds}):
        os.closerange(low, keep)
        low = keep + 1
    os.closerange(low, 1 << 16)
    main(sock)


def _run_child(main: WorkerMain, sock: socket.socket) -> NoReturn:
    """The forked worker's whole life: it never returns into PID 1's code (its loop, its reaper)."""
    import gc

    # Everything inherited from PID 1 goes to the permanent generation: the worker's collector never
    # walks it (a walk writes every object's header), so those pages stay shared with PID 1.
    gc.freeze()
    try:  # PID 1's stdin is not the worker's (nor its checks'): /dev/null, as multiprocessing gave it
        null = os.open(os.devnull, os.O_RDONLY)
        if null != 0:  # 0 if PID 1 had no stdin at all: then it is in place already
            os.dup2(null, 0)
            os.close(null)
    except OSError:
        pass
    process = sys.modules.get("pypilot.process")
    if process is not None:  # its cached /dev/null fd is one of those _child closes: open a new one
        process._devnull = -1  # type: ignore[attr-defined]
    code = 0
    try:
        _child(main, sock)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class Worker:
    """One worker process, kept running: started on demand, replaced when it dies."""

    RESTART_MIN, RESTART_MAX = 0.05, 10.0

    def __init__(
        self,
        name: str,
        main: WorkerMain,
        loop: Loop,
        reaper: Reaper,
        on_message: Callable[[Message], None],
        on_death: Callable[[], None] | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self.name, self.main, self.loop, self.reaper = name, main, loop, reaper
        self.on_message, self.on_death, self.on_start = on_message, on_death, on_start
        self.pid = 0
        self.channel: Channel | None = None
        self.stopped = False
        self.retiring = False  # an adopted worker of an older image: when it exits, it is not replaced
        self.restarts = 0
        self.restart_due = False  # died, its restart is scheduled: nothing else starts it meanwhile
        self._delay = self.RESTART_MIN

    def start(self) -> None:
        import socket

        since = self.reaper.generation
        ours, theirs = socket.socketpair()
        pid = os.fork()  # PID 1 has one thread, so the child's copy of it is whole
        if pid == 0:  # pragma: no cover - the worker; its coverage is the worker tests'
            ours.close()
            _run_child(self.main, theirs)
        theirs.close()
        self.pid = pid
        self.reaper.register(self.pid, self._on_exit, since=since)
        self.channel = Channel(self.loop, ours, self._deliver, lambda: None)
        logs.debug(f"worker {self.name} started as pid {self.pid}")
        if self.on_start is not None:
            self.on_start()

    def handover(self, fds: list[int]) -> dict[str, object]:
        """This worker for an in-place upgrade: its process is a child and stays one across the exec,
        and its channel's fd is inherited, so the new image adopts it as it is (it runs the old code
        until it is replaced: it dies, or pypilot restarts it)."""
        chan = self.channel.handover(fds) if self.channel is not None and not self.channel.closed else None
        return {"pid": self.pid, "channel": chan, "stopped": self.stopped, "restarts": self.restarts,
                "delay": self._delay}

    def adopt(self, s: dict[str, Any]) -> None:
        """Take over the worker ``handover`` described (one that was dead is started again soon)."""
        self.stopped, self.restarts, self._delay = bool(s["stopped"]), int(s["restarts"]), float(s["delay"])
        if s["pid"]:
            self.pid = int(s["pid"])
            self.reaper.register(self.pid, self._on_exit)
        if s["channel"] is not None:
            self.channel = Channel.adopt(self.loop, s["channel"], self._deliver, lambda: None)
        elif self.pid:  # a worker whose channel broke is on its way out: its exit restarts it
            os.kill(self.pid, signal.SIGTERM)
        if not self.pid and self.restarts and not self.stopped:  # it died: its restart was pending
            self.restart_due = True
            self.loop.call_soon(self._restart)

    def _deliver(self, msg: Message) -> None:
        if msg.get("op") == "log":  # a worker's log line (``WorkerLink.forward_logs``)
            logs.write_raw(str(msg.get("data", "")).encode("utf-8", "backslashreplace"))
        else:
            self.on_message(msg)

    def send(self, msg: Message) -> bool:
        if self.channel is None or self.channel.closed:
            return False
        self.channel.send(msg)
        return True

    def stop(self) -> None:
        self.stopped = True
        if self.channel is not None:
            self.channel.close()  # EOF tells the worker to finish
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _on_exit(self, pid: int, status: int) -> None:
        self.pid = 0
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.stopped:
            return
        if self.retiring:
            logs.info(f"worker {self.name} (pid {pid}) of the previous image ended: {describe(status)}")
            if self.on_death is not None:
                self.on_death()
            return
        logs.error(f"worker {self.name} (pid {pid}) died: {describe(status)}; starting a new one")
        self.restarts += 1
        if self.on_death is not None:
            self.on_death()
        self.restart_due = True
        self.loop.call_later(self._delay, self._restart)
        self._delay = min(self._delay * 2, self.RESTART_MAX)

    def _restart(self) -> None:
        self.restart_due = False
        if not self.stopped and self.pid == 0:
            self.start()
            self.loop.call_later(30.0, self._reset_delay)

    def _reset_delay(self) -> None:
        if self.pid:
            self._delay = self.RESTART_MIN


class IOWorker:
    """PID 1's handle on the one I/O worker (``pypilot.ioworker``): health checks, Consul and telemetry.

    Its users (roles ``health`` and ``discovery``) ``attach`` with the ops of the worker's messages they
    take, what to do when the process dies, and what to do when a new one starts (discovery tells it
    every service again); messages are routed by ``op``. A role that is done ``finish``es: a farewell
    message (discovery's ``stop``: deregister, then exit) or, for the last role, the channel's close.

    After an upgrade from an image that ran one worker per role (state format 1), each role's old worker
    is adopted as it runs (``adopt_legacy``: no check lost, no Consul flap) and serves that role until it
    exits; it is not replaced: the role moves to the shared worker then, as after a worker's death.
    """

    def __init__(self, loop: Loop, reaper: Reaper, name: str, main: WorkerMain) -> None:
        """``main``: the worker process's body (``pypilot.ioworker.main``, passed in so that this module,
        which PID 1 loads, never imports the worker's side)."""
        self.loop, self.reaper, self.main = loop, reaper, main
        self.worker = Worker(name, main, loop, reaper, self._route, self._on_death, self._on_start)
        self.roles: list[str] = []
        self._routes: dict[str, Callable[[Message], None]] = {}
        self._deaths: dict[str, Callable[[], None]] = {}
        self._starts: dict[str, Callable[[], None]] = {}
        self._legacy: dict[str, Worker] = {}
        self._done: set[str] = set()

    def attach(
        self,
        role: str,
        ops: tuple[str, ...],
        on_message: Callable[[Message], None],
        on_death: Callable[[], None] | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self.roles.append(role)
        for op in ops:
            self._routes[op] = on_message
        if on_death is not None:
            self._deaths[role] = on_death
        if on_start is not None:
            self._starts[role] = on_start

    def target(self, role: str) -> Worker:
        """The process serving ``role``: its adopted old worker, else the shared one."""
        return self._legacy.get(role, self.worker)

    def connected(self, role: str) -> bool:
        chan = self.target(role).channel
        return chan is not None and not chan.closed

    def ensure_started(self, role: str) -> None:
        """Start the shared worker unless it runs (or ``role`` has its own old one, or it is stopped)."""
        w = self.worker
        idle = w.pid == 0 and not w.stopped and w.channel is None
        if role not in self._legacy and idle and not w.restart_due:
            w.start()  # never inside a dead worker's restart delay: a worker dying at every check backs off

    def send(self, role: str, msg: Message) -> bool:
        return self.target(role).send(msg)

    def finish(self, role: str, farewell: Message | None = None) -> None:
        """``role`` is done. With ``farewell``, that is its last message and the process exits by itself
        (no replacement); else the process is stopped once no other role uses it."""
        self._done.add(role)
        w = self.target(role)
        if farewell is not None:
            w.send(farewell)
            w.stopped = True  # its exit is expected now
            return
        if w is not self.worker:
            w.stop()
            return
        if w.stopped:  # another role's farewell is under way: closing now could cut it short
            return
        if any(r not in self._done and r not in self._legacy for r in self.roles):
            return
        w.stop()

    # -- the worker's events ---------------------------------------------------------------------

    def _route(self, msg: Message) -> None:
        handler = self._routes.get(str(msg.get("op")))
        if handler is not None:
            handler(msg)
        else:
            logs.debug(f"worker {self.worker.name}: message {msg.get('op')!r} has no taker")

    def _on_death(self) -> None:
        for role, cb in list(self._deaths.items()):
            if role not in self._legacy:
                cb()

    def _on_start(self) -> None:
        for role, cb in list(self._starts.items()):
            if role not in self._legacy:
                cb()

    # -- upgrade -----------------------------------------------------------------------------------

    def handover(self, fds: list[int]) -> dict[str, object]:
        return {
            "worker": self.worker.handover(fds),
            "legacy": {role: w.handover(fds) for role, w in self._legacy.items()},
            "done": sorted(self._done),
        }

    def adopt(self, s: dict[str, Any]) -> None:
        self.worker.adopt(s["worker"])
        self._done = set(s.get("done") or ())
        for role, ws in (s.get("legacy") or {}).items():
            self.adopt_legacy(role, ws)

    def adopt_legacy(self, role: str, s: dict[str, Any]) -> None:
        """Take over ``role``'s own worker of an older image (``Worker.handover``'s state) as it runs.
        One that was not running is not started again: the shared worker serves ``role`` from now."""
        if not s.get("pid"):
            return
        w = Worker(role, self.main, self.loop, self.reaper, self._route, lambda: self._legacy_ended(role))
        w.retiring = True
        self._legacy[role] = w
        w.adopt({**s, "restarts": 0})  # never restarted: no pending restart either

    def _legacy_ended(self, role: str) -> None:
        """``role``'s old worker exited: as after a death of its worker, the shared one takes over."""
        self._legacy.pop(role, None)
        died = self._deaths.get(role)
        if died is not None:
            died()
        started = self._starts.get(role)
        if role in self._done or started is None:
            return  # health: the shared worker starts with the next check
        if self.connected(role):
            started()
        else:
            self.ensure_started(role)  # its start tells every role it serves, this one too
