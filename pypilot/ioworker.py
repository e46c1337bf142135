"""The I/O worker process: health checks, Consul calls and watches, and telemetry, in one process.

PID 1 forks it (``workers.IOWorker`` is PID 1's handle) when the config has health checks or Consul.
One process rather than one per concern: each is a whole interpreter with its own heap, and the
health worker alone cost ~12 MiB RSS (~5 MiB private) to run ``true`` once a second (benchmarks/tree.py).

Its main thread runs one ``pypilot.loop.Loop`` over the channel from PID 1, the signalfd of its own
check children and the timers of their timeouts. Every signal is blocked before any thread exists
here (the Consul threads and the probe pool start later and inherit the mask), so a check's exit
comes only through this process' reaper and PID 1's SIGTERM is read from the signalfd, never delivered
to a thread. Messages are routed by ``op``: ``env`` and ``check`` to the checks (``pypilot.health``),
``stop`` ends the process, every other op goes to the Consul agent (``pypilot.consul``), which is created
by the first of them: a config with health checks only never imports py-consul or prometheus-client
here. The Consul side keeps its threads (one per service and per watch, one for telemetry's server):
they are blocking calls that keep each service's calls in order, and a parked thread
costs its stack's touched pages only (measured: docs/architecture.md).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any

    from pypilot.channel import WorkerLink
    from pypilot.loop import Loop
    from pypilot.reaper import Reaper

    Message = dict[str, Any]

MMAP_THRESHOLD, ARENAS = 128 << 10, 1
DEFAULT_BOUND = 3.0  # seconds to deregister in, when PID 1 went away without saying how long


def main(sock: socket.socket) -> None:
    """The worker's whole life (``workers._run_child`` runs it in the forked child)."""
    from pypilot import reaper as reaper_mod
    from pypilot.channel import WorkerLink
    from pypilot.loop import Loop

    sigfd = reaper_mod.setup_signals()  # first: no thread may exist with signals unblocked
    # glibc gives each thread that allocates an arena of its own (the Consul threads, telemetry's):
    # each keeps its freed pages as RSS; a few arenas serve these mostly idle threads as well
    reaper_mod.malloc_tune(MMAP_THRESHOLD, ARENAS)
    loop, reaper = Loop(), reaper_mod.Reaper()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def broken() -> None:  # any thread: a send to PID 1 failed, the main loop must hear it
        try:
            os.write(wake_w, b"x")
        except OSError:
            pass

    link = WorkerLink(sock, on_broken=broken)
    link.forward_logs()
    io = _IO(loop, reaper, link, sigfd)
    loop.add_reader(link.fileno(), io.on_readable)
    loop.add_reader(sigfd, io.on_signals)
    loop.add_reader(wake_r, io.on_broken)
    loop.run()  # until PID 1 is gone (EOF, or a send to it failed)
    io.end(DEFAULT_BOUND)


class _IO:
    """The worker's state: the checks' side, and the Consul agent once it is needed."""

    def __init__(self, loop: Loop, reaper: Reaper, link: WorkerLink, sigfd: int) -> None:
        self.loop, self.reaper, self.link, self.sigfd = loop, reaper, link, sigfd
        self.results: Any = None  # health._ThreadResults, at the first HTTP/TCP probe
        self.agent: Any = None  # consul._Agent, at the first Consul message

    def reply(self, msg: Message) -> None:
        self.link.send(msg)

    def on_readable(self) -> None:
        messages = self.link.read()
        if messages is None:  # PID 1 closed the channel (or sent garbage): we are done
            self.end(DEFAULT_BOUND)
            return
        for msg in messages:
            self.handle(msg)

    def handle(self, msg: Message) -> None:
        op = msg.get("op")
        if op == "check":
            from pypilot.health import run_check

            run_check(msg, self)
        elif op == "env":
            os.environ.clear()
            os.environ.update(msg["env"])
        elif op == "stop":
            self.end(float(msg.get("bound") or DEFAULT_BOUND))
        else:
            if self.agent is None:
                from pypilot import lean_imports

                lean_imports.install()  # before py-consul and prometheus-client
                from pypilot.consul import _Agent

                self.agent = _Agent(self.link.sock, link=self.link)
            self.agent.handle(msg)

    def on_signals(self) -> None:
        import signal

        from pypilot.reaper import read_signals

        for signo, _ in read_signals(self.sigfd):
            if signo == signal.SIGCHLD:
                self.reaper.drain()
            elif signo in (signal.SIGTERM, signal.SIGQUIT):  # the sweep's kill(-1), or PID 1's stop
                self._drain_then_end()

    def on_broken(self) -> None:
        self.end(DEFAULT_BOUND)

    def _drain_then_end(self) -> None:
        """Take what PID 1 wrote before it signalled us (its last deregistrations), then end."""
        bound = DEFAULT_BOUND
        for msg in self.link.drain():
            op = msg.get("op")
            if op == "stop":
                bound = float(msg.get("bound") or bound)
            elif op != "check":  # no new check now: nothing would wait for its result
                self.handle(msg)
        self.end(bound)

    def end(self, bound: float) -> None:
        """Deregister what the agent registered (within ``bound`` seconds), then exit."""
        if self.agent is not None:
            self.agent.shutdown(bound)  # exits the process
        raise SystemExit(0)  # out of the loop: ``workers._run_child`` flushes and exits
