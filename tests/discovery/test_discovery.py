"""Consul registration, TTL updates, watches, maintenance and lost registrations, end to end:
pypilot as PID 1 (its real entry point) against the Consul stand-in."""

from __future__ import annotations

from pathlib import Path

from tests.consul_standin import ConsulStandin
from tests.discovery.harness import PID1_STALL, Pilot, free_port, service_job, sid


def passing(standin: ConsulStandin, name: str) -> list[str]:
    return [e["Service"]["ID"] for e in standin.health(name, passing=True)]


def test_two_jobs_register_with_cps_bodies_and_a_watch_fires_changed(standin: ConsulStandin) -> None:
    """test_discovery_consul: both services register, one passing instance each; watch.app → changed."""
    cfg = {
        "consul": standin.address,
        "jobs": [
            service_job("app", 8000, tags=["blue", "v1"]),
            service_job(
                "nginx", 80, initial_status="warning",
                consul={"enableTagOverride": True, "deregisterCriticalServiceAfter": "10m"},
            ),
            {"name": "onchange", "exec": ["echo", "upstreams rewritten"],
             "when": {"source": "watch.app", "each": "changed"}},
        ],
        "watches": [{"name": "app", "interval": 1}],
    }
    with Pilot(cfg) as p:
        p.until(lambda: passing(standin, "app") == [sid("app")], 10, "app passing")
        p.until(lambda: passing(standin, "nginx") == [sid("nginx")], 10, "nginx passing")
        bodies = {r.json["ID"]: r.body for r in standin.requests("PUT", "/v1/agent/service/register")}
        assert bodies[sid("app")] == (
            f'{{"ID":"{sid("app")}","Name":"app","Tags":["blue","v1"],"Port":8000,"Address":"127.0.0.1",'
            '"Check":{"TTL":"5s","Status":"passing","Notes":"TTL for app set by containerpilot"},'
            '"Checks":null}'
        ).encode()
        assert bodies[sid("nginx")] == (
            f'{{"ID":"{sid("nginx")}","Name":"nginx","Port":80,"Address":"127.0.0.1",'
            '"EnableTagOverride":true,"Check":{"TTL":"5s","Status":"warning",'
            '"Notes":"TTL for nginx set by containerpilot","DeregisterCriticalServiceAfter":"10m"},'
            '"Checks":null}'
        ).encode()
        p.wait_log("onchange upstreams rewritten")
        updates = standin.wait_for(
            lambda: standin.requests("PUT", f"/v1/agent/check/update/service:{sid('app')}"), 5
        )
        assert updates[0].body == b'{"Status":"passing","Output":"ok"}'
        watch = p.until(lambda: [w for w in p.status()["watches"] if w["instances"] == 1], 5, "watch status")
        assert watch[0]["name"] == "app"
        # the agent changes: a second instance elsewhere → changed again, once
        standin.add_remote_service("app", address="10.0.0.9", port=8000, service_id="app-other")
        p.until(lambda: p.count("onchange upstreams rewritten") == 2, 5, "a second changed")
        assert p.stop() == 0
        assert standin.services() == {}  # both deregistered at shutdown


def test_watch_state_is_per_tag_and_no_events_on_query_errors(standin: ConsulStandin) -> None:
    """CP kept one state per service name: two watches with different tags flapped. Not here."""
    standin.add_remote_service("db", service_id="db-1", tags=["primary"], address="10.0.0.1", port=5432)
    standin.add_remote_service("db", service_id="db-2", node="n2", tags=["replica"], address="10.0.0.2",
                               port=5432)
    cfg = {
        "consul": standin.address,
        "logging": {"level": "DEBUG"},
        "jobs": [{"name": "idle", "exec": "sleep 1000"}],
        "watches": [{"name": "db", "interval": 1, "tag": "primary"}, {"name": "db", "interval": 1,
                                                                      "tag": "replica"}],
    }
    with Pilot(cfg) as p:
        p.until(lambda: p.count("event: {StatusChanged watch.db}") == 2, 8, "one changed per watch")
        standin.fail_with(500)
        p.until(lambda: p.count("failed to query db") >= 2, 8, "query errors logged")
        standin.fail_with(None)
        p.until(lambda: p.count("works again") >= 2, 8, "recovery logged")
        polls = len(standin.requests("GET", "/v1/health/service/db"))
        p.until(lambda: len(standin.requests("GET", "/v1/health/service/db")) >= polls + 4, 8, "more polls")
        assert p.count("event: {StatusChanged watch.db}") == 2  # no flapping, nothing from the errors
        assert p.count("failed to query db") == 2  # once per watch per change of state, not per poll


def test_failing_check_marks_the_ttl_check_critical_at_once_then_passing_again(
    standin: ConsulStandin, tmp_path: Path
) -> None:
    """Issue 14: on the transition to unhealthy, one TTL update ``critical`` with the check's output
    (Consul stops routing now, not when the 30 s TTL lapses); nothing more while it stays unhealthy;
    passing again with the next passing check."""
    flag = tmp_path / "healthy"
    flag.write_text("")
    cfg = {"consul": standin.address,
           "jobs": [service_job("app", 8000, check=f"test -f {flag}", ttl=30)]}
    with Pilot(cfg) as p:
        check = f"service:{sid('app')}"
        update = f"/v1/agent/check/update/{check}"
        p.until(lambda: standin.check_status(check) == "passing", 10, "passing")
        flag.unlink()
        p.until(lambda: standin.check_status(check) == "critical", 5, "critical, without the TTL lapsing")
        critical = [r for r in standin.requests("PUT", update) if r.json["Status"] == "critical"]
        assert [r.body for r in critical] == [b'{"Status":"critical","Output":"check.app: exit status 1"}']
        assert standin.checks()[check]["Output"] == "check.app: exit status 1"
        n = len(standin.requests("PUT", update))
        p.until(lambda: p.count("check.app exited with error") >= 4, 10, "more failing checks")
        assert len(standin.requests("PUT", update)) == n  # nothing while the status holds
        flag.write_text("")
        p.until(lambda: standin.check_status(check) == "passing", 5, "passing again")
        assert standin.requests("PUT", update)[n].body == b'{"Status":"passing","Output":"ok"}'


def test_failing_check_of_a_service_never_registered_registers_nothing(standin: ConsulStandin) -> None:
    """A check that fails from the start: nothing routes to the service, so nothing is sent (as CP)."""
    cfg = {"consul": standin.address, "jobs": [service_job("app", 8000, check="false")]}
    with Pilot(cfg) as p:
        p.until(lambda: p.count("check.app exited with error") >= 3, 10, "failing checks")
        assert standin.requests("PUT") == []
        assert p.stop() == 0


def test_maintenance_deregisters_and_exit_registers_again(standin: ConsulStandin) -> None:
    """CP 3.8 left the service deregistered after maintenance (wasRegistered); we register again."""
    cfg = {"consul": standin.address, "jobs": [service_job("app", 8000)]}
    with Pilot(cfg) as p:
        p.until(lambda: passing(standin, "app"), 10, "registered")
        p.maintenance(True)
        standin.wait_for_request("PUT", f"/v1/agent/service/deregister/{sid('app')}")
        p.until(lambda: sid("app") not in standin.services(), 5, "deregistered")
        registers = len(standin.requests("PUT", "/v1/agent/service/register"))
        p.maintenance(False)
        p.until(lambda: passing(standin, "app") == [sid("app")], 10, "passing again after maintenance")
        assert len(standin.requests("PUT", "/v1/agent/service/register")) == registers + 1


def test_agent_losing_its_registrations_gets_them_back(standin: ConsulStandin) -> None:
    cfg = {"consul": standin.address, "jobs": [service_job("app", 8000), service_job("web", 8080)]}
    with Pilot(cfg) as p:
        p.until(lambda: passing(standin, "app") and passing(standin, "web"), 10, "registered")
        standin.lose_registrations(reset_index=True)
        p.until(lambda: passing(standin, "app") and passing(standin, "web"), 10, "registered again")
        assert p.count("does not have") >= 1


def test_envvars_with_consul_down() -> None:
    """CP test_envvars: jobs run and `healthy` fires while no agent answers; errors logged once."""
    cfg = {
        "consul": f"127.0.0.1:{free_port()}",
        "logging": {"level": "DEBUG"},
        "jobs": [
            service_job("testpid", 8000, exec_="sleep 30"),
            {**service_job("testenvvar", 8001, exec_="env"),
             "when": {"source": "testpid", "once": "healthy"}},
        ],
    }
    with Pilot(cfg) as p, p.pid1_probe() as probe:
        p.wait_log("CONTAINERPILOT_TESTENVVAR_IP=127.0.0.1")
        p.wait_log("CONTAINERPILOT_TESTPID_PID=")
        p.until(lambda: p.count("event: {StatusHealthy testpid}") >= 4, 10, "healthy, again and again")
        assert p.count("service registration failed: connection refused") == 1  # once, not per beat
        assert probe.count > 10 and probe.failed == 0 and probe.worst < PID1_STALL, vars(probe)
        assert p.stop() == 0
