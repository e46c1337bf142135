"""Helpers every measure uses: payload output patterns, starting a peer in a fresh work dir, results.

A peer that times out or dies is recorded as an error for that measure (shown in the table) instead of
stopping the suite; a bug in a measure itself still raises.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from .common import Result, log
from .nsrun import InitTimeout, NsInit
from .peers import Job, Launch, Peer

STAMP = re.compile(r"STAMP pid=(\d+) mono=(\d+) real=(\d+)")
EXIT = re.compile(r"EXIT pid=(\d+) mono=(\d+) real=(\d+)")
T = TypeVar("T")


class Collector:
    """Accumulates samples per (measure, peer) in insertion order."""

    def __init__(self) -> None:
        self.results: dict[tuple[str, str], Result] = {}

    def _get(self, measure: str, peer: str, unit: str, lower: bool) -> Result:
        key = (measure, peer)
        if key not in self.results:
            self.results[key] = Result(measure, peer, unit, [], lower)
        return self.results[key]

    def add(
        self, measure: str, peer: str, unit: str, value: float, lower: bool = True, note: str = ""
    ) -> None:
        res = self._get(measure, peer, unit, lower)
        res.samples.append(round(value, 4))
        if note:
            res.note = note

    def fail(self, measure: str, peer: str, unit: str, err: BaseException | str, lower: bool = True) -> None:
        res = self._get(measure, peer, unit, lower)
        msg = str(err).strip().splitlines()
        res.error = (msg[0] if msg else type(err).__name__)[:160] if not isinstance(err, str) else err
        log(f"{measure} / {peer}: {res.error}")

    def skip(self, measure: str, peer: str, unit: str, why: str) -> None:
        res = self._get(measure, peer, unit, True)
        res.note = why


class Workspace:
    """A temp root for work dirs (configs, service dirs, sockets); removed at the end of the run."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pypilot-bench-"))

    def fresh(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.root))

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def started(peer: Peer, job: Job, ws: Workspace) -> Iterator[tuple[NsInit, Launch]]:
    """Launch ``peer`` running ``job`` as PID 1 of a new PID namespace; SIGKILL the namespace afterwards."""
    wd = ws.fresh()
    launch = peer.launch(job, wd)
    with NsInit(launch.argv, launch.env, cwd=wd) as ns:
        yield ns, launch


def stamp_of(m: re.Match[str]) -> tuple[int, int, int]:
    """(pid, mono ns, real ns) of a STAMP/EXIT match."""
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def guarded(
    col: Collector, measure: str, peer: str, unit: str, fn: Callable[[], T], lower: bool = True
) -> T | None:
    """Run one peer's trial; an init timeout or death becomes an error entry, not a crash."""
    try:
        return fn()
    except (InitTimeout, OSError, ValueError) as exc:
        col.fail(measure, peer, unit, exc, lower)
        return None


def each(items: Iterable[T], fn: Callable[[T], None], parallel: int = 1) -> None:
    """Call ``fn`` on every item, ``parallel`` at a time (1 = in order; --quick overlaps trials)."""
    items = list(items)
    if parallel <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for fut in [pool.submit(fn, item) for item in items]:
            fut.result()


class Context:
    """What a measure gets: settings, the compiled payloads, the available peers and where to put results."""

    def __init__(
        self,
        settings: object,
        payloads: dict[str, Path],
        peers: list[Peer],
        baseline: Peer,
        col: Collector,
        ws: Workspace,
    ) -> None:
        from .common import Settings

        assert isinstance(settings, Settings)
        self.s = settings
        self.payloads = payloads
        self.peers = peers
        self.baseline = baseline
        self.col = col
        self.ws = ws

    def p(self, name: str) -> str:
        return str(self.payloads[name])
