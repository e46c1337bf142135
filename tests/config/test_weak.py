"""Weak typing (§2.4): the coercions ContainerPilot users rely on, and what stays an error."""
# ruff: noqa: E501 (table rows read best on one line each)

from __future__ import annotations

import pytest

from pypilot.config import ConfigError, load
from pypilot.config.durations import DurationError, parse_cp_duration, parse_go_duration
from pypilot.config.model import UNLIMITED

from .conftest import ADDRS

C = 'consul: "c:8500"'


def job(write, body: str):
    return load(write(f"{{{C}, jobs: [{body}]}}"), {}, addresses=ADDRS).jobs[0]


@pytest.mark.parametrize(("port", "want"), [('"8080"', 8080), ("8080.9", 8080), ('"0x10"', 16), ('"010"', 8),
                                            ("true", 1)])
def test_int_from_string_float_bool(write, port: str, want: int) -> None:
    j = job(write, f'{{name: "app", port: {port}, health: {{interval: 1, ttl: "3"}}}}')
    assert j.port == want
    assert j.health is not None and j.health.ttl == 3


@pytest.mark.parametrize(("value", "secs"), [("5", 5.0), ('"5"', 5.0), ('"1500ms"', 1.5), ('"1h30m"', 5400.0),
                                             ('"+2s"', 2.0), ("true", 1.0)])
def test_duration_fields(write, value: str, secs: float) -> None:
    j = job(write, f'{{name: "a", exec: "x", timeout: {value}}}')
    assert j.timeout == secs


def test_duration_float_fails(write) -> None:
    with pytest.raises(ConfigError, match=r"'0\.5': time: missing unit in duration 0\.5$"):
        job(write, '{name: "a", exec: "x", timeout: 0.5}')


@pytest.mark.parametrize(("value", "want"), [('"true"', True), ('"1"', True), ("1", True), ("0", False),
                                             ('"false"', False), ('""', False)])
def test_bool_fields(write, value: str, want: bool) -> None:
    assert job(write, f'{{name: "a", logging: {{raw: {value}}}}}').raw_logging is want


def test_bad_bool(write) -> None:
    with pytest.raises(ConfigError, match=r"cannot parse '\[0\]\.logging\.raw' as bool: strconv\.ParseBool: "):
        job(write, '{name: "a", logging: {raw: "yes"}}')


def test_string_from_number_and_bool(write) -> None:
    """mapstructure's weak string decode: numbers without exponent, bools as "1"/"0", null as "" (#20: the
    tags are asserted, not only the name)."""
    j = job(write, '{name: 12, exec: "x", tags: [1, true, "t", false, 2.5, 1e21, null]}')
    assert j.name == "12"
    assert j.tags == ("1", "1", "t", "0", "2.5", "1000000000000000000000", "")


def test_tags_empty_object_is_empty_list(write) -> None:
    j = job(write, '{name: "app", port: 80, tags: {}, health: {interval: 1, ttl: 1}}')
    assert j.tags == ()


def test_nested_keys_case_insensitive_top_level_not(write) -> None:
    j = job(write, '{NAME: "a", Exec: "x y", When: {Interval: "1s"}}')
    assert (j.name, j.exec, j.when.interval) == ("a", ("x", "y"), 1.0)
    with pytest.raises(ConfigError, match=r"unknown config keys: \[Jobs\]"):
        load(write(f"{{{C}, Jobs: []}}"), {})


@pytest.mark.parametrize(("restarts", "want"), [("3", 3), ('"1"', 1), ('"never"', 0), ("0", 0), ("1.9", 1),
                                                ('"unlimited"', UNLIMITED)])
def test_restarts(write, restarts: str, want: int) -> None:
    assert job(write, f'{{name: "a", exec: "x", restarts: {restarts}}}').restarts == want


def test_restarts_default_with_interval(write) -> None:
    j = job(write, '{name: "a", exec: "x", when: {interval: "1s"}}')
    assert (j.restarts, j.timeout) == (UNLIMITED, 1.0)


def test_jobs_not_array_ignored_nulls_skipped(write) -> None:
    assert load(write(f'{{{C}, jobs: "nope"}}'), {}).jobs == ()
    assert len(load(write(f'{{{C}, jobs: [null, {{name: "a"}}, null]}}'), {}).jobs) == 1


@pytest.mark.parametrize(("value", "want"), [("0", 5.0), ("10", 10.0), ("-1", -1.0), ('"7"', 7.0)])
def test_top_stop_timeout(write, value: str, want: float) -> None:
    assert load(write(f"{{{C}, stopTimeout: {value}}}"), {}).stop_timeout == want


def test_exec_string_split_on_single_spaces(write) -> None:
    j = job(write, '{name: "a", exec: " echo  \'x y\' "}')
    assert j.exec == ("echo", "", "'x", "y'")
    j = job(write, '{name: "a", exec: ["sleep", 10, 1.5, true]}')
    assert j.exec == ("sleep", "10", "1.5", "true")


@pytest.mark.parametrize(("s", "ns"), [("1h30m", 5400 * 10**9), ("1.5s", 1_500_000_000), ("-1s", -(10**9)),
                                       ("1µs", 1000), ("0", 0), (".5s", 500_000_000)])
def test_go_duration(s: str, ns: int) -> None:
    assert parse_go_duration(s) == ns


@pytest.mark.parametrize(("s", "msg"), [("xx", "time: invalid duration xx"), ("", "time: invalid duration "),
                                        ("1", "time: missing unit in duration 1"),
                                        ("1x", "time: unknown unit x in duration 1x")])
def test_go_duration_errors(s: str, msg: str) -> None:
    with pytest.raises(DurationError) as e:
        parse_go_duration(s)
    assert str(e.value) == msg


def test_cp_duration_int_is_seconds() -> None:
    assert parse_cp_duration("5") == 5 * 10**9
