"""PID 1 answers ``/v3/ping`` itself while no control worker runs (``pypilot.control.front``, issue #15): an
image's ``HEALTHCHECK pypilot -ping`` no longer starts Falcon on waitress for the container's life. Its answer
is ContainerPilot's, byte for byte but the date (checked against ContainerPilot 3.8 itself where it is
present); every other request, however it arrives (split, pipelined, with a body, slow, many at once), reaches
the worker with nothing lost. pypilot runs as PID 1 (``tests.pid1.Pilot``); the clients are real sockets."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from pypilot.control.front import HEADER, MAX_HELD, ping_answer
from tests.control.harness import ROOT
from tests.pid1 import Pilot, wait_for

CP = Path(__file__).resolve().parents[3] / "shared" / "bin" / "containerpilot"
KEEPER = {"name": "keeper", "exec": ["sleep", "1000"], "restarts": "unlimited"}
GET_11 = b"GET /v3/ping HTTP/1.1\r\nHost: control\r\n\r\n"
GET_10 = b"GET /v3/ping HTTP/1.0\r\n\r\n"
HEAD_11 = b"HEAD /v3/ping HTTP/1.1\r\nHost: control\r\nConnection: close\r\n\r\n"
STATUS = b"GET /v3/status HTTP/1.1\r\nHost: control\r\nConnection: close\r\n\r\n"


def exchange(path: str, *parts: bytes, timeout: float = 10.0) -> bytes:
    """Send ``parts`` one after another on one connection, then read until the server closes."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(path)
        for part in parts:
            s.sendall(part)
        data = b""
        try:
            while chunk := s.recv(1 << 16):
                data += chunk
        except ConnectionResetError:  # a server that answers and closes before it read all we sent
            pass
        return data


def undated(answer: bytes) -> bytes:
    return re.sub(rb"Date: [^\r]+\r\n", b"", answer)


def workers(p: Pilot) -> list[psutil.Process]:
    """PID 1's living children that are pypilot (the control worker, or the I/O worker: none in these
    configs). A worker that has just exited is a zombie until PID 1 reaps it: gone, for this count."""
    found = []
    for c in p.children():
        try:
            if "pypilot" in " ".join(c.cmdline()):
                found.append(c)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            pass
    return found


@contextmanager
def pilot(extra: dict[str, object] | None = None) -> Iterator[tuple[Pilot, str]]:
    with Pilot({"jobs": [KEEPER], **(extra or {})}) as p:
        path = str(p.dir / "control.sock")
        wait_for(lambda: p.lines("control: serving at"), 10, "control socket")
        yield p, path


def test_pings_are_answered_by_pid1_with_no_control_worker_started() -> None:
    with pilot() as (p, path):
        for _ in range(20):
            assert exchange(path, GET_11).endswith(b"\r\n\r\n\n")
        cli = subprocess.run([sys.executable, "-m", "pypilot", "-config", str(p.config_path), "-ping"],
                             capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert cli.returncode == 0, cli.stderr
        assert workers(p) == []  # 21 pings, and Falcon never loaded
        status = exchange(path, STATUS)  # the first other request starts the worker, and it answers
        assert status.startswith(b"HTTP/1.1 200 OK") and b"Server: pypilot" in status
        body = json.loads(status.partition(b"\r\n\r\n")[2])
        assert body["control"]["workerPid"] and len(workers(p)) == 1
        pings = {(r["code"], r["path"]): r["count"] for r in body["control"]["requests"]}
        assert pings[(200, "/v3/ping")] == 21  # PID 1's answers are counted as the worker's are


@pytest.mark.parametrize("request_bytes", [GET_11, GET_10, HEAD_11], ids=["GET-1.1", "GET-1.0", "HEAD"])
def test_pid1s_ping_answer_is_containerpilots(request_bytes: bytes, tmp_path: Path) -> None:
    with pilot() as (_p, path):
        ours = exchange(path, request_bytes)
    expected = {
        GET_11: b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Connection: close\r\n\r\n\n",
        GET_10: b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\n",
        HEAD_11: b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Connection: close\r\n\r\n",
    }[request_bytes]
    assert undated(ours) == expected
    assert re.search(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n", ours)
    if not CP.exists():
        return
    sock = tmp_path / "cp.sock"
    cfg = tmp_path / "cp.json5"
    cfg.write_text(json.dumps({"consul": "localhost:8500", "control": {"socket": str(sock)},
                               "jobs": [{"name": "keeper", "exec": ["sleep", "1000"]}]}))
    cp = subprocess.Popen([str(CP), "-config", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(sock.exists, 10, "ContainerPilot's control socket")
        assert undated(exchange(str(sock), request_bytes)) == expected  # the oracle agrees
    finally:
        cp.terminate()
        cp.wait(10)


def test_requests_pid1_started_reading_reach_the_worker_whole() -> None:
    """Split across sends, pipelined behind a ping, or a ping with a body: PID 1 hands the bytes it read
    to the worker, which answers as if it had read them itself."""
    with pilot() as (_p, path):
        body = b'{"SPLIT": "one two"}'
        put = b"POST /v3/environ HTTP/1.1\r\nHost: c\r\nConnection: close\r\nContent-Length: 20\r\n\r\n"
        answer = exchange(path, put[:9], put[9:30], put[30:] + body[:5], body[5:])
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer
        status = json.loads(exchange(path, STATUS).partition(b"\r\n\r\n")[2])
        assert status["control"]["workerPid"]
        piped = exchange(path, GET_11 + STATUS)  # two requests: the worker answers both, in order
        assert piped.count(b"HTTP/1.1 200 OK") == 2 and piped.index(b"\r\n\r\n\n") < piped.index(b'"jobs"')


def test_a_ping_with_a_body_or_pipelined_goes_to_the_worker() -> None:
    with pilot() as (p, path):
        head = b"POST /v3/ping HTTP/1.1\r\nHost: c\r\nConnection: close\r\nContent-Length: 2\r\n\r\n"
        with_body = exchange(path, head + b"hi")
        assert with_body.startswith(b"HTTP/1.1 200 OK") and b"Server: pypilot" in with_body  # the worker's
        assert len(workers(p)) == 1


def test_more_connections_than_pid1_holds_all_get_answers() -> None:
    """MAX_HELD + 4 clients connect and say nothing yet: past MAX_HELD PID 1 hands them all to the worker
    it starts; then each sends its ping and each is answered."""
    with pilot() as (p, path):
        socks = []
        try:
            for _ in range(MAX_HELD + 4):
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(10)
                s.connect(path)
                socks.append(s)
            wait_for(lambda: workers(p), 10, "the control worker started by the crowd")
            for s in socks:
                s.sendall(GET_11)
            answers = [s.recv(4096) for s in socks]
        finally:
            for s in socks:
                s.close()
        assert all(a.startswith(b"HTTP/1.1 200 OK") for a in answers), answers


def test_a_slow_client_is_handed_to_the_worker_and_pings_go_on() -> None:
    """A client that sends half a request and stops is PID 1's for at most HOLD: then the worker has it
    (and its own timeouts), and a ping meanwhile is answered at once."""
    with pilot() as (p, path):
        with socket.socket(socket.AF_UNIX) as slow:
            slow.connect(path)
            slow.sendall(b"GET /v3/status HTTP/1.1\r\nHo")
            assert exchange(path, HEAD_11).startswith(b"HTTP/1.1 200 OK")
            wait_for(lambda: workers(p), 10, "the worker, given the slow client")
            slow.settimeout(10)
            slow.sendall(b"st: control\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := slow.recv(1 << 16):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK") and b'"keeper"' in data


def test_a_header_over_the_limit_is_the_workers_431() -> None:
    with pilot() as (_p, path):
        big = b"GET /v3/ping HTTP/1.1\r\nX-Big: " + b"a" * (HEADER + 100)  # PID 1 gives up on it here
        answer = exchange(path, big, b"a" * (20 << 10) + b"\r\n\r\n")  # over the worker's 16 KiB
        assert answer.split(b"\r\n", 1)[0].endswith(b" 431 Request Header Fields Too Large"), answer[:200]


def test_a_client_that_leaves_mid_request_costs_nothing() -> None:
    with pilot() as (p, path):
        for _ in range(50):
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                s.sendall(b"GET /v3/pi")
        assert exchange(path, HEAD_11).startswith(b"HTTP/1.1 200 OK")
        assert p.alive()
        assert len(os.listdir(f"/proc/{p.process().pid}/fd")) < 12  # no connection left behind


@pytest.mark.parametrize(
    "data",
    [
        b"get /v3/ping HTTP/1.1\r\n\r\n",  # not a method token we answer: the worker judges
        b"GET /v3/ping HTTP/2.0\r\n\r\n",
        b"GET /v3/ping/ HTTP/1.1\r\n\r\n",
        b"GET /v3/pingx HTTP/1.1\r\n\r\n",
        b"GET /v3/%70ing HTTP/1.1\r\n\r\n",
        b"GET  /v3/ping HTTP/1.1\r\n\r\n",
        b"GET /v3/ping HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
        b"GET /v3/ping HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /v3/ping HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GET /v3/ping HTTP/1.1\r\nbroken header\r\n\r\n",
        b"GET /v3/ping HTTP/1.1\r\n Host: folded\r\n\r\n",
        b"GET /v3/ping HTTP/1.1\r\n\r\nGET /v3/ping HTTP/1.1\r\n\r\n",
    ],
)
def test_anything_not_plainly_a_ping_is_left_to_the_worker(data: bytes) -> None:
    assert ping_answer(data, data.index(b"\r\n\r\n")) is None


@pytest.mark.parametrize(
    "data",
    [
        b"GET /v3/ping HTTP/1.1\r\n\r\n",
        b"POST /v3/ping?x=1 HTTP/1.1\r\nHost: c\r\nContent-Length: 0\r\nUser-Agent: Go-http/1.1\r\n\r\n",
        b"DELETE /v3/ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ],
)
def test_a_plain_ping_of_any_method_is_answered(data: bytes) -> None:
    answer = ping_answer(data, data.index(b"\r\n\r\n"))
    assert answer is not None and b" 200 OK\r\n" in answer and answer.endswith(b"\r\n\r\n\n")


# --- control.workerIdle: the worker leaves when nobody uses it -------------------------------------------


def test_an_idle_control_worker_hands_the_socket_back_to_pid1() -> None:
    with pilot({"control": {"workerIdle": "1s"}}) as (p, path):
        first = json.loads(exchange(path, STATUS).partition(b"\r\n\r\n")[2])["control"]["workerPid"]
        assert first and len(workers(p)) == 1
        wait_for(lambda: not workers(p), 10, "the idle worker gone")
        assert p.wait_log("control: worker idle for 1s, stopped")
        ping = exchange(path, GET_11)
        assert ping.startswith(b"HTTP/1.1 200 OK") and b"Server:" not in ping  # PID 1's own answer again
        status = json.loads(exchange(path, STATUS).partition(b"\r\n\r\n")[2])  # a new worker, at once
        assert status["control"]["workerPid"] not in (None, first)
        assert status["control"]["workerRestarts"] == 0  # leaving idle is not dying
        assert "died" not in p.log()


def test_an_open_event_stream_keeps_the_worker_past_its_idle_time() -> None:
    from tests.control.harness import EventStream

    with pilot({"control": {"workerIdle": "1s"}}) as (p, path), EventStream(path):
        (worker,) = workers(p)
        deadline = time.monotonic() + 3.0  # three idle periods: nothing may happen in them
        while time.monotonic() < deadline:
            assert [w.pid for w in workers(p)] == [worker.pid]
            time.sleep(0.1)
        assert not p.lines("worker idle")
