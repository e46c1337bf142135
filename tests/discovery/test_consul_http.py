"""py-consul on ``pypilot.consul_http`` (issue #15): the discovery worker's HTTP client without requests.

Against a scripted HTTP server on loopback that answers each request as a test says (the framings Consul
and a proxy use, a connection closed while pooled, garbage, silence), and against the stand-in agent through
py-consul's own API. The worker's calls against a real agent are the rest of tests/discovery."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from pypilot.consul import describe_error, make_client
from pypilot.consul_http import Pool, ascii_host, call_timeout
from tests.consul_standin import ConsulStandin

Answer = Callable[[int, bytes], tuple[bytes, str]]  # (connection number, request) -> (bytes, then)


class Scripted:
    """A loopback HTTP server: ``answer`` gives each request's reply and what follows it: ``keep`` (the
    connection stays open), ``close`` (closed after the reply) or ``hang`` (never answers)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True).start()

    def _serve(self, conn: socket.socket, n: int) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buf) < length:
                    buf += conn.recv(65536)
                request, buf = head + b"\r\n\r\n" + buf[:length], buf[length:]
                self.requests.append(request)
                reply, then = self.answer(n, request)
                if then == "hang":
                    self.stop.wait(10)
                    return
                conn.sendall(reply)
                if then == "close":
                    return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


@pytest.fixture
def scripted():
    servers: list[Scripted] = []

    def make(answer: Answer) -> Scripted:
        servers.append(Scripted(answer))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_the_worker_client_imports_neither_requests_nor_ssl_for_an_http_agent() -> None:
    """The point of the module: ~16 MiB of requests, urllib3, certifi, idna and ssl stay out of the worker."""
    with ConsulStandin() as standin:
        code = ("import sys; from pypilot.consul import make_client; "
                f"c = make_client({{'address': '{standin.address}'}}); "
                "print(c.agent.self() is not None, c.health.service('x')[1], "
                "[m for m in ('requests', 'urllib3', 'ssl', 'http.client', 'certifi', 'importlib.metadata', "
                "'email', 'encodings.idna') if m in sys.modules])")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "[]", "[]"]


def test_a_host_is_given_to_getaddrinfo_as_bytes_when_ascii_so_no_idna_codec_loads() -> None:
    assert ascii_host("127.0.0.1") == b"127.0.0.1"
    assert ascii_host("consul.service.local") == b"consul.service.local"
    assert ascii_host("bücher.example") == "bücher.example"  # still the IDNA path


def test_pyconsul_knows_its_own_version_though_importlib_metadata_was_not_loaded() -> None:
    code = ("import sys; from pypilot.consul import make_client; make_client({}); import consul; "
            "print(consul.__version__, 'importlib.metadata' in sys.modules); "
            "import importlib.metadata; print(importlib.metadata.version('py-consul'), "
            "importlib.metadata.PackageNotFoundError.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    version = second.split()[0]
    assert first == f"{version} False"  # the stand-in was gone once py-consul's package had loaded
    assert second == f"{version} importlib.metadata"  # and the real module is what others get
    assert version[0].isdigit()


def test_pyconsul_api_through_the_pool_reads_the_index_header_in_any_case(scripted) -> None:
    """py-consul's callbacks read ``X-Consul-Index``; a proxy may send it lower-cased (HTTP/2 hops do)."""
    server = scripted(lambda n, req: (ok(b"[]", "x-consul-index: 42\r\n"), "keep"))
    client = make_client({"address": f"127.0.0.1:{server.port}", "token": "s3cret"})
    index, nodes = client.health.service("web", passing=True, index=7, wait="1s")
    assert (index, nodes) == ("42", [])
    first = server.requests[0].decode()
    assert first.startswith("GET /v1/health/service/web?")
    assert "index=7" in first and "wait=1s" in first and "passing=1" in first
    assert "X-Consul-Token: s3cret\r\n" in first


def test_chunked_content_length_and_connection_delimited_answers(scripted) -> None:
    replies = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\n[1, \r\n3\r\n2]\n\r\n0\r\nT: x\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"true"),
        b"HTTP/1.0 200 OK\r\n\r\nto the end",
    ]
    def answer(n: int, req: bytes) -> tuple[bytes, str]:
        return replies[len(server.requests) - 1], "close" if b"end" in req else "keep"

    server = scripted(answer)
    pool = Pool("127.0.0.1", server.port)
    assert pool.request("GET", "/a")[::2] == (200, b"[1, 2]\n")
    assert pool.request("PUT", "/b", body=b"{}")[::2] == (200, b"true")
    assert pool.request("GET", "/end")[::2] == (200, b"to the end")
    assert server.connections == 1  # kept alive for the first two
    assert b"Content-Length: 2\r\n\r\n{}" in server.requests[1]


def test_one_connection_is_reused_and_one_the_agent_closed_while_pooled_is_replaced(scripted) -> None:
    # the agent answers, keeps the connection a moment, then closes it (an idle timeout, a restart)
    server = scripted(lambda n, req: (ok(b"x"), "keep" if b"/keep" in req else "close"))
    pool = Pool("127.0.0.1", server.port)
    for _ in range(3):
        assert pool.request("GET", "/keep")[0] == 200
    assert server.connections == 1
    assert pool.request("GET", "/last")[0] == 200  # the server closes this one after answering, silently
    assert pool.request("GET", "/keep")[0] == 200  # found closed in the pool: a new connection, no error
    assert server.connections == 2


def test_a_pooled_connection_closed_as_the_request_goes_is_retried_once_on_a_new_one(scripted) -> None:
    """The race a pool check cannot see: the agent closes just as the request is sent (nothing answered)."""
    state = {"drop": True}

    def answer(n: int, req: bytes) -> tuple[bytes, str]:
        if n == 1 and b"/second" in req and state.pop("drop", False):
            return b"", "close"  # read the request, answer nothing, close
        return ok(b"ok"), "keep"

    server = scripted(answer)
    pool = Pool("127.0.0.1", server.port)
    assert pool.request("GET", "/first")[::2] == (200, b"ok")
    assert pool.request("GET", "/second")[::2] == (200, b"ok")
    assert server.connections == 2


def test_failures_are_described_as_the_worker_logs_them(scripted) -> None:
    port = socket.create_server(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()

    def fails(pool: Pool, timeout: float = 5.0) -> str:
        with pytest.raises(Exception) as e:
            pool.request("GET", "/v1/agent/self", timeout=timeout)
        return describe_error(e.value)

    assert fails(Pool("127.0.0.1", free)) == "connection refused"
    silent = scripted(lambda n, req: (b"", "hang"))
    assert fails(Pool("127.0.0.1", silent.port), timeout=0.3) == "timed out"
    hangup = scripted(lambda n, req: (b"", "close"))
    assert fails(Pool("127.0.0.1", hangup.port)) == "connection reset"
    garbage = scripted(lambda n, req: (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "close"))
    assert fails(Pool("127.0.0.1", garbage.port)) == "connection reset"
    cut = scripted(lambda n, req: (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "close"))
    assert fails(Pool("127.0.0.1", cut.port)) == "connection reset"
    assert fails(Pool("no-such-host.invalid", 8500)) == "connection failed"


def test_a_blocking_query_waits_its_wait_and_jitter_beyond_the_call_timeout() -> None:
    assert call_timeout(30.0, [("passing", "1")]) == 30.0
    assert call_timeout(30.0, [("index", "5"), ("wait", "2s")]) == 30.0 + 2 + 2 / 16
    assert call_timeout(30.0, [("index", "5"), ("wait", "1m30s")]) == 30.0 + 90 + 90 / 16
    assert call_timeout(30.0, [("index", "5")]) == 30.0 + 300 + 300 / 16  # Consul's 5 min default
    assert call_timeout(None, [("index", "5")]) is None
