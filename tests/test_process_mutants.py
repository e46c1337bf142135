"""One ``Command`` in-process, with the real loop and reaper (the test process reaps its own children
here): its output lines, its timeout, its PID variable, a start failure and the CP duration wording
(pypilot/process.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import pytest

from pypilot import logs, reaper
from pypilot.loop import Loop
from pypilot.process import Command, go_duration

pytestmark = pytest.mark.timeout(15)


class Run:
    """A loop, a reaper drained every few ms (no signalfd in a test process), and the exits seen."""

    def __init__(self) -> None:
        self.loop = Loop()
        self.reaper = reaper.Reaper()
        self.exits: list[tuple[int | None, str | None]] = []
        self._poll()

    def _poll(self) -> None:
        self.reaper.drain()
        self.loop.call_later(0.005, self._poll)

    def on_exit(self, status: int | None, err: str | None) -> None:
        self.exits.append((status, err))

    def until(self, cond: object, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout

        def check() -> None:
            if cond() or time.monotonic() > deadline:  # type: ignore[operator]
                self.loop.stop()
            else:
                self.loop.call_later(0.005, check)

        self.loop.call_soon(check)
        self.loop.run()
        assert cond(), "condition not reached"  # type: ignore[operator]

    def command(self, argv: list[str], **kw: object) -> Command:
        return Command(kw.pop("name", "job"), argv, self.loop, self.reaper, **kw)  # type: ignore[arg-type]


def text(lines: list[bytes]) -> str:
    return b"".join(lines).decode()


def test_output_lines_are_logged_with_the_job_name_whole_and_without_cr(logged: list[bytes]) -> None:
    run = Run()
    cmd = run.command(["sh", "-c", "echo err >&2; printf 'one\\r\\ntwo\\nlast-no-newline'"], name="app")
    cmd.start(run.on_exit)
    assert cmd.running and cmd.pid > 0
    run.until(lambda: run.exits)
    out = text(logged)
    assert " app one\n" in out and " app two\n" in out and " app last-no-newline\n" in out
    assert " app err\n" in out and "\r" not in out
    assert run.exits == [(0, None)] and not cmd.running and cmd.pid == 0


def test_a_sink_takes_the_lines_instead_of_the_log(logged: list[bytes]) -> None:
    run = Run()
    got: list[str] = []
    cmd = run.command(["sh", "-c", "echo a; echo b"], sink=got.append)
    cmd.start(run.on_exit)
    run.until(lambda: run.exits)
    assert got == ["a", "b"]
    assert "a\n" not in text(logged)


def test_a_stragglers_output_after_the_leader_exit_is_still_logged(logged: list[bytes]) -> None:
    run = Run()
    # the straggler ignores the SIGTERM its group gets when the leader exits, and writes on
    script = "sh -c \"trap '' TERM; sleep 0.3; echo late\" & sleep 0.1; echo early"
    cmd = run.command(["sh", "-c", script], name="app")
    cmd.start(run.on_exit)
    run.until(lambda: run.exits)
    run.until(lambda: " app late\n" in text(logged))
    assert " app early\n" in text(logged)


def test_exit_status_is_the_wait_status_and_stdin_is_dev_null() -> None:
    run = Run()
    cmd = run.command(["sh", "-c", "read x && exit 9; exit 3"])
    cmd.start(run.on_exit)
    run.until(lambda: run.exits)
    assert run.exits == [(3 << 8, None)]


def test_timeout_kills_the_group_and_says_so_as_containerpilot(logged: list[bytes]) -> None:
    run = Run()
    cmd = run.command(["sh", "-c", "trap '' TERM; sleep 30 & wait"], name="slow", timeout=0.1)
    started = time.monotonic()
    cmd.start(run.on_exit)
    run.until(lambda: run.exits)
    assert time.monotonic() - started < 3
    assert run.exits == [(signal.SIGKILL, None)]
    assert "slow timeout after 100ms: '[-c trap '' TERM; sleep 30 & wait]'" in text(logged)


def test_a_command_done_before_its_timeout_is_not_killed_later(logged: list[bytes]) -> None:
    run = Run()
    cmd = run.command(["true"], name="quick", timeout=0.2)
    cmd.start(run.on_exit)
    run.until(lambda: run.exits)
    t0 = time.monotonic()
    run.until(lambda: time.monotonic() - t0 > 0.4)
    assert "timeout" not in text(logged)
    assert run.exits == [(0, None)]


def test_pid_variable_is_set_while_it_runs_and_unset_after() -> None:
    run = Run()
    key = "CONTAINERPILOT_APP_PID"
    os.environ.pop(key, None)
    cmd = run.command(["sh", "-c", f'echo "${key}"; sleep 0.1'], env_name="APP", sink=lambda s: got.append(s))
    got: list[str] = []
    cmd.start(run.on_exit)
    assert os.environ[key] == str(cmd.pid)
    run.until(lambda: run.exits)
    assert key not in os.environ
    assert got == [""]  # its own spawn came before its variable was set


def test_signal_reaches_the_group_and_is_false_once_it_exited() -> None:
    run = Run()
    cmd = run.command(["sleep", "30"])
    cmd.start(run.on_exit)
    assert cmd.signal(signal.SIGTERM) is True
    run.until(lambda: run.exits)
    assert run.exits == [(signal.SIGTERM, None)]
    assert cmd.signal(signal.SIGTERM) is False
    assert cmd.pidfd == -1


def test_kill_sends_sigkill() -> None:
    run = Run()
    cmd = run.command(["sh", "-c", "trap '' TERM; sleep 30"])
    cmd.start(run.on_exit)
    cmd.kill()
    run.until(lambda: run.exits)
    assert run.exits == [(signal.SIGKILL, None)]


def test_a_command_that_cannot_start_reports_it_later_not_at_once() -> None:
    run = Run()
    cmd = run.command(["/no/such/binary", "x"])
    cmd.start(run.on_exit)
    assert run.exits == [] and not cmd.running  # never inside start: a restart loop cannot spin
    run.until(lambda: run.exits)
    assert run.exits == [(None, "fork/exec /no/such/binary: no such file or directory")]


def test_a_failed_step_before_the_exec_is_named(tmp_path: object) -> None:
    from pypilot.config.model import ProcessConfig

    run = Run()
    missing = f"{tmp_path}/gone"
    cmd = run.command(["true"], process=ProcessConfig(workdir=missing, umask=0o22))
    cmd.start(run.on_exit)
    run.until(lambda: run.exits)
    assert run.exits == [(None, f"true: chdir {missing}: no such file or directory")]


def test_a_missing_workdir_as_the_only_process_option_is_named(tmp_path: object) -> None:
    from pypilot.config.model import ProcessConfig

    run = Run()
    missing = f"{tmp_path}/gone"
    cmd = run.command(["true"], process=ProcessConfig(workdir=missing))
    cmd.start(run.on_exit)
    run.until(lambda: run.exits)
    assert run.exits == [(None, f"true: chdir {missing}: no such file or directory")]


def test_process_env_sets_and_removes_variables(tmp_path: object) -> None:
    from pypilot.config.model import ProcessConfig

    run = Run()
    os.environ["PYPILOT_TEST_GONE"] = "still here"
    try:
        got: list[str] = []
        cfg = ProcessConfig(env=(("PYPILOT_TEST_NEW", "v"), ("PYPILOT_TEST_GONE", None)))
        cmd = run.command(["sh", "-c", 'echo "$PYPILOT_TEST_NEW/${PYPILOT_TEST_GONE-unset}"; pwd'],
                          process=cfg, sink=got.append)
        cmd.start(run.on_exit)
        run.until(lambda: run.exits)
        assert got == ["v/unset", os.getcwd()]
    finally:
        os.environ.pop("PYPILOT_TEST_GONE", None)


def test_go_duration_is_gos_duration_string() -> None:
    assert go_duration(0.1) == "100ms"
    assert go_duration(0.0015) == "1.5ms"
    assert go_duration(0.001) == "1ms"
    assert go_duration(0.0005) == "500µs"
    assert go_duration(1) == "1s"
    assert go_duration(1.5) == "1.5s"
    assert go_duration(59) == "59s"
    assert go_duration(60) == "1m0s"
    assert go_duration(90) == "1m30s"
    assert go_duration(3599) == "59m59s"
    assert go_duration(3600) == "1h0m0s"
    assert go_duration(3725) == "1h2m5s"


def test_a_signal_that_is_refused_is_a_warning_and_false(logged: list[bytes],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run()
    cmd = run.command(["sleep", "30"], name="app")
    cmd.start(run.on_exit)
    try:
        def refuse(pgid: int, sig: int, pidfd: int = -1) -> bool:
            assert pidfd == cmd.pidfd  # the pidfd goes along: no signal to a reused PID
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(reaper, "kill_group", refuse)
        assert cmd.signal(signal.SIGTERM) is False
        assert f"signalling app ({cmd.pid}) failed: [Errno 1] Operation not permitted" in text(logged)
    finally:
        monkeypatch.undo()
        cmd.kill()
        run.until(lambda: run.exits)


def test_the_output_reader_is_gone_from_the_loop_once_the_output_ends() -> None:
    run = Run()
    cmd = run.command(["sh", "-c", "echo x"], sink=lambda s: None)
    cmd.start(run.on_exit)
    assert len(run.loop._readers) == 1
    run.until(lambda: run.exits and not run.loop._readers)


def test_lines_keep_their_trailing_spaces_and_bad_utf8_is_replaced() -> None:
    run = Run()
    got: list[str] = []
    cmd = run.command(["sh", "-c", "printf 'x  \\r\\nfoX\\r\\ncaf\\351\\n'"], sink=got.append)
    cmd.start(run.on_exit)
    run.until(lambda: run.exits and len(got) == 3)
    assert got == ["x  ", "foX", "caf\ufffd"]


def test_run_start_and_end_are_debug_lines_as_containerpilots(logged: list[bytes]) -> None:
    logs.configure(level="DEBUG")
    try:
        run = Run()
        cmd = run.command(["true"], name="app")
        cmd.start(run.on_exit)
        run.until(lambda: run.exits)
    finally:
        logs.configure(level="INFO")
    out = text(logged)
    assert "app.Run start\n" in out and "app.Run end\n" in out


def test_a_forked_worker_opens_its_own_dev_null() -> None:
    from pypilot import process

    process._stdin()  # PID 1 has one open
    pid = os.fork()
    if pid == 0:  # the fork forgets PID 1's fd number (a worker closes every fd PID 1 had)
        os._exit(0 if process._devnull == -1 else 1)
    _, st = os.waitpid(pid, 0)  # this test's own child
    assert st == 0


@contextlib.contextmanager
def stdin_holding(data: bytes) -> Iterator[None]:
    """This process's fd 0 is a pipe holding ``data`` for the block (what pypilot's stdin would have)."""
    r, w = os.pipe()
    saved = os.dup(0)
    os.dup2(r, 0)
    try:
        os.write(w, data)
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(r)
        os.close(w)


def test_a_commands_stdin_is_dev_null_not_pypilots() -> None:
    run = Run()
    with stdin_holding(b"hello\n"):
        got: list[str] = []
        cmd = run.command(["sh", "-c", "read x; echo \"got $x\"; readlink /proc/self/fd/0"], sink=got.append)
        cmd.start(run.on_exit)
        run.until(lambda: run.exits)
    assert got == ["got ", "/dev/null"]


def test_the_exit_is_reported_without_waiting_for_a_straggler_still_holding_the_output() -> None:
    run = Run()
    got: list[str] = []
    script = "sh -c \"trap '' TERM; sleep 0.5; echo late\" & sleep 0.1; exit 0"
    cmd = run.command(["sh", "-c", script], sink=got.append)
    cmd.start(run.on_exit)
    run.until(lambda: run.exits)
    assert got == []  # the output pipe is read without blocking: the straggler has said nothing yet
    run.until(lambda: got == ["late"])


def test_an_output_whose_read_fails_is_closed_and_says_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from pypilot.process import _Output

    loop = Loop()
    r, w = os.pipe()
    lines: list[bytes] = []
    out = _Output(loop, r, lines.append)

    def eio(fd: int, n: int) -> bytes:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "read", eio)
    out.on_readable()
    monkeypatch.undo()
    assert lines == [] and out.fd == -1 and loop._readers == {}
    os.close(w)


def test_an_interactive_command_gets_pypilots_stdin() -> None:
    """tini mode: the command reads what pypilot's stdin has (no terminal here: no foreground to set)."""
    run = Run()
    with stdin_holding(b"hello\n"):
        got: list[str] = []
        cmd = run.command(["sh", "-c", "read x; echo \"got $x\""], interactive=True, sink=got.append)
        cmd.start(run.on_exit)
        run.until(lambda: run.exits)
    assert got == ["got hello"] and run.exits == [(0, None)]


def test_a_ready_command_gets_its_readiness_environment_and_fd() -> None:
    class Ready:
        def __init__(self) -> None:
            self.r, self.w = os.pipe()
            os.write(self.w, b"channel")
            os.close(self.w)
            self.spawned_pids: list[int | None] = []
            self.exits = 0

        def spawn_args(self) -> tuple[dict[str, str], tuple[int, int] | None]:
            return {"NOTIFY_SOCKET": "/run/test.sock"}, (self.r, 7)

        def spawned(self, pid: int | None) -> None:
            self.spawned_pids.append(pid)

        def exited(self) -> None:
            self.exits += 1

    run = Run()
    ready = Ready()
    got: list[str] = []
    cmd = run.command(["sh", "-c", 'echo "$NOTIFY_SOCKET"; cat <&7; echo'], sink=got.append)
    cmd.readiness = ready  # type: ignore[assignment]
    cmd.start(run.on_exit)
    run.until(lambda: run.exits)
    os.close(ready.r)
    assert got == ["/run/test.sock", "channel"]
    assert ready.spawned_pids[0] and ready.exits == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="setting credentials needs root")
def test_a_jobs_process_settings_reach_its_command(tmp_path: object) -> None:
    """user, group, groups, workdir, umask, rlimits and noNewPrivileges, with stdio as for any job."""
    import resource

    from pypilot.config.model import ProcessConfig

    run = Run()
    got: list[str] = []
    cfg = ProcessConfig(uid=4545, gid=4646, groups=(4747,), workdir="/", umask=0o27,
                        rlimits=((resource.RLIMIT_NOFILE, 55, 66),), no_new_privileges=True)
    script = ("id -u; id -g; id -G; pwd; umask; ulimit -Sn; ulimit -Hn; grep NoNewPrivs /proc/self/status;"
              " readlink /proc/self/fd/0; echo err >&2")
    cmd = run.command(["sh", "-c", script], process=cfg, sink=got.append)
    cmd.start(run.on_exit)
    run.until(lambda: run.exits)
    assert got[:5] == ["4545", "4646", "4646 4747", "/", "0027"]
    assert got[5:7] == ["55", "66"] and got[7].split() == ["NoNewPrivs:", "1"]
    assert got[8:] == ["/dev/null", "err"]


def test_a_ready_commands_stdio_is_as_any_jobs() -> None:
    class Ready:
        def spawn_args(self) -> tuple[dict[str, str], tuple[int, int] | None]:
            return {"NOTIFY_SOCKET": "/run/x.sock"}, None

        def spawned(self, pid: int | None) -> None:
            pass

        def exited(self) -> None:
            pass

    run = Run()
    got: list[str] = []
    cmd = run.command(["sh", "-c", "readlink /proc/self/fd/0; echo err >&2"], sink=got.append)
    cmd.readiness = Ready()  # type: ignore[assignment]
    cmd.start(run.on_exit)
    run.until(lambda: run.exits)
    assert got == ["/dev/null", "err"]
