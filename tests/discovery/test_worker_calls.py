"""The discovery worker's call sequence for one service, with the HTTP call replaced by a recorder:
requests that arrive while a call is in flight coalesce, but a ``critical`` is never swallowed by a
passing update in flight; a lost check is registered again at once, with the status asked for."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pypilot.consul import _Agent
from tests.pid1 import wait_for

BODY = {"ID": "app-h", "Name": "app", "Check": {"TTL": "5s", "Status": "passing"}, "Checks": None}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.lost_once = False

    def __call__(self, op: tuple[str, str, str], sid: str, body: dict[str, Any]) -> bool:
        self.calls.append(op)
        assert self.gate.wait(10)
        if op[0] == "update" and self.lost_once:
            self.lost_once = False
            return False  # the agent answered 500 "does not have associated TTL"
        return True


@pytest.fixture
def worker() -> Iterator[tuple[_Agent, Recorder]]:
    a, b = socket.socketpair()
    agent = _Agent(a)
    rec = Recorder()
    agent._call = rec  # type: ignore[method-assign]
    agent.on_service("app-h", BODY)
    yield agent, rec
    a.close()
    b.close()


def test_a_critical_asked_for_during_a_passing_update_is_sent_after_it(worker: Any) -> None:
    agent, rec = worker
    agent.on_request("heartbeat", "app-h", None)
    wait_for(lambda: len(rec.calls) == 2 and agent.services["app-h"].beat is None, 5, "registered, updated")
    assert rec.calls == [("register", "passing", ""), ("update", "passing", "ok")]
    rec.gate.clear()
    agent.on_request("heartbeat", "app-h", None)
    wait_for(lambda: len(rec.calls) == 3, 5, "an update in flight")
    agent.on_request("heartbeat", "app-h", None)  # coalesces with the one in flight
    agent.on_request("critical", "app-h", None, "check.app: exit status 1")
    rec.gate.set()
    wait_for(lambda: len(rec.calls) == 4, 5, "the critical update")
    assert rec.calls[1:] == [("update", "passing", "ok"), ("update", "passing", "ok"),
                             ("update", "critical", "check.app: exit status 1")]
    wait_for(lambda: agent.services["app-h"].beat is None, 5, "nothing pending")
    assert len(rec.calls) == 4


def test_a_lost_check_is_registered_again_at_once_with_the_status_asked_for(worker: Any) -> None:
    agent, rec = worker
    agent.on_request("heartbeat", "app-h", None)
    wait_for(lambda: len(rec.calls) == 2 and agent.services["app-h"].beat is None, 5, "registered, updated")
    rec.lost_once = True
    agent.on_request("critical", "app-h", None, "down")
    wait_for(lambda: len(rec.calls) == 5, 5, "update, register, update")
    assert rec.calls[2:] == [("update", "critical", "down"), ("register", "critical", ""),
                             ("update", "critical", "down")]
