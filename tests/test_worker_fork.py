"""Workers forked from PID 1 (``pypilot.workers``): what a worker's children inherit."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.pid1 import Pilot, wait_for


@pytest.mark.timeout(60)
def test_a_health_check_reads_dev_null_not_a_stale_fd_of_pid1() -> None:
    # PID 1 caches a /dev/null fd for its jobs' stdin; the worker closes PID 1's fds when it starts,
    # so the cached number came to name another of the worker's fds (the check's own output pipe)
    out = Path(tempfile.mkdtemp(prefix="pypilot-test-")) / "stdin"
    jobs = [
        {
            "name": "app",
            "exec": ["sleep", "60"],
            "port": 9000,
            "interfaces": ["static:127.0.0.1"],
            "health": {"exec": ["sh", "-c", f"readlink /proc/self/fd/0 > {out}"], "interval": 1, "ttl": 5},
        }
    ]
    with Pilot({"consul": "127.0.0.1:1", "jobs": jobs}):
        text = wait_for(lambda: out.exists() and out.read_text().strip(), timeout=20, what="a check's run")
    assert text == "/dev/null"
