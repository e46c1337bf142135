"""The state an in-place upgrade hands from one pypilot image to the next: versioned, plain JSON.

``capture(sup)`` turns a running supervisor into a dict (every job, worker, the control socket, the
counters) and collects the fds that must survive the exec; ``check(state, sup)`` says whether a freshly
built supervisor can take it over, without touching anything; ``restore(sup, state)`` makes it so.
``dump``/``load`` are the wire form: ``load`` refuses a ``format`` newer than ``FORMAT`` rather than
misread it. The format is documented in docs/upgrade.md; a change to what is captured bumps ``FORMAT``
(and ``restore`` keeps reading every older one it can).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # typing's costs start-up time; mypy reads this name as True
if TYPE_CHECKING:
    from typing import Any

    from pypilot.supervisor import Supervisor

FORMAT = 2  # the state format this pypilot writes and the newest it reads (2: one I/O worker, ``io``)
OLDEST = 1  # the oldest it still reads
ENV_FD = "PYPILOT_UPGRADE_FD"  # the state's fd, in the environment of the exec'd image (never a job's)


class HandoverError(ValueError):
    """A state this pypilot cannot take over; the message says why."""


def dump(state: dict[str, Any]) -> bytes:
    from pypilot.channel import _dumps  # the stdlib's C codec: orjson's import is ~50 ms of the exec

    return _dumps(state)


def load(data: bytes) -> dict[str, Any]:
    """The state in ``data``; HandoverError for anything that is not a state of a format we read."""
    from pypilot.channel import _loads

    try:
        state = _loads(data)
    except ValueError as e:
        raise HandoverError(f"the upgrade state is not JSON: {e}") from None
    if not isinstance(state, dict) or not isinstance(state.get("format"), int):
        raise HandoverError("the upgrade state has no format number: not a pypilot state")
    fmt = state["format"]
    if fmt > FORMAT:
        raise HandoverError(f"state format {fmt} is newer than this pypilot reads (up to {FORMAT})")
    if fmt < OLDEST:
        raise HandoverError(f"state format {fmt} is older than this pypilot reads (from {OLDEST})")
    return state


def write_fd(state: dict[str, Any]) -> int:
    """A memfd holding the state, at offset 0, inheritable (for the exec or the check's spawn)."""
    fd = os.memfd_create("pypilot-upgrade-state", 0)  # no MFD_CLOEXEC: it is meant to cross the exec
    data = dump(state)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def read_fd(fd: int) -> bytes:
    chunks = []
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


# --- the supervisor, to a state and back -------------------------------------------------------------


def capture(sup: Supervisor, meta: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """The whole state of ``sup`` (``meta``: the upgrade's own fields), and the fds it refers to."""
    fds: list[int] = []
    state: dict[str, Any] = {
        "format": FORMAT,
        **meta,
        "captured_at": time.monotonic(),
        "config_path": sup.config.path,
        "maintenance": sup.maintenance_on,
        "env_generation": sup.env_generation,
        "events_published": sup.bus.published,
        "orphans_reaped": sup.reaper.orphans_reaped,
        "jobs": [job.handover(fds) for job in sup.jobs],
        "io": sup.io.handover(fds) if sup.io is not None else None,
        "health": sup.health.handover(fds) if sup.health is not None else None,
        "discovery": sup.discovery.handover(fds) if sup.discovery is not None else None,
        "control": sup.control.handover(fds) if sup.control is not None else None,
        "job_logs": _job_logs(),
    }
    return state, fds


def check(state: dict[str, Any], sup: Supervisor) -> None:
    """Raise HandoverError unless ``sup`` (built from the config) can take ``state`` over."""
    try:
        ours = {job.name: job for job in sup.jobs}
        theirs = [s["name"] for s in state["jobs"]]
        if sorted(theirs) != sorted(ours):
            missing, extra = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
            raise HandoverError(
                f"the config's jobs differ from the running ones (not in the config: {missing or 'none'}; "
                f"new in it: {extra or 'none'}): reload first, or restore the config file"
            )
        for s in state["jobs"]:
            ours[s["name"]].check_handover(s)
        if (state["health"] is None) != (sup.health is None) or (state["discovery"] is None) != (
            sup.discovery is None
        ):
            raise HandoverError("the config's health checks or Consul use changed since it was loaded")
    except HandoverError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise HandoverError(f"the upgrade state does not fit this pypilot: {type(e).__name__}: {e}") from None


def restore(sup: Supervisor, state: dict[str, Any]) -> None:
    """Make ``sup`` (fresh from the config, not yet run) the supervisor ``state`` describes."""
    check(state, sup)
    sup.maintenance_on, sup.env_generation = bool(state["maintenance"]), int(state["env_generation"])
    sup.bus.published = int(state["events_published"])
    sup.reaper.orphans_reaped = int(state["orphans_reaped"])
    by_name = {job.name: job for job in sup.jobs}
    for s in state["jobs"]:
        by_name[s["name"]].resume(s)
    if sup.io is not None and state.get("io") is not None:
        sup.io.adopt(state["io"])
    # format 1 had a worker per role, in health's and discovery's own ``worker``: their resume adopts
    # each as it runs, and the role moves to the shared worker when it exits (workers.IOWorker)
    if sup.health is not None and state["health"] is not None:
        sup.health.resume(state["health"], {j.name: j._on_check_done for j in sup.jobs})
    if sup.discovery is not None and state["discovery"] is not None:
        sup.discovery.resume(state["discovery"])
    if state["control"] is not None:
        from pypilot.control.plane import ControlPlane

        sup.control = ControlPlane(sup, sup.config.control)
        sup.control.adopt(state["control"])
    _restore_job_logs(state.get("job_logs") or {})


def _job_logs() -> dict[str, Any]:
    """Each job's recent output lines (``pypilot logs``), so that they outlive the exec."""
    from pypilot import joblogs

    out = {}
    for name, buf in joblogs.all_outputs().items():
        out[name] = {"seq": buf.seq, "lines": [list(e) for e in buf.lines]}
    return out


def _restore_job_logs(saved: dict[str, Any]) -> None:
    from pypilot import joblogs

    for name, s in saved.items():
        buf = joblogs.get(name)
        if buf is not None:
            buf.restore(int(s["seq"]), [(int(q), float(t), str(line)) for q, t, line in s["lines"]])
