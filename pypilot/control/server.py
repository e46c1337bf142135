"""The control worker's HTTP server: waitress, bounded so that hung or slow clients cost only their
own connections (issue #14).

Waitress buffers each request until it is complete and only then gives it to a thread, so a client
that never finishes its request holds a connection and some memory but no thread. What could still
starve a new client, and what is done about it:

- the connection limit: waitress stops accepting at ``connection_limit`` and a new ``-ping`` waits in
  the backlog until an idle connection times out. Here the limit is high (``CONNECTIONS``, within the
  worker's ``RLIMIT_NOFILE``, raised to its hard limit) and reaching it does not stop the accepting: the
  connection that has waited longest without a request in service is closed to make room;
- ``select()`` fails above fd 1024: waitress uses ``poll()``;
- memory: a request's header is at most ``HEADER_MAX``; a body over ``READ_MAX`` is answered 413 as soon
  as its ``Content-Length`` is read, before any of it is (chunked: once it gets there); a body between
  the app's ``MAX_BODY`` and ``READ_MAX`` is read, so that a client that sends it all before reading
  (``http.client``, Go's) gets the app's 413 rather than a broken pipe; and the bytes of all the
  requests held (being received, or received and waiting for a thread or PID 1's answer) are at most
  ``PENDING_BUDGET``: over it, the unfinished ones waiting longest are closed, as for the connection
  limit, and while it stays over (PID 1 slow to answer) nothing more is read from anyone;
- time: a connection with no request in service is closed after ``IDLE_TIMEOUT`` of silence, and an
  unfinished request after ``IDLE_TIMEOUT`` from its first byte, however slowly it keeps dripping.

With no connection at all for ``control.workerIdle``, the server stops accepting and calls ``on_idle``:
the worker asks PID 1 to take the socket back (``front``), and is stopped.

Waitress' own error answers (413, 431, 400) are given in the app's form: CP's status text on CP's paths,
JSON on pypilot's, the reason in ``X-Pypilot-Error``.
"""

from __future__ import annotations

import os
import resource
import socket
import threading
import time
from collections.abc import Callable

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import UnixWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

from pypilot.control.app import MAX_BODY, error_response

TYPE_CHECKING = False  # typing is deferred while the worker imports this (worker.import_server)
if TYPE_CHECKING:
    from typing import Any

CONNECTIONS = 4096  # open connections at most, hung ones included (capped by RLIMIT_NOFILE)
RESERVED_FDS = 64  # fds kept for everything else the worker opens
READ_MAX = 4 << 20  # the largest body read at all (the app refuses over MAX_BODY)
HEADER_MAX = 16 << 10  # a request line and headers; CP's clients send a few hundred bytes
PENDING_BUDGET = 32 << 20  # bytes of unfinished requests held, all connections together
IDLE_TIMEOUT = 30.0
THREADS = 16

Counter = Callable[[int, str], None]


def raise_fd_limit() -> int:
    """Soft ``RLIMIT_NOFILE`` up to the hard limit (the worker only: PID 1 and jobs keep theirs)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    return soft


class _Adjustments(Adjustments):
    """Waitress' adjustments with no default ``listen`` ("0.0.0.0:8080"): waitress resolves each with
    ``getaddrinfo`` even when it is given the socket (ours), which loaded the IDNA codec (``stringprep``,
    ``unicodedata``) and glibc's resolver state into the worker for an answer nothing reads (~1 MiB)."""

    listen: list[Any] = []


class _Channel(HTTPChannel):
    """A connection that knows how many bytes of requests it holds (the one being received and the
    ones received but not answered yet), and since when it has been waiting."""

    server: _Server
    pending = 0  # bytes of requests held
    waiting_since = 0.0  # when it last had nothing in progress: idle, or the first byte of a request

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.waiting_since = time.monotonic()

    def _held(self) -> int:
        with self.requests_lock:
            reqs = [*self.requests, *([self.request] if self.request is not None else [])]
        return sum(len(r.header_plus) + r.body_bytes_received for r in reqs)

    def readable(self) -> bool:
        # over the budget with nothing left to evict (requests waiting for a thread, PID 1 slow):
        # read nothing more from anyone until answers free some
        return bool(super().readable()) and not self.server.over_budget

    def received(self, data: bytes) -> bool:
        idle = self.request is None and not self.requests
        if idle and data:
            self.waiting_since = time.monotonic()
        result = super().received(data)
        self.server.note_pending(self, self._held(), make_room=True)
        return bool(result)

    def service(self) -> None:  # in a server thread
        super().service()
        self.waiting_since = time.monotonic()
        if self.server.note_pending(self, self._held()):
            self.server.pull_trigger()  # the loop may read again

    def handle_close(self) -> None:
        self.server.note_pending(self, 0)
        super().handle_close()


class _ErrorTask(ErrorTask):
    """Waitress' answer to a request it refused itself, in the app's form, counted like the rest."""

    def execute(self) -> None:
        err = self.request.error
        path = self.request.path or ""
        status, headers, body = error_response(path, int(err.code), _reason(err))
        self.status = status
        self.response_headers.extend(headers)
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)
        self.channel.server.count(int(err.code), path)


def _reason(err: Any) -> str:
    if int(err.code) == 413:
        return f"the body is over {MAX_BODY} bytes"
    if int(err.code) == 431:
        return f"the request header is over {HEADER_MAX} bytes"
    return f"{err.reason}: {err.body}"


class _Server(UnixWSGIServer):
    channel_class = _Channel
    count: Counter = staticmethod(lambda code, path: None)
    idle_exit = 0.0  # control.workerIdle; 0: never
    accepting: bool  # waitress' (asyncore's) own flag
    on_idle: Callable[[], None] = staticmethod(lambda: None)

    def __init__(self, *args: Any, limit: int, budget: int, **kw: Any) -> None:
        self.limit, self.budget, self.pending_total = limit, budget, 0
        self._pending_lock = threading.Lock()
        self.quiet_since = time.monotonic()  # since when no connection has been open
        super().__init__(*args, **kw)

    @property
    def over_budget(self) -> bool:
        return self.pending_total > self.budget

    def note_pending(self, channel: _Channel, held: int, make_room: bool = False) -> bool:
        """Record what ``channel`` holds now; True if that brought the total back under the budget.
        ``make_room`` (the loop's thread only): over the budget, close the longest waiting."""
        with self._pending_lock:
            was_over = self.over_budget
            self.pending_total += held - channel.pending
            channel.pending = held
        if make_room and self.over_budget:
            self._make_room(keep=channel)
        return was_over and not self.over_budget

    def readable(self) -> bool:
        super().readable()
        return bool(self.accepting)  # never stop accepting: the limit evicts instead (handle_accept)

    def adopt(self, conn: socket.socket, data: bytes) -> None:
        """A connection PID 1 accepted and read ``data`` of (``front``): served as if accepted here."""
        self.quiet_since = time.monotonic()
        conn.setblocking(False)
        channel = self.channel_class(self, conn, self.fix_addr(None), self.adj, map=self._map)
        if data:
            channel.received(data)

    def handle_accept(self) -> None:
        self.quiet_since = time.monotonic()
        if len(self.active_channels) >= self.limit:
            self._make_room()
        super().handle_accept()

    def _make_room(self, keep: _Channel | None = None) -> None:
        """Close the connections waiting longest with nothing in service, until an eighth under both
        limits (in one sort: a flood at the limit must not pay for a sort per connection)."""
        limit, budget = self.limit - self.limit // 8, self.budget - self.budget // 8
        candidates = sorted(
            (c for c in self.active_channels.values() if c is not keep and not c.requests and c.connected),
            key=lambda c: c.waiting_since,
        )
        for channel in candidates:
            if len(self.active_channels) < limit and self.pending_total <= budget:
                break
            channel.handle_close()

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle connections: no byte for channel_timeout
        # the loop's thread, as accepting is: no connection can slip in between the check and the stop
        if self.active_channels or not self.accepting:
            self.quiet_since = time.monotonic()
        elif self.idle_exit and time.monotonic() - self.quiet_since >= self.idle_exit:
            self.accepting = False  # new clients wait in the backlog, for PID 1
            self.on_idle()
        cutoff = time.monotonic() - self.adj.channel_timeout
        for channel in list(self.active_channels.values()):
            if channel.request is not None and not channel.requests and channel.waiting_since < cutoff:
                channel.will_close = True  # an unfinished request, however slowly it drips


def make_server(app: Any, listener: socket.socket, count: Counter, idle_exit: float = 0.0,
                on_idle: Callable[[], None] | None = None) -> _Server:
    nofile = raise_fd_limit()
    limit = max(16, min(CONNECTIONS, nofile - RESERVED_FDS))
    idle = float(os.environ.get("PYPILOT_CONTROL_IDLE_TIMEOUT") or IDLE_TIMEOUT)  # tests shorten it
    adj = _Adjustments(
        sockets=[listener],
        threads=THREADS,
        send_bytes=1,  # flush every write at once: event-stream lines must not wait for a buffer
        asyncore_use_poll=True,  # select() cannot watch an fd above 1024
        connection_limit=limit,  # where waitress would stop accepting; _Server evicts instead
        channel_timeout=idle,
        cleanup_interval=max(0.2, min(idle / 4, idle_exit / 4 or 5.0, 5.0)),
        max_request_header_size=HEADER_MAX,
        max_request_body_size=READ_MAX,
        inbuf_overflow=READ_MAX,  # bodies stay in memory (counted in the budget), not in temp files
        outbuf_high_watermark=1 << 20,  # a stream client that does not read blocks its thread at 1 MiB
        ident="pypilot",
        clear_untrusted_proxy_headers=True,
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(THREADS)
    _Channel.error_task_class = _ErrorTask
    server = _Server(
        app,
        map={},
        _start=True,
        _sock=listener,
        dispatcher=dispatcher,
        adj=adj,
        bind_socket=False,
        sockinfo=(socket.AF_UNIX, socket.SOCK_STREAM, None, None),
        limit=limit,
        budget=PENDING_BUDGET,
    )
    server.count = count
    server.idle_exit = idle_exit
    if on_idle is not None:
        server.on_idle = on_idle
    return server
