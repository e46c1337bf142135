"""The discovery worker's reading of failures (issue 18 item 4): by the exception's class and what it
wraps, never its text. The exceptions are real ones, from requests against loopback sockets."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest
import requests

from pypilot.consul import AgentError, _lost, describe_error
from tests.discovery.harness import free_port


def failure(url: str, timeout: float = 2.0) -> BaseException:
    try:
        requests.get(url, timeout=timeout)
    except Exception as e:
        return e
    raise AssertionError("the request succeeded")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s


def test_refused(listener: socket.socket) -> None:
    assert describe_error(failure(f"http://127.0.0.1:{free_port()}/")) == "connection refused"


def test_an_agent_that_never_answers_times_out(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    assert describe_error(failure(f"http://127.0.0.1:{port}/", timeout=0.2)) == "timed out"


def test_an_agent_that_resets_the_connection(listener: socket.socket) -> None:
    def reset() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
        conn.close()

    threading.Thread(target=reset, daemon=True).start()
    port = listener.getsockname()[1]
    assert describe_error(failure(f"http://127.0.0.1:{port}/")) == "connection reset"


def test_the_text_of_an_exception_decides_nothing() -> None:
    assert describe_error(RuntimeError("ConnectionError: refused, timed out, SSLError")) == (
        "RuntimeError: ConnectionError: refused, timed out, SSLError")
    assert describe_error(ValueError("Expecting value")) == (
        "invalid response from the agent (not the JSON Consul sends)")


def test_an_agent_answer_in_cps_wording() -> None:
    err = AgentError(500, "rpc error: No cluster leader\n")
    assert describe_error(err) == "Unexpected response code: 500 (rpc error: No cluster leader)"


@pytest.mark.parametrize(
    ("code", "body", "lost"),
    [
        (500, 'CheckID "service:web-h" does not have associated TTL', True),  # Consul 1.0.1, restarted empty
        (404, 'Unknown check ID "service:web-h"', True),  # later Consul versions
        (500, "rpc error: No cluster leader", False),  # a failing agent: retried, not re-registered
        (403, "Permission denied", False),
        (200, "", False),
    ],
)
def test_a_ttl_update_answer_that_means_the_agent_lost_the_check(code: int, body: str, lost: bool) -> None:
    assert _lost(code, body) is lost
