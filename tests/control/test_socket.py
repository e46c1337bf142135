"""The control socket file: created 0600 (or ``control.socketMode``), a stale one replaced, removed
on stop."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import orjson

from tests.control.harness import CONTROL_MAIN, KEEPER, ROOT, ControlPilot, http, wait_for


def test_socket_is_0600_and_removed_on_stop() -> None:
    with ControlPilot() as p:
        st = os.stat(p.socket)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert http(p.socket, "GET", "/v3/ping")[0] == 200
        assert p.stop() == 0
        assert not os.path.exists(p.socket)
        assert "control: serving at" in p.log()


def test_socket_mode_from_config() -> None:
    with ControlPilot(control={"socketMode": "0660"}) as p:
        assert stat.S_IMODE(os.stat(p.socket).st_mode) == 0o660


def test_stale_socket_and_stale_file_are_replaced(tmp_path: Path) -> None:
    d = Path(tempfile.mkdtemp(prefix="pypilot-stale-"))
    stale = d / "stale.socket"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))  # a socket file nobody listens on, like one left by a killed pypilot
    s.close()
    with ControlPilot(control={"socket": str(stale)}) as p:
        assert p.socket == str(stale)
        assert http(p.socket, "GET", "/v3/ping")[0] == 200
    plain = d / "plain.socket"
    plain.write_text("left over")
    with ControlPilot(control={"socket": str(plain)}) as p:
        assert stat.S_ISSOCK(os.stat(plain).st_mode)
        assert http(p.socket, "GET", "/v3/ping")[0] == 200


def test_unbindable_socket_is_logged_and_jobs_run_on(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json5"
    bad = tmp_path / "no-such-dir" / "x.socket"
    cfg.write_bytes(
        orjson.dumps({"consul": "localhost:8500", "control": {"socket": str(bad)}, "jobs": [KEEPER]})
    )
    log = tmp_path / "out.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*CONTROL_MAIN, str(cfg)], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            wait_for(lambda: "error listening to socket at" in log.read_text(), 10, "listen error logged")
            assert proc.poll() is None  # PID 1 runs on without its control plane
        finally:
            proc.terminate()
            assert proc.wait(10) == 0


def test_second_supervisor_refuses_a_socket_another_pypilot_serves(tmp_path: Path) -> None:
    """#21: ``pypilot -config FILE stats`` (a typo for ``status``) started a second supervisor that
    ran every job again and removed the running one's socket when it exited."""
    marker = tmp_path / "ran"
    job = {"name": "marker", "exec": ["sh", "-c", f"echo x >> {marker}; sleep 1000"]}
    with ControlPilot(jobs=[job]) as p:
        wait_for(lambda: marker.exists(), 10, "the first supervisor's job")
        second = subprocess.run(
            [*CONTROL_MAIN, str(p.config_path)], capture_output=True, text=True, timeout=30, cwd=ROOT
        )
        assert second.returncode == 1, second
        assert f"(pid {p.proc.pid}) is serving the control socket {p.socket}" in second.stdout
        assert "not starting a second supervisor" in second.stdout
        assert marker.read_text() == "x\n"  # its job did not run a second time
        assert stat.S_ISSOCK(os.stat(p.socket).st_mode)
        assert http(p.socket, "GET", "/v3/ping")[0] == 200  # the running one is still reachable
        assert p.job("marker")["runs"] == 1
