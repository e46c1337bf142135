"""Telemetry's HTTP/1.x server: one thread, ``poll`` over non-blocking sockets (in place of waitress).

This module owns the connections, the parsing of a request's head and the framing of the answer; what to
answer is the handler's (``Telemetry.respond``: method and path in, status, content type and body out).
One thread rather than waitress' three (its loop and two task threads) and its modules, in the I/O worker,
whose memory is the tree's biggest item (issue #15); with no connection open it sleeps in ``poll`` with no
timeout (no wake-up; waitress' loop woke once a second). Not on the worker's own ``Loop``: a scrape asks PID 1
for a snapshot and waits for the answer, which that loop delivers.

Bounded, so that no client holds up another's scrape or grows the worker:

- a request's head (request line and headers) is at most ``MAX_HEAD`` bytes: 431, then the connection
  is closed; a body is read and dropped (no endpoint takes one), one over ``MAX_BODY`` answered 413;
- a connection that makes no progress (nothing read, nothing sent) for ``IDLE`` seconds is closed, as
  waitress' ``channel_timeout`` did;
- at most ``MAX_CONNS`` connections: a new one closes the one that did nothing for longest;
- nothing blocks: an answer that does not fit in the socket waits in that connection's buffer, and
  nothing more is read from it meanwhile, so a client that never reads holds only its own answer;
- whatever one connection raises closes that connection (logged unless it is the peer's doing); the
  thread goes on.

HTTP/1.1 keeps a connection open unless the request says ``Connection: close``, HTTP/1.0 only with
``Connection: keep-alive``, as waitress answered (its status lines and headers: ``HTTP/1.0`` echoed,
``Connection: Keep-Alive``, ``Server: pypilot``). Pipelined requests are answered in order. A response to
``HEAD`` has the headers of ``GET`` and no body (waitress sent the body, which broke keep-alive). A
connection that is to close is shut for writing once its answer is out and read until the peer closes
(at most ``LINGER`` seconds), so that unread input does not turn the close into a reset that loses the
answer.
"""

from __future__ import annotations

import errno
import os
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from pypilot import logs

Handler = Callable[[str, str], tuple[int, str, bytes]]  # (method, path) -> (status, content type, body)

MAX_HEAD = 8192
MAX_BODY = 1 << 20
IDLE = 10.0
LINGER = 2.0
MAX_CONNS = 64
ACCEPT_PAUSE = 1.0  # out of fds: stop accepting for this long rather than spin on a ready listener
RECV = 65536
PER_TURN = 8  # requests answered on one connection before the others' events are looked at
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VERSION = re.compile(rb"^HTTP/(\d)\.(\d)$")
_IN = select.POLLIN
_OUT = select.POLLOUT
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(t: float | None = None) -> str:
    """RFC 7231's IMF-fixdate, without the locale (``strftime``'s names would follow it)."""
    g = time.gmtime(t)
    return (f"{_DAYS[g.tm_wday]}, {g.tm_mday:02d} {_MONTHS[g.tm_mon - 1]} {g.tm_year} "
            f"{g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d} GMT")


class _BadRequest(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


class _Request:
    __slots__ = ("head_only", "keep", "method", "minor", "path", "skip")

    def __init__(self, method: str, path: str, minor: int, keep: bool, skip: int) -> None:
        self.method, self.path, self.minor, self.keep, self.skip = method, path, minor, keep, skip
        self.head_only = method == "HEAD"


class _Conn:
    __slots__ = ("closing", "fd", "inbuf", "last", "lingering", "mask", "out", "skip", "sock")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock, self.fd = sock, sock.fileno()
        self.inbuf = bytearray()
        self.out = bytearray()
        self.skip = 0  # body bytes still to drop before the next request
        self.closing = False  # the last answer is queued: shut and linger once it is out
        self.lingering = False
        self.last = now
        self.mask = 0

    def idle(self) -> bool:
        return not (self.inbuf or self.out or self.skip)


class Server:
    """Serves ``handler`` on a listening socket until ``stop``; ``run`` is the thread's whole life."""

    def __init__(self, listener: socket.socket, handler: Handler) -> None:
        listener.setblocking(False)
        self.listener, self.handler = listener, handler
        self._poll = select.poll()
        self._conns: dict[int, _Conn] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll.register(self._wake_r, _IN)
        self._poll.register(listener.fileno(), _IN)
        self._accept_at = 0.0  # while accepting is paused: when to start again
        self._ready: set[int] = set()  # connections with requests left over from their last turn
        self._stopped = False
        self._wake_lock = threading.Lock()  # ``stop`` never writes to the pipe once ``run`` closed it

    def stop(self) -> None:
        """From any thread: ``run`` returns at its next turn, closing every socket."""
        with self._wake_lock:
            if self._stopped:
                return
            self._stopped = True
            os.write(self._wake_w, b"x")

    def run(self) -> None:
        try:
            while not self._stopped:
                try:
                    self._turn()
                except Exception as e:  # a bug here must not end telemetry: log it, serve on
                    logs.exception("telemetry: server error", e)
        finally:
            for conn in list(self._conns.values()):
                self._close(conn)
            self.listener.close()
            with self._wake_lock:
                self._stopped = True
                os.close(self._wake_r)
                os.close(self._wake_w)

    # -- the loop ------------------------------------------------------------------------------

    def _turn(self) -> None:
        for fd, ev in self._poll.poll(self._timeout_ms()):
            if fd == self._wake_r:
                try:
                    os.read(self._wake_r, 64)
                except OSError:
                    pass
            elif fd == self.listener.fileno():
                self._accept()
            else:
                conn = self._conns.get(fd)
                if conn is not None:
                    self._guard(self._event, conn, ev)
        ready, self._ready = self._ready, set()
        for fd in ready:
            conn = self._conns.get(fd)
            if conn is not None and not conn.out:
                self._guard(self._serve, conn)
        self._expire()

    def _timeout_ms(self) -> int | None:
        if self._ready:
            return 0
        deadlines = [self._deadline(c) for c in self._conns.values()]
        if self._accept_at:
            deadlines.append(self._accept_at)
        if not deadlines:
            return None  # nothing open: sleep until a connection or stop (no wake-ups)
        return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)

    @staticmethod
    def _deadline(conn: _Conn) -> float:
        return conn.last + (LINGER if conn.lingering else IDLE)

    def _expire(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self._conns.values() if self._deadline(c) <= now]:
            self._close(conn)
        if self._accept_at and now >= self._accept_at:
            self._accept_at = 0.0
            self._poll.register(self.listener.fileno(), _IN)

    def _accept(self) -> None:
        for _ in range(16):  # a few per turn: the others' events are not kept waiting
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    logs.warn(f"telemetry: cannot accept a connection: {e}")
                    self._poll.unregister(self.listener.fileno())
                    self._accept_at = time.monotonic() + ACCEPT_PAUSE
                return  # ECONNABORTED and the like: that one connection is gone
            sock.setblocking(False)
            if len(self._conns) >= MAX_CONNS:
                self._close(min(self._conns.values(), key=lambda c: (not c.lingering, not c.idle(), c.last)))
            conn = _Conn(sock, time.monotonic())
            self._conns[conn.fd] = conn
            self._want(conn)

    def _guard(self, step: Callable[..., None], conn: _Conn, *args: int) -> None:
        try:
            step(conn, *args)
        except OSError:  # reset, broken pipe, unreachable: the peer's doing, nothing to report
            self._close(conn)
        except Exception as e:
            logs.exception("telemetry: connection failed", e)
            self._close(conn)

    def _event(self, conn: _Conn, ev: int) -> None:
        if conn.out and ev & (_OUT | select.POLLHUP | select.POLLERR):
            self._send(conn)
            if not conn.out:
                self._after_sent(conn)
        elif ev & (_IN | select.POLLHUP | select.POLLERR):
            self._read(conn)

    # -- one connection ------------------------------------------------------------------------

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(RECV)
        except BlockingIOError:
            return
        if not data:
            self._close(conn)
            return
        conn.last = time.monotonic()
        if conn.lingering:
            return  # dropped: only the peer's close is awaited
        conn.inbuf += data
        self._serve(conn)

    def _serve(self, conn: _Conn) -> None:
        """Answer the complete requests in the input, one at a time, while the answers go out at once."""
        budget = PER_TURN
        while not conn.out and not conn.closing and conn.fd in self._conns:
            if not budget:
                self._ready.add(conn.fd)  # the rest at the next turn, after the others
                break
            budget -= 1
            if conn.skip:
                n = min(conn.skip, len(conn.inbuf))
                del conn.inbuf[:n]
                conn.skip -= n
                if conn.skip:
                    break
            try:
                req = self._next_request(conn)
            except _BadRequest as e:
                self._answer(conn, e.status, "text/plain; charset=utf-8", f"{REASONS[e.status]}\n".encode(),
                             head_only=False, minor=0, keep=False)
                break
            if req is None:
                break
            conn.skip = req.skip
            status, ctype, body = self._handle(req)
            self._answer(conn, status, ctype, body, req.head_only, req.minor, req.keep)
        if conn.fd in self._conns:
            self._want(conn)

    def _next_request(self, conn: _Conn) -> _Request | None:
        buf = conn.inbuf
        start = 0
        while start < len(buf) and buf[start] in b"\r\n":  # RFC 9112 2.2: empty lines before a request
            start += 1
        if start:
            del buf[:start]
        m = _HEAD_END.search(buf)
        if m is None:
            if len(buf) > MAX_HEAD:
                raise _BadRequest(431, "head too large")
            return None
        if m.start() > MAX_HEAD:
            raise _BadRequest(431, "head too large")
        head = bytes(buf[:m.start()])
        del buf[:m.end()]
        return _parse(head)

    def _handle(self, req: _Request) -> tuple[int, str, bytes]:
        try:
            return self.handler(req.method, req.path)
        except Exception as e:
            logs.exception(f"telemetry: {req.method} {req.path} failed", e)
            return 500, "text/plain; charset=utf-8", b"Internal Server Error\n"

    def _answer(self, conn: _Conn, status: int, ctype: str, body: bytes, head_only: bool, minor: int,
                keep: bool) -> None:
        lines = [f"HTTP/1.{minor} {status} {REASONS.get(status, 'Unknown')}"]
        if not keep:
            lines.append("Connection: close")
        elif minor == 0:
            lines.append("Connection: Keep-Alive")
        lines += [f"Content-Length: {len(body)}", f"Content-Type: {ctype}", f"Date: {http_date()}",
                  "Server: pypilot", "", ""]
        conn.out += "\r\n".join(lines).encode("latin-1")
        if not head_only:
            conn.out += body
        conn.closing = not keep
        self._send(conn)
        if not conn.out and conn.closing:
            self._linger(conn)

    def _send(self, conn: _Conn) -> None:
        while conn.out:
            try:
                n = conn.sock.send(conn.out)
            except BlockingIOError:
                return
            del conn.out[:n]
            conn.last = time.monotonic()

    def _after_sent(self, conn: _Conn) -> None:
        if conn.closing:
            self._linger(conn)
        else:
            self._serve(conn)  # requests pipelined behind the one just answered

    def _linger(self, conn: _Conn) -> None:
        conn.lingering = True
        conn.inbuf.clear()
        conn.last = time.monotonic()
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        self._want(conn)

    def _want(self, conn: _Conn) -> None:
        mask = _OUT if conn.out and not conn.lingering else _IN
        if mask != conn.mask:
            if conn.mask:
                self._poll.modify(conn.fd, mask)
            else:
                self._poll.register(conn.fd, mask)
            conn.mask = mask

    def _close(self, conn: _Conn) -> None:
        if self._conns.pop(conn.fd, None) is None:
            return
        if conn.mask:
            self._poll.unregister(conn.fd)
        conn.sock.close()


def _parse(head: bytes) -> _Request:
    lines = head.split(b"\n")
    parts = lines[0].rstrip(b"\r").split(b" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]):
        raise _BadRequest(400, "request line")
    method, target, version = parts
    v = _VERSION.match(version)
    if v is None:
        raise _BadRequest(400, "version")
    minor = 1 if version == b"HTTP/1.1" else 0  # another version is answered as 1.0, as waitress did
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.rstrip(b"\r").partition(b":")
        if not sep or not _TOKEN.match(name):  # folded lines included (RFC 9112 5.2 allows rejecting)
            raise _BadRequest(400, "header line")
        key = name.lower()
        value = value.strip(b" \t")
        fields[key] = fields[key] + b", " + value if key in fields else value
    tokens = {t.strip().lower() for t in fields.get(b"connection", b"").split(b",")}
    keep = b"close" not in tokens if minor == 1 else b"keep-alive" in tokens
    skip = 0
    if b"transfer-encoding" in fields:
        keep = False  # a chunked body is not worth parsing here: answer, then close (and drop it)
    elif b"content-length" in fields:
        length = fields[b"content-length"]
        if not length.isdigit():
            raise _BadRequest(400, "content-length")
        skip = int(length)
        if skip > MAX_BODY:
            raise _BadRequest(413, "body too large")
        if skip and b"expect" in fields:
            keep = False  # answered before any 100 Continue: the client may never send the body
    return _Request(method.decode("latin-1"), _path(target), minor, keep, skip)


def _path(target: bytes) -> str:
    """The decoded path of a request target (origin or absolute form), without its query."""
    if not target.startswith(b"/"):
        scheme, sep, rest = target.partition(b"://")
        if not sep or not scheme.isalpha():
            raise _BadRequest(400, "target")
        slash = rest.find(b"/")
        target = rest[slash:] if slash >= 0 else b"/"
    return unquote_to_bytes(target.split(b"?", 1)[0].split(b"#", 1)[0]).decode("latin-1")
