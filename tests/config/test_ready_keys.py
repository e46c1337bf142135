"""Decoding the readiness keys (issue #16): ``ready: "notify"`` / ``ready: {fd: N}`` and ``watchdog``;
a bad value is a config error naming the job and the field."""

from __future__ import annotations

import json

import pytest

from pypilot.config import load, validate_all
from pypilot.config.model import ReadyConfig

from .conftest import ADDRS


def _path(write, keys: dict[str, object]) -> str:
    return write(json.dumps({"consul": "localhost:8500", "jobs": [{"name": "app", "exec": "true", **keys}]}))


def ready(write, **keys: object) -> ReadyConfig | None:
    return load(_path(write, keys), addresses=ADDRS).jobs[0].ready


def errors(write, **keys: object) -> list[str]:
    return validate_all(_path(write, keys), addresses=ADDRS)


def test_a_job_without_ready_or_watchdog_is_as_in_containerpilot(write) -> None:
    assert ready(write) is None


def test_notify_with_a_watchdog(write) -> None:
    assert ready(write, ready="notify") == ReadyConfig(kind="notify")
    assert ready(write, ready="notify", watchdog="1500ms") == ReadyConfig(kind="notify", watchdog=1.5)


def test_fd(write) -> None:
    assert ready(write, ready={"fd": 3}) == ReadyConfig(kind="fd", fd=3)


@pytest.mark.parametrize(("keys", "needle"), [
    ({"ready": "yes"}, "job[app].ready 'yes' invalid"),
    ({"ready": {"fd": 1}}, "job[app].ready.fd '1' invalid"),
    ({"ready": {"fd": "3"}}, "job[app].ready.fd '3' invalid"),
    ({"ready": {"fd": 3, "x": 1}}, "job[app].ready 'map[fd:3 x:1]' invalid"),
    ({"watchdog": "10s"}, "job[app].watchdog needs ready: \"notify\""),
    ({"ready": {"fd": 3}, "watchdog": "10s"}, "job[app].watchdog needs ready: \"notify\""),
    ({"ready": "notify", "watchdog": "soon"}, "job[app].watchdog 'soon'"),
    ({"ready": "notify", "watchdog": "0s"}, "job[app].watchdog '0s' invalid"),
])
def test_bad_values_name_the_job_and_the_field(write, keys: dict[str, object], needle: str) -> None:
    errs = errors(write, **keys)
    assert any(needle in e for e in errs), errs


def test_ready_needs_an_exec(write) -> None:
    path = write(json.dumps({"consul": "localhost:8500", "jobs": [{"name": "app", "ready": "notify"}]}))
    assert any("job[app].ready needs an exec" in e for e in validate_all(path, addresses=ADDRS))
