"""The checks the control worker makes and PID 1 makes again (``pypilot.control.validate``)."""

from __future__ import annotations

import signal

import pytest

from pypilot.control.validate import metric_problem, parse_signal, valid_env

DECLARED = [("ns", "s", "g", "gauge"), ("ns", "", "c", "counter"), ("", "", "h", "histogram")]


@pytest.mark.parametrize("value", ["SIGHUP", "hup", "HUP", " Hup ", "1", 1])
def test_signal_names_and_numbers(value: object) -> None:
    assert parse_signal(value) == signal.SIGHUP


@pytest.mark.parametrize("value", ["SIGNOPE", "", "SIG", 0, "0", 999, -1, True, None, 1.0, ["HUP"]])
def test_not_signals(value: object) -> None:
    assert parse_signal(value) is None


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"A": "1", "B": ""}, None),
        ([], "the body must be a JSON object"),
        ({"A": 1}, "the value of 'A' must be a string or null"),
        ({"": "x"}, "invalid environment variable name ''"),
        ({"A=B": "x"}, "invalid environment variable name 'A=B'"),
        ({"A": "x\0y"}, "the value of 'A' contains a NUL byte"),
        ({"A": "\ud800"}, "'A' cannot be encoded for the environment"),
    ],
)
def test_valid_env(env: object, why: str | None) -> None:
    assert valid_env(env) == why


@pytest.mark.parametrize(
    ("metrics", "why"),
    [
        ({"ns_s_g": "1.5", "ns_c": "2", "ns__c": "0", "h": "-3"}, None),  # full names, CP's ns_sub_name too
        ({"name": "abc"}, "metric 'name' is not declared in telemetry.metrics"),
        ({"ns_s_g": "abc"}, "metric 'ns_s_g' needs a number, got 'abc'"),
        ({"ns_c": "-1"}, "metric 'ns_c' is a counter: it cannot decrease (got -1)"),
    ],
)
def test_metric_problem(metrics: dict[str, str], why: str | None) -> None:
    assert metric_problem(metrics, DECLARED) == why


def test_metric_without_telemetry() -> None:
    why = "metric 'm' is not recorded: the config declares no telemetry metrics"
    assert metric_problem({"m": "1"}, []) == why
    assert metric_problem({}, []) is None
