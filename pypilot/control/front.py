"""PID 1's own answer to ``/v3/ping`` while no control worker runs (issue #15).

``-ping`` is what an image's ``HEALTHCHECK`` runs, every 30 s for the container's whole life. Answered by
the control worker, the first one would start Falcon on waitress (12 MiB private, 18 threads) and keep it
for good, to say what only PID 1 can say: that its loop is alive. So while no worker runs, PID 1 accepts on
the control socket itself, and a connection whose whole input is one request for ``/v3/ping`` with no body
gets ContainerPilot's answer from here (200, ``"\\n"``, then the connection closes, as CP's did). Anything
else (another path, a body, pipelined bytes, a header that is malformed, over ``HEADER`` or unfinished
after ``HOLD``, more connections at once than ``MAX_HELD``) is handed to the control worker with the bytes
already read, so it is answered exactly as if the worker had accepted it; from then on the worker accepts.

PID 1 never waits here: every socket is non-blocking, at most ``MAX_HELD`` connections are held, each for
at most ``HOLD`` seconds and ``HEADER`` bytes, and an answer the client does not take at once is dropped.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from pypilot import logs
from pypilot.loop import Loop, Timer

HEADER = 4096  # a -ping's request is ~60 bytes; a bigger header is the worker's to judge (431)
HOLD = 0.5  # a client sends its request right after connecting; a slow one goes to the worker's timeouts
MAX_HELD = 8  # connections being read at once; beyond, the worker takes them all
ACCEPTS_PER_WAKE = 64  # a connection flood still lets the loop turn
PING = b"/v3/ping"

Held = tuple[socket.socket, bytes]
HandOff = Callable[[list[Held]], None]
Count = Callable[[int, str], None]


class _Conn:
    __slots__ = ("data", "sock", "timer")

    def __init__(self, sock: socket.socket, timer: Timer) -> None:
        self.sock, self.data, self.timer = sock, b"", timer


class Front:
    """Accepts on ``listener`` and answers pings until ``hand_off`` is called with what it holds."""

    def __init__(self, loop: Loop, listener: socket.socket, allowed: frozenset[int], hand_off: HandOff,
                 count: Count) -> None:
        self.loop, self.listener, self.allowed = loop, listener, allowed
        self._hand_off, self._count = hand_off, count
        self._held: dict[int, _Conn] = {}
        self.active = False

    def start(self) -> None:
        self.listener.setblocking(False)
        self.loop.add_reader(self.listener.fileno(), self._accept)
        self.active = True

    def stop(self) -> list[Held]:
        """Stop accepting; the connections held, with what they sent so far, are the caller's now."""
        if self.active:
            self.loop.remove_reader(self.listener.fileno())
            self.active = False
        held = []
        for conn in self._held.values():
            self.loop.remove_reader(conn.sock.fileno())
            conn.timer.cancel()
            held.append((conn.sock, conn.data))
        self._held.clear()
        return held

    def close(self) -> None:
        for sock, _data in self.stop():
            sock.close()

    # --- accepting ----------------------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                sock, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and kin: the worker, with its raised fd limit, does better
                logs.error(f"control: accept failed ({e.strerror or e}); starting the control worker")
                self._give_up()
                return
            if self.allowed and _peer_uid(sock) not in self.allowed:
                sock.close()  # as the worker does: not ours to serve (control.allowUids)
                continue
            sock.setblocking(False)
            self._hold(sock)
            if len(self._held) > MAX_HELD:
                self._give_up()
                return

    def _hold(self, sock: socket.socket) -> _Conn:
        fd = sock.fileno()
        conn = _Conn(sock, self.loop.call_later(HOLD, lambda: self._expired(fd)))
        self._held[fd] = conn
        self.loop.add_reader(fd, lambda: self._readable(fd))
        return conn

    def _expired(self, fd: int) -> None:
        if fd in self._held:
            self._give_up()

    def _give_up(self) -> None:
        self._hand_off(self.stop())

    def _drop(self, conn: _Conn) -> None:
        self.loop.remove_reader(conn.sock.fileno())
        conn.timer.cancel()
        del self._held[conn.sock.fileno()]
        conn.sock.close()

    # --- reading and answering ------------------------------------------------------------------------

    def _readable(self, fd: int) -> None:
        conn = self._held.get(fd)
        if conn is None:
            return
        try:
            chunk = conn.sock.recv(HEADER + 1 - len(conn.data))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # the client left before a whole request: nothing to answer
            self._drop(conn)
            return
        conn.data += chunk
        self._judge(conn)

    def _judge(self, conn: _Conn) -> None:
        end = conn.data.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.data) > HEADER:
                self._give_up()
            return
        answer = ping_answer(conn.data, end)
        if answer is None:
            self._give_up()
            return
        try:
            conn.sock.send(answer)
        except OSError:
            pass  # a client that cannot take 150 bytes at once, or has gone: it asked, it was answered
        self._drop(conn)
        self._count(200, PING.decode())


def ping_answer(data: bytes, end: int) -> bytes | None:
    """ContainerPilot's answer to ``data`` if it is exactly one body-less ping request, else None.

    ``end``: where the header's blank line starts. Strict on purpose: whatever is not plainly a ping goes
    to the worker, which knows every other case."""
    if len(data) != end + 4:
        return None  # a body or a pipelined request
    line, *fields = data[:end].split(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[0].isupper():
        return None
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or target.split(b"?", 1)[0] != PING:
        return None
    for field in fields:
        name, colon, value = field.partition(b":")
        if not colon or not name or name != name.strip():
            return None  # the worker answers a malformed field 400
        name = name.lower()
        if name in (b"transfer-encoding", b"expect") or (name == b"content-length" and value.strip() != b"0"):
            return None
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())  # C locale: English names
    close = b"Connection: close\r\n" if version == b"HTTP/1.1" else b""
    head = (
        version + b" 200 OK\r\nDate: " + date.encode() + b"\r\nContent-Length: 1\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n" + close + b"\r\n"
    )
    return head if method == b"HEAD" else head + b"\n"


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def pack_held(held: list[Held]) -> bytes:
    """What the worker is told with the held connections' fds: each one's bytes, behind a length."""
    body = b"".join(struct.pack(">I", len(data)) + data for _sock, data in held)
    return struct.pack(">I", len(body)) + body


def unpack_held(body: bytes, n: int) -> list[bytes]:
    out, at = [], 0
    for _ in range(n):
        (size,) = struct.unpack_from(">I", body, at)
        out.append(body[at + 4 : at + 4 + size])
        at += 4 + size
    return out
