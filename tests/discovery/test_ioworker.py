"""One I/O worker (issue #15): health checks, Consul, watches and telemetry in one process forked from
PID 1, replaced as one when it dies (the checks in flight fail with a reason, the new process is told
every service again), and a config with health checks only loads none of the Consul side."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.consul_standin import ConsulStandin
from tests.discovery.harness import LOCAL, Pilot, free_port, service_job, sid
from tests.pid1 import host_pid


def started(p: Pilot, name: str) -> list[int]:
    """Namespace PIDs of the workers called ``name`` PID 1 logged it started (DEBUG)."""
    return [int(m.group(1)) for ln in p.lines(rf"worker {re.escape(name)} started as pid \d+")
            if (m := re.search(r"started as pid (\d+)", ln))]



def updates(standin: ConsulStandin, name: str) -> int:
    return len([r for r in standin.requests("PUT", prefix="/v1/agent/check/update/")
                if r.path.endswith(f"service:{sid(name)}")])


@pytest.mark.timeout(90)
def test_checks_consul_watches_and_telemetry_share_one_worker_replaced_as_one(standin: ConsulStandin) -> None:
    cfg = {
        "consul": standin.address,
        "logging": {"level": "DEBUG"},
        "jobs": [service_job("app", free_port(), ttl=5), service_job("web", free_port(), ttl=5)],
        "watches": [{"name": "peer", "interval": 1}],
        "telemetry": {"port": free_port(), "interfaces": LOCAL},
    }
    with Pilot(cfg) as p:
        p.until(lambda: standin.check_status(f"service:{sid('app')}") == "passing"
                and standin.check_status(f"service:{sid('web')}") == "passing", 15, "both passing")
        assert len(started(p, "health+discovery")) == 1
        assert not started(p, "health") and not started(p, "discovery")  # no worker per role
        worker = host_pid(started(p, "health+discovery")[0], p.worker_pids())
        registers = len(standin.requests("PUT", "/v1/agent/service/register"))

        os.kill(worker, signal.SIGKILL)
        p.wait_log("worker health+discovery (pid ")
        p.until(lambda: len(started(p, "health+discovery")) == 2, 10, "a new worker")
        # the new one is told both services again and registers them (it has no record of them), and
        # the checks and TTL updates go on through it
        p.until(lambda: len(standin.requests("PUT", "/v1/agent/service/register")) >= registers + 2, 10,
                "the services registered by the new worker")
        before = updates(standin, "app"), updates(standin, "web")
        p.until(lambda: updates(standin, "app") >= before[0] + 2 and updates(standin, "web") >= before[1] + 2,
                10, "TTL updates by the new worker")
        assert worker not in p.worker_pids()
        assert len(started(p, "health+discovery")) == 2  # one replacement, not one per role
        assert p.stop() == 0
        dereg = standin.requests("PUT", prefix="/v1/agent/service/deregister/")
        deregistered = {r.path.rsplit("/", 1)[1] for r in dereg}
        assert {sid("app"), sid("web")} <= deregistered


HEALTH_ONLY = r"""
import os, socket, sys
from pypilot import ioworker

pid1, ours = socket.socketpair()
if os.fork() == 0:  # PID 1's side: one env, one exec check and one TCP probe, then EOF
    from pypilot.channel import Decoder, encode
    ours.close()
    pid1.sendall(encode({"op": "env", "env": dict(os.environ)}))
    pid1.sendall(encode({"op": "check", "id": 1, "kind": "exec", "job": "j", "exec": ["true"],
                         "timeout": 5}))
    pid1.sendall(encode({"op": "check", "id": 2, "kind": "tcp", "job": "k", "addr": "127.0.0.1:1",
                         "timeout": 5}))
    dec, results = Decoder(), {}
    while len(results) < 2:
        for m in dec.feed(pid1.recv(65536)):
            if m["op"] == "result":
                results[m["id"]] = m["ok"]
    print("results", sorted(results.items()), flush=True)
    os._exit(0)
pid1.close()
try:
    ioworker.main(ours)
except SystemExit:
    pass
heavy = ("consul", "pypilot.consul", "pypilot.consul_http", "prometheus_client", "waitress",
         "pypilot.telemetry", "encodings.idna")  # the TCP probe's address is not encoded as IDNA
print("loaded", sorted(m for m in heavy if m in sys.modules), flush=True)
"""


def test_a_worker_with_health_checks_only_loads_no_consul_prometheus_or_waitress() -> None:
    out = subprocess.run([sys.executable, "-I", "-c", HEALTH_ONLY], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert "results [(1, True), (2, False)]" in out.stdout, out
    assert "loaded []" in out.stdout, out
