"""A reload that moves the control socket: answered on the old one, then served on the new one."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson

from tests.pid1 import Pilot, wait_for


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pypilot", *args], capture_output=True, text=True, timeout=60
    )


def test_reload_moves_the_control_socket() -> None:
    with Pilot({"jobs": [{"name": "a", "exec": "sleep 1000"}]}) as p:
        first = p.dir / "control.sock"
        wait_for(lambda: first.exists(), 10, "the control socket")
        old = p.dir / "old.json5"  # the CLI finds the socket through the config, as CP's did
        old.write_text(p.config_path.read_text())
        cfg = orjson.loads(p.config_path.read_bytes())
        second = p.dir / "moved.sock"
        cfg["control"]["socket"] = str(second)
        p.config_path.write_bytes(orjson.dumps(cfg))
        assert cli("-reload", "-config", str(old)).returncode == 0
        wait_for(lambda: second.exists() and not first.exists(), 10, "the socket to move")
        assert oct(os.stat(second).st_mode & 0o777) == "0o600"
        ping = cli("-ping", "-config", str(p.config_path))
        assert (ping.returncode, ping.stdout) == (0, "ok\n")
