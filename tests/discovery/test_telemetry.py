"""CP test_telemetry: a custom counter through a Metric event, /metrics with CP's own metric names,
/status with the services healthy, the `containerpilot` self-service in Consul and gone after stop;
against the stand-in and against the real agent (skipped with the reason when there is none)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.consul_standin import ConsulStandin
from tests.discovery.harness import LOCAL, Pilot, free_port, service_job, sid
from tests.real_consul import RealConsul


class Agent:
    """What the test asks of Consul, from the stand-in or the real agent."""

    def __init__(self, request: pytest.FixtureRequest, kind: str) -> None:
        self.fake: ConsulStandin | None = request.getfixturevalue("standin") if kind == "standin" else None
        self.real: RealConsul | None = request.getfixturevalue("agent") if kind == "agent" else None

    @property
    def address(self) -> str:
        return self.fake.address if self.fake else self.real.address  # type: ignore[union-attr]

    def add_remote(self, name: str, address: str, port: int) -> None:
        if self.fake:
            self.fake.add_remote_service(name, address=address, port=port)
        else:
            assert self.real is not None
            body = {"ID": f"{name}-1", "Name": name, "Address": address, "Port": port}
            assert self.real.put("/v1/agent/service/register", body)[0] == 200

    def instances(self, name: str, passing: bool = True) -> list[str]:
        if self.fake:
            return [e["Service"]["ID"] for e in self.fake.health(name, passing=passing)]
        assert self.real is not None
        return self.real.passing(name) if passing else sorted(self.real.services())

    def registration(self, name: str) -> tuple[Any, Any, Any]:
        """(Port, Address, TTL) as registered; TTL only from the stand-in (1.0.1 does not show it)."""
        if self.fake:
            reg = next(r.json for r in self.fake.requests("PUT", "/v1/agent/service/register")
                       if r.json["Name"] == name)
            return reg["Port"], reg["Address"], reg["Check"]["TTL"]
        assert self.real is not None
        svc = self.real.services()[sid(name)]
        return svc["Port"], svc["Address"], "15s"

    def services(self) -> dict[str, Any]:
        return self.fake.services() if self.fake else self.real.services()  # type: ignore[union-attr]


def get(url: str, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


@pytest.mark.parametrize("kind", ["standin", "agent"])
def test_telemetry(request: pytest.FixtureRequest, kind: str) -> None:
    consul = Agent(request, kind)
    consul.add_remote("otherapp", "10.0.0.3", 9000)
    port = free_port()
    metrics = [
        {"namespace": "containerpilot", "subsystem": "app", "name": "some_counter", "help": "c",
         "type": "counter"},
        {"name": "plain_gauge", "help": "only a name (CP matched it as __plain_gauge)", "type": "gauge"},
        {"name": "latency", "help": "h", "type": "histogram"},
        {"name": "sizes", "help": "s", "type": "summary"},
    ]
    cfg = {
        "consul": consul.address,
        "jobs": [service_job("app", 8000), {"name": "sensor", "exec": "true"}],
        "watches": [{"name": "otherapp", "interval": 1}],
        "telemetry": {"port": port, "interfaces": LOCAL, "metrics": metrics},
    }
    base = f"http://127.0.0.1:{port}"
    with Pilot(cfg) as p:
        p.until(lambda: consul.instances("containerpilot") == [sid("containerpilot")], 10, "self-service")
        assert consul.registration("containerpilot") == (port, "127.0.0.1", "15s")
        p.until(lambda: get(f"{base}/metrics")[0] == 200, 10, "/metrics")
        worker = p.worker_pids()
        p.metric({"containerpilot_app_some_counter": 42, "plain_gauge": 7, "latency": 0.3, "sizes": 12})
        p.metric({"containerpilot_app_some_counter": -1})  # CP crashed here
        p.until(lambda: p.count("counter cannot decrease") == 1, 5, "the negative value logged")
        text = p.until(lambda: (t := get(f"{base}/metrics")[1].decode()) and
                       "\ncontainerpilot_app_some_counter 42\n" in t and t, 10, "the counter at 42")
        assert "# TYPE containerpilot_app_some_counter counter" in text
        assert "\nplain_gauge 7\n" in text
        assert 'latency_bucket{le="0.5"} 1\n' in text and "\nlatency_count 1\n" in text
        assert 'sizes{quantile="0.5"} 12\n' in text
        p.until(lambda: 'containerpilot_watch_instances{service="otherapp"} 1\n' in
                get(f"{base}/metrics")[1].decode(), 5, "watch instances")
        text = get(f"{base}/metrics")[1].decode()
        assert 'containerpilot_events{code="StatusHealthy",source="app"}' in text
        assert 'containerpilot_control_http_requests{code="200",path="/v3/metric"} 2\n' in text
        assert "\nprocess_resident_memory_bytes " in text
        code, body = get(f"{base}/status")
        status = json.loads(body)
        assert code == 200 and body.endswith(b"}\n")  # as Go's json.Encoder wrote it
        assert status["Jobs"] == [{"Name": "sensor", "Status": "unknown"}]
        assert [(s["Name"], s["Status"]) for s in status["Services"]] == [
            ("app", "healthy"), ("containerpilot", "healthy")]
        assert status["Services"][1] == {"Name": "containerpilot", "Address": "127.0.0.1", "Port": port,
                                         "Status": "healthy"}
        assert status["Watches"] == ["otherapp"]
        assert get(f"{base}/status", "POST")[:2] == (405, b"Method Not Allowed\n")
        assert set(worker) <= set(p.worker_pids())  # the negative counter killed nothing
        assert p.stop() == 0
    assert consul.instances("containerpilot") == []
    assert set(consul.services()) <= {"otherapp-1"}  # ours deregistered; the other one is not ours


def test_telemetry_on_ipv6_answers_while_a_silent_client_holds_a_connection(standin: ConsulStandin) -> None:
    """A client that connects and sends nothing holds up no scrape (one is answered meanwhile) and is
    dropped after 10 s; the I/O worker never maps OpenSSL for an http agent (the unused helpers of
    prometheus-client were imported as placeholders)."""
    import socket
    import time

    port = free_port()
    cfg = {"consul": standin.address, "jobs": [{"name": "a", "exec": "sleep 600"}],
           "telemetry": {"port": port, "interfaces": ["static:::1"]}}
    with Pilot(cfg) as p:
        base = f"http://[::1]:{port}"
        p.until(lambda: get(f"{base}/metrics")[0] == 200, 10, "/metrics on ::1")
        silent = [socket.create_connection(("::1", port)) for _ in range(4)]
        try:
            code, body = get(f"{base}/metrics")
            assert code == 200 and b"\nprocess_resident_memory_bytes " in body
            assert get(f"{base}/nothing")[0] == 404
            silent[0].settimeout(15)
            start = time.monotonic()
            assert silent[0].recv(1) == b""  # closed by the server, not by us
            assert time.monotonic() - start < 13
        finally:
            for s in silent:
                s.close()
        for pid in p.worker_pids():
            with open(f"/proc/{pid}/maps") as f:
                assert "_ssl" not in f.read(), f"worker {pid} maps OpenSSL"
        assert p.stop() == 0
