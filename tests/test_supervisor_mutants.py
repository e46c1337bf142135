"""The supervisor's decisions, pinned where no PID 1 is needed (pypilot/supervisor.py; written for the
mutants of tests/mutation.sh that the end-to-end tests let through): the grace each job gets, the
container's exit code, the command a job gets, which workers are made, which job waits for which
preStop dependent, the status view, what each signal does, ``run``'s wiring, every step of a reload
(in-process, with exec-less jobs), the shutdown sequence (deadline, sweep, TERM then KILL, the end),
the descendants scan, and one end-to-end run as a subreaper (not PID 1).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pypilot.config.loader import load
from pypilot.events import STOPPED, Event
from pypilot.supervisor import Supervisor, _descendants_of


def supervisor(tmp_path: Path, cfg: dict[str, Any]) -> Supervisor:
    path = tmp_path / "config.json5"
    path.write_text(json.dumps({"consul": "localhost:8500", **cfg}))
    return Supervisor(load(str(path), environ={}), -1)


def said(logged: list[bytes], message: str, whole: bool = True) -> bool:
    """A log entry is ``message`` after its timestamp (``whole``; else begins with it): with a
    substring, a mutant that changed the line around it would pass."""
    texts = [entry.decode().split(" ", 1)[-1] for entry in logged]
    return any(t == message + "\n" if whole else t.startswith(message) for t in texts)


def test_stop_grace_is_the_jobs_stop_timeout_else_the_global_one(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, {"stopTimeout": 7, "jobs": [
        {"name": "own", "exec": "true", "stopTimeout": "500ms"},
        {"name": "global", "exec": "true"},
    ]})
    own, glob = sup.jobs
    assert sup.stop_grace(own) == 0.5
    assert sup.stop_grace(glob) == 7.0
    neg = supervisor(tmp_path, {"stopTimeout": -1, "jobs": [{"name": "a", "exec": "true"}]})
    assert neg.stop_grace(neg.jobs[0]) == 0.0  # no grace: never a negative timer


def test_container_exit_code_is_the_main_jobs_remapped(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, {"jobs": [
        {"name": "side", "exec": "true"},
        {"name": "app", "exec": "true", "main": True, "exitCodeMap": {"143": 0}},
    ]})
    side, app = sup.jobs
    assert sup.container_exit_code() == 0  # nothing ended yet
    side.last_exit = 5
    assert sup.container_exit_code() == 0  # not the main job
    app.last_exit = 143
    assert sup.container_exit_code() == 0
    app.last_exit = 3
    assert sup.container_exit_code() == 3


def test_main_job_end_logs_the_remapped_code_and_shuts_down(tmp_path: Path, logged: list[bytes]) -> None:
    sup = supervisor(tmp_path, {"jobs": [
        {"name": "app", "exec": "true", "main": True, "exitCodeMap": {"143": 0}},
    ]})
    app = sup.jobs[0]
    app.last_exit = 143
    sup.main_job_ended(app)
    assert sup.shutting_down
    assert said(logged, "main job app ended with exit code 143 (pypilot exits 0: exitCodeMap); shutting down")
    sup2 = supervisor(tmp_path, {"jobs": [{"name": "app", "exec": "true", "main": True}]})
    sup2.jobs[0].last_exit = 4
    logged.clear()
    sup2.main_job_ended(sup2.jobs[0])
    assert said(logged, "main job app ended with exit code 4; shutting down")


def test_a_prestop_job_makes_its_source_wait_for_it(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, {"jobs": [
        {"name": "app", "exec": "true"},
        {"name": "pre", "exec": "true", "when": {"source": "app", "once": "stopping"}},
        {"name": "each", "exec": "true", "when": {"source": "other", "each": "stopping"}},
        {"name": "other", "exec": "true"},
        {"name": "post", "exec": "true", "when": {"source": "app", "once": "stopped"}},
        {"name": "ghost", "exec": "true", "when": {"source": "nobody", "once": "stopping"}},
    ]})
    waits = {j.name: j.stopping_wait for j in sup.jobs}
    assert waits == {
        "app": Event(STOPPED, "pre"), "pre": None, "each": None, "other": Event(STOPPED, "each"),
        "post": None, "ghost": None,
    }
    sup.jobs[0].stopping_wait = Event(STOPPED, "stale")
    sup.wire_stopping_dependents()  # rewired from scratch (a reload)
    assert sup.jobs[0].stopping_wait == Event(STOPPED, "pre")


def test_set_env_counts_only_real_changes(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, {"jobs": [{"name": "a", "exec": "true"}]})
    key = "PYPILOT_TEST_SUP_ENV"
    os.environ.pop(key, None)
    try:
        sup.set_env({key: "1"})
        assert os.environ[key] == "1" and sup.env_generation == 1
        sup.set_env({key: "1"})
        assert sup.env_generation == 1
        sup.set_env({key: "2"})
        assert os.environ[key] == "2" and sup.env_generation == 2
    finally:
        os.environ.pop(key, None)


def test_status_view(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, {"jobs": [{"name": "a", "exec": "true"}, {"name": "b", "exec": "true"}]})
    st = sup.status()
    assert st["pid"] == os.getpid() and st["shuttingDown"] is False and st["maintenance"] is False
    assert [j["name"] for j in st["jobs"]] == ["a", "b"]  # type: ignore[attr-defined]
    assert st["watches"] == []
    from pypilot import __version__

    assert st["pypilot"]["version"] == __version__  # type: ignore[index]
    assert sup.deadline_remaining() is None
    assert sup.job("b") is sup.jobs[1] and sup.job("c") is None


def test_maintenance_is_published_and_shown(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, {"jobs": [{"name": "a", "exec": "true"}]})
    seen: list[Event] = []
    sup.bus.listen(seen.append)
    sup.set_maintenance(True)
    assert sup.status()["maintenance"] is True
    sup.set_maintenance(False)
    assert [e.code for e in seen] == ["enterMaintenance", "exitMaintenance"]
    assert sup.status()["maintenance"] is False
    sup.put_metrics({"m": 1.5})
    assert seen[-1] == Event("metric", "m|1.5")


def test_shutdown_sets_a_deadline_once_and_refuses_a_reload(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, {"stopTimeout": 30, "jobs": [{"name": "a", "exec": "true"}]})
    sup.shutdown()
    remaining = sup.deadline_remaining()
    assert remaining is not None and 29 < remaining <= 30
    first = sup._deadline
    sup.shutdown()
    assert sup._deadline is first  # a second SIGTERM does not push the deadline back
    answers: list[tuple[bool, str]] = []
    sup.reload(lambda ok, msg: answers.append((ok, msg)))
    assert answers == [(False, "pypilot is shutting down")]
    assert first is not None
    first.cancel()
    assert sup.deadline_remaining() is None


def test_a_reload_of_a_broken_config_is_refused_and_keeps_the_jobs(tmp_path: Path,
                                                                   logged: list[bytes]) -> None:
    sup = supervisor(tmp_path, {"jobs": [{"name": "a", "exec": "true"}]})
    (tmp_path / "config.json5").write_text("{jobs: [")
    answers: list[tuple[bool, str]] = []
    sup.reload(lambda ok, msg: answers.append((ok, msg)))
    assert len(answers) == 1 and answers[0][0] is False and answers[0][1].startswith("invalid config: ")
    assert [j.name for j in sup.jobs] == ["a"] and sup._reload is None
    assert said(logged, "reload rejected, the running config is kept: ", whole=False)


def test_descendants_scan_finds_children_and_theirs() -> None:
    child = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        from tests.pid1 import wait_for

        wait_for(lambda: _descendants_of(child.pid), 5, "the grandchild")
        grandkids = _descendants_of(child.pid)
        assert len(grandkids) == 1 and grandkids[0] != child.pid
        below_us = _descendants_of(os.getpid())
        assert child.pid in below_us and grandkids[0] in below_us
    finally:
        child.kill()
        child.wait()


def test_descendants_scan_of_a_childless_process_is_empty_and_skips_a_process_gone_meanwhile(
        monkeypatch: pytest.MonkeyPatch) -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert _descendants_of(child.pid) == []
        real = os.listdir

        def listdir(path: str) -> list[str]:  # a process that exited between the listing and its stat
            return ["999999999", *real(path)] if path == "/proc" else real(path)

        monkeypatch.setattr(os, "listdir", listdir)
        assert child.pid in _descendants_of(os.getpid())
    finally:
        child.kill()
        child.wait()


def test_deadline_remaining_never_goes_below_zero(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, {"stopTimeout": -1, "jobs": [{"name": "a", "exec": "true"}]})
    sup.shutdown()  # no grace: the deadline is now
    assert sup.deadline_remaining() == 0.0


def test_status_shows_the_watches_of_discovery(tmp_path: Path) -> None:
    class Discovery:
        def watch_status(self) -> list[dict[str, Any]]:
            return [{"name": "db", "instances": 2}]

    sup = supervisor(tmp_path, {"jobs": [{"name": "a", "exec": "true"}]})
    sup.discovery = Discovery()  # type: ignore[assignment]
    assert sup.status()["watches"] == [{"name": "db", "instances": 2}]


def test_maintenance_events_are_global(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, {"jobs": [{"name": "a", "exec": "true"}]})
    seen: list[Event] = []
    sup.bus.listen(seen.append)
    sup.set_maintenance(True)
    sup.set_maintenance(False)
    assert seen == [Event("enterMaintenance", "global"), Event("exitMaintenance", "global")]


class StubCommand:
    def __init__(self, running: bool) -> None:
        self.running = running
        self.signals: list[int] = []

    def signal(self, sig: int) -> bool:
        self.signals.append(sig)
        return True

    def kill(self) -> None:
        self.signal(9)


def test_the_deadline_kills_running_jobs_and_waits_a_little_for_what_is_left(
        tmp_path: Path, logged: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from pypilot import supervisor as sup_mod

    sup = supervisor(tmp_path, {"jobs": [{"name": "a", "exec": "true"}, {"name": "b", "exec": "true"}]})
    a, b = StubCommand(True), StubCommand(False)
    sup.jobs[0].command, sup.jobs[1].command = a, b  # type: ignore[assignment]
    swept: list[int] = []
    monkeypatch.setattr(sup, "_signal_everyone", swept.append)
    monkeypatch.setattr(sup_mod.Supervisor, "_has_children", staticmethod(lambda: True))
    stopped: list[bool] = []
    monkeypatch.setattr(sup.loop, "stop", lambda: stopped.append(True))
    sup._kill_everything()
    assert a.signals[0] == signal.SIGKILL and b.signals == []
    assert swept == [signal.SIGKILL]
    assert said(logged, 'killing processes for job "a"')
    assert 'job "b"' not in b"".join(logged).decode()
    assert all(j.completed for j in sup.jobs) and sup._sweeping and sup._escapees_termed
    assert stopped == []  # children left: wait for them a little
    timers = [t for t in sup.loop._timers if not t.cancelled and t.callback == sup._give_up_waiting]
    assert len(timers) == 1
    assert 1.9 < timers[0].deadline - sup.loop.now() <= 2.0
    monkeypatch.setattr(sup_mod.Supervisor, "_has_children", staticmethod(lambda: False))
    sup2 = supervisor(tmp_path, {"jobs": [{"name": "a", "exec": "true"}]})
    monkeypatch.setattr(sup2, "_signal_everyone", swept.append)
    monkeypatch.setattr(sup2.loop, "stop", lambda: stopped.append(True))
    sup2._kill_everything()
    assert stopped == [True]
    assert not [t for t in sup2.loop._timers if not t.cancelled and t.callback == sup2._give_up_waiting]


def test_descendants_scan_reads_a_name_with_a_parenthesis(tmp_path: Path) -> None:
    import shutil

    odd = tmp_path / "sl) p"
    shutil.copy("/bin/sleep", odd)
    child = subprocess.Popen([str(odd), "30"])
    try:
        assert child.pid in _descendants_of(os.getpid())
    finally:
        child.kill()
        child.wait()


def test_a_committed_reload_takes_the_new_config_and_tells_what_needs_telling(
        tmp_path: Path, logged: list[bytes]) -> None:
    import signal
    from types import SimpleNamespace

    from pypilot import logs as logs_mod
    from pypilot.supervisor import Reloading

    jobs = [{"name": "gone", "exec": "true", "reloadSignal": "SIGHUP"},
            {"name": "kept", "exec": "true", "reloadSignal": "SIGUSR1"},
            {"name": "plain", "exec": "true"}]
    sup = supervisor(tmp_path, {"jobs": jobs})
    stubs = [StubCommand(True) for _ in sup.jobs]
    for job, stub in zip(sup.jobs, stubs, strict=True):
        job.command = stub  # type: ignore[assignment]

    class Discovery:
        def __init__(self) -> None:
            self.configs: list[Any] = []

        def reconfigure(self, config: Any) -> None:
            self.configs.append(config)

    disc = Discovery()
    sup.discovery = disc  # type: ignore[assignment]
    log_file = tmp_path / "new.log"
    new_path = tmp_path / "new.json5"
    logging = {"level": "DEBUG", "format": "json", "output": str(log_file)}
    new_path.write_text(json.dumps({"consul": "localhost:8500", "jobs": jobs,
                                    "control": {"socket": "/x.sock"}, "logging": logging}))
    new = load(str(new_path), environ={})
    answers: list[tuple[bool, str]] = []
    progress = SimpleNamespace(plan=SimpleNamespace(keep=["kept", "plain"]))
    sup._reload = r = Reloading(progress, new, lambda ok, msg: answers.append((ok, msg)))  # type: ignore[arg-type]
    try:
        sup._reload_commit(r)
        now = (logs_mod._s.level, logs_mod._s.format, logs_mod._s.output)
        assert now == (logs_mod.DEBUG, "json", str(log_file))
    finally:
        logs_mod.configure()
    assert sup.config is new and disc.configs == [new]
    assert [s.signals for s in stubs] == [[], [signal.SIGUSR1], []]
    out = b"".join(logged).decode()
    assert f"Z kept sent reload signal {int(signal.SIGUSR1)} to kept\n" in out  # the job's line
    assert '"msg":"control: reloaded app via control plane"' in out  # CP's line, whole (in the new format)
    assert answers == [(True, "reloaded")] and sup._reload is None
    restarts = [t for t in sup.loop._timers if t.callback == sup.restart_control and not t.cancelled]
    assert len(restarts) == 1 and 0.9 < restarts[0].deadline - sup.loop.now() <= 1.0


def test_a_reload_with_the_same_control_keeps_the_socket_and_a_bad_log_output_is_an_error(
        tmp_path: Path, logged: list[bytes]) -> None:
    from types import SimpleNamespace

    from pypilot.supervisor import Reloading

    sup = supervisor(tmp_path, {"jobs": [{"name": "a", "exec": "true"}]})
    new_path = tmp_path / "new.json5"
    new_path.write_text(json.dumps({"consul": "localhost:8500", "jobs": [{"name": "a", "exec": "true"}],
                                    "control": {"socket": sup.config.control.socket},
                                    "logging": {"output": str(tmp_path / "no" / "such" / "x.log")}}))
    new = load(str(new_path), environ={})
    answers: list[tuple[bool, str]] = []
    progress = SimpleNamespace(plan=SimpleNamespace(keep=["a"]))
    sup._reload = r = Reloading(progress, new, lambda ok, msg: answers.append((ok, msg)))  # type: ignore[arg-type]
    sup._reload_commit(r)
    assert not [t for t in sup.loop._timers if t.callback == sup.restart_control]
    assert f"Error initializing log file '{tmp_path}/no/such/x.log'" in b"".join(logged).decode()
    assert answers == [(True, "reloaded")]


def test_a_reload_moves_on_only_once_the_leaving_jobs_processes_are_gone(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pypilot.supervisor import Reloading

    sup = supervisor(tmp_path, {"jobs": [{"name": "old", "exec": "true"}, {"name": "idle"}]})
    old, idle = sup.jobs
    stub = StubCommand(True)
    old.command = stub  # type: ignore[assignment]
    gone: list[bool] = []
    progress = SimpleNamespace(plan=SimpleNamespace(keep=[]), up=set(),
                               gone=lambda: gone.append(True))
    sup._reload = r = Reloading(progress, sup.config, lambda ok, msg: None)  # type: ignore[arg-type]
    r.leaving = [idle, old]  # one without an exec, one whose process still runs
    sup._reload_gone()
    assert gone == [] and r.leaving == [idle, old]
    stub.running = False
    sup._reload_gone()
    assert gone == [True] and r.leaving == []
    assert old.completed and idle.completed  # what still waited on a trigger is done with
    assert sup._reload_spawned(r) is None  # nothing watched came up: no step


def test_reload_gone_without_a_reload_does_nothing(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, {"jobs": [{"name": "a", "exec": "true"}]})
    sup._reload_gone()
    assert not sup.jobs[0].completed


def test_reload_events_reach_the_progress_each_by_its_own_rule(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pypilot.supervisor import Reloading

    sup = supervisor(tmp_path, {"jobs": [{"name": "new", "exec": "true"}, {"name": "other", "exec": "true"}]})
    new, other = sup.jobs
    calls: list[tuple[str, object]] = []
    progress = SimpleNamespace(
        plan=SimpleNamespace(keep=[]), up=set(),
        gone=lambda: calls.append(("gone", None)),
        came_up=lambda name: calls.append(("came_up", name)),
        could_not_start=lambda name: calls.append(("could_not_start", name)),
    )
    sup._reload = r = Reloading(progress, sup.config, lambda ok, msg: None)  # type: ignore[arg-type]
    stub = StubCommand(True)
    leaving = SimpleNamespace(name="old", command=stub, force_complete=lambda: None)
    r.leaving = [leaving]  # type: ignore[list-item]
    sup._on_event(Event("exitFailed", "unrelated"))
    sup._on_event(Event("stopping", "old"))
    assert calls == []
    stub.running = False
    sup._on_event(Event("exitSuccess", "old"))  # a leaving job's exit: is everything gone?
    assert calls == [("gone", None)] and r.leaving == []
    sup._on_event(Event("healthy", "new"))
    assert calls[-1] == ("came_up", "new")
    new.last_exit = 1
    sup._on_event(Event("exitFailed", "new"))  # an ordinary failure: the check decides, not this
    assert len(calls) == 2
    new.last_exit = 127
    sup._on_event(Event("exitFailed", "new"))
    assert calls[-1] == ("could_not_start", "new")
    other.last_exit = 127
    sup._on_event(Event("exitSuccess", "other"))
    sup._on_event(Event("exitFailed", "nobody"))
    assert len(calls) == 3


def test_a_rollback_stops_the_new_jobs_and_a_restore_brings_the_old_ones_back(
        tmp_path: Path, logged: list[bytes]) -> None:
    from types import SimpleNamespace

    from pypilot.reload import RESTORE, ROLLBACK, Step
    from pypilot.supervisor import Reloading

    sup = supervisor(tmp_path, {"jobs": [{"name": "kept"}, {"name": "fresh"}]})
    kept, fresh = sup.jobs
    old_cfgs = [j.cfg for j in sup.jobs]
    seen: list[Event] = []
    sup.bus.listen(seen.append)
    answers: list[tuple[bool, str]] = []
    progress = SimpleNamespace(plan=SimpleNamespace(keep=["kept"]), up=set(), gone=lambda: None)
    sup._reload = r = Reloading(progress, sup.config, lambda ok, msg: answers.append((ok, msg)))  # type: ignore[arg-type]
    r.restore = [old_cfgs[1]]
    sup._reload_step(None)  # no step: nothing happens
    assert seen == [] and sup._reload is r
    sup._reload_step(Step(ROLLBACK, "fresh did not come up"))
    assert said(logged, "reload failed, rolling back to the previous config: fresh did not come up")
    assert Event("error", "reload rolled back: fresh did not come up") in seen
    assert fresh.completed and not kept.completed and r.leaving == []  # gone at once: no process
    sup._reload_step(Step(RESTORE, "fresh did not come up"))
    assert [j.name for j in sup.jobs] == ["kept", "fresh"] and sup.jobs[0] is kept
    assert sup.jobs[1] is not fresh and not sup.jobs[1].completed
    assert sup.jobs[1].started_at is not None  # it got startup: "started", exec-less as it is
    assert sup.jobs[1] in sup.bus._subscribers
    assert answers == [(False, "fresh did not come up")] and sup._reload is None
    sup._reload = r2 = Reloading(progress, sup.config, lambda ok, msg: answers.append((ok, msg)))  # type: ignore[arg-type]
    r2.restore = []
    sup._reload_step(Step(RESTORE, None))  # type: ignore[arg-type]
    assert answers[-1] == (False, "rolled back")


def test_a_second_reload_is_refused_and_shutdown_ends_the_one_under_way(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pypilot.supervisor import Reloading

    sup = supervisor(tmp_path, {"jobs": [{"name": "a"}]})
    answers: list[tuple[bool, str]] = []
    progress = SimpleNamespace(plan=SimpleNamespace(keep=["a"]), up=set())
    sup._reload = Reloading(progress, sup.config, lambda ok, msg: answers.append((ok, msg)))  # type: ignore[arg-type]
    sup.reload(lambda ok, msg: answers.append((ok, msg)))
    assert answers == [(False, "a reload is already in progress")]
    sup.shutdown()
    assert answers[-1] == (False, "pypilot is shutting down") and sup._reload is None


def test_a_jobs_command_carries_what_its_config_says(tmp_path: Path) -> None:
    from pypilot import joblogs

    sup = supervisor(tmp_path, {"jobs": [
        {"name": "web-app.sh", "exec": ["sleep", "1"], "workdir": "/tmp"},
        {"name": "raw", "exec": "true", "logging": {"raw": True}},
    ]})
    web, raw = (j.cfg for j in sup.jobs)
    cmd = sup.command(web, 2.5)
    assert (cmd.name, cmd.argv, cmd.timeout, cmd.env_name) == ("web-app.sh", ("sleep", "1"), 2.5, "WEB_APP")
    assert cmd.loop is sup.loop and cmd.reaper is sup.reaper
    assert cmd.process is web.process and cmd.process is not None and cmd.process.workdir == "/tmp"
    assert cmd.raw is False and cmd.interactive is False
    assert cmd.sink is joblogs.get("web-app.sh")  # its output goes through the job's own log
    rcmd = sup.command(raw, None)
    assert rcmd.raw is True and rcmd.sink is None and rcmd.timeout is None and rcmd.process is None
    tini = sup.command(raw._replace(interactive=True), None)
    assert tini.interactive is True


def test_the_supervisor_makes_health_checks_and_discovery_only_for_jobs_that_need_them(
        tmp_path: Path) -> None:
    health = {"exec": "true", "interval": 5, "ttl": 10}
    service = {"name": "web", "exec": "true", "port": 8080, "interfaces": ["static:10.1.2.3"],
               "health": health}
    os.environ.pop("CONTAINERPILOT_WEB_IP", None)
    try:
        sup = supervisor(tmp_path, {"jobs": [service, {"name": "side", "exec": "true"}]})
        assert os.environ["CONTAINERPILOT_WEB_IP"] == "10.1.2.3"  # a service's IP, for every job (CP)
    finally:
        os.environ.pop("CONTAINERPILOT_WEB_IP", None)
    assert sup.health is not None and sup.discovery is not None
    assert sup.io is not None and sup.health.io is sup.io  # one I/O worker for both (pypilot.ioworker)
    assert sup.health.loop is sup.loop and sup.io.loop is sup.loop and sup.io.reaper is sup.reaper
    assert sup.io.worker.name == "health+discovery"
    assert sup.discovery.sup is sup and sup.discovery.config is sup.config  # type: ignore[attr-defined]
    assert sup.is_pid1 is False  # pytest is not PID 1: the subreaper's sweep, not kill(-1)
    assert sup.started > 0 and sup.env_generation == 0 and sup.control is None
    side = {"name": "side", "exec": "true", "interfaces": ["static:10.9.9.9"]}
    plain = supervisor(tmp_path, {"jobs": [side]})
    assert plain.health is None and plain.discovery is None and plain.io is None  # no service, ...
    assert "CONTAINERPILOT_SIDE_IP" not in os.environ
    watch = supervisor(tmp_path, {"jobs": [], "watches": [{"name": "db", "interval": 5}]})
    assert watch.discovery is not None and watch.health is None
    assert watch.io is not None and watch.io.worker.name == "discovery"
    checked = supervisor(tmp_path, {"jobs": [{"name": "chk", "exec": "true", "health": health}]})
    assert checked.health is not None and checked.discovery is None  # a check without a service
    assert checked.io is not None and checked.io.worker.name == "health"
    tele = supervisor(tmp_path, {"jobs": [], "telemetry": {"port": 9090, "interfaces": ["static:127.0.0.1"]}})
    assert tele.discovery is not None


def test_each_signal_on_the_signalfd_does_its_own_thing(
        tmp_path: Path, logged: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from pypilot import logs as logs_mod
    from pypilot import reaper as reaper_mod

    sup = supervisor(tmp_path, {"stopTimeout": 30, "jobs": [{"name": "a", "exec": "true"}]})
    seen: list[Event] = []
    sup.bus.listen(seen.append)
    pending: list[tuple[int, int]] = []
    monkeypatch.setattr(reaper_mod, "read_signals", lambda fd: pending)
    drains: list[int] = []
    monkeypatch.setattr(sup.reaper, "drain", lambda: drains.append(1) or 0)
    steps: list[int] = []
    monkeypatch.setattr(sup, "_progress", lambda: steps.append(1))
    reopened: list[int] = []
    monkeypatch.setattr(logs_mod, "reopen", lambda: reopened.append(1))
    logs_mod.configure("DEBUG")
    try:
        pending[:] = [(signal.SIGHUP, 11), (signal.SIGUSR2, 12), (signal.SIGWINCH, 13), (signal.SIGUSR1, 14)]
        sup._on_signals()
        assert seen == [Event("signal", "SIGHUP"), Event("signal", "SIGUSR2")]  # for the jobs' `when`
        assert reopened == [1] and drains == [] and not sup.shutting_down
        assert said(logged, f"ignoring signal {int(signal.SIGWINCH)} from pid 13")
        pending[:] = [(signal.SIGCHLD, 0), (signal.SIGCHLD, 0)]
        sup._on_signals()
        assert drains == [1] and steps == []  # one drain for any number of SIGCHLD; no sweep yet
        sup._sweeping = True
        sup._on_signals()
        assert drains == [1, 1] and steps == [1]  # while sweeping, every drain is followed by the next step
        shutdowns: list[int] = []
        monkeypatch.setattr(sup, "shutdown", lambda: shutdowns.append(1))
        pending[:] = [(signal.SIGTERM, 41), (signal.SIGINT, 42), (signal.SIGQUIT, 43)]
        sup._on_signals()
        assert shutdowns == [1, 1, 1] and len(seen) == 2 and reopened == [1]
        for name, pid in (("SIGTERM", 41), ("SIGINT", 42), ("SIGQUIT", 43)):
            assert said(logged, f"received {name} from pid {pid}")
    finally:
        logs_mod.configure()


def test_the_control_plane_restarts_unless_shutting_down_and_a_failed_start_is_logged(
        tmp_path: Path, logged: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    from pypilot.control import plane

    made: list[Any] = []

    class Plane:
        def __init__(self, sup: Supervisor, cfg: Any) -> None:
            self.sup, self.cfg = sup, cfg
            self.calls: list[str] = []
            made.append(self)

        def start(self) -> None:
            self.calls.append("start")
            if self.cfg.socket.endswith("bad.sock"):
                raise OSError("no such directory")

        def stop(self) -> None:
            self.calls.append("stop")

    monkeypatch.setattr(plane, "ControlPlane", Plane)
    sup = supervisor(tmp_path, {"control": {"socket": str(tmp_path / "ok.sock")}, "jobs": []})
    sup.restart_control()  # none yet (its first start failed, say): just a start
    first = made[0]
    assert sup.control is first and first.sup is sup and first.cfg is sup.config.control
    assert first.calls == ["start"]
    sup.restart_control()
    assert first.calls == ["start", "stop"] and sup.control is made[1] and made[1].calls == ["start"]
    sup._shutting_down = True
    sup.restart_control()
    assert len(made) == 2 and made[1].calls == ["start"]  # shutting down: no new socket
    bad = supervisor(tmp_path, {"control": {"socket": str(tmp_path / "bad.sock")}, "jobs": []})
    bad._start_control()  # PID 1 carries on without its control socket
    assert said(logged, "control plane failed to start: OSError('no such directory')", whole=False)


def pending(sup: Supervisor, callback: Any) -> list[Any]:
    """The supervisor's live timers that will call ``callback``."""
    return [t for t in sup.loop._timers if not t.cancelled and t.callback == callback]


def complete(sup: Supervisor) -> None:
    from pypilot.jobs import State

    for job in sup.jobs:
        job.state = State.COMPLETED


def test_shutdown_is_published_each_time_and_sweeps_at_once_only_when_nothing_is_left_to_stop(
        tmp_path: Path) -> None:
    from pypilot.events import SHUTDOWN

    sup = supervisor(tmp_path, {"stopTimeout": 5, "jobs": [{"name": "a", "exec": "true"}]})
    seen: list[Event] = []
    sup.bus.listen(seen.append)
    sup.shutdown()
    assert seen == [Event(SHUTDOWN, "global")] and pending(sup, sup._sweep) == []  # a job to stop first
    (deadline,) = pending(sup, sup._kill_everything)
    assert 4.9 < deadline.deadline - sup.loop.now() <= 5
    complete(sup)
    sup.shutdown()
    assert seen == [Event(SHUTDOWN, "global")] * 2 and len(pending(sup, sup._sweep)) == 1
    empty = supervisor(tmp_path, {"jobs": []})
    empty.shutdown()
    assert len(pending(empty, empty._sweep)) == 1  # no jobs at all (CP: pypilot exits at once)


def test_the_last_job_to_complete_starts_the_sweep_unless_a_reload_replaces_them(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pypilot.jobs import State
    from pypilot.supervisor import Reloading

    sup = supervisor(tmp_path, {"jobs": [{"name": "a", "exec": "true"}, {"name": "b", "exec": "true"}]})
    a, b = sup.jobs
    a.state = State.COMPLETED
    sup.job_completed(a)  # b still active
    assert pending(sup, sup._sweep) == []
    complete(sup)
    progress = SimpleNamespace(plan=SimpleNamespace(keep=[]), up=set())
    sup._reload = Reloading(progress, sup.config, lambda ok, msg: None)  # type: ignore[arg-type]
    sup.job_completed(b)
    assert pending(sup, sup._sweep) == []  # the reload's new jobs are coming
    sup._reload = None
    sup.job_completed(b)
    assert len(pending(sup, sup._sweep)) == 1


def test_a_reload_that_ends_with_every_job_completed_sweeps_unless_shutting_down(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pypilot.supervisor import Reloading

    progress = SimpleNamespace(plan=SimpleNamespace(keep=[]), up=set())
    answers: list[tuple[bool, str]] = []
    sup = supervisor(tmp_path, {"jobs": [{"name": "a", "exec": "true"}]})
    complete(sup)
    sup._reload = Reloading(progress, sup.config, lambda ok, msg: answers.append((ok, msg)))  # type: ignore[arg-type]
    sup._reload_finished(True, "reloaded")
    assert len(pending(sup, sup._sweep)) == 1 and answers == [(True, "reloaded")]
    running = supervisor(tmp_path, {"jobs": [{"name": "a", "exec": "true"}]})
    running._reload = Reloading(progress, running.config, lambda ok, msg: None)  # type: ignore[arg-type]
    running._reload_finished(True, "reloaded")
    assert pending(running, running._sweep) == []  # a job still runs
    down = supervisor(tmp_path, {"jobs": [{"name": "a", "exec": "true"}]})
    complete(down)
    down._shutting_down = True
    down._reload = Reloading(progress, down.config, lambda ok, msg: None)  # type: ignore[arg-type]
    down._reload_finished(False, "pypilot is shutting down")
    assert pending(down, down._sweep) == []  # the shutdown sweeps, not this
    none = supervisor(tmp_path, {"jobs": []})
    none._reload = Reloading(progress, none.config, lambda ok, msg: None)  # type: ignore[arg-type]
    none._reload_finished(True, "reloaded")
    assert pending(none, none._sweep) == []  # a reload to no jobs leaves pypilot up, as CP's did


def test_the_sweep_stops_the_workers_once_sets_a_deadline_if_none_and_moves_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stopped: list[str] = []

    class Worker:
        def __init__(self, name: str) -> None:
            self.name = name

        def stop(self, bound: float | None = None) -> None:
            stopped.append(self.name)

    sup = supervisor(tmp_path, {"stopTimeout": 7, "jobs": [{"name": "a", "exec": "true"}]})
    sup.discovery, sup.health, sup.control = Worker("discovery"), Worker("health"), Worker("control")  # type: ignore[assignment]
    steps: list[int] = []
    monkeypatch.setattr(sup, "_progress", lambda: steps.append(1))
    sup._sweep()
    assert stopped == ["discovery", "health", "control"] and steps == [1] and sup._sweeping
    (deadline,) = pending(sup, sup._kill_everything)  # every job completed by itself: no shutdown's
    assert 6.9 < deadline.deadline - sup.loop.now() <= 7
    sup._sweep()
    assert steps == [1] and len(stopped) == 3  # once
    bare = supervisor(tmp_path, {"stopTimeout": 7, "jobs": []})
    monkeypatch.setattr(bare, "_progress", lambda: steps.append(2))
    bare.shutdown()
    first = bare._deadline
    bare._sweep()  # no workers to stop; the shutdown's deadline stands
    assert steps == [1, 2] and pending(bare, bare._kill_everything) == [first]
    now = supervisor(tmp_path, {"stopTimeout": -1, "jobs": []})
    monkeypatch.setattr(now, "_progress", lambda: None)
    now._sweep()
    assert now.deadline_remaining() == 0.0  # no grace: the kill is due at once, never a negative timer


def test_the_sweep_terms_the_escapees_once_the_jobs_are_gone_and_ends_with_the_last_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from pypilot import supervisor as sup_mod

    sup = supervisor(tmp_path, {"jobs": [{"name": "a", "exec": "true"}, {"name": "idle"}]})
    stub = StubCommand(True)
    sup.jobs[0].command = stub  # type: ignore[assignment]
    drains: list[int] = []
    monkeypatch.setattr(sup.reaper, "drain", lambda: drains.append(1) or 0)  # type: ignore[func-returns-value]
    swept: list[int] = []
    monkeypatch.setattr(sup, "_signal_everyone", swept.append)
    children = [True]
    monkeypatch.setattr(sup_mod.Supervisor, "_has_children", staticmethod(lambda: children[0]))
    stops: list[int] = []
    monkeypatch.setattr(sup.loop, "stop", lambda: stops.append(1))
    sup._progress()
    assert drains == [1] and swept == [] and stops == [] and not sup._escapees_termed  # its own grace first
    stub.running = False
    sup._progress()
    assert swept == [signal.SIGTERM] and sup._escapees_termed and drains == [1, 1, 1] and stops == []
    sup._progress()
    assert swept == [signal.SIGTERM] and stops == []  # TERM once; the deadline's KILL comes next
    children[0] = False
    sup._progress()
    assert stops == [1]
    children[0] = True
    sup._killing = True
    sup._progress()  # after the final KILL, a subreaper's new orphan gets one too
    assert swept == [signal.SIGTERM, signal.SIGKILL] and stops == [1]


def test_everyone_is_signalled_by_kill_minus_one_as_pid1_else_each_descendant(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from pypilot import reaper as reaper_mod
    from tests.pid1 import wait_for

    sup = supervisor(tmp_path, {"jobs": []})
    sent: list[tuple[int, int]] = []
    child = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        wait_for(lambda: _descendants_of(child.pid), 5, "the grandchild")
        (grandchild,) = _descendants_of(child.pid)
        monkeypatch.setattr(reaper_mod, "kill", lambda pid, sig: sent.append((pid, sig)) or True)
        sup.is_pid1 = True
        sup._signal_everyone(signal.SIGTERM)
        assert sent == [(-1, signal.SIGTERM)]
        sent.clear()
        sup.is_pid1 = False
        sup._signal_everyone(signal.SIGKILL)
        assert (child.pid, signal.SIGKILL) in sent and (grandchild, signal.SIGKILL) in sent
        assert (-1, signal.SIGKILL) not in sent and {s for _, s in sent} == {signal.SIGKILL}
    finally:
        monkeypatch.undo()
        os.kill(grandchild, signal.SIGKILL)
        child.kill()
        child.wait()


def test_has_children_is_true_with_a_child_and_false_without(tmp_path: Path) -> None:
    import sys

    child = subprocess.Popen(["sleep", "30"])
    try:
        assert Supervisor._has_children() is True
    finally:
        child.kill()
        child.wait()
    alone = subprocess.run(  # a process sure to have no child at all, not pytest
        [sys.executable, "-c",
         "from pypilot.supervisor import Supervisor; print(Supervisor._has_children())"],
        capture_output=True, text=True, timeout=30, check=True)
    assert alone.stdout.strip() == "False"


def test_a_watched_job_without_a_check_has_come_up_only_while_its_process_runs(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pypilot.supervisor import Reloading

    health = {"exec": "true", "interval": 5, "ttl": 10}
    sup = supervisor(tmp_path, {"jobs": [
        {"name": "web", "exec": "true"}, {"name": "api", "exec": "true"},
        {"name": "checked", "exec": "true", "port": 80, "interfaces": ["static:10.0.0.1"], "health": health},
        {"name": "says", "exec": "true", "ready": "notify"}, {"name": "idle"},
        {"name": "old", "exec": "true"},
    ]})
    os.environ.pop("CONTAINERPILOT_CHECKED_IP", None)
    web, api, checked, says, _idle, old = sup.jobs
    for job in (web, api, checked, says, old):
        job.command = StubCommand(True)  # type: ignore[assignment]
    web.command.running = False  # type: ignore[union-attr]
    came: list[str] = []

    def came_up(name: str) -> str | None:  # the progress's step once the last watched one is up
        came.append(name)
        return "commit" if name == "api" else None

    progress = SimpleNamespace(plan=SimpleNamespace(keep=[]), up={"web", "api", "checked", "says", "idle"},
                               came_up=came_up)
    r = Reloading(progress, sup.config, lambda ok, msg: None)  # type: ignore[arg-type]
    assert sup._reload_spawned(r) == "commit"
    assert came == ["api"]  # web is not running; checked and says wait for healthy; old is not watched
    web.command.running = True  # type: ignore[union-attr]
    came.clear()
    assert sup._reload_spawned(r) == "commit" and came == ["web", "api"]  # the first step found is kept


@pytest.mark.timeout(30)
def test_not_as_pid1_pypilot_is_the_subreaper_of_a_setsid_escapee_and_sweeps_it_at_the_end() -> None:
    """Beyond PID 1 (`tini -s`'s case): the escapee is reparented to pypilot, not to the host's init,
    and the end-of-run sweep of pypilot's descendants TERMs it (kill(-1) would reach the whole host)."""
    import psutil

    from tests.pid1 import Pilot, wait_for

    with Pilot({"jobs": [{"name": "app", "main": True, "exec": [
            "sh", "-c", "setsid sleep 30 & echo $! >&2; exec sleep 30"]}]}, pid1=False) as p:
        line = p.wait_log(r"^\S+ app \d+$")[0]
        escapee = psutil.Process(int(line.split()[-1]))
        app = wait_for(lambda: [c for c in p.children() if c.pid != escapee.pid], 5, "the app")[0]
        app.kill()  # the main job ends: shutdown; the escapee was pypilot's orphan since its parent went
        assert p.wait_exit() == 137  # the main job's exit code, as it is the container's
        assert "main job app ended with exit code 137; shutting down" in p.log()
        try:
            assert not escapee.is_running() or escapee.status() == psutil.STATUS_ZOMBIE
        finally:
            if escapee.is_running():  # left to the host's init: a pypilot that was no subreaper
                escapee.kill()


def test_a_reloads_jobs_take_the_new_configs_order_are_subscribed_armed_and_wired(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, {"jobs": [{"name": "b"}, {"name": "gone"}]})
    kept = sup.jobs[0]
    new_path = tmp_path / "new.json5"
    new_path.write_text(json.dumps({"consul": "localhost:8500", "jobs": [
        {"name": "a"}, {"name": "b"},
        {"name": "c", "when": {"source": "b", "once": "stopping", "timeout": "5s"}},
        {"name": "z"},
    ]}))
    cfgs = {c.name: c for c in load(str(new_path), environ={}).jobs}
    before = len([t for t in sup.loop._timers if not t.cancelled])
    fresh = sup._add_jobs([cfgs["z"], cfgs["c"], cfgs["a"]], ["a", "b", "c"], ["b"])
    assert [j.name for j in fresh] == ["z", "c", "a"]
    assert [j.name for j in sup.jobs] == ["a", "b", "c", "z"]  # the new order; a name not in it last
    assert sup.jobs[1] is kept and all(j in sup.bus._subscribers for j in fresh)
    assert kept.stopping_wait == Event(STOPPED, "c")  # the new preStop job is waited for
    assert len([t for t in sup.loop._timers if not t.cancelled]) == before + 1  # c's `when` timeout


def test_an_upgrade_goes_to_the_one_upgrader_made_on_first_use(tmp_path: Path) -> None:
    from pypilot.upgrade import Upgrader

    sup = supervisor(tmp_path, {"jobs": []})
    assert sup._upgrader is None  # not before the first spawn: start-up time
    up = sup.upgrader
    assert isinstance(up, Upgrader) and sup.upgrader is up
    asked: list[tuple[str, Any]] = []
    up.start = lambda path, reply: asked.append((path, reply))  # type: ignore[method-assign]

    def reply(code: int, body: Any) -> None:
        pass

    sup.upgrade("/new/pypilot", reply)
    assert asked == [("/new/pypilot", reply)]


def test_processes_left_after_the_final_kill_are_given_up_on_with_a_warning(
        tmp_path: Path, logged: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    sup = supervisor(tmp_path, {"jobs": []})
    stopped: list[int] = []
    monkeypatch.setattr(sup.loop, "stop", lambda: stopped.append(1))
    sup._give_up_waiting()
    assert stopped == [1] and said(logged, "processes still left after SIGKILL; exiting anyway")


def test_run_wires_signals_logs_and_jobs_survives_its_loop_failing_and_returns_the_exit_code(
        tmp_path: Path, logged: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    from pypilot import logs as logs_mod
    from pypilot import reaper as reaper_mod
    from pypilot.jobs import State

    def no_subreaper() -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(reaper_mod, "set_subreaper", no_subreaper)
    rd, wr = os.pipe()
    try:
        path = tmp_path / "config.json5"
        path.write_text(json.dumps({"consul": "localhost:8500", "jobs": [
            {"name": "app", "exec": "true", "main": True}, {"name": "done", "exec": "true"}]}))
        sup = Supervisor(load(str(path), environ={}), rd)
        app, done = sup.jobs
        done.state = State.COMPLETED  # taken over completed (an upgrade): no subscription
        started: list[int] = []
        monkeypatch.setattr(sup, "_start", lambda: started.append(1))
        monkeypatch.setattr(sup.reaper, "drain", lambda: 0)
        stops: list[int] = []
        sup.control = type("Control", (), {"stop": lambda self: stops.append(1)})()  # type: ignore[assignment]
        inside: list[tuple[Any, ...]] = []

        def loop_run() -> None:
            inside.append((sup.loop._readers.get(rd), logs_mod._s.loop, list(sup.bus._listeners),
                           list(sup.bus._subscribers)))
            if len(inside) == 1:
                raise RuntimeError("boom")  # the loop's own machinery: PID 1 logs it and goes on
            app.last_exit = 3

        monkeypatch.setattr(sup.loop, "run", loop_run)
        assert sup.run() == 3  # the main job's exit code
        assert started == [1] and stops == [1] and len(inside) == 2
        readers, log_loop, listeners, subscribers = inside[0]
        assert readers == sup._on_signals and log_loop is sup.loop
        assert listeners == [sup._on_event] and subscribers == [app]
        assert said(logged, "not PID 1 and cannot be a subreaper, orphans will not be reaped: "
                    "[Errno 1] Operation not permitted")
        assert said(logged, "event loop failed; resuming: RuntimeError('boom')", whole=False)
        again = Supervisor(load(str(path), environ={}), rd)
        monkeypatch.setattr(again, "_start", lambda: started.append(2))
        monkeypatch.setattr(again.loop, "run", lambda: None)
        monkeypatch.setattr(again.reaper, "drain", lambda: 0)
        assert again.run(resumed=True) == 0 and started == [1]  # taken over: nothing started again
    finally:
        logs_mod.attach(None)
        os.close(rd)
        os.close(wr)


def test_a_diff_reload_keeps_the_unchanged_jobs_stops_the_removed_starts_the_new_and_says_so(
        tmp_path: Path, logged: list[bytes]) -> None:
    """In-process, with jobs that have no exec: every step of the reload runs at once, no waiting."""
    path = tmp_path / "config.json5"

    def write(jobs: list[str], mode: str) -> None:
        path.write_text(json.dumps({"consul": "localhost:8500", "control": {"reload": mode},
                                    "jobs": [{"name": n} for n in jobs]}))

    write(["a", "b", "x"], "diff")
    sup = Supervisor(load(str(path), environ={}), -1)
    for job in sup.jobs:
        sup.bus.subscribe(job)
    a, b, x = sup.jobs
    write(["a", "c", "b"], "diff")
    answers: list[tuple[bool, str]] = []
    sup.reload(lambda ok, msg: answers.append((ok, msg)))
    assert answers == [(True, "reloaded")] and sup._reload is None
    assert [j.name for j in sup.jobs] == ["a", "c", "b"] and sup.jobs[0] is a and sup.jobs[2] is b
    assert x.completed and x not in sup.jobs and not a.completed
    assert sup.jobs[1] in sup.bus._subscribers and sup.jobs[1].started_at is not None
    assert [c.name for c in sup.config.jobs] == ["a", "c", "b"]
    assert said(logged, "reloading: keeping 2 job(s), stopping 1, starting 1")
    write(["a", "c", "b"], "restart")  # CP's reload: every job again
    logged.clear()
    sup.reload(lambda ok, msg: answers.append((ok, msg)))
    assert answers[-1] == (True, "reloaded") and not {id(j) for j in sup.jobs} & {id(a), id(b)}
    assert said(logged, "reloading: keeping 0 job(s), stopping 3, starting 3")
