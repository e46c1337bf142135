"""What a reload does, decided without touching anything: the plan, and the progress of one reload.

ContainerPilot stopped every job and exited on a bad config (§4.8). Here (the supervisor validates the
new file first, and carries these decisions out):
1. ``plan`` says what stays and what goes: by default (``control.reload: "restart"``) every job
   stops and starts again, as ContainerPilot did; with ``"diff"`` a job whose config and spawn
   environment are unchanged keeps running (same PID, counters kept). Jobs stop through their normal
   stopping/stopped path; once their processes are gone, the others start;
2. ``Progress`` follows one reload through the job events the supervisor hands it: each started job
   with a new or changed config that runs on ``startup`` must spawn and, if it has a health check,
   turn healthy within its ``when.timeout`` or ``control.reloadGrace``; if one does not, the new jobs
   are stopped and the old ones started again, with the reason for the caller, the log and the bus.
Nothing here imports the supervisor or holds a job: names and configs in, steps out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from pypilot.config.model import JobConfig


class Plan(NamedTuple):
    """What a reload does, by job name: computed from the two configs alone."""

    keep: tuple[str, ...]  # running jobs left alone (same PID, counters kept)
    stop: tuple[str, ...]  # removed, changed or restarted: stopped through their stopping/stopped path
    start: tuple[JobConfig, ...]  # then started, in the new config's order
    watch: frozenset[str]  # started jobs whose config is new or changed: failing to come up rolls back


def plan(running: Sequence[tuple[JobConfig, bool]], new: Sequence[JobConfig], mode: str) -> Plan:
    """``running``: each current job's config and whether its spawn environment changed since it
    started (a ``-putenv``). ``mode`` "restart" (CP's default) restarts every job; "diff" keeps a job
    whose config and environment are both unchanged. Only a new or changed config is watched: a job
    restarted with the config it had would come back the same after a rollback."""
    wanted = {cfg.name: cfg for cfg in new}
    keep = tuple(
        cfg.name
        for cfg, env_changed in running
        if mode == "diff" and not env_changed and wanted.get(cfg.name) == cfg
    )
    old = {cfg.name: cfg for cfg, _ in running}
    stop = tuple(cfg.name for cfg, _ in running if cfg.name not in keep)
    start = tuple(cfg for cfg in new if cfg.name not in keep)
    watch = frozenset(cfg.name for cfg in start if old.get(cfg.name) != cfg)
    return Plan(keep, stop, start, watch)


class Step(NamedTuple):
    """What the supervisor does next; ``reason`` says why a reload failed."""

    action: str  # one of START, COMMIT, ROLLBACK, RESTORE
    reason: str = ""


START = "start"  # the stopped jobs' processes are gone: start the plan's jobs now
COMMIT = "commit"  # every watched job came up: the new config is the config
ROLLBACK = "rollback"  # a watched job did not come up: stop the started jobs
RESTORE = "restore"  # the started jobs' processes are gone: start the old ones again, report failure


class Progress:
    """One reload in flight, by job name: takes what happened, says what to do next (or None).

    Phases: ``stopping`` (what the plan stops is going) → ``watching`` (the plan's jobs have
    started; the watched ones must come up) → ``done``; or ``watching`` → ``rolling back`` (the
    started jobs are going) → ``done``. Events after the end, or out of their phase, are ignored."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.phase = "stopping"
        self.up: dict[str, bool] = {}  # watched job name -> has come up
        self.reason = ""

    def gone(self) -> Step | None:
        """The processes of the jobs being stopped are gone."""
        if self.phase == "stopping":
            self.phase = "watching"
            return Step(START)
        if self.phase == "rolling back":
            self.phase = "done"
            return Step(RESTORE, self.reason)
        return None

    def started(self, watched: Iterable[str]) -> Step | None:
        """The plan's jobs are armed, their ``startup`` next; ``watched``: those with an exec that
        runs on ``startup`` (of them, the ones with a new or changed config must come up)."""
        self.up = {name: False for name in watched if name in self.plan.watch}
        return self._commit_if_all_up()

    def came_up(self, name: str) -> Step | None:
        """A watched job is healthy, or (with no health check) its process is running."""
        if self.phase != "watching" or name not in self.up:
            return None
        self.up[name] = True
        return self._commit_if_all_up()

    def could_not_start(self, name: str) -> Step | None:
        if self.phase != "watching" or self.up.get(name, True):
            return None
        return self._rollback(f"job {name} could not start its exec")

    def grace_expired(self) -> Step | None:
        if self.phase != "watching":
            return None
        late = sorted(name for name, up in self.up.items() if not up)
        return self._rollback(f"job(s) {', '.join(late)} did not come up within the reload grace period")

    def _commit_if_all_up(self) -> Step | None:
        if all(self.up.values()):
            self.phase = "done"
            return Step(COMMIT)
        return None

    def _rollback(self, reason: str) -> Step:
        self.phase, self.reason = "rolling back", reason
        return Step(ROLLBACK, reason)
