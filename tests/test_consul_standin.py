"""Tests of the Consul stand-in (tests/consul_standin.py), driven through the real py-consul client.

They pin the Consul behaviour pypilot relies on: body shapes and error codes, TTL and
deregistration semantics, maintenance, blocking queries, filters, tokens, the outage knobs, TLS,
and process mode with its /_standin/ control paths.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import consul
import pytest
import requests
from consul.exceptions import ConsulException

from tests.consul_standin import (
    ConsulStandin,
    format_go_duration,
    make_self_signed_cert,
    parse_go_duration,
    start_process,
)


@pytest.fixture(autouse=True)
def _no_consul_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONSUL_HTTP_TOKEN", "CONSUL_HTTP_ADDR", "CONSUL_HTTP_SSL", "CONSUL_HTTP_SSL_VERIFY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def standin() -> Iterator[ConsulStandin]:
    with ConsulStandin() as fake:
        yield fake


def client(fake: ConsulStandin, **kwargs: Any) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=fake.port, **kwargs)


def register_web(c: consul.Consul, sid: str = "web-1", **check: Any) -> bool:
    return c.agent.service.register(
        "web",
        service_id=sid,
        address="10.0.0.1",
        port=8080,
        tags=["blue"],
        check={"CheckID": f"service:{sid}", "TTL": "10s", **check},
    )


def passing_ids(c: consul.Consul, name: str = "web", **kw: Any) -> list[str]:
    _index, nodes = c.health.service(name, passing=True, **kw)
    return [n["Service"]["ID"] for n in nodes]


def put(fake: ConsulStandin, path: str, body: Any = None, raw: bytes | None = None) -> requests.Response:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    return requests.put(f"{fake.url}{path}", data=data, timeout=5)


# -- registration and TTL checks --------------------------------------------------------------


def test_ttl_check_starts_critical_and_passes_after_update(standin: ConsulStandin) -> None:
    c = client(standin)
    assert register_web(c) is True
    assert passing_ids(c) == []
    _index, nodes = c.health.service("web")
    assert [ch["Status"] for ch in nodes[0]["Checks"]] == ["passing", "critical"]  # serfHealth, then ours
    service = nodes[0]["Service"]
    assert (service["ID"], service["Service"], service["Address"], service["Port"]) == (
        "web-1",
        "web",
        "10.0.0.1",
        8080,
    )
    assert c.agent.check.ttl_pass("service:web-1", notes="all good") is True
    assert passing_ids(c) == ["web-1"]
    assert c.agent.checks()["service:web-1"]["Output"] == "all good"
    assert c.agent.check.ttl_warn("service:web-1") is True
    assert passing_ids(c) == []
    assert standin.check_status("service:web-1") == "warning"


def test_initial_status_and_defaults(standin: ConsulStandin) -> None:
    c = client(standin)
    c.agent.service.register("db", check={"TTL": "5s", "Status": "passing", "Notes": "n"})
    assert passing_ids(c, "db") == ["db"]  # ID defaults to the name
    check = c.agent.checks()["service:db"]  # CheckID defaults to service:<id>
    assert (check["Name"], check["Notes"], check["Status"]) == ("Service 'db' check", "n", "passing")
    c.agent.service.register("multi", check={"TTL": "5s"}, extra_checks=[{"TTL": "1m30s", "Name": "second"}])
    checks = c.agent.checks()
    assert {"service:multi:1", "service:multi:2"} <= set(checks)


def test_check_update_endpoint(standin: ConsulStandin) -> None:
    c = client(standin)
    register_web(c)
    assert put(standin, "/v1/agent/check/update/service:web-1", {"Status": "passing", "Output": "ok"}).ok
    assert passing_ids(c) == ["web-1"]
    assert c.agent.checks()["service:web-1"]["Output"] == "ok"
    bad = put(standin, "/v1/agent/check/update/service:web-1", {"Status": "fine"})
    assert (bad.status_code, bad.text) == (400, "Invalid check status: 'fine'")
    bad = put(standin, "/v1/agent/check/update/service:web-1", {"Status": "passing", "Note": "x"})
    assert (bad.status_code, bad.text) == (400, 'Request decode failed: json: unknown field "Note"')
    missing = put(standin, "/v1/agent/check/update/nope", {"Status": "passing"})  # as Consul 1.0.1
    assert (missing.status_code, missing.text) == (500, 'CheckID "nope" does not have associated TTL')


def test_ttl_lapses_to_critical_on_virtual_time(standin: ConsulStandin) -> None:
    c = client(standin)
    register_web(c)
    c.agent.check.ttl_pass("service:web-1", notes="fine")
    standin.advance(9)
    assert passing_ids(c) == ["web-1"]
    standin.advance(2)
    check = c.agent.checks()["service:web-1"]
    assert check["Status"] == "critical"
    assert check["Output"] == "TTL expired (last output before timeout follows): fine"
    assert passing_ids(c) == []
    c.agent.check.ttl_pass("service:web-1")  # an update re-arms the TTL
    assert passing_ids(c) == ["web-1"]


def test_ttl_lapses_in_real_time(standin: ConsulStandin) -> None:
    c = client(standin)
    c.agent.service.register("fast", check={"TTL": "200ms", "Status": "passing"})
    standin.wait_for(lambda: standin.check_status("service:fast") == "critical", timeout=3)


def test_deregister_critical_service_after(standin: ConsulStandin) -> None:
    c = client(standin)
    register_web(c, DeregisterCriticalServiceAfter="90s")
    register_web(c, sid="web-2", DeregisterCriticalServiceAfter="5s")  # below Consul's 1 min minimum
    standin.advance(59)
    assert set(c.agent.services()) == {"web-1", "web-2"}
    standin.advance(2)
    assert set(c.agent.services()) == {"web-1"}
    assert "service:web-2" not in c.agent.checks()
    c.agent.check.ttl_pass("service:web-1")  # passing stops the clock...
    standin.advance(60)
    assert set(c.agent.services()) == {"web-1"}  # ...and the TTL lapse restarts it
    standin.advance(89)
    assert set(c.agent.services()) == {"web-1"}
    standin.advance(2)
    assert c.agent.services() == {}
    assert passing_ids(c) == [] and c.health.service("web")[1] == []


def test_time_speed_knob(standin: ConsulStandin) -> None:
    c = client(standin)
    c.agent.service.register("quick", check={"TTL": "1s", "DeregisterCriticalServiceAfter": "1m"})
    standin.set_time_speed(200)
    standin.wait_for(lambda: "quick" not in standin.services(), timeout=3)


def test_reregistration_keeps_check_state_and_replace_existing_checks(standin: ConsulStandin) -> None:
    c = client(standin)
    c.agent.service.register(
        "web",
        service_id="web-1",
        check={"CheckID": "a", "TTL": "10s"},
        extra_checks=[{"CheckID": "b", "TTL": "1m"}],
    )
    c.agent.check.ttl_pass("a")
    c.agent.check.ttl_pass("b")
    index_before = c.health.service("web")[0]
    c.agent.service.register(
        "web",
        service_id="web-1",
        check={"CheckID": "a", "TTL": "10s"},
        extra_checks=[{"CheckID": "b", "TTL": "1m"}],
    )
    assert c.health.service("web")[0] == index_before  # an identical registration changes nothing
    assert passing_ids(c) == ["web-1"]
    c.agent.service.register(
        "web", service_id="web-1", check={"CheckID": "a", "TTL": "10s"}, replace_existing_checks=True
    )
    assert set(c.agent.checks()) == {"a"}
    assert c.agent.checks()["a"]["Status"] == "passing"


def test_deregister(standin: ConsulStandin) -> None:
    c = client(standin)
    register_web(c)
    assert c.agent.service.deregister("web-1") is True
    assert c.agent.services() == {} and c.agent.checks() == {}
    assert c.agent.service.deregister("web-1") is True  # Consul 1.0.1: removing nothing is a 200
    log = standin.requests("PUT", "/v1/agent/service/deregister/web-1")
    assert (log[-1].status, log[-1].response_body) == (200, "")
    with pytest.raises(ConsulException, match="does not have associated TTL"):
        c.agent.check.ttl_pass("service:web-1")


def test_maintenance(standin: ConsulStandin) -> None:
    c = client(standin)
    register_web(c, Status="passing")
    assert c.agent.service.maintenance("web-1", True, reason="upgrading") is True
    assert passing_ids(c) == []
    check = c.agent.checks()["_service_maintenance:web-1"]
    assert (check["Status"], check["Notes"], check["Name"]) == (
        "critical",
        "upgrading",
        "Service Maintenance Mode",
    )
    assert c.agent.service.maintenance("web-1", False) is True
    assert passing_ids(c) == ["web-1"]
    assert c.agent.service.maintenance("nope", True) is False  # 404 No service registered with ID
    assert put(standin, "/v1/agent/service/maintenance/web-1").text == "Missing value for enable"
    bad = put(standin, "/v1/agent/service/maintenance/web-1?enable=yes")
    assert (bad.status_code, bad.text) == (400, 'Invalid value for enable: "yes"')
    c.agent.maintenance(True)  # node maintenance takes every service on the node out
    assert passing_ids(c) == []
    c.agent.maintenance(False)
    assert passing_ids(c) == ["web-1"]


# -- health queries ---------------------------------------------------------------------------


def test_blocking_query_wakes_on_change_and_times_out(standin: ConsulStandin) -> None:
    c = client(standin)
    register_web(c)
    index, _ = c.health.service("web", passing=True)
    response = requests.get(f"{standin.url}/v1/health/service/web?passing=1", timeout=5)
    assert response.headers["X-Consul-Index"] == index
    assert response.headers["X-Consul-KnownLeader"] == "true"
    assert response.headers["X-Consul-LastContact"] == "0"

    result: dict[str, Any] = {}

    def block() -> None:
        start = time.monotonic()
        result["index"], result["nodes"] = c.health.service("web", passing=True, index=index, wait="5s")
        result["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=block)
    thread.start()
    standin.wait_for(lambda: standin.blocked_queries == 1, timeout=2)
    c.agent.check.ttl_pass("service:web-1")
    thread.join(timeout=5)
    assert result["elapsed"] < 2
    assert int(result["index"]) > int(index)
    assert [n["Service"]["ID"] for n in result["nodes"]] == ["web-1"]

    start = time.monotonic()
    same_index, nodes = c.health.service("web", passing=True, index=result["index"], wait="300ms")
    elapsed = time.monotonic() - start
    assert same_index == result["index"] and len(nodes) == 1
    assert 0.29 <= elapsed < 0.3 * 17 / 16 + 0.3  # wait plus at most wait/16 of jitter

    bad = requests.get(f"{standin.url}/v1/health/service/web?index=1&wait=5", timeout=5)
    assert (bad.status_code, bad.text) == (400, "Invalid wait time")
    bad = requests.get(f"{standin.url}/v1/health/service/web?index=x", timeout=5)
    assert (bad.status_code, bad.text) == (400, "Invalid index")
    bad = requests.get(f"{standin.url}/v1/health/service/web?passing=maybe", timeout=5)
    assert (bad.status_code, bad.text) == (400, "Invalid value for ?passing")


def test_tag_and_dc_filters(standin: ConsulStandin) -> None:
    c = client(standin)
    c.agent.service.register(
        "app", service_id="app-1", tags=["blue", "v1"], check={"TTL": "9s", "Status": "passing"}
    )
    c.agent.service.register(
        "app", service_id="app-2", tags=["green"], check={"TTL": "9s", "Status": "passing"}
    )
    standin.add_remote_service("app", node="node-b", address="10.0.0.9", port=81, tags=["blue"])
    assert sorted(passing_ids(c, "app")) == ["app", "app-1", "app-2"]
    assert sorted(passing_ids(c, "app", tag="blue")) == ["app", "app-1"]
    assert passing_ids(c, "app", tag=["BLUE", "v1"]) == ["app-1"]  # every tag must match, any case
    standin.set_remote_status("app", "critical", node="node-b")
    assert sorted(passing_ids(c, "app", tag="blue")) == ["app-1"]

    standin.add_remote_service("app", datacenter="dc2", node="far", address="10.9.9.9", port=90)
    _index, nodes = c.health.service("app", passing=True, dc="dc2")
    assert [(n["Node"]["Node"], n["Node"]["Datacenter"], n["Service"]["Port"]) for n in nodes] == [
        ("far", "dc2", 90)
    ]
    with pytest.raises(consul.ConsulException, match="No path to datacenter"):
        c.health.service("app", dc="nowhere")

    _index, catalog = c.catalog.services()
    assert catalog == {"app": ["blue", "v1", "green"]}
    _index, entries = c.catalog.service("app", tag="green")
    assert [(e["ServiceID"], e["ServiceAddress"], e["Node"]) for e in entries] == [
        ("app-2", "", "standin-node")
    ]


# -- request validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"Name": "x", "Colour": "red"}, 400, 'Request decode failed: json: unknown field "Colour"'),
        (
            {"Name": "x", "Port": "80"},
            400,
            "Request decode failed: json: cannot unmarshal string into Go struct field "
            "structs.ServiceDefinition.Port of type int",
        ),
        (
            {"Name": "x", "Port": 80.5},
            400,
            "Request decode failed: json: cannot unmarshal number 80.5 into Go struct field "
            "structs.ServiceDefinition.Port of type int",
        ),
        ({"Name": "x", "Tags": "a"}, 400, "cannot unmarshal string into Go struct field"),
        ({"Name": "x", "Check": {"ID": "c", "TTL": "5s"}}, 400, 'json: unknown field "ID"'),
        (
            {"Name": "x", "Check": {"TTL": "10"}},
            400,
            'Request decode failed: time: missing unit in duration "10"',
        ),
        ({"Name": "x", "Check": {"TTL": "5s", "Interval": "5s"}}, 400, "Invalid check: Interval and TTL"),
        (
            {"Name": "x", "Checks": [{"Notes": "no ttl"}]},
            400,
            "Invalid check: TTL must be > 0 for TTL checks",
        ),
        ({"Name": "x", "Check": {"TTL": "5s", "Status": "ok"}}, 400, "Status for checks must 'passing'"),
        ({"Name": "x", "EnableTagOverride": "yes"}, 400, "of type bool"),
        ({"Name": "x", "Meta": {"consul-x": "1"}}, 400, "Invalid Service Meta"),
        ({"Name": "x", "Address": "0.0.0.0"}, 400, "Invalid service address"),
        ({"ID": "x"}, 400, "Missing service name"),
        (None, 400, "Request decode failed: EOF"),
        # accepted: Go matches field names case-insensitively; Consul's snake_case aliases
        ({"name": "x", "checks": [{"ttl": "5s", "deregister_critical_service_after": "1m"}]}, 200, ""),
        ({"Name": "x", "enable_tag_override": True, "Check": {"TTL": "5s", "ServiceID": "x"}}, 200, ""),
    ],
)
def test_register_body_validation(standin: ConsulStandin, body: Any, status: int, text: str) -> None:
    response = put(standin, "/v1/agent/service/register", body)
    assert response.status_code == status
    assert text in response.text
    if status == 400:
        assert standin.services() == {}


def test_bad_json_and_methods(standin: ConsulStandin) -> None:
    response = put(standin, "/v1/agent/service/register", raw=b'{"Name": "x",')
    assert (response.status_code, response.text) == (400, "Request decode failed: unexpected EOF")
    response = put(standin, "/v1/agent/service/register", raw=b"{nope}")
    assert response.status_code == 400 and response.text.startswith(
        "Request decode failed: invalid character"
    )
    response = requests.get(f"{standin.url}/v1/agent/service/register", timeout=5)
    assert (response.status_code, response.text) == (405, "method GET not allowed")
    assert response.headers["Allow"] == "OPTIONS,PUT"
    response = requests.get(f"{standin.url}/v1/agent/check/pass/x", timeout=5)  # PUT only since Consul 1.0
    assert response.status_code == 405
    response = requests.get(f"{standin.url}/v1/nothing/here", timeout=5)
    assert (response.status_code, response.text) == (
        404,
        "Invalid URL path: not a recognized HTTP API endpoint\n",
    )
    with pytest.raises(consul.base.ConsulException, match="filter"):
        client(standin).agent.services(filter_expr="Service == web")


def test_register_via_py_consul_shapes(standin: ConsulStandin) -> None:
    """py-consul sends lowercase keys ("name", "checks", "enabletagoverride"): real Consul takes them."""
    c = client(standin)
    assert c.agent.service.register(
        "api",
        service_id="api-host",
        address="10.1.1.1",
        port=9000,
        tags=["t"],
        meta={"version": "1"},
        enable_tag_override=True,
        check=consul.Check.ttl("5s"),
        weights={"Passing": 2, "Warning": 1},
    )
    body = standin.requests("PUT", "/v1/agent/service/register")[-1].json
    assert body["name"] == "api" and body["enabletagoverride"] is True
    service = c.agent.services()["api-host"]
    assert service["EnableTagOverride"] is True and service["Meta"] == {"version": "1"}
    assert service["Weights"] == {"Passing": 2, "Warning": 1}


# -- tokens -----------------------------------------------------------------------------------


def test_tokens_recorded_and_required(standin: ConsulStandin) -> None:
    c = client(standin, token="s3cret")
    register_web(c)
    assert standin.requests("PUT", "/v1/agent/service/register")[-1].token == "s3cret"
    assert standin.requests()[-1].headers["X-Consul-Token"] == "s3cret"
    requests.get(
        f"{standin.url}/v1/agent/services?token=fromquery", headers={"X-Consul-Token": "h"}, timeout=5
    )
    assert standin.requests()[-1].token == "fromquery"  # ?token wins, like Consul

    standin.require_tokens({"s3cret"})
    assert c.agent.check.ttl_pass("service:web-1") is True
    with pytest.raises(consul.ACLPermissionDenied, match="ACL not found"):
        client(standin, token="wrong").agent.services()
    anonymous = client(standin)
    with pytest.raises(consul.ACLPermissionDenied, match="Permission denied"):
        register_web(anonymous, sid="web-2")
    assert anonymous.health.service("web")[1] == []  # reads are filtered, not refused
    assert len(c.health.service("web")[1]) == 1
    standin.require_tokens(None)
    assert len(anonymous.health.service("web")[1]) == 1


# -- outage knobs -----------------------------------------------------------------------------


def test_down_and_back_on_same_port(standin: ConsulStandin) -> None:
    c = client(standin)
    register_web(c)
    port = standin.port
    standin.go_down()
    with pytest.raises(requests.exceptions.ConnectionError):
        c.agent.services()
    standin.come_up()
    assert standin.port == port
    assert set(c.agent.services()) == {"web-1"}  # the agent kept its registrations


def test_down_resets_an_inflight_blocking_query(standin: ConsulStandin) -> None:
    c = client(standin)
    index, _ = c.health.service("web")
    errors: list[Exception] = []

    def block() -> None:
        try:
            c.health.service("web", index=index, wait="10s")
        except Exception as err:
            errors.append(err)

    thread = threading.Thread(target=block)
    start = time.monotonic()
    thread.start()
    standin.wait_for(lambda: standin.blocked_queries == 1, timeout=2)
    standin.go_down(for_seconds=0.3)
    thread.join(timeout=5)
    assert time.monotonic() - start < 2
    assert errors and isinstance(errors[0], requests.exceptions.ConnectionError)
    standin.wait_for(lambda: standin.is_up, timeout=3)
    assert c.agent.services() == {}


def test_fail_slow_and_garbage(standin: ConsulStandin) -> None:
    c = client(standin)
    standin.fail_with(500)
    with pytest.raises(consul.ConsulException, match="500"):
        c.agent.services()
    with pytest.raises(consul.ConsulException, match="500"):
        register_web(c)
    standin.fail_with(None)
    assert register_web(c) is True

    standin.set_delay(0.5)
    impatient = client(standin, connections_timeout=0.1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        impatient.agent.services()
    start = time.monotonic()
    assert set(c.agent.services()) == {"web-1"}
    assert time.monotonic() - start >= 0.5
    standin.set_delay(0)

    standin.set_garbage(True)
    with pytest.raises(consul.ConsulException, match="Failed to decode JSON"):
        c.health.service("web")
    with pytest.raises(consul.ConsulException, match="Failed to decode JSON"):
        c.agent.services()
    standin.set_garbage(False)
    assert [r.status for r in standin.requests("GET", "/v1/agent/services")] == [500, 200, 200, 200]


def test_lose_registrations(standin: ConsulStandin) -> None:
    c = client(standin)
    register_web(c)
    index, _ = c.health.service("web")
    standin.lose_registrations()
    assert c.agent.services() == {}
    with pytest.raises(ConsulException, match=r"^500 .*does not have associated TTL"):  # must re-register
        c.agent.check.ttl_pass("service:web-1")
    new_index, nodes = c.health.service("web")
    assert nodes == [] and int(new_index) > int(index)
    register_web(c)
    standin.lose_registrations(reset_index=True)
    assert int(c.health.service("web")[0]) < int(index)  # a client must reset an index that went back


# -- TLS and process mode ---------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_with_self_signed_cert(tmp_path: Path) -> None:
    cert, key = make_self_signed_cert(tmp_path)
    with ConsulStandin(tls=(cert, key)) as fake:
        assert fake.url.startswith("https://")
        c = client(fake, scheme="https", verify=str(cert))
        assert register_web(c) is True
        assert set(c.agent.services()) == {"web-1"}
        with pytest.raises(requests.exceptions.SSLError):
            client(fake, scheme="https", verify=True).agent.services()
        assert client(fake, scheme="https", verify=False).agent.self()["Config"]["Datacenter"] == "dc1"
        with pytest.raises(requests.exceptions.ConnectionError):
            client(fake, scheme="http").agent.services()


def test_tls_client_certificate_required(tmp_path: Path) -> None:
    cert, key = make_self_signed_cert(tmp_path)
    with ConsulStandin(tls=(cert, key), tls_client_ca=cert) as fake:
        c = client(fake, scheme="https", verify=str(cert), cert=(str(cert), str(key)))
        assert c.agent.self()["Config"]["NodeName"] == "standin-node"
        with pytest.raises(requests.exceptions.ConnectionError):  # SSLError is one
            client(fake, scheme="https", verify=str(cert)).agent.self()


def test_process_mode_and_control_paths() -> None:
    with start_process("--datacenter", "dc7") as proc:
        host, port = proc.address.split(":")
        c = consul.Consul(host=host, port=int(port))
        assert c.agent.self()["Config"]["Datacenter"] == "dc7"
        register_web(c)
        state = proc.control.state()
        assert (
            set(state["services"]) == {"web-1"} and state["checks"]["service:web-1"]["Status"] == "critical"
        )
        proc.control.advance(60)
        assert proc.control.requests()[-1]["path"] == "/v1/agent/service/register"

        proc.control.fail_with(500)
        with pytest.raises(consul.ConsulException, match="500"):
            c.agent.services()
        proc.control.fail_with(None)
        proc.control.go_down()
        with pytest.raises(requests.exceptions.ConnectionError):
            c.agent.services()
        proc.control.come_up()
        assert set(c.agent.services()) == {"web-1"}
        proc.control.lose_registrations()
        assert c.agent.services() == {}
        proc.control.add_remote_service("db", node="n2", address="10.2.2.2", port=5432)
        assert [n["Service"]["Port"] for n in c.health.service("db", passing=True)[1]] == [5432]
        # the API port serves the control paths too
        assert requests.get(f"http://{proc.address}/_standin/state", timeout=5).json()["up"] is True
    assert proc.proc.returncode == 0


# -- Go duration helpers ----------------------------------------------------------------------


def test_go_durations() -> None:
    assert parse_go_duration("10s") == 10
    assert parse_go_duration("1m30s") == 90
    assert parse_go_duration("1.5h") == 5400
    assert parse_go_duration("250ms") == pytest.approx(0.25)
    assert parse_go_duration("0") == 0
    for bad in ("", "10", "s", "5x", "1.s5"):
        with pytest.raises(ValueError):
            parse_go_duration(bad)
    assert [format_go_duration(s) for s in (0, 0.5, 10, 90, 3600, 1.5)] == [
        "0s",
        "500ms",
        "10s",
        "1m30s",
        "1h0m0s",
        "1.5s",
    ]
