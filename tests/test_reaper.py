"""The C reaper and spawner through its Python wrapper (anchors §1.6 #5, #6, #7, #14)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

PROBE = Path(__file__).parent / "payloads" / "reaper_probe.py"


@pytest.fixture(scope="module")
def probe() -> dict[str, object]:
    out = subprocess.run([sys.executable, str(PROBE)], capture_output=True, timeout=60, check=True).stdout
    return dict(orjson.loads(out))


def test_every_exit_code_reaches_the_pid_that_had_it_zero_included(probe: dict[str, object]) -> None:
    """bpo-15756 / phusion #14: a second waiter turns codes into 0; here there is one, and 0 is 0."""
    assert probe["codes"] == {"0": 0, "1": 1, "2": 2, "3": 3}
    assert probe["killed"] == "signal: killed"


def test_held_leader_group_is_signalled_before_the_leader_is_reaped(probe: dict[str, object]) -> None:
    """CP: SIGTERM to what is left of the group when the leader exits; no PGID-reuse window."""
    assert probe["straggler_gone"] is True


def test_status_of_an_unregistered_pid_is_kept_until_registered(probe: dict[str, object]) -> None:
    assert probe["stashed"] is True


def test_kept_status_of_an_earlier_process_with_the_pid_is_not_delivered(probe: dict[str, object]) -> None:
    """Found by the PID-reuse test: a reused PID got the kept status of the orphan that had it before."""
    assert probe["stale_dropped"] is True


def test_unclaimed_orphan_status_is_forgotten_after_bounded_drains(probe: dict[str, object]) -> None:
    """#15: kept until 4 096 of them, orphans' statuses grew PID 1 by ~0.23 KiB a reload for hours."""
    assert probe["orphan_forgotten"] is True


def test_spawn_error_names_the_command_and_cwd_env_reach_the_child(probe: dict[str, object]) -> None:
    assert probe["spawn_error"] == "[Errno 2] No such file or directory: '/no/such/binary'"
    assert probe["cwd_env"] == "/tmp yes"
