"""Reload (#14, #18): the plan computed from two configs, and CP's default of restarting every job,
end to end with pypilot as PID 1."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import psutil

from pypilot.config.model import HealthConfig, JobConfig
from pypilot.reload import COMMIT, RESTORE, ROLLBACK, START, Progress, Step, plan
from tests.pid1 import Pilot, wait_for

A, B, C = JobConfig(name="a", exec=("sleep", "1")), JobConfig(name="b", exec=("sleep", "2")), JobConfig(
    name="c", exec=("sleep", "3")
)


def test_plan_restart_mode_restarts_every_job_and_watches_only_new_or_changed_configs() -> None:
    b2 = JobConfig(name="b", exec=("sleep", "22"))
    p = plan([(A, False), (B, False)], [A, b2, C], "restart")
    assert p.keep == () and p.stop == ("a", "b") and p.start == (A, b2, C)
    assert p.watch == {"b", "c"}  # `a` would come back the same after a rollback


def test_plan_diff_keeps_unchanged_stops_removed_and_changed_starts_new() -> None:
    b2 = JobConfig(name="b", exec=("sleep", "22"), health=HealthConfig(interval=1, ttl=5))
    p = plan([(A, False), (B, False), (C, False)], [b2, A], "diff")
    assert p.keep == ("a",) and p.stop == ("b", "c") and p.start == (b2,) and p.watch == {"b"}


def test_plan_diff_counts_a_changed_spawn_environment_as_a_change() -> None:
    p = plan([(A, True), (B, False)], [A, B], "diff")
    assert p.keep == ("b",) and p.stop == ("a",) and p.start == (A,)
    assert p.watch == frozenset()  # the same config again: nothing a rollback could restore


def test_plan_is_stable_for_an_identical_config() -> None:
    assert plan([(A, False)], [A], "diff") == (("a",), (), (), frozenset())
    assert plan([], [], "restart") == ((), (), (), frozenset())


# --- the progress of one reload ---------------------------------------------------------------


def progress(watch: set[str]) -> Progress:
    return Progress(plan([(A, False)], [A, B, C], "restart")._replace(watch=frozenset(watch)))


def test_progress_starts_the_new_jobs_only_once_the_old_ones_are_gone() -> None:
    p = progress({"b"})
    assert p.came_up("b") is None  # an old job of that name turning healthy is not the new one
    assert p.gone() == Step(START)
    assert p.gone() is None  # the stop phase is over: a late exit starts nothing twice


def test_progress_commits_once_every_watched_job_came_up() -> None:
    p = progress({"b", "c"})
    p.gone()
    assert p.started(["a", "b", "c"]) is None
    assert p.up == {"b": False, "c": False}  # `a` runs its old config again: not watched
    assert p.came_up("a") is None and p.came_up("b") is None
    assert p.came_up("c") == Step(COMMIT)
    assert p.came_up("b") is None and p.grace_expired() is None  # over: nothing after the commit


def test_progress_commits_at_once_when_nothing_is_watched() -> None:
    p = progress(set())
    p.gone()
    assert p.started(["a", "b"]) == Step(COMMIT)


def test_progress_rolls_back_a_job_that_cannot_start_then_restores_once_it_is_gone() -> None:
    p = progress({"b"})
    p.gone()
    p.started(["b"])
    assert p.could_not_start("a") is None  # not watched
    step = p.could_not_start("b")
    assert step == Step(ROLLBACK, "job b could not start its exec")
    assert p.came_up("b") is None and p.grace_expired() is None  # rolling back: no commit now
    assert p.gone() == Step(RESTORE, "job b could not start its exec")
    assert p.gone() is None


def test_progress_grace_expiry_names_the_late_jobs() -> None:
    p = progress({"b", "c"})
    p.gone()
    p.started(["b", "c"])
    p.came_up("b")
    assert p.grace_expired() == Step(ROLLBACK, "job(s) c did not come up within the reload grace period")


def test_progress_a_job_that_came_up_and_exits_127_later_does_not_roll_back() -> None:
    p = progress({"b", "c"})
    p.gone()
    p.started(["b", "c"])
    p.came_up("b")
    assert p.could_not_start("b") is None


# --- end to end ----------------------------------------------------------------------------------


def pids(p: Pilot) -> dict[str, int]:
    out = {}
    for proc in p.children():
        try:
            cmd = proc.cmdline()
        except psutil.Error:  # exited (a zombie until PID 1 reaps it) since it was listed
            continue
        if cmd[:1] == ["sleep"]:
            out[cmd[1]] = proc.pid
    return out


def cli(p: Pilot, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pypilot", *args, "-config", str(p.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Pilot.ROOT,
    )


def rewrite(p: Pilot, cfg: dict[str, Any]) -> None:
    tmp = p.config_path.with_suffix(".tmp")
    tmp.write_text(p.config_text(cfg))
    tmp.replace(p.config_path)


JOBS = [{"name": "one", "exec": "sleep 1001"}, {"name": "two", "exec": "sleep 1002"}]


def test_reload_restarts_every_job_by_default_as_containerpilot_did() -> None:
    """autopilotpattern/vault: a new consul.hcl, then `-reload`, and the unchanged agent job must
    restart to read it."""
    with Pilot({"jobs": JOBS}) as p:
        before = wait_for(lambda: len(found := pids(p)) == 2 and found, 10, "both jobs")
        r = cli(p, "-reload")
        assert r.returncode == 0, r.stderr
        after = wait_for(lambda: len(found := pids(p)) == 2 and found, 10, "both jobs again")
        assert set(after) == {"1001", "1002"}
        assert not set(after.values()) & set(before.values())


def test_reload_with_a_bad_config_is_rejected_and_keeps_every_job() -> None:
    with Pilot({"jobs": JOBS}) as p:
        before = wait_for(lambda: len(found := pids(p)) == 2 and found, 10, "both jobs")
        rewrite(p, {"jobs": [{"name": "one", "exec": "sleep 1001", "restarts": "bogus"}]})
        r = cli(p, "-reload")
        assert r.returncode != 0 and "restarts" in r.stderr
        assert pids(p) == before and p.alive()


def test_diff_reload_restarts_a_job_whose_environment_changed_by_putenv() -> None:
    cfg = {"control": {"reload": "diff"}, "jobs": JOBS}
    with Pilot(cfg) as p:
        before = wait_for(lambda: len(found := pids(p)) == 2 and found, 10, "both jobs")
        assert cli(p, "-reload").returncode == 0
        assert pids(p) == before  # nothing changed: nothing restarts
        assert cli(p, "-putenv", "RELOAD_TEST=1").returncode == 0
        assert cli(p, "-reload").returncode == 0
        after = wait_for(lambda: len(found := pids(p)) == 2 and found, 10, "both jobs again")
        assert not set(after.values()) & set(before.values())
        assert cli(p, "-putenv", "RELOAD_TEST=1").returncode == 0  # the same value: no change
        assert cli(p, "-reload").returncode == 0
        assert pids(p) == after
        rewrite(p, {**cfg, "jobs": [JOBS[0], {"name": "two", "exec": "sleep 1003"}]})
        assert cli(p, "-reload").returncode == 0
        last = wait_for(lambda: "1003" in (found := pids(p)) and found, 10, "the changed job")
        assert last["1001"] == after["1001"]


def test_diff_reload_rolls_back_a_changed_job_that_never_turns_healthy_within_the_grace() -> None:
    cfg = {"control": {"reload": "diff", "reloadGrace": "2s"}, "jobs": JOBS}
    with Pilot(cfg) as p:
        before = wait_for(lambda: len(found := pids(p)) == 2 and found, 10, "both jobs")
        sick = {"name": "two", "exec": "sleep 1003", "health": {"exec": "false", "interval": 1, "ttl": 5}}
        rewrite(p, {**cfg, "jobs": [JOBS[0], sick]})
        r = cli(p, "-reload")
        assert r.returncode == 1 and "two did not come up within the reload grace period" in r.stderr
        after = wait_for(lambda: len(found := pids(p)) == 2 and "1002" in found and found, 10, "old two")
        assert after["1001"] == before["1001"]  # kept through the reload and its rollback
        assert after["1002"] != before["1002"]  # the old config's job started again
        assert p.alive()


def test_shutdown_overrides_a_reload_waiting_for_its_grace_and_exits_at_once() -> None:
    cfg = {"control": {"reload": "diff", "reloadGrace": "60s"}, "jobs": JOBS}
    with Pilot(cfg) as p:
        wait_for(lambda: len(pids(p)) == 2, 10, "both jobs")
        sick = {"name": "two", "exec": "sleep 1003", "health": {"exec": "false", "interval": 1, "ttl": 5}}
        rewrite(p, {**cfg, "jobs": [JOBS[0], sick]})
        reload = subprocess.Popen(
            [sys.executable, "-m", "pypilot", "-reload", "-config", str(p.config_path)],
            stderr=subprocess.PIPE, text=True, cwd=Pilot.ROOT,
        )
        wait_for(lambda: "1003" in pids(p), 10, "the reload's new job")
        p.signal(signal.SIGTERM)
        assert p.wait_exit(timeout=10) == 0  # not after the 60 s grace, and no rollback restarts `two`
        reload.communicate(timeout=30)
        assert reload.returncode == 1  # never reported as reloaded
        assert not p.lines("rolling back|reloaded app")


def test_diff_reload_waits_for_a_changed_jobs_readiness_and_rolls_back_without_it() -> None:
    """A job with ``ready`` has come up when it says so, not when its process is running."""
    cfg = {"control": {"reload": "diff", "reloadGrace": "2s"}, "jobs": JOBS}
    with Pilot(cfg) as p:
        before = wait_for(lambda: len(found := pids(p)) == 2 and found, 10, "both jobs")
        silent = {"name": "two", "exec": "sleep 1003", "ready": {"fd": 3}}  # running, never ready
        rewrite(p, {**cfg, "jobs": [JOBS[0], silent]})
        r = cli(p, "-reload")
        assert r.returncode == 1 and "two did not come up within the reload grace period" in r.stderr
        after = wait_for(lambda: len(found := pids(p)) == 2 and "1002" in found and found, 10, "old two")
        assert after["1001"] == before["1001"]
        ready = {"name": "two", "exec": ["sh", "-c", "echo >&3; exec sleep 1004"], "ready": {"fd": 3}}
        rewrite(p, {**cfg, "jobs": [JOBS[0], ready]})
        r = cli(p, "-reload")
        assert r.returncode == 0, r.stderr
        assert "1004" in wait_for(lambda: "1004" in (found := pids(p)) and found, 10, "the ready two")
