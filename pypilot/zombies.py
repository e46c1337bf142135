"""Zombies pypilot cannot reap: processes that exited while their parent, alive and not pypilot, never
waited for them (tini #130, anchors pitfall 17).

PID 1 reaps orphans. A zombie whose parent is still running belongs to that parent: only its ``wait``
can remove it, and an init that claims otherwise misleads. pypilot reports them instead: each with its
parent and the job whose process group holds it, so that a job that leaks them can be found. Read from
/proc on demand (a status request), never on a timer: an idle pypilot stays at zero wake-ups.
"""

from __future__ import annotations

import os


def unreaped(groups: dict[int, str]) -> list[dict[str, object]]:
    """Every zombie whose parent is not this process; ``groups`` maps a job's process group to its name."""
    me = os.getpid()
    found: list[dict[str, object]] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                head, _, rest = f.read().rpartition(b")")
        except OSError:
            continue  # gone meanwhile, or not ours to see
        fields = rest.split()
        if len(fields) < 3 or fields[0] != b"Z":
            continue
        ppid, pgrp = int(fields[1]), int(fields[2])
        if ppid in (0, me):
            continue  # ours: the reaper takes it on its next drain
        name = head.partition(b"(")[2].decode(errors="replace")
        found.append({"pid": int(entry), "ppid": ppid, "command": name, "job": groups.get(pgrp)})
    found.sort(key=lambda z: int(str(z["pid"])))
    return found
