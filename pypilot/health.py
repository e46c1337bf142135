"""Health checks, run in the I/O worker so PID 1's loop never waits on one (CP §3.7).

PID 1's side, ``HealthChecks``, sends ``check`` requests through the supervisor's ``workers.IOWorker``
(the one worker process it shares with discovery) and gets ``result`` messages back; it starts the
worker on the first check and, when the worker dies, reports every check in flight as failed (the
``IOWorker`` starts a new one). The worker's side, ``run_check`` (called by ``pypilot.ioworker``),
runs exec checks as their own process groups, on the worker's loop and reaper (the whole group is
killed at the timeout), and native HTTP (2xx–3xx passes) and TCP (connect passes) checks in a
thread pool made at the first of them.
"""

from __future__ import annotations

import os

from pypilot import logs
from pypilot.reaper import describe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from pypilot.loop import Loop
    from pypilot.workers import IOWorker, Message

    ResultCallback = Callable[[bool, str], None]


class HealthChecks:
    """PID 1's handle on the health checks, run by the I/O worker it shares with discovery."""

    OPS = ("result",)  # the messages of the worker that are ours

    def __init__(self, loop: Loop, io: IOWorker) -> None:
        self.loop, self.io = loop, io
        io.attach("health", self.OPS, self._on_message, on_death=self._on_worker_death)
        self._inflight: dict[int, ResultCallback] = {}
        self._next_id = 0
        self._env_sent: dict[str, str] | None = None

    def check(self, request: Message, callback: ResultCallback) -> None:
        """Run one check (``kind`` exec/http/tcp, ``job``, ``timeout``, …); ``callback(ok, detail)``."""
        self.io.ensure_started("health")
        env = dict(os.environ)
        if env != self._env_sent and self.io.send("health", {"op": "env", "env": env}):
            self._env_sent = env  # checks see PID 1's env as of now (job PIDs, -putenv values)
        self._next_id += 1
        request = {**request, "op": "check", "id": self._next_id}
        if not self.io.send("health", request):
            self.loop.call_soon(lambda: callback(False, "health worker is not running"))
            return
        self._inflight[self._next_id] = callback

    def handover(self, fds: list[int]) -> dict[str, object]:
        """The checks in flight by the job they are for (their results come after the exec); the
        worker is the supervisor's ``io``, handed over once for both of its users."""
        inflight = {str(i): getattr(cb, "__self__", None) for i, cb in self._inflight.items()}
        return {
            "inflight": {i: job.name for i, job in inflight.items() if job is not None},
            "next_id": self._next_id,
            "env_sent": self._env_sent,
        }

    def resume(self, s: dict[str, Any], callbacks: dict[str, ResultCallback]) -> None:
        """``callbacks``: each job's result callback, by job name. A state of an image that ran a
        health worker of its own (format 1) has it in ``worker``: adopted, it serves the checks until
        it exits, then the shared worker does."""
        if s.get("worker") is not None:
            self.io.adopt_legacy("health", s["worker"])
        self._next_id, self._env_sent = int(s["next_id"]), s["env_sent"]
        for i, name in s["inflight"].items():
            if name in callbacks:
                self._inflight[int(i)] = callbacks[name]

    def stop(self) -> None:
        self.io.finish("health")
        self._fail_all("pypilot is stopping")

    def _on_message(self, msg: Message) -> None:
        callback = self._inflight.pop(int(msg["id"]), None)
        if callback is not None:
            callback(bool(msg["ok"]), str(msg.get("detail", "")))

    def _on_worker_death(self) -> None:
        self._env_sent = None
        self._fail_all("health worker died")

    def _fail_all(self, why: str) -> None:
        inflight, self._inflight = self._inflight, {}
        for callback in inflight.values():
            callback(False, why)


# --- in the I/O worker process ------------------------------------------------------------------


def run_check(msg: Message, io: Any) -> None:
    """Start one check in the I/O worker (``io``: its loop, reaper and ``reply``); the result is a
    ``result`` message when it is done."""
    loop, reaper, reply = io.loop, io.reaper, io.reply
    check_id, kind, timeout = msg["id"], msg["kind"], float(msg.get("timeout") or 1.0)

    def done(ok: bool, detail: str) -> None:
        reply({"op": "result", "id": check_id, "ok": ok, "detail": detail})

    if kind == "exec":
        from pypilot.process import Command

        name = f"check.{msg['job']}"
        process = None
        if msg.get("process"):
            from pypilot.config.model import ProcessConfig

            p = msg["process"]
            process = ProcessConfig(
                user=p["user"], uid=p["uid"], gid=p["gid"],
                groups=None if p["groups"] is None else tuple(p["groups"]),
                env=tuple((k, v) for k, v in p["env"]),
            )
        cmd = Command(
            name, msg["exec"], loop, reaper, raw=bool(msg.get("raw")), timeout=timeout, env_name="CHECK",
            process=process,
        )

        def exited(status: int | None, start_error: str | None) -> None:
            if start_error is not None:
                logs.error(f"unable to start {name}: {start_error}")
                done(False, start_error)
            elif status == 0:
                done(True, "ok")
            else:
                assert status is not None
                logs.error(f"{name} exited with error: {describe(status)}")
                done(False, f"{name}: {describe(status)}")

        cmd.start(exited)
    elif kind in ("http", "tcp"):
        target = msg["url"] if kind == "http" else msg["addr"]
        if io.results is None:  # the pool (concurrent.futures, threading) only for a config with probes
            io.results = _ThreadResults(loop)
        io.results.submit(lambda: _probe(kind, target, timeout), done)
    else:
        done(False, f"unknown check kind {kind!r}")


def _probe(kind: str, target: str, timeout: float) -> tuple[bool, str]:
    import socket

    if kind == "tcp":
        host, _, port = target.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        # an ASCII name as bytes: a str would be encoded with the idna codec, whose first use imports
        # encodings.idna, stringprep and unicodedata (as pypilot.consul_http.ascii_host says)
        addr = host.encode("ascii") if host.isascii() else host
        with socket.create_connection((addr, int(port)), timeout=timeout):  # type: ignore[arg-type]
            return True, f"connected to {target}"
    import http.client
    import urllib.parse

    url = urllib.parse.urlsplit(target)
    conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(url.hostname or "127.0.0.1", url.port, timeout=timeout)
    try:
        conn.request("GET", (url.path or "/") + (f"?{url.query}" if url.query else ""))
        status = conn.getresponse().status
    finally:
        conn.close()
    return 200 <= status < 400, f"HTTP {status} from {target}"


class _ThreadResults:
    """Blocking probes run in threads; their results come back into the worker's loop by a pipe."""

    def __init__(self, loop: Loop) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="probe")
        self.loop = loop
        self._rd, self._wr = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._done: list[tuple[Callable[[bool, str], None], bool, str]] = []
        loop.add_reader(self._rd, self._drain)

    def submit(self, probe: Callable[[], tuple[bool, str]], done: Callable[[bool, str], None]) -> None:
        def run() -> None:
            try:
                ok, detail = probe()
            except Exception as e:  # refused, timed out, bad URL: a failed check, with why
                ok, detail = False, f"{type(e).__name__}: {e}"
            self._done.append((done, ok, detail))  # list.append is atomic under the GIL
            try:
                os.write(self._wr, b"x")
            except BlockingIOError:
                pass  # the pipe is full, so a wake-up is already pending

        self.pool.submit(run)

    def _drain(self) -> None:
        try:
            os.read(self._rd, 4096)
        except BlockingIOError:
            pass
        while self._done:
            done, ok, detail = self._done.pop(0)
            done(ok, detail)


def request_for(job: Any) -> Message | None:
    """The check request of a job's health config, or None if it has no check to run."""
    health = job.cfg.health
    if health is None:
        return None
    timeout = health.timeout or health.interval
    if health.exec:
        return {
            "kind": "exec",
            "job": job.name,
            "exec": list(health.exec),
            "timeout": timeout,
            "raw": health.raw_logging,
            # the check runs as the job's user too (uid, gid, groups, HOME/USER/LOGNAME)
            "process": job.cfg.process.identity()._asdict() if job.cfg.process is not None else None,
        }
    if health.http:
        return {"kind": "http", "job": job.name, "url": health.http, "timeout": timeout}
    if health.tcp:
        return {"kind": "tcp", "job": job.name, "addr": health.tcp, "timeout": timeout}
    return None
