"""The messages between PID 1 and a worker: their framing, and the worker's end of the socketpair.

A message is a JSON object (what orjson writes) behind its 4-byte big-endian length; ``encode`` makes
one, ``Decoder`` takes a byte stream in any pieces and gives back whole messages (a length over
``MAX_MESSAGE`` or a body that is not a JSON object is a ``ValueError``: the stream cannot be trusted
after it).

``WorkerLink`` is every worker's end (the I/O worker, control); PID 1's end is
``workers.Channel``, which never blocks. A worker may block, so its end is plain: ``send`` from any
thread (whole frames, under a lock), ``read`` for one ``recv`` worth of messages (for a worker's own
loop or ``select``), ``drain`` for what is there already, ``serve`` for a reader that runs until PID 1
closes the channel, and ``forward_logs`` so the worker's log lines reach PID 1's log. A send waits
for PID 1 to take it (or ``send_timeout``); one that fails or times out may leave a partial frame
behind: the link is broken from then on and ``on_broken`` says so, once.
"""

from __future__ import annotations

import struct
from _socket import MSG_DONTWAIT  # the C module: ``socket`` itself costs a service config's first spawn

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from typing import Any

Message = dict[str, "Any"]
_LEN = struct.Struct(">I")
MAX_MESSAGE = 16 << 20


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON: orjson's to refuse


class _Json:
    """The stdlib's C JSON encoder and scanner, without ``json`` (it imports ``re``) or orjson (uuid,
    dataclasses, inspect, typing: 2.4 MiB of PID 1 at its first worker, measured: benchmarks/tree.py).
    Whatever they do not take as plain JSON (NaN, a type only orjson knows, a surrogate) goes to
    orjson, so what is sent and refused is orjson's."""

    def __init__(self) -> None:
        import _json

        self.dumps = _json.make_encoder(
            None, self._unknown, _json.encode_basestring, None, ":", ",", False, False, False
        )
        self.strict, self.object_hook, self.object_pairs_hook = True, None, None
        self.parse_float, self.parse_int, self.parse_constant = float, int, _no_constant
        self.memo: dict[str, str] = {}
        self.scan = _json.make_scanner(self)  # type: ignore[arg-type]

    @staticmethod
    def _unknown(obj: object) -> object:
        raise TypeError(type(obj).__name__)


_json_c: _Json | None = None


def _dumps(msg: Message) -> bytes:
    global _json_c
    try:
        if _json_c is None:
            _json_c = _Json()
        return "".join(_json_c.dumps(msg, 0)).encode("utf-8")
    except Exception:
        import orjson

        return orjson.dumps(msg)


def _loads(body: bytes) -> Any:
    global _json_c
    try:
        if _json_c is None:
            _json_c = _Json()
        text = body.decode("utf-8")
        value, end = _json_c.scan(text, 0)
        if end == len(text):
            return value
    except Exception:
        pass
    import orjson

    return orjson.loads(body)  # JSONDecodeError is a ValueError


def encode(msg: Message) -> bytes:
    body = _dumps(msg)
    if len(body) > MAX_MESSAGE:
        raise ValueError(f"message of {len(body)} bytes is over the limit")
    return _LEN.pack(len(body)) + body


class Decoder:
    """Turns a byte stream into messages. A malformed frame raises ValueError, after the whole
    messages before it were given back (the next ``feed`` raises it, and every one after)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.error: str | None = None

    def feed(self, data: bytes) -> list[Message]:
        if self.error is not None:
            raise ValueError(self.error)
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= 4:
            try:
                msg = self._next()
            except ValueError as e:
                self.error = str(e)
                if out:
                    return out
                raise
            if msg is None:
                break
            out.append(msg)
        return out

    def _next(self) -> Message | None:
        (size,) = _LEN.unpack_from(self._buf)
        if size > MAX_MESSAGE:
            raise ValueError(f"message of {size} bytes is over the limit")
        if len(self._buf) < 4 + size:
            return None
        msg = _loads(bytes(self._buf[4 : 4 + size]))
        if not isinstance(msg, dict):
            raise ValueError(f"a message must be a JSON object, not {type(msg).__name__}")
        del self._buf[: 4 + size]
        return msg

    @property
    def pending(self) -> int:
        """Bytes of a message not complete yet."""
        return len(self._buf)


class WorkerLink:
    """A worker's end of its channel to PID 1; ``send`` is thread-safe."""

    def __init__(
        self,
        sock: socket.socket,
        on_broken: Callable[[], None] = lambda: None,
        send_timeout: float | None = None,
    ) -> None:
        self.sock = sock
        self.on_broken = on_broken
        self.broken = False
        sock.settimeout(send_timeout)  # recv too: ``read`` then returns [] at each timeout
        import threading  # here: only a worker has threads; PID 1 imports this module for its framing

        self._send_lock = threading.Lock()
        self._decoder = Decoder()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, msg: Message) -> bool:
        """Send one message whole; False (and the link broken) if it could not be."""
        data = encode(msg)
        with self._send_lock:
            if self.broken:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                self.broken = True
        self.on_broken()
        return False

    def read(self) -> list[Message] | None:
        """What one ``recv`` brings (maybe nothing yet); None once PID 1 closed the channel or sent
        something that is not a message."""
        if self._decoder.error is not None:
            return None
        try:
            data = self.sock.recv(1 << 16)
        except (BlockingIOError, TimeoutError):
            return []
        except OSError:
            return None
        if not data:
            return None
        try:
            return self._decoder.feed(data)
        except ValueError:
            return None

    def drain(self) -> list[Message]:
        """Every message PID 1 has written so far, without waiting for more."""
        out: list[Message] = []
        while True:
            try:
                data = self.sock.recv(1 << 16, MSG_DONTWAIT)
                out += self._decoder.feed(data) if data else []
            except (OSError, ValueError):  # nothing more now (EAGAIN), or a broken channel
                return out
            if not data:
                return out

    def serve(self, on_message: Callable[[Message], None]) -> None:
        """Deliver messages until the channel closes (a reader thread's body)."""
        while (messages := self.read()) is not None:
            for msg in messages:
                on_message(msg)

    def forward_logs(self) -> None:
        """This process' log lines go to PID 1 (as ``log`` messages), which writes them to its log."""
        from pypilot import logs

        def sink(data: bytes) -> None:
            self.send({"op": "log", "data": data.decode("utf-8", "replace")})

        logs.set_sink(sink)
