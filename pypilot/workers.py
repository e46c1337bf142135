"""Worker processes: how PID 1 starts them, hears from them, and replaces them when they die.

PID 1 does no I/O that can block (checks, Consul, HTTP); workers do. A worker is a child forked
(``os.fork``) from the single-threaded PID 1, so the fork is safe; its exit comes through the reaper
like any other (no second waiter). PID 1 imports nothing to start one (multiprocessing cost it
~3 MiB), and the worker freezes what it inherited out of its collector's reach, so those pages stay
shared. PID 1 and a worker talk over a socketpair in small messages
(``pypilot.channel``: the framing, and the worker's end); ``Channel`` here is PID 1's end, and a
worker's ``log`` messages are written to PID 1's log here, for every worker. A dead worker is started
again, after a delay that grows while it keeps dying.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable

from pypilot import logs
from pypilot.channel import Decoder, Message, encode
from pypilot.loop import Loop
from pypilot.reaper import Reaper, describe

TYPE_CHECKING = False  # typing is not imported at start-up
if TYPE_CHECKING:
    from typing import Any, NoReturn

__all__ = ["Channel", "Message", "Worker"]


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


WorkerMain = Callable[[socket.socket], None]


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
    ) -> None:
        self.name, self.main, self.loop, self.reaper = name, main, loop, reaper
        self.on_message, self.on_death = on_message, on_death
        self.pid = 0
        self.channel: Channel | None = None
        self.stopped = False
        self.restarts = 0
        self._delay = self.RESTART_MIN

    def start(self) -> None:
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
        logs.error(f"worker {self.name} (pid {pid}) died: {describe(status)}; starting a new one")
        self.restarts += 1
        if self.on_death is not None:
            self.on_death()
        self.loop.call_later(self._delay, self._restart)
        self._delay = min(self._delay * 2, self.RESTART_MAX)

    def _restart(self) -> None:
        if not self.stopped:
            self.start()
            self.loop.call_later(30.0, self._reset_delay)

    def _reset_delay(self) -> None:
        if self.pid:
            self._delay = self.RESTART_MIN
