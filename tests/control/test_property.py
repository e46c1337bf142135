"""Property-based run over the documented API: >= 1 000 generated requests (methods, paths, bodies
from the OpenAPI document and beyond it). None gets a 5xx or crashes the worker; every answer on a
documented route has a documented status; a rejected (4xx) request changes nothing."""

from __future__ import annotations

import string
from typing import Any
from urllib.parse import unquote

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pypilot.control.app import classify
from pypilot.control.openapi import DOCUMENT
from tests.control.harness import ControlPilot

N = 1100
METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "FOO"])
JOB_NAMES = st.one_of(
    st.sampled_from(["keeper", "nope", "", "%2F", "..", "a%20b"]),
    st.text(string.ascii_letters + string.digits + "-_.%", max_size=12),
)
SAFE_SIGNALS = st.one_of(
    st.sampled_from(["SIGWINCH", "winch", "SIGCONT", "SIGBOGUS", "", "SIG", "0", "65", "-1", "9x"]),
    st.integers(-5, 100).filter(lambda n: n <= 0 or n >= 65 or n in (18, 28)),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.text(max_size=3), max_size=2),
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def requests(draw: Any) -> tuple[str, str, bytes | None]:
    kind = draw(st.sampled_from(["cp", "job", "read", "junk"]))
    if kind == "cp":
        path = draw(
            st.sampled_from(
                [
                    "/v3/environ",
                    "/v3/metric",
                    "/v3/maintenance/enable",
                    "/v3/maintenance/disable",
                    "/v3/ping",
                    "/v3/reload",
                ]
            )
        )
    elif kind == "job":
        action = draw(st.sampled_from(["signal", "stop", "start", "restart"]))
        name = draw(JOB_NAMES)
        if name == "keeper" and action != "signal":
            name = "nope"  # a real stop/start would change state legitimately; those are tested elsewhere
        path = f"/v3/jobs/{name}/{action}"
    elif kind == "read":
        path = draw(st.sampled_from(["/v3/status", "/v3/openapi.json", "/v3/status/", "/v3/"]))
    else:
        path = "/" + draw(st.text(string.ascii_letters + string.digits + "/._-%", max_size=30))
    body_kind = draw(st.sampled_from(["none", "json", "signal", "bytes", "env"]))
    if body_kind == "none":
        body = None
    elif body_kind == "json":
        body = orjson.dumps(draw(JSON))
    elif body_kind == "signal":
        body = orjson.dumps({"signal": draw(SAFE_SIGNALS)})
    elif body_kind == "env":
        body = orjson.dumps(
            draw(
                st.dictionaries(
                    st.sampled_from(["PROP_A", "PROP=B", "", "PROP\x00"]),
                    st.one_of(st.none(), st.text(max_size=5), st.integers(-9, 9)),
                    max_size=3,
                )
            )
        )
    else:
        body = draw(st.binary(max_size=64))
    return draw(METHODS), path, body


def observable(p: ControlPilot) -> Any:
    s = p.status()
    return s["maintenance"], [(j["name"], j["pid"], j["state"], j["runs"]) for j in s["jobs"]]


def documented(method: str, path: str, code: int) -> bool:
    route = classify(unquote(path))  # the app routes on the decoded path (WSGI PATH_INFO)
    if route is None:
        return code == 404
    item = DOCUMENT["paths"][route.label]
    if method == "HEAD" and "head" not in item:
        method = "GET"
    op = item.get(method.lower())
    if op is None:  # not an operation of this path: CP's 405 (ping takes every method)
        return code == 405 or (path == "/v3/ping" and code == 200)
    return str(code) in op["responses"]


def test_generated_requests_never_5xx_never_crash_and_rejections_change_nothing() -> None:
    with ControlPilot() as p:
        worker = p.status()["control"]["workerPid"]
        seen: dict[int, int] = {}

        @settings(
            max_examples=N,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(requests())
        def run(req: tuple[str, str, bytes | None]) -> None:
            method, path, body = req
            before = observable(p)
            code, _, _ = p.http(method, path, body)
            seen[code] = seen.get(code, 0) + 1
            assert code < 500, (method, path, body, code)
            assert documented(method, path, code), (method, path, body, code)
            if 400 <= code < 500:
                assert observable(p) == before, (method, path, body, code)

        run()
        assert sum(seen.values()) >= 1000
        assert {200, 404, 405, 422} <= set(seen), seen
        status = p.status()
        assert status["control"]["workerPid"] == worker and status["control"]["workerRestarts"] == 0
        assert p.alive()
