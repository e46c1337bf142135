"""The job's side of readiness (issue #16) with no processes: what READY=1 and a watchdog timeout
decide (the healthy event and a Consul heartbeat; unhealthy, the stop path and a restart)."""

from __future__ import annotations

import signal
from typing import Any

from pypilot import events as ev
from pypilot.config.model import HealthConfig, ReadyConfig
from pypilot.events import Event
from tests.test_jobs import STARTUP, Ctx


class Registry:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def register(self, job: Any, status: str) -> None:
        self.calls.append(("register", job.name))

    def heartbeat(self, job: Any) -> None:
        self.calls.append(("heartbeat", job.name))

    def unhealthy(self, job: Any, note: str) -> None:
        self.calls.append(("unhealthy", note))

    def deregister(self, job: Any) -> None:
        self.calls.append(("deregister", job.name))


def test_ready_1_publishes_healthy_once_a_run_and_heartbeats_the_service() -> None:
    ctx = Ctx()
    ctx.discovery = Registry()
    job, cmd = ctx.add(name="db", port=5432, health=HealthConfig(interval=10, ttl=30),
                       ready=ReadyConfig(kind="notify"))
    ctx.bus.publish(STARTUP)
    assert job.readiness is not None and cmd.running
    assert Event(ev.HEALTHY, "db") not in ctx.events
    job.readiness._handle(b"STATUS=up\nREADY=1")
    job.readiness._handle(b"READY=1")  # a second READY=1 in the same run changes nothing
    assert ctx.events.count(Event(ev.HEALTHY, "db")) == 1
    assert ("heartbeat", "db") in ctx.discovery.calls
    assert job.status == "healthy" and job.snapshot()["readiness"] == {
        "ready": True, "statusText": "up", "stopping": False}


def test_a_passing_check_before_readiness_does_not_make_the_job_healthy() -> None:
    ctx = Ctx()
    job, _ = ctx.add(name="db", health=HealthConfig(exec=("true",), interval=1, ttl=5),
                     ready=ReadyConfig(kind="notify"))
    ctx.bus.publish(STARTUP)
    ctx.bus.publish(Event(ev.EXIT_SUCCESS, "check.db"))
    assert Event(ev.HEALTHY, "db") not in ctx.events
    assert job.readiness is not None
    job.readiness._handle(b"READY=1")
    ctx.bus.publish(Event(ev.EXIT_SUCCESS, "check.db"))
    assert ctx.events.count(Event(ev.HEALTHY, "db")) == 2  # READY=1's, then the check's


def test_a_watchdog_timeout_is_unhealthy_then_a_restart_through_the_stop_path() -> None:
    ctx = Ctx()
    ctx.discovery = Registry()
    job, cmd = ctx.add(name="db", port=5432, health=HealthConfig(interval=10, ttl=30),
                       ready=ReadyConfig(kind="notify", watchdog=1.0))
    ctx.bus.publish(STARTUP)
    assert job.readiness is not None
    job.readiness.spawned(cmd.pid)  # Command does this after its spawn
    ctx.loop.advance(0.8)
    job.readiness._handle(b"WATCHDOG=1")  # a ping re-arms it
    ctx.loop.advance(0.8)
    assert not cmd.signals
    ctx.loop.advance(0.3)
    assert Event(ev.UNHEALTHY, "db") in ctx.events
    assert cmd.signals == [signal.SIGTERM]
    assert ("unhealthy", "watchdog timeout: no WATCHDOG=1 for 1s") in ctx.discovery.calls
    cmd.exit(143)
    ctx.loop.advance(0)
    assert cmd.starts == 2 and job.state.value == "active"  # restarted, though restarts is 0
