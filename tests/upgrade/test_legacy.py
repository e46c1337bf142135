"""An upgrade from an image with a worker per role (state format 1: a health worker and a discovery
worker) to this one (one I/O worker, issue #15): both old workers are adopted as they run (no check
lost, no Consul registration or deregistration), each serves its role until it exits, and then that
role moves to the one shared worker, which ends up the only one.

Image A is ``git archive`` of ``LEGACY`` (the last commit of ``main`` with two workers), with its
cffi extension built from its own C source; image B is this checkout (``harness.make_installs``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.consul_standin import ConsulStandin
from tests.pid1 import host_pid
from tests.upgrade.harness import (
    LOCAL,
    ROOT,
    TTL,
    Install,
    UpPilot,
    deregistrations,
    free_port,
    service_job,
    sid,
    ttl_updates,
)

LEGACY = "15cf59932c2c258db722a8094b921459a941828a"  # main with a health and a discovery worker


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory, a: Install) -> Install:
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{LEGACY}^{{commit}}"],
                      capture_output=True).returncode:
        pytest.skip(f"commit {LEGACY[:10]} is not in this clone (shallow?)")
    root = tmp_path_factory.mktemp("legacy")
    src = root / "src"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", LEGACY], capture_output=True, check=True,
                             timeout=60).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True, timeout=60)
    subprocess.run([sys.executable, "csrc/build_reaper.py"], cwd=src, check=True, timeout=300,
                   capture_output=True)
    body = (src / "scripts" / "pypilot").read_text().split("\n", 1)[1]
    launcher = root / "bin" / "pypilot"
    launcher.parent.mkdir()
    launcher.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(src)!r})\n{body}")
    launcher.chmod(0o755)
    return Install("legacy", Path(sys.executable), launcher, a.env)



def started_workers(p: UpPilot, name: str) -> list[int]:
    """Namespace PIDs of the workers called ``name`` that PID 1 logged it started (DEBUG)."""
    return [int(m.group(1)) for ln in p.lines(rf"worker {re.escape(name)} started as pid \d+")
            if (m := re.search(r"started as pid (\d+)", ln))]


@pytest.mark.timeout(120)
def test_an_image_with_two_workers_hands_both_over_and_they_become_one(
    legacy: Install, b: Install, standin: ConsulStandin
) -> None:
    cfg = {
        "consul": standin.address,
        "logging": {"level": "DEBUG"},
        "jobs": [service_job("app", free_port(), check="true", interval=1, ttl=TTL)],
        "watches": [{"name": "peer", "interval": 1}],
        "telemetry": {"port": free_port(), "interfaces": LOCAL},
    }
    with UpPilot(cfg, legacy) as p:
        p.until(lambda: standin.check_status(f"service:{sid('app')}") == "passing", 20, "app passing")
        kids = [c.pid for c in p.children()]
        old_health = host_pid(p.until(lambda: started_workers(p, "health"), 10, "health worker")[0], kids)
        old_discovery = host_pid(started_workers(p, "discovery")[0], kids)
        registers = len(standin.requests("PUT", "/v1/agent/service/register"))

        res = p.upgrade(b.pypilot)
        assert res.returncode == 0, (res.stdout, res.stderr, p.log()[-3000:])
        assert "(state v1, " in p.wait_log("upgrade: resumed from ")[0]

        # both old workers go on as they were: checks pass, the TTL is updated, nothing re-registered
        n = len(ttl_updates(standin, "app"))
        p.until(lambda: len(ttl_updates(standin, "app")) >= n + 2, 10, "TTL updates after the upgrade")
        assert {old_health, old_discovery} <= {c.pid for c in p.children()}
        assert len(standin.requests("PUT", "/v1/agent/service/register")) == registers
        assert not deregistrations(standin)

        # the old health worker ends: its role moves to the shared worker, checks go on passing
        os.kill(old_health, signal.SIGKILL)
        p.wait_log("worker health (pid ")
        shared = p.until(lambda: started_workers(p, "health+discovery"), 10, "the shared worker")
        n = len(ttl_updates(standin, "app"))
        p.until(lambda: len(ttl_updates(standin, "app")) >= n + 2, 10, "TTL updates by the new checks")
        assert psutil.pid_exists(old_discovery) and not deregistrations(standin)

        # the old discovery worker ends (killed: it deregisters nothing): the shared one is told it all
        os.kill(old_discovery, signal.SIGKILL)
        p.wait_log("worker discovery (pid ")
        n = len(ttl_updates(standin, "app"))
        p.until(lambda: len(ttl_updates(standin, "app")) >= n + 2, 10, "TTL updates by the shared worker")
        assert standin.check_status(f"service:{sid('app')}") == "passing"
        assert len(started_workers(p, "health+discovery")) == len(shared) == 1  # one worker, not two

        # and it is the one that deregisters at shutdown
        p.signal(signal.SIGTERM)
        assert p.wait_exit() == 0
        assert f"/v1/agent/service/deregister/{sid('app')}" in deregistrations(standin)
