"""Reading /proc for the idle measures: RSS/PSS from ``smaps_rollup``, distinct pages from ``pagemap``,
per-thread CPU time and wake-ups."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


def exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def smaps(pid: int) -> tuple[int, int]:
    """(Rss, Pss) of one process in KiB (0, 0 if it is gone)."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def distinct_pages(pids: list[int]) -> int:
    """Bytes of distinct physical pages mapped by ``pids`` together (root: /proc/<pid>/pagemap gives PFNs).

    The memory a process tree holds, each page once whoever else maps it: unlike PSS, it does not fall when
    unrelated processes on the machine map the same library file (every Python on the host shares a
    system libpython's pages; a self-contained build's own copy is shared only within its tree).
    """
    import struct

    page = os.sysconf("SC_PAGE_SIZE")
    frames: set[int] = set()
    for pid in pids:
        try:
            ranges = []
            with open(f"/proc/{pid}/smaps") as fh:
                current: tuple[int, int] | None = None
                for line in fh:
                    head = line.split(None, 1)[0]
                    if "-" in head and not head.endswith(":"):
                        lo, hi = (int(x, 16) for x in head.split("-"))
                        current = (lo, hi)
                    elif head == "Rss:" and current and int(line.split()[1]) > 0:
                        ranges.append(current)
            with open(f"/proc/{pid}/pagemap", "rb") as pm:
                for lo, hi in ranges:
                    pm.seek(lo // page * 8)
                    data = pm.read((hi - lo) // page * 8)
                    for (entry,) in struct.iter_unpack("<Q", data):
                        if entry >> 63 & 1:  # present in RAM
                            frames.add(entry & ((1 << 55) - 1))
        except OSError:
            continue
    return len(frames) * page


@dataclasses.dataclass
class Cpu:
    """Sums over every thread: CPU time on-core (schedstat ns), timeslices run, context switches."""

    run_ns: int = 0
    slices: int = 0
    voluntary: int = 0
    involuntary: int = 0

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(
            self.run_ns - other.run_ns,
            self.slices - other.slices,
            self.voluntary - other.voluntary,
            self.involuntary - other.involuntary,
        )


def cpu(pids: list[int]) -> Cpu:
    total = Cpu()
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            base = Path(f"/proc/{pid}/task/{tid}")
            try:
                run_ns, _, slices = (int(x) for x in (base / "schedstat").read_text().split()[:3])
                status = (base / "status").read_text()
            except (OSError, ValueError):
                continue
            total.run_ns += run_ns
            total.slices += slices
            for line in status.splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total.voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    total.involuntary += int(line.split()[1])
    return total
