"""pypilot's log under bad conditions (CP #423: a broken log must never fail a job or PID 1), and the
line splitter. End-to-end tests run pypilot as a real process with real pipes, files and mounts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pypilot.logs import LineSplitter
from tests.pid1 import wait_for

PYPILOT = [sys.executable, "-m", "pypilot"]


def write_config(jobs: str, extra: str = "") -> str:
    fd, path = tempfile.mkstemp(suffix=".json5")
    os.write(fd, f'{{consul: "x:1", {extra} jobs: [{jobs}]}}'.encode())
    os.close(fd)
    return path


def ticker(mark: Path) -> str:
    """A job that proves it keeps running: it rewrites a file every 50 ms."""
    return f'{{name: "ticker", exec: ["sh", "-c", "while :; do date +%s%N > {mark}; sleep 0.05; done"]}}'


def stamp(mark: Path) -> int:
    try:
        return int(mark.read_text() or 0)
    except (OSError, ValueError):
        return 0


def pipe_bytes(fd: int) -> int:
    """How much is waiting unread in a pipe (FIONREAD)."""
    import fcntl
    import struct
    import termios

    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0])


def test_line_splitter_keeps_lines_of_any_length_whole() -> None:
    s = LineSplitter()
    assert s.feed(b"a\nbb") == [b"a"]
    assert s.feed(b"b" * 100_000) == []
    assert s.feed(b"\nc\n") == [b"b" * 100_002, b"c"]
    assert s.flush() == []
    s.feed(b"tail")
    assert s.flush() == [b"tail"]


def test_stdout_pipe_nobody_reads_does_not_freeze_pid1(tmp_path: Path) -> None:
    """A stalled `docker logs` reader: PID 1 keeps supervising and answers SIGTERM at once."""
    mark = tmp_path / "mark"
    chatty = '{name: "chatty", exec: ["echo", "hello"], restarts: "unlimited", backoff: false}'
    cfg = write_config(f"{chatty}, {ticker(mark)}", 'logging: {level: "DEBUG"},')
    r, w = os.pipe()
    p = subprocess.Popen([*PYPILOT, "-config", cfg], stdout=w, stderr=w)
    os.close(w)
    try:
        wait_for(lambda: pipe_bytes(r) >= 60_000, 10, "the stdout pipe (64 KiB) to fill: nobody reads it")
        wait_for(lambda: stamp(mark), 10, "the ticker to run")
        before = stamp(mark)
        wait_for(lambda: stamp(mark) > before, 10, "the ticker to keep running with stdout full")
        start = time.monotonic()
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
        assert time.monotonic() - start < 2
    finally:
        p.kill()
        os.close(r)


def test_closed_stdout_does_not_fail_jobs_or_pid1(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    cfg = write_config(ticker(mark) + ', {name: "talker", exec: ["echo", "into the void"], restarts: 3}')
    p = subprocess.Popen(["sh", "-c", 'exec "$@" >&- 2>&-', "sh", *PYPILOT, "-config", cfg])
    try:
        wait_for(lambda: stamp(mark), 10, "the ticker to run with stdout closed")
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        p.kill()


@pytest.fixture
def tiny_tmpfs() -> object:
    mnt = tempfile.mkdtemp(prefix="pypilot-full-")
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield Path(mnt)
    subprocess.run(["umount", "-l", mnt], check=False)


def test_full_disk_for_the_log_file_then_space_comes_back(tiny_tmpfs: Path, tmp_path: Path) -> None:
    log = tiny_tmpfs / "pypilot.log"
    mark = tmp_path / "mark"
    chatty = '{name: "chatty", exec: ["sh", "-c", "yes fill | head -n 300"], when: {interval: "50ms"}}'
    cfg = write_config(f"{chatty}, {ticker(mark)}", f'logging: {{output: "{log}"}},')
    p = subprocess.Popen([*PYPILOT, "-config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.statvfs(tiny_tmpfs).f_bavail == 0, 20, "the log to fill the tmpfs")
        for _ in range(3):  # the chatty job writes every 50 ms: some of that is refused now
            before = stamp(mark)
            wait_for(lambda b=before: stamp(mark) > b, 10, "jobs to keep running on a full disk")
        for _ in range(200):  # a SIGUSR1 storm while the disk is full
            p.send_signal(signal.SIGUSR1)
        log.rename(tiny_tmpfs / "old.log")
        (tiny_tmpfs / "old.log").unlink()  # logrotate freed the space
        p.send_signal(signal.SIGUSR1)
        wait_for(
            lambda: log.exists() and "log entries dropped" in log.read_text(),
            10,
            "logging to resume and say what it dropped",
        )
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        p.kill()
