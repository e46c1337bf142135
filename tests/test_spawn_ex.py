"""The reaper's second spawn path (issue #16): what posix_spawn cannot do, applied in the child before exec.

Driven directly through ``reaper.spawn`` in the test process: the mask and dispositions the child gets, each
failing step coming back as a ``SpawnError`` naming it (and no child left behind), and the ppid shim's own
hygiene (only stdio open in it, the job its only child, its name in ``ps``).
"""

from __future__ import annotations

import errno
import os
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pypilot import reaper

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (setuid, raising limits)")


def run(argv: list[str], **kw: object) -> tuple[str, int]:
    r, w = os.pipe()
    try:
        pid = reaper.spawn(argv, stdout=w, stderr=w, **kw)  # type: ignore[arg-type]
    finally:
        os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    return out.decode(), os.waitpid(pid, 0)[1]


@pytest.fixture
def hostile_parent() -> Iterator[None]:
    """What PID 1 looks like to a child: signals blocked, some ignored (Python ignores SIGPIPE)."""
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD})
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGPIPE, signal.SIGUSR1, signal.SIGHUP)}
    yield
    for s, h in old.items():
        signal.signal(s, h)
    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


@pytest.mark.parametrize("kw", [{}, {"umask": 0o22}, {"ppid_shim": True}],
                         ids=["posix_spawn", "clone", "shim"])
def test_child_gets_an_empty_mask_and_default_dispositions(hostile_parent: None,
                                                           kw: dict[str, object]) -> None:
    out, status = run(["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"], **kw)
    assert status == 0
    assert out.split() == ["SigBlk:", "0" * 16, "SigIgn:", "0" * 16]


@pytest.mark.parametrize(("kw", "stage", "err"), [
    ({"cwd": "/nonexistent-dir", "umask": 0}, "chdir /nonexistent-dir", errno.ENOENT),
    ({"rlimits": [(resource.RLIMIT_NOFILE, 1 << 40, 1 << 40)]}, "setrlimit nofile", errno.EPERM),
    ({"uid": 65534, "gid": 65534, "groups": [], "cwd": "PRIVATE"}, "chdir PRIVATE", errno.EACCES),
    ({"ppid_shim": True, "cwd": "/nonexistent-dir"}, "chdir /nonexistent-dir", errno.ENOENT),
])
def test_a_failing_step_is_a_spawn_error_naming_it_and_leaves_no_child(
        kw: dict[str, object], stage: str, err: int, tmp_path: Path) -> None:
    private = tmp_path / "private"  # a directory the user (nobody) may not enter
    private.mkdir(mode=0o700)
    if kw.get("cwd") == "PRIVATE":
        kw, stage = {**kw, "cwd": str(private)}, stage.replace("PRIVATE", str(private))
    before = {c.pid for c in psutil.Process().children()}  # earlier tests' children may still be about
    with pytest.raises(reaper.SpawnError) as info:
        reaper.spawn(["true"], **kw)  # type: ignore[arg-type]
    assert (info.value.errno, info.value.stage) == (err, stage)
    assert str(info.value).startswith(f"[Errno {err}] {stage}: ")
    # the failed child was reaped by the spawn itself: not even a zombie of it is left
    assert {c.pid for c in psutil.Process().children()} <= before


@pytest.mark.parametrize("kw", [{"umask": 0}, {"ppid_shim": True}], ids=["clone", "shim"])
def test_command_not_found_is_the_exec_error_as_with_posix_spawn(kw: dict[str, object]) -> None:
    with pytest.raises(reaper.SpawnError) as info:
        reaper.spawn(["no-such-command-x"], **kw)  # type: ignore[arg-type]
    assert (info.value.errno, info.value.stage) == (errno.ENOENT, "")
    assert info.value.filename == "no-such-command-x"


def test_shim_holds_only_stdio_and_the_job_and_is_named_in_ps() -> None:
    keep = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(keep, True)  # an fd of ours without CLOEXEC: even that one the shim must not keep
    script = ("echo $(cat /proc/$PPID/comm) $(ls /proc/$PPID/fd | sort -n | tr '\\n' ' '); "
              "cat /proc/$PPID/task/$PPID/children")
    try:
        out, status = run(["sh", "-c", script], ppid_shim=True)
    finally:
        os.close(keep)
    first, children = out.splitlines()
    assert first.split() == ["ppid-shim", "0", "1", "2"]
    assert len(children.split()) == 1  # the job, nothing else
    assert status == 0
