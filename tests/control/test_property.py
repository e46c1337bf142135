"""Property-based run over the documented API: >= 1 000 generated requests (methods, paths, bodies
from the OpenAPI document and beyond it). None gets a 5xx or crashes the worker; every answer on a
documented route has a documented status; a rejected (4xx) request changes nothing: not the jobs,
not maintenance, not the environment later spawns see, not the metrics published.

The right answer is decided here, from the OpenAPI document's paths and a model of what environ and
metric accept, never by the product's own routing or validation."""

from __future__ import annotations

import re
import string
from typing import Any
from urllib.parse import unquote

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pypilot.control.openapi import DOCUMENT
from tests.control.harness import KEEPER, ControlPilot, EventStream, wait_for

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


ENVDUMP = {
    "name": "envdump",
    "exec": [
        "sh",
        "-c",
        # hex, so that any value comes out on one line
        'echo "envdump ${PROP_A+set}<$(printf %s "$PROP_A" | od -An -tx1 | tr -d " \\n")>"; exec sleep 1000',
    ],
    "restarts": "unlimited",
}


DUMPED = re.compile(r"envdump (set)?<([0-9a-f]*)>")


def observable(p: ControlPilot) -> Any:
    s = p.status()
    keeper = next(j for j in s["jobs"] if j["name"] == "keeper")
    return s["maintenance"], (keeper["pid"], keeper["state"], keeper["runs"])


def spawn_env(p: ControlPilot) -> str | None:
    """``$PROP_A`` as a job spawned now sees it (None if it is not set)."""
    before = len(p.log().splitlines())
    code, _ = p.json("POST", "/v3/jobs/envdump/restart")
    assert code == 200
    m = wait_for(
        lambda: next(filter(None, map(DUMPED.search, p.log().splitlines()[before:])), None), 10, "envdump"
    )
    return bytes.fromhex(m.group(2)).decode() if m.group(1) else None


def route_of(path: str) -> str | None:
    """The documented path template ``path`` matches (``{name}``: one non-empty segment)."""
    segments = unquote(path).split("/")  # the app routes on the decoded path (WSGI PATH_INFO)
    for template in DOCUMENT["paths"]:
        want = template.split("/")
        if len(want) == len(segments) and all(
            w == s or (w.startswith("{") and s) for w, s in zip(want, segments, strict=True)
        ):
            return str(template)
    return None


def expected_environ(body: bytes | None) -> tuple[int, dict[str, str] | None]:
    """CP's rule, restated: a JSON object (or null) of strings or nulls, names setenv can take."""
    try:
        data = orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        return 422, None
    if data is None:
        return 200, {}
    if not isinstance(data, dict):
        return 422, None
    env = {}
    for k, v in data.items():
        if v is not None and not isinstance(v, str):
            return 422, None
        v = v or ""
        if not k or "=" in k or "\0" in k or "\0" in v or any(0xD800 <= ord(c) <= 0xDFFF for c in k + v):
            return 422, None
        env[k] = v
    return 200, env


def expected_metric(body: bytes | None) -> tuple[int, list[str]]:
    try:
        data = orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        return 422, []
    if data is None:
        return 200, []
    return (200, list(data)) if isinstance(data, dict) else (422, [])


def documented(method: str, path: str, code: int) -> bool:
    label = route_of(path)
    if label is None:
        return code == 404
    item = DOCUMENT["paths"][label]
    if method == "HEAD" and "head" not in item:
        method = "GET"
    op = item.get(method.lower())
    if op is None:  # not an operation of this path: CP's 405 (ping takes every method)
        return code == 405 or (path == "/v3/ping" and code == 200)
    return str(code) in op["responses"]


def test_generated_requests_never_5xx_never_crash_and_rejections_change_nothing() -> None:
    with ControlPilot(jobs=[KEEPER, ENVDUMP]) as p, EventStream(p.socket) as stream:
        worker = p.status()["control"]["workerPid"]
        seen: dict[int, int] = {}
        env_model = {"PROP_A": spawn_env(p)}
        assert env_model["PROP_A"] is None
        metrics_model: list[str] = []

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
            label = route_of(path)
            if method == "POST" and label == "/v3/environ":
                want, env = expected_environ(body)
                assert code == want, (body, code)
                if env is not None and "PROP_A" in env:
                    env_model["PROP_A"] = env["PROP_A"]
                if body and b"PROP_A" in body:  # the job spawned next sees exactly the model's value
                    assert spawn_env(p) == env_model["PROP_A"], (body, code)
            elif method == "POST" and label == "/v3/metric":
                want, keys = expected_metric(body)
                assert code == want, (body, code)
                metrics_model.extend(keys)

        run()
        assert sum(seen.values()) >= 1000
        assert {200, 404, 405, 422} <= set(seen), seen
        # every metric published came from an accepted request, in order, and nothing else
        assert p.http("POST", "/v3/metric", '{"end-of-run": 1}')[0] == 200
        events = []
        while not (event := stream.next_event()["data"])["source"].startswith("end-of-run|"):
            events.append(event)
        published = [e["source"] for e in events if e["code"] == "metric"]
        assert len(published) == len(metrics_model) and all(
            src.startswith(key + "|") for src, key in zip(published, metrics_model, strict=True)
        ), (published, metrics_model)
        assert spawn_env(p) == env_model["PROP_A"]
        status = p.status()
        assert status["control"]["workerPid"] == worker and status["control"]["workerRestarts"] == 0
        assert p.alive()
