"""Telemetry's own HTTP server (``pypilot.telemetry_server``), in this process on loopback: a real
``Telemetry`` with a fixed snapshot, its server thread and real client sockets. What it answers byte for byte
(as waitress did, HEAD without the body), keep-alive and pipelining, and its bounds: a head over 8 KiB, bad
requests, a silent client, a client that never reads or resets, more than 64 connections, a scrape that
raises; listening retried, and no HTTP-server module imported for it."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypilot import telemetry_server
from pypilot.telemetry import Telemetry
from tests.discovery.harness import free_port
from tests.pid1 import wait_for

SNAP = {"jobs": [["app", "healthy", True, "127.0.0.1", 8000], ["sensor", "unknown", False, "", 0]],
        "watches": ["up"], "events": [["StatusHealthy", "app", 1]], "http": []}
METRICS = [{"name": "g", "help": "a gauge", "type": "gauge"}]


def start(port: int, metrics: list[dict[str, str]] = METRICS) -> Telemetry:
    t = Telemetry({"ip": "127.0.0.1", "port": port, "metrics": metrics}, "9.9.9", lambda: SNAP)
    t.start()
    return t


@contextlib.contextmanager
def serving(metrics: list[dict[str, str]] = METRICS) -> Iterator[tuple[Telemetry, int]]:
    port = free_port()
    t = start(port, metrics)
    wait_for(lambda: t._server is not None, 10, "the server to listen")
    try:
        yield t, port
    finally:
        t.stop()


@pytest.fixture
def served() -> Iterator[tuple[Telemetry, int]]:
    with serving() as t_port:
        yield t_port


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def read_response(s: socket.socket, buf: bytearray) -> tuple[bytes, dict[str, str], bytes]:
    """One response from ``s`` (``buf``: what was read past the previous one): status line, headers, body."""
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        assert data, f"closed before a full head: {bytes(buf)!r}"
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {k.decode().lower(): v.decode().strip() for k, _, v in (x.partition(b":") for x in lines[1:])}
    length = int(headers["content-length"])
    buf[:] = rest
    while len(buf) < length:
        data = s.recv(65536)
        assert data, "closed before the whole body"
        buf += data
    body = bytes(buf[:length])
    del buf[:length]
    return lines[0], headers, body


def scrape(port: int) -> bytes:
    with connect(port) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, body = read_response(s, bytearray())
        assert status == b"HTTP/1.1 200 OK" and headers["connection"] == "close"
        return body


def closed_by_server(s: socket.socket, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_two_requests_on_one_keep_alive_connection_then_head_and_the_error_pages(
        served: tuple[Telemetry, int]) -> None:
    _, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    r1 = conn.getresponse()
    body1 = r1.read()
    sock = conn.sock
    assert r1.status == 200 and r1.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    assert b"\ng 0\n" in body1 and b"# TYPE containerpilot_events counter" in body1
    assert r1.getheader("Server") == "pypilot" and r1.getheader("Date", "").endswith(" GMT")
    conn.request("GET", "/status")
    r2 = conn.getresponse()
    assert r2.status == 200 and r2.getheader("Content-Type") == "application/json"
    assert json.loads(r2.read()) == {
        "Version": "9.9.9", "Jobs": [{"Name": "sensor", "Status": "unknown"}],
        "Services": [{"Name": "app", "Address": "127.0.0.1", "Port": 8000, "Status": "healthy"}],
        "Watches": ["up"]}
    conn.request("HEAD", "/metrics")
    r3 = conn.getresponse()
    assert r3.status == 200 and int(r3.getheader("Content-Length", "0")) > 0 and r3.read() == b""
    for method, path, code, body in [("POST", "/status", 405, b"Method Not Allowed\n"),
                                     ("HEAD", "/status", 405, b""),
                                     ("GET", "/nothing", 404, b"404 page not found\n")]:
        conn.request(method, path)
        r = conn.getresponse()
        assert (r.status, r.read()) == (code, body), (method, path)
        assert r.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert conn.sock is sock  # every answer on the first connection: none of them closed it
    conn.close()


def test_pipelined_requests_are_answered_in_order_and_http_1_0_closes_unless_kept_alive(
        served: tuple[Telemetry, int]) -> None:
    _, port = served
    with connect(port) as s:
        s.sendall(b"GET /status HTTP/1.1\r\n\r\nPOST /status HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                  b"GET /x?y=1 HTTP/1.1\r\n\r\n")
        buf = bytearray()
        assert [read_response(s, buf)[0] for _ in range(3)] == [
            b"HTTP/1.1 200 OK", b"HTTP/1.1 405 Method Not Allowed", b"HTTP/1.1 404 Not Found"]
    with connect(port) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /nothing HTTP/1.0\r\n\r\n")
        buf = bytearray()
        status, headers, _ = read_response(s, buf)
        assert status == b"HTTP/1.0 200 OK" and headers["connection"] == "Keep-Alive"
        status, headers, body = read_response(s, buf)
        assert (status, headers["connection"], body) == (b"HTTP/1.0 404 Not Found", "close",
                                                          b"404 page not found\n")
        assert s.recv(1) == b""


def test_a_head_over_8_kib_is_refused_with_431_and_the_connection_closed(
        served: tuple[Telemetry, int]) -> None:
    _, port = served
    with connect(port) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        status, headers, body = read_response(s, bytearray())
        assert status == b"HTTP/1.0 431 Request Header Fields Too Large" and headers["connection"] == "close"
        assert body == b"Request Header Fields Too Large\n"
        assert closed_by_server(s, 5)
    with connect(port) as s:  # the head is not even complete: refused as soon as it is too long
        s.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 9000)
        assert read_response(s, bytearray())[0] == b"HTTP/1.0 431 Request Header Fields Too Large"
    for bad in (b"NOT HTTP\r\n\r\n", b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
                b"GET /metrics HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b"GET metrics HTTP/1.1\r\n\r\n"):
        with connect(port) as s:
            s.sendall(bad)
            assert read_response(s, bytearray())[0] == b"HTTP/1.0 400 Bad Request", bad
            assert closed_by_server(s, 5)
    assert b"\ng 0\n" in scrape(port)


def test_a_silent_client_is_closed_after_the_idle_time_while_a_scrape_is_answered(
        served: tuple[Telemetry, int], monkeypatch: pytest.MonkeyPatch) -> None:
    _, port = served
    monkeypatch.setattr(telemetry_server, "IDLE", 1.0)
    with connect(port) as silent, connect(port) as half:
        half.sendall(b"GET /metrics HTTP/1.1\r\n")  # a head never finished
        started = time.monotonic()
        assert b"\ng 0\n" in scrape(port)
        assert closed_by_server(silent, 5) and closed_by_server(half, 5)
        assert 0.9 < time.monotonic() - started < 4


# 1000 metrics: answers of ~100 KiB, so that 100 of them are far more than the kernel's buffers hold
# (a socket's send buffer grows to 4 MiB at most)
MANY = [{"name": f"gauge_{i}", "help": "h" * 60, "type": "gauge"} for i in range(1000)]


def blocked_client(telemetry: Telemetry, port: int, n: int) -> socket.socket:
    """A client that sent ``n`` scrapes and reads nothing, once an answer waits in the server's buffer."""
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", port))
    stuck.sendall(b"GET /metrics HTTP/1.1\r\n\r\n" * n)
    server = telemetry._server
    wait_for(lambda: any(c.out for c in list(server._conns.values())), 10, "an answer waiting to be sent")
    return stuck


def test_a_client_that_never_reads_holds_only_its_own_answers() -> None:
    n = 100
    with serving(MANY) as (telemetry, port), blocked_client(telemetry, port, n) as stuck:
        for _ in range(3):
            began = time.monotonic()
            assert b"\ngauge_999 0\n" in scrape(port)
            assert time.monotonic() - began < 2
        stuck.settimeout(10)
        buf = bytearray()
        answers = [read_response(stuck, buf) for _ in range(n)]  # now it reads: every answer, whole
        assert [a[0] for a in answers] == [b"HTTP/1.1 200 OK"] * n
        assert all(b"\ngauge_999 0\n" in a[2] for a in answers)


def test_a_client_reset_while_its_answers_wait_is_forgotten() -> None:
    with serving(MANY) as (telemetry, port):
        stuck = blocked_client(telemetry, port, 100)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stuck.close()  # a reset, not a close: the server's next send fails
        wait_for(lambda: not telemetry._server._conns, 5, "the connection forgotten")
        assert b"\ngauge_999 0\n" in scrape(port)


def test_past_64_connections_the_one_idle_longest_is_closed(served: tuple[Telemetry, int]) -> None:
    _, port = served
    first = connect(port)  # accepted first: the one idle longest
    others = [connect(port) for _ in range(telemetry_server.MAX_CONNS)]
    try:
        assert closed_by_server(first, 5)
        assert b"\ng 0\n" in scrape(port)  # the newest connection is served
    finally:
        for s in [first, *others]:
            s.close()


def test_a_scrape_that_raises_is_answered_500_and_the_next_one_200(
        served: tuple[Telemetry, int], monkeypatch: pytest.MonkeyPatch) -> None:
    telemetry, port = served

    def broken() -> bytes:
        raise RuntimeError("collector failed")

    monkeypatch.setattr(telemetry, "metrics_text", broken)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    assert (r.status, r.read()) == (500, b"Internal Server Error\n")
    monkeypatch.undo()
    conn.request("GET", "/metrics")
    assert conn.getresponse().status == 200
    conn.close()


def test_listening_is_retried_until_the_port_is_free_and_stop_closes_it() -> None:
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    t = start(port)
    threading.Timer(1.2, holder.close).start()  # the first tries fail: the port is taken
    wait_for(lambda: t._server is not None, 5, "listening after the port was freed")
    assert b"\ng 0\n" in scrape(port)
    t.stop()
    wait_for(lambda: refused(port), 5, "the port closed")


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


SCRAPE_ALONE = """
import socket, sys, time
from pypilot import lean_imports
lean_imports.install()  # as the I/O worker does, before py-consul and prometheus-client
import pypilot.consul
from pypilot.telemetry import Telemetry
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
t = Telemetry({"ip": "127.0.0.1", "port": port}, "9.9.9", lambda: {})
t.start()
deadline = time.monotonic() + 10
while t._server is None:  # listening: the server exists once its socket is bound
    assert time.monotonic() < deadline, "telemetry never listened"
    time.sleep(0.01)
import urllib.request
assert b"process_resident_memory_bytes" in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read()
unwanted = ("waitress", "http.server", "wsgiref.simple_server", "socketserver", "gzip")
print("loaded", sorted(m for m in unwanted if m in sys.modules))
"""


def test_serving_a_scrape_imports_no_http_server_module() -> None:
    """What the I/O worker loads for telemetry: prometheus-client's exposition, not waitress and not the
    modules of prometheus-client's own servers and their gzip (urllib, the client here, imports none)."""
    out = subprocess.run([sys.executable, "-I", "-c", SCRAPE_ALONE], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert "loaded []" in out.stdout, out
