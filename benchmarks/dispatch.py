"""Job exit -> event dispatched latency (p50/p99), for the supervisors (pypilot, supervisord, circus).

A job runs ``RUN_MS`` (so the supervisor's loop is idle when it exits), stamps its CLOCK_REALTIME and exits;
it is restarted without limit until ``dispatch_samples`` exits or ``dispatch_window_s``. Each exit is paired
with the supervisor's own log line for it, timestamped when written: pypilot ``event: {ExitSuccess app}``
(DEBUG, RFC3339Nano), supervisord ``exited: app`` (INFO, whole milliseconds), circus
``reaping process <pid> [app]`` (DEBUG, ``%(created).6f`` via a logging config).
Latency = log time - the payload's exit stamp. pypilot also runs once under SCHED_FIFO (``chrt -f 10``):
the gap between the two rows is what other processes' CPU use adds on a busy machine.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from .common import percentile
from .harness import EXIT, STAMP, Context, guarded, stamp_of, started
from .peers import Job, Launch, Peer

RUN_MS = 20


def _rfc3339(text: str) -> int:
    """RFC3339Nano (Go trims trailing zeros) -> ns since the epoch."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        raise ValueError(f"not RFC3339: {text!r}")
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    base = dt.datetime.fromisoformat(m.group(1) + tz)
    frac = (m.group(2) or "0").ljust(9, "0")[:9]
    return int(base.timestamp()) * 1_000_000_000 + int(frac)


def _supervisord_time(text: str) -> int:
    base, ms = text.split(",")
    local = dt.datetime.strptime(base, "%Y-%m-%d %H:%M:%S").timestamp()
    return int(local) * 1_000_000_000 + int(ms) * 1_000_000


def _circus_time(text: str) -> int:
    sec, frac = text.split(".")
    return int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])


# peer -> (log line pattern with the time in group 1, time parser)
PATTERNS: dict[str, tuple[re.Pattern[str], Callable[[str], int]]] = {
    "pypilot": (re.compile(r"^(\S+) event: \{Exit\w* app\}"), _rfc3339),
    "supervisord": (
        re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ exited: app "),
        _supervisord_time,
    ),
    "circus": (re.compile(r"^(\d+\.\d+) DEBUG reaping process \d+ \[app\]"), _circus_time),
}


def measure(ctx: Context) -> None:
    job = Job([ctx.p("stamp"), str(RUN_MS), "exit"], restart=True, debug=True, throttle=False)
    rt = [Realtime(p) for p in ctx.peers if p.name == "pypilot"]
    for peer in [*ctx.peers, *(p for p in rt if p.available())]:
        if peer.supervisor or isinstance(peer, Realtime):
            lat = guarded(ctx.col, "dispatch_p99", peer.name, "ms", lambda peer=peer: once(ctx, peer, job))
            if lat:
                note = f"n={len(lat)}" + ("; log times in whole ms" if peer.name == "supervisord" else "")
                ctx.col.add("dispatch_p50", peer.name, "ms", percentile(lat, 50), note=note)
                ctx.col.add("dispatch_p99", peer.name, "ms", percentile(lat, 99), note=note)
                ctx.col.results[("dispatch_p99", peer.name)].raw = lat


class Realtime(Peer):
    """A peer under ``chrt -f 10`` (SCHED_FIFO): the same figure without other processes' CPU noise."""

    def __init__(self, inner: Peer) -> None:
        self.inner = inner
        self.name = f"{inner.name} (SCHED_FIFO)"

    def available(self) -> bool:
        return shutil.which("chrt") is not None

    def launch(self, job: Job, workdir: Path) -> Launch:
        inner = self.inner.launch(job, workdir)
        return Launch(["chrt", "-f", "10", *inner.argv], inner.env, inner.control)


def once(ctx: Context, peer: Peer, job: Job) -> list[float]:
    rx, parse = PATTERNS[peer.name.split(" ")[0]]
    with started(peer, job, ctx.ws) as (ns, _):
        ns.wait_for(STAMP, timeout=20)
        deadline = time.monotonic() + ctx.s.dispatch_window_s
        while time.monotonic() < deadline and len(ns.matches(rx)) < ctx.s.dispatch_samples:
            time.sleep(0.05)
        exits = sorted(stamp_of(m)[2] for m in ns.matches(EXIT))
        logged = sorted({parse(m.group(1)) for m in ns.matches(rx)})  # supervisord logs each line twice
    # pair each exit with the first dispatch line at or after it (supervisord: ms resolution, so -1 ms)
    slack = 1_000_000 if peer.name.startswith("supervisord") else 0
    out: list[float] = []
    j = 0
    for ex in exits:
        while j < len(logged) and logged[j] < ex - slack:
            j += 1
        if j == len(logged):
            break
        out.append(max(0.0, (logged[j] - ex) / 1e6))
        j += 1
    if not out:
        raise ValueError(f"no exit dispatch line matched {rx.pattern!r}")
    return out
