"""The control worker's main: waitress serving the Falcon app on the socket PID 1 listens on.

The worker gets the listening fd from PID 1 (SCM_RIGHTS, the first byte on its channel), then runs
waitress on it (``server``). ``Link`` is the control requests over the worker's ``WorkerLink``:
waitress threads send requests and wait on a per-request reply with a timeout (PID 1 busy or gone →
the app answers 503, it never hangs); one reader thread delivers replies and bus events. The channel
closing (PID 1 stopped us, or died) ends the worker. Falcon and waitress are imported here, never in
PID 1.
"""

from __future__ import annotations

import itertools
import os
import queue
import socket
import threading

from pypilot.channel import Message, WorkerLink

TYPE_CHECKING = False  # typing is deferred while Falcon imports (import_server)
if TYPE_CHECKING:
    from typing import Any

STREAM_QUEUE = 10_000  # events buffered per stream client before it is cut off as too slow


class _Pending:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Message | None = None


class Link:
    """Requests to PID 1 and the event streams, over the worker's ``WorkerLink``; thread-safe."""

    def __init__(self, sock: socket.socket) -> None:
        # a send PID 1 does not take in time leaves a partial frame: a new worker starts clean
        self.link = WorkerLink(sock, on_broken=lambda: os._exit(3), send_timeout=10.0)
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._streams: set[queue.Queue[Message | None]] = set()
        self._streams_lock = threading.Lock()
        self._log_streams: dict[str, set[queue.Queue[Message | None]]] = {}  # job -> its followers
        self._reader = threading.Thread(target=self._read, name="pid1-link", daemon=True)

    def start(self) -> None:
        self._reader.start()

    def send(self, msg: Message) -> None:
        self.link.send(msg)

    def call(self, kind: str, timeout: float, **args: Any) -> Message | None:
        """Send one request to PID 1 and wait for its reply; None on timeout."""
        pending = _Pending()
        req_id = next(self._ids)
        self._pending[req_id] = pending
        try:
            self.send({"op": "req", "id": req_id, "kind": kind, **args})
            if not pending.done.wait(timeout):
                return None
            return pending.reply
        finally:
            self._pending.pop(req_id, None)

    # --- event streams ------------------------------------------------------------------------------

    def open_stream(self, timeout: float) -> queue.Queue[Message | None] | None:
        """A queue of bus events; the first stream turns forwarding on in PID 1. None on timeout."""
        q: queue.Queue[Message | None] = queue.Queue(STREAM_QUEUE)
        with self._streams_lock:
            first = not self._streams
            self._streams.add(q)
            if first and self.call("subscribe", timeout, on=True) is None:
                self._streams.discard(q)
                return None
        return q

    def close_stream(self, q: queue.Queue[Message | None]) -> None:
        with self._streams_lock:
            self._streams.discard(q)
            if not self._streams:
                self.send({"op": "req", "id": 0, "kind": "subscribe", "on": False})

    def open_log_stream(self, name: str, n: int | None, timeout: float
                        ) -> tuple[Message | None, queue.Queue[Message | None] | None]:
        """PID 1's reply to a follow request (the last lines), and the queue of the job's new lines
        after them (None unless the reply is a 200). The queue is listening before PID 1 is asked, so no
        line falls between; lines it already had are told apart by their ``seq``."""
        q: queue.Queue[Message | None] = queue.Queue(STREAM_QUEUE)
        with self._streams_lock:
            self._log_streams.setdefault(name, set()).add(q)
            reply = self.call("logs", timeout, name=name, n=n, follow=True)
            if reply is None or reply.get("status") != 200:
                self._drop_log_stream(name, q)
                return reply, None
        return reply, q

    def close_log_stream(self, name: str, q: queue.Queue[Message | None]) -> None:
        with self._streams_lock:
            self._drop_log_stream(name, q)

    def _drop_log_stream(self, name: str, q: queue.Queue[Message | None]) -> None:
        followers = self._log_streams.get(name)
        if followers is None or q not in followers:
            return
        followers.discard(q)
        if not followers:
            del self._log_streams[name]
            self.send({"op": "req", "id": 0, "kind": "logs", "name": name, "unfollow": True})

    # --- the reader thread --------------------------------------------------------------------------

    def _read(self) -> None:
        self.link.serve(self._dispatch)
        os._exit(0)  # PID 1 closed the channel (or sent garbage): stop serving

    def _dispatch(self, msg: Message) -> None:
        op = msg.get("op")
        if op == "rep":
            pending = self._pending.get(msg.get("id", -1))
            if pending is not None:
                pending.reply = msg
                pending.done.set()
        elif op == "event":
            for q in tuple(self._streams):
                if not _offer(q, msg):  # a client that does not read: cut it off, not the others
                    self._streams.discard(q)
        elif op == "jobline":
            for q in tuple(self._log_streams.get(str(msg.get("job")), ())):
                _offer(q, msg)  # one cut off ends its stream, which then leaves the set itself


def _offer(q: queue.Queue[Message | None], msg: Message) -> bool:
    """Queue ``msg``; when ``q`` is full, end it (None after dropping one) and say False."""
    try:
        q.put_nowait(msg)
        return True
    except queue.Full:
        try:
            q.get_nowait()
            q.put_nowait(None)
        except (queue.Empty, queue.Full):
            pass
        return False


def receive_listener(chan: socket.socket) -> tuple[socket.socket, list[tuple[socket.socket, bytes]]]:
    """The listening socket PID 1 passes before any message, and the connections it had been reading
    (``front``), each with the bytes it had read of it."""
    from pypilot.control.front import MAX_HELD, unpack_held

    chan.setblocking(True)
    msg, fds, _flags, _addr = socket.recv_fds(chan, 5, MAX_HELD + 2)
    while 0 < len(msg) < 5:
        msg += chan.recv(5 - len(msg))
    if msg[:1] != b"L" or not fds:
        raise RuntimeError("control worker: PID 1 did not pass the listening socket")
    size = int.from_bytes(msg[1:5], "big")
    body = b""
    while len(body) < size:
        chunk = chan.recv(size - len(body))
        if not chunk:
            raise RuntimeError("control worker: the channel closed inside PID 1's hand-over")
        body += chunk
    listener, *conns = (socket.socket(fileno=fd) for fd in fds)
    return listener, list(zip(conns, unpack_held(body, len(conns)), strict=True))


class PeerCheckedListener(socket.socket):
    """The listening socket, refusing a connection whose peer uid is not allowed (``control.allowUids``):
    closed at once, and reported to waitress as an aborted connection, which it skips."""

    allowed: frozenset[int] = frozenset()

    def accept(self) -> tuple[socket.socket, Any]:
        import errno
        import struct

        conn, addr = super().accept()
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid in self.allowed:
            return conn, addr
        conn.close()
        raise ConnectionAbortedError(errno.ECONNABORTED, f"uid {uid} may not use the control socket")


MMAP_THRESHOLD = 128 << 10
ARENAS = 2


WAITRESS_LEVEL = 40  # logging.ERROR: waitress' own warnings (a queue backlog, a client gone) are not logged


def import_server() -> None:
    """Import the app and the server (Falcon and waitress) as the worker does: after ``lean_imports``'
    stand-ins, with what only their import reads deferred (``lean_imports.deferring``): ``logging`` (their
    loggers, taken at import; waitress' at ERROR once one is used), ``traceback`` (an error's report),
    ``concurrent.futures`` (the executor of Falcon's sync-to-async helpers, made at import), ``ast``
    (``inspect``'s, for ``getsource``; Falcon reads signatures only), ``typing`` (Falcon's annotations,
    aliases and protocols, evaluated at import), ``dis`` (``inspect``'s table of code flags, read at import),
    ``weakref`` (``copy``'s, at import) and ``unicodedata`` (Falcon's, for an upload's file name), and
    without Falcon's Cython speed-ups (``falcon.cyutil``: their pure-Python twins are loaded anyway, and
    answer the same). ~2.2 MiB of the worker's private memory (issue #15)."""
    import _weakref

    from pypilot import lean_imports

    lean_imports.install()  # before Falcon: the stdlib it and waitress import but do not use here
    deferred = {
        "logging": lean_imports.lazy_logging({"waitress": WAITRESS_LEVEL}),
        "traceback": {},
        "concurrent.futures": {"ThreadPoolExecutor": lean_imports.ThreadPoolExecutor},
        "ast": {"NodeVisitor": lean_imports.NodeVisitor},  # inspect's, for source code (Falcon's: signatures)
        "typing": lean_imports.lazy_typing(),  # Falcon's annotations, aliases and protocols
        "weakref": {"ref": _weakref.ref},  # copy's (for dataclasses) tables of atomic types, at import
        "unicodedata": {},  # Falcon's secure_filename (for uploads)
    }
    dis = lean_imports.lazy_dis()  # inspect's code flags, at import
    if dis is not None:
        deferred["dis"] = dis
    with lean_imports.deferring(deferred), \
            lean_imports.absent("falcon.cyutil.reader", "falcon.cyutil.uri", "falcon.cyutil.misc"):
        import pypilot.control.app
        import pypilot.control.server  # noqa: F401


def worker_main(chan: socket.socket, settings: dict[str, Any]) -> None:
    import signal

    from pypilot import reaper

    import_server()
    from pypilot.control.app import make_app
    from pypilot.control.server import THREADS, make_server

    # 16 threads each with an arena, and glibc's sliding mmap threshold, kept a flood's request bodies
    # as RSS after they were answered: big blocks come from mmap and a few arenas serve every thread
    reaper.malloc_tune(MMAP_THRESHOLD, ARENAS)

    # _child resets every disposition to default, SIGPIPE included: a client that hangs up while we
    # write to it would kill the worker. Ignore it, as Python itself does, and get EPIPE instead.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    listener, held = receive_listener(chan)
    if settings.get("allow_uids"):
        checked = PeerCheckedListener(fileno=listener.detach())
        checked.allowed = frozenset(settings["allow_uids"])
        listener = checked
    link = Link(chan)
    link.link.forward_logs()
    link.start()
    app = make_app(link, {"max_streams": THREADS - 4, **settings})
    count = lambda code, path: link.send({"op": "count", "code": code, "path": path})  # noqa: E731
    # with no connection for worker_idle the worker hands the socket back: PID 1 closes our channel
    # in answer, and the link's reader ends the process
    idle = float(settings.get("worker_idle") or 0.0)
    server = make_server(app, listener, count, idle, lambda: link.send({"op": "idle"}))
    for conn, data in held:
        server.adopt(conn, data)
    # the imports left free pages inside the heap (a worker forked from PID 1 copies each page it
    # touches): back to the kernel before serving, ~0.3 MiB of the worker's private memory
    reaper.malloc_trim()
    server.run()
