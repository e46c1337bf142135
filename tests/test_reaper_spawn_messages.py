"""The reaper's answers that its mutation set left unread: a posix_spawn chdir failure's whole message
(``reaper.spawn``'s plain path) and ``malloc_tune``/``malloc_trim``, which only the workers call."""

from __future__ import annotations

import errno
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from pypilot import reaper


def test_a_missing_workdir_on_the_plain_spawn_path_says_chdir_and_names_the_command(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    with pytest.raises(reaper.SpawnError) as e:
        reaper.spawn(["true"], cwd=str(missing))  # no other option: posix_spawn, not the clone path
    assert str(e.value) == f"[Errno {errno.ENOENT}] chdir {missing}: No such file or directory: 'true'"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's (musl: False, by design)")
def test_malloc_tune_says_glibc_took_the_control_workers_settings() -> None:
    assert reaper.malloc_tune(128 * 1024, 2) is True  # the control worker's settings


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's (musl: False)")
def test_malloc_trim_gives_back_a_freed_hole_in_the_heap() -> None:
    """What the control worker does once its imports are done: the pages of freed blocks that a live
    block above them keeps inside the heap go back to the kernel."""
    code = ("from pypilot import reaper\n"
            "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096 >> 20\n"
            "blocks = [bytes(2000) + bytes([i % 256]) for i in range(20000)]\n"
            "top = bytes(2000) + b'x'\n"
            "del blocks\n"
            "before = rss(); trimmed = reaper.malloc_trim(); print(trimmed, before - rss(), len(top))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    trimmed, freed_mib, _ = out.stdout.split()
    assert trimmed == "True" and int(freed_mib) >= 30, out.stdout  # of the 40 MiB the blocks had held
