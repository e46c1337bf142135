"""The reaper's answers that its mutation set left unread: a posix_spawn chdir failure's whole message
(``reaper.spawn``'s plain path) and ``malloc_tune``, which only the control worker calls."""

from __future__ import annotations

import errno
import platform
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
