"""``pypilot -ping``, what an image's HEALTHCHECK runs every few seconds (issue #15): one request on a plain
socket, without ``socket`` (and enum), http.client (with email and ssl), orjson, typing or the config
package when the socket is given; the same answers and error messages as the other commands' http.client."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pypilot.control.client import Failed, Response, _answer, check, ping
from tests.control.harness import ControlPilot

HEAVY = ("http.client", "email", "ssl", "orjson", "typing", "pypilot.config", "enum", "re", "socket")


def test_ping_answers_ok_and_imports_none_of_the_heavy_modules() -> None:
    """In an interpreter without site (whose own imports would hide some), pypilot from where the tests
    import it."""
    import site

    import pypilot

    paths = [str(Path(pypilot.__file__).parent.parent), *site.getsitepackages()]
    with ControlPilot() as p:
        code = ("import sys; before = set(sys.modules); sys.path.extend(sys.argv[1:]); "
                "from pypilot.cli import parse_args; "
                "from pypilot.control.client import run_subcommand; "
                f"code = run_subcommand(parse_args(['-ping', '-socket', {p.socket!r}])); "
                f"print(code, sorted(m for m in {HEAVY!r} if m in set(sys.modules) - before))")
        out = subprocess.run([sys.executable, "-I", "-S", "-c", code, *paths], capture_output=True,
                             text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok\n0 []\n"


@contextmanager
def server(path: Path, answer: Callable[[socket.socket], None]) -> Iterator[list[bytes]]:
    """A one-connection unix socket server: records the request, then ``answer``s it."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    requests: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            requests.append(data)
            answer(conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield requests
    finally:
        t.join(10)
        listener.close()


def test_ping_sends_cps_request_and_reads_an_answer_that_comes_in_pieces(tmp_path: Path) -> None:
    def dribble(conn: socket.socket) -> None:
        for i in range(0, len(reply), 3):
            conn.sendall(reply[i:i + 3])
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 1\r\n\r\n\n"
    with server(tmp_path / "s", dribble) as requests:
        resp = ping(str(tmp_path / "s"), timeout=5)
    assert (resp.status, resp.body) == (200, b"\n")
    assert resp.headers.get("content-type") == "text/plain; charset=utf-8"
    assert requests == [b"GET /v3/ping HTTP/1.1\r\nHost: control\r\nAccept-Encoding: identity\r\n"
                        b"Connection: close\r\n\r\n"]


def test_ping_reads_a_body_without_length_to_the_close(tmp_path: Path) -> None:
    with server(tmp_path / "s", lambda c: c.sendall(b"HTTP/1.1 503 Service Unavailable\r\n"
                                                      b"X-Pypilot-Error: busy\r\n\r\nService Unavailable\n")):
        resp = ping(str(tmp_path / "s"), timeout=5)
    assert (resp.status, resp.why, resp.body) == (503, "busy", b"Service Unavailable\n")


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", "Get http://control/v3/ping: Remote end closed connection without response"),
        (b"SSH-2.0-OpenSSH\r\n", "Get http://control/v3/ping: malformed response b'SSH-2.0-OpenSSH\\r\\n'"),
        (b"HTTP/1.1 OK\r\n\r\n", "Get http://control/v3/ping: malformed status line 'HTTP/1.1 OK'"),
    ],
)
def test_a_server_that_does_not_answer_http_is_a_failure_that_says_so(tmp_path: Path, raw: bytes,
                                                                       error: str) -> None:
    with server(tmp_path / "s", lambda c: c.sendall(raw)), pytest.raises(Failed) as e:
        ping(str(tmp_path / "s"), timeout=5)
    assert str(e.value) == error and not e.value.unreachable


def test_no_socket_is_unreachable_with_gos_message(tmp_path: Path) -> None:
    with pytest.raises(Failed) as e:
        ping(str(tmp_path / "none"), timeout=1)
    assert e.value.unreachable
    assert str(e.value) == (f"Get http://control/v3/ping: dial unix {tmp_path / 'none'}: connect: "
                            "no such file or directory")


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (400, {"X-Pypilot-Error": "metric 'x' is not declared"}, b"Bad Request\n"),
        (404, {}, b'{"error": "no job named \'a\'"}'),
        (422, {}, b"Unprocessable Entity\n"),
        (500, {}, b""),
    ],
)
def test_a_non_2xx_reads_as_it_does_through_http_client(status: int, headers: dict[str, str],
                                                         body: bytes) -> None:
    import email.message

    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + f"Content-Length: {len(body)}\r\n\r\n"
    raw = f"HTTP/1.1 {status} X\r\n{head}".encode()
    parsed = _answer(raw + body, done=False)
    assert parsed is not None
    msg = email.message.Message()
    for k, v in headers.items():
        msg[k] = v
    errors = []
    for resp in (parsed, Response(status, msg, body)):
        with pytest.raises(Failed) as e:
            check(resp)
        errors.append(str(e.value))
    assert errors[0] == errors[1]
