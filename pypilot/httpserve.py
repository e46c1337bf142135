"""A small HTTP/1.0 server for the telemetry endpoints: one thread per connection, one request each.

What ``http.server.ThreadingHTTPServer`` did for ``/metrics`` and ``/status``, without it: ``http.server``
imports ``http.client``, ``email``, ``html``, ``mimetypes`` (~5 MiB of RSS in the discovery worker, issue
#15) to serve two GETs a scrape interval. Same answers as before: ``HTTP/1.0``, ``Server`` and ``Date``
headers, the handler's status, type and body, the connection closed after it; a request that is not
HTTP gets ``400``; a client that sends nothing for ``TIMEOUT`` seconds is dropped (``http.server`` waited
for ever, a thread each).
"""

from __future__ import annotations

import socket
import socketserver
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    # (method, path) -> (status, content type, body)
    Handler = Callable[[str, str], tuple[int, str, bytes]]

__all__ = ["Server", "serve"]

TIMEOUT = 10.0
MAX_LINE = 65536
MAX_HEADERS = 100
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           500: "Internal Server Error", 501: "Not Implemented"}
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"})  # others: 501, as http.server did
SERVER = "pypilot"
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(now: float | None = None) -> str:
    """RFC 9110's IMF-fixdate, in English whatever the locale."""
    t = time.gmtime(now)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


class _Request(socketserver.StreamRequestHandler):
    timeout = TIMEOUT
    server: Server

    def handle(self) -> None:
        try:
            line = self.rfile.readline(MAX_LINE + 1)
            if not line.strip():
                return  # connected and left (a port probe)
            parts = line.decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/") or len(line) > MAX_LINE:
                self._send(400, "text/plain; charset=utf-8", b"Bad Request\n", "GET")
                return
            method, target = parts[0], parts[1]
            for _ in range(MAX_HEADERS + 1):  # the headers: nothing in them changes the answer
                header = self.rfile.readline(MAX_LINE + 1)
                if header in (b"\r\n", b"\n", b""):
                    break
            else:
                self._send(400, "text/plain; charset=utf-8", b"Bad Request\n", method)
                return
            if method not in METHODS:
                self._send(501, "text/plain; charset=utf-8", b"Unsupported method\n", method)
                return
            status, ctype, body = self.server.handler(method, target.split("?", 1)[0])
            self._send(status, ctype, body, method)
        except (TimeoutError, ConnectionError):
            pass  # the client went away or said nothing: nothing to answer

    def _send(self, status: int, ctype: str, body: bytes, method: str) -> None:
        head = (f"HTTP/1.0 {status} {REASONS.get(status, 'Unknown')}\r\nServer: {SERVER}\r\n"
                f"Date: {http_date()}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n")
        self.wfile.write(head.encode("latin-1") + (b"" if method == "HEAD" else body))


class Server(socketserver.ThreadingTCPServer):
    """Listens on ``(ip, port)`` (IPv6 when ``ip`` has a colon); ``handler`` answers each request."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Handler) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.handler = handler
        super().__init__(address, _Request)


def serve(address: tuple[str, int], handler: Handler) -> Server:
    """A bound, listening server (``serve_forever`` it in a thread of your own)."""
    return Server(address, handler)
