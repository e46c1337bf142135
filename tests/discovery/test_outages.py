"""Consul down, answering 500, slow (10 s a call) or garbage: jobs keep running, PID 1's loop never
waits (its timers stay on time), errors are logged once per change of state, and all recovers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.consul_standin import ConsulStandin, make_self_signed_cert
from tests.discovery.harness import PID1_STALL, Pilot, service_job, sid

Outage = tuple[Callable[[ConsulStandin], None], Callable[[ConsulStandin], None], float]
OUTAGES: dict[str, Outage] = {
    "down": (lambda s: s.go_down(), lambda s: s.come_up(), 3.0),
    "500": (lambda s: s.fail_with(500), lambda s: s.fail_with(None), 3.0),
    "slow10s": (lambda s: s.set_delay(10), lambda s: s.set_delay(0), 3.0),
    "garbage": (lambda s: s.set_garbage(True), lambda s: s.set_garbage(False), 3.0),
}


def passing(standin: ConsulStandin, name: str) -> bool:
    return bool(standin.health(name, passing=True))


@pytest.mark.parametrize("kind", list(OUTAGES))
def test_outage_leaves_jobs_and_pid1_alone(standin: ConsulStandin, kind: str) -> None:
    begin, end, seconds = OUTAGES[kind]
    standin.add_remote_service("other", address="10.0.0.7", port=80)
    cfg = {
        "consul": standin.address,
        "logging": {"level": "DEBUG"},
        "jobs": [service_job("app", 8000), service_job("web", 8080)],
        "watches": [{"name": "other", "interval": 1}],
    }
    with Pilot(cfg) as p:
        p.until(lambda: passing(standin, "app") and passing(standin, "web"), 10, "registered")
        p.until(lambda: p.count("event: {StatusChanged watch.other}") == 1, 5, "watch seen")
        healthy_before = p.count("event: {StatusHealthy app}")
        with p.pid1_probe() as probe:
            begin(standin)
            p.until(lambda: p.count("event: {StatusHealthy app}") >= healthy_before + seconds, seconds + 5,
                    "checks keep passing during the outage")
            status = p.status()
            assert [j["state"] for j in status["jobs"]] == ["running", "running"]
            end(standin)
            standin.advance(10)  # TTLs lapse (virtual time): only fresh updates can make them pass
            p.until(lambda: passing(standin, "app") and passing(standin, "web"), 20,
                    "passing after the outage")
        assert p.count("event: {StatusChanged watch.other}") == 1  # no events from failed queries
        assert probe.count > 50 and probe.failed == 0 and probe.worst < PID1_STALL, vars(probe)
        warnings = [ln for ln in p.log().splitlines() if "failed: " in ln or "failed to query" in ln]
        assert len(warnings) <= 3, warnings  # once per kind of call per change, not per call
        assert p.stop() == 0


def test_tls_verified_against_the_test_ca_and_refused_without_it(tmp_path: Path) -> None:
    cert, key = make_self_signed_cert(tmp_path)
    with ConsulStandin(tls=(cert, key)) as standin:
        job = service_job("app", 8000)
        trusted = {"address": standin.address, "scheme": "https", "tls": {"cafile": str(cert)}}
        with Pilot({"consul": trusted, "jobs": [job]}) as p:
            p.until(lambda: passing(standin, "app"), 10, "registered over TLS")
            assert p.stop() == 0
        assert standin.services() == {}
        standin.clear_log()
        untrusted = {"address": standin.address, "scheme": "https"}  # verify is on by default
        with Pilot({"consul": untrusted, "jobs": [job]}) as p:
            p.wait_log("service registration failed: TLS error: CERTIFICATE_VERIFY_FAILED")
            assert p.status()["jobs"][0]["status"] == "healthy"
            assert standin.services() == {}
            assert p.stop() == 0
        off = {"address": standin.address, "scheme": "https", "tls": {"verify": False}}
        with Pilot({"consul": off, "jobs": [job]}) as p:
            p.until(lambda: passing(standin, "app"), 10, "registered with verification off")
            update = f"/v1/agent/check/update/service:{sid('app')}"
            p.until(lambda: len(standin.requests("PUT", update)) >= 3, 10, "three TTL updates")
            # issue 21: one pypilot warning, not urllib3's InsecureRequestWarning on every call
            assert p.count("tls.verify is false") == 1
            assert "InsecureRequestWarning" not in p.log() and "Unverified HTTPS" not in p.log()
            assert p.stop() == 0


def test_token_sent_as_x_consul_token(standin: ConsulStandin) -> None:
    standin.require_tokens(["s3cret"])
    cfg = {"consul": standin.address, "jobs": [service_job("app", 8000)]}
    with Pilot(cfg, env={"CONSUL_HTTP_TOKEN": "s3cret"}) as p:
        p.until(lambda: sid("app") in standin.services(), 10, "registered with the token")
        assert standin.requests("PUT", "/v1/agent/service/register")[0].headers["X-Consul-Token"] == "s3cret"
        assert p.stop() == 0
    assert standin.services() == {}  # deregistered with the token too
