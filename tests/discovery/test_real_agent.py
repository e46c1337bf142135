"""pypilot as PID 1 against a real Consul agent (tests/real_consul.py; skipped with the reason when no
binary is found): registration as CP sent it, the TTL check's transitions as Consul itself reports them
(``/v1/health/service/NAME?passing``), watches as blocking queries (the agent's own request log counts
them), maintenance, deregistration, and the telemetry ``containerpilot`` service."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.discovery.harness import LOCAL, PID1_STALL, Pilot, free_port, service_job, sid
from tests.real_consul import RealConsul


def updates(agent: RealConsul, name: str) -> list[tuple[str, str]]:
    return agent.requests(lambda m, p: m == "PUT" and p == f"/v1/agent/check/update/service:{sid(name)}")


def test_registration_as_cp_with_tags_address_initial_status_and_ttl_check(
    agent: RealConsul, tmp_path: Path
) -> None:
    ready = tmp_path / "nginx-ready"
    cfg = {
        "consul": agent.address,
        "jobs": [
            service_job("app", 8000, tags=["blue", "v1"]),
            service_job("nginx", 80, check=f"test -f {ready}", interval=3, ttl=10, initial_status="warning",
                        consul={"enableTagOverride": True, "deregisterCriticalServiceAfter": "10m"}),
        ],
    }
    nginx_check = f"service:{sid('nginx')}"
    with Pilot(cfg) as p:
        p.until(lambda: (agent.check(nginx_check) or {}).get("Status") == "warning", 10,
                "nginx registered with its initial status, before its first check")
        p.until(lambda: agent.passing("app") == [sid("app")], 10, "app passing in Consul")
        services = agent.services()
        app, nginx = services[sid("app")], services[sid("nginx")]
        assert (app["Service"], app["Tags"], app["Address"], app["Port"], app["EnableTagOverride"]) == (
            "app", ["blue", "v1"], "127.0.0.1", 8000, False)
        assert (nginx["Service"], nginx["Tags"], nginx["Address"], nginx["Port"],
                nginx["EnableTagOverride"]) == ("nginx", [], "127.0.0.1", 80, True)
        # passing may be the initial status, before the first TTL update brings its output
        app_check = f"service:{sid('app')}"
        p.until(lambda: (agent.check(app_check) or {}).get("Output") == "ok", 10, "app's TTL update")
        check = agent.check(f"service:{sid('app')}")
        assert check is not None
        assert (check["Name"], check["Notes"], check["Status"], check["Output"]) == (
            "Service 'app' check", "TTL for app set by containerpilot", "passing", "ok")
        assert agent.passing("nginx") == []  # warning is not passing
        p.until(lambda: (agent.check(nginx_check) or {}).get("Status") == "critical", 10,
                "its first check failed: critical at once (issue 14)")
        ready.write_text("")
        p.until(lambda: agent.passing("nginx") == [sid("nginx")], 10, "nginx passing once its check passes")
        registers = agent.requests(lambda m, path: path == "/v1/agent/service/register")
        assert len(registers) == 2  # one each: heartbeats are TTL updates, not registrations
        assert p.stop() == 0
    assert agent.services() == {}


def test_failing_check_is_critical_at_once_with_its_output_and_passing_on_recovery(
    agent: RealConsul, tmp_path: Path
) -> None:
    """Issue 14: Consul hears of the failure at once (not when a 30 s TTL lapses), one call per
    transition, none while the status holds."""
    flag = tmp_path / "healthy"
    flag.write_text("")
    cfg = {"consul": agent.address, "jobs": [service_job("app", 8000, check=f"test -f {flag}", ttl=30)]}
    check_id = f"service:{sid('app')}"
    with Pilot(cfg) as p:
        p.until(lambda: agent.passing("app") == [sid("app")], 10, "passing")
        flag.unlink()
        failed_at = time.monotonic()
        p.until(lambda: (agent.check(check_id) or {}).get("Status") == "critical", 5, "critical in Consul")
        seen = time.monotonic() - failed_at
        assert seen < 3.0, seen  # one check interval (1 s) and the call, far inside the 30 s TTL
        assert agent.passing("app") == []
        assert agent.check(check_id)["Output"] == "check.app: exit status 1"  # type: ignore[index]
        agent.mark()
        p.until(lambda: p.count("check.app exited with error") >= 4, 10, "three more failing checks")
        assert updates(agent, "app") == []  # nothing more while it stays unhealthy
        flag.write_text("")
        p.until(lambda: agent.passing("app") == [sid("app")], 5, "passing again")
        assert agent.check(check_id)["Output"] == "ok"  # type: ignore[index]
        assert p.stop() == 0
    print(f"\ncritical in Consul {seen:.2f} s after the check started failing (interval 1 s, ttl 30 s)")


def test_watch_is_a_blocking_query_that_sees_changes_within_one_interval(agent: RealConsul) -> None:
    """Changes seen when they happen; while nothing changes, about one query per interval (counted in
    the agent's own request log), each a blocking query from the last index."""
    interval = 2
    backend = {"ID": "backend-1", "Name": "backend", "Address": "10.0.0.1", "Port": 80}
    assert agent.put("/v1/agent/service/register", backend)[0] == 200
    cfg = {
        "consul": agent.address,
        "jobs": [{"name": "onchange", "exec": ["echo", "backend changed"],
                  "when": {"source": "watch.backend", "each": "changed"}}],
        "watches": [{"name": "backend", "interval": interval}],
    }

    def queries() -> list[tuple[str, str]]:
        return agent.requests(lambda m, path: m == "GET" and path.startswith("/v1/health/service/backend?")
                              and "passing=1" in path)

    with Pilot(cfg) as p:
        p.wait_log("backend changed", 1, 10)
        agent.settle("backend")
        agent.mark()
        quiet = 10.0
        time.sleep(quiet)  # measuring a rate: nothing to wait for but the clock
        quiet_queries = queries()
        assert quiet / interval - 1 <= len(quiet_queries) <= quiet / interval + 1, quiet_queries
        assert all("index=" in q and f"wait={interval}s" in q for _, q in quiet_queries), quiet_queries
        assert p.count("backend changed") == 1
        began = time.monotonic()
        assert agent.put("/v1/agent/service/register", {**backend, "ID": "backend-2", "Port": 81})[0] == 200
        p.wait_log("backend changed", 2, interval + 3)
        seen = time.monotonic() - began
        assert seen < interval + 0.5, seen
        assert agent.put("/v1/agent/service/deregister/backend-2")[0] == 200
        p.wait_log("backend changed", 3, interval + 3)
        watch = p.until(lambda: [w for w in p.status()["watches"] if w["instances"] == 1], 5, "watch status")
        assert watch[0]["name"] == "backend" and watch[0]["error"] is None
        assert p.stop() == 0
    print(f"\nwatch: {len(quiet_queries)} queries in {quiet:.0f} s quiet (interval {interval} s);"
          f" a change seen after {seen * 1000:.0f} ms")


def test_maintenance_deregisters_and_leaving_it_registers_again(agent: RealConsul) -> None:
    cfg = {"consul": agent.address, "jobs": [service_job("app", 8000)]}
    with Pilot(cfg) as p:
        p.until(lambda: agent.passing("app") == [sid("app")], 10, "passing")
        p.maintenance(True)
        p.until(lambda: sid("app") not in agent.services(), 5, "deregistered in maintenance")
        assert p.job_status("app") == "maintenance"
        p.maintenance(False)
        p.until(lambda: agent.passing("app") == [sid("app")], 10, "passing again after maintenance")
        assert p.stop() == 0
    assert agent.services() == {}


def test_deregistered_when_the_job_completes_and_at_shutdown(agent: RealConsul, tmp_path: Path) -> None:
    done = tmp_path / "done"
    cfg = {
        "consul": agent.address,
        "jobs": [
            service_job("batch", 8001, exec_=["sh", "-c", f"while ! test -f {done}; do sleep 0.1; done"]),
            service_job("app", 8000),
        ],
    }
    with Pilot(cfg) as p:
        p.until(lambda: agent.passing("batch") == [sid("batch")] and agent.passing("app") == [sid("app")],
                10, "both passing")
        done.write_text("")
        p.until(lambda: sid("batch") not in agent.services(), 5, "batch deregistered when it completed")
        assert sid("app") in agent.services()
        assert p.stop() == 0
    assert agent.services() == {}


def test_telemetry_registers_the_containerpilot_service(agent: RealConsul) -> None:
    port = free_port()
    cfg = {
        "consul": agent.address,
        "jobs": [{"name": "idle", "exec": "sleep 1000"}],
        "telemetry": {"port": port, "interfaces": LOCAL},
    }
    with Pilot(cfg) as p:
        p.until(lambda: agent.passing("containerpilot") == [sid("containerpilot")], 10, "passing")
        service = agent.services()[sid("containerpilot")]
        assert (service["Address"], service["Port"]) == ("127.0.0.1", port)
        check = agent.check(f"service:{sid('containerpilot')}")
        assert check is not None and check["Notes"] == "TTL for containerpilot set by containerpilot"
        assert p.stop() == 0
    assert agent.services() == {}


@pytest.mark.timeout(120)
def test_agent_killed_and_restarted_empty_gets_everything_back_within_a_heartbeat(agent: RealConsul) -> None:
    """Issue 19: Consul 1.0.1 answers the TTL update of a check it lost 500 'does not have associated TTL';
    pypilot registers again at once. Watches resume from a fresh index; no event storm."""
    cfg = {
        "consul": agent.address,
        "jobs": [
            service_job("app", 8000), service_job("web", 8080),
            {"name": "onchange", "exec": ["echo", "app changed"],
             "when": {"source": "watch.app", "each": "changed"}},
        ],
        "watches": [{"name": "app", "interval": 1}],
    }
    with Pilot(cfg) as p:
        p.until(lambda: agent.passing("app") and agent.passing("web"), 10, "registered")
        p.wait_log("app changed", 1, 10)
        changes_before = p.count("app changed")
        with p.pid1_probe() as probe:
            agent.kill()
            startup = agent.start()
            up = time.monotonic()
            p.until(lambda: agent.passing("app") == [sid("app")] and agent.passing("web") == [sid("web")],
                    5, "both passing in the new agent")
            back = time.monotonic() - up
            assert back < 1.5, back  # heartbeat interval 1 s
            assert p.count("registering it again") >= 1
            p.until(lambda: [w for w in p.status()["watches"] if w["instances"] == 1 and w["error"] is None],
                    5, "the watch sees app again")
            agent.mark()
            time.sleep(5)  # measuring a rate: nothing to wait for but the clock
            seen = agent.requests()
        # 2 services x 1 TTL update/s and 1 watch query/s (held): ~15, not a busy loop
        assert len(seen) <= 25, seen
        changes = p.count("app changed") - changes_before
        assert changes <= 2, changes  # gone, back: at most
        assert [j["state"] for j in p.status()["jobs"][:2]] == ["running", "running"]
        assert probe.count > 100 and probe.failed == 0 and probe.worst < PID1_STALL, vars(probe)
        assert p.stop() == 0
    print(f"\nagent restarted empty (ready in {startup:.2f} s): both services passing again"
          f" {back:.2f} s later; {len(seen)} requests in the next 5 s; {changes} watch change(s)")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["down", "paused"])
def test_agent_gone_for_30s_jobs_run_on_errors_logged_once_all_back_after(
    agent: RealConsul, how: str
) -> None:
    """``down``: the agent's process is gone 30 s and comes back empty; ``paused``: SIGSTOP for 30 s
    (connections accepted by the kernel, never answered), then SIGCONT."""
    cfg = {
        "consul": agent.address,
        "jobs": [service_job("app", 8000), service_job("web", 8080)],
        "watches": [{"name": "app", "interval": 1}],
    }
    with Pilot(cfg) as p:
        p.until(lambda: agent.passing("app") and agent.passing("web"), 10, "registered")
        p.until(lambda: any(w["instances"] == 1 for w in p.status()["watches"]), 5, "watch seen")
        with p.pid1_probe() as probe:
            if how == "down":
                agent.kill()
            else:
                agent.pause()
            gone = time.monotonic()
            while time.monotonic() - gone < 30:
                assert [j["state"] for j in p.status()["jobs"]] == ["running", "running"]
                time.sleep(1)  # an outage of a fixed length: the clock is what we wait for
            if how == "down":
                agent.start()
            else:
                agent.resume()
            up = time.monotonic()
            p.until(lambda: agent.passing("app") == [sid("app")] and agent.passing("web") == [sid("web")],
                    15, "both passing after the outage")
            back = time.monotonic() - up
            p.until(lambda: [w for w in p.status()["watches"] if w["instances"] == 1 and w["error"] is None],
                    35, "the watch works again")
        assert probe.count > 100 and probe.failed == 0 and probe.worst < PID1_STALL, vars(probe)
        lines = p.log().splitlines()
        warnings = [ln for ln in lines if ("failed: " in ln or "failed to query" in ln)
                    and "registering it again" not in ln]
        assert len(warnings) <= 3, warnings  # per kind of call (update, register, query) per change
        assert len([ln for ln in lines if "registering it again" in ln]) <= 2  # once per service
        assert p.stop() == 0
    print(f"\nagent {how} 30 s: services passing {back:.2f} s after it came back; PID 1 ping worst"
          f" {probe.worst * 1000:.0f} ms over {probe.count}; warnings: {len(warnings)}")
