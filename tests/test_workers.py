"""PID 1's side of its workers (``pypilot.workers``), with real forked processes and no PID namespace."""

from __future__ import annotations

import os
import socket

from pypilot.loop import Loop
from pypilot.reaper import Reaper
from pypilot.workers import IOWorker, Worker
from tests.pid1 import wait_for


def _dies_at_once(sock: socket.socket) -> None:
    os._exit(3)


def test_a_dead_worker_is_not_started_again_inside_its_restart_delay_by_a_check() -> None:
    """A worker that dies at every start backs off (0.05 s, doubling) even while checks keep asking for it:
    ``ensure_started`` once restarted it at the next check, whatever the delay."""
    loop, reaper = Loop(), Reaper()
    io = IOWorker(loop, reaper, "health", _dies_at_once)
    io.attach("health", ("result",), lambda msg: None)
    io.worker = w = Worker("health", _dies_at_once, loop, reaper, io._route, io._on_death, io._on_start)
    io.ensure_started("health")
    first = w.pid
    assert first
    wait_for(lambda: reaper.drain() and w.pid == 0, 10, "the worker's death")
    assert w.restart_due and w.restarts == 1
    io.ensure_started("health")  # a check during the delay
    assert w.pid == 0, "started again inside its restart delay"
    loop.call_later(0.2, loop.stop)
    loop.run()  # the delay's timer (0.05 s) starts it again
    assert w.pid not in (0, first) and not w.restart_due
    wait_for(lambda: reaper.drain() and w.pid == 0, 10, "the second death")
    assert w.restarts == 2 and w.restart_due
    w.stopped = True
