"""The stand-in answers as the real agent does: the requests pypilot makes (and the agent's answers it
relies on), sent to both, give the same status codes, the same text bodies and the same JSON shapes
(keys and value types, recursively). The stand-in stays for what a real agent cannot be made to do
(500s on purpose, slow answers, ACL errors); this test keeps it from drifting."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from tests.consul_standin import ConsulStandin
from tests.real_consul import RealConsul

CP_BODY = (
    '{"ID":"app-h","Name":"app","Tags":["blue","v1"],"Port":8000,"Address":"127.0.0.1",'
    '"Check":{"TTL":"5s","Status":"passing","Notes":"TTL for app set by containerpilot"},"Checks":null}'
)
CP_BODY_FULL = (
    '{"ID":"nginx-h","Name":"nginx","Port":80,"Address":"127.0.0.1","EnableTagOverride":true,'
    '"Check":{"TTL":"5s","Status":"warning","Notes":"TTL for nginx set by containerpilot",'
    '"DeregisterCriticalServiceAfter":"10m"},"Checks":null}'
)

# (method, path, body): what pypilot sends, and what the tests read back from an agent
SEQUENCE: list[tuple[str, str, str | None]] = [
    ("PUT", "/v1/agent/service/register", CP_BODY),
    ("PUT", "/v1/agent/service/register", CP_BODY_FULL),
    ("GET", "/v1/agent/services", None),
    ("GET", "/v1/agent/checks", None),
    ("GET", "/v1/health/service/app?passing=1", None),
    ("GET", "/v1/health/service/nginx?passing=1", None),  # warning is not passing
    ("PUT", "/v1/agent/check/update/service:app-h", '{"Status":"passing","Output":"ok"}'),
    ("GET", "/v1/health/service/app?passing=1", None),
    ("GET", "/v1/health/service/app?passing=1&tag=blue", None),
    ("GET", "/v1/health/service/app?passing=1&tag=green", None),
    ("PUT", "/v1/agent/check/update/service:app-h", '{"Status":"critical","Output":"check.app: exit 1"}'),
    ("GET", "/v1/health/service/app?passing=1", None),
    ("GET", "/v1/health/service/app", None),
    ("GET", "/v1/agent/checks", None),
    ("PUT", "/v1/agent/check/update/service:app-h", '{"Status":"passing","Output":"ok"}'),
    ("PUT", "/v1/agent/check/update/service:nope", '{"Status":"passing","Output":"ok"}'),  # lost: 500
    ("PUT", "/v1/agent/service/deregister/nginx-h", None),
    ("PUT", "/v1/agent/service/deregister/nginx-h", None),  # again: nothing to remove is fine
    ("PUT", "/v1/agent/check/update/service:nginx-h", '{"Status":"passing","Output":"ok"}'),  # 500
    ("PUT", "/v1/agent/service/register", CP_BODY),  # again: idempotent, keeps the check's status
    ("GET", "/v1/agent/services", None),
    ("GET", "/v1/health/service/nothing?passing=1", None),
    ("PUT", "/v1/agent/service/deregister/app-h", None),
    ("GET", "/v1/agent/services", None),
]


def call(base: str, method: str, path: str, body: str | None) -> tuple[int, str, Any, dict[str, str]]:
    req = urllib.request.Request(base + path, data=None if body is None else body.encode(), method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            code, raw, headers = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        code, raw, headers = e.code, e.read(), dict(e.headers)
    ctype = headers.get("Content-Type", "")
    if "json" in ctype:
        return code, "json", json.loads(raw), headers
    return code, "text", raw.decode(), headers


def shape(value: Any) -> Any:
    """Keys and JSON types, recursively; a list by the union of its items' shapes."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        shapes = []
        for item in value:
            s = shape(item)
            if s not in shapes:
                shapes.append(s)
        return shapes
    return type(value).__name__


def replay(base: str) -> list[Any]:
    out = []
    for method, path, body in SEQUENCE:
        code, kind, data, headers = call(base, method, path, body)
        entry: dict[str, Any] = {"request": f"{method} {path}", "code": code, "kind": kind}
        entry["body"] = shape(data) if kind == "json" else data
        if path.startswith("/v1/health/"):
            entry["index"] = int(headers.get("X-Consul-Index", "0")) > 0
            if kind == "json":  # what the watches read: which instances, with which check statuses
                entry["instances"] = sorted(
                    (e["Service"]["ID"], sorted(c["Status"] for c in e["Checks"])) for e in data
                )
        if path == "/v1/agent/checks" and kind == "json":
            entry["checks"] = {k: (c["Status"], c["Output"], c["Notes"]) for k, c in data.items()
                               if k.startswith("service:")}
        if path == "/v1/agent/services" and kind == "json":
            entry["services"] = {k: (s["Service"], s["Tags"], s["Port"], s["Address"],
                                     s["EnableTagOverride"]) for k, s in data.items()}
        out.append(entry)
    return out


def test_the_standin_answers_pypilots_requests_as_the_real_agent(agent: RealConsul) -> None:
    real = replay(f"http://{agent.address}")
    with ConsulStandin() as standin:
        fake = replay(standin.url)
    diffs = [(r, f) for r, f in zip(real, fake, strict=True) if r != f]
    assert not diffs, "\n\n".join(f"real:    {r}\nstandin: {f}" for r, f in diffs)


def test_blocking_query_holds_until_wait_then_answers_the_same_index(agent: RealConsul) -> None:
    """What the watches rely on, on both: ``index`` + ``wait`` holds the query for about ``wait``
    when nothing changes, and answers at once when something does."""
    with ConsulStandin() as standin:
        for base in (f"http://{agent.address}", standin.url):
            call(base, "PUT", "/v1/agent/service/register", CP_BODY)
            call(base, "PUT", "/v1/agent/check/update/service:app-h", '{"Status":"passing","Output":"ok"}')
            _, _, _, headers = call(base, "GET", "/v1/health/service/app?passing=1", None)
            for _ in range(10):  # the real agent syncs the registration to its catalog in the background
                index = int(headers["X-Consul-Index"])
                began = time.monotonic()
                blocking = f"/v1/health/service/app?passing=1&index={index}"
                code, _, data, headers = call(base, "GET", f"{blocking}&wait=1s", None)
                held = time.monotonic() - began
                if int(headers["X-Consul-Index"]) == index:
                    break
            assert code == 200 and len(data) == 1 and 1.0 <= held < 1.5, (base, held)
            assert int(headers["X-Consul-Index"]) == index, base
            call(base, "PUT", "/v1/agent/service/deregister/app-h", None)
            began = time.monotonic()
            code, _, data, headers = call(base, "GET", f"{blocking}&wait=5s", None)
            assert code == 200 and data == [] and time.monotonic() - began < 1.0, base
            assert int(headers["X-Consul-Index"]) > index, base
