"""tini mode (issue #16): ``pypilot -- CMD ARGS...`` with no config file, pypilot as PID 1.

Exit codes are CMD's (128+signal when it was killed), orphans are reaped, stdio passes through untouched,
and a terminal on stdin becomes CMD's, in the foreground, as with tini: observed under util-linux
``script``, which gives the whole run a pseudo-terminal of its own.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.pid1 import Pilot, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (PID namespaces)")


class TiniPilot(Pilot):
    """pypilot -- CMD as PID 1 (the config text is unused)."""

    def __init__(self, cmd: list[str], **kw: Any) -> None:
        self.cmd = cmd
        super().__init__("", **kw)

    def command(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "pypilot", *args, "--", *self.cmd]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "PYPILOT_SOCKET": str(self.dir / "control.sock")}


@pytest.mark.parametrize(("script", "code"), [("exit 0", 0), ("exit 3", 3), ("kill -TERM $$", 128 + 15)])
def test_exit_code_is_the_commands(script: str, code: int) -> None:
    with TiniPilot(["sh", "-c", script]) as p:
        assert p.wait_exit() == code
        assert p.log() == ""  # as tini: the exit code says it, pypilot's own stderr stays quiet


def test_a_command_that_cannot_start_is_named_on_stderr_and_exits_127() -> None:
    with TiniPilot(["no-such-command-x"]) as p:
        assert p.wait_exit() == 127
        assert p.log().count("\n") == 1 and "unable to start no-such-command-x:" in p.log(), p.log()


def test_sigterm_to_pypilot_stops_the_command_and_exits_128_plus_15() -> None:
    with TiniPilot(["sleep", "1000"]) as p:
        wait_for(lambda: [c for c in p.children() if c.name() == "sleep"], 10, "the command")
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 128 + signal.SIGTERM


def test_output_passes_through_raw_and_orphans_are_reaped() -> None:
    cmd = ["sh", "-c", "echo out-line; echo err-line >&2; sh -c 'sleep 0.3 &'; sleep 1000"]
    with TiniPilot(cmd) as p:
        orphan = wait_for(lambda: [c for c in p.children() if c.name() == "sleep" and c.ppid() == p.host_pid
                                   and c.cmdline()[-1] == "0.3"], 10, "the orphan, reparented to pypilot")[0]
        wait_for(lambda: not orphan.is_running(), 10, "the orphan to be reaped (no zombie left)")
        assert "out-line" in p.log().splitlines() and "err-line" in p.log().splitlines()
        assert not p.zombies()
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 128 + signal.SIGTERM


def own_socket(tmp_path: Path) -> dict[str, str]:
    """The environment for a run of its own: its control socket in ``tmp_path``, not the default one."""
    return {**os.environ, "PYPILOT_SOCKET": str(tmp_path / "control.sock")}


def test_stdin_is_the_commands(tmp_path: Path) -> None:
    cmd = ["sh", "-c", "read line; echo got:$line; exit 4"]
    proc = subprocess.run(["unshare", "-fp", "--mount-proc", sys.executable, "-m", "pypilot", "--", *cmd],
                          input=b"hello\n", capture_output=True, timeout=30, cwd=Pilot.ROOT,
                          env=own_socket(tmp_path))
    assert (proc.returncode, proc.stdout) == (4, b"got:hello\n"), proc.stderr


def test_no_command_after_dashdash_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "pypilot", "--"], capture_output=True, text=True, timeout=30,
                          cwd=Pilot.ROOT)
    assert proc.returncode == 2 and "-- needs a command to run" in proc.stderr


def _script(inner: list[str]) -> list[str]:
    """util-linux script: a new pseudo-terminal for ``inner`` (pypilot as PID 1), its exit code kept."""
    pilot = ["unshare", "-fp", "--mount-proc", sys.executable, "-m", "pypilot", "--", *inner]
    return ["script", "-qec", shlex.join(pilot), "/dev/null"]


# pid, pgrp, session and the terminal's foreground group (tpgid) of the command itself, from /proc/self/stat
SHOW_TTY = ("tty; read -r stat < /proc/self/stat; set -- ${stat##*) }; "
            "echo pid=$$ pgrp=$3 tpgid=$6 ppid=$2; exit 5")


@pytest.mark.timeout(60)
def test_terminal_is_the_commands_controlling_tty_in_the_foreground(tmp_path: Path) -> None:
    proc = subprocess.run(_script(["sh", "-c", SHOW_TTY]), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30, cwd=Pilot.ROOT, env=own_socket(tmp_path))
    assert proc.returncode == 5, proc.stdout + proc.stderr
    lines = proc.stdout.replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/"), lines
    fields = dict(kv.split("=") for kv in lines[1].split())
    assert fields["ppid"] == "1"  # pypilot is PID 1 and its parent
    assert fields["pgrp"] == fields["pid"] != "1"  # a group of its own, not pypilot's ...
    assert fields["tpgid"] == fields["pgrp"]  # ... and that group is the terminal's foreground


def foreground_sleep(root: int) -> bool:
    """A ``sleep 1000`` under ``root`` whose group is its terminal's foreground group (/proc stat fields)."""
    try:
        kids = psutil.Process(root).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for kid in kids:
        try:
            if kid.cmdline() == ["sleep", "1000"]:
                fields = open(f"/proc/{kid.pid}/stat").read().rsplit(")", 1)[1].split()
                return fields[2] == fields[5]  # pgrp == tpgid
        except (psutil.NoSuchProcess, OSError):
            continue
    return False


@pytest.mark.timeout(60)
def test_ctrl_c_reaches_the_shells_foreground_job_and_the_shell_lives_on(tmp_path: Path) -> None:
    """``docker run -it image pypilot -- bash``: job control works and ^C stops the foreground job only."""
    proc = subprocess.Popen(_script(["bash", "--norc", "--noprofile", "-i"]), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=Pilot.ROOT,
                            env={**own_socket(tmp_path), "PS1": "prompt> ", "TERM": "dumb"})
    assert proc.stdin is not None and proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    out = bytearray()

    def read_until(text: bytes, timeout: float = 15) -> None:
        def found() -> bool:
            try:
                out.extend(os.read(proc.stdout.fileno(), 65536))  # type: ignore[union-attr]
            except BlockingIOError:
                pass
            return text in out

        wait_for(found, timeout, f"{text!r} on the terminal; so far: {bytes(out)!r}")

    def type_(keys: bytes) -> None:
        proc.stdin.write(keys)  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]

    try:
        type_(b"echo shell-$((6*7))\n")
        read_until(b"shell-42")
        type_(b"sleep 1000; echo not-reached\n")
        # ^C only once bash has made the sleep's group the terminal's foreground one
        wait_for(lambda: foreground_sleep(proc.pid), 15, "the sleep in the terminal's foreground group")
        type_(b"\x03")
        type_(b"echo alive-$?\n")
        read_until(b"alive-130")  # the job died of SIGINT (128+2); the shell did not
        type_(b"exit 7\n")
        assert proc.wait(20) == 7
    finally:
        if proc.poll() is None:  # pypilot, PID 1 of its namespace, would outlive script: kill the tree
            for kid in psutil.Process(proc.pid).children(recursive=True):
                try:
                    kid.kill()
                except psutil.NoSuchProcess:
                    pass
            proc.kill()
            proc.wait(10)
    text = out.decode(errors="replace")
    assert "not-reached" not in text.replace("echo not-reached", "")
    assert "no job control" not in text and "cannot set terminal process group" not in text
