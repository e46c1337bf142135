# ruff: noqa: E501 (table rows read best on one line each)
"""Property-based: random and mutated configs never raise anything but ConfigError, and every error names a
field, a key, a job or a position."""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pypilot.config import ConfigError, load, validate_all

from .conftest import ADDRS

KEYS = ["name", "exec", "port", "health", "interval", "ttl", "timeout", "when", "source", "once", "each",
        "restarts", "stopTimeout", "tags", "interfaces", "initial_status", "consul", "logging", "raw", "level",
        "jobs", "watches", "telemetry", "control", "socket", "metrics", "type", "help", "backoff", "stopSignal",
        "all", "http", "tcp", "bogus", "Name"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 100000), st.floats(allow_nan=False, width=32),
                    st.sampled_from(["", "5", "1s", "-1", "x", "unlimited", "never", "eth0", "inet", "static:1",
                                     "healthy", "exitSuccess", "a b", "0x10", "passing", "gauge", "DEBUG"]),
                    st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
                      max_leaves=20)
configs = st.dictionaries(st.sampled_from(["consul", "jobs", "watches", "telemetry", "control", "logging",
                                           "stopTimeout", "zzz"]), values, max_size=6)

BASE = {"consul": "c:8500", "jobs": [{"name": "app", "exec": "run", "port": 80, "health": {"interval": 1,
                                                                                           "ttl": 3}}],
        "watches": [{"name": "db", "interval": 5}], "telemetry": {"metrics": [{"name": "m", "help": "h",
                                                                               "type": "gauge"}]}}

# an error names something: a quoted path, a job/watch, a key list, a line:col (negative past the last
# line, as ContainerPilot 3.8 prints it: "\n\n/" gives [4:-1] there too), a keyword of the spec
NAMED = re.compile(r"'[^']*'|job\[|watch\[|\[\d+:-?\d+\]|keys|discovery backend|metric|scheme|control|"
                   r"strconv|time: |interface|template|service names", re.S)


def _check(path: str) -> None:
    try:
        load(path, {}, addresses=ADDRS)
    except ConfigError as e:
        assert NAMED.search(str(e)), str(e)
    errors = validate_all(path, {}, addresses=ADDRS)
    assert all(NAMED.search(m) for m in errors), errors


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=configs)
def test_random_configs(write, cfg: dict) -> None:
    _check(write(json.dumps(cfg)))


def _mutate(draw: st.DrawFn, node: object) -> object:
    if isinstance(node, dict) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node)))
        out = dict(node)
        if draw(st.booleans()):
            out[key] = draw(values)
        else:
            out[key] = _mutate(draw, node[key])
        return out
    if isinstance(node, list) and node:
        i = draw(st.integers(0, len(node) - 1))
        return [*node[:i], _mutate(draw, node[i]), *node[i + 1:]]
    return draw(values)


@st.composite
def mutated(draw: st.DrawFn) -> object:
    return _mutate(draw, BASE)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=mutated())
def test_mutated_configs(write, cfg: object) -> None:
    _check(write(json.dumps(cfg)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.sampled_from([*'{}[]:,"\' \n/*abc0123.-$|\\', "{{", "}}", "{{-", " -}}", ".X",
                                       "consul", "range", "end", "if"]), max_size=30).map("".join))
def test_random_text(write, text: str) -> None:
    _check(write(text))
