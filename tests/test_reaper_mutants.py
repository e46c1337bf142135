"""reaper.py's Python side on its own: dispatch of drained statuses by PID, the kept statuses of PIDs
nobody registered yet (their bounds, and the generation rule against PID reuse), and the wording of
exits and spawn errors. The C calls are replaced by a fake ``lib`` that hands out scripted exits; the
real ones are tests/test_reaper.py's (a probe process of its own)."""

from __future__ import annotations

import errno
import os
import resource
import signal
from typing import Any

import pytest

from pypilot import logs, reaper


class FakeLib:
    """The C reaper's calls as the Python side uses them: pp_reap hands out ``exits`` a batch at a time."""

    def __init__(self) -> None:
        self.exits: list[tuple[int, int]] = []
        self.held: list[tuple[int, int]] = []
        self.released: list[int] = []
        self.reap_calls = 0
        self.kill_ret = 0
        self.signals: list[list[int]] = []

    def pp_reap(self, pids: Any, statuses: Any, n: int) -> int:
        if self.fail:
            return self.fail
        self.reap_calls += 1
        batch, self.exits = self.exits[:n], self.exits[n:]
        for i, (pid, status) in enumerate(batch):
            pids[i], statuses[i] = pid, status
        return len(batch)

    def pp_hold(self, pid: int, sig: int) -> int:
        if self.fail:
            return self.fail
        self.held.append((pid, sig))
        return 0

    def pp_release(self, pid: int) -> None:
        self.released.append(pid)

    def pp_kill_group(self, pgid: int, sig: int, pidfd: int) -> int:
        return self.kill_ret

    def pp_kill(self, pid: int, sig: int) -> int:
        return self.kill_ret

    def pp_pidfd_open(self, pid: int) -> int:
        return self.pidfd

    pidfd = -errno.ENOSYS
    fail = 0  # a negative errno: what the setup, read, hold and reap calls answer instead

    def pp_signals_setup(self) -> int:
        return self.fail or 9

    def pp_signals_read(self, fd: int, sigs: Any, senders: Any, n: int) -> int:
        assert n == len(sigs) == len(senders)  # never more than the buffers hold
        if self.fail:
            return self.fail
        batch = self.signals.pop(0) if self.signals else []
        for i, s in enumerate(batch):
            sigs[i], senders[i] = s, 1000 + s
        return len(batch)


@pytest.fixture
def lib(monkeypatch: pytest.MonkeyPatch) -> FakeLib:
    fake = FakeLib()
    monkeypatch.setattr(reaper, "lib", fake)
    return fake


def status(code: int) -> int:
    return code << 8


def test_each_status_goes_to_the_handler_of_its_pid_once(lib: FakeLib) -> None:
    r = reaper.Reaper()
    got: list[tuple[str, int, int]] = []
    r.register(10, lambda p, s: got.append(("a", p, s)))
    r.register(11, lambda p, s: got.append(("b", p, s)))
    lib.exits = [(11, status(3)), (10, status(0))]
    assert r.drain() == 2
    assert got == [("b", 11, status(3)), ("a", 10, status(0))]
    lib.exits = [(10, status(1))]  # a later process with the same PID, registered by nobody
    r.drain()
    assert len(got) == 2 and r.orphans_reaped == 1


def test_a_storm_larger_than_a_batch_is_drained_in_one_call(lib: FakeLib) -> None:
    r = reaper.Reaper()
    got: list[int] = []
    n = reaper.BATCH * 2 + 5
    for pid in range(100, 100 + n):
        r.register(pid, lambda p, s: got.append(p))
    lib.exits = [(pid, 0) for pid in range(100, 100 + n)]
    assert r.drain() == n
    assert len(got) == n and lib.reap_calls == 3
    assert r.drain() == 0


def test_exactly_one_full_batch_needs_a_second_look(lib: FakeLib) -> None:
    r = reaper.Reaper()
    lib.exits = [(pid, 0) for pid in range(1, reaper.BATCH + 1)]
    assert r.drain() == reaper.BATCH
    assert lib.reap_calls == 2


def test_a_handler_that_raises_loses_nothing_else_of_the_batch(lib: FakeLib, logged: list[bytes]) -> None:
    r = reaper.Reaper()
    got: list[int] = []

    def bad(pid: int, st: int) -> None:
        raise RuntimeError("handler broke")

    r.register(1, bad)
    r.register(2, lambda p, s: got.append(p))
    lib.exits = [(1, 0), (2, 0)]
    assert r.drain() == 2
    assert got == [2]
    text = b"".join(logged).decode()
    assert "exit handler for pid 1 failed" in text and "handler broke" in text


def test_handlers_are_all_looked_up_before_any_runs(lib: FakeLib) -> None:
    """A handler that spawns may get a PID reaped later in the same batch: that one is not its."""
    r = reaper.Reaper()
    got: list[tuple[str, int]] = []

    def first(pid: int, st: int) -> None:
        got.append(("first", pid))
        r.register(2, lambda p, s: got.append(("new", p)), since=r.generation)

    r.register(1, first)
    lib.exits = [(1, 0), (2, status(9))]  # 2 is an earlier process's exit in the same batch
    r.drain()
    assert got == [("first", 1)]


def test_a_status_reaped_before_its_registration_is_delivered_at_registration(lib: FakeLib) -> None:
    r = reaper.Reaper()
    since = r.generation
    lib.exits = [(7, status(4))]
    r.drain()
    got: list[tuple[int, int]] = []
    r.register(7, lambda p, s: got.append((p, s)), group_signal=signal.SIGTERM, since=since)
    assert got == [(7, status(4))]
    assert lib.held == []  # it is gone: nothing to hold
    assert r.orphans_reaped == 1


def test_a_kept_status_older_than_the_spawn_belongs_to_another_process(lib: FakeLib) -> None:
    r = reaper.Reaper()
    lib.exits = [(7, status(4))]
    r.drain()  # an orphan with PID 7 ...
    since = r.generation  # ... then our spawn gets PID 7 again
    got: list[int] = []
    r.register(7, lambda p, s: got.append(s), group_signal=signal.SIGTERM, since=since)
    assert got == [] and lib.held == [(7, signal.SIGTERM)]
    lib.exits = [(7, status(5))]
    r.drain()
    assert got == [status(5)]


def test_registration_without_since_takes_any_kept_status(lib: FakeLib) -> None:
    r = reaper.Reaper()
    lib.exits = [(7, status(4))]
    r.drain()
    got: list[int] = []
    r.register(7, lambda p, s: got.append(s))
    assert got == [status(4)]


def test_group_signal_holds_the_leader_and_unregister_releases_it(lib: FakeLib) -> None:
    r = reaper.Reaper()
    got: list[int] = []
    r.register(5, lambda p, s: got.append(p), group_signal=signal.SIGTERM)
    r.register(6, lambda p, s: got.append(p))
    assert lib.held == [(5, signal.SIGTERM)]
    r.unregister(5)
    r.unregister(5)
    assert lib.released == [5, 5]
    lib.exits = [(5, 0), (6, 0)]
    r.drain()
    assert got == [6]


def test_kept_statuses_are_forgotten_after_bounded_drains(lib: FakeLib) -> None:
    r = reaper.Reaper()
    lib.exits = [(7, 0)]
    r.drain()
    for _ in range(reaper.STASH_DRAINS):
        r.drain()
    assert 7 in r._stash  # kept for STASH_DRAINS drains after the one that reaped it
    r.drain()
    assert 7 not in r._stash
    got: list[int] = []
    r.register(7, lambda p, s: got.append(s))
    assert got == []


def test_forgetting_stops_at_the_first_recent_status(lib: FakeLib) -> None:
    r = reaper.Reaper()
    lib.exits = [(1, 0)]
    r.drain()
    for _ in range(10):
        r.drain()
    lib.exits = [(2, 0)]
    r.drain()
    for _ in range(reaper.STASH_DRAINS - 5):
        r.drain()
    assert list(r._stash) == [2]


def test_kept_statuses_are_capped_oldest_first(lib: FakeLib, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reaper, "STASH_MAX", 3)
    r = reaper.Reaper()
    lib.exits = [(pid, 0) for pid in (1, 2, 3, 4, 5)]
    r.drain()
    assert list(r._stash) == [3, 4, 5]
    lib.exits = [(3, status(1))]  # a newer status for a kept PID moves it to the end
    r.drain()
    assert list(r._stash) == [4, 5, 3] and r._stash[3][0] == status(1)
    assert r.orphans_reaped == 6


def test_orphan_is_logged_at_debug_with_its_exit(lib: FakeLib, logged: list[bytes]) -> None:
    logs.configure(level="DEBUG")
    try:
        r = reaper.Reaper()
        lib.exits = [(42, status(3))]
        r.drain()
    finally:
        logs.configure(level="INFO")
    assert "reaped orphan 42: exit status 3" in b"".join(logged).decode()


def test_exit_code_is_the_shells_and_describe_is_containerpilots() -> None:
    assert reaper.exit_code(status(0)) == 0
    assert reaper.exit_code(status(3)) == 3
    assert reaper.exit_code(signal.SIGKILL) == 137
    assert reaper.exit_code(signal.SIGTERM) == 143
    assert reaper.describe(status(2)) == "exit status 2"
    assert reaper.describe(signal.SIGKILL) == "signal: killed"
    assert reaper.describe(signal.SIGTERM) == "signal: terminated"
    assert reaper.describe(100) == "signal: 100"  # no such signal: its number
    assert reaper.describe(32) == "signal: 32"  # one without a name (glibc's own)


def test_kill_is_false_for_a_gone_group_and_raises_for_other_errors(lib: FakeLib) -> None:
    assert reaper.kill_group(5, signal.SIGTERM) is True and reaper.kill(5, signal.SIGTERM) is True
    lib.kill_ret = -errno.ESRCH
    assert reaper.kill_group(5, signal.SIGTERM) is False and reaper.kill(5, signal.SIGTERM) is False
    lib.kill_ret = -errno.EPERM
    with pytest.raises(PermissionError, match="kill group 5: Operation not permitted"):
        reaper.kill_group(5, signal.SIGTERM)
    with pytest.raises(PermissionError, match="kill 5: Operation not permitted"):
        reaper.kill(5, signal.SIGTERM)


def test_pidfd_open_without_kernel_support_is_minus_one(lib: FakeLib) -> None:
    assert reaper.pidfd_open(5) == -1
    lib.pidfd = 0
    assert reaper.pidfd_open(5) == 0  # fd 0 is an fd
    lib.pidfd = 7
    assert reaper.pidfd_open(5) == 7


def test_failing_c_calls_name_themselves(lib: FakeLib) -> None:
    assert reaper.setup_signals() == 9
    lib.fail = -errno.EBADF
    with pytest.raises(OSError, match=r"^\[Errno 9\] signalfd: Bad file descriptor$"):
        reaper.setup_signals()
    with pytest.raises(OSError, match=r"^\[Errno 9\] read signalfd: Bad file descriptor$"):
        reaper.read_signals(3)
    r = reaper.Reaper()
    with pytest.raises(OSError, match=r"^\[Errno 9\] hold: Bad file descriptor$"):
        r.register(5, lambda p, s: None, group_signal=signal.SIGTERM)
    with pytest.raises(OSError, match=r"^\[Errno 9\] waitid: Bad file descriptor$"):
        r.drain()


def test_read_signals_reads_until_a_short_batch(lib: FakeLib) -> None:
    lib.signals = [[signal.SIGTERM] * 64, [signal.SIGHUP, signal.SIGUSR1]]
    got = reaper.read_signals(3)
    assert len(got) == 66 and got[0] == (signal.SIGTERM, 1000 + signal.SIGTERM)
    assert got[-1] == (signal.SIGUSR1, 1000 + signal.SIGUSR1)
    lib.signals = [[signal.SIGHUP]]
    assert reaper.read_signals(3) == [(signal.SIGHUP, 1000 + signal.SIGHUP)]


def test_check_passes_results_and_raises_with_the_call_named() -> None:
    assert reaper._check(0, "x") == 0 and reaper._check(7, "x") == 7
    with pytest.raises(OSError, match="waitid: No child processes") as e:
        reaper._check(-errno.ECHILD, "waitid")
    assert e.value.errno == errno.ECHILD


def test_spawn_of_an_empty_command_is_an_error() -> None:
    with pytest.raises(reaper.SpawnError) as e:
        reaper.spawn([])
    assert e.value.errno == errno.EINVAL and str(e.value) == "[Errno 22] empty command"


def test_plain_spawn_error_names_the_command() -> None:
    with pytest.raises(reaper.SpawnError) as e:
        reaper.spawn(["/no/such/binary"])
    assert e.value.errno == errno.ENOENT and e.value.stage == ""
    assert str(e.value) == "[Errno 2] No such file or directory: '/no/such/binary'"


def test_no_new_privileges_only_when_asked() -> None:
    line = "grep NoNewPrivs /proc/self/status"
    assert run_capture(["sh", "-c", line]).split() == ["NoNewPrivs:", "0"]
    assert run_capture(["sh", "-c", line], no_new_privs=True).split() == ["NoNewPrivs:", "1"]


def test_a_passed_fd_alone_reaches_the_child() -> None:
    r, w = os.pipe()
    os.write(w, b"fd alone")
    os.close(w)
    try:
        assert run_capture(["sh", "-c", "cat <&6"], pass_fd=(r, 6)) == "fd alone"
    finally:
        os.close(r)


def test_stage_text_names_the_step_for_the_error_message() -> None:
    assert reaper._stage_text(f"setrlimit {resource.RLIMIT_NOFILE}", None) == "setrlimit nofile"
    assert reaper._stage_text(f"setrlimit {resource.RLIMIT_CORE}", None) == "setrlimit core"
    assert reaper._stage_text("setrlimit 999", None) == "setrlimit 999"
    assert reaper._stage_text("setrlimit x", None) == "setrlimit x"
    assert reaper._stage_text("chdir", "/srv/app") == "chdir /srv/app"
    assert reaper._stage_text("no_new_privs", None) == "prctl(PR_SET_NO_NEW_PRIVS)"
    assert reaper._stage_text("dup2 7", None) == "dup2 onto fd 7"
    assert reaper._stage_text("setuid 1000", None) == "setuid 1000"


def test_a_failed_step_of_the_clone_path_is_a_spawn_error_with_its_stage(tmp_path: Any) -> None:
    missing = str(tmp_path / "gone")
    with pytest.raises(reaper.SpawnError) as e:
        reaper.spawn(["true"], cwd=missing, umask=0o22)
    assert e.value.stage == f"chdir {missing}"
    assert e.value.errno == errno.ENOENT
    assert f"chdir {missing}: No such file or directory" in str(e.value)
    assert str(e.value) == f"[Errno 2] chdir {missing}: No such file or directory: 'true'"
    with pytest.raises(reaper.SpawnError) as e2:
        reaper.spawn(["/no/such/binary"], umask=0o22)
    assert e2.value.stage == "" and e2.value.errno == errno.ENOENT
    assert str(e2.value) == "[Errno 2] No such file or directory: '/no/such/binary'"


def test_clone_path_options_reach_the_child(tmp_path: Any) -> None:
    """umask, cwd, rlimits and a passed fd set before the exec (the child is this test's own: its wait)."""
    rd, wr = os.pipe()
    extra_r, extra_w = os.pipe()
    os.write(extra_w, b"passed")
    os.close(extra_w)
    script = "umask; pwd; ulimit -Sn; ulimit -Hn; cat <&5"
    pid = reaper.spawn(["sh", "-c", script], cwd=str(tmp_path), stdout=wr, umask=0o27,
                       rlimits=[(resource.RLIMIT_NOFILE, 77, 88)], pass_fd=(extra_r, 5))
    os.close(wr)
    os.close(extra_r)
    out = b""
    while chunk := os.read(rd, 1000):
        out += chunk
    os.close(rd)
    _, st = os.waitpid(pid, 0)
    assert st == 0
    assert out.decode().split("\n") == ["0027", str(tmp_path), "77", "88", "passed"]
    assert os.getpgid(os.getpid()) != pid  # new group by default (the child's own)


def run_capture(argv: list[str], **kw: Any) -> str:
    rd, wr = os.pipe()
    pid = reaper.spawn(argv, stdout=wr, **kw)
    os.close(wr)
    out = b""
    while chunk := os.read(rd, 1000):
        out += chunk
    os.close(rd)
    _, st = os.waitpid(pid, 0)  # this test's own child, this test's own wait
    assert st == 0
    return out.decode()


def test_clone_path_leaves_unset_options_as_the_parent_has_them() -> None:
    """Only rlimits given: the child keeps our uid, gid, groups, umask and stdio."""
    mask = os.umask(0o22)
    os.umask(mask)
    out = run_capture(["sh", "-c", "id -u; id -g; id -G; umask"],
                      rlimits=[(resource.RLIMIT_CORE, 0, 0)])
    ours = " ".join(str(g) for g in sorted({os.getegid(), *os.getgroups()}))
    uid, gid, groups, umask = out.split("\n")[:4]
    assert (uid, gid) == (str(os.geteuid()), str(os.getegid()))
    assert " ".join(sorted(groups.split(), key=int)) == ours
    assert umask == f"{mask:04o}"


@pytest.mark.skipif(os.geteuid() != 0, reason="setting credentials needs root")
def test_clone_path_sets_gid_and_supplementary_groups() -> None:
    out = run_capture(["sh", "-c", "id -g; id -G"], gid=4242, groups=[4343, 4444])
    gid, groups = out.split("\n")[:2]
    assert gid == "4242" and sorted(groups.split()) == ["4242", "4343", "4444"]
    out = run_capture(["sh", "-c", "id -u; id -g"], uid=4545, gid=4646, groups=[])
    assert out.split("\n")[:2] == ["4545", "4646"]
    # each one alone is applied too (none of them leaves the spawn on the plain path)
    assert run_capture(["id", "-u"], uid=4747).strip() == "4747"
    assert run_capture(["id", "-g"], gid=4848).strip() == "4848"
    assert "4949" in run_capture(["id", "-G"], groups=[4949]).split()


def test_subreaper_failure_names_the_call(lib: FakeLib) -> None:
    lib.pp_set_subreaper = lambda: -errno.EPERM  # type: ignore[attr-defined]
    with pytest.raises(PermissionError, match=r"^\[Errno 1\] prctl\(PR_SET_CHILD_SUBREAPER\): Operation not"):
        reaper.set_subreaper()


def test_a_missing_workdir_on_the_plain_spawn_path_is_named_not_taken_for_the_command(tmp_path: Any) -> None:
    missing = str(tmp_path / "gone")
    with pytest.raises(reaper.SpawnError) as e:
        reaper.spawn(["true"], cwd=missing)  # no other option: posix_spawn's chdir, not the clone path
    assert e.value.stage == f"chdir {missing}" and e.value.errno == errno.ENOENT
    (tmp_path / "file").write_text("")
    with pytest.raises(reaper.SpawnError) as e2:
        reaper.spawn(["true"], cwd=str(tmp_path / "file"))
    assert e2.value.stage == f"chdir {tmp_path / 'file'}" and e2.value.errno == errno.ENOTDIR
    with pytest.raises(reaper.SpawnError) as e3:  # the directory is fine: the command is what is missing
        reaper.spawn(["/no/such/binary"], cwd=str(tmp_path))
    assert e3.value.stage == "" and e3.value.errno == errno.ENOENT
