"""CP test_telemetry: a custom counter through a Metric event, /metrics with CP's own metric names,
/status with the services healthy, the `containerpilot` self-service in Consul and gone after stop."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.consul_standin import ConsulStandin
from tests.discovery.harness import LOCAL, Pilot, free_port, service_job, sid


def get(url: str, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def test_telemetry(standin: ConsulStandin) -> None:
    standin.add_remote_service("otherapp", address="10.0.0.3", port=9000)
    port = free_port()
    metrics = [
        {"namespace": "containerpilot", "subsystem": "app", "name": "some_counter", "help": "c",
         "type": "counter"},
        {"name": "plain_gauge", "help": "only a name (CP matched it as __plain_gauge)", "type": "gauge"},
        {"name": "latency", "help": "h", "type": "histogram"},
        {"name": "sizes", "help": "s", "type": "summary"},
    ]
    cfg = {
        "consul": standin.address,
        "jobs": [service_job("app", 8000), {"name": "sensor", "exec": "true"}],
        "watches": [{"name": "otherapp", "interval": 1}],
        "telemetry": {"port": port, "interfaces": LOCAL, "metrics": metrics},
    }
    base = f"http://127.0.0.1:{port}"
    with Pilot(cfg) as p:
        p.until(lambda: [e for e in standin.health("containerpilot", passing=True)], 10, "self-service")
        assert [e["Service"]["ID"] for e in standin.health("containerpilot")] == [sid("containerpilot")]
        reg = next(r.json for r in standin.requests("PUT", "/v1/agent/service/register")
                   if r.json["Name"] == "containerpilot")
        assert (reg["Port"], reg["Address"], reg["Check"]["TTL"]) == (port, "127.0.0.1", "15s")
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
        assert code == 200
        assert status["Jobs"] == [{"Name": "sensor", "Status": "unknown"}]
        assert [(s["Name"], s["Status"]) for s in status["Services"]] == [
            ("app", "healthy"), ("containerpilot", "healthy")]
        assert status["Services"][1] == {"Name": "containerpilot", "Address": "127.0.0.1", "Port": port,
                                         "Status": "healthy"}
        assert status["Watches"] == ["otherapp"]
        assert get(f"{base}/status", "POST")[0] == 405
        assert set(worker) <= set(p.worker_pids())  # the negative counter killed nothing
        assert p.stop() == 0
    assert standin.health("containerpilot") == []
    assert standin.services() == {}
