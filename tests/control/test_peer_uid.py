"""control.allowUids: the control socket refuses a connecting uid that is not listed (issue 9, security),
even when the file mode lets it connect."""

from __future__ import annotations

import os
import socket

import pytest

from tests.control.harness import http
from tests.pid1 import Pilot, wait_for

NOBODY = 65534


def ping_as(uid: int, path: str) -> str:
    """GET /v3/ping from a forked child running as ``uid``: the status line, or 'refused'."""
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become uid, ask, report through the pipe, never return into pytest
        code = 0
        try:
            os.setgid(uid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            s.connect(path)
            s.sendall(b"GET /v3/ping HTTP/1.1\r\nHost: control\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            os.write(wr, data.split(b"\r\n")[0] if data else b"refused")
        except OSError as e:
            os.write(wr, f"refused ({e.strerror})".encode())
        finally:
            os._exit(code)
    os.close(wr)
    out = b""
    while chunk := os.read(rd, 4096):
        out += chunk
    os.close(rd)
    os.waitpid(pid, 0)
    return out.decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
@pytest.mark.parametrize("answerer", ["pid1", "worker"])
def test_allow_uids_refuses_other_uids_even_with_an_open_mode(answerer: str) -> None:
    """Both doors check: PID 1's own (a ping before any other request) and the control worker's."""
    control = {"socketMode": "0666", "allowUids": [0]}
    with Pilot({"jobs": [{"name": "a", "exec": "sleep 1000"}], "control": control}) as p:
        path = str(p.dir / "control.sock")
        os.chmod(p.dir, 0o755)  # let the other uid reach the socket file itself
        wait_for(lambda: os.path.exists(path), 10, "the control socket")
        if answerer == "worker":
            assert http(path, "GET", "/v3/status")[0] == 200  # the worker starts, and accepts from now on
        assert ping_as(0, path) == "HTTP/1.1 200 OK"
        assert ping_as(NOBODY, path).startswith("refused")
        assert ping_as(0, path) == "HTTP/1.1 200 OK"  # the refusal cost nothing


def test_allow_uids_must_be_numeric() -> None:
    import tempfile

    from pypilot.config import ConfigError, load

    with tempfile.NamedTemporaryFile("w", suffix=".json5") as f:
        f.write('{consul: "x:1", control: {allowUids: ["root"]}}')
        f.flush()
        with pytest.raises(ConfigError, match=r"control.allowUids .* must be a list of numeric uids"):
            load(f.name)
