"""The telemetry endpoints' HTTP server (``pypilot.httpserve``, in place of ``http.server``): what a
scraper and a curl see, on loopback."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from pypilot import httpserve


@pytest.fixture
def server():
    seen: list[tuple[str, str]] = []

    def answer(method: str, path: str) -> tuple[int, str, bytes]:
        seen.append((method, path))
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", b"up 1\n"
        return 404, "text/plain; charset=utf-8", b"404 page not found\n"

    srv = httpserve.serve(("127.0.0.1", 0), answer)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    srv.seen = seen  # type: ignore[attr-defined]
    yield srv
    srv.shutdown()
    srv.server_close()


def raw(srv: httpserve.Server, data: bytes) -> bytes:
    with socket.create_connection(srv.server_address[:2], timeout=5) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_a_scrape_gets_the_page_with_its_type_length_and_the_path_without_query(server) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/metrics?x=1", timeout=5) as r:
        assert (r.status, r.read()) == (200, b"up 1\n")
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert r.headers["Content-Length"] == "5"
        assert r.headers["Server"] == "pypilot"
        date = r.headers["Date"]
    assert server.seen == [("GET", "/metrics")]
    sent = time.mktime(time.strptime(date, "%a, %d %b %Y %H:%M:%S GMT"))
    assert abs(sent - time.mktime(time.gmtime())) < 60


def test_head_has_the_headers_and_no_body_and_the_connection_closes(server) -> None:
    reply = raw(server, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n") and b"Content-Length: 5\r\n" in head + b"\r\n"
    assert body == b""


def test_not_http_is_400_an_unknown_method_501_an_unknown_path_the_handlers_404(server) -> None:
    assert raw(server, b"hello\r\n\r\n").startswith(b"HTTP/1.0 400 Bad Request\r\n")
    assert raw(server, b"BREW /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 501 Not Implemented\r\n")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/nope", timeout=5)
    assert (e.value.code, e.value.read()) == (404, b"404 page not found\n")
    assert ("BREW", "/metrics") not in server.seen


def test_a_client_that_says_nothing_is_dropped_and_others_are_served_meanwhile(server, monkeypatch) -> None:
    monkeypatch.setattr(httpserve._Request, "timeout", 0.5)
    silent = socket.create_connection(server.server_address[:2], timeout=5)
    try:
        assert raw(server, b"GET /metrics HTTP/1.0\r\n\r\n").endswith(b"\r\n\r\nup 1\n")  # not held up
        silent.settimeout(5)
        assert silent.recv(100) == b""  # closed by the server after its timeout, unanswered
    finally:
        silent.close()


def test_ipv6_listens_when_the_address_has_a_colon() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        srv = httpserve.serve(("::1", 0), lambda m, p: (200, "text/plain", b"six\n"))
    except OSError as e:
        pytest.skip(f"no ::1 here: {e}")
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        assert srv.address_family == socket.AF_INET6
        assert raw(srv, b"GET / HTTP/1.0\r\n\r\n").endswith(b"six\n")
    finally:
        srv.shutdown()
        srv.server_close()
