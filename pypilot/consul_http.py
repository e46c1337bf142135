"""py-consul over a small stdlib HTTP/1.1 client, without requests (issue #15).

py-consul stays the I/O worker's Consul API; what this module replaces is only its transport.
py-consul's ``consul.std`` imports requests (with urllib3, idna, charset-normalizer, certifi and ssl:
~16 MiB of RSS in a process that makes a handful of calls a second to one agent on loopback). Here:

- ``Pool``: keep-alive connections to one agent over a plain socket; ``ssl`` is imported only for an
  https agent. A response is read by its ``Content-Length``, as chunks, or to the end of the connection;
  a pooled connection the agent closed meanwhile is dropped before use, and a request that finds one
  closed under it (nothing of the answer read yet) is sent again once on a new connection.
- ``consul_client(...)``: a py-consul ``Consul`` whose ``http`` is that pool, with py-consul's
  ``Response(code, headers, body)`` answers and its timeout rule (a blocking query's ``wait`` and its
  1/16 jitter are added to the call timeout).

py-consul's package ``__init__`` imports ``consul.std`` (hence requests) unconditionally and offers no
way to plug a client class before it does; so unless something else already loaded the real one,
``consul.std`` is registered as a small module of our own first, whose ``Consul`` is the class built here
(PEP 562 ``__getattr__``: the class needs ``consul.base``, which can only load while the package
initialises). Everything else of py-consul is its own code, unchanged; what its import loads and the
worker never calls waits until used (``_import_consul``: its endpoint modules, ``logging``).

Failures are the stdlib's exceptions, shaped as ``pypilot.consul.describe_error`` reads them:
``ConnectionRefusedError``, ``TimeoutError``, ``ConnectionResetError`` (closed mid-answer, or not HTTP),
``ConnectionError`` (anything else while connecting, name resolution included) and ``ssl.SSLError``.
"""

from __future__ import annotations

import socket
import sys
import threading

from pypilot.http1 import Headers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Headers", "Pool", "consul_client"]

DEFAULT_TIMEOUT = 30.0  # py-consul's
DEFAULT_WAIT = 300.0  # Consul holds a blocking query without ``wait`` for 5 minutes
MAX_IDLE = 10  # pooled connections kept (urllib3's default pool size)
MAX_HEADER_LINE = 65536
MAX_HEADERS = 200
USER_AGENT = "pypilot"


class _Conn:
    """One connection: the socket and its buffered reader."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.used = False  # has carried a request before (it may have been closed by the agent since)

    def close(self) -> None:
        for part in (self.reader, self.sock):
            try:
                part.close()
            except OSError:
                pass

    def stale(self) -> bool:
        """The agent closed it (or sent something unasked) while it sat in the pool."""
        import select

        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)


class _Stale(Exception):
    """A reused connection was found closed before any of the answer arrived: send again."""


class Pool:
    """Keep-alive HTTP/1.1 connections to one agent; thread-safe, one request per connection at a time."""

    def __init__(self, host: str, port: int, scheme: str = "http", verify: bool | str = True,
                 cert: Any = None, server_hostname: str | None = None) -> None:
        self.host, self.port, self.scheme = host, port, scheme
        self.authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.server_hostname = server_hostname or host
        self.tls: Any = _tls_context(verify, cert) if scheme == "https" else None
        self.idle: list[_Conn] = []
        self.lock = threading.Lock()

    def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                body: bytes = b"", timeout: float | None = DEFAULT_TIMEOUT) -> tuple[int, Headers, bytes]:
        """(status, headers, body) of one request; ``target`` is the path and query, already encoded."""
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.authority}", f"User-Agent: {USER_AGENT}",
                "Accept: */*", "Accept-Encoding: identity"]
        if body or method not in ("GET", "HEAD"):
            head.append(f"Content-Length: {len(body)}")
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        wire = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        conn = self._take(timeout)
        try:
            try:
                answer = self._exchange(conn, wire, method, timeout)
            except _Stale:
                conn.close()
                conn = self._connect(timeout)
                answer = self._exchange(conn, wire, method, timeout)
        except BaseException:
            conn.close()
            raise
        code, resp_headers, resp_body, keep = answer
        if keep:
            self._give(conn)
        else:
            conn.close()
        return code, resp_headers, resp_body

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()

    # -- connections ---------------------------------------------------------------------

    def _take(self, timeout: float | None) -> _Conn:
        while True:
            with self.lock:
                conn = self.idle.pop() if self.idle else None
            if conn is None:
                return self._connect(timeout)
            if not conn.stale():
                return conn
            conn.close()

    def _give(self, conn: _Conn) -> None:
        conn.used = True
        with self.lock:
            if len(self.idle) < MAX_IDLE:
                self.idle.append(conn)
                return
        conn.close()

    def _connect(self, timeout: float | None) -> _Conn:
        try:
            addr = (ascii_host(self.host), self.port)
            sock = socket.create_connection(addr, timeout)  # type: ignore[arg-type]  # bytes work too
        except (ConnectionError, TimeoutError):
            raise
        except OSError as e:  # name resolution, no route, ...: one kind of failure to the caller
            raise ConnectionError(f"cannot connect to {self.authority}: {e}") from e
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.server_hostname)
        except BaseException:
            sock.close()
            raise
        return _Conn(sock)

    # -- one exchange --------------------------------------------------------------------

    def _exchange(self, conn: _Conn, wire: bytes, method: str,
                  timeout: float | None) -> tuple[int, Headers, bytes, bool]:
        conn.sock.settimeout(timeout)
        try:
            conn.sock.sendall(wire)
            line = conn.reader.readline(MAX_HEADER_LINE + 1)
        except (BrokenPipeError, ConnectionResetError):
            if conn.used:
                raise _Stale() from None
            raise
        if not line:
            if conn.used:
                raise _Stale()
            raise ConnectionResetError("the agent closed the connection without answering")
        while line in (b"\r\n", b"\n"):  # tolerated before a status line (RFC 9112 §2.2)
            line = conn.reader.readline(MAX_HEADER_LINE + 1)
        code = _status(line)
        headers = self._headers(conn)
        while 100 <= code < 200:  # an interim answer (100 Continue): the real one follows
            code = _status(conn.reader.readline(MAX_HEADER_LINE + 1))
            headers = self._headers(conn)
        keep = "close" not in headers.get("Connection", "").lower() and not line.startswith(b"HTTP/1.0")
        if method == "HEAD" or code in (204, 304):
            return code, headers, b"", keep
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            return code, headers, self._chunked(conn), keep
        length = headers.get("Content-Length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                raise ConnectionResetError(f"not HTTP: Content-Length {length[:40]!r}") from None
            body = conn.reader.read(n) if n > 0 else b""
            if len(body) < n:
                raise ConnectionResetError("the agent closed the connection mid-answer")
            return code, headers, body, keep
        return code, headers, conn.reader.read(), False  # delimited by the end of the connection

    @staticmethod
    def _headers(conn: _Conn) -> Headers:
        pairs: list[tuple[str, str]] = []
        for _ in range(MAX_HEADERS + 1):
            line = conn.reader.readline(MAX_HEADER_LINE + 1)
            if not line:
                raise ConnectionResetError("the agent closed the connection mid-answer")
            if line in (b"\r\n", b"\n"):
                return Headers(pairs)
            if len(line) > MAX_HEADER_LINE:
                raise ConnectionResetError("not HTTP: a header line over 64 KiB")
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ConnectionResetError(f"not HTTP: header line {line[:40]!r}")
            pairs.append((name.strip(), value.strip()))
        raise ConnectionResetError(f"not HTTP: more than {MAX_HEADERS} headers")

    @staticmethod
    def _chunked(conn: _Conn) -> bytes:
        parts = []
        while True:
            line = conn.reader.readline(MAX_HEADER_LINE + 1)
            if not line:
                raise ConnectionResetError("the agent closed the connection mid-answer")
            try:
                n = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ConnectionResetError(f"not HTTP: chunk size {line[:40]!r}") from None
            if n == 0:
                break
            chunk = conn.reader.read(n)
            if len(chunk) < n or conn.reader.readline(MAX_HEADER_LINE + 1) not in (b"\r\n", b"\n"):
                raise ConnectionResetError("the agent closed the connection mid-answer")
            parts.append(chunk)
        while True:  # trailers, then the blank line
            line = conn.reader.readline(MAX_HEADER_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                return b"".join(parts)


def ascii_host(host: str) -> str | bytes:
    """``host`` for ``getaddrinfo``: bytes when it is ASCII (an address, a plain name). Given a str, the
    socket module encodes it with the ``idna`` codec, whose first use imports ``encodings.idna``,
    ``stringprep`` and ``unicodedata`` (0.3 MiB of the I/O worker's private pages, measured) to leave an
    ASCII name as it is; a non-ASCII name still takes that path."""
    return host.encode("ascii") if host.isascii() else host


def _status(line: bytes) -> int:
    """The code of a status line ``HTTP/1.1 200 OK``; ConnectionResetError if it is not one."""
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ConnectionResetError(f"not HTTP: status line {line[:40]!r}")
    return int(parts[1])


def _tls_context(verify: bool | str, cert: Any) -> Any:
    """requests' meaning of ``verify`` (False, True, a CA file or directory) and ``cert`` (a file, or
    a (cert, key) pair), as an ``ssl.SSLContext``."""
    import os
    import ssl

    if verify is False:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str):
        cafile, capath = (None, verify) if os.path.isdir(verify) else (verify, None)
        ctx = ssl.create_default_context(cafile=cafile, capath=capath)
    else:
        ctx = ssl.create_default_context()
    if cert:
        certfile, keyfile = (cert[0], cert[1]) if isinstance(cert, tuple | list) else (cert, None)
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


def _duration(text: str) -> float:
    """Seconds in a Go duration (``5s``, ``100ms``, ``1m30s``); 0 for what is not one."""
    import re

    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)", text))


def call_timeout(timeout: float | None, params: Any) -> float | None:
    """py-consul's rule: a blocking query (``index``) waits its ``wait`` (5 min if none) plus 1/16."""
    if timeout is None:
        return None
    given = dict(params or ())
    if "index" not in given:
        return timeout
    wait = _duration(str(given["wait"])) if "wait" in given else DEFAULT_WAIT
    return timeout + wait + wait / 16


# -- py-consul on the pool -------------------------------------------------------------------

_classes: dict[str, Any] = {}


def _adapters() -> dict[str, Any]:
    """py-consul's HTTPClient and Consul on ``Pool``, built once ``consul.base`` can be imported."""
    if _classes:
        return _classes
    import urllib.parse

    from consul import base

    class HTTPClient(base.HTTPClient):
        def __init__(self, host: str, port: int, scheme: str, verify: bool | str = True, cert: Any = None,
                     timeout: float | None = DEFAULT_TIMEOUT, server_hostname: str | None = None) -> None:
            super().__init__(host, port, scheme, verify, cert)
            self.timeout = timeout
            self.pool = Pool(host, port, scheme, verify, cert, server_hostname)

        def _call(self, method: str, callback: Any, path: str, params: Any, data: str | bytes,
                  headers: dict[str, str] | None, raw: bool = False) -> Any:
            target = urllib.parse.quote(path, safe="/:")
            if params:
                target += "?" + urllib.parse.urlencode(params)
            body = data.encode() if isinstance(data, str) else bytes(data or b"")
            code, resp_headers, resp = self.pool.request(
                method, target, headers, body, call_timeout(self.timeout, params))
            text: Any = resp if raw else resp.decode("utf-8", "replace")
            return callback(base.Response(code, resp_headers, text))

        def get(self, callback: Any, path: str, params: Any = None, headers: dict[str, str] | None = None,
                raw: bool = False) -> Any:
            return self._call("GET", callback, path, params, b"", headers, raw)

        def put(self, callback: Any, path: str, params: Any = None, data: str | bytes = "",
                headers: dict[str, str] | None = None) -> Any:
            return self._call("PUT", callback, path, params, data, headers)

        def delete(self, callback: Any, path: str, params: Any = None, data: str | bytes = "",
                   headers: dict[str, str] | None = None) -> Any:
            return self._call("DELETE", callback, path, params, data, headers)

        def post(self, callback: Any, path: str, params: Any = None, data: str = "",
                 headers: dict[str, str] | None = None) -> Any:
            return self._call("POST", callback, path, params, data, headers)

        def close(self) -> None:
            self.pool.close()

    class Consul(base.Consul):
        """py-consul's ``consul.Consul``, with ``connections_timeout`` as in ``consul.std``, and
        ``server_hostname`` (SNI and the certificate's expected name, when they are not the host)."""

        def __init__(self, *args: Any, connections_timeout: float | None = DEFAULT_TIMEOUT,
                     server_hostname: str | None = None, **kwargs: Any) -> None:
            self.connections_timeout = connections_timeout
            self.server_hostname = server_hostname
            super().__init__(*args, **kwargs)

        def http_connect(self, host: str, port: int, scheme: str, verify: bool | str = True,
                         cert: Any = None) -> Any:
            return HTTPClient(host, port, scheme, verify, cert, self.connections_timeout,
                              self.server_hostname)

    _classes.update(HTTPClient=HTTPClient, Consul=Consul)
    return _classes


def _std_getattr(name: str) -> Any:
    try:
        return _adapters()[name]
    except KeyError:
        raise AttributeError(f"module 'consul.std' (pypilot.consul_http) has no attribute {name!r}") from None


def _install_std() -> None:
    """Stand in for ``consul.std`` before py-consul's package imports it (and requests with it)."""
    if "consul.std" in sys.modules:
        return  # loaded already (requests is paid for): our classes work beside it
    import types

    std = types.ModuleType("consul.std", "py-consul's std client, on pypilot.consul_http (no requests)")
    std.__getattr__ = _std_getattr  # type: ignore[method-assign]
    std.__dict__["__all__"] = ["Consul"]
    sys.modules["consul.std"] = std


class _PackageNotFoundError(ModuleNotFoundError):
    """``importlib.metadata.PackageNotFoundError``, while the stand-in below is in place."""


def _dist_version(name: str) -> str:
    """A distribution's version from its ``*.dist-info/METADATA`` on ``sys.path``: what
    ``importlib.metadata.version`` answers, without the ~4.6 MiB it imports (email, zipfile, csv, ...)."""
    import os

    def norm(text: str) -> str:
        return text.lower().replace("-", "_").replace(".", "_")

    want = norm(name)
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for d in names:
            if d.endswith(".dist-info") and norm(d[: -len(".dist-info")].rpartition("-")[0]) == want:
                try:
                    with open(os.path.join(entry, d, "METADATA"), encoding="utf-8") as f:
                        for line in f:
                            if line.startswith("Version:"):
                                return line.split(":", 1)[1].strip()
                            if not line.strip():
                                break
                except OSError:
                    continue
    raise _PackageNotFoundError(name)


# py-consul's endpoints (``consul.base`` imports each module for one class, and ``Consul()`` makes one of
# each): the worker calls none of them, only ``client.http``
_ENDPOINTS = {
    "consul.api.acl": "ACL", "consul.api.agent": "Agent", "consul.api.catalog": "Catalog",
    "consul.api.config": "Config", "consul.api.connect": "Connect", "consul.api.coordinates": "Coordinate",
    "consul.api.discovery_chain": "DiscoveryChain", "consul.api.event": "Event",
    "consul.api.health": "Health", "consul.api.kv": "KV", "consul.api.operator": "Operator",
    "consul.api.query": "Query", "consul.api.session": "Session", "consul.api.snapshot": "Snapshot",
    "consul.api.status": "Status", "consul.api.txn": "Txn",
}  # fmt: skip


def _endpoint(module: str, name: str) -> type:
    """Stands for py-consul's endpoint class ``module.name``: the real module is imported, and the real
    endpoint made, at the first use of one of its names (``client.health.service(...)``)."""

    def __init__(self: Any, agent: Any) -> None:
        self.__dict__.update(_agent=agent, _real=None)

    def __getattr__(self: Any, attr: str) -> Any:
        real = self.__dict__["_real"]
        if real is None:
            import importlib

            real = self.__dict__["_real"] = getattr(importlib.import_module(module), name)(self._agent)
        return getattr(real, attr)

    doc = f"{module}.{name}, made at its first use (pypilot.consul_http)"
    return type(name, (), {"__init__": __init__, "__getattr__": __getattr__, "__doc__": doc,
                           "__module__": __name__})


def _import_consul() -> None:
    """Import py-consul's package and ``consul.base``: with our ``consul.std``, and, for the length of the
    import only, stand-ins (``lean_imports``) for what its import reads but the worker never uses:
    ``importlib.metadata`` (``__init__`` asks it for py-consul's version), the endpoint modules (each
    endpoint is made from its module at its first use) and ``logging`` (its two loggers are the real
    ones once they log: py-consul logs nothing on our calls). Measured in a child forked from PID 1's
    modules: the import's private pages 3.1 -> 1.1 MiB (the endpoints 0.7, logging with traceback,
    linecache and tokenize 1.3; the latter pays only while nothing else in the worker imports logging)."""
    if "consul" in sys.modules:
        return
    from pypilot.lean_imports import deferring, lazy_logging, standing_in

    _install_std()
    metadata = {"version": _dist_version, "PackageNotFoundError": _PackageNotFoundError}
    endpoints: dict[str, dict[str, Any]] = {m: {c: _endpoint(m, c)} for m, c in _ENDPOINTS.items()}
    with standing_in({"importlib.metadata": metadata}), deferring({"logging": lazy_logging(), **endpoints}):
        import consul
        import consul.base  # noqa: F401


def consul_client(**kwargs: Any) -> Any:
    """``consul.Consul(**kwargs)`` on ``Pool``; py-consul's arguments plus ``connections_timeout`` and
    ``server_hostname``."""
    _import_consul()
    return _adapters()["Consul"](**kwargs)
