"""Every endpoint's status codes and bodies: ContainerPilot 3's exactly (§8.1), pypilot's as documented."""

from __future__ import annotations

import orjson
import pytest

from tests.control.harness import ControlPilot, EventStream, wait_for

TEXT = "text/plain; charset=utf-8"
JSON_ACCEPT = {"Accept": "application/json"}
CP_POST = ["/v3/environ", "/v3/reload", "/v3/metric", "/v3/maintenance/enable", "/v3/maintenance/disable"]


def cp_ok(resp: tuple[int, dict[str, str], bytes]) -> None:
    code, headers, body = resp
    assert (code, body) == (200, b"\n"), resp
    assert headers["content-type"] == TEXT


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "FOO"])
def test_ping_answers_any_method(pilot: ControlPilot, method: str) -> None:
    code, headers, body = pilot.http(method, "/v3/ping")
    assert code == 200 and headers["content-type"] == TEXT
    assert body == (b"" if method == "HEAD" else b"\n")


@pytest.mark.parametrize("path", CP_POST)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO"])
def test_cp_post_endpoints_refuse_other_methods_with_cp_405(
    pilot: ControlPilot, path: str, method: str
) -> None:
    code, headers, body = pilot.http(method, path)
    assert (code, body) == (405, b"Method Not Allowed\n")
    assert headers["content-type"] == TEXT and headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/v3",
        "/v3/",
        "/v3/ping/",
        "/v3/environ/",
        "/v3/env",
        "/v2/reload",
        "/v3/maintenance",
        "/v3/jobs/keeper",
        "/v3/jobs/keeper/kill",
        "/v3/status/",
    ],
)
def test_unknown_paths_get_go_404(pilot: ControlPilot, path: str) -> None:
    for method in ("GET", "POST"):
        code, headers, body = pilot.http(method, path)
        assert (code, body) == (404, b"404 page not found\n"), path
        assert headers["content-type"] == TEXT


def spawned_env(pilot: ControlPilot) -> str:
    """What the envdump job prints when (re)started now: ``A=[…] B=[…] C=[…]`` (and BIG's length)."""
    before = len(pilot.log().splitlines())
    code, data = pilot.json("POST", "/v3/jobs/envdump/restart")
    assert code == 200, data
    new_lines = lambda: pilot.log().splitlines()[before:]  # noqa: E731
    line = wait_for(lambda: next((ln for ln in new_lines() if "envdump A=" in ln), None), 10, "envdump")
    return "A=" + str(line.split("envdump A=", 1)[1])


def test_environ_sets_and_is_seen_by_later_spawns(pilot: ControlPilot) -> None:
    cp_ok(pilot.http("POST", "/v3/environ", '{"CTL_A": "x=1", "CTL_B": null, "CTL_C": "null"}'))
    assert spawned_env(pilot) == "A=[x=1] B=[] C=[null] BIG=0"


@pytest.mark.parametrize(
    "body",
    [
        "",
        " ",
        "{",
        "[]",
        '"s"',
        "1",
        '{"A": 1}',
        '{"A": true}',
        '{"A": {"b": "c"}}',
        '{"A": ["x"]}',
        "{bad json}",
        '{"A": "x"} trailing',
        b"\xff\xfe",
    ],
)
def test_environ_rejects_bad_bodies_with_cp_422_and_changes_nothing(pilot: ControlPilot, body: str) -> None:
    cp_ok(pilot.http("POST", "/v3/environ", '{"CTL_A": "before", "CTL_B": "before", "CTL_C": "before"}'))
    code, headers, data = pilot.http(
        "POST", "/v3/environ", body if isinstance(body, bytes) else body.encode()
    )
    assert (code, data) == (422, b"Unprocessable Entity\n")
    assert headers["content-type"] == TEXT and headers["x-pypilot-error"]
    assert spawned_env(pilot) == "A=[before] B=[before] C=[before] BIG=0"  # a job spawned now sees no change


@pytest.mark.parametrize("body", ['{"": "x"}', '{"A=B": "x"}', '{"A": "x\\u0000y"}', '{"A\\u0000": "x"}'])
def test_environ_rejects_what_setenv_cannot_do(pilot: ControlPilot, body: str) -> None:
    code, headers, data = pilot.http("POST", "/v3/environ", body)
    assert (code, data) == (422, b"Unprocessable Entity\n")
    assert "x-pypilot-error" in headers


def test_environ_null_body_is_ok(pilot: ControlPilot) -> None:
    cp_ok(pilot.http("POST", "/v3/environ", "null"))
    cp_ok(pilot.http("POST", "/v3/environ", "{}"))


def test_metric_accepts_any_json_object_and_rejects_the_rest(pilot: ControlPilot) -> None:
    cp_ok(pilot.http("POST", "/v3/metric", '{"k": 1.0, "s": "2", "b": true, "n": null, "l": [1, 2]}'))
    cp_ok(pilot.http("POST", "/v3/metric", "null"))
    for bad in ("", "{", "[1]", "3", '"x"'):
        code, _, data = pilot.http("POST", "/v3/metric", bad)
        assert (code, data) == (422, b"Unprocessable Entity\n"), bad


def test_maintenance_enable_disable(pilot: ControlPilot) -> None:
    cp_ok(pilot.http("POST", "/v3/maintenance/enable", "ignored body"))
    status = pilot.status()
    assert status["maintenance"] is True
    assert all(j["status"] == "maintenance" for j in status["jobs"])
    cp_ok(pilot.http("POST", "/v3/maintenance/enable"))  # idempotent
    cp_ok(pilot.http("POST", "/v3/maintenance/disable"))
    assert pilot.status()["maintenance"] is False


def test_oversized_bodies_get_413_and_change_nothing(pilot: ControlPilot) -> None:
    big = b'{"CTL_BIG": "' + b"x" * (1 << 20) + b'"}'
    code, headers, data = pilot.http("POST", "/v3/environ", big)
    assert (code, data) == (413, b"Request Entity Too Large\n")
    assert "x-pypilot-error" in headers
    keeper = pilot.job("keeper")
    code, _, _ = pilot.http("POST", "/v3/jobs/keeper/signal", b'{"signal": "' + b"H" * (2 << 20) + b'"}')
    assert code == 413
    # nothing was set: a job started now does not see CTL_BIG, and the keeper was not signalled
    assert spawned_env(pilot).endswith(" BIG=0")
    assert pilot.job("keeper")["pid"] == keeper["pid"] and pilot.job("keeper")["runs"] == keeper["runs"]


def test_status_shape(pilot: ControlPilot) -> None:
    code, headers, body = pilot.http("GET", "/v3/status")
    assert code == 200 and headers["content-type"] == "application/json"
    data = orjson.loads(body)
    keeper = next(j for j in data["jobs"] if j["name"] == "keeper")
    assert keeper["state"] == "running" and keeper["pid"] > 0
    for key in ("status", "runs", "restarts", "lastExit", "backoffUntil"):
        assert key in keeper
    control = data["control"]
    assert control["socket"] == pilot.socket and control["workerPid"] > 0
    assert any(r["path"] == "/v3/status" and r["code"] == 200 for r in control["requests"])


def test_pypilot_paths_answer_json_405(pilot: ControlPilot) -> None:
    for method, path in (
        ("POST", "/v3/status"),
        ("DELETE", "/v3/events"),
        ("GET", "/v3/jobs/keeper/stop"),
        ("PUT", "/v3/openapi.json"),
    ):
        code, headers, body = pilot.http(method, path)
        assert code == 405 and headers["content-type"] == "application/json", (method, path)
        assert "error" in orjson.loads(body) and headers["allow"]


def test_request_counters_by_code_and_path(pilot: ControlPilot) -> None:
    def count(code: int, path: str) -> int:
        reqs = pilot.status()["control"]["requests"]
        return next((r["count"] for r in reqs if (r["code"], r["path"]) == (code, path)), 0)

    before_404, before_ping = count(404, "other"), count(200, "/v3/ping")
    pilot.http("GET", "/nope")
    pilot.http("GET", "/v3/ping")
    wait_for(
        lambda: count(404, "other") == before_404 + 1 and count(200, "/v3/ping") == before_ping + 1,
        5,
        "counters",
    )


def test_reload_without_changes_is_200_newline_for_cp_clients(pilot: ControlPilot) -> None:
    cp_ok(pilot.http("POST", "/v3/reload"))
    code, _, body = pilot.http("POST", "/v3/reload", headers={"Accept": "application/json"})
    assert code == 200 and orjson.loads(body)["reloaded"] is True


def test_metric_telemetry_would_ignore_is_cp_200_with_the_reason_and_422_for_json_clients() -> None:
    """#21: ``-putmetric name=abc`` and an undeclared metric answered a bare 200. ContainerPilot 3.8
    answers 200 ``\\n`` to both (checked with its binary), so a CP client still gets exactly that, with
    the reason in X-Pypilot-Error; a client that asks for JSON gets 422 and nothing is published."""
    import socket

    port = socket.create_server(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    metrics = [
        {"namespace": "ns", "subsystem": "s", "name": "g", "help": "h", "type": "gauge"},
        {"namespace": "ns", "subsystem": "s", "name": "c", "help": "h", "type": "counter"},
    ]
    telemetry = {"port": free, "interfaces": ["lo"], "metrics": metrics}
    with ControlPilot(extra={"telemetry": telemetry}) as p, EventStream(p.socket) as stream:
        for body, why in (
            ('{"name": "abc"}', "metric 'name' is not declared in telemetry.metrics"),
            ('{"ns_s_g": "abc"}', "metric 'ns_s_g' needs a number, got 'abc'"),
            ('{"ns_s_c": -1}', "metric 'ns_s_c' is a counter: it cannot decrease (got -1)"),
        ):
            code, headers, data = p.http("POST", "/v3/metric", body)
            assert (code, data, headers["x-pypilot-error"]) == (200, b"\n", why), body
            code, headers, data = p.http("POST", "/v3/metric", body, headers=JSON_ACCEPT)
            assert (code, orjson.loads(data), headers["x-pypilot-error"]) == (422, {"error": why}, why)
        code, headers, data = p.http("POST", "/v3/metric", '{"ns_s_g": 2}', headers=JSON_ACCEPT)
        assert (code, orjson.loads(data)) == (200, {"published": ["ns_s_g"]})
        assert "x-pypilot-error" not in headers
        cp_ok(p.http("POST", "/v3/metric", '{"ns_s_g": 3}'))
        p.http("POST", "/v3/maintenance/enable")  # a marker after them on the bus
        seen = []
        stream.wait_event(lambda d: seen.append(d) or d["code"] == "enterMaintenance")
        published = [d["source"] for d in seen if d["code"] == "metric"]
        # the CP answers published all three (as CP did; telemetry logs why it ignores them), the
        # strict ones nothing
        assert published == ["name|abc", "ns_s_g|abc", "ns_s_c|-1", "ns_s_g|2", "ns_s_g|3"]


def test_metric_without_telemetry_says_nothing_records_it(pilot: ControlPilot) -> None:
    code, headers, data = pilot.http("POST", "/v3/metric", '{"name": "abc"}')
    assert (code, data) == (200, b"\n")
    why = "metric 'name' is not recorded: the config declares no telemetry metrics"
    assert headers["x-pypilot-error"] == why
